//! The Keyfill card application: the agent core behind ISO 7816-4 APDUs, for smart cards and
//! NFC (ISO-DEP) devices. Sans-IO: APDU bytes in, response APDU bytes out; the transport
//! (vpcd socket, NFC controller) lives in an adapter.

use crate::core::AgentCore;
use crate::driver::{FaultInjection, FaultTriggered, settle, unix_now};
use crate::keystore::Keystore;
use keyfill_formats::apdu::{
    CLA_CHAINING, CLA_ISO, CLA_PROPRIETARY, CommandApdu, INS_EXCHANGE, INS_GET_RESPONSE, INS_POLL, INS_SELECT,
    KEYFILL_AID, MAX_RESPONSE_DATA, ResponseApdu, sw,
};
use keyfill_formats::message::MAX_WIRE_MESSAGE;
use std::collections::VecDeque;
use std::time::Instant;
use tracing::debug;

/// Historical bytes of the answer-to-reset: "KEYFILL".
const HISTORICAL_BYTES: &[u8] = b"KEYFILL";

/// The answer-to-reset of the Keyfill card: direct convention, T=1, historical "KEYFILL".
pub fn answer_to_reset() -> Vec<u8> {
    // TS, T0 (TD1 present, K historical bytes), TD1 (TD2 present, T=0), TD2 (T=1).
    let mut atr = vec![0x3B, 0x80 | HISTORICAL_BYTES.len() as u8, 0x80, 0x01];
    atr.extend_from_slice(HISTORICAL_BYTES);
    // TCK makes the XOR of T0..TCK zero; required when T=1 is indicated.
    let check = atr[1..].iter().fold(0u8, |acc, b| acc ^ b);
    atr.push(check);
    atr
}

/// The card application's state around the agent core.
#[derive(Debug)]
pub struct CardApplet {
    core: AgentCore,
    selected: bool,
    incoming: Vec<u8>,
    queued: VecDeque<Vec<u8>>,
    remainder: Vec<u8>,
}

impl CardApplet {
    pub fn new(core: AgentCore) -> Self {
        CardApplet { core, selected: false, incoming: Vec::new(), queued: VecDeque::new(), remainder: Vec::new() }
    }

    pub fn core(&self) -> &AgentCore {
        &self.core
    }

    /// Power off or reset: the application must be selected again.
    pub fn reset(&mut self) {
        self.selected = false;
        self.incoming.clear();
        self.queued.clear();
        self.remainder.clear();
    }

    /// When [`CardApplet::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    pub fn handle_timeout<K: Keystore>(
        &mut self,
        now: Instant,
        keystore: &mut K,
        fault: FaultInjection,
    ) -> Result<(), FaultTriggered> {
        let outputs = self.core.handle_timeout(now);
        let transmit = settle(&mut self.core, outputs, keystore, fault)?;
        self.queued.extend(transmit);
        Ok(())
    }

    /// Processes one command APDU and returns the response APDU.
    pub fn process<K: Keystore>(
        &mut self,
        apdu: &[u8],
        keystore: &mut K,
        fault: FaultInjection,
    ) -> Result<Vec<u8>, FaultTriggered> {
        let command = match CommandApdu::parse(apdu) {
            Ok(command) => command,
            Err(error) => {
                // Every short-APDU framing fault (Lc/Le mismatch, truncation, extended length)
                // is a length error in ISO 7816-4 terms.
                debug!(%error, "malformed APDU");
                return Ok(ResponseApdu::status(sw::WRONG_LENGTH).encode());
            }
        };
        Ok(self.dispatch(command, keystore, fault)?.encode())
    }

    fn dispatch<K: Keystore>(
        &mut self,
        command: CommandApdu,
        keystore: &mut K,
        fault: FaultInjection,
    ) -> Result<ResponseApdu, FaultTriggered> {
        let class = command.cla & !CLA_CHAINING;
        match (class, command.ins) {
            (CLA_ISO, INS_SELECT) => Ok(self.select(&command)),
            (CLA_ISO, INS_GET_RESPONSE) if self.selected => {
                Ok(self.get_response(command.le.unwrap_or(MAX_RESPONSE_DATA)))
            }
            (CLA_PROPRIETARY, INS_EXCHANGE) if self.selected => self.exchange(command, keystore, fault),
            (CLA_PROPRIETARY, INS_POLL) if self.selected => Ok(self.next_queued()),
            (CLA_ISO | CLA_PROPRIETARY, INS_GET_RESPONSE | INS_EXCHANGE | INS_POLL) => {
                Ok(ResponseApdu::status(sw::CONDITIONS_NOT_SATISFIED))
            }
            (CLA_ISO | CLA_PROPRIETARY, _) => Ok(ResponseApdu::status(sw::INS_NOT_SUPPORTED)),
            _ => Ok(ResponseApdu::status(sw::CLA_NOT_SUPPORTED)),
        }
    }

    fn select(&mut self, command: &CommandApdu) -> ResponseApdu {
        if command.p1 != 0x04 {
            return ResponseApdu::status(sw::WRONG_P1P2);
        }
        if command.data == KEYFILL_AID {
            self.reset();
            self.selected = true;
            ResponseApdu::status(sw::OK)
        } else {
            // ISO 7816-4: a failed SELECT keeps the current selection.
            ResponseApdu::status(sw::APPLICATION_NOT_FOUND)
        }
    }

    fn exchange<K: Keystore>(
        &mut self,
        command: CommandApdu,
        keystore: &mut K,
        fault: FaultInjection,
    ) -> Result<ResponseApdu, FaultTriggered> {
        if command.p1 != 0 || command.p2 != 0 {
            self.incoming.clear();
            return Ok(ResponseApdu::status(sw::WRONG_P1P2));
        }
        if self.incoming.len() + command.data.len() > MAX_WIRE_MESSAGE {
            self.incoming.clear();
            return Ok(ResponseApdu::status(sw::WRONG_LENGTH));
        }
        self.incoming.extend_from_slice(&command.data);
        if command.cla & CLA_CHAINING != 0 {
            return Ok(ResponseApdu::status(sw::OK));
        }
        let message = std::mem::take(&mut self.incoming);
        let outputs = self.core.handle_message(&message, Instant::now(), unix_now());
        let transmit = settle(&mut self.core, outputs, keystore, fault)?;
        self.queued.extend(transmit);
        Ok(self.next_queued())
    }

    fn next_queued(&mut self) -> ResponseApdu {
        match self.queued.pop_front() {
            Some(message) => {
                self.remainder = message;
                self.get_response(MAX_RESPONSE_DATA)
            }
            None => ResponseApdu::status(sw::OK),
        }
    }

    fn get_response(&mut self, le: usize) -> ResponseApdu {
        let take = le.min(MAX_RESPONSE_DATA).min(self.remainder.len());
        let data: Vec<u8> = self.remainder.drain(..take).collect();
        let sw = match self.remainder.len() {
            0 => sw::OK,
            n if n >= 256 => sw::MORE_DATA,
            n => sw::MORE_DATA | n as u16,
        };
        ResponseApdu { data, sw }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_to_reset_checksum_is_valid() {
        let atr = answer_to_reset();
        assert_eq!(&atr[..4], &[0x3B, 0x87, 0x80, 0x01]);
        assert_eq!(atr[1..].iter().fold(0u8, |acc, b| acc ^ b), 0);
    }
}
