-- Read models: written only by the projector, each row a copy of what events say, rebuildable from position 0.

-- How far each projection has applied the log, written in the same transaction as the read models.
CREATE TABLE projection_checkpoints (
    projection text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rm_assets (
    code               text        PRIMARY KEY,
    scale              integer     NOT NULL,
    cash_in_fee        jsonb,
    treasury_wallet_id uuid        NOT NULL,
    revenue_wallet_id  uuid        NOT NULL,
    fees_wallet_id     uuid        NOT NULL,
    -- Minus the treasury's balance.
    supply             numeric     NOT NULL,
    user_balance_total numeric     NOT NULL,
    wallet_count       bigint      NOT NULL,
    defined_at         timestamptz NOT NULL,
    position           bigint      NOT NULL
);

-- Principal moved and number of transfers, per asset and transfer kind.
CREATE TABLE rm_asset_volumes (
    asset          text    NOT NULL,
    kind           text    NOT NULL,
    volume         numeric NOT NULL,
    transfer_count bigint  NOT NULL,
    PRIMARY KEY (asset, kind)
);

CREATE TABLE rm_wallets (
    wallet_id       uuid        PRIMARY KEY,
    owner_id        text        NOT NULL,
    asset           text        NOT NULL,
    kind            text        NOT NULL,
    status          text        NOT NULL,
    balance         numeric     NOT NULL,
    overdraft_limit numeric,
    version         bigint      NOT NULL,
    position        bigint      NOT NULL,
    metadata        jsonb,
    opened_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX rm_wallets_owner ON rm_wallets (owner_id, asset);

-- One row per leg as one wallet saw it. The primary key serves keyset pages newest first:
-- `WHERE wallet_id = $1 AND version < $cursor ORDER BY version DESC LIMIT n` costs the same at any depth.
CREATE TABLE rm_wallet_history (
    wallet_id              uuid        NOT NULL,
    version                bigint      NOT NULL,
    position               bigint      NOT NULL,
    transfer_id            uuid        NOT NULL,
    kind                   text        NOT NULL,
    direction              text        NOT NULL CHECK (direction IN ('debit', 'credit')),
    amount                 numeric     NOT NULL,
    balance_after          numeric     NOT NULL,
    counterparty_wallet_id uuid        NOT NULL,
    reference              text,
    recorded_at            timestamptz NOT NULL,
    PRIMARY KEY (wallet_id, version)
);

CREATE TABLE rm_transfers (
    transfer_id     uuid        PRIMARY KEY,
    kind            text        NOT NULL,
    asset           text        NOT NULL,
    amount          numeric     NOT NULL,
    fee             numeric     NOT NULL,
    -- [{from_wallet_id, to_wallet_id, amount}], amounts as strings at the asset's scale.
    legs            jsonb       NOT NULL,
    -- [{wallet_id, balance, version}] after the transfer, as the command answered.
    balances        jsonb       NOT NULL,
    reference       text,
    metadata        jsonb,
    reverses        uuid,
    reason          text,
    idempotency_key text,
    reversed_amount numeric     NOT NULL,
    position        bigint      NOT NULL,
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX rm_transfers_reference ON rm_transfers (reference, position) WHERE reference IS NOT NULL;

CREATE TABLE rm_transfer_reversals (
    transfer_id uuid        NOT NULL,
    reversal_id uuid        NOT NULL,
    amount      numeric     NOT NULL,
    fee         numeric     NOT NULL,
    position    bigint      NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (transfer_id, reversal_id)
);
