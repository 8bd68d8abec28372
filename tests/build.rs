//! Builds every plugin (product and hostile) for wasm32-wasip2 and writes
//! `artifacts.rs`: one constant per plugin holding its `.wasm` path, and the
//! `PRODUCT` and `HOSTILE` lists. Tests refer to plugins only through these constants, so no test
//! reads a hard-coded `target/` path and a fresh clone needs no binaries.
//!
//! Under clippy the build is skipped and the constants point nowhere: lint
//! runs stay fast and never run wasm.

#[path = "../xtask/src/wasm_build.rs"]
#[expect(unreachable_pub, reason = "the module is shared, by path, with xtask")]
mod wasm_build;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    println!("cargo:rerun-if-env-changed=CARGO_MANIFEST_DIR");
    for watched in ["plugins", "plugins/examples", "tests/hostile", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    // <target>/<profile>/build/<pkg>/out → <target>/wasm-plugins, shared by every profile.
    let target_dir = out_dir.ancestors().nth(4).unwrap_or(&out_dir).join("wasm-plugins");
    let crates_in = |folder: &str| wasm_build::plugin_crates(&root.join(folder)).unwrap_or_else(|e| panic!("{e}"));
    let (product, examples, hostile) =
        (crates_in("plugins"), crates_in("plugins/examples"), crates_in("tests/hostile"));
    let crates: Vec<_> = product.iter().chain(&examples).chain(&hostile).cloned().collect();

    let under_clippy = std::env::var("RUSTC_WORKSPACE_WRAPPER").is_ok_and(|w| w.contains("clippy"));
    if !under_clippy && let Err(message) = wasm_build::build(&root, &target_dir, &crates) {
        panic!("{message}");
    }

    let mut code = String::new();
    for krate in &crates {
        let constant = krate.package.to_uppercase().replace('-', "_");
        let path = krate.wasm_file(&target_dir);
        let _ = writeln!(
            code,
            "/// `{}`, built for wasm32-wasip2.\npub const {constant}: &str = {:?};",
            krate.package, path
        );
    }
    list(&mut code, "PRODUCT", "The plugins under `plugins/`", &product);
    list(&mut code, "EXAMPLES", "The example plugins under `plugins/examples/`", &examples);
    list(&mut code, "HOSTILE", "The hostile plugins under `tests/hostile/`", &hostile);
    std::fs::write(out_dir.join("artifacts.rs"), code).unwrap_or_else(|e| panic!("cannot write artifacts.rs: {e}"));
}

fn list(code: &mut String, name: &str, doc: &str, crates: &[wasm_build::PluginCrate]) {
    let _ = writeln!(code, "/// {doc}: (package name, .wasm path).\npub const {name}: &[(&str, &str)] = &[");
    for krate in crates {
        let _ = writeln!(code, "    ({:?}, {}),", krate.package, krate.package.to_uppercase().replace('-', "_"));
    }
    code.push_str("];\n");
}
