//! Base45 (RFC 9285): binary data as text in the QR alphanumeric alphabet.

use thiserror::Error;

const ALPHABET: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum Base45Error {
    #[error("character {character:?} at position {position} is not in the base45 alphabet")]
    InvalidCharacter { position: usize, character: char },
    #[error("base45 text length {len} leaves a dangling character")]
    DanglingCharacter { len: usize },
    #[error("base45 group at position {position} encodes a value out of range")]
    ValueOutOfRange { position: usize },
}

pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(2) * 3);
    for chunk in input.chunks(2) {
        let (mut value, digits) = match *chunk {
            [a, b] => (u32::from(a) * 256 + u32::from(b), 3),
            [a] => (u32::from(a), 2),
            _ => unreachable!("chunks(2) yields one or two bytes"),
        };
        for _ in 0..digits {
            out.push(ALPHABET[(value % 45) as usize] as char);
            value /= 45;
        }
    }
    out
}

fn digit(position: usize, character: u8) -> Result<u32, Base45Error> {
    ALPHABET
        .iter()
        .position(|c| *c == character)
        .map(|v| v as u32)
        .ok_or(Base45Error::InvalidCharacter { position, character: character as char })
}

pub fn decode(text: &str) -> Result<Vec<u8>, Base45Error> {
    let bytes = text.as_bytes();
    if bytes.len() % 3 == 1 {
        return Err(Base45Error::DanglingCharacter { len: bytes.len() });
    }
    let mut out = Vec::with_capacity(bytes.len() / 3 * 2 + 1);
    for (group_index, group) in bytes.chunks(3).enumerate() {
        let position = group_index * 3;
        let mut value = 0u32;
        let mut weight = 1u32;
        for (i, c) in group.iter().enumerate() {
            value += digit(position + i, *c)? * weight;
            weight *= 45;
        }
        if group.len() == 3 {
            if value > 0xFFFF {
                return Err(Base45Error::ValueOutOfRange { position });
            }
            out.extend_from_slice(&(value as u16).to_be_bytes());
        } else {
            if value > 0xFF {
                return Err(Base45Error::ValueOutOfRange { position });
            }
            out.push(value as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9285_examples() {
        assert_eq!(encode(b"AB"), "BB8");
        assert_eq!(encode(b"Hello!!"), "%69 VD92EX0");
        assert_eq!(encode(b"base-45"), "UJCLQE7W581");
        assert_eq!(decode("QED8WEX0").as_deref(), Ok(&b"ietf!"[..]));
        assert_eq!(encode(b"ietf!"), "QED8WEX0");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(decode("GGW"), Err(Base45Error::ValueOutOfRange { .. })));
        assert!(matches!(decode("ab"), Err(Base45Error::InvalidCharacter { position: 0, .. })));
        assert!(matches!(decode("ABCD"), Err(Base45Error::DanglingCharacter { len: 4 })));
    }
}
