//! The deterministic CBOR subset Keyfill uses (RFC 8949 §4.2.1 core deterministic encoding):
//! unsigned integers, byte and text strings, booleans, definite-length arrays and maps with
//! unsigned-integer keys in ascending order, every head in its shortest form.
//!
//! Encoding is done here (infallible, deterministic by construction); decoding goes through
//! `minicbor`'s bounded slice decoder. Decoders re-encode what they read and compare, which
//! rejects every non-deterministic encoding without a second code path.

use thiserror::Error;

/// A CBOR decoding failure: what went wrong and where.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum CborError {
    #[error("malformed CBOR at byte {position}: {reason}")]
    Malformed { position: usize, reason: String },
    #[error("{field}: expected {expected}")]
    UnexpectedShape { field: &'static str, expected: &'static str },
    #[error("{field} is {len} bytes, more than the limit of {max}")]
    TooLong { field: &'static str, len: usize, max: usize },
    #[error("{field} is {len} bytes, expected {expected}")]
    WrongLength { field: &'static str, len: usize, expected: usize },
    #[error("{len} trailing bytes after the CBOR item")]
    TrailingBytes { len: usize },
    #[error("encoding is not deterministic CBOR")]
    NotDeterministic,
    #[error("unknown map key {key} in {context}")]
    UnknownKey { context: &'static str, key: u64 },
    #[error("map keys of {context} are not in ascending order")]
    KeyOrder { context: &'static str },
}

/// Deterministic CBOR writer into a `Vec<u8>`.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    out: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn head(&mut self, major: u8, value: u64) -> &mut Self {
        let major = major << 5;
        match value {
            0..=23 => self.out.push(major | value as u8),
            24..=0xFF => self.out.extend_from_slice(&[major | 24, value as u8]),
            0x100..=0xFFFF => {
                self.out.push(major | 25);
                self.out.extend_from_slice(&(value as u16).to_be_bytes());
            }
            0x1_0000..=0xFFFF_FFFF => {
                self.out.push(major | 26);
                self.out.extend_from_slice(&(value as u32).to_be_bytes());
            }
            _ => {
                self.out.push(major | 27);
                self.out.extend_from_slice(&value.to_be_bytes());
            }
        }
        self
    }

    pub(crate) fn uint(&mut self, value: u64) -> &mut Self {
        self.head(0, value)
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.head(2, value.len() as u64);
        self.out.extend_from_slice(value);
        self
    }

    pub(crate) fn text(&mut self, value: &str) -> &mut Self {
        self.head(3, value.len() as u64);
        self.out.extend_from_slice(value.as_bytes());
        self
    }

    pub(crate) fn array(&mut self, len: u64) -> &mut Self {
        self.head(4, len)
    }

    pub(crate) fn map(&mut self, len: u64) -> &mut Self {
        self.head(5, len)
    }

    pub(crate) fn bool(&mut self, value: bool) -> &mut Self {
        self.out.push(if value { 0xF5 } else { 0xF4 });
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Bounded reader over one CBOR item in a byte slice.
pub(crate) struct Reader<'b> {
    decoder: minicbor::Decoder<'b>,
    len: usize,
}

impl<'b> Reader<'b> {
    pub(crate) fn new(input: &'b [u8]) -> Self {
        Reader { decoder: minicbor::Decoder::new(input), len: input.len() }
    }

    fn malformed(&self, error: minicbor::decode::Error) -> CborError {
        CborError::Malformed { position: self.decoder.position(), reason: error.to_string() }
    }

    pub(crate) fn array(&mut self, field: &'static str) -> Result<u64, CborError> {
        match self.decoder.array() {
            Ok(Some(len)) => Ok(len),
            Ok(None) => Err(CborError::UnexpectedShape { field, expected: "a definite-length array" }),
            Err(e) => Err(self.malformed(e)),
        }
    }

    pub(crate) fn map(&mut self, field: &'static str) -> Result<u64, CborError> {
        match self.decoder.map() {
            Ok(Some(len)) => Ok(len),
            Ok(None) => Err(CborError::UnexpectedShape { field, expected: "a definite-length map" }),
            Err(e) => Err(self.malformed(e)),
        }
    }

    pub(crate) fn uint(&mut self, _field: &'static str) -> Result<u64, CborError> {
        self.decoder.u64().map_err(|e| self.malformed(e))
    }

    pub(crate) fn bool(&mut self, _field: &'static str) -> Result<bool, CborError> {
        self.decoder.bool().map_err(|e| self.malformed(e))
    }

    pub(crate) fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'b [u8], CborError> {
        let value = self.decoder.bytes().map_err(|e| self.malformed(e))?;
        if value.len() > max {
            return Err(CborError::TooLong { field, len: value.len(), max });
        }
        Ok(value)
    }

    pub(crate) fn bytes_exact<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CborError> {
        let value = self.decoder.bytes().map_err(|e| self.malformed(e))?;
        value.try_into().map_err(|_| CborError::WrongLength { field, len: value.len(), expected: N })
    }

    pub(crate) fn text(&mut self, field: &'static str, max: usize) -> Result<&'b str, CborError> {
        let value = self.decoder.str().map_err(|e| self.malformed(e))?;
        if value.len() > max {
            return Err(CborError::TooLong { field, len: value.len(), max });
        }
        Ok(value)
    }

    /// Fails unless the whole input was consumed.
    pub(crate) fn finish(&self) -> Result<(), CborError> {
        let rest = self.len - self.decoder.position();
        if rest == 0 { Ok(()) } else { Err(CborError::TrailingBytes { len: rest }) }
    }
}

/// Rejects `input` unless it is byte-for-byte the deterministic encoding of what was decoded.
pub(crate) fn require_deterministic(input: &[u8], reencoded: &[u8]) -> Result<(), CborError> {
    if input == reencoded { Ok(()) } else { Err(CborError::NotDeterministic) }
}
