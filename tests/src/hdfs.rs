//! A real HDFS for the tests: a MiniDFSCluster (tests/hdfs, Maven, Java 17)
//! on loopback, one per test process, stopped when the process ends (its
//! standard input, held by this process, closes).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running MiniDFSCluster.
pub struct MiniHdfs {
    /// `hdfs://127.0.0.1:PORT`
    pub url: String,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
    _dir: tempfile::TempDir,
}

/// The cluster of this test process, started on first use. Panics with the
/// reason if it cannot start: a missing service fails the tests, never skips
/// them.
pub fn mini_hdfs() -> &'static MiniHdfs {
    static CLUSTER: OnceLock<MiniHdfs> = OnceLock::new();
    CLUSTER.get_or_init(|| start().unwrap_or_else(|e| panic!("cannot start MiniDFSCluster: {e}")))
}

fn start() -> Result<MiniHdfs, String> {
    let pom = crate::repo_root().join("tests/hdfs/pom.xml");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut child = Command::new("mvn")
        .args(["-q", "-B", "-Dstyle.color=never", "-f"])
        .arg(&pom)
        .args(["compile", "exec:java"])
        .arg(format!("-Dexec.args={}", dir.path().display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("cannot run mvn ({e}); scripts/test installs Maven's artifacts, Java 17 and Maven must be on PATH")
        })?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    // Keep reading stdout for the cluster's whole life: a full pipe would
    // block the cluster's logging and with it the cluster.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(at) = line.find("Ready! ") {
                let _ = sender.send(line[at + 7..].trim().to_owned());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let url = loop {
        if let Ok(url) = receiver.recv_timeout(Duration::from_millis(200)) {
            break url;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("mvn exited with {status} before the cluster was ready"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("the cluster was not ready within 300 s".to_owned());
        }
    };
    Ok(MiniHdfs { url, _child: Mutex::new(child), _stdin: Mutex::new(stdin), _dir: dir })
}
