//! The tables of a log on PostgreSQL (one log per database), made by the first node that opens an empty database.
//!
//! - `log_meta`: one row: the format, and (once a node has pinned them) the log's origin and verifier key, and the
//!   digest of the settings that change what is accepted or counted.
//! - `log_head`: one row: the committed size, the audit root at that size, the last `recorded_at`. Every group
//!   transaction locks it first and moves it last (`WHERE size = $old`), so positions are assigned under one lock:
//!   commit order is position order and positions are gapless by construction. No sequence is used.
//! - `events`: one row per event: position, id (unique: idempotent for ever), stream and version (unique), and the
//!   exact canonical bytes the audit leaf hashes (never `jsonb`, which reorders keys).
//! - `streams`: each stream's head (its last version, and a dossier's folded state), written in the same
//!   transaction as the events.
//! - `audit_upper`: the audit tree's hashes at level 8 and above, one run per group that completed tiles, keyed by
//!   the first hash's index; `audit_leaves`: the first 4 bytes of each leaf hash, one run per group, keyed by its
//!   first position (what lets `verify` name the one event of a tile whose bytes changed).
//! - `checkpoints`: signed checkpoints by size (the first one stored at a size is kept).
//! - `credentials`: by name, with the live tokens' hashes unique.
//! - `log_writer`: the elected writer, whom the other nodes hand their batches (`elect`).
//! - `casetrail_move_head`: moves the head row from the size a group locked, or fails the group's transaction.
//! - `events_json`: a read-only view that decodes each event as JSON, for analysts with `psql`.

/// The function every group moves the head with (made by `prepare` where it is missing): it fails the
/// transaction unless the head row is at the size the writer locked, so the group's `COMMIT`, sent in the same
/// round trip as its statements, cannot commit events the head does not count.
pub const MOVE_HEAD: &str = r#"
CREATE FUNCTION casetrail_move_head(old_size bigint, new_size bigint, new_root bytea, last_at timestamptz,
                                    by_writer text) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE log_head SET size = new_size, root = new_root, last_recorded_at = last_at, writer = by_writer
     WHERE id = 1 AND size = old_size;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the head row is not at size %: the group is not committed', old_size;
    END IF;
END
$fn$;
"#;

/// The elected writer (made by `prepare` where it is missing): who holds the writer's advisory lock, where the
/// other nodes reach it, and the pid of the session that holds the lock (a row whose pid holds nothing is stale).
pub const LOG_WRITER: &str = r#"
CREATE TABLE log_writer (
    id smallint PRIMARY KEY CHECK (id = 1),
    node text NOT NULL,
    address text NOT NULL,
    pid integer NOT NULL,
    since timestamptz NOT NULL
);
"#;

/// What `log_meta.format` holds for this schema.
pub const FORMAT: &str = "casetrail-pg-1";

/// The whole schema, made in one transaction.
pub const SCHEMA: &str = r#"
CREATE TABLE log_meta (
    id smallint PRIMARY KEY CHECK (id = 1),
    format text NOT NULL,
    origin text,
    verifier_key text,
    rules_digest text,
    rules text
);
CREATE TABLE log_head (
    id smallint PRIMARY KEY CHECK (id = 1),
    size bigint NOT NULL,
    root bytea NOT NULL,
    last_recorded_at timestamptz,
    writer text
) WITH (fillfactor = 10);
CREATE TABLE events (
    position bigint PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    stream text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    bytes bytea NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE streams (
    stream text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    head bytea NOT NULL
) WITH (fillfactor = 80);
CREATE TABLE audit_upper (first_index bigint PRIMARY KEY, hashes bytea NOT NULL);
CREATE TABLE audit_leaves (first_position bigint PRIMARY KEY, prefixes bytea NOT NULL);
CREATE TABLE checkpoints (
    size bigint PRIMARY KEY,
    issued_at timestamptz NOT NULL,
    note text NOT NULL
);
CREATE TABLE credentials (
    name text PRIMARY KEY,
    token_sha256 text NOT NULL,
    role text NOT NULL,
    revoked_at timestamptz,
    credential text NOT NULL
);
CREATE UNIQUE INDEX credentials_live ON credentials (token_sha256) WHERE revoked_at IS NULL;
-- Two entries in FROM: PostgreSQL cannot write through this view (it is not auto-updatable); each row's JSON is
-- decoded once, as `json`, not `jsonb`: a text an event carries may hold U+0000, which `jsonb` refuses.
CREATE VIEW events_json AS
    SELECT e.position, e.id, e.stream, e.version,
           j.event ->> 'type' AS type,
           j.event ->> 'agency' AS agency,
           (j.event ->> 'occurred_at')::timestamptz AS occurred_at,
           (j.event ->> 'recorded_at')::timestamptz AS recorded_at,
           j.event ->> 'source' AS source,
           j.event -> 'data' AS data,
           j.event
    FROM events e, LATERAL (SELECT convert_from(e.bytes, 'UTF8')::json AS event) j;
"#;
