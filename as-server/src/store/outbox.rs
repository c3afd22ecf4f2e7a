//! The AS's durable accounting outbox (migration `20250301000001_aaa_outbox.sql`): Rf
//! records waiting for their ACA. `service::aaa` writes a row before it tries to send the
//! ACR and deletes it after a 2001 answer, so an AAA outage or an AS restart loses nothing.
//! Rows are keyed by (Session-Id, Accounting-Record-Number) (RFC 6733 section 9.4): pushing
//! the same record twice keeps one row. Portable SQL, times given by the caller.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Error, Store};

/// One accounting record waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Diameter Session-Id of the accounting session.
    pub session_id: String,
    /// Accounting-Record-Number (0 for START and EVENT, 1 for STOP).
    pub record_number: u32,
    /// Accounting-Record-Type code (RFC 6733 section 9.8.1).
    pub record_type: i32,
    /// Sending order (per `origin_host`).
    pub seq: i64,
    /// The AS instance (Origin-Host) that owns the row.
    pub origin_host: String,
    /// The subscriber's public identity.
    pub subscriber: String,
    /// The channel watched (or created).
    pub channel: String,
    /// When the event happened (epoch ms).
    pub event_ms: i64,
    /// Session duration (STOP).
    pub duration_secs: Option<i64>,
    /// Earlier send attempts (> 0: the ACR goes with the T flag, RFC 6733 section 3).
    pub attempts: i64,
}

const COLS: &str = "session_id, record_number, record_type, seq, origin_host, subscriber, \
     channel, event_ms, duration_secs, attempts";

fn from_row(row: &AnyRow) -> Result<OutboxRecord, Error> {
    let n: i64 = row.try_get("record_number")?;
    let t: i64 = row.try_get("record_type")?;
    Ok(OutboxRecord {
        session_id: row.try_get("session_id")?,
        record_number: u32::try_from(n)
            .map_err(|_| Error::InvalidData(format!("record number {n}")))?,
        record_type: i32::try_from(t)
            .map_err(|_| Error::InvalidData(format!("record type {t}")))?,
        seq: row.try_get("seq")?,
        origin_host: row.try_get("origin_host")?,
        subscriber: row.try_get("subscriber")?,
        channel: row.try_get("channel")?,
        event_ms: row.try_get("event_ms")?,
        duration_secs: row.try_get("duration_secs")?,
        attempts: row.try_get("attempts")?,
    })
}

impl Store {
    /// Queues a record (kept once per (Session-Id, record number)). `true` if it was new.
    pub async fn outbox_push(&self, r: &OutboxRecord) -> Result<bool, Error> {
        let sql = format!(
            "INSERT INTO aaa_outbox ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (session_id, record_number) DO NOTHING"
        );
        let done = sqlx::query(&sql)
            .bind(&r.session_id)
            .bind(i64::from(r.record_number))
            .bind(i64::from(r.record_type))
            .bind(r.seq)
            .bind(&r.origin_host)
            .bind(&r.subscriber)
            .bind(&r.channel)
            .bind(r.event_ms)
            .bind(r.duration_secs)
            .bind(r.attempts)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The oldest `limit` records of `origin_host`, in sending order.
    pub async fn outbox_pending(
        &self,
        origin_host: &str,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, Error> {
        let sql =
            format!("SELECT {COLS} FROM aaa_outbox WHERE origin_host = $1 ORDER BY seq LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(origin_host)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Counts one more send attempt of a record.
    pub async fn outbox_attempted(
        &self,
        session_id: &str,
        record_number: u32,
    ) -> Result<(), Error> {
        sqlx::query(
            "UPDATE aaa_outbox SET attempts = attempts + 1 \
             WHERE session_id = $1 AND record_number = $2",
        )
        .bind(session_id)
        .bind(i64::from(record_number))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a record the AAA has acknowledged.
    pub async fn outbox_delete(&self, session_id: &str, record_number: u32) -> Result<(), Error> {
        sqlx::query("DELETE FROM aaa_outbox WHERE session_id = $1 AND record_number = $2")
            .bind(session_id)
            .bind(i64::from(record_number))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The highest `seq` of `origin_host` (0 when empty): where a restarted AS continues.
    pub async fn outbox_max_seq(&self, origin_host: &str) -> Result<i64, Error> {
        let row =
            sqlx::query("SELECT COALESCE(MAX(seq), 0) AS m FROM aaa_outbox WHERE origin_host = $1")
                .bind(origin_host)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("m")?)
    }

    /// How many records of `origin_host` wait.
    pub async fn outbox_len(&self, origin_host: &str) -> Result<i64, Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM aaa_outbox WHERE origin_host = $1")
            .bind(origin_host)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
