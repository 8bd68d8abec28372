//! A real PostgreSQL for the tests: Debian's server binaries, `initdb` into a
//! temporary folder, a free port on loopback, trust authentication for the
//! user `medallion`. One shared server per test process (stopped when the
//! process ends: its standard input, held by this process, closes), and
//! servers of their own for tests that stop one.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running PostgreSQL server.
pub struct Postgres {
    /// `postgres://medallion@127.0.0.1:PORT/postgres`
    pub url: String,
    /// Its port.
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    running: Mutex<Option<(Child, ChildStdin)>>,
    _dir: tempfile::TempDir,
}

/// The password of the servers started with [`Postgres::start_tls`].
pub const TLS_PASSWORD: &str = "tls-test-password";

/// A CA (`ca.crt`) and a certificate for `localhost` signed by it
/// (`server.crt`, `server.key`), made with the `openssl` command.
fn make_certificates(dir: &Path) -> Result<(), String> {
    let openssl = |args: &[&str]| -> Result<(), String> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("cannot run openssl ({e}); scripts/test installs it"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("openssl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr)))
        }
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-days",
                "2",
                "-subj",
                "/CN=medallion test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    )?;
    openssl(&[&["req"], &ec[..], &["-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]].concat())?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "server.ext",
    ])
}

/// The server of this test process, started on first use. Panics with the
/// reason if it cannot start: a missing service fails the tests, never skips
/// them.
pub fn postgres() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(|| Postgres::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}")))
}

fn bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "no /usr/lib/postgresql: scripts/test installs Debian's `postgresql` package".to_owned())?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    found.sort_by_key(|p| p.to_string_lossy().split('/').nth(4).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0));
    found.pop().ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".to_owned())
}

fn is_root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap_or_else(|e| panic!("/proc/self: {e}")))
        == 0
}

/// A command for a server binary, as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
fn command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

impl Postgres {
    /// A new server of its own, started and ready.
    pub fn start() -> Result<Self, String> {
        Postgres::start_with(None)
    }

    /// A new server that takes only TLS connections over TCP, with a
    /// password (`TLS_PASSWORD`) and a certificate for `localhost` from a
    /// CA of its own. Returns the server, whose `url` names `localhost`
    /// (address 127.0.0.1) and no `sslmode`, and the CA's PEM file.
    pub fn start_tls() -> Result<(Self, PathBuf), String> {
        let certificates = tempfile::Builder::new().prefix("medallion-pg-ca").tempdir().map_err(|e| e.to_string())?;
        make_certificates(certificates.path())?;
        let server = Postgres::start_with(Some(certificates.path()))?;
        let ca = server.data.parent().unwrap_or(Path::new("/tmp")).join("ca.crt");
        std::fs::copy(certificates.path().join("ca.crt"), &ca).map_err(|e| e.to_string())?;
        Ok((server, ca))
    }

    fn start_with(tls: Option<&Path>) -> Result<Self, String> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("medallion-pg").tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let uid = if is_root() { Some(postgres_uid()?) } else { None };
        if let Some(uid) = uid {
            std::os::unix::fs::chown(dir.path(), Some(uid), None).map_err(|e| e.to_string())?;
        }
        let mut initdb = command(&bin, "initdb");
        initdb.args(["-U", "medallion", "--no-sync", "-E", "UTF8"]);
        let password_file = dir.path().join("password");
        if tls.is_some() {
            std::fs::write(&password_file, TLS_PASSWORD).map_err(|e| e.to_string())?;
            if let Some(uid) = uid {
                std::os::unix::fs::chown(&password_file, Some(uid), None).map_err(|e| e.to_string())?;
            }
            initdb
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", password_file.display()));
        } else {
            initdb.args(["-A", "trust"]);
        }
        let output = initdb.arg("-D").arg(&data).output().map_err(|e| format!("cannot run initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
        let port = crate::free_port()?;
        let url = match tls {
            None => format!("postgres://medallion@127.0.0.1:{port}/postgres"),
            Some(certificates) => {
                // The server's key and certificate, TLS on, and no TCP
                // connection without it.
                for file in ["server.crt", "server.key"] {
                    let to = data.join(file);
                    std::fs::copy(certificates.join(file), &to).map_err(|e| e.to_string())?;
                    std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                        .map_err(|e| e.to_string())?;
                    if let Some(uid) = uid {
                        std::os::unix::fs::chown(&to, Some(uid), None).map_err(|e| e.to_string())?;
                    }
                }
                let mut conf = std::fs::OpenOptions::new()
                    .append(true)
                    .open(data.join("postgresql.conf"))
                    .map_err(|e| e.to_string())?;
                std::io::Write::write_all(&mut conf, b"\nssl = on\n").map_err(|e| e.to_string())?;
                std::fs::write(
                    data.join("pg_hba.conf"),
                    "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n",
                )
                .map_err(|e| e.to_string())?;
                format!("postgres://medallion:{TLS_PASSWORD}@localhost:{port}/postgres?hostaddr=127.0.0.1")
            }
        };
        let server = Postgres { url, port, bin, data, running: Mutex::new(None), _dir: dir };
        server.run()?;
        Ok(server)
    }

    /// Starts the server process and waits until it accepts connections.
    fn run(&self) -> Result<(), String> {
        let socket_dir = self.data.parent().unwrap_or(Path::new("/tmp"));
        // The shell stops the server and removes its folder when our end of
        // its stdin closes, so a test process that exits takes its server
        // with it (the shared server is never dropped). A stop asked for by
        // a test leaves a marker, and the folder, for `restart`.
        let script = format!(
            "{} -D {} -p {} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off & pid=$!; cat >/dev/null; kill -INT $pid; wait $pid; [ -e {dir}/stopped-by-test ] || rm -rf {dir}",
            self.bin.join("postgres").display(),
            self.data.display(),
            self.port,
            dir = socket_dir.display()
        );
        let mut child = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--", "sh", "-c", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        } else {
            Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        }
        .map_err(|e| format!("cannot start postgres: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = command(&self.bin, "pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("postgres exited with {status} before it was ready"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("postgres was not ready within 60 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        *self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((child, stdin));
        let _ = std::fs::remove_file(socket_dir.join("stopped-by-test"));
        Ok(())
    }

    /// Stops the server at once, as a crash or a pulled cable would
    /// (`pg_ctl stop -m immediate`).
    pub fn stop_now(&self) {
        let _ = command(&self.bin, "pg_ctl").args(["stop", "-m", "immediate", "-D"]).arg(&self.data).output();
        // The marker keeps the shell from removing the data folder, which
        // `restart` needs.
        let marker = self.data.parent().unwrap_or(Path::new("/tmp")).join("stopped-by-test");
        let _ = std::fs::write(&marker, b"");
        if let Some((mut child, stdin)) = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
        {
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Starts a stopped server again, on the same port and data.
    pub fn restart(&self) -> Result<(), String> {
        self.stop_now();
        self.run()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn postgres_uid() -> Result<u32, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some("postgres")).then(|| fields.nth(1).and_then(|uid| uid.parse().ok())).flatten()
        })
        .ok_or_else(|| "no `postgres` user: scripts/test installs Debian's `postgresql` package".to_owned())
}
