//! A station with named operators: logging in and unlocking from the logins
//! ([`CustodySession`]), refusing the commands the logged-in role may not give, and the
//! security officers' approval of a bundle export (dual control), signed into the audit log
//! before the export runs.

use crate::bridge::EventSender;
use crate::custody::operation_of;
use crate::messages::{BundleRequest, Command, Credential, CustodySummary, Event, LoginRequest, SignedIn};
use crate::problem::Problem;
use keyfill_station::custody::access::{self, AccessError};
use keyfill_station::custody::enable::{CustodyError, CustodySession, signer_trust};
use keyfill_station::custody::{CustodyFile, LoggedIn, Operation, OperatorName, Policy};
use keyfill_station::db::{DbError, Inventory, events};
use keyfill_station::home::StationHome;
use keyfill_station::provision::Station;
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The operator logged in, kept while the station is unlocked: their role decides what the
/// station does for them, and their key signs nothing after the login but stays for checks.
#[derive(Debug)]
pub struct CustodyLogin {
    pub actor: LoggedIn,
    pub policy: Policy,
    pub station_id: String,
}

impl CustodyLogin {
    pub fn signed_in(&self) -> SignedIn {
        SignedIn { name: self.actor.name().to_string(), role: self.actor.role() }
    }

    /// Why the logged-in operator may not give `command`, in the library's words.
    pub fn refusal(&self, command: &Command) -> Option<Problem> {
        let operation = operation_of(command)?;
        if operation.allowed_to(self.actor.role()) {
            return None;
        }
        match access::authorise(operation, "", &self.station_id, &self.actor, &[], &self.policy) {
            Err(error @ AccessError::Forbidden { .. }) => Some(Problem::access(&error)),
            // Not reached: the role is not allowed, so the library refuses it as Forbidden.
            _ => Some(Problem::new(
                format!("{} may not {}.", self.actor.name(), operation.as_str()),
                "Lock, and let an operator of the right role log in.",
            )),
        }
    }
}

/// The custody policy of `home`, when it has named operators.
pub fn summary(home: &StationHome) -> Option<CustodySummary> {
    if !home.has_named_operators() {
        return None;
    }
    // An unreadable file still means named operators: the login reports what is wrong with it.
    let policy = CustodyFile::read(home.path()).ok().flatten().map(|file| file.policy).unwrap_or_default();
    Some(CustodySummary { unlock_quorum: policy.unlock_quorum, approvals: policy.approvals })
}

fn name(credential: &Credential) -> Result<OperatorName, Problem> {
    OperatorName::parse(credential.name.trim()).map_err(|error| {
        Problem::new(format!("{}.", capitalised(&error.to_string())), "Type the operator's name as it was given.")
    })
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

/// Logs the operators of `request` in, unlocks the station from their logins and starts it;
/// records the logins in the audit log.
pub async fn log_in(
    home_path: PathBuf,
    db_url: &str,
    request: LoginRequest,
) -> Result<(Station, CustodyLogin), Problem> {
    let home = StationHome::new(&home_path);
    let actor_name = name(&request.operator)?;
    let approvers = request
        .approvers
        .iter()
        .map(|credential| Ok((name(credential)?, Zeroizing::new(credential.passphrase.expose().to_owned()))))
        .collect::<Result<Vec<_>, Problem>>()?;
    let inventory = Inventory::open(db_url).await.map_err(|error| Problem::database(&error))?;
    let session =
        CustodySession::login(&inventory, &home, (&actor_name, request.operator.passphrase.expose()), &approvers)
            .await
            .map_err(|error| Problem::custody(&error))?;
    // The passphrases are no longer needed: wiped as they drop.
    drop(approvers);
    drop(request);
    // PBKDF2 and the unwrapping: seconds of CPU, off the async workers.
    let unlocked = tokio::task::spawn_blocking(move || {
        let (unlocked, secret) = session.unlock(&home)?;
        let actor = home.actor(&unlocked, session.actor.name().as_str())?;
        Ok::<_, CustodyError>((session, unlocked, secret, actor))
    })
    .await;
    let (mut session, unlocked, secret, actor) = match unlocked {
        Ok(Ok(unlocked)) => unlocked,
        Ok(Err(error)) => return Err(Problem::custody(&error)),
        Err(join) => return Err(Problem::new(format!("Unlocking stopped: {join}."), "Try again.")),
    };
    // Checks that the inventory is this station's (its master key) before anything is read.
    let station = Station::start(inventory, unlocked, actor).await.map_err(|error| Problem::database(&error))?;
    let authorised = session.authorise(Operation::Inspect, "unlock").map_err(|error| Problem::access(&error))?;
    let home = StationHome::new(&home_path);
    if let Err(error) = session.record(&station, &home, &secret, &authorised).await {
        station.inventory.close().await;
        return Err(Problem::custody(&error));
    }
    let CustodySession { actor, file, .. } = session;
    Ok((station, CustodyLogin { actor, policy: file.policy, station_id: file.station_id }))
}

/// Exports `request` once the security officers it names approve it; tells the approval
/// dialog when they do not.
pub async fn approved_bundle(
    station: Arc<Station>,
    home: PathBuf,
    custody: Arc<CustodyLogin>,
    request: Box<BundleRequest>,
    events: EventSender,
) {
    match approve(&station, &home, &custody, &request).await {
        Ok(()) => super::bundle::run(station, home, request, events).await,
        Err(problem) => {
            events.send(Event::ApprovalRefused { command: "export_bundle", problem });
        }
    }
}

async fn approve(
    station: &Station,
    home: &std::path::Path,
    custody: &CustodyLogin,
    request: &BundleRequest,
) -> Result<(), Problem> {
    let database = |error: DbError| Problem::database(&error);
    let trust = signer_trust(&station.inventory, &station.unlocked.info.factory_root).await.map_err(database)?;
    let pool = station.inventory.pool();
    let mut approvers = Vec::new();
    for credential in &request.approvers {
        let officer = name(credential)?;
        let logged = access::login(pool, home, &trust, &officer, credential.passphrase.expose())
            .await
            .map_err(|error| Problem::login(&error))?;
        approvers.push(logged);
    }
    let authorised = access::authorise(
        Operation::ExportBundle,
        &request.subject(),
        &custody.station_id,
        &custody.actor,
        &approvers,
        &custody.policy,
    )
    .map_err(|error| Problem::access(&error))?;
    let _gate = station.inventory.write_gate().await;
    let mut tx = pool.begin().await.map_err(|error| database(error.into()))?;
    events::record(&mut tx, &station.actor, None, "dual_control_approved", &authorised.detail())
        .await
        .map_err(database)?;
    tx.commit().await.map_err(|error| database(error.into()))?;
    Ok(())
}
