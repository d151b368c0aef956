//! The PC/SC link: a smart card or an NFC (ISO-DEP) device in a reader, through pcsc-lite.
//!
//! Wire messages travel in the Keyfill card application's APDUs (see
//! `keyfill_formats::apdu`). PC/SC calls block, so each runs on tokio's blocking pool; a
//! removed card is reported as [`LinkError::CardRemoved`] and ends the session cleanly.

use super::{Link, LinkError, LinkInfo};
use keyfill_formats::apdu::{self, CommandApdu, ResponseApdu, sw};
use pcsc::{Card, Context, Protocols, ReaderState, Scope, ShareMode, State};
use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often `recv` asks the card for a queued message.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bound on GET RESPONSE rounds for one reply (a wire message is at most 1536 bytes).
const MAX_RESPONSE_PARTS: usize = 8;

fn pcsc_error(reader: &str, error: pcsc::Error) -> LinkError {
    match error {
        pcsc::Error::RemovedCard | pcsc::Error::ResetCard | pcsc::Error::NoSmartcard => {
            LinkError::CardRemoved { reader: reader.to_owned() }
        }
        source => LinkError::Pcsc { reader: reader.to_owned(), source },
    }
}

/// Names of the PC/SC readers attached to this machine.
pub fn list_readers() -> Result<Vec<String>, LinkError> {
    let context = Context::establish(Scope::User).map_err(|e| pcsc_error("-", e))?;
    match context.list_readers_owned() {
        Ok(names) => Ok(names.into_iter().map(|n| n.to_string_lossy().into_owned()).collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(pcsc_error("-", e)),
    }
}

/// A session's PC/SC link to one card.
///
/// The card and the replies it gave live behind a mutex shared with the blocking pool, so a
/// `recv` cancelled mid-transmit (a session timeout) loses neither the card nor a reply.
pub struct PcscLink {
    shared: Arc<Mutex<Shared>>,
    reader: String,
}

struct Shared {
    card: Option<Card>,
    queued: VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for PcscLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscLink").field("reader", &self.reader).finish_non_exhaustive()
    }
}

/// Waits up to `wait` for a card in `reader` (a full name or a unique part of one; any reader if
/// `None`), connects, and selects the Keyfill application.
pub async fn open_pcsc(reader: Option<String>, wait: Duration) -> Result<PcscLink, LinkError> {
    let (card, reader) = tokio::task::spawn_blocking(move || connect_when_present(reader.as_deref(), wait))
        .await
        .map_err(|e| LinkError::Io(std::io::Error::other(e)))??;
    let link = PcscLink { shared: Arc::new(Mutex::new(Shared { card: Some(card), queued: VecDeque::new() })), reader };
    let status = link.transmit(apdu::select_keyfill()).await?;
    if status != sw::OK {
        return Err(LinkError::NotKeyfillCard { reader: link.reader.clone(), sw: status });
    }
    Ok(link)
}

fn matching_readers(context: &Context, wanted: Option<&str>) -> Result<Vec<CString>, LinkError> {
    let names = match context.list_readers_owned() {
        Ok(names) => names,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => return Err(pcsc_error("-", e)),
    };
    Ok(match wanted {
        None => names,
        Some(wanted) => {
            let exact: Vec<CString> = names.iter().filter(|n| n.to_string_lossy() == wanted).cloned().collect();
            if exact.is_empty() {
                names.into_iter().filter(|n| n.to_string_lossy().contains(wanted)).collect()
            } else {
                exact
            }
        }
    })
}

fn connect_when_present(wanted: Option<&str>, wait: Duration) -> Result<(Card, String), LinkError> {
    let context = Context::establish(Scope::User).map_err(|e| pcsc_error("-", e))?;
    let deadline = Instant::now() + wait;
    loop {
        let names = matching_readers(&context, wanted)?;
        if let [one, two, ..] = names.as_slice()
            && wanted.is_some()
        {
            return Err(LinkError::AmbiguousReader {
                wanted: wanted.unwrap_or_default().to_owned(),
                matches: vec![one.to_string_lossy().into_owned(), two.to_string_lossy().into_owned()],
            });
        }
        let mut states: Vec<ReaderState> = names.iter().map(|n| ReaderState::new(n.clone(), State::UNAWARE)).collect();
        if !states.is_empty() {
            match context.get_status_change(Duration::from_millis(0), &mut states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                Err(e) => return Err(pcsc_error("-", e)),
            }
            for state in &states {
                let event = state.event_state();
                if event.contains(State::PRESENT) && !event.intersects(State::MUTE | State::EXCLUSIVE) {
                    let name = state.name().to_string_lossy().into_owned();
                    match context.connect(state.name(), ShareMode::Exclusive, Protocols::ANY) {
                        Ok(card) => return Ok((card, name)),
                        Err(pcsc::Error::SharingViolation | pcsc::Error::NoSmartcard | pcsc::Error::RemovedCard) => {}
                        Err(e) => return Err(pcsc_error(&name, e)),
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(match (names.is_empty(), wanted) {
                (true, Some(wanted)) => LinkError::NoReader { wanted: wanted.to_owned() },
                (true, None) => LinkError::NoReader { wanted: "any".into() },
                (false, _) => LinkError::NoCard { seconds: wait.as_secs() },
            });
        }
        // Wait for a change (card inserted, reader attached) or a short while.
        if !states.is_empty() {
            for state in &mut states {
                state.sync_current_state();
            }
            let _ = context.get_status_change(Duration::from_millis(250), &mut states);
        } else {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn transmit_blocking(card: &Card, reader: &str, command: &CommandApdu) -> Result<ResponseApdu, LinkError> {
    let encoded = command.encode().map_err(|e| LinkError::Io(std::io::Error::other(e)))?;
    let mut buffer = [0u8; apdu::MAX_RESPONSE_DATA + 2];
    let response = card.transmit(&encoded, &mut buffer).map_err(|e| pcsc_error(reader, e))?;
    if response.is_empty() {
        // vpcd (and some contactless readers) answer nothing once the card has left the field.
        return Err(LinkError::CardRemoved { reader: reader.to_owned() });
    }
    ResponseApdu::parse(response).map_err(|e| LinkError::Io(std::io::Error::other(e)))
}

/// Sends `command`, then fetches every announced remainder with GET RESPONSE.
fn exchange_blocking(card: &Card, reader: &str, command: &CommandApdu) -> Result<ResponseApdu, LinkError> {
    let mut response = transmit_blocking(card, reader, command)?;
    let mut data = std::mem::take(&mut response.data);
    let mut parts = 1;
    while response.more_data() {
        if parts == MAX_RESPONSE_PARTS {
            return Err(LinkError::CardStatus { reader: reader.to_owned(), sw: response.sw });
        }
        response = transmit_blocking(card, reader, &apdu::get_response(response.sw))?;
        data.append(&mut response.data);
        parts += 1;
    }
    Ok(ResponseApdu { data, sw: response.sw })
}

impl PcscLink {
    /// Sends `command` on the blocking pool; reply data is queued, the status word returned.
    async fn transmit(&self, command: CommandApdu) -> Result<u16, LinkError> {
        let shared = self.shared.clone();
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut shared = shared.lock().map_err(|_| LinkError::CardRemoved { reader: reader.clone() })?;
            let card = shared.card.as_ref().ok_or_else(|| LinkError::CardRemoved { reader: reader.clone() })?;
            match exchange_blocking(card, &reader, &command) {
                Ok(response) => {
                    if !response.data.is_empty() {
                        shared.queued.push_back(response.data);
                    }
                    Ok(response.sw)
                }
                Err(error) => {
                    if matches!(error, LinkError::CardRemoved { .. }) {
                        shared.card = None;
                    }
                    Err(error)
                }
            }
        })
        .await
        .map_err(|e| LinkError::Io(std::io::Error::other(e)))?
    }

    fn check(&self, status: u16) -> Result<(), LinkError> {
        if status == sw::OK { Ok(()) } else { Err(LinkError::CardStatus { reader: self.reader.clone(), sw: status }) }
    }

    fn pop_queued(&self) -> Option<Vec<u8>> {
        self.shared.lock().ok()?.queued.pop_front()
    }
}

impl Link for PcscLink {
    fn info(&self) -> LinkInfo {
        LinkInfo { transport: "pcsc", port: self.reader.clone() }
    }

    async fn send(&mut self, message: &[u8]) -> Result<(), LinkError> {
        for command in apdu::exchange_commands(message) {
            let status = self.transmit(command).await?;
            self.check(status)?;
        }
        Ok(())
    }

    async fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        loop {
            if let Some(message) = self.pop_queued() {
                return Ok(message);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
            let status = self.transmit(apdu::poll()).await?;
            self.check(status)?;
        }
    }

    fn discard_received(&mut self) -> Result<(), LinkError> {
        // Replies that came back to a cancelled exchange of an earlier session. The card's own
        // queue was emptied by SELECT when the link opened; later leftovers there are dropped by
        // the session, which knows its id.
        if let Ok(mut shared) = self.shared.lock() {
            shared.queued.clear();
        }
        Ok(())
    }
}
