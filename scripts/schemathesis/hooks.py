"""Schemathesis hooks for Tally: every generated command gets an Idempotency-Key of its own.

Schemathesis draws header values from the schema, and reuses them across cases (examples, coverage), so two
different requests could share a key and be answered `422 idempotency_key_reused`, which is Tally keeping its
contract, not a failure. A client sends a fresh key per new request; so do the tests.
"""

import uuid

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    # Only where the case sends a key: a case that leaves it out on purpose tests the 400 for a missing key.
    headers = dict(case.headers or {})
    if case.method.upper() == "POST" and "Idempotency-Key" in headers:
        headers["Idempotency-Key"] = f"st-{uuid.uuid4()}"
        case.headers = headers


# Referential data. Schemathesis draws values from the schemas, and a schema cannot name the wallets that
# exist: a drawn wallet id is a fresh UUID, so nearly every command would be `404 wallet_not_found` and test
# only that. scripts/schemathesis/run makes a small ledger first (the GOLD asset at scale 18, funded wallets,
# transfers, holds) and names it in TALLY_ST_WALLETS, TALLY_ST_TRANSFERS and TALLY_ST_HOLDS; these hooks put its ids in place of drawn
# ones. Only values that are already valid are replaced, so a deliberately invalid value (a negative case)
# stays invalid and must still be refused.

import os
import re

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ASSET = re.compile(r"^[A-Z][A-Z0-9_]{0,15}$")
_WALLETS = [wallet for wallet in os.environ.get("TALLY_ST_WALLETS", "").split(",") if wallet]
_TRANSFERS = [transfer for transfer in os.environ.get("TALLY_ST_TRANSFERS", "").split(",") if transfer]
_HOLDS = [hold for hold in os.environ.get("TALLY_ST_HOLDS", "").split(",") if hold]


def _is_uuid(value):
    return isinstance(value, str) and _UUID.match(value) is not None


def _pick(pool, drawn, skip=None):
    """An element of `pool` chosen by the drawn value itself (hypothesis forbids `random` in strategies)."""
    index = int(drawn.replace("-", ""), 16) % len(pool)
    if pool[index] == skip:
        index = (index + 1) % len(pool)
    return pool[index]


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    if not isinstance(path_parameters, dict):
        return path_parameters
    if _WALLETS and _is_uuid(path_parameters.get("wallet_id")):
        path_parameters["wallet_id"] = _pick(_WALLETS, path_parameters["wallet_id"])
    if _TRANSFERS and _is_uuid(path_parameters.get("transfer_id")):
        path_parameters["transfer_id"] = _pick(_TRANSFERS, path_parameters["transfer_id"])
    if _HOLDS and _is_uuid(path_parameters.get("hold_id")):
        path_parameters["hold_id"] = _pick(_HOLDS, path_parameters["hold_id"])
    return path_parameters


@schemathesis.hook
def map_body(context, body):
    if not isinstance(body, dict) or len(_WALLETS) < 2:
        return body
    if _is_uuid(body.get("to_wallet_id")) and "from_wallet_id" not in body:
        body["to_wallet_id"] = _pick(_WALLETS, body["to_wallet_id"])
    if _is_uuid(body.get("from_wallet_id")) and _is_uuid(body.get("to_wallet_id")):
        sender = _pick(_WALLETS, body["from_wallet_id"])
        body["from_wallet_id"], body["to_wallet_id"] = sender, _pick(_WALLETS, body["to_wallet_id"], skip=sender)
    if isinstance(body.get("asset"), str) and _ASSET.match(body["asset"]):
        body["asset"] = "GOLD"
    return body
