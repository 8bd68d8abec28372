//! A Spark standalone cluster for the tests: a master and two workers (one
//! core, 1 GiB each) started with `spark-class` from the PyPI pyspark in the
//! test venv, on loopback, their executors running the venv's Python (with
//! pyarrow, pandas and the `medallion` module). Each daemon runs under a
//! shell that ends it when its standard input, held by this value, closes:
//! when the value drops, and when the test process dies however it dies.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// A running cluster.
pub struct SparkCluster {
    /// `spark://127.0.0.1:PORT`
    pub master: String,
    daemons: Vec<Daemon>,
    _dir: tempfile::TempDir,
}

/// One master or worker.
struct Daemon {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // The shell ends the daemon when its input closes.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        kill_group(&self.child);
        let _ = self.child.wait();
    }
}

/// Kills the session and group `setsid` made for `child` (the shell, the
/// JVM and what it started).
fn kill_group(child: &Child) -> bool {
    let group = format!("-{}", child.id());
    Command::new("kill").args(["-s", "KILL", "--", &group]).status().is_ok_and(|s| s.success())
}

impl SparkCluster {
    /// Starts a master and `workers` workers with `python` as the
    /// executors' Python; fails with the reason (a missing service fails
    /// the tests, never skips them).
    pub fn start(python: &Path, workers: usize) -> Result<SparkCluster, String> {
        let home = spark_home(python)?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (master, lines) = daemon(
            &home,
            python,
            dir.path(),
            &["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "0", "--webui-port", "0"],
        )?;
        let url = wait_for(&lines, "Starting Spark master at ", Duration::from_secs(120))
            .map(|line| line.split("Starting Spark master at ").nth(1).unwrap_or_default().trim().to_owned())
            .map_err(|e| format!("the Spark master: {e}"))?;
        wait_for(&lines, "New state: ALIVE", Duration::from_secs(60)).map_err(|e| format!("the Spark master: {e}"))?;
        let mut daemons = vec![master];
        for n in 0..workers {
            let work = dir.path().join(format!("worker-{n}"));
            std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
            let work = work.display().to_string();
            let (worker, lines) = daemon(
                &home,
                python,
                dir.path(),
                &[
                    "org.apache.spark.deploy.worker.Worker",
                    &url,
                    "--host",
                    "127.0.0.1",
                    "--webui-port",
                    "0",
                    "--cores",
                    "1",
                    "--memory",
                    "1g",
                    "--work-dir",
                    &work,
                ],
            )?;
            daemons.push(worker);
            wait_for(&lines, "Successfully registered with master", Duration::from_secs(120))
                .map_err(|e| format!("Spark worker {n}: {e}"))?;
        }
        Ok(SparkCluster { master: url, daemons, _dir: dir })
    }

    /// Kills worker `n` (from 0) at once, as a machine lost would.
    pub fn kill_worker(&mut self, n: usize) {
        let worker = &mut self.daemons[n + 1];
        // The worker's JVM and its executors are in the shell's session and
        // group (`setsid`): end the whole group.
        assert!(kill_group(&worker.child), "could not kill Spark worker {n}");
        drop(worker.stdin.take());
        let _ = worker.child.wait();
    }
}

/// Where the venv's pyspark is (its `bin/spark-class`).
fn spark_home(python: &Path) -> Result<PathBuf, String> {
    let output = Command::new(python)
        .args(["-c", "import os, pyspark; print(os.path.dirname(pyspark.__file__))"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "no pyspark in {}: scripts/test installs it ({})",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// Starts `spark-class ARGS` under a shell that ends it when its input
/// closes; the daemon's log lines come on the receiver.
fn daemon(home: &Path, python: &Path, dir: &Path, args: &[&str]) -> Result<(Daemon, Receiver<String>), String> {
    let mut command = Command::new("setsid");
    command
        .args(["sh", "-c", r#""$@" & daemon=$!; cat >/dev/null; kill $daemon; wait $daemon"#, "spark"])
        .arg(home.join("bin/spark-class"))
        .args(args)
        .env("SPARK_HOME", home)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("SPARK_LOCAL_DIRS", dir)
        .env("PYSPARK_PYTHON", python)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| format!("cannot run spark-class: {e}"))?;
    let stdin = child.stdin.take();
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (sender, receiver) = channel();
    // Read the log for the daemon's whole life: a full pipe would stop it.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    Ok((Daemon { child, stdin }, receiver))
}

/// Waits for a log line containing `text`.
fn wait_for(lines: &Receiver<String>, text: &str, most: Duration) -> Result<String, String> {
    let deadline = Instant::now() + most;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains(text) => return Ok(line),
            Ok(line) => {
                last.push(line);
                if last.len() > 20 {
                    last.remove(0);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("it ended before saying {text:?}; its last lines:\n{}", last.join("\n")));
            }
        }
    }
    Err(format!("no {text:?} in {} s; its last lines:\n{}", most.as_secs(), last.join("\n")))
}
