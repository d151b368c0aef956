//! The kinds of value a setting takes, and the check each value passes before anything uses it.

use std::fmt;
use toml::de::DeValue;

/// Longest text a setting takes (a path or URL included).
const MAX_TEXT: usize = 4_096;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A file or folder; `~/` is not expanded (the shell did not see it).
    Path,
    /// Printable text on one line.
    Text,
    DatabaseUrl,
    /// A URL with one of these schemes.
    Url(&'static [&'static str]),
    Integer {
        min: i64,
        max: i64,
    },
    Bool,
    Choice(&'static [&'static str]),
    /// `WIDTHxHEIGHT` in millimetres.
    LabelSize,
    /// `ADDRESS:PORT`.
    SocketAddr,
}

/// A checked value, in the text form a command-line option takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value(String);

impl Value {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Kind {
    /// What a value of this kind looks like, for error messages.
    pub fn describe(&self) -> String {
        match self {
            Kind::Path => "a path (a string)".into(),
            Kind::Text => "a string".into(),
            Kind::DatabaseUrl => "a database URL (\"sqlite://FILE\" or \"postgres://…\")".into(),
            Kind::Url(schemes) => format!("a URL ({}://…)", schemes.join("://… or ")),
            Kind::Integer { min, max } => format!("an integer from {min} to {max}"),
            Kind::Bool => "true or false".into(),
            Kind::Choice(choices) => format!("one of {}", quoted(choices)),
            Kind::LabelSize => "a label size in millimetres such as \"50x30\"".into(),
            Kind::SocketAddr => "an address and port such as \"127.0.0.1:8480\"".into(),
        }
    }

    /// Checks a TOML value; the error says what was expected.
    pub fn check(&self, value: &DeValue<'_>) -> Result<Value, String> {
        let expected = || format!("expected {}", self.describe());
        match (self, value) {
            (Kind::Integer { min, max }, DeValue::Integer(number)) => {
                let number = i64::from_str_radix(number.as_str(), number.radix())
                    .map_err(|_| format!("{} is out of range: {}", number.as_str(), expected()))?;
                if !(*min..=*max).contains(&number) {
                    return Err(format!("{number} is out of range: {}", expected()));
                }
                Ok(Value(number.to_string()))
            }
            (Kind::Bool, DeValue::Boolean(flag)) => Ok(Value(flag.to_string())),
            (Kind::Integer { .. } | Kind::Bool, _) | (_, DeValue::Integer(_) | DeValue::Boolean(_)) => {
                Err(format!("{}, found {}", expected(), type_name(value)))
            }
            (_, DeValue::String(text)) => self.check_text(text).map(|()| Value(text.to_string())),
            _ => Err(format!("{}, found {}", expected(), type_name(value))),
        }
    }

    fn check_text(&self, text: &str) -> Result<(), String> {
        if text.is_empty() {
            return Err(format!("empty: expected {} (remove the line to use the default)", self.describe()));
        }
        if text.len() > MAX_TEXT {
            return Err(format!("{} bytes long, more than {MAX_TEXT}", text.len()));
        }
        if let Some(bad) = text.chars().find(|c| c.is_control()) {
            return Err(format!("holds the control character U+{:04X}", u32::from(bad)));
        }
        match self {
            Kind::Path | Kind::Text => Ok(()),
            Kind::DatabaseUrl => scheme_among(text, &["sqlite", "postgres", "postgresql"]),
            Kind::Url(schemes) => {
                if text.chars().any(char::is_whitespace) {
                    return Err("a URL holds no spaces".into());
                }
                scheme_among(text, schemes)
            }
            Kind::Choice(choices) => {
                if choices.contains(&text) {
                    Ok(())
                } else {
                    Err(format!("expected one of {}", quoted(choices)))
                }
            }
            Kind::LabelSize => text
                .parse::<crate::label::LabelSpec>()
                .and_then(|spec| spec.validate())
                .map_err(|error| format!("{error}: expected {}", self.describe())),
            Kind::SocketAddr => {
                text.parse::<std::net::SocketAddr>().map(|_| ()).map_err(|_| format!("expected {}", self.describe()))
            }
            Kind::Integer { .. } | Kind::Bool => Err(format!("expected {}", self.describe())),
        }
    }
}

fn scheme_among(text: &str, schemes: &[&str]) -> Result<(), String> {
    match text.split_once("://") {
        Some((scheme, rest)) if schemes.contains(&scheme) && !rest.is_empty() => Ok(()),
        _ => Err(format!(
            "expected a URL starting with {}",
            schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ")
        )),
    }
}

fn quoted(choices: &[&str]) -> String {
    choices.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a number with a fraction",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}
