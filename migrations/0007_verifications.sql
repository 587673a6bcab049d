-- Each `projector verify` run's outcome (SPEC §9: the dashboard shows the last one and its age), written by the
-- verify command when it has finished, outside the snapshot it verified.
CREATE TABLE verifications (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    -- The head of the log and the read models' checkpoint in the verified snapshot.
    head        bigint      NOT NULL,
    checkpoint  bigint      NOT NULL,
    events      bigint      NOT NULL,
    streams     bigint      NOT NULL,
    findings    bigint      NOT NULL,
    -- Findings per check, e.g. {"HashChain": 1}; empty when clean.
    by_check    jsonb       NOT NULL
);
