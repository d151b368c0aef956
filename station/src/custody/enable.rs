//! A station under named operators: taking a station there ([`enable`]), logging its operators
//! in and unlocking it ([`CustodySession`]), and the changes security officers make under dual
//! control (operators, policy), after each of which the unlock secret's wraps follow the roster
//! ([`refresh_wraps`]).

use super::access::{self, AccessError, Authorised, LoginError};
use super::operators::{CredentialError, LoggedIn, OperatorRecord, new_operator};
use super::roles::{Operation, OperatorName, Role};
use super::unlock::{CustodyFile, Policy, UnlockError, UnlockSecret};
use crate::audit::verify::SignerTrust;
use crate::db::{DbError, Inventory, events, operators};
use crate::home::{HomeError, StationHome, UnlockedStation};
use crate::provision::Station;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CustodyError {
    #[error("this station already has named operators (its home holds custody.json)")]
    AlreadyEnabled,
    #[error("this station has no named operators yet: a security officer takes it there with `keyfill custody enable`")]
    NotEnabled,
    #[error(
        "named operators start with at least {need} security officers (the policy's approvals, so that dual control \
         holds from the start); {have} were named"
    )]
    TooFewOfficers { need: usize, have: usize },
    #[error("there is an operator named {0} already")]
    Exists(OperatorName),
    #[error("there is no operator {0}")]
    Unknown(OperatorName),
    #[error(
        "removing {name} would leave {left} security officers, fewer than the {need} that dual control and the \
         unlock policy need"
    )]
    LastOfficers { name: OperatorName, left: usize, need: usize },
    #[error(
        "the master key is in a token and this station has named operators: move the master key into the token \
         before enabling them"
    )]
    MoveAfterEnable,
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Unlock(#[from] UnlockError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for CustodyError {
    fn from(error: sqlx::Error) -> Self {
        CustodyError::Db(error.into())
    }
}

/// The keys the factory root certified, from the database's register of signing keys.
pub async fn signer_trust(inventory: &Inventory, factory_root: &[u8; 32]) -> Result<SignerTrust, DbError> {
    Ok(SignerTrust::from_rows(&crate::db::audit::signers(inventory.pool()).await?, factory_root))
}

/// The home's custody file, checked against the certified keys; `None` before named operators.
/// Finishes an enabling that stopped before it removed the passphrase-sealed master key.
pub fn custody_file(home: &StationHome, trust: &SignerTrust) -> Result<Option<CustodyFile>, CustodyError> {
    let Some(file) = CustodyFile::read(home.path())? else { return Ok(None) };
    if !file.trusted(trust) {
        return Err(UnlockError::Untrusted {
            path: home.path().join(super::unlock::CUSTODY_FILE).display().to_string(),
        }
        .into());
    }
    if file.sealed_master.is_some() {
        home.forget_passphrase_master()?;
    }
    Ok(Some(file))
}

/// The records of the operators who may log in (signed by a certified station, not removed).
async fn roster(inventory: &Inventory, trust: &SignerTrust) -> Result<Vec<OperatorRecord>, DbError> {
    Ok(operators::list(inventory.pool())
        .await?
        .into_iter()
        .map(|stored| stored.record)
        .filter(|record| record.active() && record.trusted(trust))
        .collect())
}

/// What an operator logs in with.
#[derive(Debug)]
pub struct Credentials<'a> {
    pub name: &'a OperatorName,
    pub passphrase: &'a str,
    pub card: Option<&'a super::card::CardAccess>,
}

/// Operators logged in at a station under named operators: the one who acts and the officers
/// who approve.
#[derive(Debug)]
pub struct CustodySession {
    pub actor: LoggedIn,
    pub approvers: Vec<LoggedIn>,
    pub file: CustodyFile,
    pub trust: SignerTrust,
}

impl CustodySession {
    /// Logs the actor and the approvers in (each `(name, passphrase)`).
    pub async fn login(
        inventory: &Inventory,
        home: &StationHome,
        actor: (&OperatorName, &str),
        approvers: &[(OperatorName, zeroize::Zeroizing<String>)],
    ) -> Result<Self, CustodyError> {
        let approvers: Vec<Credentials<'_>> =
            approvers.iter().map(|(name, passphrase)| Credentials { name, passphrase, card: None }).collect();
        Self::login_with_cards(
            inventory,
            home,
            &Credentials { name: actor.0, passphrase: actor.1, card: None },
            &approvers,
        )
        .await
    }

    /// As [`CustodySession::login`], with the cards of operators whose records name one.
    pub async fn login_with_cards(
        inventory: &Inventory,
        home: &StationHome,
        actor: &Credentials<'_>,
        approvers: &[Credentials<'_>],
    ) -> Result<Self, CustodyError> {
        let info = home.info()?;
        let trust = signer_trust(inventory, &info.factory_root).await?;
        let file = custody_file(home, &trust)?.ok_or(CustodyError::NotEnabled)?;
        let pool = inventory.pool();
        let actor =
            access::login_with_card(pool, home.path(), &trust, actor.name, actor.passphrase, actor.card).await?;
        let mut logged = Vec::new();
        for who in approvers {
            logged.push(access::login_with_card(pool, home.path(), &trust, who.name, who.passphrase, who.card).await?);
        }
        Ok(CustodySession { actor, approvers: logged, file, trust })
    }

    /// Whether the session may do `operation` on `subject`.
    pub fn authorise(&self, operation: Operation, subject: &str) -> Result<Authorised, AccessError> {
        access::authorise(operation, subject, &self.file.station_id, &self.actor, &self.approvers, &self.file.policy)
    }

    /// The unlock secret, from the wraps of those logged in.
    pub fn secret(&self) -> Result<UnlockSecret, UnlockError> {
        let present: Vec<&LoggedIn> = std::iter::once(&self.actor).chain(&self.approvers).collect();
        self.file.open(&present)
    }

    /// Unlocks the station's keys with the secret.
    pub fn unlock(&self, home: &StationHome) -> Result<(UnlockedStation, UnlockSecret), CustodyError> {
        let secret = self.secret()?;
        Ok((home.unlock(&secret.passphrase())?, secret))
    }

    /// Notes a login that unlocked nothing (read-only work) for the audit log's next unlock.
    pub fn note_logins(&self, home: &StationHome) {
        for operator in std::iter::once(&self.actor).chain(&self.approvers) {
            let role = operator.role();
            crate::audit::pending::note_login(home.path(), "login", operator.name().as_str(), &format!("as {role}"));
        }
    }

    /// Records the logins, and the approvals of `authorised`, in the audit log of a started
    /// station; then brings the unlock wraps up to date with the roster.
    pub async fn record(
        &mut self,
        station: &Station,
        home: &StationHome,
        secret: &UnlockSecret,
        authorised: &Authorised,
    ) -> Result<(), CustodyError> {
        let _gate = station.inventory.write_gate().await;
        let mut tx = station.inventory.pool().begin().await?;
        for operator in std::iter::once(&self.actor).chain(&self.approvers) {
            let detail = format!("{} logged in as {}", operator.name(), operator.role());
            let mut actor = station.actor.clone();
            actor.operator = operator.name().to_string();
            events::record(&mut tx, &actor, None, "login", &detail).await?;
        }
        if !authorised.approvals.is_empty() {
            events::record(&mut tx, &station.actor, None, "dual_control_approved", &authorised.detail()).await?;
        }
        tx.commit().await?;
        drop(_gate);
        self.file = refresh_wraps(station, home, &self.file, secret, &self.trust).await?;
        Ok(())
    }
}

/// Brings the wraps of `file` up to date with the roster: an operator removed since (or no longer
/// an officer, under a quorum) loses theirs and the secret is changed, since they could open an
/// old copy of the file; an operator added since gains one.
pub async fn refresh_wraps(
    station: &Station,
    home: &StationHome,
    file: &CustodyFile,
    current: &UnlockSecret,
    trust: &SignerTrust,
) -> Result<CustodyFile, CustodyError> {
    let roster = roster(&station.inventory, trust).await?;
    let entitled: Vec<&OperatorName> = roster
        .iter()
        .filter(|record| file.policy.unlock_quorum <= 1 || record.role == Role::SecurityOfficer)
        .map(|record| &record.name)
        .collect();
    let holders: Vec<&OperatorName> = file.holders().collect();
    let dropped: Vec<String> = holders.iter().filter(|h| !entitled.contains(h)).map(|h| h.to_string()).collect();
    let missing: Vec<String> = entitled.iter().filter(|e| !holders.contains(e)).map(|e| e.to_string()).collect();
    if dropped.is_empty() && missing.is_empty() {
        return Ok(file.clone());
    }
    let (secret, detail) = if dropped.is_empty() {
        (None, format!("unlock wraps made for {}", missing.join(", ")))
    } else {
        (Some(UnlockSecret::generate()?), format!("unlock secret changed: the wraps of {} dropped", dropped.join(", ")))
    };
    let next = match &secret {
        Some(new) => {
            install(station, home, file.policy, file.generation + 1, new, Some(&current.passphrase()), &roster)?
        }
        None => install(station, home, file.policy, file.generation + 1, current, None, &roster)?,
    };
    crate::db::audit::append_alone(
        station.inventory.pool(),
        &station.actor.recorder(),
        None,
        "custody_changed",
        &detail,
    )
    .await?;
    Ok(next)
}

/// Writes the custody file of `secret` under `policy`, wrapped for `roster`. When `previous`
/// unlocked the station until now, the master key is sealed anew under `secret` (in the file)
/// or, in a token, the token's PIN is changed from `previous` to `secret`.
fn install(
    station: &Station,
    home: &StationHome,
    policy: Policy,
    generation: u64,
    secret: &UnlockSecret,
    previous: Option<&str>,
    roster: &[OperatorRecord],
) -> Result<CustodyFile, CustodyError> {
    let master = &station.unlocked.master_key;
    let sealed_master = match master.token_key() {
        Some(_) => None,
        None => Some(master.seal_under_passphrase(&secret.passphrase()).map_err(HomeError::from)?),
    };
    let station_id = hex::encode(station.unlocked.info.station_id);
    let file = CustodyFile::new(&station_id, policy, generation, secret, sealed_master, roster, &station.actor.audit)?;
    let before = CustodyFile::read(home.path())?;
    file.write(home.path())?;
    if let (Some(token_key), Some(previous)) = (master.token_key(), previous)
        && *previous != *secret.passphrase()
        && let Err(error) = token_key.token().set_pin(previous, &secret.passphrase())
    {
        // The PIN is as it was: so must the file be.
        match before {
            Some(before) => before.write(home.path())?,
            None => home.forget_custody_file()?,
        }
        return Err(HomeError::from(error).into());
    }
    if file.sealed_master.is_some() {
        home.forget_passphrase_master()?;
    }
    Ok(file)
}

/// Takes an unlocked station (unlocked with `current`, its passphrase or token PIN) to named
/// operators: `officers` (name, passphrase) become its first security officers, at least the
/// policy's number of approvals; a new unlock secret no person knows replaces `current`, wrapped
/// for them. Officers already in a shared database log in with their passphrase instead.
pub async fn enable(
    station: &Station,
    home: &StationHome,
    current: &str,
    officers: &[(OperatorName, zeroize::Zeroizing<String>)],
    policy: Policy,
) -> Result<Vec<LoggedIn>, CustodyError> {
    let policy = policy.checked()?;
    let trust = signer_trust(&station.inventory, &station.unlocked.info.factory_root).await?;
    if custody_file(home, &trust)?.is_some() {
        return Err(CustodyError::AlreadyEnabled);
    }
    let mut names: Vec<&OperatorName> = officers.iter().map(|(name, _)| name).collect();
    names.sort();
    names.dedup();
    let need = policy.officers_needed();
    if names.len() != officers.len() || names.len() < need {
        return Err(CustodyError::TooFewOfficers { need, have: names.len() });
    }
    let pool = station.inventory.pool();
    let mut added = Vec::new();
    let mut logged = Vec::new();
    for (name, passphrase) in officers {
        match operators::find(pool, name).await? {
            Some(_) => logged.push(access::login(pool, home.path(), &trust, name, passphrase).await?),
            None => {
                let mut record = new_operator(name, Role::SecurityOfficer, passphrase)?;
                record.sign(&station.actor.audit)?;
                logged.push(LoggedIn::open(&record, passphrase)?);
                added.push(record);
            }
        }
    }
    if let Some(officer) = logged.iter().find(|o| o.role() != Role::SecurityOfficer) {
        return Err(AccessError::NotAnOfficer(officer.name().clone()).into());
    }
    let (first, rest) = logged.split_first().ok_or(CustodyError::TooFewOfficers { need, have: 0 })?;
    let subject = format!(
        "named operators, {} approvals, unlock by {}",
        policy.approvals,
        if policy.unlock_quorum <= 1 {
            "any operator".to_owned()
        } else {
            format!("{} officers", policy.unlock_quorum)
        }
    );
    let authorised = access::authorise(
        Operation::InitStation,
        &subject,
        &hex::encode(station.unlocked.info.station_id),
        first,
        rest,
        &policy,
    )?;
    {
        let _gate = station.inventory.write_gate().await;
        let mut tx = pool.begin().await?;
        for record in &added {
            if !operators::insert(&mut tx, record).await? {
                return Err(CustodyError::Exists(record.name.clone()));
            }
            let detail = format!("{} added as {}", record.name, record.role);
            events::record(&mut tx, &station.actor, None, "operator_added", &detail).await?;
        }
        events::record(&mut tx, &station.actor, None, "dual_control_approved", &authorised.detail()).await?;
        events::record(&mut tx, &station.actor, None, "custody_enabled", &subject).await?;
        tx.commit().await?;
    }
    let roster = roster(&station.inventory, &trust).await?;
    let secret = UnlockSecret::generate()?;
    install(station, home, policy, 1, &secret, Some(current), &roster)?;
    Ok(logged)
}

/// An operator to add: their name, role, first passphrase and card, if any.
#[derive(Debug)]
pub struct NewOperator<'a> {
    pub name: &'a OperatorName,
    pub role: Role,
    pub passphrase: &'a str,
    pub card: Option<super::card::CardBinding>,
}

/// Adds an operator (the session authorised [`Operation::ManageOperators`] for it).
pub async fn add_operator(
    station: &Station,
    session: &mut CustodySession,
    home: &StationHome,
    secret: &UnlockSecret,
    new: NewOperator<'_>,
) -> Result<(), CustodyError> {
    let NewOperator { name, role, passphrase, card } = new;
    let authorised = session.authorise(Operation::ManageOperators, &format!("add {name} as {role}"))?;
    let mut record = new_operator(name, role, passphrase)?;
    record.card = card;
    record.sign(&station.actor.audit)?;
    {
        let _gate = station.inventory.write_gate().await;
        let mut tx = station.inventory.pool().begin().await?;
        if !operators::insert(&mut tx, &record).await? {
            return Err(CustodyError::Exists(name.clone()));
        }
        events::record(&mut tx, &station.actor, None, "dual_control_approved", &authorised.detail()).await?;
        let with_card = match &record.card {
            Some(card) => format!(", with the card {:?}", card.token),
            None => String::new(),
        };
        let detail = format!("{name} added as {role}{with_card}");
        events::record(&mut tx, &station.actor, None, "operator_added", &detail).await?;
        tx.commit().await?;
    }
    session.file = refresh_wraps(station, home, &session.file, secret, &session.trust).await?;
    Ok(())
}

/// Removes an operator: they can no longer log in, and the unlock secret changes.
pub async fn remove_operator(
    station: &Station,
    session: &mut CustodySession,
    home: &StationHome,
    secret: &UnlockSecret,
    name: &OperatorName,
) -> Result<(), CustodyError> {
    let authorised = session.authorise(Operation::ManageOperators, &format!("remove {name}"))?;
    let roster = roster(&station.inventory, &session.trust).await?;
    let mut record =
        roster.iter().find(|r| &r.name == name).cloned().ok_or_else(|| CustodyError::Unknown(name.clone()))?;
    if record.role == Role::SecurityOfficer {
        let left = roster.iter().filter(|r| r.role == Role::SecurityOfficer && &r.name != name).count();
        let policy = session.file.policy;
        let need = policy.officers_needed();
        if left < need {
            return Err(CustodyError::LastOfficers { name: name.clone(), left, need });
        }
    }
    record.removed_at = Some(crate::db::now_millis());
    record.changed_at = crate::db::now_millis();
    record.sign(&station.actor.audit)?;
    {
        let _gate = station.inventory.write_gate().await;
        let mut tx = station.inventory.pool().begin().await?;
        operators::update(&mut tx, &record).await?;
        events::record(&mut tx, &station.actor, None, "dual_control_approved", &authorised.detail()).await?;
        events::record(&mut tx, &station.actor, None, "operator_removed", &format!("{name} removed")).await?;
        tx.commit().await?;
    }
    session.file = refresh_wraps(station, home, &session.file, secret, &session.trust).await?;
    Ok(())
}

/// Changes the custody policy.
pub async fn set_policy(
    station: &Station,
    session: &mut CustodySession,
    home: &StationHome,
    secret: &UnlockSecret,
    policy: Policy,
) -> Result<(), CustodyError> {
    let policy = policy.checked()?;
    let subject = format!("{} approvals, unlock quorum {}", policy.approvals, policy.unlock_quorum);
    let authorised = session.authorise(Operation::ChangePolicy, &subject)?;
    let roster = roster(&station.inventory, &session.trust).await?;
    let officers = roster.iter().filter(|r| r.role == Role::SecurityOfficer).count();
    let need = policy.officers_needed();
    if officers < need {
        return Err(UnlockError::NotEnoughOfficers { need, have: officers }.into());
    }
    {
        let _gate = station.inventory.write_gate().await;
        let mut tx = station.inventory.pool().begin().await?;
        events::record(&mut tx, &station.actor, None, "dual_control_approved", &authorised.detail()).await?;
        events::record(&mut tx, &station.actor, None, "policy_changed", &subject).await?;
        tx.commit().await?;
    }
    session.file = install(station, home, policy, session.file.generation + 1, secret, None, &roster)?;
    Ok(())
}

/// Seals the actor's credential under a new passphrase.
pub async fn change_passphrase(
    station: &Station,
    session: &CustodySession,
    passphrase: &str,
) -> Result<(), CustodyError> {
    session.authorise(Operation::ChangeOwnPassphrase, session.actor.name().as_str())?;
    let mut record = session.actor.with_new_passphrase(passphrase)?;
    record.sign(&station.actor.audit)?;
    let _gate = station.inventory.write_gate().await;
    let mut tx = station.inventory.pool().begin().await?;
    operators::update(&mut tx, &record).await?;
    let detail = format!("{} changed their passphrase", record.name);
    events::record(&mut tx, &station.actor, None, "operator_passphrase_changed", &detail).await?;
    tx.commit().await?;
    Ok(())
}
