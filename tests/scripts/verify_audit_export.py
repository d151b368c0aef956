#!/usr/bin/env python3
"""Checks a `keyfill audit export --jsonl` file without Keyfill: each chain's links and hashes
with Python's hashlib, each entry's Ed25519 signature with OpenSSL. The layout is the one
formats/src/audit.rs and docs/audit.md describe. Usage: verify_audit_export.py EXPORT WORKDIR
(the signer certificates are not checked here: `keyfill audit verify` does that)."""

import hashlib
import json
import os
import struct
import subprocess
import sys

SPKI_ED25519_PREFIX = bytes.fromhex("302a300506032b6570032100")


def text(value):
    data = value.encode("utf-8")
    return struct.pack(">I", len(data)) + data


def entry_hash(entry, previous):
    message = b"keyfill audit entry v1\0" + text(entry["station_id"]) + struct.pack(">q", entry["at"])
    message += text(entry["operator"]) + text(entry["kind"])
    message += b"\0" if entry["device_id"] is None else b"\1" + text(entry["device_id"])
    message += text(entry["detail"]) + previous
    return hashlib.sha256(message).digest()


def signature_valid(workdir, public_key, message, signature):
    key = os.path.join(workdir, "signer.der")
    data = os.path.join(workdir, "message.bin")
    sig = os.path.join(workdir, "signature.bin")
    with open(key, "wb") as out:
        out.write(SPKI_ED25519_PREFIX + public_key)
    with open(data, "wb") as out:
        out.write(message)
    with open(sig, "wb") as out:
        out.write(signature)
    result = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", key, "-rawin", "-in", data,
         "-sigfile", sig],
        capture_output=True,
    )
    return result.returncode == 0


def main():
    export, workdir = sys.argv[1], sys.argv[2]
    previous = {}
    count = 0
    with open(export, encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            station = entry["station_id"]
            expected_previous = previous.get(station, bytes(32))
            if bytes.fromhex(entry["prev_hash"]) != expected_previous:
                sys.exit(f"entry {entry['id']}: does not follow the entry before it")
            digest = entry_hash(entry, expected_previous)
            if digest.hex() != entry["hash"]:
                sys.exit(f"entry {entry['id']}: hash does not match its content")
            message = b"keyfill audit entry signature v1\0" + digest
            if not signature_valid(workdir, bytes.fromhex(entry["signer"]), message, bytes.fromhex(entry["signature"])):
                sys.exit(f"entry {entry['id']}: signature does not verify")
            previous[station] = digest
            count += 1
    print(f"{count} entries, chain and signatures valid")


if __name__ == "__main__":
    main()
