-- Holds (SPEC §8): the command side's index of active holds by expiry, and the read models of holds.

-- One row per active hold, written in the append transaction that places it and deleted in the one that
-- resolves it: the expirer finds due holds here, never by scanning streams.
CREATE TABLE holds_due (
    hold_id    uuid        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX holds_due_expires_at ON holds_due (expires_at);

-- What each wallet's active holds reserve; available is balance - held.
ALTER TABLE rm_wallets ADD COLUMN held numeric NOT NULL DEFAULT 0;
ALTER TABLE rm_assets
    ADD COLUMN held_total        numeric NOT NULL DEFAULT 0,
    ADD COLUMN active_hold_count bigint  NOT NULL DEFAULT 0;

-- A capture's transfer names its hold.
ALTER TABLE rm_transfers ADD COLUMN hold_id uuid;

-- One row per hold, as its stream's events say.
CREATE TABLE rm_holds (
    hold_id         uuid        PRIMARY KEY,
    wallet_id       uuid        NOT NULL,
    asset           text        NOT NULL,
    amount          numeric     NOT NULL,
    captured        numeric     NOT NULL,
    released        numeric     NOT NULL,
    status          text        NOT NULL CHECK (status IN ('active', 'captured', 'voided', 'expired')),
    expires_at      timestamptz NOT NULL,
    reference       text,
    metadata        jsonb,
    -- The transfers that captured from it, in order.
    captures        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    resolved_at     timestamptz,
    version         bigint      NOT NULL,
    -- Of the event that placed it: the key of a wallet's holds pages, newest first.
    placed_position bigint      NOT NULL,
    position        bigint      NOT NULL
);
CREATE INDEX rm_holds_wallet ON rm_holds (wallet_id, placed_position);
CREATE INDEX rm_holds_reference ON rm_holds (reference, placed_position) WHERE reference IS NOT NULL;
