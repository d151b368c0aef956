//! Reading a work-order file from the MES: CSV (a header row naming the columns) or JSON (an array
//! of objects with the same names). Every field is bounded and checked once, here; an error names
//! the line (CSV) or entry (JSON) and the field.

use keyfill_formats::DeviceName;
use keyfill_formats::qr::{MAX_MODEL_LEN, MAX_SERIAL_LEN};
use serde::Deserialize;
use std::collections::HashMap;
use thiserror::Error;

/// Largest order file read: a million devices with long fields fit.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Most devices one file may list.
pub const MAX_ROWS: usize = 1_000_000;
const MAX_ORDER_ID_LEN: usize = 64;
const MAX_LINK_LEN: usize = 256;
const MAX_BATCH_LEN: usize = 64;

/// An order id: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, not starting with a dot. Safe in a
/// file name, a URL and a terminal as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(String);

impl OrderId {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > MAX_ORDER_ID_LEN {
            return Err(format!("an order id is 1 to {MAX_ORDER_ID_LEN} characters"));
        }
        if text.starts_with('.') || !text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err("an order id is made of letters, digits, '.', '_' and '-', and does not start with '.'".into());
        }
        Ok(OrderId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One device of an order, as the file gives it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// Where it was: a CSV line number, or a JSON entry number (1-based).
    pub at: usize,
    pub order_id: OrderId,
    pub device_name: DeviceName,
    pub model: Option<String>,
    pub serial_number: String,
    pub link: Option<String>,
    pub batch: Option<String>,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OrderFileError {
    #[error("the file is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("the file lists more than {max} devices; split it")]
    TooManyRows { max: usize },
    #[error("the file lists no device")]
    Empty,
    #[error("the file is not UTF-8 text")]
    NotText,
    #[error(
        "the header has no column {0:?} (columns: order_id, device_name, model, serial_number, and optionally link and batch)"
    )]
    MissingColumn(&'static str),
    #[error("the header names column {0:?} twice")]
    DuplicateColumn(String),
    #[error("line {line}: {reason}")]
    Csv { line: usize, reason: String },
    #[error("{at}: {reason}")]
    Json { at: String, reason: String },
    #[error("{place} {at}, {field}: {reason}")]
    Field { place: &'static str, at: usize, field: &'static str, reason: String },
    #[error("{place} {at}: device {name:?} is listed already at {place} {first}")]
    DuplicateDevice { place: &'static str, at: usize, first: usize, name: String },
}

/// Which format a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// `.json` files are JSON; anything else is CSV.
    pub fn of_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Csv,
        }
    }

    fn place(self) -> &'static str {
        match self {
            Format::Csv => "line",
            Format::Json => "entry",
        }
    }
}

/// The fields of one entry, before checking.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    order_id: String,
    device_name: String,
    #[serde(default)]
    model: Option<String>,
    serial_number: String,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    batch: Option<String>,
}

/// Reads an order file's bytes.
pub fn parse(bytes: &[u8], format: Format) -> Result<Vec<OrderLine>, OrderFileError> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(OrderFileError::TooLarge { max: MAX_FILE_BYTES });
    }
    let raw = match format {
        Format::Csv => read_csv(bytes)?,
        Format::Json => read_json(bytes)?,
    };
    if raw.is_empty() {
        return Err(OrderFileError::Empty);
    }
    let place = format.place();
    let mut lines = Vec::with_capacity(raw.len());
    let mut seen: HashMap<keyfill_formats::DeviceId, usize> = HashMap::with_capacity(raw.len());
    for (at, raw) in raw {
        let line = check(at, raw, place)?;
        if let Some(&first) = seen.get(&line.device_name.device_id()) {
            return Err(OrderFileError::DuplicateDevice {
                place,
                at,
                first,
                name: keyfill_formats::printable(line.device_name.as_str()).into_owned(),
            });
        }
        seen.insert(line.device_name.device_id(), at);
        lines.push(line);
    }
    Ok(lines)
}

const COLUMNS: [&str; 6] = ["order_id", "device_name", "model", "serial_number", "link", "batch"];
const REQUIRED: [&str; 4] = ["order_id", "device_name", "model", "serial_number"];

fn read_csv(bytes: &[u8]) -> Result<Vec<(usize, RawLine)>, OrderFileError> {
    let text = std::str::from_utf8(bytes).map_err(|_| OrderFileError::NotText)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| csv_error(&e, 1))?.clone();
    let mut index: HashMap<&'static str, usize> = HashMap::new();
    for (position, name) in headers.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        let Some(known) = COLUMNS.iter().find(|c| **c == name) else {
            return Err(OrderFileError::Csv {
                line: 1,
                reason: format!(
                    "unknown column {:?} (columns: {})",
                    keyfill_formats::printable(&name),
                    COLUMNS.join(", ")
                ),
            });
        };
        if index.insert(known, position).is_some() {
            return Err(OrderFileError::DuplicateColumn(name));
        }
    }
    for required in REQUIRED {
        if !index.contains_key(required) {
            return Err(OrderFileError::MissingColumn(required));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(&e, 0))?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(OrderFileError::TooManyRows { max: MAX_ROWS });
        }
        let field = |name: &str| index.get(name).and_then(|&i| record.get(i)).map(str::to_owned);
        let optional = |name: &str| field(name).filter(|v| !v.is_empty());
        rows.push((
            line,
            RawLine {
                order_id: field("order_id").unwrap_or_default(),
                device_name: field("device_name").unwrap_or_default(),
                model: optional("model"),
                serial_number: field("serial_number").unwrap_or_default(),
                link: optional("link"),
                batch: optional("batch"),
            },
        ));
    }
    Ok(rows)
}

fn csv_error(error: &csv::Error, fallback_line: usize) -> OrderFileError {
    let line = error.position().map(|p| p.line() as usize).unwrap_or(fallback_line);
    let reason = match error.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".into(),
        _ => keyfill_formats::printable(&error.to_string()).into_owned(),
    };
    OrderFileError::Csv { line, reason }
}

fn read_json(bytes: &[u8]) -> Result<Vec<(usize, RawLine)>, OrderFileError> {
    let entries: Vec<serde_json::Value> = serde_json::from_slice(bytes).map_err(|e| OrderFileError::Json {
        at: format!("line {} column {}", e.line(), e.column()),
        reason: "not a JSON array of order entries".into(),
    })?;
    if entries.len() > MAX_ROWS {
        return Err(OrderFileError::TooManyRows { max: MAX_ROWS });
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let raw: RawLine = serde_json::from_value(entry).map_err(|e| OrderFileError::Json {
                at: format!("entry {}", index + 1),
                reason: keyfill_formats::printable(&e.to_string()).into_owned(),
            })?;
            Ok((index + 1, raw))
        })
        .collect()
}

fn plain_text(value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("{} bytes, the limit is {max}", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    Ok(())
}

fn check(at: usize, raw: RawLine, place: &'static str) -> Result<OrderLine, OrderFileError> {
    let bad = |field: &'static str, reason: String| OrderFileError::Field { place, at, field, reason };
    let order_id = OrderId::parse(raw.order_id.trim()).map_err(|reason| bad("order_id", reason))?;
    let device_name = DeviceName::parse(&raw.device_name).map_err(|e| bad("device_name", e.to_string()))?;
    if raw.serial_number.is_empty() {
        return Err(bad("serial_number", "empty".into()));
    }
    plain_text(&raw.serial_number, MAX_SERIAL_LEN).map_err(|r| bad("serial_number", r))?;
    let model = raw.model.filter(|m| !m.is_empty());
    if let Some(model) = &model {
        plain_text(model, MAX_MODEL_LEN).map_err(|r| bad("model", r))?;
    }
    let link = raw.link.filter(|l| !l.is_empty());
    if let Some(link) = &link {
        plain_text(link, MAX_LINK_LEN).map_err(|r| bad("link", r))?;
    }
    let batch = raw.batch.filter(|b| !b.is_empty());
    if let Some(batch) = &batch {
        plain_text(batch, MAX_BATCH_LEN).map_err(|r| bad("batch", r))?;
    }
    Ok(OrderLine { at, order_id, device_name, model, serial_number: raw.serial_number, link, batch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_csv_with_header_in_any_order_and_optional_columns() {
        let text = "serial_number,device_name,order_id,model,batch\nSN-1,pump 1,WO-7,P100,B1\nSN-2,pump 2,WO-7,,\n";
        let lines = parse(text.as_bytes(), Format::Csv).expect("parses");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].device_name.as_str(), "pump 1");
        assert_eq!(lines[0].batch.as_deref(), Some("B1"));
        assert_eq!(lines[1].model, None);
        assert_eq!(lines[1].at, 3, "line numbers count the header");
    }

    #[test]
    fn orders_hostile_files_are_refused_with_the_line_and_field() {
        let cases: [(&str, &str); 7] = [
            ("order_id,device_name,model,serial_number\nWO/1,a,,SN\n", "line 2, order_id"),
            ("order_id,device_name,model,serial_number\nWO-1,a/b,,SN\n", "line 2, device_name"),
            ("order_id,device_name,model,serial_number\nWO-1,a,,SN\u{1b}[2J\n", "line 2, serial_number"),
            ("order_id,device_name,model,serial_number\nWO-1,a,,SN\nWO-1,a,,SN2\n", "listed already at line 2"),
            ("order_id,device_name,serial_number\nWO-1,a,SN\n", "no column \"model\""),
            ("order_id,device_name,model,serial_number,colour\nWO-1,a,,SN,red\n", "unknown column"),
            ("order_id,device_name,model,serial_number\nWO-1,a,,SN,extra\n", "5 fields where the header has 4"),
        ];
        for (text, needed) in cases {
            let error = parse(text.as_bytes(), Format::Csv).expect_err(text).to_string();
            assert!(error.contains(needed), "{needed:?} missing from {error:?}");
        }
        assert!(matches!(
            parse(b"order_id,device_name,model,serial_number\n", Format::Csv),
            Err(OrderFileError::Empty)
        ));
        assert!(matches!(parse(&[0xff, 0xfe], Format::Csv), Err(OrderFileError::NotText)));
        let json = br#"[{"order_id":"WO-1","device_name":"a","serial_number":"SN","colour":"red"}]"#;
        assert!(parse(json, Format::Json).expect_err("unknown field").to_string().contains("entry 1"));
        let json = br#"[{"order_id":"WO-1","device_name":"a","serial_number":"SN","model":"M"}]"#;
        assert_eq!(parse(json, Format::Json).expect("parses")[0].model.as_deref(), Some("M"));
    }
}
