//! Offline bundles for an air-gapped C2, as `keyfill export bundle` makes them: the confirmed
//! keys selected like an online export, encrypted to the C2 operator's key, signed by the
//! station's bundle-signing key, written to a new file and checked before it is reported.

use crate::bridge::EventSender;
use crate::messages::{BundleRefused, BundleRequest, BundleWritten, Event};
use crate::problem::Problem;
use keyfill_station::bundle::RecipientPublicKey;
use keyfill_station::export::offline::{
    BundleRequest as LibraryRequest, PART_ENTRIES, WriteBundleError, describe_manifest, recipient_from_text,
    write_bundle,
};
use keyfill_station::home::StationHome;
use keyfill_station::provision::Station;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

pub async fn run(station: Arc<Station>, home: PathBuf, request: Box<BundleRequest>, events: EventSender) {
    let outcome = export(station, home, *request).await;
    events.send(Event::Bundle(outcome));
}

fn refused(problem: Problem) -> BundleRefused {
    BundleRefused { problem, excluded: Vec::new() }
}

fn recipient(text: &str) -> Result<RecipientPublicKey, Problem> {
    recipient_from_text(text).map_err(|error| Problem::bundle_recipient(text.trim(), &error))
}

fn exists(out: &Path) -> Problem {
    Problem::new(
        format!("{} exists.", out.display()),
        "Choose another file name: a bundle never replaces a file (the C2 side may not have imported it yet).",
    )
}

async fn export(station: Arc<Station>, home: PathBuf, request: BundleRequest) -> Result<BundleWritten, BundleRefused> {
    let recipient = recipient(&request.recipient).map_err(refused)?;
    let offline_root_pkcs8 = match &request.factory_root_key {
        Some(path) => Some(Zeroizing::new(std::fs::read(path).map_err(|error| {
            refused(Problem::new(
                format!("Cannot read the factory root key {}: {error}.", path.display()),
                "Choose the factory root's PKCS#8 file, or leave the field empty.",
            ))
        })?)),
        None => None,
    };
    let library_request = LibraryRequest {
        recipient,
        out: request.out.clone(),
        filter: request.filter.clone(),
        offline_root_pkcs8,
        keys_per_part: PART_ENTRIES,
    };
    match write_bundle(&station, &StationHome::new(&home), library_request).await {
        Ok(written) => Ok(BundleWritten {
            file: request.out,
            manifest: describe_manifest(&written.manifest),
            included: written.included.iter().map(|key| key.to_bundled_device()).collect(),
            excluded: written.excluded,
        }),
        Err(error) => {
            Err(BundleRefused { problem: problem(&error, &request.out), excluded: error.excluded().to_vec() })
        }
    }
}

/// What the operator is told when no bundle was written, and what to do.
fn problem(error: &WriteBundleError, out: &Path) -> Problem {
    match error {
        WriteBundleError::Exists(_) => exists(out),
        WriteBundleError::NothingToBundle { excluded } if excluded.is_empty() => {
            Problem::new("No key to put in a bundle: nothing is provisioned.", "Provision devices first.")
        }
        WriteBundleError::NothingToBundle { .. } => Problem::new(
            "No key to put in a bundle: every device selected was left out.",
            "See each device's reason below: settle unfinished rotations (Watch for first contact), or choose \
             provisioned devices.",
        ),
        WriteBundleError::Signer(error) => Problem::bundle_signer(error),
        WriteBundleError::Seal(error) => Problem::bundle_seal(error),
        WriteBundleError::Write { source, .. } => Problem::new(
            format!("Cannot write {}: {source}.", out.display()),
            "Choose a folder you may write to, with room for the bundle (a USB stick: check it is mounted).",
        ),
        WriteBundleError::Verify(error) => Problem::new(
            format!("The bundle just written does not verify: {error}."),
            format!("Delete {} and export again; report it if it happens again.", out.display()),
        ),
        WriteBundleError::Record { source, .. } => Problem::new(
            format!("The bundle was written to {}, but the event log failed: {source}.", out.display()),
            "The bundle is valid. Check the database in Settings > Station; History will not list these keys as bundled.",
        ),
        WriteBundleError::Select(error) => Problem::export(error),
        other => Problem::new(format!("{other}."), "Export again."),
    }
}
