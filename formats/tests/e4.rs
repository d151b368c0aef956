//! E4 conformance: known-answer vectors from the independent C implementation (libe4), the
//! RFC 5297 AES-SIV vectors, timestamp windows, command parsing, public-key command keys.

use keyfill_formats::SecretKey;
use keyfill_formats::e4;
use keyfill_formats::e4::{
    Command, CommandError, E4Error, KeyMode, TimestampPolicy, command_key_for_c2, command_key_for_device, protect,
    topic_hash, unprotect,
};
use proptest::prelude::*;

fn key(hex_text: &str) -> SecretKey {
    SecretKey::from_slice(&hex::decode(hex_text).expect("hex")).expect("32 bytes")
}

#[test]
fn e4_libe4_vectors_protect_and_unprotect_byte_for_byte() {
    let vectors = include_str!("vectors/e4-vectors.tsv");
    let mut checked = 0;
    let mut commands = 0;
    for line in vectors.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let (kind, key, timestamp, plaintext, expected) =
            (fields[0], key(fields[1]), fields[2].parse::<u64>().expect("timestamp"), fields[3], fields[4]);
        let plaintext = hex::decode(plaintext).expect("hex");
        let expected = hex::decode(expected).expect("hex");
        assert_eq!(protect(&key, timestamp, &plaintext).expect("protect"), expected, "{kind} at {timestamp}");
        let opened = unprotect(&key, &expected, timestamp, TimestampPolicy::GO_CLIENT).expect("unprotect");
        assert_eq!(opened.as_slice(), plaintext.as_slice());
        if kind != "message" {
            let command = Command::decode(&plaintext, KeyMode::Symmetric).expect("a valid command");
            assert_eq!(command.encode(), plaintext, "{kind} re-encodes identically");
            let name = match command {
                Command::SetIdKey { .. } => "SetIdKey",
                Command::SetTopicKey { .. } => "SetTopicKey",
                Command::RemoveTopic { .. } => "RemoveTopic",
                Command::ResetTopics => "ResetTopics",
                _ => "other",
            };
            assert_eq!(name, kind);
            commands += 1;
        }
        if kind == "SetIdKey" {
            assert_eq!(expected.len(), 57, "a protected symmetric SetIdKey is 57 bytes");
        }
        checked += 1;
    }
    assert_eq!((checked, commands), (40, 32));
}

#[test]
fn e4_set_id_key_matches_the_reference_for_the_same_key_and_time() {
    // First SetIdKey vector: the client key protects a SetIdKey carrying the new key.
    let current = key("c574efe1e51ce914f0daedb62c478d15888922ff8e7d7043f3fb2a73290f2347");
    let new_key = key("be6c40a684f2b9e3023c8668edb0eeee3ad5c96ebb3cf7f974ef52a3f6a34a0b");
    let command = Command::SetIdKey { key: new_key }.encode();
    let protected = protect(&current, 1_861_916_192, &command).expect("protect");
    assert_eq!(
        hex::encode(protected),
        "2096fa6e00000000cdce12f696c0d393ebe2b791cfa9e0c46ec1288b0a8b30addb513b12779fb8f8fda2e997f2572df2c9bdc94c308337f156"
    );
}

#[test]
fn e4_rfc5297_aes_siv_vectors() {
    use aes_siv::KeyInit;
    use aes_siv::siv::Aes128Siv;
    // A.1, deterministic authenticated encryption.
    let key = hex::decode("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").expect("hex");
    let ad = hex::decode("101112131415161718191a1b1c1d1e1f2021222324252627").expect("hex");
    let plaintext = hex::decode("112233445566778899aabbccddee").expect("hex");
    let mut siv = Aes128Siv::new(key.as_slice().into());
    let output = siv.encrypt([&ad], &plaintext).expect("encrypt");
    assert_eq!(hex::encode(&output), "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c");
    assert_eq!(siv.decrypt([&ad], &output).expect("decrypt"), plaintext);
    // A.2, nonce-based: the nonce is the last associated-data component.
    let key = hex::decode("7f7e7d7c7b7a79787776757473727170404142434445464748494a4b4c4d4e4f").expect("hex");
    let ad1 =
        hex::decode("00112233445566778899aabbccddeeffdeaddadadeaddadaffeeddccbbaa99887766554433221100").expect("hex");
    let ad2 = hex::decode("102030405060708090a0").expect("hex");
    let nonce = hex::decode("09f911029d74e35bd84156c5635688c0").expect("hex");
    let plaintext =
        hex::decode("7468697320697320736f6d6520706c61696e7465787420746f20656e6372797074207573696e67205349562d414553")
            .expect("hex");
    let mut siv = Aes128Siv::new(key.as_slice().into());
    let output = siv.encrypt([&ad1, &ad2, &nonce], &plaintext).expect("encrypt");
    assert_eq!(
        hex::encode(&output),
        "7bdb6e3b432667eb06f4d14bff2fbd0fcb900f2fddbe404326601965c889bf17dba77ceb094fa663b7a3f748ba8af829ea64ad544a272e9c485b62a3fd5c0d"
    );
}

#[test]
fn e4_timestamp_windows_follow_the_go_and_c_clients() {
    let key = key("3984a8df8bcbbc0d9f2294ae5c008bca1fc06244ff875abab7044f3fe90dfa3f");
    let protected = protect(&key, 1_000_000, b"hello").expect("protect");
    assert!(unprotect(&key, &protected, 1_000_600, TimestampPolicy::GO_CLIENT).is_ok(), "exactly 10 minutes old");
    assert!(matches!(unprotect(&key, &protected, 1_000_601, TimestampPolicy::GO_CLIENT), Err(E4Error::TooOld { .. })));
    assert!(matches!(unprotect(&key, &protected, 999_999, TimestampPolicy::GO_CLIENT), Err(E4Error::InFuture { .. })));
    assert!(unprotect(&key, &protected, 999_400, TimestampPolicy::C_CLIENT).is_ok(), "C allows 10 minutes of skew");
    assert!(matches!(unprotect(&key, &protected, 999_399, TimestampPolicy::C_CLIENT), Err(E4Error::InFuture { .. })));
}

#[test]
fn field_device_window_takes_a_lagging_clock_up_to_its_future_skew() {
    let key = key("3984a8df8bcbbc0d9f2294ae5c008bca1fc06244ff875abab7044f3fe90dfa3f");
    let protected = protect(&key, 1_000_000, b"hello").expect("protect");
    let default = TimestampPolicy::device(e4::DEFAULT_FUTURE_SKEW_SECS);
    assert_eq!(default, TimestampPolicy::C_CLIENT, "the default is the C client's window");
    assert!(unprotect(&key, &protected, 999_940, default).is_ok(), "a device a minute behind");
    assert!(unprotect(&key, &protected, 999_400, default).is_ok(), "ten minutes behind");
    assert!(matches!(unprotect(&key, &protected, 999_340, default), Err(E4Error::InFuture { skew: 600, .. })));
    assert!(matches!(unprotect(&key, &protected, 1_000_601, default), Err(E4Error::TooOld { .. })), "past unchanged");
    let strict = TimestampPolicy::device(0);
    assert_eq!(strict, TimestampPolicy::GO_CLIENT);
    assert!(matches!(unprotect(&key, &protected, 999_999, strict), Err(E4Error::InFuture { .. })));
}

#[test]
fn e4_rejects_tampering_wrong_keys_and_short_input() {
    let key_a = key("3984a8df8bcbbc0d9f2294ae5c008bca1fc06244ff875abab7044f3fe90dfa3f");
    let key_b = key("f26056051226c259f591064b92ec778caffc4e70c25fe3c30d86475f2767d118");
    let protected = protect(&key_a, 5, b"payload").expect("protect");
    assert_eq!(unprotect(&key_b, &protected, 5, TimestampPolicy::ANY), Err(E4Error::Unauthentic));
    for index in 0..protected.len() {
        let mut altered = protected.clone();
        altered[index] ^= 1;
        assert!(unprotect(&key_a, &altered, 5, TimestampPolicy::ANY).is_err(), "byte {index}");
    }
    assert_eq!(unprotect(&key_a, &protected[..23], 5, TimestampPolicy::ANY), Err(E4Error::TooShort { len: 23 }));
    assert_eq!(protect(&SecretKey::from_bytes([0; 32]), 5, b"x"), Err(E4Error::ZeroKey));
}

#[test]
fn e4_commands_have_typed_errors() {
    assert_eq!(Command::decode(&[], KeyMode::Symmetric), Err(CommandError::Empty));
    assert_eq!(Command::decode(&[0x08], KeyMode::Symmetric), Err(CommandError::Unknown(8)));
    assert_eq!(
        Command::decode(&[0x02, 1, 2], KeyMode::Symmetric),
        Err(CommandError::WrongLength { command: 2, len: 2, expected: 32 })
    );
    assert_eq!(
        Command::decode(&[0x01, 0], KeyMode::Symmetric),
        Err(CommandError::WrongLength { command: 1, len: 1, expected: 0 })
    );
    let mut zero_key = vec![0x02];
    zero_key.extend([0u8; 32]);
    assert_eq!(Command::decode(&zero_key, KeyMode::Symmetric), Err(CommandError::ZeroKey));
    let mut pair = vec![0x02];
    pair.extend([7u8; 64]);
    assert!(matches!(Command::decode(&pair, KeyMode::PublicKey), Ok(Command::SetIdKeyPair { .. })));
    let mut set_pub = vec![0x06];
    set_pub.extend([1u8; 32]);
    set_pub.extend([2u8; 16]);
    assert_eq!(
        Command::decode(&set_pub, KeyMode::Symmetric),
        Ok(Command::SetPubKey { public_key: [1; 32], client_id: [2; 16] }),
        "public key first, then client id"
    );
    assert_eq!(topic_hash("a/b").len(), 16);
}

#[test]
fn e4_public_key_mode_command_keys_agree() {
    use curve25519_dalek::montgomery::MontgomeryPoint;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    for seed_byte in 1..=8u8 {
        let device_seed = [seed_byte; 32];
        let device = Ed25519KeyPair::from_seed_unchecked(&device_seed).expect("seed");
        let device_public: [u8; 32] = device.public_key().as_ref().try_into().expect("32");
        let c2_secret = [seed_byte.wrapping_mul(31); 32];
        let c2_public = MontgomeryPoint::mul_base_clamped(c2_secret).to_bytes();
        let on_device = command_key_for_device(&device_seed, &c2_public).expect("device");
        let on_c2 = command_key_for_c2(&c2_secret, &device_public).expect("c2");
        assert!(on_device.constant_time_eq(&on_c2));
    }
}

proptest! {
    #[test]
    fn e4_command_and_protected_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Command::decode(&bytes, KeyMode::Symmetric);
        let _ = Command::decode(&bytes, KeyMode::PublicKey);
        let key = SecretKey::from_bytes([9; 32]);
        let _ = unprotect(&key, &bytes, 0, TimestampPolicy::ANY);
    }

    #[test]
    fn e4_protect_round_trips(plaintext in prop::collection::vec(any::<u8>(), 0..300), timestamp in any::<u64>(), key in any::<[u8; 32]>()) {
        prop_assume!(key.iter().any(|b| *b != 0));
        let key = SecretKey::from_bytes(key);
        let protected = protect(&key, timestamp, &plaintext).expect("protect");
        prop_assert_eq!(protected.len(), 8 + 16 + plaintext.len());
        let opened = unprotect(&key, &protected, timestamp, TimestampPolicy::GO_CLIENT).expect("open");
        prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
    }
}

#[test]
fn e4_public_key_command_keys_match_libsodium() {
    let vectors = include_str!("vectors/e4-pubkey-command-keys.tsv");
    let array = |text: &str| -> [u8; 32] { hex::decode(text).expect("hex").try_into().expect("32 bytes") };
    let mut checked = 0;
    for line in vectors.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let (seed, device_public, c2_secret, c2_public, expected) = (
            array(fields[0]),
            array(fields[1]),
            array(fields[2]),
            array(fields[3]),
            SecretKey::from_bytes(array(fields[4])),
        );
        assert!(command_key_for_device(&seed, &c2_public).expect("device").constant_time_eq(&expected));
        assert!(command_key_for_c2(&c2_secret, &device_public).expect("c2").constant_time_eq(&expected));
        checked += 1;
    }
    assert_eq!(checked, 8);
}
