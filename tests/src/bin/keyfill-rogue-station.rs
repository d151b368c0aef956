//! A rogue station for the adversarial tests: the station's own session state machine and link
//! adapters (serial, PC/SC, BLE), driven with credentials an attacker could hold: a certificate
//! signed by another factory root, or by the right root but expired or not yet valid (a
//! decommissioned or stolen station). It tries to deliver a key and prints one JSON line saying
//! how the device answered.
//!
//! ```text
//! keyfill-rogue-station --link serial:/dev/pts/5 | pcsc:READER | ble:TARGET
//!     --qr LABEL --root-key ROOT.pk8 --valid-from UNIX --valid-until UNIX
//! ```

use anyhow::{Context, Result, bail};
use keyfill_formats::SecretKey;
use keyfill_formats::cert::{self, CertificateBody, StationCertificate};
use keyfill_formats::message::{KeyDelivery, KeyKind, SessionId};
use keyfill_formats::qr::OnboardingPayload;
use keyfill_station::link::Link;
use keyfill_station::protocol::{
    Request, SessionError, SessionOutcome, SessionTimeouts, StationCredentials, StationSession,
};
use keyfill_station::provision::{SessionOrLinkError, SessionRun, run_session};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Arguments {
    link: String,
    label: String,
    root_key: std::path::PathBuf,
    valid_from: u64,
    valid_until: u64,
}

fn arguments() -> Result<Arguments> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut named = HashMap::new();
    for pair in raw.chunks(2) {
        let [flag, value] = pair else { bail!("every flag takes a value") };
        named.insert(flag.trim_start_matches("--").to_owned(), value.clone());
    }
    let mut take = |name: &str| named.remove(name).with_context(|| format!("--{name} is required"));
    Ok(Arguments {
        link: take("link")?,
        label: take("qr")?,
        root_key: take("root-key")?.into(),
        valid_from: take("valid-from")?.parse()?,
        valid_until: take("valid-until")?.parse()?,
    })
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(bytes)
}

/// Station credentials certified by the root in `root_key` for the given validity.
fn credentials(arguments: &Arguments) -> Result<(StationCredentials, [u8; 16])> {
    let pkcs8 = std::fs::read(&arguments.root_key).context("root key")?;
    let root = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).map_err(|_| anyhow::anyhow!("bad root key"))?;
    let root_public: [u8; 32] = root.public_key().as_ref().try_into()?;
    let static_private = SecretKey::from_bytes(random()?);
    let station_id = random()?;
    let body = CertificateBody {
        station_id,
        station_name: "rogue-station".into(),
        noise_static: keyfill_agent::identity::x25519_public_key(&static_private),
        not_before: arguments.valid_from,
        not_after: arguments.valid_until,
        root_key_id: cert::root_key_id(&root_public),
    };
    let tbs = body.encode();
    let signature = root.sign(&CertificateBody::signing_input(&tbs)).as_ref().try_into()?;
    let certificate = StationCertificate { body, tbs, signature }.encode();
    Ok((StationCredentials::in_memory(static_private, certificate), station_id))
}

async fn deliver<L: Link>(link: &mut L, session: StationSession, first: Vec<u8>) -> SessionRun {
    run_session(link, session, first, |_| {}).await
}

fn report(run: &SessionRun) -> serde_json::Value {
    let (outcome, abort_reason, error) = match &run.result {
        Ok(SessionOutcome::Confirmed { .. }) => ("confirmed", None, None),
        Ok(other) => ("other", None, Some(format!("{other:?}"))),
        Err(SessionOrLinkError::Session(SessionError::RefusedByDevice { reason })) => {
            ("refused", Some(format!("{reason:?}")), None)
        }
        Err(error) => ("error", None, Some(error.to_string())),
    };
    serde_json::json!({
        "outcome": outcome,
        "abort_reason": abort_reason,
        "error": error,
        "request_sent": run.request_sent,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let arguments = arguments()?;
    let payload = OnboardingPayload::parse(&arguments.label)?;
    let (credentials, station_id) = credentials(&arguments)?;
    let delivery = KeyDelivery {
        device_id: payload.device_id,
        key_id: random()?,
        key: SecretKey::from_bytes(random()?),
        kind: KeyKind::E4SymmetricClientKey,
        issued_at: keyfill_station::home::unix_now(),
        station_id,
    };
    let timeouts = SessionTimeouts::bounded(Duration::from_secs(5), Duration::from_secs(5)).context("timeouts")?;
    let (session, first) = StationSession::start(
        &credentials,
        &payload,
        Request::Deliver(delivery),
        SessionId(random()?),
        timeouts,
        Instant::now(),
    )?;
    let (kind, target) = arguments.link.split_once(':').context("--link KIND:TARGET")?;
    let run = match kind {
        "serial" => deliver(&mut keyfill_station::link::open_serial(target.as_ref(), 115_200)?, session, first).await,
        "pcsc" => {
            let mut link = keyfill_station::link::open_pcsc(Some(target.to_owned()), Duration::from_secs(10)).await?;
            deliver(&mut link, session, first).await
        }
        "ble" => {
            let mut link = keyfill_station::link::btle::open_ble(target, Duration::from_secs(15)).await?;
            deliver(&mut link, session, first).await
        }
        other => bail!("unknown link kind {other}"),
    };
    println!("{}", report(&run));
    Ok(())
}
