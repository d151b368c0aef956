//! Named operators at the command line: logging in (`--as`, approvers), the permission check of
//! every command, and `keyfill operators` / `keyfill custody enable|policy|show`.

use super::{GlobalArgs, print_json, read_bounded};
use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use keyfill_station::custody::card::CardAccess;
use keyfill_station::custody::enable::{self as custody, Credentials, CustodySession};
use keyfill_station::custody::unlock::UnlockSecret;
use keyfill_station::custody::{Operation, OperatorName, Policy, Role};
use keyfill_station::db::operators as rows;
use keyfill_station::home::StationHome;
use keyfill_station::provision::Station;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

#[derive(Subcommand)]
pub enum OperatorsCommand {
    /// Add an operator (a security officer, with the policy's approvals).
    Add {
        /// The operator's name: 1 to 32 ASCII letters, digits, '.', '_' or '-'.
        name: String,
        /// The operator's role: operator, supervisor, security-officer or auditor.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The new operator's passphrase, from this file (else a prompt, twice).
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// The operator also logs in with this smart card or token (its label), through
        /// --card-module: the card generates a key that never leaves it.
        #[arg(long, value_name = "LABEL")]
        card: Option<String>,
        /// The card's PIN, from this file (else a prompt).
        #[arg(long, value_name = "FILE", requires = "card")]
        new_card_pin_file: Option<PathBuf>,
    },
    /// Remove an operator (a security officer, with the policy's approvals): they can no longer
    /// log in, and the station's unlock secret changes.
    Remove {
        /// The operator's name.
        name: String,
    },
    /// List the operators.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change your own passphrase.
    Passphrase {
        /// The new passphrase, from this file (else a prompt, twice).
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| "operator, supervisor, security-officer or auditor".to_owned())
}

fn read_secret(path: &Path, what: &str) -> Result<Zeroizing<String>> {
    let text = String::from_utf8(read_bounded(path, 1024)?).with_context(|| format!("{what} file is not text"))?;
    Ok(Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned()))
}

/// A new passphrase from `file`, else asked twice.
pub(super) fn new_passphrase(file: Option<&Path>, whose: &str) -> Result<Zeroizing<String>> {
    if let Some(path) = file {
        return read_secret(path, "the passphrase");
    }
    let first = Zeroizing::new(
        rpassword::prompt_password(format!("New passphrase of {whose}: "))
            .context("no passphrase: pass --new-passphrase-file, or run in a terminal")?,
    );
    if *Zeroizing::new(rpassword::prompt_password("Repeat it: ")?) != *first {
        bail!("the passphrases differ");
    }
    Ok(first)
}

impl GlobalArgs {
    fn operator_name(&self) -> Result<OperatorName> {
        let name = self.login_as.as_deref().ok_or_else(|| {
            anyhow!("this station has named operators: log in with --as NAME (the passphrase from --operator-passphrase-file, KEYFILL_OPERATOR_PASSPHRASE or a prompt)")
        })?;
        OperatorName::parse(name).context("--as")
    }

    fn operator_passphrase(&self, name: &OperatorName) -> Result<Zeroizing<String>> {
        if let Some(path) = &self.operator_passphrase_file {
            return read_secret(path, "the operator passphrase");
        }
        if let Ok(passphrase) = std::env::var("KEYFILL_OPERATOR_PASSPHRASE") {
            return Ok(Zeroizing::new(passphrase));
        }
        rpassword::prompt_password(format!("Passphrase of {name}: ")).map(Zeroizing::new).context(
            "no operator passphrase: pass --operator-passphrase-file, set KEYFILL_OPERATOR_PASSPHRASE, or run in a terminal",
        )
    }

    /// How to reach the card of `name`, when their record names one: the PIN from `pin_file`,
    /// else (for the operator of --as) KEYFILL_CARD_PIN, else a prompt.
    async fn card_for(
        &self,
        inventory: &keyfill_station::db::Inventory,
        name: &OperatorName,
        pin_file: Option<&Path>,
        from_env: bool,
    ) -> Result<Option<CardAccess>> {
        let Some(stored) = rows::find(inventory.pool(), name).await? else { return Ok(None) };
        let Some(card) = &stored.record.card else { return Ok(None) };
        let pin = match (pin_file, std::env::var("KEYFILL_CARD_PIN")) {
            (Some(path), _) => read_secret(path, "a card PIN")?,
            (None, Ok(pin)) if from_env => Zeroizing::new(pin),
            _ => Zeroizing::new(
                rpassword::prompt_password(format!("PIN of the card {:?} of {name}: ", card.token))
                    .with_context(|| format!("no card PIN for {name}: pass --card-pin-file, or run in a terminal"))?,
            ),
        };
        Ok(Some(CardAccess { module: self.card_module.clone(), pin }))
    }

    /// Logs the operator of --as and the approvers in, with their cards where they have one.
    async fn login_session(
        &self,
        inventory: &keyfill_station::db::Inventory,
        home: &StationHome,
    ) -> Result<CustodySession> {
        let name = self.operator_name()?;
        let passphrase = self.operator_passphrase(&name)?;
        let card = self.card_for(inventory, &name, self.card_pin_file.as_deref(), true).await?;
        let approvers = self.approvers()?;
        let mut cards = Vec::new();
        for (index, (approver, _)) in approvers.iter().enumerate() {
            let file = self.approver_card_pin_file.get(index).map(PathBuf::as_path);
            cards.push(self.card_for(inventory, approver, file, false).await?);
        }
        let actor = Credentials { name: &name, passphrase: &passphrase, card: card.as_ref() };
        let others: Vec<Credentials<'_>> = approvers
            .iter()
            .zip(&cards)
            .map(|((name, passphrase), card)| Credentials { name, passphrase, card: card.as_ref() })
            .collect();
        Ok(CustodySession::login_with_cards(inventory, home, &actor, &others).await?)
    }

    fn approvers(&self) -> Result<Vec<(OperatorName, Zeroizing<String>)>> {
        if self.approver_passphrase_file.len() > self.approver.len() {
            bail!("more --approver-passphrase-file than --approver");
        }
        let mut approvers = Vec::new();
        for (index, name) in self.approver.iter().enumerate() {
            let name = OperatorName::parse(name).context("--approver")?;
            let passphrase = match self.approver_passphrase_file.get(index) {
                Some(path) => read_secret(path, "an approver's passphrase")?,
                None => Zeroizing::new(
                    rpassword::prompt_password(format!("Passphrase of {name} (approving): ")).with_context(|| {
                        format!("no passphrase for {name}: pass --approver-passphrase-file, or run in a terminal")
                    })?,
                ),
            };
            approvers.push((name, passphrase));
        }
        Ok(approvers)
    }

    /// Refuses the options of one model on a station of the other.
    fn check_model(&self, home: &StationHome) -> Result<bool> {
        let named = home.has_named_operators();
        if named && self.operator.is_some() {
            bail!("this station has named operators: log in with --as NAME; --operator is for stations without them");
        }
        if !named && (self.login_as.is_some() || !self.approver.is_empty()) {
            bail!(
                "this station has no named operators: --as and --approver are for stations under them (`keyfill custody enable`)"
            );
        }
        Ok(named)
    }

    /// Logs the operators in for a command that reads only: checks their role; nothing is
    /// unlocked. A station without named operators lets anyone read.
    pub(super) async fn authorise_read(&self, home: &StationHome, operation: Operation) -> Result<()> {
        if !self.check_model(home)? {
            return Ok(());
        }
        let inventory = self.inventory(home).await?;
        let session = self.login_session(&inventory, home).await?;
        session.authorise(operation, "")?;
        session.note_logins(home);
        inventory.close().await;
        Ok(())
    }

    /// The station unlocked for `operation` on `subject`: by its passphrase or token PIN, or
    /// under named operators by the logins of the actor (whose role must allow it) and the
    /// approvers (the policy's officers, for dual control and for a quorum unlock).
    pub(super) async fn station_for(&self, home: &StationHome, operation: Operation, subject: &str) -> Result<Station> {
        Ok(self.custody_station(home, operation, subject).await?.0)
    }

    pub(super) async fn custody_station(
        &self,
        home: &StationHome,
        operation: Operation,
        subject: &str,
    ) -> Result<(Station, Option<(CustodySession, UnlockSecret)>)> {
        if !self.check_model(home)? {
            return Ok((self.station(home).await?, None));
        }
        let inventory = self.inventory(home).await?;
        let mut session = self.login_session(&inventory, home).await?;
        let name = session.actor.name().clone();
        let authorised = session.authorise(operation, subject)?;
        let (unlocked, secret) = session.unlock(home).context("cannot unlock the station")?;
        let actor = home.actor(&unlocked, name.as_str()).context("cannot open the station's audit key")?;
        let mut station = Station::start(inventory, unlocked, actor).await?;
        station.timeouts = self.timeouts()?;
        station.lease_ttl = Duration::from_secs(self.lease_secs);
        session.record(&station, home, &secret, &authorised).await?;
        Ok((station, Some((session, secret))))
    }
}

/// The first security officers' names and passphrases from `--officer` and
/// `--officer-passphrase-file`.
pub(super) fn officers(names: &[String], files: &[PathBuf]) -> Result<Vec<(OperatorName, Zeroizing<String>)>> {
    if files.len() > names.len() {
        bail!("more --officer-passphrase-file than --officer");
    }
    let mut officers = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let name = OperatorName::parse(name).context("--officer")?;
        let passphrase = match files.get(index) {
            Some(path) => read_secret(path, "an officer's passphrase")?,
            None => new_passphrase(None, name.as_str())?,
        };
        officers.push((name, passphrase));
    }
    Ok(officers)
}

/// Takes the station to named operators; `current` unlocks it until then.
pub(super) async fn enable(
    global: &GlobalArgs,
    home: &StationHome,
    current: &str,
    officers: &[(OperatorName, Zeroizing<String>)],
    policy: Policy,
) -> Result<()> {
    let station = global.station_with(home, current).await?;
    custody::enable(&station, home, current, officers, policy).await?;
    station.inventory.close().await;
    let names: Vec<&str> = officers.iter().map(|(name, _)| name.as_str()).collect();
    println!(
        "named operators enabled: security officers {}; dual control by {} of them; the station is unlocked by {}; \
         the shared passphrase no longer unlocks it",
        names.join(", "),
        policy.approvals,
        if policy.unlock_quorum <= 1 {
            "any operator's login".to_owned()
        } else {
            format!("{} officers' logins", policy.unlock_quorum)
        }
    );
    Ok(())
}

pub async fn run(global: &GlobalArgs, home: &StationHome, command: OperatorsCommand) -> Result<()> {
    match command {
        OperatorsCommand::List { json } => {
            global.authorise_read(home, Operation::Inspect).await?;
            let inventory = global.inventory(home).await?;
            let trust = custody::signer_trust(&inventory, &home.info()?.factory_root).await?;
            let list = rows::list(inventory.pool()).await?;
            inventory.close().await;
            let now = keyfill_station::db::now_millis();
            let state = |stored: &rows::StoredOperator| {
                if !stored.record.trusted(&trust) {
                    "untrusted record"
                } else if !stored.record.active() {
                    "removed"
                } else if stored.locked_until > now {
                    "logins refused for now"
                } else {
                    "active"
                }
            };
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|stored| {
                        serde_json::json!({
                            "name": stored.record.name,
                            "role": stored.record.role,
                            "state": state(stored),
                            "failed_logins": stored.failed_logins,
                            "signing_public": stored.record.signing_public,
                        })
                    })
                    .collect();
                print_json(&rows)?;
            } else if list.is_empty() {
                println!("no operators (this station has no named operators: `keyfill custody enable`)");
            } else {
                println!("{:<32} {:<17} STATE", "NAME", "ROLE");
                for stored in &list {
                    println!("{:<32} {:<17} {}", stored.record.name, stored.record.role, state(stored));
                }
            }
        }
        OperatorsCommand::Add { name, role, new_passphrase_file, card, new_card_pin_file } => {
            let name = OperatorName::parse(&name).context("the operator's name")?;
            let passphrase = new_passphrase(new_passphrase_file.as_deref(), name.as_str())?;
            let card_access = match &card {
                Some(label) => Some(CardAccess {
                    module: global.card_module.clone(),
                    pin: match &new_card_pin_file {
                        Some(path) => read_secret(path, "the card PIN")?,
                        None => Zeroizing::new(
                            rpassword::prompt_password(format!("PIN of the card {label:?}: "))
                                .context("no card PIN: pass --new-card-pin-file, or run in a terminal")?,
                        ),
                    },
                }),
                None => None,
            };
            let (station, session) =
                global.custody_station(home, Operation::ManageOperators, &format!("add {name} as {role}")).await?;
            let (mut session, secret) = session.ok_or_else(not_named)?;
            let binding = match (&card, &card_access) {
                (Some(label), Some(access)) => Some(
                    keyfill_station::custody::card::enrol(&name, label, access)
                        .with_context(|| format!("the card {label:?} did not make {name}'s key"))?,
                ),
                _ => None,
            };
            let new = custody::NewOperator { name: &name, role, passphrase: &passphrase, card: binding };
            custody::add_operator(&station, &mut session, home, &secret, new).await?;
            station.inventory.close().await;
            match &card {
                Some(label) => println!("{name} added as {role}, logging in with the card {label:?} too"),
                None => println!("{name} added as {role}"),
            }
        }
        OperatorsCommand::Remove { name } => {
            let name = OperatorName::parse(&name).context("the operator's name")?;
            let (station, session) =
                global.custody_station(home, Operation::ManageOperators, &format!("remove {name}")).await?;
            let (mut session, secret) = session.ok_or_else(not_named)?;
            custody::remove_operator(&station, &mut session, home, &secret, &name).await?;
            station.inventory.close().await;
            println!("{name} removed: they can no longer log in; the station's unlock secret was changed");
        }
        OperatorsCommand::Passphrase { new_passphrase_file } => {
            let name = global.operator_name()?;
            let passphrase = new_passphrase(new_passphrase_file.as_deref(), name.as_str())?;
            let (station, session) =
                global.custody_station(home, Operation::ChangeOwnPassphrase, name.as_str()).await?;
            let (session, _) = session.ok_or_else(not_named)?;
            custody::change_passphrase(&station, &session, &passphrase).await?;
            station.inventory.close().await;
            println!("the passphrase of {name} was changed");
        }
    }
    Ok(())
}

fn not_named() -> anyhow::Error {
    anyhow!("this station has no named operators: `keyfill custody enable` first")
}

/// `keyfill custody policy`.
pub async fn set_policy(global: &GlobalArgs, home: &StationHome, policy: Policy) -> Result<()> {
    let subject = format!("{} approvals, unlock quorum {}", policy.approvals, policy.unlock_quorum);
    let (station, session) = global.custody_station(home, Operation::ChangePolicy, &subject).await?;
    let (mut session, secret) = session.ok_or_else(not_named)?;
    custody::set_policy(&station, &mut session, home, &secret, policy).await?;
    station.inventory.close().await;
    println!("custody policy: {subject}");
    Ok(())
}

/// `keyfill custody show`: the policy and who can unlock; public facts.
pub fn show(home: &StationHome) -> Result<()> {
    match keyfill_station::custody::CustodyFile::read(home.path())? {
        None => println!("no named operators: the station is unlocked by its passphrase or token PIN"),
        Some(file) => {
            println!("dual control   {} security officers approve", file.policy.approvals);
            match file.policy.unlock_quorum {
                0 | 1 => println!("unlock         any operator's login"),
                quorum => println!("unlock         {quorum} security officers' logins"),
            }
            let holders: Vec<String> = file.holders().map(|name| name.to_string()).collect();
            println!("unlock wraps   {}", holders.join(", "));
            println!("generation     {}", file.generation);
        }
    }
    Ok(())
}
