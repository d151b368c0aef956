#!/usr/bin/env python3
"""Builds a Keyfill C2 export bundle with implementations independent of Keyfill's Rust code, and
verifies bundles the same way.

- HPKE (RFC 9180): `pyhpke` (pure Python over `cryptography`), not the `hpke` crate. Checked first
  against RFC 9180 A.2.1 (formats/tests/vectors/hpke-rfc9180-a21.json).
- CBOR: `cbor2` in canonical mode, not Keyfill's encoder.
- Ed25519, X25519, AES-256-GCM: `cryptography`, not ring; PBKDF2 and SHA3-256: Python's hashlib.

Every input is fixed (keys, ephemeral IKM, bundle id, times, salts, nonces), so the output is the
same byte for byte on every run, and Keyfill's Rust sealing, fed the same inputs, must reproduce
the bundle exactly. ALL KEYS HERE ARE TEST KEYS, PUBLISHED ON PURPOSE: never use them.

    pip install pyhpke==0.6.5 cbor2==5.6.5 'cryptography>=42'
    python3 tools/vectors/c2_bundle.py generate formats/tests/vectors
    python3 tools/vectors/c2_bundle.py verify BUNDLE_FILE   # a bundle made for the test recipient

Files written to the output directory:
  c2-bundle.kfb                  a version 1 bundle (one part)
  c2-bundle-v2.kfb               a version 2 bundle: the same keys in two parts
  c2-bundle-factory-root.pub     the factory root public key, as a station writes factory-root.pub
  c2-bundle-recipient.key.json   the recipient private key file, sealed under the passphrase below
  c2-bundle-recipient.pub        the recipient public key file
  c2-bundle.json                 every input, the signer's PKCS#8 and certificate, the manifest, the
                                 expected decrypted entries
"""

import hashlib
import io
import json
import os
import sys
from importlib.metadata import version

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

RAW = dict(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)
HERE = os.path.dirname(os.path.abspath(__file__))
RFC_VECTOR = os.path.join(HERE, "..", "..", "formats", "tests", "vectors", "hpke-rfc9180-a21.json")

# Format constants (docs/formats.md §13).
FORMAT_TAG = "keyfill-c2-bundle"
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0003
HPKE_INFO = {1: b"keyfill c2 bundle v1", 2: b"keyfill c2 bundle v2"}
SIGNING_CONTEXT = {1: b"keyfill c2 bundle signature v1\0", 2: b"keyfill c2 bundle signature v2\0"}
SIGNER_CERT_CONTEXT = b"keyfill bundle signer certificate v1\0"
MASTER_KEY_AAD = b"keyfill master key v1"
RECIPIENT_KEY_CONTEXT = b"keyfill c2 recipient key v1\0"
PBKDF2_ITERATIONS = 600_000

# Fixed inputs. TEST KEYS ONLY.
ROOT_SEED = hashlib.sha256(b"keyfill c2 bundle vector: factory root (test key)").digest()
SIGNER_SEED = hashlib.sha256(b"keyfill c2 bundle vector: bundle signer (test key)").digest()
RECIPIENT_PRIVATE = hashlib.sha256(b"keyfill c2 bundle vector: C2 recipient (test key)").digest()
EPHEMERAL_IKM = hashlib.sha256(b"keyfill c2 bundle vector: HPKE ephemeral ikm").digest()
BUNDLE_ID = bytes(range(0xB0, 0xC0))
BUNDLE_ID_V2 = bytes(range(0xD0, 0xE0))
EPHEMERAL_IKM_V2 = [hashlib.sha256(b"keyfill c2 bundle vector: HPKE ephemeral ikm, part %d" % i).digest()
                    for i in range(2)]
STATION_ID = bytes(range(0x10, 0x20))
STATION_NAME = "vector-station"
SIGNER_NOT_BEFORE = 1_700_000_000
SIGNER_NOT_AFTER = 1_900_000_000
CREATED_AT_MS = 1_800_000_000_123
OPEN_AT_MS = 1_800_000_600_000
RECIPIENT_PASSPHRASE = "vector passphrase (test only)"
RECIPIENT_FILE_KEY = hashlib.sha256(b"keyfill c2 bundle vector: recipient file key").digest()
RECIPIENT_SALT = bytes(range(0x40, 0x50))
RECIPIENT_NONCES = (bytes(range(0x60, 0x6C)), bytes(range(0x70, 0x7C)))
ENTRIES = [
    dict(name="vector-device-0001", key_id=bytes([0xA1] * 16), key=hashlib.sha256(b"vector key 1").digest(),
         provisioned_at_ms=1_799_990_000_001, from_rotation=False),
    dict(name="vector-device-0002", key_id=bytes([0xA2] * 16), key=hashlib.sha256(b"vector key 2").digest(),
         provisioned_at_ms=1_799_000_000_000, from_rotation=True),
    dict(name="capteur-éàü-03", key_id=bytes([0xA3] * 16), key=hashlib.sha256(b"vector key 3").digest(),
         provisioned_at_ms=1_799_999_999_999, from_rotation=False),
]


def cbor(value):
    return cbor2.dumps(value, canonical=True)


def device_id(name):
    return hashlib.sha3_256(name.encode()).digest()[:16]


def root_key_id(root_public):
    return hashlib.sha3_256(root_public).digest()[:8]


def suite():
    return CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)


def check_pyhpke_against_rfc():
    v = json.load(open(RFC_VECTOR))
    s = suite()
    pkr = s.kem.deserialize_public_key(bytes.fromhex(v["pkRm"]))
    enc, ctx = s.create_sender_context(pkr, info=bytes.fromhex(v["info"]),
                                       eks=s.kem.derive_key_pair(bytes.fromhex(v["ikmE"])))
    assert enc.hex() == v["enc"], "pyhpke disagrees with RFC 9180 A.2.1 (enc)"
    for e in v["encryptions"]:
        ct = ctx.seal(bytes.fromhex(e["pt"]), aad=bytes.fromhex(e["aad"]))
        assert ct.hex() == e["ct"], "pyhpke disagrees with RFC 9180 A.2.1 (ct %d)" % e["sequence_number"]


def signer_certificate(root, signer_public):
    tbs = cbor([1, STATION_ID, STATION_NAME, signer_public, SIGNER_NOT_BEFORE, SIGNER_NOT_AFTER,
                root_key_id(root.public_key().public_bytes(**RAW))])
    return cbor([1, tbs, root.sign(SIGNER_CERT_CONTEXT + tbs)])


def entry_list(entries=ENTRIES):
    return [[e["name"], device_id(e["name"]), e["key_id"], e["provisioned_at_ms"], e["from_rotation"], e["key"]]
            for e in entries]


def manifest(recipient_public, entries=ENTRIES, part=None):
    """Version 1 without `part`; version 2 with `part` = (index, last)."""
    times = [e["provisioned_at_ms"] for e in entries]
    tail = [STATION_ID, STATION_NAME, CREATED_AT_MS, len(entries), min(times), max(times), "symmetric",
            recipient_public]
    if part is None:
        return cbor([1, BUNDLE_ID] + tail)
    return cbor([2, BUNDLE_ID_V2, part[0], part[1]] + tail)


def seal_part(version, signer, certificate, recipient_public, manifest_bytes, entries, ikm):
    s = suite()
    enc, ctx = s.create_sender_context(s.kem.deserialize_public_key(recipient_public), info=HPKE_INFO[version],
                                       eks=s.kem.derive_key_pair(ikm))
    ciphertext = ctx.seal(cbor(entry_list(entries)), aad=manifest_bytes)
    body = cbor([version, KEM_ID, KDF_ID, AEAD_ID, manifest_bytes, certificate, enc, ciphertext])
    return cbor([FORMAT_TAG, version, body, signer.sign(SIGNING_CONTEXT[version] + body)])


def build_bundle(signer, certificate, recipient_public):
    manifest_bytes = manifest(recipient_public)
    return (seal_part(1, signer, certificate, recipient_public, manifest_bytes, ENTRIES, EPHEMERAL_IKM),
            manifest_bytes)


def build_bundle_v2(signer, certificate, recipient_public):
    """The same keys in device-id order (version 2 requires it), in two parts of 2 and 1."""
    ordered = sorted(ENTRIES, key=lambda e: device_id(e["name"]))
    chunks = [ordered[:2], ordered[2:]]
    parts, manifests = [], []
    for index, chunk in enumerate(chunks):
        manifest_bytes = manifest(recipient_public, chunk, (index, index == len(chunks) - 1))
        parts.append(seal_part(2, signer, certificate, recipient_public, manifest_bytes, chunk,
                               EPHEMERAL_IKM_V2[index]))
        manifests.append(manifest_bytes)
    return b"".join(parts), manifests


def recipient_key_file(recipient_public):
    kek = hashlib.pbkdf2_hmac("sha256", RECIPIENT_PASSPHRASE.encode(), RECIPIENT_SALT, PBKDF2_ITERATIONS, 32)
    n1, n2 = RECIPIENT_NONCES
    sealed_file_key = n1 + AESGCM(kek).encrypt(n1, RECIPIENT_FILE_KEY, MASTER_KEY_AAD)
    sealed_private = n2 + AESGCM(RECIPIENT_FILE_KEY).encrypt(n2, RECIPIENT_PRIVATE,
                                                              RECIPIENT_KEY_CONTEXT + recipient_public)
    return {
        "version": 1,
        "kind": "keyfill-c2-recipient-key",
        "public_key": recipient_public.hex(),
        "file_key": {"version": 1, "kdf": "pbkdf2-hmac-sha256", "iterations": PBKDF2_ITERATIONS,
                     "salt": RECIPIENT_SALT.hex(), "sealed": sealed_file_key.hex()},
        "sealed_private_key": sealed_private.hex(),
    }


def open_part(data, root_public, recipient_private):
    """One part, verified in the importer's order; raises on any failure."""
    tag, ver, body, signature = cbor2.loads(data)
    assert tag == FORMAT_TAG and ver in (1, 2) and cbor([tag, ver, body, signature]) == data
    fields = cbor2.loads(body)
    assert cbor(fields) == body and fields[:4] == [ver, KEM_ID, KDF_ID, AEAD_ID]
    manifest_bytes, certificate, enc, ciphertext = fields[4:]
    _, tbs, cert_signature = cbor2.loads(certificate)
    _, station_id, station_name, signer_public, not_before, not_after, key_id = cbor2.loads(tbs)
    assert key_id == root_key_id(root_public), "signer certified by another root"
    Ed25519PublicKey.from_public_bytes(root_public).verify(cert_signature, SIGNER_CERT_CONTEXT + tbs)
    Ed25519PublicKey.from_public_bytes(signer_public).verify(signature, SIGNING_CONTEXT[ver] + body)
    m = cbor2.loads(manifest_bytes)
    assert m[0] == ver
    # Version 2 adds the part index and the last-part flag after the bundle id.
    part = (m[2], m[3]) if ver == 2 else (0, True)
    m = m[:2] + m[4:] if ver == 2 else m
    assert (m[2], m[3]) == (station_id, station_name)
    assert not_before <= m[4] // 1000 <= not_after, "signer not valid at creation"
    recipient_public = X25519PrivateKey.from_private_bytes(recipient_private).public_key().public_bytes(**RAW)
    assert m[8] == "symmetric" and m[9] == recipient_public, "not addressed to this recipient"
    s = suite()
    ctx = s.create_recipient_context(enc, s.kem.deserialize_private_key(recipient_private), info=HPKE_INFO[ver])
    entries = cbor2.loads(ctx.open(ciphertext, aad=manifest_bytes))
    times = [e[3] for e in entries]
    assert len(entries) == m[5] and (min(times), max(times)) == (m[6], m[7])
    assert len({e[0] for e in entries}) == len(entries)
    for name, dev_id, _, _, _, key in entries:
        assert dev_id == device_id(name) and len(key) == 32 and key != bytes(32)
    return ver, part, m, entries


def split_parts(data):
    """The parts of a file: a CBOR sequence (RFC 8742) of bundle arrays."""
    stream = io.BytesIO(data)
    parts = []
    while stream.tell() < len(data):
        start = stream.tell()
        cbor2.load(stream)
        parts.append(data[start:stream.tell()])
    return parts


def open_bundle(data, root_public, recipient_private):
    """A whole file: every part verified and opened, the parts' sequence checked."""
    first, entries, last_id = None, [], None
    parts = split_parts(data)
    for position, part_bytes in enumerate(parts):
        ver, (index, last), m, part_entries = open_part(part_bytes, root_public, recipient_private)
        assert index == position, "parts dropped, repeated or reordered"
        assert last == (position == len(parts) - 1), "the last part is missing or not last"
        if first is None:
            first = (ver, m)
        else:
            assert ver == first[0] and [m[1]] + m[2:5] + m[8:] == [first[1][1]] + first[1][2:5] + first[1][8:], \
                "a part of another bundle"
        if ver == 2:
            for e in part_entries:
                assert last_id is None or e[1] > last_id, "device ids do not rise across the parts"
                last_id = e[1]
        entries += part_entries
    assert first is not None, "no part"
    return first[1], entries


def entries_json(entries):
    return [{"name": n, "device_id": d.hex(), "key_id": k.hex(), "provisioned_at_ms": t, "from_rotation": r,
             "key": key.hex()} for n, d, k, t, r, key in entries]


def keys():
    root = Ed25519PrivateKey.from_private_bytes(ROOT_SEED)
    signer = Ed25519PrivateKey.from_private_bytes(SIGNER_SEED)
    recipient_public = X25519PrivateKey.from_private_bytes(RECIPIENT_PRIVATE).public_key().public_bytes(**RAW)
    return root, signer, recipient_public


def generate(out_dir):
    check_pyhpke_against_rfc()
    root, signer, recipient_public = keys()
    root_public = root.public_key().public_bytes(**RAW)
    signer_public = signer.public_key().public_bytes(**RAW)
    certificate = signer_certificate(root, signer_public)
    bundle, manifest_bytes = build_bundle(signer, certificate, recipient_public)
    _, opened = open_bundle(bundle, root_public, RECIPIENT_PRIVATE)
    bundle_v2, manifests_v2 = build_bundle_v2(signer, certificate, recipient_public)
    _, opened_v2 = open_bundle(bundle_v2, root_public, RECIPIENT_PRIVATE)
    assert sorted(opened_v2) == sorted(opened), "the two versions hold the same keys"
    signer_pkcs8 = signer.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())

    def write(name, data):
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)

    write("c2-bundle.kfb", bundle)
    write("c2-bundle-v2.kfb", bundle_v2)
    write("c2-bundle-factory-root.pub", (root_public.hex() + "\n").encode())
    write("c2-bundle-recipient.pub", (recipient_public.hex() + "\n").encode())
    write("c2-bundle-recipient.key.json", (json.dumps(recipient_key_file(recipient_public), indent=2) + "\n").encode())
    description = {
        "warning": "TEST KEYS ONLY, published on purpose: never use any of these keys",
        "generator": {
            "script": "tools/vectors/c2_bundle.py generate formats/tests/vectors",
            "python": sys.version.split()[0],
            "packages": {p: version(p) for p in ("pyhpke", "cbor2", "cryptography")},
        },
        "inputs": {
            "factory_root_seed": ROOT_SEED.hex(),
            "signer_seed": SIGNER_SEED.hex(),
            "signer_pkcs8": signer_pkcs8.hex(),
            "station_id": STATION_ID.hex(),
            "station_name": STATION_NAME,
            "signer_not_before": SIGNER_NOT_BEFORE,
            "signer_not_after": SIGNER_NOT_AFTER,
            "recipient_private": RECIPIENT_PRIVATE.hex(),
            "recipient_public": recipient_public.hex(),
            "ephemeral_ikm": EPHEMERAL_IKM.hex(),
            "bundle_id": BUNDLE_ID.hex(),
            "created_at_ms": CREATED_AT_MS,
            "open_at_ms": OPEN_AT_MS,
            "recipient_passphrase": RECIPIENT_PASSPHRASE,
            "recipient_file_key": RECIPIENT_FILE_KEY.hex(),
            "recipient_salt": RECIPIENT_SALT.hex(),
            "recipient_nonces": [n.hex() for n in RECIPIENT_NONCES],
        },
        "factory_root_public": root_public.hex(),
        "signer_public": signer_public.hex(),
        "signer_certificate": certificate.hex(),
        "manifest": manifest_bytes.hex(),
        "bundle_file": "c2-bundle.kfb",
        "bundle_len": len(bundle),
        "bundle_sha256": hashlib.sha256(bundle).hexdigest(),
        "expected_entries": entries_json(opened),
        "v2": {
            "bundle_id": BUNDLE_ID_V2.hex(),
            "ephemeral_ikm": [ikm.hex() for ikm in EPHEMERAL_IKM_V2],
            "manifests": [m.hex() for m in manifests_v2],
            "bundle_file": "c2-bundle-v2.kfb",
            "bundle_len": len(bundle_v2),
            "bundle_sha256": hashlib.sha256(bundle_v2).hexdigest(),
            "expected_entries": entries_json(opened_v2),
        },
    }
    write("c2-bundle.json", (json.dumps(description, indent=2, ensure_ascii=False) + "\n").encode())


def verify(path):
    root, _, _ = keys()
    with open(path, "rb") as f:
        data = f.read()
    m, entries = open_bundle(data, root.public_key().public_bytes(**RAW), RECIPIENT_PRIVATE)
    print(json.dumps({"bundle_id": m[1].hex(), "created_at_ms": m[4], "parts": len(split_parts(data)),
                      "count": len(entries), "entries": entries_json(entries)}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "generate":
        generate(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "verify":
        verify(sys.argv[2])
    else:
        sys.exit(__doc__)
