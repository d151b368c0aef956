//! Errors as the operator reads them: what happened, and what to do about it. Built from the
//! station library's typed errors, so each help line fits the actual cause.

use keyfill_station::bundle::{KeyFileError, SealBundleError};
use keyfill_station::custody::access::{AccessError, LoginError};
use keyfill_station::custody::enable::CustodyError;
use keyfill_station::custody::unlock::UnlockError;
use keyfill_station::db::DbError;
use keyfill_station::detect::LinkTarget;
use keyfill_station::export::{C2Error, ExportError, NoAnswer};
use keyfill_station::home::HomeError;
use keyfill_station::label::LabelError;
use keyfill_station::link::LinkError;
use keyfill_station::protocol::SessionError;
use keyfill_station::provision::{ProvisionError, SessionOrLinkError};
use keyfill_station::rotation::RotationError;
use keyfill_station::seal::SealError;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What happened, in one sentence.
    pub message: String,
    /// What the operator should do next.
    pub help: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} — {}", self.message, self.help)
    }
}

/// The library's lower-case error text as a sentence: capitalised, with a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let first: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    full_stop(&(first + chars.as_str()))
}

fn full_stop(text: &str) -> String {
    if text.ends_with('.') { text.to_owned() } else { format!("{text}.") }
}

const CHECK_DATABASE: &str =
    "Check that the database in Settings > Station is reachable and its disk is not full, then try again.";

impl Problem {
    pub fn new(message: impl Into<String>, help: impl Into<String>) -> Self {
        Problem { message: message.into(), help: help.into() }
    }

    pub fn locked() -> Self {
        Problem::new("The station is locked.", "Unlock it with the master-key passphrase.")
    }

    pub fn unlock(error: &HomeError) -> Self {
        match error {
            HomeError::Seal(SealError::WrongPassphrase) => Problem::new(
                "Wrong passphrase.",
                "Type the master-key passphrase again (check Caps Lock and the keyboard layout).",
            ),
            HomeError::Seal(SealError::EmptyPassphrase) => {
                Problem::new("The passphrase is empty.", "Type the master-key passphrase.")
            }
            HomeError::NotInitialised(path) => Problem::not_initialised(&path.display().to_string()),
            HomeError::CertificateNotValid { .. } => Problem::new(
                error.to_string(),
                "Check the computer's clock. If it is right, the station certificate has expired: ask the \
                 factory administrator for a new station.",
            ),
            HomeError::Token(error) => Problem::token(error),
            HomeError::AuditKeyRequiresRoot => Problem::new(
                "This station has no key to sign its audit log with.",
                "Its factory root is kept offline: run `keyfill audit enrol --factory-root-key FILE` once on this \
                 computer, then unlock again.",
            ),
            _ => Problem::new(
                format!("Cannot unlock the station: {error}."),
                "The station home may be damaged: check its files, or restore them from the backup.",
            ),
        }
    }

    /// The station's token did not open.
    pub fn token(error: &keyfill_station::hsm::TokenError) -> Self {
        use keyfill_station::hsm::TokenError;
        let printable = |text: &str| keyfill_formats::printable(text).into_owned();
        match error {
            TokenError::PinIncorrect { label } => Problem::new(
                format!("Wrong PIN for the token {}.", printable(label)),
                "Type the token's user PIN again. The token locks itself after a few wrong PINs.",
            ),
            TokenError::PinLocked { label } => Problem::new(
                format!("The token {} has locked its user PIN.", printable(label)),
                "Its security officer must unlock it with the token's own tools; the station cannot.",
            ),
            TokenError::TokenNotFound { label, present, .. } => Problem::new(
                format!("The token {} is not plugged in.", printable(label)),
                format!(
                    "Plug it in, then unlock again{}.",
                    if present.is_empty() {
                        String::new()
                    } else {
                        format!(" (tokens present: {})", printable(&present.join(", ")))
                    }
                ),
            ),
            _ => Problem::new(
                format!("{}.", printable(&error.to_string())),
                "Check that the token is plugged in and its PKCS#11 module installed, then unlock again.",
            ),
        }
    }

    /// A master passphrase offered to a station with named operators.
    pub fn named_operators() -> Self {
        Problem::new(
            "This station has named operators: no shared passphrase unlocks it.",
            "Log in with your operator name and passphrase.",
        )
    }

    /// Logging a named operator in failed; the library's sentence names the cause.
    pub fn login(error: &LoginError) -> Self {
        let help = match error {
            LoginError::WrongPassphrase { .. } => {
                "Type the passphrase again (check Caps Lock and the keyboard layout). After a few wrong ones in a row, \
                 logins are refused for a while."
            }
            LoginError::LockedOut { .. } => "Wait until the time given has passed, then log in again.",
            LoginError::Unknown(_) => "Check the name's spelling; a security officer can list the operators.",
            LoginError::Removed(_) => "Ask a security officer: a removed operator no longer logs in.",
            LoginError::Db(_) => CHECK_DATABASE,
            _ => "Ask a security officer to check the operator's record (`keyfill operators list`).",
        };
        Problem::new(sentence(&error.to_string()), help)
    }

    /// A role or dual-control refusal.
    pub fn access(error: &AccessError) -> Self {
        match error {
            AccessError::DualControl { operation, need, have } => Problem::new(
                format!(
                    "To {operation} takes the approval of {need} security officers (dual control); {have} approved."
                ),
                "Each security officer types their own name and passphrase.",
            ),
            // These begin with the operator's name: kept as typed.
            AccessError::Forbidden { allowed, .. } => {
                Problem::new(full_stop(&error.to_string()), format!("Lock, and let {allowed} log in to do it."))
            }
            AccessError::NotAnOfficer(_) | AccessError::Twice(_) => {
                Problem::new(full_stop(&error.to_string()), "Name other security officers, each once.")
            }
            _ => Problem::new(sentence(&error.to_string()), "Check who logged in, then try again."),
        }
    }

    /// Logging in and unlocking a station with named operators failed.
    pub fn custody(error: &CustodyError) -> Self {
        match error {
            CustodyError::Login(error) => Problem::login(error),
            CustodyError::Access(error) => Problem::access(error),
            CustodyError::Home(error) => Problem::unlock(error),
            CustodyError::Db(error) => Problem::database(error),
            CustodyError::Unlock(UnlockError::TooFewOfficers { need, have }) => Problem::new(
                format!(
                    "The custody policy needs {need} security officers to unlock this station after a restart; {have} \
                     logged in."
                ),
                "Each security officer types their name and passphrase in a row of the form.",
            ),
            _ => Problem::new(
                sentence(&error.to_string()),
                "Check the names and passphrases; if it happens again, ask a security officer.",
            ),
        }
    }

    pub fn not_initialised(home: &str) -> Self {
        Problem::new(
            format!("No station in {home}."),
            format!(
                "Create it once with `keyfill init --home {home}`, or choose the right station home in Settings > Station."
            ),
        )
    }

    pub fn database(error: &DbError) -> Self {
        match error {
            DbError::ForeignMasterKey { .. } => Problem::new(
                "This database belongs to other stations: its keys are sealed under another master key.",
                "Choose this station's own database in the settings, or join this station to the others with \
                 `keyfill init --join-master FILE` (the file from `keyfill master share` on one of them).",
            ),
            DbError::DuplicateKey { check_value } => Problem::new(
                format!(
                    "The station made a key that is already in the inventory (check value {check_value}); it was refused and nothing was sent."
                ),
                "Stop keying on this station and tell the security team: the same key twice means its random source \
                 is failing or the database holds a cloned key. `keyfill keys check-duplicates` scans the inventory.",
            ),
            _ => Problem::new(format!("The inventory database failed: {error}."), CHECK_DATABASE),
        }
    }

    pub fn link(error: &LinkError, link: &LinkTarget) -> Self {
        let place = link.describe();
        let help = match error {
            LinkError::Open { .. } => format!(
                "Check that {place} exists (choose it again under Link), that no other program uses it, and that \
                 you may open it (the `dialout` group)."
            ),
            LinkError::Closed | LinkError::Io(_) | LinkError::Frame(_) => {
                "The link dropped: check the cable and the device's power, then provision again.".to_owned()
            }
            LinkError::NoReader { .. } | LinkError::AmbiguousReader { .. } => {
                "Connect the reader, check that pcscd runs, and choose the reader under Link.".to_owned()
            }
            LinkError::NoCard { .. } => "Present the card or device to the reader, then provision again.".to_owned(),
            LinkError::CardRemoved { .. } => {
                "Keep the card or device on the reader until the status says provisioned, then provision again."
                    .to_owned()
            }
            LinkError::NotKeyfillCard { .. } => {
                "This card has no Keyfill application: present the device that belongs to this label.".to_owned()
            }
            LinkError::NoBluetoothAdapter => {
                "Plug in a Bluetooth adapter and check that bluetoothd runs, or choose another link.".to_owned()
            }
            LinkError::BleNotFound { .. } => {
                "Check that the device is powered and advertising, and close to the station; then provision again."
                    .to_owned()
            }
            _ => "Check the link and the device, then provision again.".to_owned(),
        };
        Problem::new(format!("Cannot use {place}: {error}."), help)
    }

    pub fn provision(error: &ProvisionError) -> Self {
        match error {
            ProvisionError::AlreadyProvisioned { name, .. } => Problem::new(
                format!("{name} is already provisioned."),
                "It holds its key from this station: nothing to do. Put the next device on the link and scan its label.",
            ),
            ProvisionError::Failed { source } => Problem::new(
                format!("Provisioning failed: {source}."),
                format!("{} The device holds no key from this station.", session_help(source)),
            ),
            ProvisionError::Unconfirmed { source } => Problem::new(
                format!("The key was sent but not confirmed: {source}."),
                "The record stays pending. Keep the device on the link and provision it again: the station first \
                 asks it whether it holds the key.",
            ),
            ProvisionError::ReconcileIncomplete { source } => Problem::new(
                format!("The device could not be asked about its pending key: {source}."),
                format!("{} The record stays pending.", session_help(source)),
            ),
            ProvisionError::Db(db) => Problem::database(db),
            ProvisionError::NotAdmitted(refused) => Problem::new(
                format!("Not keyed: {refused}."),
                match refused {
                    keyfill_station::orders::NotAdmitted::Mismatch { .. } => {
                        "Nothing was sent. Check that this label belongs to the device on the link, and that the \
                         work order is right; a wrong order is corrected in the MES (under a new order id)."
                    }
                    _ => {
                        "Nothing was sent. Put this device aside for its own work order, or choose its order under \
                         Work order."
                    }
                },
            ),
            ProvisionError::Leased { station, .. } => Problem::new(
                format!("Another station is working on this device: {station}."),
                "Wait for it to finish (the device then shows as provisioned), or provision it there. A station that \
                 stopped holds the device only until its lease ends, then provision again here.",
            ),
            _ => Problem::new(
                format!("Provisioning failed: {error}."),
                "Provision again; if it fails again, note the message for support.",
            ),
        }
    }

    pub fn rotation(error: &RotationError) -> Self {
        let help = match error {
            RotationError::BadBroker(_) => "Write the broker as mqtt://HOST:PORT.",
            RotationError::Mqtt(_) => {
                "Check that the MQTT broker runs and this station may reach it, then start again."
            }
            RotationError::Unconfirmed { .. } => {
                "Both keys are kept. The device's next contact tells which one it uses: run the rotation again later."
            }
            RotationError::Db(_) => CHECK_DATABASE,
            _ => "Check the devices chosen, then start again.",
        };
        Problem::new(format!("Rotation: {error}."), help)
    }

    /// A selection of devices to export that cannot be made (an offline bundle's too).
    pub fn export(error: &ExportError) -> Self {
        Problem::c2_export(error, "C2")
    }

    /// An export run to C2 at `target` that stopped, in the operator's words.
    pub fn c2_export(error: &ExportError, target: &str) -> Self {
        match error {
            ExportError::C2 { source, .. } => Problem::c2_at(source, target),
            ExportError::CryptoModeMismatch { found } => Problem::new(
                format!(
                    "C2 at {target} runs in {found} mode, but Keyfill's keys are symmetric E4 keys: nothing was exported."
                ),
                "Configure C2 for symmetric keys (CRYPTOMODE_SYMKEY), then export again.",
            ),
            ExportError::Lookup(lookup) => Problem::new(
                format!("{lookup}."),
                "Check the device names or ids; write id:ID or name:NAME where a name looks like an id.",
            ),
            ExportError::Db(db) => Problem::database(db),
            ExportError::Ledger(reason) => {
                Problem::new(format!("The export could not be recorded: {reason}."), CHECK_DATABASE)
            }
            other => Problem::new(
                format!("The export to {target} stopped: {other}."),
                "Export again: a run resumes where the last one stopped.",
            ),
        }
    }

    /// C2 at `target` failed us before or during a run.
    pub fn c2_at(error: &C2Error, target: &str) -> Self {
        match error {
            C2Error::Unreachable { why, .. } => {
                let (cause, help) = unreachable_cause(why);
                Problem::new(format!("C2 at {target} cannot be reached: {cause}."), help)
            }
            C2Error::Untrusted { .. } => Problem::new(
                format!("C2 at {target} cannot be reached: its TLS certificate is not trusted."),
                "Choose the PEM file of the CA that signed C2's certificate under CA file, then export again.",
            ),
            C2Error::Status { status, message, .. } => {
                Problem::new(format!("C2 at {target} refused the request (HTTP {status}: {message})."), c2_help(error))
            }
            _ => Problem::new(format!("C2 at {target}: {error}."), c2_help(error)),
        }
    }

    pub fn c2(error: &C2Error) -> Self {
        Problem::new(format!("C2: {error}."), c2_help(error))
    }

    /// Asking a pending device whether it holds its key did not reach a verdict.
    pub fn reconcile(error: &ProvisionError) -> Self {
        match error {
            ProvisionError::ReconcileIncomplete { source } => Problem::new(
                format!("The device could not be asked about its pending key: {source}."),
                format!(
                    "{} The record stays pending: ask again once the device is on the link.",
                    match source {
                        SessionOrLinkError::Link(_) =>
                            "Check the cable, the reader or the radio, and the device's power.",
                        SessionOrLinkError::Session(SessionError::DeviceAuthenticationFailed) => {
                            "The device on the link is not this one: put this device on the link."
                        }
                        SessionOrLinkError::Session(session) => session.advice(),
                    }
                ),
            ),
            ProvisionError::NotPending { state, .. } => Problem::new(
                format!("The device is {state}, not pending: there is nothing to ask it."),
                "Reload the device: another station may have resolved it.",
            ),
            ProvisionError::Db(db) => Problem::database(db),
            other => Problem::new(
                format!("Cannot ask the device: {other}."),
                "Ask again; if it fails again, note the message for support.",
            ),
        }
    }

    pub fn abandon(error: &ProvisionError) -> Self {
        match error {
            ProvisionError::NotPending { state, .. } => Problem::new(
                format!("The device is {state}, not pending: only a pending device can be abandoned."),
                "Reload the device: it may have been reconciled in the meantime.",
            ),
            ProvisionError::Db(db) => Problem::database(db),
            other => Problem::new(format!("Not abandoned: {other}."), "Try again; the record is unchanged."),
        }
    }

    /// The recipient key given for a bundle is neither 64 hex digits nor a readable key file.
    pub fn bundle_recipient(text: &str, error: &KeyFileError) -> Self {
        let help = match error {
            KeyFileError::Io { .. } => {
                "Choose the .pub file the C2 operator made with `keyfill bundle new-key`, or paste its 64 hex digits."
            }
            _ => {
                "The C2 operator's public key is 64 hex digits (the .pub file of `keyfill bundle new-key`): check the file or the text."
            }
        };
        Problem::new(format!("Recipient {text:?}: not a key file nor 64 hex digits ({error})."), help)
    }

    /// The station cannot sign a bundle.
    pub fn bundle_signer(error: &HomeError) -> Self {
        let help = match error {
            HomeError::FactoryRootRequired => {
                "Give the factory root key (PKCS#8) once under Factory root key: the station then certifies its own \
                 bundle-signing key and keeps it."
            }
            HomeError::FactoryRootMismatch => "Choose this station's factory root key file.",
            HomeError::BadRootKey => {
                "The factory root key file is not an Ed25519 PKCS#8 document: choose the right file."
            }
            _ => "The station home may be damaged: check its files, or restore them from the backup.",
        };
        Problem::new(format!("No bundle-signing key: {error}."), help)
    }

    pub fn bundle_seal(error: &SealBundleError) -> Self {
        let help = match error {
            SealBundleError::SignerNotValid { .. } => "Check the computer's clock, then export again.",
            SealBundleError::InvalidRecipient => "Ask the C2 operator for their public key again.",
            SealBundleError::TooLarge { .. } => "Export fewer devices at once (Confirmed since, or named devices).",
            _ => "Export again; if it fails again, note the message for support.",
        };
        Problem::new(format!("Cannot build the bundle: {error}."), help)
    }

    pub fn label(error: &LabelError) -> Self {
        let help = match error {
            LabelError::PayloadTooLarge { .. } | LabelError::TextDoesNotFit { .. } => {
                "Choose a larger label size in Settings > Labels."
            }
            LabelError::InvalidSpec { .. } => "Fix the label size and resolution in Settings > Labels.",
            _ => "Check the label settings; the device itself is provisioned.",
        };
        Problem::new(format!("Cannot make the label: {error}."), help)
    }
}

fn session_help(source: &SessionOrLinkError) -> String {
    match source {
        SessionOrLinkError::Link(_) => "Check the cable and the device's power, then provision again.".to_owned(),
        // The station library words the advice for each session failure, the same for the CLI.
        SessionOrLinkError::Session(session) => session.advice().to_owned(),
    }
}

/// What a connection failure means, and what to do about it.
fn unreachable_cause(why: &NoAnswer) -> (&'static str, &'static str) {
    match why {
        NoAnswer::Refused => (
            "nothing accepts connections at that address and port",
            "Check that C2 runs and that the address and port are C2's, then export again: the run resumes.",
        ),
        NoAnswer::UnknownHost => (
            "its host name is unknown",
            "Check the spelling of C2's address and this station's DNS, then export again.",
        ),
        NoAnswer::TimedOut => (
            "it did not answer in time",
            "Check the network between this station and C2, then export again: the run resumes.",
        ),
        NoAnswer::Reset => (
            "the connection was reset",
            "A proxy or firewall may be closing connections to C2: check the network path, then export again.",
        ),
        _ => ("the connection failed", "Check the network and C2's address, then export again: the run resumes."),
    }
}

fn c2_help(error: &C2Error) -> &'static str {
    match error {
        C2Error::BadUrl { .. } => "Write C2's address as https://HOST:PORT.",
        C2Error::BadCa { .. } => "Choose the PEM file of the CA that signed C2's certificate, or leave it empty.",
        C2Error::Unreachable { .. } => "Check the network and C2's address, then export again: the run resumes.",
        C2Error::Untrusted { .. } => "Choose the PEM file of the CA that signed C2's certificate.",
        C2Error::ListChanged { .. } => "Export again once no other tool is registering clients in C2.",
        C2Error::Status { .. } => "Check C2's logs; export again once it answers: the run resumes.",
        _ => "Check C2's address and version, then export again.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gui_problem_tells_what_to_do_for_a_wrong_passphrase() {
        let problem = Problem::unlock(&HomeError::Seal(SealError::WrongPassphrase));
        assert_eq!(problem.message, "Wrong passphrase.");
        assert!(problem.help.contains("Caps Lock"));
    }

    #[test]
    fn gui_problem_for_an_unreachable_c2_names_the_cause_not_the_library() {
        let refused = C2Error::Unreachable { target: "https://c2.example:8888".into(), why: NoAnswer::Refused };
        let error = ExportError::C2 { what: "its crypto mode", source: refused };
        let problem = Problem::c2_export(&error, "https://c2.example:8888");
        assert_eq!(
            problem.message,
            "C2 at https://c2.example:8888 cannot be reached: nothing accepts connections at that address and port."
        );
        assert!(problem.help.starts_with("Check that C2 runs"), "{problem}");
        let tls =
            C2Error::Untrusted { target: "https://c2".into(), why: "invalid peer certificate: UnknownIssuer".into() };
        assert!(Problem::c2_at(&tls, "https://c2").help.contains("CA file"));
    }

    #[test]
    fn gui_problem_for_a_link_with_data_of_an_earlier_session_says_retry_and_blames_nobody() {
        let stale = SessionError::StaleLink { phase: "waiting for the handshake reply", seconds: 10, dropped: 2 };
        let problem = Problem::provision(&ProvisionError::Failed { source: stale.into() });
        assert!(problem.message.contains("earlier session"), "{problem}");
        assert!(problem.help.contains("retry"), "{problem}");
        let text = problem.to_string();
        assert!(!text.contains("wrong device") && !text.contains("aside") && !text.contains("copied"), "{text}");
        // Only a genuine proof failure points at the device and its label.
        let genuine =
            Problem::provision(&ProvisionError::Failed { source: SessionError::DeviceAuthenticationFailed.into() });
        assert!(genuine.help.contains("label"), "{genuine}");
    }

    #[test]
    fn gui_problem_for_an_unopenable_port_names_it() {
        let target = LinkTarget::Serial { path: "/dev/ttyUSB7".into(), baud: 115_200 };
        let problem = Problem::link(&LinkError::Closed, &target);
        assert!(problem.message.contains("/dev/ttyUSB7"), "{problem}");
        assert!(problem.help.contains("cable"));
    }
}
