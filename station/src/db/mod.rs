//! The device inventory: SQLite (default, WAL) or PostgreSQL, through sqlx with migrations.
//!
//! One module per aggregate: [`devices`], [`keys`], [`events`], [`rotations`], [`exports`].
//! Functions that must compose take a transaction. Timestamps are Unix milliseconds; keys are only ever stored sealed.

pub mod api_tokens;
pub mod audit;
pub mod bulk;
pub mod bundle_events;
pub mod devices;
pub mod events;
pub mod exports;
pub mod keys;
pub mod leases;
pub mod meta;
pub mod operators;
pub mod orders;
pub mod rotations;
pub mod sync;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("unsupported database URL scheme in {0:?}: use sqlite:// or postgres://")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("row is inconsistent: {0}")]
    Inconsistent(String),
    #[error("database (bulk read): {0}")]
    Bulk(String),
    #[error("{0} holds no Keyfill inventory (no station has used it): check the URL")]
    NotAnInventory(String),
    #[error(
        "a new key has the check value {check_value} of a key already in the inventory: the same key twice means \
         the station's random source is failing, or the database holds a cloned or replayed key. Nothing was \
         recorded and nothing was sent. Stop keying on this station and run `keyfill keys check-duplicates`"
    )]
    DuplicateKey { check_value: String },
    #[error(
        "this database's secrets are sealed under another master key than this station's (database {database}, \
         station {station}): it belongs to other stations. Join them with `keyfill init --join-master FILE` \
         (the file from `keyfill master share` on one of them), or use this station's own database"
    )]
    ForeignMasterKey { database: String, station: String },
    /// The station's signing key did not sign (a token removed or locked): nothing was recorded.
    #[error("the audit log entry cannot be signed, so nothing was recorded: {0}")]
    AuditSigning(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to the inventory, migrated on open.
#[derive(Debug, Clone)]
pub struct Inventory {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite inventory's file, for [`bulk`] reads; `None` for PostgreSQL and for a
    /// database in memory, which no second connection could see.
    sqlite_file: Option<std::path::PathBuf>,
    /// SQLite takes one writer at a time; writers of this process queue here, rather than in
    /// SQLite's busy handler, which sleeps 1, 2, 5, 10… ms between tries and under many
    /// concurrent sessions spent most of a provisioning asleep. `None` for PostgreSQL.
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Hides credentials in a database URL for display.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// SQLite creates a database with mode 0644, and its `-wal` and `-shm` files with the mode of the
/// database, whatever the umask: the inventory (sealed keys, names, the event log) would be
/// readable by every local user wherever `--db` puts it. Creating the file 0600 before SQLite
/// opens it makes all three private. A database left readable by an earlier version is made
/// private too, with a warning. Failures are left for SQLite to report when it opens the file.
fn make_sqlite_file_private(url: &str) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if url.contains("mode=ro") {
        return;
    }
    let Some(path) = sqlite_file_of(url) else { return };
    let path = path.as_path();
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let companions = ["", "-wal", "-shm", "-journal"].map(|suffix| {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                std::path::PathBuf::from(name)
            });
            for file in companions {
                let Ok(metadata) = std::fs::metadata(&file) else { continue };
                let mode = metadata.permissions().mode() & 0o777;
                if !metadata.is_file() || mode & 0o077 == 0 {
                    continue;
                }
                match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                    Ok(()) => tracing::warn!(
                        "database file {} was readable by other users (mode {mode:o}); it is now 0600",
                        file.display()
                    ),
                    Err(error) => tracing::warn!(
                        "database file {} is readable by other users (mode {mode:o}) and cannot be made private: \
                         {error}; restrict it (chmod 600) or keep it in a private folder",
                        file.display()
                    ),
                }
            }
        }
        Err(_) => {}
    }
}

/// How far a database's schema is from this build's, read without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// A SQLite file that does not exist yet.
    NoFile,
    /// The newest migration applied (none yet: 0), and this build's newest.
    Migrations { applied: i64, expected: i64 },
}

/// Connects to `url` (a SQLite file read-only) and reads which migrations it has; migrates
/// nothing, creates nothing.
pub async fn schema_state(url: &str) -> Result<SchemaState, DbError> {
    sqlx::any::install_default_drivers();
    let expected = |migrator: &sqlx::migrate::Migrator| migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let (url, expected) = if url.starts_with("sqlite:") {
        if is_new_sqlite_file(url) {
            return Ok(SchemaState::NoFile);
        }
        let read_only = format!("{url}{}mode=ro", if url.contains('?') { '&' } else { '?' });
        (if url.contains("mode=") { url.to_owned() } else { read_only }, expected(&SQLITE_MIGRATIONS))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        (url.to_owned(), expected(&POSTGRES_MIGRATIONS))
    } else {
        return Err(DbError::UnsupportedUrl(redact_url(url)));
    };
    let options = AnyConnectOptions::from_str(&url)?;
    let pool =
        AnyPoolOptions::new().max_connections(1).acquire_timeout(Duration::from_secs(5)).connect_with(options).await?;
    let applied: Result<(Option<i64>,), _> =
        sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE").fetch_one(&pool).await;
    pool.close().await;
    // No migrations table: nothing applied yet.
    let applied = applied.map(|(version,)| version.unwrap_or(0)).unwrap_or(0);
    Ok(SchemaState::Migrations { applied, expected })
}

/// Whether `url` names a SQLite file that does not exist yet (opening it creates it).
pub fn is_new_sqlite_file(url: &str) -> bool {
    url.starts_with("sqlite:") && sqlite_file_of(url).is_some_and(|path| !path.exists())
}

/// The file of a SQLite URL; `None` for a database in memory.
fn sqlite_file_of(url: &str) -> Option<std::path::PathBuf> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let in_memory =
        url.contains("mode=memory") || path.as_os_str().is_empty() || path.starts_with("file:sqlx-in-memory");
    (!in_memory).then(|| path.to_path_buf())
}

impl Inventory {
    /// Opens (creating a SQLite file if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(redact_url(url)));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        if backend == Backend::Sqlite {
            make_sqlite_file_private(&url);
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        connection
                            .execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let sqlite_file = match backend {
            Backend::Sqlite => sqlite_file_of(&url),
            Backend::Postgres => None,
        };
        let write_gate = (backend == Backend::Sqlite).then(Arc::default);
        Ok(Inventory { pool, backend, sqlite_file, write_gate })
    }

    /// [`Inventory::open`] for a database that must hold an inventory already (the target of a
    /// sync): any other database is refused before anything is created in it.
    pub async fn open_existing(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let exists = if url.starts_with("sqlite:") {
            !is_new_sqlite_file(url) && {
                let read_only = format!("{url}{}mode=ro", if url.contains('?') { '&' } else { '?' });
                has_inventory(&read_only, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'inventory_meta'").await?
            }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            has_inventory(
                url,
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'inventory_meta' \
                 AND table_schema = current_schema()",
            )
            .await?
        } else {
            return Err(DbError::UnsupportedUrl(redact_url(url)));
        };
        if !exists {
            return Err(DbError::NotAnInventory(redact_url(url)));
        }
        Self::open(url).await
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Held while this process writes: taken before a write transaction begins (or a single
    /// writing statement runs) and dropped after it commits. Never taken twice by one task.
    pub async fn write_gate(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite inventory's file, when it is one a second connection can open.
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.sqlite_file.as_deref()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether the database at `url` answers `count_sql` with a count above zero, on one connection.
async fn has_inventory(url: &str, count_sql: &str) -> Result<bool, DbError> {
    use sqlx::Connection;
    let options = AnyConnectOptions::from_str(url)?;
    let mut connection = tokio::time::timeout(Duration::from_secs(15), sqlx::AnyConnection::connect_with(&options))
        .await
        .map_err(|_| DbError::Sqlx(sqlx::Error::PoolTimedOut))??;
    let (count,): (i64,) = sqlx::query_as(count_sql).fetch_one(&mut connection).await?;
    connection.close().await?;
    Ok(count > 0)
}

/// Commits one named state change of the inventory. A crash test may make the station die on
/// either side of it (`commit:WHAT:before`, `commit:WHAT:after`; `keyfill_agent::crash`).
pub async fn commit(tx: sqlx::Transaction<'_, sqlx::Any>, what: &str) -> Result<(), DbError> {
    keyfill_agent::crash::point(&format!("commit:{what}:before"));
    tx.commit().await?;
    keyfill_agent::crash::point(&format!("commit:{what}:after"));
    Ok(())
}
