//! A real PostgreSQL per test process (or per test, for crash tests), from Debian's
//! `postgresql` binaries: `initdb` once into a template, then every server starts on a copy of
//! it in its own scratch directory on a free port, as the `postgres` user when the tests run as
//! root. Apps get a fresh database each ([`PostgresServer::database`]).
//!
//! The shared server ([`shared`]) is started from a thread that lives as long as the test
//! process and asks the kernel to kill it when that thread ends (`setpriv --pdeathsig`), so it
//! never outlives the test run; dedicated servers are killed on drop. The load bench includes
//! this file too (it needs only `scratch`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::ports::free_port;
use super::scratch::ScratchDir;

pub struct PostgresServer {
    pub port: u16,
    dir: PathBuf,
    /// A dedicated server's directory, removed with it; the shared server's lives in
    /// [`process_dir`].
    _scratch: Option<ScratchDir>,
    child: Option<Child>,
}

/// A directory for what lives as long as this test process (the template, the shared server):
/// statics are never dropped, so each process sweeps the directories of processes gone.
fn process_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let prefix = "statusads-pg-process-";
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let gone = name
                    .strip_prefix(prefix)
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        chown_to_postgres(&dir);
        dir
    })
}

fn bin(name: &str) -> PathBuf {
    let root = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Debian's postgresql package (scripts/test installs it)")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .max()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    root.join("bin").join(name)
}

fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// `program args` as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path, pdeathsig: bool) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
        if pdeathsig {
            command.arg("--pdeathsig=KILL");
        }
        command.arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn chown_to_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The initialised data directory every server copies (initdb runs once per test process).
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let data = process_dir().join("template");
        let out = as_postgres(&bin("initdb"), false)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        data
    })
}

impl PostgresServer {
    /// A dedicated server (crash tests kill and restart it).
    pub fn start() -> Self {
        let scratch = ScratchDir::new("pg");
        Self::on_a_copy_of_the_template(scratch.path().to_path_buf(), Some(scratch), false)
    }

    /// A server in `dir` on a fresh copy of the template; `pdeathsig`: killed by the kernel
    /// when the spawning thread ends.
    fn on_a_copy_of_the_template(
        dir: PathBuf,
        scratch: Option<ScratchDir>,
        pdeathsig: bool,
    ) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("cp")
            .arg("-a")
            .arg(template())
            .arg(dir.join("data"))
            .status()
            .unwrap();
        assert!(status.success(), "copying the PostgreSQL template");
        chown_to_postgres(&dir);
        let mut server = Self {
            port: free_port(),
            dir,
            _scratch: scratch,
            child: None,
        };
        server.spawn(pdeathsig);
        server
    }

    fn spawn(&mut self, pdeathsig: bool) {
        let log = std::fs::File::create(self.dir.join("log")).unwrap();
        let child = as_postgres(&bin("postgres"), pdeathsig)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                // A commit still reaches the kernel before it returns (a `kill -9` of the server
                // loses nothing, which the outage tests rely on); only the flush to the disk is
                // skipped, which a test's machine crash need not survive and which made commits
                // on a loaded CI machine slow enough to stall exports.
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = Command::new(bin("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "postgres did not start: {}",
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn psql(&self, sql: &str) -> std::process::Output {
        Command::new(bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-tAq", "-c", sql])
            .output()
            .expect("psql")
    }

    /// The database of one deployment, named after its hot store (`key`: a Redis URL or a
    /// cluster's seeds), created on first use: every node of that deployment shares it, as in
    /// production.
    pub fn database_for(&self, key: &str) -> String {
        use sha2::Digest;
        let name = format!(
            "app_{}",
            &hex::encode(sha2::Sha256::digest(key.as_bytes()))[..16]
        );
        let exists = |server: &Self| {
            let out = server.psql(&format!(
                "SELECT 1 FROM pg_database WHERE datname = '{name}'"
            ));
            String::from_utf8_lossy(&out.stdout).trim() == "1"
        };
        if !exists(self) {
            let out = self.psql(&format!("CREATE DATABASE {name}"));
            // Two nodes may create it at once: the loser finds it there.
            assert!(
                out.status.success() || exists(self),
                "CREATE DATABASE: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.url(&name)
    }

    /// SIGKILL: no shutdown checkpoint (recovery replays the WAL at the next start).
    /// The postmaster's process id (its backends are its children): the load bench measures
    /// their CPU.
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        // The dead postmaster's backends exit on their own; wait until the port is free.
        std::thread::sleep(Duration::from_millis(200));
        self.spawn(false);
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The server every app of this test process shares (a database each).
pub fn shared() -> &'static PostgresServer {
    static SHARED: OnceLock<PostgresServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        // Started from a thread that lives until the process exits: the server's pdeathsig
        // fires when that thread (not the test's) ends.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let server =
                PostgresServer::on_a_copy_of_the_template(process_dir().join("shared"), None, true);
            tx.send(server).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the shared PostgreSQL started")
    })
}

/// One ledger record as the system of record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub id: String,
    pub kind: String,
    pub amount_micros: i64,
    pub user_key: String,
}

/// A pool on the system of record at `database_url` (PostgreSQL or `sqlite://…`).
async fn connect(database_url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(database_url)
        .await
        .expect("connect to the system of record")
}

/// Runs `statements` in order on the system of record at `database_url` (PostgreSQL or SQLite):
/// what another writer, or damage, leaves there.
pub async fn execute(database_url: &str, statements: &[&str]) {
    let pool = connect(database_url).await;
    for statement in statements {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .unwrap_or_else(|err| panic!("{statement}: {err}"));
    }
    pool.close().await;
}

/// The one integer `query` answers on the system of record at `database_url`.
pub async fn count(database_url: &str, query: &str) -> i64 {
    use sqlx::Row;
    let pool = connect(database_url).await;
    let row = sqlx::query(query).fetch_one(&pool).await.expect(query);
    pool.close().await;
    row.get(0)
}

/// Every ledger record in the record at `database_url` (PostgreSQL or `sqlite://…`), by id.
pub async fn ledger_records(database_url: &str) -> Vec<StoredRecord> {
    use sqlx::Row;
    let pool = connect(database_url).await;
    let rows = sqlx::query("SELECT id, kind, amount_micros, user_key FROM ledger_records")
        .fetch_all(&pool)
        .await
        .expect("read the ledger");
    pool.close().await;
    let mut records: Vec<StoredRecord> = rows
        .iter()
        .map(|row| StoredRecord {
            id: row.get(0),
            kind: row.get(1),
            amount_micros: row.get(2),
            user_key: row.get(3),
        })
        .collect();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}
