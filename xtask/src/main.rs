//! Project tasks that cargo alone does not do.
//!
//! `cargo xtask build-plugins [--out DIR]`: builds every plugin crate under
//! `plugins/` for `wasm32-wasip2` and copies the components to DIR (default
//! `dist/plugins`), the folder `host` looks in.

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

const USAGE: &str = "usage: cargo xtask build-plugins [--out DIR]";

fn build_plugins(args: &[String]) -> Result<(), String> {
    let out = match args {
        [] => PathBuf::from("dist/plugins"),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => return Err(USAGE.to_owned()),
    };
    let root = workspace_root();
    let crates = wasm_build::plugin_crates(&root.join("plugins")).map_err(|e| format!("cannot list plugins/: {e}"))?;
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
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}
