//! The embedded AAA's tables (migration `20250201000001_aaa.sql`): subscribers with their
//! digest credentials, IPTV profiles (the Sh repository data), and accounting records (Rf
//! CDRs). Same rules as the catalogue: portable SQL with `$n` placeholders, times in
//! epoch milliseconds given by the caller, no clock read here.
//!
//! Credentials are stored as HA1 = MD5(username:realm:password) (RFC 2617 section
//! 3.2.2.2, RFC 3261 section 22.4), never as the password: `crate::aaa::digest::ha1`
//! makes it.
//!
//! CDRs are keyed by (Session-Id, Accounting-Record-Number), the pair RFC 6733 section 9.4
//! says identifies a record: [`Store::insert_cdr`] is `INSERT ... ON CONFLICT DO NOTHING`,
//! so a retransmitted ACR (T flag after a failover, or the AS replaying its durable queue)
//! is stored once and reported as [`CdrInsert::Duplicate`].

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{is_unique_violation, Error, Store};

/// A subscriber and the credentials REGISTER digest authentication checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// Public identity (Sh User-Identity / Public-Identity), e.g. `sip:alice@iptv.example`.
    pub identity: String,
    /// Digest username (the private identity), e.g. `alice@iptv.example`.
    pub username: String,
    /// Digest realm.
    pub realm: String,
    /// Lower-case hex MD5(username:realm:password).
    pub ha1: String,
}

/// A subscriber's IPTV profile (what the Sh User-Data carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Public identity it belongs to.
    pub identity: String,
    /// Channel packages (package names or channel ids).
    pub packages: Vec<String>,
    /// Maximum concurrent viewing sessions.
    pub max_streams: u32,
    /// Parental level 0..=18.
    pub parental_level: u8,
    /// Bumped by every change (0 at creation).
    pub version: i64,
    /// Last change, ms since the Unix epoch.
    pub updated_ms: i64,
}

impl Profile {
    /// The Sh repository data Sequence-Number for this version (TS 29.328 section 7.6: 0
    /// at creation, then 1..=65535, wrapping to 1).
    #[must_use]
    pub fn sequence_number(&self) -> u16 {
        if self.version <= 0 {
            0
        } else {
            ((self.version - 1) % 65_535 + 1) as u16
        }
    }
}

/// A change to a profile; `None` fields keep their value.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// New package list.
    #[serde(default)]
    pub packages: Option<Vec<String>>,
    /// New stream limit.
    #[serde(default)]
    pub max_streams: Option<u32>,
    /// New parental level (0..=18).
    #[serde(default)]
    pub parental_level: Option<u8>,
}

/// One accounting record (an ACR as received).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdr {
    /// Session-Id (the accounting session).
    pub session_id: String,
    /// Accounting-Record-Number.
    pub record_number: u32,
    /// `START`, `INTERIM`, `STOP`, `EVENT` (or `TYPE-n` for another value).
    pub record_type: String,
    /// Origin-Host of the ACR.
    pub origin_host: String,
    /// Origin-Realm of the ACR.
    pub origin_realm: String,
    /// The viewer (Calling-Party-Address, else User-Name).
    pub subscriber: Option<String>,
    /// The channel id (Service-Specific-Info).
    pub channel: Option<String>,
    /// Called-Party-Address (the channel URI).
    pub called_party: Option<String>,
    /// User-Session-Id (the SIP Call-ID).
    pub user_session_id: Option<String>,
    /// IMS-Charging-Identifier.
    pub charging_id: Option<String>,
    /// Event-Timestamp, ms since the Unix epoch.
    pub event_ms: Option<i64>,
    /// When the AAA received it, ms since the Unix epoch.
    pub received_ms: i64,
    /// Viewing duration in seconds (STOP).
    pub duration_secs: Option<i64>,
    /// Cause-Code.
    pub cause_code: Option<i64>,
    /// Whether the first copy stored carried the T flag.
    pub retransmitted: bool,
}

/// What [`Store::insert_cdr`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdrInsert {
    /// A new record.
    Stored,
    /// A record with this (Session-Id, Accounting-Record-Number) was already stored.
    Duplicate,
}

const SUB_COLS: &str = "identity, username, realm, ha1";
const PROFILE_COLS: &str = "identity, packages, max_streams, parental_level, version, updated_ms";
const CDR_COLS: &str = "session_id, record_number, record_type, origin_host, origin_realm, \
     subscriber, channel, called_party, user_session_id, charging_id, event_ms, received_ms, \
     duration_secs, cause_code, retransmitted";

fn sub_from_row(row: &AnyRow) -> Result<Subscriber, Error> {
    Ok(Subscriber {
        identity: row.try_get("identity")?,
        username: row.try_get("username")?,
        realm: row.try_get("realm")?,
        ha1: row.try_get("ha1")?,
    })
}

fn profile_from_row(row: &AnyRow) -> Result<Profile, Error> {
    let packages: String = row.try_get("packages")?;
    let packages: Vec<String> = serde_json::from_str(&packages)
        .map_err(|_| Error::InvalidData(format!("package list {packages:?}")))?;
    let max_streams: i64 = row.try_get("max_streams")?;
    let parental_level: i64 = row.try_get("parental_level")?;
    Ok(Profile {
        identity: row.try_get("identity")?,
        packages,
        max_streams: u32::try_from(max_streams)
            .map_err(|_| Error::InvalidData(format!("max_streams {max_streams}")))?,
        parental_level: u8::try_from(parental_level)
            .ok()
            .filter(|l| *l <= 18)
            .ok_or_else(|| Error::InvalidData(format!("parental_level {parental_level}")))?,
        version: row.try_get("version")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn cdr_from_row(row: &AnyRow) -> Result<Cdr, Error> {
    let n: i64 = row.try_get("record_number")?;
    let retransmitted: i64 = row.try_get("retransmitted")?;
    Ok(Cdr {
        session_id: row.try_get("session_id")?,
        record_number: u32::try_from(n)
            .map_err(|_| Error::InvalidData(format!("record number {n}")))?,
        record_type: row.try_get("record_type")?,
        origin_host: row.try_get("origin_host")?,
        origin_realm: row.try_get("origin_realm")?,
        subscriber: row.try_get("subscriber")?,
        channel: row.try_get("channel")?,
        called_party: row.try_get("called_party")?,
        user_session_id: row.try_get("user_session_id")?,
        charging_id: row.try_get("charging_id")?,
        event_ms: row.try_get("event_ms")?,
        received_ms: row.try_get("received_ms")?,
        duration_secs: row.try_get("duration_secs")?,
        cause_code: row.try_get("cause_code")?,
        retransmitted: retransmitted != 0,
    })
}

fn check_level(level: Option<u8>) -> Result<(), Error> {
    match level {
        Some(l) if l > 18 => Err(Error::InvalidData(format!("parental level {l} (0..=18)"))),
        _ => Ok(()),
    }
}

impl Store {
    /// Adds a subscriber and its profile (version 0) in one transaction. `Duplicate` when
    /// the identity, or the username in that realm, is taken.
    pub async fn add_subscriber(
        &self,
        sub: &Subscriber,
        packages: &[String],
        max_streams: u32,
        parental_level: u8,
        now_ms: i64,
    ) -> Result<(), Error> {
        check_level(Some(parental_level))?;
        let packages = serde_json::to_string(packages)
            .map_err(|e| Error::InvalidData(format!("packages: {e}")))?;
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "INSERT INTO aaa_subscribers (identity, username, realm, ha1, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&sub.identity)
        .bind(&sub.username)
        .bind(&sub.realm)
        .bind(&sub.ha1)
        .bind(now_ms)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Duplicate(format!("subscriber {}", sub.identity)))
            }
            Err(e) => return Err(e.into()),
        }
        sqlx::query(
            "INSERT INTO aaa_profiles \
             (identity, packages, max_streams, parental_level, version, updated_ms) \
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(&sub.identity)
        .bind(packages)
        .bind(i64::from(max_streams))
        .bind(i64::from(parental_level))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One subscriber by public identity.
    pub async fn get_subscriber(&self, identity: &str) -> Result<Subscriber, Error> {
        let sql = format!("SELECT {SUB_COLS} FROM aaa_subscribers WHERE identity = $1");
        let row = sqlx::query(&sql)
            .bind(identity)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("subscriber {identity}")))?;
        sub_from_row(&row)
    }

    /// One subscriber by digest username and realm (what a REGISTER's Authorization
    /// names).
    pub async fn get_subscriber_by_username(
        &self,
        username: &str,
        realm: &str,
    ) -> Result<Subscriber, Error> {
        let sql =
            format!("SELECT {SUB_COLS} FROM aaa_subscribers WHERE username = $1 AND realm = $2");
        let row = sqlx::query(&sql)
            .bind(username)
            .bind(realm)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {username} in realm {realm}")))?;
        sub_from_row(&row)
    }

    /// Every subscriber, by identity.
    pub async fn list_subscribers(&self) -> Result<Vec<Subscriber>, Error> {
        let sql = format!("SELECT {SUB_COLS} FROM aaa_subscribers ORDER BY identity");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(sub_from_row).collect()
    }

    /// Replaces a subscriber's HA1 (a password change).
    pub async fn set_ha1(&self, identity: &str, ha1: &str) -> Result<(), Error> {
        let r = sqlx::query("UPDATE aaa_subscribers SET ha1 = $1 WHERE identity = $2")
            .bind(ha1)
            .bind(identity)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(Error::NotFound(format!("subscriber {identity}")));
        }
        Ok(())
    }

    /// A subscriber's profile.
    pub async fn get_profile(&self, identity: &str) -> Result<Profile, Error> {
        let sql = format!("SELECT {PROFILE_COLS} FROM aaa_profiles WHERE identity = $1");
        let row = sqlx::query(&sql)
            .bind(identity)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("profile of {identity}")))?;
        profile_from_row(&row)
    }

    /// Applies `update` and bumps the version, in one statement; returns the new profile
    /// (the caller pushes it to the AS peers with a PNR). `NotFound` for an unknown
    /// identity; `InvalidData` for a parental level over 18.
    pub async fn update_profile(
        &self,
        identity: &str,
        update: &ProfileUpdate,
        now_ms: i64,
    ) -> Result<Profile, Error> {
        check_level(update.parental_level)?;
        let packages = update
            .packages
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| Error::InvalidData(format!("packages: {e}")))?;
        let sql = format!(
            "UPDATE aaa_profiles SET packages = COALESCE($1, packages), \
             max_streams = COALESCE($2, max_streams), \
             parental_level = COALESCE($3, parental_level), \
             version = version + 1, updated_ms = $4 WHERE identity = $5 \
             RETURNING {PROFILE_COLS}"
        );
        let rows = sqlx::query(&sql)
            .bind(packages)
            .bind(update.max_streams.map(i64::from))
            .bind(update.parental_level.map(i64::from))
            .bind(now_ms)
            .bind(identity)
            .fetch_all(&self.pool)
            .await?;
        match rows.first() {
            Some(r) => profile_from_row(r),
            None => Err(Error::NotFound(format!("profile of {identity}"))),
        }
    }

    /// Stores an accounting record once per (Session-Id, Accounting-Record-Number).
    pub async fn insert_cdr(&self, cdr: &Cdr) -> Result<CdrInsert, Error> {
        let sql = format!(
            "INSERT INTO aaa_cdrs ({CDR_COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (session_id, record_number) DO NOTHING"
        );
        let r = sqlx::query(&sql)
            .bind(&cdr.session_id)
            .bind(i64::from(cdr.record_number))
            .bind(&cdr.record_type)
            .bind(&cdr.origin_host)
            .bind(&cdr.origin_realm)
            .bind(cdr.subscriber.as_deref())
            .bind(cdr.channel.as_deref())
            .bind(cdr.called_party.as_deref())
            .bind(cdr.user_session_id.as_deref())
            .bind(cdr.charging_id.as_deref())
            .bind(cdr.event_ms)
            .bind(cdr.received_ms)
            .bind(cdr.duration_secs)
            .bind(cdr.cause_code)
            .bind(i64::from(cdr.retransmitted))
            .execute(&self.pool)
            .await?;
        Ok(if r.rows_affected() == 0 {
            CdrInsert::Duplicate
        } else {
            CdrInsert::Stored
        })
    }

    /// The records of one accounting session, by record number.
    pub async fn cdrs_of_session(&self, session_id: &str) -> Result<Vec<Cdr>, Error> {
        let sql =
            format!("SELECT {CDR_COLS} FROM aaa_cdrs WHERE session_id = $1 ORDER BY record_number");
        let rows = sqlx::query(&sql)
            .bind(session_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(cdr_from_row).collect()
    }

    /// The most recent records (by arrival), at most `limit`, oldest first.
    pub async fn recent_cdrs(&self, limit: u32) -> Result<Vec<Cdr>, Error> {
        let sql = format!(
            "SELECT {CDR_COLS} FROM aaa_cdrs ORDER BY received_ms DESC, session_id DESC, \
             record_number DESC LIMIT $1"
        );
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut v = rows
            .iter()
            .map(cdr_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        v.reverse();
        Ok(v)
    }

    /// Records per type (`START`, `STOP`, ...), for the AAA's metrics and the lab report.
    pub async fn cdr_counts(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT record_type, COUNT(*) AS n FROM aaa_cdrs GROUP BY record_type \
             ORDER BY record_type",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("record_type")?, r.try_get("n")?)))
            .collect()
    }
}
