#!/usr/bin/env python3
"""An independent implementation of docs/audit.md, in another language than the product and written from the
document alone: recomputes every event's hash, every stream's chain and the log hash of an export, and checks
the log hash of each digest. (Signatures are left to tally-audit: Python's standard library has no Ed25519.)

Usage: independent_check.py EXPORT.ndjson [DIGESTS.json]
Exits 0 when everything agrees, 1 with the first disagreements listed otherwise.
"""

import hashlib
import json
import sys


class Number(str):
    """A JSON number kept as the text the export wrote (docs/audit.md §2: numbers as the export writes them)."""


def canonical(value, out):
    if isinstance(value, dict):
        out.append("{")
        for index, key in enumerate(sorted(value, key=lambda text: text.encode("utf-8"))):
            if index:
                out.append(",")
            string(key, out)
            out.append(":")
            canonical(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            canonical(item, out)
        out.append("]")
    elif isinstance(value, Number):
        out.append(str(value))
    elif isinstance(value, str):
        string(value, out)
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    else:
        raise ValueError(f"unexpected JSON value {value!r}")


SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def string(text, out):
    out.append('"')
    for character in text:
        if character in SHORT:
            out.append(SHORT[character])
        elif ord(character) < 0x20:
            out.append(f"\\u{ord(character):04x}")
        else:
            out.append(character)
    out.append('"')


def six_digit_instant(text):
    """recorded_at in UTC with exactly six fractional digits and Z (the export may write 0, 3, 6 or 9)."""
    if not text.endswith("Z"):
        raise ValueError(f"recorded_at {text!r} is not in UTC with Z")
    seconds, _, fraction = text[:-1].partition(".")
    return f"{seconds}.{(fraction + '000000')[:6]}Z"


def canonical_bytes(event):
    out = ['{"data":']
    canonical(event["data"], out)
    out.append(',"event_id":')
    string(event["event_id"].lower(), out)
    out.append(',"metadata":')
    canonical(event["metadata"], out)
    out.append(',"recorded_at":')
    string(six_digit_instant(event["recorded_at"]), out)
    out.append(',"stream_id":')
    string(event["stream_id"], out)
    out.append(',"type":')
    string(event["type"], out)
    out.append(f',"version":{event["version"]}}}')
    return "".join(out).encode("utf-8")


def main(arguments):
    if len(arguments) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    problems = []
    streams = {}
    log_hash = bytes(32)
    log_hash_at = {}
    events = 0
    with open(arguments[0], encoding="utf-8") as export:
        for line in export:
            if not line.strip():
                continue
            event = json.loads(line, parse_float=Number, parse_int=Number)
            events += 1
            stream, version = event["stream_id"], int(event["version"])
            previous_version, previous_hash = streams.get(stream, (0, bytes(32)))
            if version != previous_version + 1:
                problems.append(f"{stream} version {version} follows version {previous_version}")
            computed = hashlib.sha256(previous_hash + canonical_bytes(event)).digest()
            stored = bytes.fromhex(event["hash"])
            if computed != stored:
                problems.append(f"{stream} version {version}: stored {event['hash']}, computed {computed.hex()}")
            streams[stream] = (version, stored)
            log_hash = hashlib.sha256(log_hash + stored).digest()
            log_hash_at[int(event["position"])] = log_hash
    digests = []
    if len(arguments) == 2:
        with open(arguments[1], encoding="utf-8") as file:
            document = json.load(file)
        digests = document["items"] if isinstance(document, dict) and "items" in document else document
        if isinstance(digests, dict):
            digests = [digests]
        for digest in digests:
            replayed = log_hash_at.get(int(digest["position"]))
            if replayed is None or replayed.hex() != digest["log_hash"]:
                problems.append(f"digest at {digest['position']}: {digest['log_hash']}, computed {replayed and replayed.hex()}")
    print(f"independent check: {events} events, {len(streams)} streams, {len(digests)} digests, log hash {log_hash.hex()}")
    for problem in problems[:20]:
        print(f"  MISMATCH {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
