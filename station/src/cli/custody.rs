//! `keyfill custody`: where the station's keys are kept.

use super::GlobalArgs;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use keyfill_station::custody::Policy;
use keyfill_station::home::StationHome;
use std::path::PathBuf;

/// A custody policy's figures.
#[derive(Args, Clone, Copy)]
pub struct PolicyArgs {
    /// Security officers who must approve a dual-control operation (2-8).
    #[arg(long, default_value_t = 2, value_name = "M")]
    approvals: u8,
    /// Operators who must log in to unlock the station after a restart: 1 (any operator), or
    /// that many security officers (2-8).
    #[arg(long, default_value_t = 1, value_name = "N")]
    unlock_quorum: u8,
}

impl PolicyArgs {
    pub fn policy(self) -> Result<Policy> {
        Ok(Policy { approvals: self.approvals, unlock_quorum: self.unlock_quorum }.checked()?)
    }
}

#[derive(Subcommand)]
pub enum CustodyCommand {
    /// Take this station to named operators: the officers named become its first security
    /// officers, and an unlock secret no person knows replaces the shared passphrase (or token
    /// PIN), wrapped for each operator. Every key, device and event stays as it is.
    Enable {
        /// A first security officer; repeat for each (at least --approvals of them).
        #[arg(long, value_name = "NAME", required = true)]
        officer: Vec<String>,
        /// The passphrase of the i-th --officer, from this file (else a prompt, twice).
        #[arg(long, value_name = "FILE")]
        officer_passphrase_file: Vec<std::path::PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Change the custody policy (dual control).
    Policy {
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Show the custody policy and who holds the means to unlock the station.
    Show,
    /// Move this station's master key into a PKCS#11 token, as a key that never leaves it; the
    /// station is then unlocked with the token's user PIN, and the master key's copy sealed under
    /// the passphrase is deleted from the home. Every sealed key stays as it is.
    MoveToToken {
        /// The PKCS#11 module's path.
        #[arg(long, value_name = "PATH")]
        pkcs11_module: PathBuf,
        /// The token's label.
        #[arg(long, value_name = "LABEL")]
        token: String,
    },
}

pub async fn run(global: &GlobalArgs, home: &StationHome, command: CustodyCommand) -> Result<()> {
    match command {
        CustodyCommand::Enable { officer, officer_passphrase_file, policy } => {
            if home.has_named_operators() {
                anyhow::bail!("this station has named operators already (`keyfill custody show`)");
            }
            let officers = super::operators::officers(&officer, &officer_passphrase_file)?;
            let policy = policy.policy()?;
            let current = global.unlock_secret(home)?;
            super::operators::enable(global, home, &current, &officers, policy).await
        }
        CustodyCommand::Policy { policy } => super::operators::set_policy(global, home, policy.policy()?).await,
        CustodyCommand::Show => super::operators::show(home),
        CustodyCommand::MoveToToken { pkcs11_module, token } => {
            if home.has_named_operators() {
                anyhow::bail!(keyfill_station::custody::enable::CustodyError::MoveAfterEnable);
            }
            let passphrase = zeroize::Zeroizing::new(global.passphrase(false)?);
            let pin = global.token_pin()?;
            let token = keyfill_station::hsm::Token::open(&pkcs11_module, &token, &pin)?;
            let file = home
                .move_master_into_token(&passphrase, &token, &pkcs11_module)
                .context("the master key was not moved")?;
            // Recorded by the station as it now is: unlocked through the token.
            let station = global.station_with(home, &pin).await?;
            let detail = format!(
                "master key {} moved into the PKCS#11 token {:?}; its copy sealed under the passphrase deleted",
                file.master_key_check, file.token
            );
            keyfill_station::db::audit::append_alone(
                station.inventory.pool(),
                &station.actor.recorder(),
                None,
                "master_key_moved_to_token",
                &detail,
            )
            .await?;
            station.inventory.close().await;
            println!(
                "master key {} is now in the token {:?}: unlock the station with the token's PIN; backups of the home \
                 taken before hold the master key sealed under the passphrase, destroy them",
                file.master_key_check, file.token
            );
            Ok(())
        }
    }
}
