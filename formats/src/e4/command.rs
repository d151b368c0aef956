//! The eight E4 commands: plaintext = command byte ‖ payload, then protected and published to
//! the client's control topic.

use super::ID_LEN;
use crate::secret::SecretKey;
use std::fmt;
use thiserror::Error;
use zeroize::Zeroize;

pub const REMOVE_TOPIC: u8 = 0x00;
pub const RESET_TOPICS: u8 = 0x01;
pub const SET_ID_KEY: u8 = 0x02;
pub const SET_TOPIC_KEY: u8 = 0x03;
pub const REMOVE_PUB_KEY: u8 = 0x04;
pub const RESET_PUB_KEYS: u8 = 0x05;
pub const SET_PUB_KEY: u8 = 0x06;
pub const SET_C2_KEY: u8 = 0x07;

/// Whether the fleet runs E4's symmetric-key or public-key mode; SetIdKey's payload differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Symmetric,
    PublicKey,
}

/// An Ed25519 private key as E4 carries it: seed ‖ public key.
#[derive(Clone, PartialEq, Eq)]
pub struct Ed25519KeyPairBytes(pub [u8; 64]);

impl Drop for Ed25519KeyPairBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Ed25519KeyPairBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ed25519KeyPairBytes(<redacted>)")
    }
}

/// A decoded E4 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    RemoveTopic {
        topic_hash: [u8; ID_LEN],
    },
    ResetTopics,
    /// Symmetric mode: the new 32-byte client key.
    SetIdKey {
        key: SecretKey,
    },
    /// Public-key mode: the new Ed25519 key pair.
    SetIdKeyPair {
        key: Ed25519KeyPairBytes,
    },
    SetTopicKey {
        key: SecretKey,
        topic_hash: [u8; ID_LEN],
    },
    RemovePubKey {
        client_id: [u8; ID_LEN],
    },
    ResetPubKeys,
    /// Public key, then client id (the implementations' order).
    SetPubKey {
        public_key: [u8; 32],
        client_id: [u8; ID_LEN],
    },
    SetC2Key {
        public_key: [u8; 32],
    },
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum CommandError {
    #[error("empty command")]
    Empty,
    #[error("unknown command byte {0:#04x}")]
    Unknown(u8),
    #[error("command {command:#04x} has a {len}-byte payload, expected {expected}")]
    WrongLength { command: u8, len: usize, expected: usize },
    #[error("the all-zero key is not a valid E4 key")]
    ZeroKey,
}

fn array<const N: usize>(command: u8, payload: &[u8]) -> Result<[u8; N], CommandError> {
    payload.try_into().map_err(|_| CommandError::WrongLength { command, len: payload.len(), expected: N })
}

impl Command {
    /// Command byte ‖ payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65);
        match self {
            Command::RemoveTopic { topic_hash } => {
                out.push(REMOVE_TOPIC);
                out.extend_from_slice(topic_hash);
            }
            Command::ResetTopics => out.push(RESET_TOPICS),
            Command::SetIdKey { key } => {
                out.push(SET_ID_KEY);
                out.extend_from_slice(key.expose());
            }
            Command::SetIdKeyPair { key } => {
                out.push(SET_ID_KEY);
                out.extend_from_slice(&key.0);
            }
            Command::SetTopicKey { key, topic_hash } => {
                out.push(SET_TOPIC_KEY);
                out.extend_from_slice(key.expose());
                out.extend_from_slice(topic_hash);
            }
            Command::RemovePubKey { client_id } => {
                out.push(REMOVE_PUB_KEY);
                out.extend_from_slice(client_id);
            }
            Command::ResetPubKeys => out.push(RESET_PUB_KEYS),
            Command::SetPubKey { public_key, client_id } => {
                out.push(SET_PUB_KEY);
                out.extend_from_slice(public_key);
                out.extend_from_slice(client_id);
            }
            Command::SetC2Key { public_key } => {
                out.push(SET_C2_KEY);
                out.extend_from_slice(public_key);
            }
        }
        out
    }

    /// Decodes an unprotected command; `mode` decides SetIdKey's payload length.
    pub fn decode(plaintext: &[u8], mode: KeyMode) -> Result<Self, CommandError> {
        let (&command, payload) = plaintext.split_first().ok_or(CommandError::Empty)?;
        let nonzero = |key: SecretKey| if key.is_all_zero() { Err(CommandError::ZeroKey) } else { Ok(key) };
        Ok(match command {
            REMOVE_TOPIC => Command::RemoveTopic { topic_hash: array(command, payload)? },
            RESET_TOPICS => {
                array::<0>(command, payload)?;
                Command::ResetTopics
            }
            SET_ID_KEY => match mode {
                KeyMode::Symmetric => {
                    Command::SetIdKey { key: nonzero(SecretKey::from_bytes(array(command, payload)?))? }
                }
                KeyMode::PublicKey => Command::SetIdKeyPair { key: Ed25519KeyPairBytes(array(command, payload)?) },
            },
            SET_TOPIC_KEY => {
                let body: [u8; 48] = array(command, payload)?;
                let mut key = [0u8; 32];
                key.copy_from_slice(&body[..32]);
                let mut topic_hash = [0u8; ID_LEN];
                topic_hash.copy_from_slice(&body[32..]);
                let command = Command::SetTopicKey { key: nonzero(SecretKey::from_bytes(key))?, topic_hash };
                key.zeroize();
                command
            }
            REMOVE_PUB_KEY => Command::RemovePubKey { client_id: array(command, payload)? },
            RESET_PUB_KEYS => {
                array::<0>(command, payload)?;
                Command::ResetPubKeys
            }
            SET_PUB_KEY => {
                let body: [u8; 48] = array(command, payload)?;
                let mut public_key = [0u8; 32];
                public_key.copy_from_slice(&body[..32]);
                let mut client_id = [0u8; ID_LEN];
                client_id.copy_from_slice(&body[32..]);
                Command::SetPubKey { public_key, client_id }
            }
            SET_C2_KEY => Command::SetC2Key { public_key: array(command, payload)? },
            other => return Err(CommandError::Unknown(other)),
        })
    }
}
