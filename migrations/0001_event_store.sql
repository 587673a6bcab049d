-- The event store: the only source of truth, and the command-side tables written in the same transaction.

-- Every event of every stream. Only command-service inserts here; nothing ever updates or deletes.
CREATE TABLE events (
    -- Allocated from the identity sequence while the appender holds the transaction-scoped advisory lock
    -- (see ARCHITECTURE.md, "Ordering"), so that position order is commit order. Rolled-back appends leave holes.
    position    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL CHECK (version >= 1),
    event_id    uuid        NOT NULL UNIQUE,
    event_type  text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL,
    -- SHA-256 over the previous event's hash in the stream and this event's canonical bytes.
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    -- What rejects the loser of a race: two appends that expected the same stream version.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

-- The log is append-only: a stray UPDATE, DELETE or TRUNCATE fails instead of rewriting history.
-- (A superuser can still disable this; the hash chains are what make such tampering evident.)
CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

-- One row per stream: its state after its last event, so that loading never costs O(stream length).
-- Written in the append transaction; `projector verify` checks every row against a replay.
CREATE TABLE streams (
    stream_id  text        PRIMARY KEY,
    version    bigint      NOT NULL CHECK (version >= 1),
    position   bigint      NOT NULL,
    state      jsonb       NOT NULL,
    last_hash  bytea       NOT NULL CHECK (length(last_hash) = 32),
    updated_at timestamptz NOT NULL
);

-- A command's answer, kept so that a retry with the same key gets the same answer and no second effect.
CREATE TABLE idempotency_keys (
    principal       text        NOT NULL,
    idempotency_key text        NOT NULL,
    -- SHA-256 of method, path and canonical body: a different request under the same key is refused.
    fingerprint     bytea       NOT NULL,
    status          smallint    NOT NULL,
    response        jsonb       NOT NULL,
    position        bigint,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (principal, idempotency_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- At most one user wallet per (owner, asset), enforced in the append transaction.
CREATE TABLE wallet_owners (
    owner_id  text NOT NULL,
    asset     text NOT NULL,
    wallet_id uuid NOT NULL UNIQUE,
    PRIMARY KEY (owner_id, asset)
);
