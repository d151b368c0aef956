//! The photo-set format shared by the scanner tests and benchmark: a folder with `cases.tsv`
//! (`image<TAB>expected text<TAB>source`, `\n \t \r \\` escaped, `#` comments) and the images.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Case {
    pub image: PathBuf,
    pub expected: String,
}

/// The shared photo set: `KEYFILL_QR_PHOTOS`, or `../shared/qr-photos` beside the workspace root.
pub fn shared_photos_dir() -> PathBuf {
    match std::env::var_os("KEYFILL_QR_PHOTOS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/qr-photos"),
    }
}

/// Reads `dir/cases.tsv`.
pub fn load_cases(dir: &Path) -> Result<Vec<Case>, String> {
    let list = dir.join("cases.tsv");
    let text = std::fs::read_to_string(&list).map_err(|e| format!("cannot read {}: {e}", list.display()))?;
    let mut cases = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let (Some(image), Some(expected)) = (fields.next(), fields.next()) else {
            return Err(format!("{}:{}: expected image<TAB>text", list.display(), number + 1));
        };
        cases.push(Case { image: dir.join(image), expected: unescape(expected) });
    }
    Ok(cases)
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}
