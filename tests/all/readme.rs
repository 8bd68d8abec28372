//! The README, run as written: every `sh` block of README.md, in order, as
//! one bash script per block in a fresh working copy (pipeline.yaml and the
//! built plugins in `dist/plugins`), with the real `host` first on PATH.
//! Nothing is rewritten but addresses: `namenode:9000` becomes this run's
//! MiniDFSCluster, `pg.example:5432/medallion?sslmode=verify-full` a
//! PostgreSQL server of the test's own on loopback (without TLS: Gold over
//! TLS has its own test in gold.rs), `127.0.0.1:8080` a free port. The environment is only what
//! the commands need; PATH ends with the test venv's `bin` and
//! PYSPARK_PYTHON is its Python (`host spark-submit` runs its spark-submit
//! on it, with the medallion module).
//!
//! Two kinds of command are not run here, and the test says where they are:
//! the set-up block (`scripts/demo`, `scripts/test`: the second is this suite,
//! and runs the first after it), and `cargo xtask build-plugins`, since cargo
//! cannot run inside `cargo test`; its files come from `tests/build.rs`,
//! which builds them with the same code (`xtask/src/wasm_build.rs`).

use std::path::Path;
use std::process::Command;

use medallion_tests::postgres::Postgres;
use medallion_tests::{artifacts, free_port, hdfs, plugins_folder, repo_root, temp_dir};

/// Every fenced `sh` block: (1-based line of its first command, its text).
fn shell_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (number, line) in markdown.lines().enumerate() {
        match &mut open {
            None if line.trim() == "```sh" => open = Some((number + 2, String::new())),
            Some(_) if line.trim() == "```" => blocks.extend(open.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(open.is_none(), "README.md: a ```sh block is never closed");
    blocks
}

/// What runs before each block: stop on the first failure and name it, stop
/// any server a block left running, and `cargo xtask build-plugins` answered
/// with the files tests/build.rs built.
const PREAMBLE: &str = r#"set -euo pipefail
trap 'echo "README command failed (exit $?): $BASH_COMMAND" >&2' ERR
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
cargo() {
    case "$*" in
        "xtask build-plugins") cp "$README_BUILT"/plugins/*.wasm dist/plugins/ ;;
        "xtask build-plugins --examples") mkdir -p dist/examples && cp "$README_BUILT"/examples/*.wasm dist/examples/ ;;
        *) echo "README runs \`cargo $*\`, which this test cannot run inside cargo test" >&2; return 1 ;;
    esac
}
"#;

#[test]
fn every_command_in_the_readme_runs_as_written() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap_or_else(|e| panic!("README.md: {e}"));
    let blocks = shell_blocks(&readme);
    assert!(blocks.len() >= 8, "README.md has only {} sh blocks", blocks.len());

    // The set-up block: the two commands, first in the file; scripts/test
    // (this suite) runs scripts/demo once the tests pass.
    let (_, setup) = &blocks[0];
    let commands: Vec<&str> = setup.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(commands, ["scripts/demo", "scripts/test"], "README.md's first block");
    let test_script = std::fs::read_to_string(root.join("scripts/test")).unwrap_or_default();
    let runs_demo = |line: &str| line.split_whitespace().any(|word| word == "scripts/demo");
    assert!(test_script.lines().any(runs_demo), "scripts/test does not run scripts/demo");

    // A working copy, as scripts/demo leaves a clone: pipeline.yaml, the
    // products catalogue in seed/, the plugins in dist/plugins; the host on
    // PATH.
    let work = temp_dir();
    let copy = work.path().join("clone");
    std::fs::create_dir_all(copy.join("dist")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(root.join("pipeline.yaml"), copy.join("pipeline.yaml")).unwrap_or_else(|e| panic!("{e}"));
    copy_all(&root.join("seed"), &copy.join("seed"));
    let built = work.path().join("built");
    let plugins = plugins_folder();
    copy_all(plugins.path(), &built.join("plugins"));
    copy_all(plugins.path(), &copy.join("dist/plugins"));
    std::fs::create_dir_all(built.join("examples")).unwrap_or_else(|e| panic!("{e}"));
    for (name, path) in artifacts::EXAMPLES {
        medallion_tests::copy_plugin(path, &built.join("examples").join(format!("{name}.wasm")));
    }
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_host"), bin.join("host")).unwrap_or_else(|e| panic!("{e}"));
    // Last, the test venv's: `host spark-submit` runs its spark-submit, on
    // its Python (with the medallion module; PYSPARK_PYTHON below).
    let python = crate::util::python();
    let venv = python.parent().map(Path::to_path_buf).unwrap_or_default();
    let path = format!("{}:{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default(), venv.display());

    let namenode = hdfs::mini_hdfs().url.trim_start_matches("hdfs://").to_owned();
    let postgres = Postgres::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    let database = format!("127.0.0.1:{}/postgres", postgres.port);

    let mut transcript = String::new();
    for (line, block) in &blocks[1..] {
        // A port found free just before the block that serves on it.
        let listen = format!("127.0.0.1:{}", free_port().unwrap_or_else(|e| panic!("no free port: {e}")));
        let mut script = block.clone();
        for (from, to) in [
            ("namenode:9000", &namenode),
            ("pg.example:5432/medallion?sslmode=verify-full", &database),
            ("127.0.0.1:8080", &listen),
        ] {
            script = script.replace(from, to);
        }
        // Only what the commands need: a MEDALLION_* or secret of the
        // caller's would change what they do.
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("{PREAMBLE}{script}"))
            .current_dir(&copy)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", work.path())
            .env("XDG_CACHE_HOME", crate::util::shared_home())
            .env("README_BUILT", &built)
            .env("MEDALLION_LISTEN", &listen)
            .env("PYSPARK_PYTHON", &python)
            .output()
            .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
        let (stdout, stderr) = crate::util::text(&output);
        assert!(
            output.status.success(),
            "README.md:{line}: the block\n{block}\nfailed ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        );
        transcript.push_str(&stdout);
        transcript.push_str(&stderr);
    }

    // A few of the results the README promises.
    for promised in [
        "gold run=",            // host run published Gold
        "\"total_rows\"",       // a reference route's body
        "\"@odata.context\"",   // an OData answer
        "access_token",         // a login
        "USING DELTA LOCATION", // host ddl
        "silver/dim_customers", // host lake history
    ] {
        assert!(transcript.contains(promised), "no `{promised}` in what the README's commands printed:\n{transcript}");
    }
    let listed = transcript.lines().any(|l| l.starts_with("stock-status") && l.contains("0.2.0"));
    assert!(listed, "`host plugins list` did not show the dropped-in stock-status 0.2.0:\n{transcript}");
    assert!(transcript.contains("\"0.2.0\""), "`host runs --json` did not name stock-status 0.2.0:\n{transcript}");
}

fn copy_all(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())).flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap_or_else(|e| panic!("{e}"));
    }
}
