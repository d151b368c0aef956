//! Device names: a device's E4 client name, checked once where it enters Keyfill (a label, an
//! agent's `--name`, a bundle entry, a demo) and carried as a [`DeviceName`] from then on.
//!
//! C2 addresses a client by its name in a URL path (`POST /e4/client/{name}`), and Keyfill shows
//! names on terminals and labels, so a name is more than "1 to 255 bytes of UTF-8":
//! - no control characters (Unicode Cc: C0 with TAB, CR, LF and ESC, DEL, C1): URL libraries drop
//!   tabs and line breaks from a path without a word, sending the request to another client's
//!   name, and escape sequences rewrite an operator's terminal;
//! - no `/`: C2's gateway splits the path on it, even sent as `%2F`, and answers 404;
//! - not `.` or `..`: URL normalisation removes such path segments.

use crate::ids::DeviceId;
use crate::printable::Printable;
use std::fmt;
use thiserror::Error;

/// Longest device name, in bytes of UTF-8 (C2's own limit).
pub const MAX_NAME_LEN: usize = 255;

/// A device's E4 client name, valid by construction: UTF-8, 1 to 255 bytes, no control
/// character, no `/`, neither `.` nor `..`.
///
/// `Display` escapes what a terminal could misread (see [`crate::printable`]); `as_str` gives
/// the name itself, for the wire, the database and the device id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceName(String);

/// Why a text is not a device name. Each message names the rule that failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    #[error("a device name cannot be empty")]
    Empty,
    #[error("a device name is at most {MAX_NAME_LEN} bytes of UTF-8; this one is {len} bytes")]
    TooLong { len: usize },
    #[error(
        "a device name cannot hold a control character; this one has {} at byte {at}",
        describe_control(*code_point)
    )]
    ControlCharacter { at: usize, code_point: u32 },
    #[error("a device name cannot hold '/' (found at byte {at}): C2 could not address the client")]
    Slash { at: usize },
    #[error("a device name cannot be \".\" or \"..\": a URL path drops such segments")]
    DotSegment,
}

fn describe_control(code_point: u32) -> String {
    let name = match code_point {
        0x00 => " (NUL)",
        0x09 => " (TAB)",
        0x0a => " (LF, a line break)",
        0x0d => " (CR)",
        0x1b => " (ESC)",
        0x7f => " (DEL)",
        _ => "",
    };
    format!("U+{code_point:04X}{name}")
}

impl DeviceName {
    /// Checks `text` against every name rule; the error names the first rule it breaks.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        check(text)?;
        Ok(DeviceName(text.to_owned()))
    }

    /// The name itself, unescaped.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The device id: the E4 client id of this name, SHA3-256(name)[..16].
    pub fn device_id(&self) -> DeviceId {
        DeviceId::from_name(&self.0)
    }
}

fn check(text: &str) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    if text.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: text.len() });
    }
    if let Some((at, c)) = text.char_indices().find(|(_, c)| c.is_control()) {
        return Err(NameError::ControlCharacter { at, code_point: u32::from(c) });
    }
    if let Some(at) = text.find('/') {
        return Err(NameError::Slash { at });
    }
    if text == "." || text == ".." {
        return Err(NameError::DotSegment);
    }
    Ok(())
}

impl TryFrom<&str> for DeviceName {
    type Error = NameError;
    fn try_from(text: &str) -> Result<Self, NameError> {
        DeviceName::parse(text)
    }
}

impl TryFrom<String> for DeviceName {
    type Error = NameError;
    fn try_from(text: String) -> Result<Self, NameError> {
        check(&text)?;
        Ok(DeviceName(text))
    }
}

impl std::str::FromStr for DeviceName {
    type Err = NameError;
    fn from_str(text: &str) -> Result<Self, NameError> {
        DeviceName::parse(text)
    }
}

impl From<DeviceName> for String {
    fn from(name: DeviceName) -> String {
        name.0
    }
}

impl AsRef<str> for DeviceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for DeviceName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for DeviceName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Printable(&self.0).fmt(f)
    }
}

impl fmt::Debug for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceName({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c2_export_names_follow_every_rule() {
        for valid in ["sensor-1", "line 3 bay 7", "température", "ключ 🔑", "100%?#&=+", "a%2Fb", "..x", "\\"] {
            assert_eq!(DeviceName::parse(valid).map(|n| n.as_str().to_owned()), Ok(valid.to_owned()));
        }
        assert!(DeviceName::parse(&"é".repeat(127)).is_ok(), "254 bytes");
        assert_eq!(DeviceName::parse(&"n".repeat(256)), Err(NameError::TooLong { len: 256 }));
        assert_eq!(DeviceName::parse(""), Err(NameError::Empty));
        assert_eq!(DeviceName::parse("."), Err(NameError::DotSegment));
        assert_eq!(DeviceName::parse(".."), Err(NameError::DotSegment));
        assert_eq!(DeviceName::parse("a/b"), Err(NameError::Slash { at: 1 }));
        for (text, code_point) in
            [("a\tb", 9), ("a\rb", 13), ("a\nb", 10), ("a\x1bb", 27), ("a\x7fb", 127), ("a\u{85}b", 0x85)]
        {
            assert_eq!(DeviceName::parse(text), Err(NameError::ControlCharacter { at: 1, code_point }));
        }
        let tab = DeviceName::parse("victim\tdev").expect_err("tab");
        assert_eq!(
            tab.to_string(),
            "a device name cannot hold a control character; this one has U+0009 (TAB) at byte 6"
        );
    }

    #[test]
    fn c2_export_names_display_safely_and_hash_to_their_id() {
        let name = DeviceName::parse("back\\slash \u{202e}evil").expect("valid");
        assert_eq!(name.to_string(), "back\\\\slash \\u{202e}evil");
        assert_eq!(format!("{name:?}"), "DeviceName(\"back\\\\slash \\u{202e}evil\")");
        assert_eq!(name.device_id(), DeviceId::from_name("back\\slash \u{202e}evil"));
        assert_eq!(name, "back\\slash \u{202e}evil");
    }
}
