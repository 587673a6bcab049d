"""Schemathesis hooks for Tally: every generated command gets an Idempotency-Key of its own.

Schemathesis draws header values from the schema, and reuses them across cases (examples, coverage), so two
different requests could share a key and be answered `422 idempotency_key_reused`, which is Tally keeping its
contract, not a failure. A client sends a fresh key per new request; so do the tests.
"""

import atexit
import collections
import datetime
import json
import os
import re
import urllib.request
import uuid

import schemathesis

_KEY = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    # Only where the case sends a key: a case that leaves it out on purpose tests the 400 for a missing key.
    headers = dict(case.headers or {})
    if case.method.upper() == "POST" and _KEY.match(str(headers.get("Idempotency-Key", ""))):
        headers["Idempotency-Key"] = f"st-{uuid.uuid4()}"
        case.headers = headers
    _prepare_state(case)


# Referential data. Schemathesis draws values from the schemas, and a schema cannot name the wallets that
# exist: a drawn wallet id is a fresh UUID, so nearly every command would be `404 wallet_not_found` and test
# only that. scripts/schemathesis/run makes a small ledger first (the GOLD asset at scale 18, funded wallets,
# transfers, holds) and names it in TALLY_ST_WALLETS, TALLY_ST_TRANSFERS and TALLY_ST_HOLDS; these hooks put its ids in place of drawn
# ones. Only values that are already valid are replaced, so a deliberately invalid value (a negative case)
# stays invalid and must still be refused.


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
    # A hold's expiry is `expires_in_s` or `expires_at`, not both, within 30 days of now: rules across fields
    # and the clock, which a schema cannot state. A valid `expires_in_s` is kept; a drawn instant is moved into
    # the window.
    seconds = body.get("expires_in_s")
    if isinstance(seconds, int) and 1 <= seconds <= 2_592_000 and _is_instant(body.get("expires_at")):
        del body["expires_at"]
    if _is_instant(body.get("expires_at")):
        body["expires_at"] = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).isoformat()
    return body


_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _is_instant(text):
    """An RFC 3339 date-time, as the document's `date-time` format says."""
    if not isinstance(text, str) or not _INSTANT.match(text):
        return False
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


# The state a command needs, which a drawn request cannot know: whose name is free, which version a wallet is
# at, which hold is still active, which transfer is not reversed yet. For each case whose drawn values are
# valid, the hooks make that state through the API first, as a client would (a fresh owner or asset code, a
# fresh hold to capture or void, a fresh transfer to reverse, a fresh wallet to freeze, unfreeze or close), and
# send the wallet's current version as If-Match. A case that breaks a rule on purpose keeps its drawn values.


_COMMAND_URL = os.environ.get("TALLY_ST_COMMAND_URL", "")
_QUERY_URL = os.environ.get("TALLY_ST_QUERY_URL", "")
_TOKEN = os.environ.get("TALLY_TOKEN", "")
_IF_MATCH = re.compile(r'^("[0-9]{1,18}"|[0-9]{1,18})$')
_OWNER = re.compile(r"^[^\x00-\x1f\x7f-\x9f]+$")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,15}$")
_OWNER_LENGTH_MAX = 128
# The highest position a command of this run answered: reads wait for it (read-your-writes).
_position = 0


def _call(method, url, body=None, key=None):
    global _position
    headers = {"Authorization": f"Bearer {_TOKEN}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read() or b"null")
    except Exception:  # the case goes ahead with its drawn values
        return None
    if isinstance(answer, dict) and isinstance(answer.get("position"), int):
        _position = max(_position, answer["position"])
    return answer


def _command(path, body):
    return _call("POST", f"{_COMMAND_URL}{path}", body, key=f"st-setup-{uuid.uuid4()}")


def _fresh_wallet(frozen=False):
    opened = _command("/v1/wallets", {"owner_id": f"st-{uuid.uuid4().hex[:16]}", "asset": "GOLD"})
    wallet = opened and opened.get("wallet_id")
    if wallet and frozen:
        _command(f"/v1/wallets/{wallet}/freeze", {})
    return wallet


def _version(wallet):
    wallet_view = _call("GET", f"{_QUERY_URL}/v1/wallets/{wallet}?min_position={_position}")
    return wallet_view.get("version") if isinstance(wallet_view, dict) else None


def _prepare(case):
    path, parameters = case.path, case.path_parameters
    body = case.body if isinstance(case.body, dict) else None
    owner = body.get("owner_id") if body else None
    if path == "/v1/wallets" and isinstance(owner, str) and _OWNER.match(owner) and len(owner) <= _OWNER_LENGTH_MAX:
        body["owner_id"] = f"{owner[: _OWNER_LENGTH_MAX - 17]}-{uuid.uuid4().hex[:16]}"
    if path == "/v1/assets" and body and isinstance(body.get("code"), str) and _CODE.match(body["code"]):
        body["code"] = f"{body['code'][:7]}_{uuid.uuid4().hex[:8].upper()}"
    if not parameters or not _WALLETS:
        return
    if path in ("/v1/holds/{hold_id}/capture", "/v1/holds/{hold_id}/void") and _is_uuid(parameters.get("hold_id")):
        hold = _command(f"/v1/wallets/{_WALLETS[0]}/holds", {"amount": "1000000", "expires_in_s": 86400})
        if hold:
            parameters["hold_id"] = hold["hold_id"]
    if path == "/v1/transfers/{transfer_id}/reversal" and _is_uuid(parameters.get("transfer_id")):
        moved = _command("/v1/transfers", {"from_wallet_id": _WALLETS[0], "to_wallet_id": _WALLETS[1], "amount": "1000000"})
        if moved:
            parameters["transfer_id"] = moved["transfer_id"]
    for action, frozen in (("freeze", False), ("unfreeze", True), ("close", False)):
        if path == f"/v1/wallets/{{wallet_id}}/{action}" and _is_uuid(parameters.get("wallet_id")):
            wallet = _fresh_wallet(frozen=frozen)
            if wallet:
                parameters["wallet_id"] = wallet


def _prepare_state(case):
    if case.method.upper() != "POST" or not _COMMAND_URL:
        return
    _prepare(case)
    headers = dict(case.headers or {})
    if _IF_MATCH.match(str(headers.get("If-Match", ""))):
        wallet = (case.path_parameters or {}).get("wallet_id")
        if not wallet and isinstance(case.body, dict):
            wallet = case.body.get("from_wallet_id")
        version = _version(wallet) if _is_uuid(wallet) else None
        if version is not None:
            headers["If-Match"] = f'"{version}"'
            case.headers = headers


# What the commands were answered, by operation and problem code, for the run's summary (TALLY_ST_OUTCOMES).

_OUTCOMES = collections.Counter()


@schemathesis.hook
def after_call(context, case, response):
    global _position
    if case.method.upper() != "POST":
        return
    try:
        answer = response.json()
        if isinstance(answer, dict) and isinstance(answer.get("position"), int):
            _position = max(_position, answer["position"])
    except Exception:  # not JSON
        pass
    code = ""
    if response.status_code >= 400:
        try:
            code = response.json().get("code", "")
        except Exception:  # not a problem document
            code = "?"
    _OUTCOMES[f"{case.path} {response.status_code} {code}".strip()] += 1
    if os.environ.get("TALLY_ST_DEBUG") and code in ("validation_failed", "invalid_amount", "wallet_exists"):
        with open(os.environ["TALLY_ST_DEBUG"], "a", encoding="utf-8") as debug:
            debug.write(json.dumps({"path": case.path, "body": case.body, "headers": dict(case.headers or {}),
                                    "answer": response.text[:300]}) + "\n")


def _write_outcomes():
    path = os.environ.get("TALLY_ST_OUTCOMES")
    if path and _OUTCOMES:
        with open(path, "a", encoding="utf-8") as outcomes:
            json.dump(dict(_OUTCOMES), outcomes)
            outcomes.write("\n")


atexit.register(_write_outcomes)
