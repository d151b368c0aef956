//! Property tests: arbitrary input never panics any parser, and valid values round-trip.

use keyfill_formats::cert::{CertificateBody, StationCertificate};
use keyfill_formats::frame::{self, FrameDecoder};
use keyfill_formats::message::{
    AbortReason, HandshakeMode, KeyDelivery, KeyKind, SessionId, SessionMessage, WireBody, WireMessage,
};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload, QrError, SetupSecret, TransportHints};
use keyfill_formats::{DeviceId, DeviceName, NameError, SecretKey, base45};
use proptest::prelude::*;

fn payload_strategy() -> impl Strategy<Value = OnboardingPayload> {
    (
        // Any valid name: no '/', no control character, never "." or "..".
        "[a-zA-Z0-9 _é🔑-][a-zA-Z0-9 ._é🔑-]{0,63}",
        "[A-Z0-9-]{1,64}",
        prop::option::of("[a-z0-9-]{1,64}"),
        any::<bool>(),
        any::<[u8; 32]>(),
        any::<[u8; 16]>(),
        any::<bool>(),
        prop::option::of(any::<[u8; 6]>()),
        prop::option::of("[a-z0-9]{1,29}"),
        prop::option::of(prop::collection::vec(any::<u8>(), 5..=16)),
    )
        .prop_map(
            |(name, serial, model, identity, public_key, secret, serial_hint, ble_address, ble_name, pcsc_aid)| {
                let credential = if identity {
                    DeviceCredential::Identity { public_key }
                } else {
                    DeviceCredential::SetupSecret(SetupSecret(secret))
                };
                let name = DeviceName::parse(&name).expect("the pattern makes valid names");
                let mut payload = OnboardingPayload::new(name, &serial, credential);
                payload.model = model;
                payload.hints = TransportHints { serial: serial_hint, ble_address, ble_name, pcsc_aid };
                payload
            },
        )
}

fn session_message_strategy() -> impl Strategy<Value = SessionMessage> {
    let id = any::<[u8; 16]>().prop_map(DeviceId);
    prop_oneof![
        (
            id.clone(),
            any::<[u8; 16]>(),
            any::<[u8; 32]>().prop_filter("nonzero", |k| k.iter().any(|b| *b != 0)),
            any::<u64>(),
            any::<[u8; 16]>()
        )
            .prop_map(|(device_id, key_id, key, issued_at, station_id)| {
                SessionMessage::KeyDelivery(KeyDelivery {
                    device_id,
                    key_id,
                    key: SecretKey::from_bytes(key),
                    kind: KeyKind::E4SymmetricClientKey,
                    issued_at,
                    station_id,
                })
            }),
        (id.clone(), any::<[u8; 16]>(), any::<[u8; 32]>())
            .prop_map(|(device_id, key_id, proof)| SessionMessage::KeyConfirmation { device_id, key_id, proof }),
        (id.clone(), any::<[u8; 16]>())
            .prop_map(|(device_id, key_id)| SessionMessage::KeyStatusQuery { device_id, key_id }),
        (id.clone(), any::<[u8; 16]>(), prop::option::of(any::<[u8; 32]>()))
            .prop_map(|(device_id, key_id, proof)| SessionMessage::KeyStatusReply { device_id, key_id, proof }),
        any::<u16>().prop_map(|code| SessionMessage::Abort { reason: AbortReason::from_code(code) }),
        id.prop_map(|device_id| SessionMessage::DeviceReady { device_id }),
    ]
}

fn wire_message_strategy() -> impl Strategy<Value = WireMessage> {
    let noise = prop::collection::vec(any::<u8>(), 0..1400);
    let body = prop_oneof![
        (any::<bool>(), noise.clone()).prop_map(|(identity, noise)| WireBody::HandshakeInit {
            mode: if identity { HandshakeMode::Identity } else { HandshakeMode::SetupSecret },
            noise
        }),
        noise.clone().prop_map(|noise| WireBody::HandshakeReply { noise }),
        noise.clone().prop_map(|noise| WireBody::HandshakeFinish { noise }),
        noise.prop_map(|ciphertext| WireBody::Transport { ciphertext }),
        any::<u16>().prop_map(|code| WireBody::Abort { reason: AbortReason::from_code(code) }),
    ];
    (any::<[u8; 8]>(), body).prop_map(|(session, body)| WireMessage::new(SessionId(session), body))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn qr_parse_never_panics(text in ".{0,600}") {
        let _ = OnboardingPayload::parse(&text);
    }

    #[test]
    fn qr_parse_of_prefixed_base45_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = OnboardingPayload::parse(&format!("KF1:{}", base45::encode(&bytes)));
    }

    #[test]
    fn qr_round_trips(payload in payload_strategy()) {
        let text = payload.encode().expect("valid payload encodes");
        prop_assert!(text.starts_with("KF1:"));
        prop_assert!(text.chars().all(|c| "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:".contains(c)), "fits QR alphanumeric mode");
        prop_assert_eq!(OnboardingPayload::parse(&text).expect("parses"), payload);
    }

    #[test]
    fn qr_detects_any_single_character_change(payload in payload_strategy(), position in any::<prop::sample::Index>(), replacement in 0usize..45) {
        let text = payload.encode().expect("valid payload encodes");
        let alphabet: Vec<char> = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:".chars().collect();
        let body_start = 4;
        let index = body_start + position.index(text.len() - body_start);
        let mut chars: Vec<char> = text.chars().collect();
        prop_assume!(chars[index] != alphabet[replacement]);
        chars[index] = alphabet[replacement];
        let altered: String = chars.into_iter().collect();
        prop_assert!(OnboardingPayload::parse(&altered).is_err());
    }

    #[test]
    fn base45_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(base45::decode(&base45::encode(&bytes)).expect("decodes"), bytes);
    }

    #[test]
    fn base45_decode_never_panics(text in ".{0,300}") {
        let _ = base45::decode(&text);
    }

    #[test]
    fn wire_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = WireMessage::decode(&bytes);
    }

    #[test]
    fn session_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = SessionMessage::decode(&bytes);
    }

    #[test]
    fn wire_round_trips(message in wire_message_strategy()) {
        let bytes = message.encode().expect("within bounds");
        prop_assert_eq!(WireMessage::decode(&bytes).expect("decodes"), message);
    }

    #[test]
    fn session_round_trips(message in session_message_strategy()) {
        let bytes = message.encode().expect("within bounds");
        prop_assert_eq!(SessionMessage::decode(&bytes).expect("decodes"), message);
    }

    #[test]
    fn certificate_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = StationCertificate::decode(&bytes);
    }

    #[test]
    fn certificate_round_trips(station_id in any::<[u8; 16]>(), name in "[a-z0-9 -]{0,64}", noise_static in any::<[u8; 32]>(),
                               not_before in any::<u32>(), lifetime in any::<u32>(), root_key_id in any::<[u8; 8]>(), signature in any::<[u8; 32]>()) {
        let body = CertificateBody { station_id, station_name: name, noise_static, not_before: u64::from(not_before),
                                     not_after: u64::from(not_before) + u64::from(lifetime), root_key_id };
        let tbs = body.encode();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&signature);
        let certificate = StationCertificate { body, tbs, signature: sig };
        prop_assert_eq!(StationCertificate::decode(&certificate.encode()).expect("decodes"), certificate);
    }

    #[test]
    fn frame_decoder_never_panics_and_stays_bounded(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 0..8)) {
        let mut decoder = FrameDecoder::new();
        for chunk in chunks {
            let _ = decoder.push(&chunk);
            prop_assert!(decoder.buffered() <= frame::max_encoded_len(frame::MAX_PAYLOAD));
        }
    }

    #[test]
    fn frames_round_trip_through_any_chunking(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..6),
                                              noise in prop::collection::vec(1u8..=255, 0..50), split in 1usize..64) {
        let mut stream = noise.clone();
        stream.push(frame::DELIMITER);
        for payload in &payloads {
            stream.extend(frame::encode(payload).expect("fits"));
        }
        let mut decoder = FrameDecoder::new();
        let mut decoded = Vec::new();
        for chunk in stream.chunks(split) {
            decoded.extend(decoder.push(chunk));
        }
        let frames: Vec<Vec<u8>> = decoded.into_iter().filter_map(Result::ok).collect();
        // Line noise before the first delimiter may itself form garbage, never a valid frame
        // with a matching CRC in practice; the real frames all arrive, in order.
        prop_assert!(frames.ends_with(&payloads));
    }
}

#[test]
fn qr_errors_are_typed() {
    let name = DeviceName::parse("dev").expect("valid");
    let payload = OnboardingPayload::new(name, "SN", DeviceCredential::Identity { public_key: [1; 32] });
    let text = payload.encode().expect("encodes");
    assert_eq!(OnboardingPayload::parse("KF2:ABC"), Err(QrError::WrongPrefix));
    assert!(matches!(OnboardingPayload::parse("KF1:ab"), Err(QrError::BadBase45(_))));
    assert!(matches!(OnboardingPayload::parse(&format!("KF1:{}", base45::encode(&[0xFF]))), Err(QrError::BadCbor(_))));
    // Version 2: a hand-built map {0: 2}.
    assert_eq!(
        OnboardingPayload::parse(&format!("KF1:{}", base45::encode(&[0xA1, 0x00, 0x02]))),
        Err(QrError::UnknownVersion(2))
    );
    // Version only: the name is missing.
    assert_eq!(
        OnboardingPayload::parse(&format!("KF1:{}", base45::encode(&[0xA1, 0x00, 0x01]))),
        Err(QrError::MissingField("name"))
    );
    let too_long = "x".repeat(3000);
    assert!(matches!(OnboardingPayload::parse(&too_long), Err(QrError::TooLong { .. })));
    // Flip the checksum's last byte (the last base45 group encodes the CBOR's final bytes).
    let mut cbor = base45::decode(&text[4..]).expect("base45");
    let last = cbor.len() - 1;
    cbor[last] ^= 1;
    assert_eq!(OnboardingPayload::parse(&format!("KF1:{}", base45::encode(&cbor))), Err(QrError::BadChecksum));
    // A name of 256 bytes is over-long.
    assert!(matches!(
        OnboardingPayload::parse(&label_with_any_name(&"n".repeat(256))),
        Err(QrError::InvalidName(NameError::TooLong { len: 256 }))
    ));
    // An id that is not SHA3-256(name)[..16] is refused.
    let mut forged = payload;
    forged.device_id = DeviceId([0; 16]);
    assert_eq!(forged.encode(), Err(QrError::IdMismatch));
}

#[test]
fn device_ids_match_e4_vectors() {
    let vectors = include_str!("vectors/e4-ids.tsv");
    let mut checked = 0;
    for line in vectors.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let id = DeviceId::from_name(fields[0]);
        assert_eq!(id.to_hex(), fields[1], "id of {:?}", fields[0]);
        assert_eq!(id.control_topic(), fields[2]);
        checked += 1;
    }
    assert_eq!(checked, 5);
}

/// The CBOR of a label for `name` whatever `name` holds, with a correct id and checksum: a label
/// printer that checked nothing.
fn label_with_any_name(name: &str) -> String {
    fn head(out: &mut Vec<u8>, major: u8, value: usize) {
        match value {
            0..=23 => out.push(major << 5 | value as u8),
            24..=0xff => out.extend([major << 5 | 24, value as u8]),
            _ => {
                out.push(major << 5 | 25);
                out.extend((value as u16).to_be_bytes());
            }
        }
    }
    let mut body = Vec::new();
    head(&mut body, 0, 0);
    head(&mut body, 0, 1);
    head(&mut body, 0, 1);
    head(&mut body, 3, name.len());
    body.extend_from_slice(name.as_bytes());
    head(&mut body, 0, 2);
    head(&mut body, 2, 16);
    body.extend_from_slice(&DeviceId::from_name(name).0);
    head(&mut body, 0, 3);
    head(&mut body, 3, 2);
    body.extend_from_slice(b"SN");
    head(&mut body, 0, 4);
    head(&mut body, 2, 32);
    body.extend_from_slice(&[1; 32]);
    let checksum = crc32fast::hash(&[&[0xA5][..], &body].concat());
    let mut cbor = vec![0xA6];
    cbor.extend_from_slice(&body);
    cbor.extend_from_slice(&[0x0F, 0x44]);
    cbor.extend_from_slice(&checksum.to_be_bytes());
    format!("KF1:{}", base45::encode(&cbor))
}

#[test]
fn c2_export_qr_payload_decode_refuses_hostile_names() {
    let accepted = OnboardingPayload::parse(&label_with_any_name("line 3 sensor 42")).expect("a valid name");
    assert_eq!(accepted.device_id, DeviceId::from_name("line 3 sensor 42"));
    let hostile = [
        ("victim\tdev", "control character"),
        ("a\rb", "control character"),
        ("a\nb", "control character"),
        ("a\x1b[2Jb", "control character"),
        ("a\x7fb", "control character"),
        ("a\u{9b}b", "control character"),
        ("line-3/sensor 42", "'/'"),
        ("/", "'/'"),
        (".", "\".\" or \"..\""),
        ("..", "\".\" or \"..\""),
        ("", "empty"),
    ];
    for (name, rule) in hostile {
        let error = OnboardingPayload::parse(&label_with_any_name(name)).expect_err(name);
        let message = error.to_string();
        assert!(message.contains("device name") && message.contains(rule), "{name:?}: {message}");
    }
    let too_long = OnboardingPayload::parse(&label_with_any_name(&"n".repeat(256))).expect_err("256 bytes");
    assert!(too_long.to_string().contains("255"), "{too_long}");
}
