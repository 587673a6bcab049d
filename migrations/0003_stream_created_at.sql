-- When each stream began: the `recorded_at` of its first event, kept beside its snapshot, so that an answer
-- about a wallet (a freeze's, say) can say when the wallet was opened without reading its stream.
ALTER TABLE streams ADD COLUMN created_at timestamptz;
UPDATE streams s SET created_at = e.recorded_at FROM events e WHERE e.stream_id = s.stream_id AND e.version = 1;
-- The default serves writers that do not name the column (the benchmark's bulk seeder); the append names it.
ALTER TABLE streams ALTER COLUMN created_at SET DEFAULT now(), ALTER COLUMN created_at SET NOT NULL;
