//! Channel catalogue and viewing sessions in SQL, through sqlx.
//!
//! One code path serves SQLite (the embedded default: `sqlite://as.db?mode=rwc` creates the
//! file on first run, `sqlite::memory:` for tests) and PostgreSQL (`postgres://...`, how
//! several AS instances share one catalogue): [`Store`] holds an [`sqlx::AnyPool`], queries
//! are plain `sqlx::query` with `.bind` and `$n` placeholders (which both back ends read),
//! and the schema is one set of portable migrations in `as-server/migrations/`
//! (TEXT, BIGINT, times as integer epoch milliseconds), embedded at compile time and run
//! by [`Store::connect`].
//!
//! The store never reads the clock: every time is an argument in milliseconds since the
//! Unix epoch, given by the caller (the service layer's driver).
//!
//! Durability and cost (SQLite file): the store keeps one connection (SQLite has one
//! writer at a time anyway; one connection keeps its page cache warm), in WAL mode with
//! `synchronous = NORMAL` (set by [`Store::connect`] when the connection opens), the
//! standard choice for WAL: a commit appends to the WAL file without an `fsync`; the WAL is
//! synced at checkpoints. A committed row survives a crash or kill of the AS process (the data is in
//! the OS page cache, and SQLite recovers the WAL on the next open); an OS crash or power
//! loss may lose the last transactions committed before it (never corrupting the file).
//! PostgreSQL keeps its own server-side durability settings.
//!
//! The per-call writes are single statements in autocommit mode (one round trip to sqlx's
//! SQLite worker thread each, no `BEGIN`/`COMMIT`): [`Store::start_session`] is an
//! `INSERT ... SELECT ... WHERE EXISTS` (the channel check and the insert in one atomic
//! statement) and [`Store::end_session`] / [`Store::switch_session_channel`] are an
//! `UPDATE ... RETURNING` (PostgreSQL, SQLite 3.35+); only their error paths read again to
//! tell `NotFound` from `Ended`.
//!
//! Channel cache (SQLite only): a SQLite file belongs to one AS process, so every change
//! to its channels goes through this [`Store`], which keeps the rows it has read or written
//! in memory and answers [`Store::get_channel`] (one per join) from there. Writes drop the
//! cached row; a generation counter keeps a read that raced a write from caching the old
//! row. On PostgreSQL (a catalogue shared by several AS instances) every read goes to SQL.
//!
//! Errors are [`Error`]: `Duplicate` and `NotFound` / `Ended` for the caller's mistakes,
//! `InvalidData` for rows this version cannot read, `Db` / `Migrate` for the database.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

mod aaa;
pub use aaa::{Cdr, CdrInsert, Profile, ProfileUpdate, Subscriber};
mod outbox;
pub use outbox::OutboxRecord;

/// Errors of the catalogue store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A row with this key already exists (channel id, session id).
    #[error("{0} already exists")]
    Duplicate(String),
    /// No such row (channel, session).
    #[error("{0} not found")]
    NotFound(String),
    /// The session has already ended.
    #[error("session {0} has already ended")]
    Ended(String),
    /// A stored value this code cannot read (for example an unknown channel kind).
    #[error("invalid stored data: {0}")]
    InvalidData(String),
    /// The URL names a database this build does not support.
    #[error("unsupported database URL {0:?} (expected sqlite:... or postgres://...)")]
    UnsupportedUrl(String),
    /// Schema migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database error.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The database behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (file or memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// What a channel is (the `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// A producer-fed live channel (file, camera, encoder).
    Producer,
    /// A UE's personal channel, created by INVITE to the creation URI.
    Personal,
    /// A schedule or rule over other channels, spliced by the relay.
    Personalized,
}

impl ChannelKind {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Personal => "personal",
            Self::Personalized => "personalized",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "producer" => Ok(Self::Producer),
            "personal" => Ok(Self::Personal),
            "personalized" => Ok(Self::Personalized),
            other => Err(Error::InvalidData(format!("channel kind {other:?}"))),
        }
    }
}

/// A catalogue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Channel id (the user part of `sip:<id>@domain`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Kind.
    pub kind: ChannelKind,
    /// Owner's AoR for personal channels.
    pub owner: Option<String>,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
    /// Where the producer sends RTP (the relay's ingest address), if allocated.
    pub ingest_addr: Option<SocketAddr>,
    /// Relay holding the channel's ingest, if any.
    pub relay: Option<String>,
}

/// A viewer's session (one INVITE dialog watching a channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Session id (chosen by the service, unique).
    pub id: String,
    /// Channel being watched now.
    pub channel_id: String,
    /// Viewer's AoR / From URI.
    pub viewer_uri: String,
    /// SIP Call-ID of the dialog.
    pub call_id: String,
    /// Relay serving the viewer.
    pub relay: Option<String>,
    /// Start time, ms since the Unix epoch.
    pub started_ms: i64,
    /// Time of the last channel switch, if any.
    pub switched_ms: Option<i64>,
    /// Number of channel switches.
    pub zaps: i64,
    /// End time; `None` while active.
    pub ended_ms: Option<i64>,
}

impl Session {
    /// A new active session.
    pub fn new(
        id: impl Into<String>,
        channel_id: impl Into<String>,
        viewer_uri: impl Into<String>,
        call_id: impl Into<String>,
        relay: Option<String>,
        started_ms: i64,
    ) -> Self {
        Self {
            id: id.into(),
            channel_id: channel_id.into(),
            viewer_uri: viewer_uri.into(),
            call_id: call_id.into(),
            relay,
            started_ms,
            switched_ms: None,
            zaps: 0,
            ended_ms: None,
        }
    }

    /// Whether the session is still running.
    pub fn is_active(&self) -> bool {
        self.ended_ms.is_none()
    }

    /// Duration in ms, once ended (for the Rf ACR STOP).
    pub fn duration_ms(&self) -> Option<i64> {
        self.ended_ms.map(|e| e - self.started_ms)
    }
}

/// The schema migrations of `as-server/migrations/`, embedded at compile time:
/// `(version, description, sql)`, in version order. A test checks that every file in the
/// directory is listed here. (This is what `sqlx::migrate!` generates; listing them by hand
/// spares the workspace the sqlx `macros` feature.)
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        20250101000001,
        "catalogue",
        include_str!("../../migrations/20250101000001_catalogue.sql"),
    ),
    (
        20250201000001,
        "aaa",
        include_str!("../../migrations/20250201000001_aaa.sql"),
    ),
    (
        20250301000001,
        "aaa outbox",
        include_str!("../../migrations/20250301000001_aaa_outbox.sql"),
    ),
    (
        20250401000001,
        "personalized definition",
        include_str!("../../migrations/20250401000001_personalized_definition.sql"),
    ),
];

/// [`MIGRATIONS`] as an sqlx migration source.
#[derive(Debug, Clone, Copy)]
struct Embedded;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl<'s> sqlx::migrate::MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> BoxFuture<'s, Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    sqlx::migrate::Migration::new(
                        version,
                        description.into(),
                        sqlx::migrate::MigrationType::Simple,
                        sql.into(),
                        false,
                    )
                })
                .collect())
        })
    }
}

const CHANNEL_COLS: &str = "id, name, kind, owner, created_ms, ingest_addr, relay";
const SESSION_COLS: &str =
    "id, channel_id, viewer_uri, call_id, relay, started_ms, switched_ms, zaps, ended_ms";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn channel_from_row(row: &AnyRow) -> Result<Channel, Error> {
    let kind: String = row.try_get("kind")?;
    let ingest: Option<String> = row.try_get("ingest_addr")?;
    let ingest_addr = ingest
        .map(|s| {
            s.parse::<SocketAddr>()
                .map_err(|_| Error::InvalidData(format!("ingest address {s:?}")))
        })
        .transpose()?;
    Ok(Channel {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: kind.parse()?,
        owner: row.try_get("owner")?,
        created_ms: row.try_get("created_ms")?,
        ingest_addr,
        relay: row.try_get("relay")?,
    })
}

fn session_from_row(row: &AnyRow) -> Result<Session, Error> {
    Ok(Session {
        id: row.try_get("id")?,
        channel_id: row.try_get("channel_id")?,
        viewer_uri: row.try_get("viewer_uri")?,
        call_id: row.try_get("call_id")?,
        relay: row.try_get("relay")?,
        started_ms: row.try_get("started_ms")?,
        switched_ms: row.try_get("switched_ms")?,
        zaps: row.try_get("zaps")?,
        ended_ms: row.try_get("ended_ms")?,
    })
}

/// The catalogue store: a connection pool over SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Channel rows by id, SQLite only (see the module docs).
    channels: Option<std::sync::Arc<std::sync::Mutex<ChannelCache>>>,
}

/// Channel rows known to be current, and a counter bumped by every channel write.
#[derive(Debug, Default)]
struct ChannelCache {
    rows: std::collections::HashMap<String, Channel>,
    generation: u64,
}

impl Store {
    /// Connects and brings the schema up to date.
    ///
    /// `url` is `sqlite://path?mode=rwc` (file created if missing), `sqlite::memory:`, or
    /// `postgres://user:pass@host/db`.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::UnsupportedUrl(url.to_owned()));
        };
        let in_memory =
            backend == Backend::Sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
        let opts = if in_memory {
            // An in-memory SQLite database lives as long as its last connection: keep
            // exactly one, forever.
            AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else if backend == Backend::Sqlite {
            // Write-ahead logging (persistent in the file) and `synchronous = NORMAL` (per
            // connection): no fsync per commit, see the module docs for what that means for
            // durability. One connection, kept for good: SQLite has one writer at a time
            // anyway, every statement here is short and indexed, and a single connection
            // keeps its page cache warm (a second connection's commits make SQLite drop it
            // and re-read pages) with no WAL-index lock hand-offs or busy-handler sleeps
            // between connections.
            AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .fetch_optional(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
        } else {
            AnyPoolOptions::new().max_connections(8)
        };
        // A SQLite connection is a file handle in this process: it cannot go stale, so the
        // pool does not ping it (one worker-thread round trip) before every query.
        let opts = opts.test_before_acquire(backend != Backend::Sqlite);
        let pool = opts.connect(url).await?;
        sqlx::migrate::Migrator::new(Embedded)
            .await?
            .run(&pool)
            .await?;
        let channels = (backend == Backend::Sqlite).then(Default::default);
        Ok(Self {
            pool,
            backend,
            channels,
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn cache(&self) -> Option<std::sync::MutexGuard<'_, ChannelCache>> {
        self.channels
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// A channel write is under way or done: forget the row, and keep reads that started
    /// before it from caching what they saw.
    fn forget_channel(&self, id: &str) {
        if let Some(mut c) = self.cache() {
            c.rows.remove(id);
            c.generation += 1;
        }
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Adds a channel. `Duplicate` if the id is taken.
    pub async fn create_channel(&self, ch: &Channel) -> Result<(), Error> {
        let r = sqlx::query(
            "INSERT INTO channels (id, name, kind, owner, created_ms, ingest_addr, relay) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&ch.id)
        .bind(&ch.name)
        .bind(ch.kind.as_str())
        .bind(ch.owner.as_deref())
        .bind(ch.created_ms)
        .bind(ch.ingest_addr.map(|a| a.to_string()))
        .bind(ch.relay.as_deref())
        .execute(&self.pool)
        .await;
        self.forget_channel(&ch.id);
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(Error::Duplicate(format!("channel {}", ch.id)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a channel with its definition (a personalised channel's JSON, kept so a restart
    /// can re-create it; [`Store::channel_definitions`]). `Duplicate` if the id is taken.
    pub async fn create_channel_with_definition(
        &self,
        ch: &Channel,
        definition: &str,
    ) -> Result<(), Error> {
        let r = sqlx::query(
            "INSERT INTO channels \
             (id, name, kind, owner, created_ms, ingest_addr, relay, definition) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&ch.id)
        .bind(&ch.name)
        .bind(ch.kind.as_str())
        .bind(ch.owner.as_deref())
        .bind(ch.created_ms)
        .bind(ch.ingest_addr.map(|a| a.to_string()))
        .bind(ch.relay.as_deref())
        .bind(definition)
        .execute(&self.pool)
        .await;
        self.forget_channel(&ch.id);
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(Error::Duplicate(format!("channel {}", ch.id)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a channel's definition (`None` clears it). `NotFound` for an unknown channel.
    pub async fn set_channel_definition(
        &self,
        id: &str,
        definition: Option<&str>,
    ) -> Result<(), Error> {
        let q = sqlx::query("UPDATE channels SET definition = $1 WHERE id = $2")
            .bind(definition)
            .bind(id);
        self.write_channel(id, q).await
    }

    /// One channel's definition (`None` when it has none). `NotFound` for an unknown channel.
    pub async fn channel_definition(&self, id: &str) -> Result<Option<String>, Error> {
        let row = sqlx::query("SELECT definition FROM channels WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("channel {id}")))?;
        Ok(row.try_get("definition")?)
    }

    /// Every channel that has a definition, as `(id, definition)`, oldest first.
    pub async fn channel_definitions(&self) -> Result<Vec<(String, String)>, Error> {
        let rows = sqlx::query(
            "SELECT id, definition FROM channels WHERE definition IS NOT NULL \
             ORDER BY created_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("definition")?)))
            .collect()
    }

    /// Reads one channel.
    pub async fn get_channel(&self, id: &str) -> Result<Channel, Error> {
        let generation = match self.cache() {
            Some(c) => match c.rows.get(id) {
                Some(ch) => return Ok(ch.clone()),
                None => Some(c.generation),
            },
            None => None,
        };
        let sql = format!("SELECT {CHANNEL_COLS} FROM channels WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("channel {id}")))?;
        let ch = channel_from_row(&row)?;
        if let (Some(mut c), Some(g)) = (self.cache(), generation) {
            if c.generation == g {
                c.rows.insert(ch.id.clone(), ch.clone());
            }
        }
        Ok(ch)
    }

    /// All channels, oldest first.
    pub async fn list_channels(&self) -> Result<Vec<Channel>, Error> {
        let sql = format!("SELECT {CHANNEL_COLS} FROM channels ORDER BY created_ms, id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(channel_from_row).collect()
    }

    /// Sets where a channel's producer sends (after the relay allocated ingest).
    pub async fn set_channel_ingest(
        &self,
        id: &str,
        ingest_addr: Option<SocketAddr>,
        relay: Option<&str>,
    ) -> Result<(), Error> {
        let q = sqlx::query("UPDATE channels SET ingest_addr = $1, relay = $2 WHERE id = $3")
            .bind(ingest_addr.map(|a| a.to_string()))
            .bind(relay)
            .bind(id);
        self.write_channel(id, q).await
    }

    /// Removes a channel. Its sessions stay (history for accounting).
    pub async fn delete_channel(&self, id: &str) -> Result<(), Error> {
        let q = sqlx::query("DELETE FROM channels WHERE id = $1").bind(id);
        self.write_channel(id, q).await
    }

    /// Runs `q`, a write to the row of channel `id`, with the cache forgotten before and after
    /// it; `NotFound` when it touched no row.
    async fn write_channel<'q>(
        &self,
        id: &str,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<(), Error> {
        self.forget_channel(id);
        let r = q.execute(&self.pool).await;
        self.forget_channel(id);
        if r?.rows_affected() == 0 {
            return Err(Error::NotFound(format!("channel {id}")));
        }
        Ok(())
    }

    /// Records a new session. `NotFound` if its channel does not exist, `Duplicate` if
    /// the session id is taken.
    ///
    /// One statement (autocommit): the row is inserted only if the channel exists, so the
    /// check and the insert are atomic without an explicit transaction.
    pub async fn start_session(&self, s: &Session) -> Result<(), Error> {
        self.insert_session(s, true).await
    }

    /// [`Store::start_session`] of a channel this catalogue does not hold (one another AS
    /// owns, watched here through the overlay): no channel check.
    pub async fn start_session_unlisted(&self, s: &Session) -> Result<(), Error> {
        self.insert_session(s, false).await
    }

    async fn insert_session(&self, s: &Session, listed: bool) -> Result<(), Error> {
        let sql = if listed {
            "INSERT INTO sessions \
             (id, channel_id, viewer_uri, call_id, relay, started_ms, switched_ms, zaps, ended_ms) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
             WHERE EXISTS (SELECT 1 FROM channels WHERE id = $2)"
        } else {
            "INSERT INTO sessions \
             (id, channel_id, viewer_uri, call_id, relay, started_ms, switched_ms, zaps, ended_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        };
        let r = sqlx::query(sql)
            .bind(&s.id)
            .bind(&s.channel_id)
            .bind(&s.viewer_uri)
            .bind(&s.call_id)
            .bind(s.relay.as_deref())
            .bind(s.started_ms)
            .bind(s.switched_ms)
            .bind(s.zaps)
            .bind(s.ended_ms)
            .execute(&self.pool)
            .await;
        match r {
            Ok(r) if r.rows_affected() == 0 => {
                Err(Error::NotFound(format!("channel {}", s.channel_id)))
            }
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::Duplicate(format!("session {}", s.id))),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads one session.
    pub async fn get_session(&self, id: &str) -> Result<Session, Error> {
        let sql = format!("SELECT {SESSION_COLS} FROM sessions WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("session {id}")))?;
        session_from_row(&row)
    }

    /// The active session of a dialog, by SIP Call-ID.
    pub async fn active_session_by_call_id(&self, call_id: &str) -> Result<Session, Error> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE call_id = $1 AND ended_ms IS NULL \
             ORDER BY started_ms DESC"
        );
        let row = sqlx::query(&sql)
            .bind(call_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("active session with Call-ID {call_id}")))?;
        session_from_row(&row)
    }

    /// Moves an active session to another channel (a zap) at `now_ms`.
    /// `NotFound` for an unknown session or channel, `Ended` for an ended session.
    pub async fn switch_session_channel(
        &self,
        id: &str,
        channel_id: &str,
        now_ms: i64,
    ) -> Result<Session, Error> {
        self.switch_session(id, channel_id, now_ms, true).await
    }

    /// [`Store::switch_session_channel`] to a channel this catalogue does not hold (one
    /// another AS owns, watched here through the overlay): no channel check.
    pub async fn switch_session_channel_unlisted(
        &self,
        id: &str,
        channel_id: &str,
        now_ms: i64,
    ) -> Result<Session, Error> {
        self.switch_session(id, channel_id, now_ms, false).await
    }

    async fn switch_session(
        &self,
        id: &str,
        channel_id: &str,
        now_ms: i64,
        listed: bool,
    ) -> Result<Session, Error> {
        let check = if listed {
            "AND EXISTS (SELECT 1 FROM channels WHERE id = $1) "
        } else {
            ""
        };
        let sql = format!(
            "UPDATE sessions SET channel_id = $1, switched_ms = $2, zaps = zaps + 1 \
             WHERE id = $3 AND ended_ms IS NULL \
             {check}RETURNING {SESSION_COLS}"
        );
        let rows = sqlx::query(&sql)
            .bind(channel_id)
            .bind(now_ms)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        if let Some(row) = rows.first() {
            return session_from_row(row);
        }
        // Nothing changed: say why (unknown channel first, as the zap names it).
        if listed {
            let channel = sqlx::query("SELECT id FROM channels WHERE id = $1")
                .bind(channel_id)
                .fetch_optional(&self.pool)
                .await?;
            if channel.is_none() {
                return Err(Error::NotFound(format!("channel {channel_id}")));
            }
        }
        Err(self.not_active(id).await)
    }

    /// Records that an active session's media now comes from `relay` (a relay failover
    /// moved it). `NotFound` for an unknown session, `Ended` for an ended one.
    pub async fn set_session_relay(&self, id: &str, relay: Option<&str>) -> Result<(), Error> {
        let done = sqlx::query("UPDATE sessions SET relay = $1 WHERE id = $2 AND ended_ms IS NULL")
            .bind(relay)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(self.not_active(id).await);
        }
        Ok(())
    }

    /// Ends an active session at `now_ms` and returns it (with its duration).
    /// `NotFound` for an unknown session, `Ended` if it already ended.
    pub async fn end_session(&self, id: &str, now_ms: i64) -> Result<Session, Error> {
        let sql = format!(
            "UPDATE sessions SET ended_ms = $1 WHERE id = $2 AND ended_ms IS NULL \
             RETURNING {SESSION_COLS}"
        );
        let rows = sqlx::query(&sql)
            .bind(now_ms)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        match rows.first() {
            Some(row) => session_from_row(row),
            None => Err(self.not_active(id).await),
        }
    }

    /// Why an `UPDATE ... WHERE id = $ AND ended_ms IS NULL` matched nothing: `NotFound`
    /// or `Ended` (or the database error met while looking).
    async fn not_active(&self, id: &str) -> Error {
        match self.get_session(id).await {
            Ok(_) => Error::Ended(id.to_owned()),
            Err(e) => e,
        }
    }

    /// Sessions, oldest first; only the running ones if `active_only`.
    pub async fn list_sessions(&self, active_only: bool) -> Result<Vec<Session>, Error> {
        let filter = if active_only {
            "WHERE ended_ms IS NULL "
        } else {
            ""
        };
        let sql = format!("SELECT {SESSION_COLS} FROM sessions {filter}ORDER BY started_ms, id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Number of active sessions per channel id, for the channel list and relay ref-counts.
    pub async fn viewer_counts(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT channel_id, COUNT(*) AS n FROM sessions WHERE ended_ms IS NULL \
             GROUP BY channel_id ORDER BY channel_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("channel_id")?, r.try_get("n")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection of a SQLite file store runs WAL with `synchronous = NORMAL` (the
    /// durability the module docs promise), not SQLite's default FULL, and is the only one.
    #[tokio::test]
    async fn sqlite_file_connection_uses_wal_and_synchronous_normal() {
        let dir = std::env::temp_dir().join(format!("as-store-pragma-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.display());
        let store = Store::connect(&url).await.unwrap();
        let mut conns = vec![store.pool.acquire().await.unwrap()];
        assert!(
            store.pool.try_acquire().is_none(),
            "one connection for a SQLite file"
        );
        for c in &mut conns {
            let sync: i64 = sqlx::query("PRAGMA synchronous")
                .fetch_one(&mut **c)
                .await
                .unwrap()
                .try_get(0)
                .unwrap();
            assert_eq!(sync, 1, "synchronous = NORMAL");
            let mode: String = sqlx::query("PRAGMA journal_mode")
                .fetch_one(&mut **c)
                .await
                .unwrap()
                .try_get(0)
                .unwrap();
            assert_eq!(mode, "wal");
        }
        drop(conns);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
