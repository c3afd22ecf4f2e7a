-- Embedded AAA (HSS/CDF role): subscribers, their IPTV profiles (Sh repository data) and
-- the accounting records (Rf CDRs).
-- Portable SQL: runs unchanged on SQLite and PostgreSQL (TEXT, BIGINT, epoch milliseconds).

-- A subscriber: public identity (the Sh User-Identity, e.g. sip:alice@iptv.example) and the
-- credentials REGISTER digest authentication checks. Only HA1 = MD5(username:realm:password)
-- (RFC 2617 section 3.2.2.2, RFC 3261 section 22.4) is kept, never the password.
CREATE TABLE aaa_subscribers (
    identity    TEXT PRIMARY KEY NOT NULL,
    username    TEXT NOT NULL,
    realm       TEXT NOT NULL,
    ha1         TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE UNIQUE INDEX aaa_subscribers_user ON aaa_subscribers (username, realm);

-- The IPTV profile: channel packages (a JSON array of package names or channel ids), the
-- stream limit, the parental level and a version bumped on every change (the Sh
-- repository data Sequence-Number is derived from it).
CREATE TABLE aaa_profiles (
    identity        TEXT PRIMARY KEY NOT NULL,
    packages        TEXT NOT NULL,
    max_streams     BIGINT NOT NULL,
    parental_level  BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL
);

-- Accounting records, one row per ACR. The primary key (Session-Id, Accounting-Record-Number)
-- is what makes a retransmitted ACR (T flag, after a failover) count once (RFC 6733
-- section 9.4: the pair identifies a record).
CREATE TABLE aaa_cdrs (
    session_id      TEXT NOT NULL,
    record_number   BIGINT NOT NULL,
    record_type     TEXT NOT NULL,
    origin_host     TEXT NOT NULL,
    origin_realm    TEXT NOT NULL,
    subscriber      TEXT NULL,
    channel         TEXT NULL,
    called_party    TEXT NULL,
    user_session_id TEXT NULL,
    charging_id     TEXT NULL,
    event_ms        BIGINT NULL,
    received_ms     BIGINT NOT NULL,
    duration_secs   BIGINT NULL,
    cause_code      BIGINT NULL,
    retransmitted   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, record_number)
);

CREATE INDEX aaa_cdrs_subscriber ON aaa_cdrs (subscriber, received_ms);
