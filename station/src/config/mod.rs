//! `keyfill.toml`: the settings a station keeps instead of repeating flags. Two files are read,
//! the system's (`/etc/keyfill/keyfill.toml`) and the user's
//! (`$XDG_CONFIG_HOME/keyfill/keyfill.toml`); the user's wins, an environment variable wins over
//! both and a flag over everything. Every key and value is checked when the file is read: a
//! mistake names the file, the line and the key, and nothing runs on a half-understood file.
//!
//! Secrets (passphrases, PINs) are never read from these files.

mod kind;
mod settings;

pub use kind::{Kind, Value};
pub use settings::{SETTINGS, Setting, setting_of};

use keyfill_formats::printable;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// A configuration file larger than this is refused unread: it is not one a person wrote.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The system-wide file; `KEYFILL_SYSTEM_CONFIG` names another (a test, a packaged layout).
pub fn system_path() -> PathBuf {
    std::env::var_os("KEYFILL_SYSTEM_CONFIG").map_or_else(|| PathBuf::from("/etc/keyfill/keyfill.toml"), PathBuf::from)
}

/// The user's file: `$XDG_CONFIG_HOME/keyfill/keyfill.toml` (`~/.config/…` when unset).
pub fn user_path() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.config_dir().join("keyfill").join("keyfill.toml"))
}

/// Which file a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    User,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::System => "system file",
            Scope::User => "user file",
        })
    }
}

/// A value read from a file, and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Value,
    pub scope: Scope,
    pub path: PathBuf,
    pub line: usize,
}

/// One file, read and checked.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub scope: Scope,
    entries: BTreeMap<&'static str, Entry>,
}

/// The files in force, the user's over the system's.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The files that exist, system first.
    pub files: Vec<ConfigFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {size} bytes, more than a configuration file's {MAX_FILE_BYTES}", .path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{}: other users may write it, so it could point this station anywhere: `chmod o-w {}`", .path.display(), .path.display())]
    WorldWritable { path: PathBuf },
    #[error("{}:{line}: not TOML: {message}", .path.display())]
    Syntax { path: PathBuf, line: usize, message: String },
    #[error("{}:{line}: unknown key `{key}`{hint}", .path.display())]
    UnknownKey { path: PathBuf, line: usize, key: String, hint: String },
    #[error("{}:{line}: {key}: {reason}", .path.display())]
    BadValue { path: PathBuf, line: usize, key: &'static str, reason: String },
}

impl Config {
    /// Reads the system file and the user's (`user` is `None` without a home). A missing file is
    /// no error; anything wrong in one that exists is.
    pub fn load(system: &Path, user: Option<&Path>) -> Result<Config, ConfigError> {
        let mut files = Vec::new();
        for (path, scope) in [(Some(system), Scope::System), (user, Scope::User)] {
            if let Some(file) = path.map(|path| ConfigFile::read(path, scope)).transpose()?.flatten() {
                files.push(file);
            }
        }
        Ok(Config { files })
    }

    /// Reads the files at their usual places.
    pub fn load_default() -> Result<Config, ConfigError> {
        Config::load(&system_path(), user_path().as_deref())
    }

    /// The value of `key` from the files, the user's first.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.files.iter().rev().find_map(|file| file.entries.get(key))
    }
}

impl ConfigFile {
    /// Reads and checks the file at `path`; `None` when there is none.
    pub fn read(path: &Path, scope: Scope) -> Result<Option<ConfigFile>, ConfigError> {
        let failed = |source| ConfigError::Read { path: path.to_owned(), source };
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(failed(error)),
        };
        if metadata.len() > MAX_FILE_BYTES {
            return Err(ConfigError::TooLarge { path: path.to_owned(), size: metadata.len() });
        }
        if std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o002 != 0 {
            return Err(ConfigError::WorldWritable { path: path.to_owned() });
        }
        let text = std::fs::read_to_string(path).map_err(failed)?;
        ConfigFile::parse(path, scope, &text).map(Some)
    }

    /// Checks `text` as the file at `path`.
    pub fn parse(path: &Path, scope: Scope, text: &str) -> Result<ConfigFile, ConfigError> {
        let line_at = |offset: usize| text.get(..offset).map_or(1, |before| before.matches('\n').count() + 1);
        let document = DeTable::parse(text).map_err(|error| ConfigError::Syntax {
            path: path.to_owned(),
            line: error.span().map_or(1, |span| line_at(span.start)),
            // The parser's message may quote the file: escaped.
            message: printable(error.message().trim_end()).into_owned(),
        })?;
        let mut entries = BTreeMap::new();
        let unknown = |key: String, offset: usize| {
            let hint = match settings::tables().find(|table| *table == key) {
                Some(table) => format!(" (`{table}` is a table: write `[{table}]` above its keys)"),
                None => nearest(&key).map(|known| format!(" (did you mean `{known}`?)")).unwrap_or_default(),
            };
            ConfigError::UnknownKey { path: path.to_owned(), line: line_at(offset), key, hint }
        };
        let mut visit = |key: String, value: &toml::Spanned<DeValue<'_>>, key_offset: usize| {
            let Some(setting) = setting_of(&key) else {
                return Err(unknown(key, key_offset));
            };
            let line = line_at(value.span().start);
            let value = setting.kind.check(value.get_ref()).map_err(|reason| ConfigError::BadValue {
                path: path.to_owned(),
                line,
                key: setting.key,
                reason: printable(&reason).into_owned(),
            })?;
            entries.insert(setting.key, Entry { value, scope, path: path.to_owned(), line });
            Ok(())
        };
        for (name, value) in document.get_ref() {
            let name_text = printable(name.get_ref()).into_owned();
            match value.get_ref() {
                DeValue::Table(table) if settings::tables().any(|known| known == name.get_ref().as_ref()) => {
                    for (inner, inner_value) in table {
                        let key = format!("{name_text}.{}", printable(inner.get_ref()));
                        visit(key, inner_value, inner.span().start)?;
                    }
                }
                _ => visit(name_text, value, name.span().start)?,
            }
        }
        Ok(ConfigFile { path: path.to_owned(), scope, entries })
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}

/// The known key nearest to a misspelt one, when one is close.
fn nearest(key: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|setting| setting.key)
        .chain(settings::tables())
        .map(|known| (edit_distance(key, known), known))
        .filter(|(distance, known)| *distance <= 2.max(known.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
        .or_else(|| {
            // `url` for `c2.url`, `mqtt.window` for `rotation.window`: the key in the wrong table.
            let leaf = key.rsplit('.').next().unwrap_or(key);
            SETTINGS.iter().map(|s| s.key).find(|known| known.rsplit_once('.').is_some_and(|(_, known)| known == leaf))
        })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
