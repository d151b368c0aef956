//! Outside text made safe to show on a terminal or in a log line: device names, serial numbers,
//! models, reasons from a device or from C2, decoded QR texts.
//!
//! Control characters are escaped so that text holding escape sequences cannot rewrite the
//! operator's screen and a multi-line text stays on one line; the bidirectional formatting
//! characters too, so that text cannot reorder how the rest of its line reads. A backslash is
//! doubled so the escaping stays unambiguous. JSON output needs none of this: the JSON encoder
//! escapes for JSON.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// `text` with every character a terminal could misread escaped: `\n`, `\r`, `\t`, `\\`, and
/// `\u{…}` for other control and bidirectional formatting characters. Borrowed when nothing
/// needed escaping.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(needs_escape) { Cow::Owned(Printable(text).to_string()) } else { Cow::Borrowed(text) }
}

/// [`printable`] as a `Display` adapter, for `format!` without an intermediate string.
#[derive(Debug, Clone, Copy)]
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\\' => f.write_str("\\\\")?,
                c if needs_escape(c) => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || is_bidi_format(c)
}

/// Unicode's bidirectional formatting characters (marks, embeddings, overrides, isolates).
fn is_bidi_format(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c2_export_printable_escapes_what_a_terminal_would_obey() {
        assert_eq!(printable("a\nb\t\x1b[2J\\"), "a\\nb\\t\\u{1b}[2J\\\\");
        assert_eq!(printable("del\x7f c1\u{9b} bidi\u{202e}x"), "del\\u{7f} c1\\u{9b} bidi\\u{202e}x");
        assert!(matches!(printable("plain 🔑 é"), Cow::Borrowed("plain 🔑 é")));
        assert_eq!(Printable("x\ry").to_string(), "x\\ry");
    }
}
