//! `keyfill custody`: where the station's keys are kept.

use super::GlobalArgs;
use anyhow::{Context, Result};
use clap::Subcommand;
use keyfill_station::home::StationHome;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum CustodyCommand {
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
        CustodyCommand::MoveToToken { pkcs11_module, token } => {
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
