//! `host plugins list`, `host plugins inspect` and `host hash-password` through the real binary.

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
fn a_command_piped_into_a_reader_that_has_gone_ends_quietly() {
    let home = shared_home();
    let folder = temp_dir();
    let file = folder.path().join("clean.wasm");
    copy_plugin(medallion_tests::artifacts::CLEAN, &file);
    // A pipe whose reading end is closed before `host` writes anything, as
    // `host plugins inspect FILE | head -0` leaves it.
    let (reader, writer) = std::io::pipe().unwrap_or_else(|e| panic!("{e}"));
    drop(reader);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["plugins", "inspect", &arg(&file)])
        .env("XDG_CACHE_HOME", home)
        .stdout(writer)
        .output()
        .unwrap_or_else(|e| panic!("cannot run host: {e}"));
    let (_, stderr) = text(&output);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert!(output.status.success() || output.status.signal() == Some(13), "{:?}: {stderr}", output.status);
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

#[test]
fn hash_password_prints_an_argon2_hash_and_refuses_a_short_password() {
    use std::io::Write;
    let hash = |password: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        writeln!(stdin, "{password}").unwrap_or_else(|e| panic!("{e}"));
        drop(stdin);
        child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
    };
    let good = hash("a long passphrase");
    assert!(good.status.success(), "{}", text(&good).1);
    let printed = text(&good).0;
    assert!(printed.starts_with("$argon2id$"), "{printed}");
    assert_ne!(printed, text(&hash("a long passphrase")).0, "a random salt each time");
    let short = hash("short");
    assert_eq!(short.status.code(), Some(2));
    assert!(text(&short).1.contains("shorter than 8"), "{}", text(&short).1);
}
