-- The AS's durable accounting outbox (Rf client side): every ACR the AS owes its CDF is
-- written here first and deleted only once the AAA answered it 2001, so records survive an
-- AAA outage and an AS restart. Keyed like the CDF's table by (Session-Id,
-- Accounting-Record-Number) (RFC 6733 section 9.4): writing a record twice is harmless.
-- `seq` orders the sending (per AS, so per session); `origin_host` names the AS instance
-- that owns the row (several AS instances may share one PostgreSQL database).
CREATE TABLE aaa_outbox (
    session_id      TEXT NOT NULL,
    record_number   BIGINT NOT NULL,
    record_type     BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    origin_host     TEXT NOT NULL,
    subscriber      TEXT NOT NULL,
    channel         TEXT NOT NULL,
    event_ms        BIGINT NOT NULL,
    duration_secs   BIGINT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, record_number)
);

CREATE INDEX aaa_outbox_seq ON aaa_outbox (origin_host, seq);
