#!/usr/bin/env python3
"""Generates formats/tests/vectors/e4-pubkey-command-keys.tsv: E4 public-key mode command keys,
SHA3-256(X25519(...)) of C2's X25519 key and the device's Ed25519 key converted to Montgomery
form, computed with libsodium (PyNaCl), independently of Keyfill's Rust code.

    pip install pynacl
    python3 tools/vectors/e4_pubkey.py > formats/tests/vectors/e4-pubkey-command-keys.tsv
"""
import hashlib

import nacl.bindings as sodium

print("# E4 public-key mode command keys computed with libsodium (PyNaCl): tools/vectors/e4_pubkey.py")
print("# device Ed25519 seed\tdevice Ed25519 public\tC2 X25519 secret\tC2 X25519 public\tcommand key")
for i in range(1, 9):
    seed = hashlib.sha256(b"keyfill e4 device seed %d" % i).digest()
    device_public, device_secret = sodium.crypto_sign_seed_keypair(seed)
    c2_secret = hashlib.sha256(b"keyfill e4 c2 secret %d" % i).digest()
    c2_public = sodium.crypto_scalarmult_base(c2_secret)
    on_device = hashlib.sha3_256(
        sodium.crypto_scalarmult(sodium.crypto_sign_ed25519_sk_to_curve25519(device_secret), c2_public)).digest()
    on_c2 = hashlib.sha3_256(
        sodium.crypto_scalarmult(c2_secret, sodium.crypto_sign_ed25519_pk_to_curve25519(device_public))).digest()
    assert on_device == on_c2
    print("\t".join(x.hex() for x in (seed, device_public, c2_secret, c2_public, on_device)))
