//! ISO/IEC 7816-4 APDUs and the Keyfill card application's mapping onto them.
//!
//! The device answers as a card application selected by [`KEYFILL_AID`]. Wire messages travel
//! in proprietary `EXCHANGE` commands (CLA `80`, INS `10`), split with command chaining (CLA bit
//! `10`) into short APDUs of at most 255 data bytes. A reply longer than one response (256
//! bytes) comes in parts: status `61xx` tells the station to fetch the rest with `GET RESPONSE`
//! (INS `C0`). `POLL` (INS `12`) fetches a message the device queued without a request.
//! Only short APDUs are used; every parser here is bounded and returns a typed error.

use thiserror::Error;

/// Keyfill application identifier: proprietary RID `F0`, "KEYFILL", application version 1.
pub const KEYFILL_AID: [u8; 9] = [0xF0, b'K', b'E', b'Y', b'F', b'I', b'L', b'L', 0x01];

pub const CLA_ISO: u8 = 0x00;
pub const CLA_PROPRIETARY: u8 = 0x80;
/// ISO 7816-4 command chaining bit: more command APDUs of this message follow.
pub const CLA_CHAINING: u8 = 0x10;
pub const INS_SELECT: u8 = 0xA4;
pub const INS_GET_RESPONSE: u8 = 0xC0;
pub const INS_EXCHANGE: u8 = 0x10;
pub const INS_POLL: u8 = 0x12;
/// Most data bytes in one short command APDU.
pub const MAX_COMMAND_DATA: usize = 255;
/// Most data bytes in one short response APDU.
pub const MAX_RESPONSE_DATA: usize = 256;

/// Status words the application returns.
pub mod sw {
    pub const OK: u16 = 0x9000;
    /// `61xx`: `xx` more bytes (0 = 256 or more) are available through GET RESPONSE.
    pub const MORE_DATA: u16 = 0x6100;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const DATA_INVALID: u16 = 0x6984;
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    pub const WRONG_DATA: u16 = 0x6A80;
    pub const APPLICATION_NOT_FOUND: u16 = 0x6A82;
    pub const WRONG_P1P2: u16 = 0x6B00;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    pub const NO_PRECISE_DIAGNOSIS: u16 = 0x6F00;
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum ApduError {
    #[error("APDU of {len} bytes is shorter than its 4-byte header")]
    TooShort { len: usize },
    #[error("APDU length {len} does not match its Lc/Le fields")]
    LengthMismatch { len: usize },
    #[error("extended-length APDUs are not supported")]
    ExtendedLength,
    #[error("APDU of {len} bytes exceeds the short-APDU limit")]
    TooLong { len: usize },
    #[error("response of {len} bytes is shorter than its status word")]
    ResponseTooShort { len: usize },
}

/// A parsed short command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandApdu {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// Expected response length; `Some(256)` for an Le byte of 0.
    pub le: Option<usize>,
}

impl CommandApdu {
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8, data: Vec<u8>, le: Option<usize>) -> Self {
        CommandApdu { cla, ins, p1, p2, data, le }
    }

    /// Parses a short APDU (ISO 7816-3 cases 1 to 4).
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        let len = bytes.len();
        if len < 4 {
            return Err(ApduError::TooShort { len });
        }
        if len > 4 + 1 + MAX_COMMAND_DATA + 1 {
            return Err(ApduError::TooLong { len });
        }
        let (header, body) = bytes.split_at(4);
        let (data, le) = match body {
            [] => (Vec::new(), None),
            [le] => (Vec::new(), Some(if *le == 0 { 256 } else { usize::from(*le) })),
            [0, _, ..] => return Err(ApduError::ExtendedLength),
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                match rest.len().checked_sub(lc) {
                    Some(0) => (rest.to_vec(), None),
                    Some(1) => {
                        let le = rest[lc];
                        (rest[..lc].to_vec(), Some(if le == 0 { 256 } else { usize::from(le) }))
                    }
                    _ => return Err(ApduError::LengthMismatch { len }),
                }
            }
        };
        Ok(CommandApdu { cla: header[0], ins: header[1], p1: header[2], p2: header[3], data, le })
    }

    /// Encodes as a short APDU. Data beyond 255 bytes must be chained by the caller.
    pub fn encode(&self) -> Result<Vec<u8>, ApduError> {
        if self.data.len() > MAX_COMMAND_DATA {
            return Err(ApduError::TooLong { len: self.data.len() });
        }
        let mut out = vec![self.cla, self.ins, self.p1, self.p2];
        if !self.data.is_empty() {
            out.push(self.data.len() as u8);
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            out.push(if le >= 256 { 0 } else { le as u8 });
        }
        Ok(out)
    }
}

/// A response APDU: data and status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseApdu {
    pub data: Vec<u8>,
    pub sw: u16,
}

impl ResponseApdu {
    pub fn status(sw: u16) -> Self {
        ResponseApdu { data: Vec::new(), sw }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        if bytes.len() < 2 {
            return Err(ApduError::ResponseTooShort { len: bytes.len() });
        }
        if bytes.len() > MAX_RESPONSE_DATA + 2 {
            return Err(ApduError::TooLong { len: bytes.len() });
        }
        let (data, sw) = bytes.split_at(bytes.len() - 2);
        Ok(ResponseApdu { data: data.to_vec(), sw: u16::from_be_bytes([sw[0], sw[1]]) })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }

    /// `61xx`: more response data waits.
    pub fn more_data(&self) -> bool {
        self.sw & 0xFF00 == sw::MORE_DATA
    }
}

/// The SELECT-by-AID command for the Keyfill application.
pub fn select_keyfill() -> CommandApdu {
    CommandApdu::new(CLA_ISO, INS_SELECT, 0x04, 0x00, KEYFILL_AID.to_vec(), Some(256))
}

/// Splits one wire message into the chained EXCHANGE commands that carry it.
pub fn exchange_commands(message: &[u8]) -> Vec<CommandApdu> {
    let chunks: Vec<&[u8]> =
        if message.is_empty() { vec![&[][..]] } else { message.chunks(MAX_COMMAND_DATA).collect() };
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let cla = if i == last { CLA_PROPRIETARY } else { CLA_PROPRIETARY | CLA_CHAINING };
            CommandApdu::new(cla, INS_EXCHANGE, 0, 0, chunk.to_vec(), Some(256))
        })
        .collect()
}

/// GET RESPONSE for the remainder announced by a `61xx` status.
pub fn get_response(announced: u16) -> CommandApdu {
    let le = match announced & 0xFF {
        0 => 256,
        n => usize::from(n as u8),
    };
    CommandApdu::new(CLA_ISO, INS_GET_RESPONSE, 0, 0, Vec::new(), Some(le))
}

/// POLL for a message the device queued.
pub fn poll() -> CommandApdu {
    CommandApdu::new(CLA_PROPRIETARY, INS_POLL, 0, 0, Vec::new(), Some(256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_short_cases() {
        assert_eq!(CommandApdu::parse(&[0, 0xA4, 4, 0]).map(|a| (a.data.len(), a.le)), Ok((0, None)));
        assert_eq!(CommandApdu::parse(&[0, 0xC0, 0, 0, 0]).map(|a| a.le), Ok(Some(256)));
        assert_eq!(CommandApdu::parse(&[0x80, 0x10, 0, 0, 2, 7, 8]).map(|a| (a.data, a.le)), Ok((vec![7, 8], None)));
        assert_eq!(
            CommandApdu::parse(&[0x80, 0x10, 0, 0, 1, 7, 0x10]).map(|a| (a.data, a.le)),
            Ok((vec![7], Some(16)))
        );
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(CommandApdu::parse(&[0, 1, 2]), Err(ApduError::TooShort { len: 3 }));
        assert_eq!(CommandApdu::parse(&[0x80, 0x10, 0, 0, 5, 1, 2]), Err(ApduError::LengthMismatch { len: 7 }));
        assert_eq!(CommandApdu::parse(&[0x80, 0x10, 0, 0, 0, 1, 0]), Err(ApduError::ExtendedLength));
        assert!(matches!(CommandApdu::parse(&[0; 300]), Err(ApduError::TooLong { .. })));
        assert_eq!(ResponseApdu::parse(&[0x90]), Err(ApduError::ResponseTooShort { len: 1 }));
    }

    #[test]
    fn chains_long_messages() {
        let message = vec![0xAB; 600];
        let commands = exchange_commands(&message);
        assert_eq!(commands.len(), 3);
        assert_eq!(commands[0].cla, CLA_PROPRIETARY | CLA_CHAINING);
        assert_eq!(commands[2].cla, CLA_PROPRIETARY);
        assert_eq!(commands.iter().map(|c| c.data.len()).sum::<usize>(), 600);
        for command in commands {
            let encoded = command.encode().expect("short APDU");
            assert_eq!(CommandApdu::parse(&encoded), Ok(command));
        }
    }
}
