//! `host plugins list` and `host plugins inspect` through the real binary.

use medallion_tests::{copy_plugin, plugins_folder, temp_dir};

use crate::util::{arg, host, shared_home, text};

#[test]
fn plugins_list_shows_every_plugin_with_version_and_sha256() {
    let home = shared_home();
    let folder = plugins_folder();
    let output = host(home, &["plugins", "list", "--dir", &arg(folder.path())]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.starts_with("NAME"), "{stdout}");
    for name in ["clean", "passthrough"] {
        let line = stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing:\n{stdout}"));
        assert!(line.contains(" 0.1.0 "), "{line}");
    }
}

#[test]
fn plugins_list_names_an_unusable_file_and_goes_on() {
    let home = shared_home();
    let folder = plugins_folder();
    std::fs::write(folder.path().join("broken.wasm"), b"\0asm\x0d\0\x01\0garbage").unwrap_or_else(|e| panic!("{e}"));
    let output = host(home, &["plugins", "list", "--dir", &arg(folder.path())]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("(unusable)"), "{stdout}");
    assert!(stderr.contains("broken.wasm is not a valid WebAssembly component"), "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("passthrough")), "{stdout}");
}

#[test]
fn plugins_list_on_a_missing_folder_says_how_to_build_plugins() {
    let home = shared_home();
    let output = host(home, &["plugins", "list", "--dir", "/nonexistent/plugins"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("cargo xtask build-plugins"), "{stderr}");
}

#[test]
fn plugins_inspect_prints_ports_schemas_and_config() {
    let home = shared_home();
    let folder = temp_dir();
    let file = folder.path().join("clean.wasm");
    copy_plugin(medallion_tests::artifacts::CLEAN, &file);
    let output = host(home, &["plugins", "inspect", &arg(&file)]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    for expected in
        ["name:        clean", "version:     0.1.0", "sha256:      ", "outputs:", "  rejected —", "\"columns\""]
    {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    let json = host(home, &["plugins", "inspect", "--json", &arg(&file)]);
    let (stdout, _) = text(&json);
    assert!(stdout.contains("\"name\": \"clean\""), "{stdout}");
}

#[test]
fn plugins_inspect_on_a_broken_file_fails_with_the_plugin_exit_code() {
    let home = shared_home();
    let scratch = temp_dir();
    let file = scratch.path().join("broken.wasm");
    std::fs::write(&file, b"not wasm at all").unwrap_or_else(|e| panic!("{e}"));
    let output = host(home, &["plugins", "inspect", &arg(&file)]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4));
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("is not a valid WebAssembly component"), "{stderr}");
}
