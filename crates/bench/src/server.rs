//! The server under test: a fresh database (a SQLite file in a temporary
//! directory, or a new PostgreSQL database), and `gatehouse serve` started
//! as a separate process on it; plus what `/proc` tells about that process
//! (resident memory, CPU time).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A database made for one run, and a temporary data directory (the
/// server's secret key, mail folder, and the SQLite file).
pub struct Database {
    pub url: String,
    pub data_dir: PathBuf,
    /// PostgreSQL: the admin URL and the database's name, to drop it.
    postgres: Option<(String, String)>,
}

impl Database {
    pub async fn create(backend: Backend, postgres_admin: &str) -> anyhow::Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("gatehouse-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        match backend {
            Backend::Sqlite => Ok(Self {
                url: format!("sqlite://{}", data_dir.join("gatehouse.db").display()),
                data_dir,
                postgres: None,
            }),
            Backend::Postgres => {
                let name = format!("gh_bench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = admin_connection(postgres_admin).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("creating database {name}"))?;
                let mut url = url::Url::parse(postgres_admin).context("PostgreSQL URL")?;
                url.set_path(&format!("/{name}"));
                Ok(Self {
                    url: url.to_string(),
                    data_dir,
                    postgres: Some((postgres_admin.to_owned(), name)),
                })
            }
        }
    }

    /// Drops the PostgreSQL database and removes the data directory.
    pub async fn destroy(self) -> anyhow::Result<()> {
        if let Some((admin, name)) = &self.postgres {
            let mut conn = admin_connection(admin).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .with_context(|| format!("dropping database {name}"))?;
        }
        std::fs::remove_dir_all(&self.data_dir).with_context(|| format!("removing {}", self.data_dir.display()))?;
        Ok(())
    }

    /// The environment `gatehouse` reads its settings from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GATEHOUSE_DATA_DIR", self.data_dir.display().to_string()),
            ("GATEHOUSE_DATABASE_URL", self.url.clone()),
            ("GATEHOUSE_LISTEN", "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_LOG", "warn".to_owned()),
            ("GATEHOUSE_LOG_FORMAT", "human".to_owned()),
        ]
    }
}

async fn admin_connection(url: &str) -> anyhow::Result<sqlx::postgres::PgConnection> {
    use sqlx::Connection;
    let connect = sqlx::postgres::PgConnection::connect(url);
    tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .with_context(|| format!("PostgreSQL at {url} did not answer in 5 s"))?
        .with_context(|| format!("PostgreSQL at {url}"))
}

/// Whether PostgreSQL answers at `url`.
pub async fn postgres_reachable(url: &str) -> Result<(), String> {
    admin_connection(url).await.map(drop).map_err(|e| format!("{e:#}"))
}

/// `gatehouse` with the database's environment, for one-off commands.
pub fn command(gatehouse: &Path, db: &Database) -> Command {
    let mut cmd = Command::new(gatehouse);
    for (k, v) in db.env() {
        cmd.env(k, v);
    }
    // Settings from the caller's environment would change what we measure.
    for k in ["GATEHOUSE_ISSUER", "GATEHOUSE_SMTP_URL", "GATEHOUSE_SECRET_KEY"] {
        cmd.env_remove(k);
    }
    cmd
}

/// `gatehouse user create --verified` with this password; `cmd` is from
/// [`command`].
pub fn create_user(mut cmd: Command, email: &str, password: &str) -> anyhow::Result<()> {
    let mut child = cmd
        .args([
            "--json",
            "user",
            "create",
            "--email",
            email,
            "--password-stdin",
            "--verified",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running gatehouse user create")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{password}\n").as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "gatehouse user create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A running `gatehouse serve`.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    /// Kept open: the server must not get EPIPE on stdout.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts `gatehouse --json serve` and waits for its first line,
    /// `{"listening": ..., "issuer": ...}`.
    pub async fn start(gatehouse: &Path, db: &Database, extra_env: &[String]) -> anyhow::Result<Self> {
        let mut cmd = command(gatehouse, db);
        for kv in extra_env {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--server-env {kv:?}: not KEY=VALUE"))?;
            cmd.env(k, v);
        }
        cmd.args(["--json", "serve"]);
        Self::launch(cmd, |first| {
            Ok(first["listening"]
                .as_str()
                .context("no \"listening\" in the server's first line")?
                .parse()?)
        })
        .await
    }

    /// Starts `cmd` (a `gatehouse --json ...` server) and waits for its
    /// first line, a JSON object; `addr_of` reads the address from it.
    pub async fn launch(
        mut cmd: Command,
        addr_of: impl FnOnce(&serde_json::Value) -> anyhow::Result<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("server stdout")?;
        let first_line = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line).map(|_| (reader, line))
        });
        let (reader, line) = match tokio::time::timeout(Duration::from_secs(120), first_line).await {
            Ok(joined) => joined??,
            Err(_) => {
                let _ = child.kill();
                bail!("the server did not report its address within 120 s");
            }
        };
        let parsed: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                bail!("the server did not start ({status}); its first line was {line:?}");
            }
        };
        let addr = match addr_of(&parsed) {
            Ok(a) => a,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.context(format!("the server's first line was {line:?}")));
            }
        };
        Ok(Self {
            child,
            pid,
            addr,
            _stdout: reader,
        })
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 10 s.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// --- /proc ------------------------------------------------------------------

/// A `kB` line of `/proc/<pid>/status`, in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User plus system CPU time of a process (`self` or a pid), in clock ticks
/// (USER_HZ, 100 per second on Linux).
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields count from after its ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

pub const TICKS_PER_SECOND: f64 = 100.0;

/// Samples a process's resident memory every 50 ms while running; keeps the
/// highest value seen.
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak, done) = (peak_kib.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Some(rss) = status_kib(pid, "VmRSS") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
            }
        });
        Self { peak_kib, stop, task }
    }

    /// Stops sampling; returns the peak in KiB.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak_kib.load(Ordering::Relaxed)
    }
}
