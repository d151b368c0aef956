//! The station's event log: what was provisioned, failed or reconciled, when, by whom.

use super::{Backend, DbError, audit, now_millis};
use crate::audit::AuditKey;
use serde::Serialize;
use sha2::Digest;
use sqlx::{Any, AnyPool, FromRow, Transaction};

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub device_id: Option<String>,
    pub station_id: String,
    pub operator: String,
    pub kind: String,
    pub detail: String,
}

/// Who did it and where, and the key that signs it into the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub station_id: String,
    pub operator: String,
    pub audit: AuditKey,
}

impl Actor {
    pub fn recorder(&self) -> audit::Recorder<'_> {
        audit::Recorder { station_id: &self.station_id, operator: &self.operator, key: &self.audit }
    }
}

/// Records an event, and the same as an entry of the audit log, in `tx`.
pub async fn record(
    tx: &mut Transaction<'_, Any>,
    actor: &Actor,
    device_id: Option<&str>,
    kind: &str,
    detail: &str,
) -> Result<(), DbError> {
    let at = now_millis();
    audit::append(tx, &actor.recorder(), at, device_id, kind, detail).await?;
    sqlx::query(
        "INSERT INTO events (at, device_id, station_id, operator, kind, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(at)
    .bind(device_id.map(str::to_owned))
    .bind(&actor.station_id)
    .bind(&actor.operator)
    .bind(kind)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One event of `kind` for each `(device id, detail)`, in one statement; one entry in the audit
/// log for them all, which names their number and the SHA-256 of their lines
/// (`device id ‖ TAB ‖ detail ‖ LF`, in the order given), so that the events can be matched to it.
pub async fn record_for_devices(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    actor: &Actor,
    kind: &str,
    rows: &[(&str, &str)],
) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    let at = now_millis();
    let mut digest = sha2::Sha256::new();
    for (device_id, detail) in rows {
        digest.update(device_id.as_bytes());
        digest.update(b"\t");
        digest.update(detail.as_bytes());
        digest.update(b"\n");
    }
    let summary = format!("{} devices, lines sha256 {}", rows.len(), hex::encode(digest.finalize()));
    audit::append(tx, &actor.recorder(), at, None, kind, &summary).await?;
    match backend {
        // SQLite looks a numbered parameter up by name in a list, once per bind: thousands of
        // `$N` in one statement cost their square. Anonymous ones are bound by position.
        Backend::Sqlite => {
            let sql = format!(
                "INSERT INTO events (at, device_id, station_id, operator, kind, detail) VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?)"; rows.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (device_id, detail) in rows {
                query = query
                    .bind(at)
                    .bind(Some((*device_id).to_owned()))
                    .bind(&actor.station_id)
                    .bind(&actor.operator)
                    .bind(kind)
                    .bind(*detail);
            }
            query.execute(&mut **tx).await?;
        }
        // PostgreSQL reuses a numbered parameter: what every row shares is bound once, so a
        // million-row bundle binds a third as many parameters.
        Backend::Postgres => {
            let placeholders: Vec<String> =
                (0..rows.len()).map(|row| format!("($1, ${}, $2, $3, $4, ${})", 5 + 2 * row, 6 + 2 * row)).collect();
            let sql = format!(
                "INSERT INTO events (at, device_id, station_id, operator, kind, detail) VALUES {}",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(at).bind(&actor.station_id).bind(&actor.operator).bind(kind);
            for (device_id, detail) in rows {
                query = query.bind(Some((*device_id).to_owned())).bind(*detail);
            }
            query.execute(&mut **tx).await?;
        }
    }
    Ok(())
}

pub async fn for_device(pool: &AnyPool, device_id: &str) -> Result<Vec<Event>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, at, device_id, station_id, operator, kind, detail FROM events WHERE device_id = $1 ORDER BY id",
    )
    .bind(device_id)
    .fetch_all(pool)
    .await?)
}

/// What the History screen asks of the event log; every field narrows, `Default` is everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only these kinds (`provisioned`, `failed`, `rotated`, …); empty: any kind.
    pub kinds: Vec<String>,
    pub device_id: Option<String>,
    pub operator: Option<String>,
    /// Case-insensitive text in the detail, the kind, the operator, the device id or its name.
    pub text: Option<String>,
    /// Only events older than this id: the next page after a page that ended there.
    pub before_id: Option<i64>,
}

/// An event with the name of its device (when it concerns one that is in the inventory).
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct LoggedEvent {
    pub id: i64,
    pub at: i64,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub station_id: String,
    pub operator: String,
    pub kind: String,
    pub detail: String,
}

/// `text` as a LIKE pattern matching it anywhere, lowercase, with LIKE's wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The newest events matching `filter`, newest first, at most `limit`.
pub async fn recent(pool: &AnyPool, limit: u32, filter: &EventFilter) -> Result<Vec<LoggedEvent>, DbError> {
    let mut conditions: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let placeholder = |value: String, binds: &mut Vec<String>| {
        binds.push(value);
        format!("${}", binds.len())
    };
    if !filter.kinds.is_empty() {
        let list: Vec<String> = filter.kinds.iter().map(|kind| placeholder(kind.clone(), &mut binds)).collect();
        conditions.push(format!("e.kind IN ({})", list.join(", ")));
    }
    if let Some(device_id) = &filter.device_id {
        conditions.push(format!("e.device_id = {}", placeholder(device_id.to_ascii_lowercase(), &mut binds)));
    }
    if let Some(operator) = &filter.operator {
        conditions.push(format!("e.operator = {}", placeholder(operator.clone(), &mut binds)));
    }
    if let Some(text) = filter.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let p = placeholder(contains_pattern(text), &mut binds);
        conditions.push(format!(
            "(LOWER(e.detail) LIKE {p} ESCAPE '\\' OR LOWER(e.kind) LIKE {p} ESCAPE '\\' \
             OR LOWER(e.operator) LIKE {p} ESCAPE '\\' OR LOWER(COALESCE(e.device_id, '')) LIKE {p} ESCAPE '\\' \
             OR LOWER(COALESCE(d.name, '')) LIKE {p} ESCAPE '\\')"
        ));
    }
    // Ids and the limit are numbers: formatted, not bound, so every bind stays a string.
    if let Some(before) = filter.before_id {
        conditions.push(format!("e.id < {before}"));
    }
    let condition = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let sql = format!(
        "SELECT e.id, e.at, e.device_id, d.name AS device_name, e.station_id, e.operator, e.kind, e.detail \
         FROM events e LEFT JOIN devices d ON d.id = e.device_id {condition} ORDER BY e.id DESC LIMIT {limit}"
    );
    let mut query = sqlx::query_as::<_, LoggedEvent>(&sql);
    for value in binds {
        query = query.bind(value);
    }
    Ok(query.fetch_all(pool).await?)
}

#[cfg(test)]
mod recent_tests {
    use super::*;
    use crate::db::Inventory;

    async fn inventory_with_events() -> (tempfile::TempDir, Inventory) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("events.db").display());
        let inventory = Inventory::open(&url).await.unwrap();
        let key = AuditKey::throwaway([1; 16]).unwrap();
        let alice = Actor { station_id: "s1".into(), operator: "alice".into(), audit: key.clone() };
        let bob = Actor { station_id: "s1".into(), operator: "bob".into(), audit: key };
        let mut tx = inventory.pool().begin().await.unwrap();
        for (actor, device, kind, detail) in [
            (&alice, Some("aa"), "key_generated", "key 01 over serial /dev/ttyUSB0"),
            (&alice, Some("aa"), "provisioned", "key 01 confirmed"),
            (&bob, Some("bb"), "failed", "link closed: 100%_done"),
            (&bob, None, "c2_export", "2 created, 0 failed"),
        ] {
            record(&mut tx, actor, device, kind, detail).await.unwrap();
        }
        tx.commit().await.unwrap();
        (dir, inventory)
    }

    #[tokio::test]
    async fn event_log_recent_is_newest_first_and_filters() {
        let (_dir, inventory) = inventory_with_events().await;
        let pool = inventory.pool();
        let all = recent(pool, 10, &EventFilter::default()).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["c2_export", "failed", "provisioned", "key_generated"]
        );
        let limited = recent(pool, 2, &EventFilter::default()).await.unwrap();
        assert_eq!(limited.len(), 2);
        let next_page = EventFilter { before_id: Some(limited[1].id), ..EventFilter::default() };
        assert_eq!(recent(pool, 10, &next_page).await.unwrap().len(), 2);

        let kinds = EventFilter { kinds: vec!["provisioned".into(), "failed".into()], ..EventFilter::default() };
        assert_eq!(recent(pool, 10, &kinds).await.unwrap().len(), 2);
        let by_bob = EventFilter { operator: Some("bob".into()), ..EventFilter::default() };
        assert_eq!(recent(pool, 10, &by_bob).await.unwrap().len(), 2);
        let device = EventFilter { device_id: Some("AA".into()), ..EventFilter::default() };
        assert_eq!(recent(pool, 10, &device).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn event_log_text_search_is_case_insensitive_and_literal() {
        let (_dir, inventory) = inventory_with_events().await;
        let pool = inventory.pool();
        let search = |text: &str| EventFilter { text: Some(text.into()), ..EventFilter::default() };
        assert_eq!(recent(pool, 10, &search("TTYUSB0")).await.unwrap().len(), 1);
        // `%` and `_` are the operator's text, not wildcards.
        assert_eq!(recent(pool, 10, &search("100%_")).await.unwrap().len(), 1);
        assert_eq!(recent(pool, 10, &search("1_0")).await.unwrap().len(), 0);
        assert_eq!(recent(pool, 10, &search("ALICE")).await.unwrap().len(), 2);
    }
}
