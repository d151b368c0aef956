#!/usr/bin/env python3
"""Generates formats/tests/vectors/sessions.json: complete provisioning sessions computed with
implementations independent of Keyfill's Rust code.

- Noise: the `noiseprotocol` package (not snow), with fixed static and ephemeral keys.
- CBOR: `cbor2` in canonical mode (not Keyfill's encoder).
- Ed25519, X25519, HKDF: `cryptography` (not ring); SHA3, HMAC: Python's hashlib/hmac.

Every value is fixed, so the whole transcript is deterministic: the Rust test replays the same
inputs through the station session and the agent core and must produce identical bytes.

    pip install -r tools/vectors/requirements.txt
    python3 tools/vectors/generate.py > formats/tests/vectors/sessions.json
"""

import hashlib
import hmac
import json
import struct

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from noise.connection import Keypair, NoiseConnection

RAW = dict(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)

DEVICE_NAME = "vector-device"
STATION_STATIC = bytes([0x02] * 32)
STATION_EPHEMERAL = bytes([0x03] * 32)
DEVICE_STATIC = bytes([0x01] * 32)
DEVICE_EPHEMERAL = bytes([0x04] * 32)
ROOT_SEED = bytes([0x05] * 32)
SETUP_SECRET = bytes([0x06] * 16)
STATION_ID = bytes([0x07] * 16)
KEY_ID = bytes([0x08] * 16)
DELIVERED_KEY = bytes(range(0x20, 0x40))
ISSUED_AT = 1_800_000_000
NOT_BEFORE = 1_700_000_000
NOT_AFTER = 1_900_000_000
UNIX_NOW = 1_800_000_100
SESSION_ID = bytes([0x09] * 8)
VERSION = 2


def cbor(value):
    return cbor2.dumps(value, canonical=True)


def x25519_public(private):
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(**RAW)


def device_id(name):
    return hashlib.sha3_256(name.encode()).digest()[:16]


def certificate():
    root = Ed25519PrivateKey.from_private_bytes(ROOT_SEED)
    root_public = root.public_key().public_bytes(**RAW)
    root_key_id = hashlib.sha3_256(root_public).digest()[:8]
    tbs = cbor([1, STATION_ID, "vector-station", x25519_public(STATION_STATIC), NOT_BEFORE, NOT_AFTER, root_key_id])
    signature = root.sign(b"keyfill station certificate v1\0" + tbs)
    return root_public, cbor([1, tbs, signature])


def setup_psk(secret, dev_id):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"keyfill setup secret psk v1", info=dev_id).derive(secret)


def proof(label, key, handshake_hash, dev_id, key_id):
    message = label + struct.pack(">H", len(handshake_hash)) + handshake_hash + dev_id + key_id
    return hmac.new(key, message, hashlib.sha256).digest()


def session(mode):
    dev_id = device_id(DEVICE_NAME)
    pattern = {1: b"Noise_XK_25519_ChaChaPoly_SHA256", 2: b"Noise_XNpsk3_25519_ChaChaPoly_SHA256"}[mode]
    prologue = b"keyfill/2\0" + bytes([mode]) + dev_id + SESSION_ID
    root_public, cert = certificate()

    station = NoiseConnection.from_name(pattern)
    station.set_as_initiator()
    device = NoiseConnection.from_name(pattern)
    device.set_as_responder()
    for side, static, ephemeral in ((station, STATION_STATIC, STATION_EPHEMERAL), (device, DEVICE_STATIC, DEVICE_EPHEMERAL)):
        side.set_prologue(prologue)
        side.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
    station.set_keypair_from_private_bytes(Keypair.STATIC, STATION_STATIC)
    if mode == 1:
        device.set_keypair_from_private_bytes(Keypair.STATIC, DEVICE_STATIC)
        station.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, x25519_public(DEVICE_STATIC))
    else:
        psk = setup_psk(SETUP_SECRET, dev_id)
        station.set_psks(psk=psk)
        device.set_psks(psk=psk)
    station.start_handshake()
    device.start_handshake()

    wire = []
    m1 = station.write_message(b"")
    device.read_message(m1)
    wire.append(("station", cbor([VERSION, 1, SESSION_ID, mode, m1])))
    m2 = device.write_message(b"")
    station.read_message(m2)
    wire.append(("device", cbor([VERSION, 2, SESSION_ID, m2])))
    m3 = station.write_message(cert)
    assert device.read_message(m3) == cert
    wire.append(("station", cbor([VERSION, 3, SESSION_ID, m3])))
    assert station.handshake_finished and device.handshake_finished
    handshake_hash = station.get_handshake_hash()

    ready = device.encrypt(cbor([VERSION, 15, dev_id]))
    wire.append(("device", cbor([VERSION, 4, SESSION_ID, ready])))
    delivery = station.encrypt(cbor([VERSION, 10, dev_id, KEY_ID, DELIVERED_KEY, 1, ISSUED_AT, STATION_ID]))
    wire.append(("station", cbor([VERSION, 4, SESSION_ID, delivery])))
    confirmation_proof = proof(b"keyfill key confirmation v1\0", DELIVERED_KEY, handshake_hash, dev_id, KEY_ID)
    confirmation = device.encrypt(cbor([VERSION, 11, dev_id, KEY_ID, confirmation_proof]))
    wire.append(("device", cbor([VERSION, 4, SESSION_ID, confirmation])))

    return {
        "mode": mode,
        "pattern": pattern.decode(),
        "device_name": DEVICE_NAME,
        "device_id": dev_id.hex(),
        "handshake_hash": handshake_hash.hex(),
        "setup_psk": setup_psk(SETUP_SECRET, dev_id).hex() if mode == 2 else None,
        "confirmation_proof": confirmation_proof.hex(),
        "factory_root_public": root_public.hex(),
        "certificate": cert.hex(),
        "messages": [{"from": sender, "wire": message.hex()} for sender, message in wire],
    }


def main():
    inputs = {
        "station_static_private": STATION_STATIC.hex(),
        "station_ephemeral_private": STATION_EPHEMERAL.hex(),
        "device_static_private": DEVICE_STATIC.hex(),
        "device_ephemeral_private": DEVICE_EPHEMERAL.hex(),
        "factory_root_seed": ROOT_SEED.hex(),
        "setup_secret": SETUP_SECRET.hex(),
        "station_id": STATION_ID.hex(),
        "station_name": "vector-station",
        "not_before": NOT_BEFORE,
        "not_after": NOT_AFTER,
        "key_id": KEY_ID.hex(),
        "delivered_key": DELIVERED_KEY.hex(),
        "issued_at": ISSUED_AT,
        "unix_now": UNIX_NOW,
        "session_id": SESSION_ID.hex(),
    }
    document = {
        "generator": "tools/vectors/generate.py (noiseprotocol 0.3.1, cbor2 canonical, cryptography, hashlib)",
        "inputs": inputs,
        "sessions": [session(1), session(2)],
    }
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
