//! The connection pools both Gatehouse databases use (the IdP's store and
//! the payments service's): the same settings, written once.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// SQLite has one writer at a time; a few connections serve concurrent
/// readers (WAL) while writers queue on the busy timeout.
const SQLITE_CONNECTIONS: u32 = 4;
const POSTGRES_CONNECTIONS: u32 = 10;

/// How long a SQLite connection waits for a lock another process holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The lock wait of the [`Checkpointer`]'s restart, and back to
/// [`BUSY_TIMEOUT`] after it (milliseconds). The restart waits for readers
/// still in the WAL while it holds the one writer, so it gives up soon and
/// tries again on a later pass.
const RESTART_PATIENCE: &str = "PRAGMA busy_timeout = 50";
const USUAL_PATIENCE: &str = "PRAGMA busy_timeout = 5000";

fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT))
}

fn sqlite_pool(connections: u32) -> SqlitePoolOptions {
    // No ping before each use (sqlx's default): the connection is in this
    // process, and the ping was one more round trip to its worker thread
    // before every query (6-9% of the server's CPU in profiles under load,
    // see BENCHMARKS.md).
    SqlitePoolOptions::new()
        .max_connections(connections)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
}

/// Opens `sqlite://path` (or `sqlite:path`) in WAL mode, creating the file
/// if it is missing: one pool for everything.
pub async fn sqlite(url: &str) -> Result<SqlitePool, sqlx::Error> {
    sqlite_pool(SQLITE_CONNECTIONS).connect_with(sqlite_options(url)?).await
}

/// The same database as two pools: readers, and one writer connection, so
/// that this process's writers wait their turn in the pool rather than in
/// SQLite's busy handler (which sleeps). The writer never checkpoints; the
/// returned [`Checkpointer`] does, on a reader, until it is dropped.
pub async fn sqlite_pair(url: &str) -> Result<SqlitePair, sqlx::Error> {
    let options = sqlite_options(url)?;
    // The writer first: it creates the file and switches it to WAL.
    let writer = sqlite_pool(1)
        .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
        .await?;
    let readers = sqlite_pool(SQLITE_CONNECTIONS).connect_with(options).await?;
    let checkpointer = Checkpointer::start(readers.clone(), writer.clone());
    Ok(SqlitePair {
        readers,
        writer,
        checkpointer,
    })
}

/// What [`sqlite_pair`] opens.
pub struct SqlitePair {
    pub readers: SqlitePool,
    pub writer: SqlitePool,
    pub checkpointer: Checkpointer,
}

/// How often the [`Checkpointer`] copies the WAL into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL frames (pages, 4 KiB each) after which the [`Checkpointer`] also
/// has the WAL start again from its beginning: the WAL file stays near
/// 64 MiB.
pub const RESTART_AFTER_FRAMES: i64 = 16_384;

/// Copies the WAL into the database file every [`CHECKPOINT_EVERY`], from
/// a reader connection (`PRAGMA wal_checkpoint(PASSIVE)`: it waits for no
/// one and no one waits for it), until dropped.
///
/// Left to itself, SQLite checkpoints inside the commit that takes the WAL
/// past 1,000 pages. With `synchronous=NORMAL` the checkpoint is the only
/// step that syncs to disk, so every so many batches the one writer
/// stopped for milliseconds to tens of milliseconds, and every write
/// queued behind it waited as long (BENCHMARKS.md, session 4). Here the
/// writer's commits only append to the WAL; what they wrote reaches the
/// disk within [`CHECKPOINT_EVERY`], also when the database is nearly idle
/// (before, only once 1,000 pages had been written), and in small steps
/// (one big sync slowed every request while it ran).
///
/// A checkpoint that runs beside a busy writer never leaves the WAL fully
/// copied and unread at once, which SQLite needs to start it again from
/// the beginning, so alone it would grow the WAL file without end. Once
/// the WAL holds [`RESTART_AFTER_FRAMES`], the checkpointer copies again
/// on the reader until little is left (each pass copies what the writer
/// added during the last one), then takes the writer connection from its
/// pool, so no write runs meanwhile, and runs
/// `PRAGMA wal_checkpoint(RESTART)` there: it copies that little, waits
/// for the readers still in the WAL, and the next write starts the WAL
/// again. That stops the writer for a few milliseconds about once a
/// second at 1,500 sign-on hops per second.
#[derive(Debug)]
pub struct Checkpointer {
    /// Dropping it ends the task.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Passive passes before a restart: at most this many more, and fewer once
/// a pass finds less than [`LITTLE_LEFT`] new frames.
const CATCH_UP_PASSES: usize = 3;
const LITTLE_LEFT: i64 = 64;

impl Checkpointer {
    fn start(readers: SqlitePool, writer: SqlitePool) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
                }
                if readers.is_closed() || writer.is_closed() {
                    return;
                }
                if let Err(error) = Self::checkpoint(&readers, &writer, RESTART_AFTER_FRAMES).await {
                    tracing::warn!(%error, "SQLite checkpoint failed; the next one tries again");
                }
            }
        });
        Self { _stop: stop }
    }

    /// One passive pass on a reader: how many frames the WAL holds.
    async fn passive(readers: &SqlitePool) -> Result<i64, sqlx::Error> {
        // (busy, frames in the WAL, frames copied)
        let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(readers)
            .await?;
        Ok(frames)
    }

    /// Copies the WAL on a reader; once it holds `restart_after` frames,
    /// has it start again (see above).
    async fn checkpoint(readers: &SqlitePool, writer: &SqlitePool, restart_after: i64) -> Result<(), sqlx::Error> {
        let mut frames = Self::passive(readers).await?;
        if frames < restart_after {
            return Ok(());
        }
        for _ in 0..CATCH_UP_PASSES {
            let now = Self::passive(readers).await?;
            let added = now - frames;
            frames = now;
            if added < LITTLE_LEFT {
                break;
            }
        }
        // A reader that began before the last frames were copied (a long
        // read, a reader of another process) keeps the WAL from starting
        // again; waiting for it SQLite's usual 5 s would stop every write
        // as long. So wait a little, and if it is still there (the pragma
        // answers busy), leave the restart to a later pass.
        let mut conn = writer.acquire().await?;
        sqlx::query(RESTART_PATIENCE).execute(&mut *conn).await?;
        let restarted = sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&mut *conn).await;
        sqlx::query(USUAL_PATIENCE).execute(&mut *conn).await?;
        restarted?;
        Ok(())
    }
}

/// Connects to `postgres://...` (one connection is opened now, so a bad URL
/// or an unreachable server fails here).
pub async fn postgres(url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(POSTGRES_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database file in the temporary folder, removed when dropped.
    struct TempDb(std::path::PathBuf);

    impl TempDb {
        fn new(name: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            Self(std::env::temp_dir().join(format!("gatehouse-{name}-{}-{nanos}.db", std::process::id())))
        }

        fn url(&self) -> String {
            format!("sqlite://{}", self.0.display())
        }

        fn size(&self, suffix: &str) -> u64 {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            std::fs::metadata(path).map_or(0, |m| m.len())
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.0.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    async fn write_rows(writer: &SqlitePool, rows: usize) {
        sqlx::query("CREATE TABLE IF NOT EXISTS t (v TEXT NOT NULL)")
            .execute(writer)
            .await
            .expect("create");
        for _ in 0..rows {
            sqlx::query("INSERT INTO t (v) VALUES (hex(randomblob(1000)))")
                .execute(writer)
                .await
                .expect("insert");
        }
    }

    /// The writer never checkpoints, so what reaches the database file got
    /// there through the checkpointer, in the background.
    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_into_the_database() {
        let db = TempDb::new("checkpointer");
        let pair = sqlite_pair(&db.url()).await.expect("open");
        write_rows(&pair.writer, 2_000).await;
        tokio::time::sleep(CHECKPOINT_EVERY * 4).await;
        assert!(
            db.size("") > 2_000 * 2_000,
            "database file {} bytes, WAL {} bytes",
            db.size(""),
            db.size("-wal")
        );
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pair.readers)
            .await
            .expect("count");
        assert_eq!(count, 2_000);
    }

    /// Past the limit the WAL starts again from its beginning instead of
    /// growing: the next write lands at its start.
    #[tokio::test]
    async fn past_the_limit_the_wal_starts_again() {
        let db = TempDb::new("restart");
        let pair = sqlite_pair(&db.url()).await.expect("open");
        // Out of the background checkpointer's way: this test calls it.
        drop(pair.checkpointer);
        write_rows(&pair.writer, 500).await;
        let before = db.size("-wal");
        Checkpointer::checkpoint(&pair.readers, &pair.writer, 100)
            .await
            .expect("checkpoint");
        write_rows(&pair.writer, 1).await;
        let frames = Checkpointer::passive(&pair.readers).await.expect("frames");
        assert!(
            frames < 10,
            "{frames} frames in the WAL after a restart (it was {before} bytes)"
        );
        assert!(before > 500 * 1_000);
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pair.readers)
            .await
            .expect("count");
        assert_eq!(count, 501);
    }

    /// A reader still in the WAL postpones the restart (the writer waits
    /// for it only briefly) and the writer's usual lock wait comes back;
    /// once the reader is done, the next pass restarts the WAL.
    #[tokio::test]
    async fn a_reader_in_the_wal_postpones_the_restart() {
        let db = TempDb::new("postpone");
        let pair = sqlite_pair(&db.url()).await.expect("open");
        drop(pair.checkpointer);
        write_rows(&pair.writer, 500).await;
        let mut reader = pair.readers.acquire().await.expect("reader");
        sqlx::query("BEGIN").execute(&mut *reader).await.expect("begin");
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *reader)
            .await
            .expect("read");
        write_rows(&pair.writer, 10).await;

        Checkpointer::checkpoint(&pair.readers, &pair.writer, 100)
            .await
            .expect("checkpoint");
        write_rows(&pair.writer, 1).await;
        let frames = || async { Checkpointer::passive(&pair.readers).await.expect("frames") };
        assert!(frames().await > 100, "restarted under a reader");
        let wait: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&pair.writer)
            .await
            .expect("busy_timeout");
        assert_eq!(Ok(wait), i64::try_from(BUSY_TIMEOUT.as_millis()));

        sqlx::query("COMMIT").execute(&mut *reader).await.expect("end read");
        drop(reader);
        Checkpointer::checkpoint(&pair.readers, &pair.writer, 100)
            .await
            .expect("checkpoint");
        write_rows(&pair.writer, 1).await;
        assert!(frames().await < 10, "not restarted after the reader");
    }
}
