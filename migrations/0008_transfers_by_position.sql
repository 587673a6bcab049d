-- The transfers feed (GET /v1/transfers/stream) reads rm_transfers after a position, in position order, each
-- time the projector's checkpoint moves: without this index every read scanned the whole table, and feeds
-- delivered seconds late under load (SPEC §6, feeds).
CREATE INDEX rm_transfers_position ON rm_transfers (position);
