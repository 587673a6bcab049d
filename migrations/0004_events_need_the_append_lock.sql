-- Position order is commit order only if every writer of `events` holds the append lock from before it draws
-- positions until it commits (ARCHITECTURE.md, "Ordering"). A writer that does not hold it could commit a
-- position after a reader has passed it, and that event would never be projected. So a statement that inserts
-- events without holding the lock is refused, whoever runs it. The check runs once per statement (after its
-- rows, so that a statement which takes the lock itself, as the append does, passes): one look at pg_locks
-- per batch. The key is APPEND_LOCK_KEY (0x7461_6c6c_7901), as Postgres splits a bigint key into two oids.
CREATE FUNCTION events_writer_holds_the_append_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_locks
        WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
          AND classid = 29793 AND objid = 1819048193 AND objsubid = 1
    ) THEN
        RAISE EXCEPTION 'events are written only under the append lock (pg_advisory_xact_lock(%))', 127961779697921
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_need_the_append_lock AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_writer_holds_the_append_lock();
