-- The auditor kit (SPEC §10): the running log hash, kept with the checkpoint it covers, and the signed digests.

-- L_checkpoint: SHA-256 chained over every event's own hash in position order, up to the checkpoint, written in
-- the same transaction as the checkpoint (docs/audit.md).
ALTER TABLE projection_checkpoints
    ADD COLUMN log_hash bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex') CHECK (length(log_hash) = 32);

-- A digest per position at most: recorded by the leading projector when the log has advanced, signed with a key
-- that lives outside the database (DIGEST_SIGNING_KEY_FILE). The primary key makes two projectors unable to
-- record two digests of one position.
CREATE TABLE digests (
    position    bigint      PRIMARY KEY,
    log_hash    bytea       NOT NULL CHECK (length(log_hash) = 32),
    recorded_at timestamptz NOT NULL,
    public_key  bytea       NOT NULL CHECK (length(public_key) = 32),
    signature   bytea       NOT NULL CHECK (length(signature) = 64)
);
