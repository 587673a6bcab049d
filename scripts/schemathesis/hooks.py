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
