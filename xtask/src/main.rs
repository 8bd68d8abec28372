//! Project tasks that cargo alone does not do.
//!
//! `cargo xtask build-plugins [--out DIR]`: builds every plugin crate under
//! `plugins/` for `wasm32-wasip2` and copies the components to DIR (default
//! `dist/plugins`), the folder `host` looks in. With `--examples`, the
//! example plugins of `plugins/examples/` instead (default `dist/examples`):
//! they are meant to be dropped into the plugins folder by hand.

#[expect(unreachable_pub, reason = "the module is shared, by path, with tests/build.rs")]
mod wasm_build;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build-plugins") => build_plugins(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask build-plugins [--examples] [--out DIR]\n  \
  --examples  build the example plugins of plugins/examples (default out: dist/examples) instead";

fn build_plugins(args: &[String]) -> Result<(), String> {
    let examples = args.iter().any(|a| a == "--examples");
    let rest: Vec<&String> = args.iter().filter(|a| *a != "--examples").collect();
    let out = match rest.as_slice() {
        [] if examples => PathBuf::from("dist/examples"),
        [] => PathBuf::from("dist/plugins"),
        [flag, dir] if *flag == "--out" => PathBuf::from(dir),
        _ => return Err(USAGE.to_owned()),
    };
    let root = workspace_root();
    let folder = if examples { root.join("plugins/examples") } else { root.join("plugins") };
    let crates = wasm_build::plugin_crates(&folder)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");
    wasm_build::build(&root, &target_dir, &crates)?;
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for krate in &crates {
        let built = krate.wasm_file(&target_dir);
        let dest = out.join(format!("{}.wasm", krate.package));
        std::fs::copy(&built, &dest)
            .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), dest.display()))?;
        println!("{}", dest.display());
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    // At run time: cargo sets CARGO_MANIFEST_DIR for `cargo run`, and a path
    // baked in at compile time would name whichever clone built xtask first.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("xtask"));
    manifest.parent().map(Path::to_path_buf).unwrap_or_default()
}
