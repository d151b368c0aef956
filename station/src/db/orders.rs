//! Work orders and their items (migration 0008).

use super::{DbError, now_millis};
use sqlx::{Any, AnyPool, FromRow, Transaction};

/// Items bound per INSERT statement: 8 parameters each, well under both engines' limits.
const ITEMS_PER_STATEMENT: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct OrderRow {
    pub id: String,
    pub state: String,
    pub source: String,
    pub digest: String,
    pub imported_at: i64,
    pub imported_by: String,
    pub operator: String,
    pub closed_at: Option<i64>,
    pub closed_by: Option<String>,
    pub close_reason: Option<String>,
}

/// An order with where its devices stand.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct OrderCounts {
    pub id: String,
    pub state: String,
    pub imported_at: i64,
    pub closed_at: Option<i64>,
    pub expected: i64,
    pub provisioned: i64,
    pub failed: i64,
    pub pending: i64,
    pub not_started: i64,
}

impl OrderCounts {
    /// Devices neither provisioned nor failed: pending records and devices not yet keyed.
    pub fn outstanding(&self) -> i64 {
        self.pending + self.not_started
    }
}

/// One device an order expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub device_id: String,
    pub device_name: String,
    pub model: Option<String>,
    pub serial_number: String,
    pub link: Option<String>,
    pub batch: Option<String>,
}

/// An item with its device's state.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ItemState {
    pub order_id: String,
    pub position: i64,
    pub device_id: String,
    pub device_name: String,
    pub model: Option<String>,
    pub serial_number: String,
    pub link: Option<String>,
    pub batch: Option<String>,
    /// `None`: no record yet (not started).
    pub state: Option<String>,
    pub key_id: Option<String>,
    pub provisioned_at: Option<i64>,
    /// The station that recorded the device's current key.
    pub station_id: Option<String>,
    pub failure: Option<String>,
}

/// A device recorded under an order that does not expect it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Unexpected {
    pub device_id: String,
    pub name: String,
    pub state: String,
    pub key_id: Option<String>,
    pub provisioned_at: Option<i64>,
}

pub async fn insert_order(tx: &mut Transaction<'_, Any>, order: &OrderRow, items: &[NewItem]) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO work_orders (id, state, source, digest, imported_at, imported_by, operator, closed_at, closed_by, \
         close_reason) VALUES ($1, 'open', $2, $3, $4, $5, $6, NULL, NULL, NULL)",
    )
    .bind(&order.id)
    .bind(&order.source)
    .bind(&order.digest)
    .bind(order.imported_at)
    .bind(&order.imported_by)
    .bind(&order.operator)
    .execute(&mut **tx)
    .await?;
    for (chunk_index, chunk) in items.chunks(ITEMS_PER_STATEMENT).enumerate() {
        let mut sql = String::from(
            "INSERT INTO work_order_items (order_id, position, device_id, device_name, model, serial_number, link, batch) VALUES ",
        );
        for row in 0..chunk.len() {
            let base = row * 7 + 1;
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "($1, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 5,
                base + 6,
                base + 7
            ));
        }
        let mut query = sqlx::query(&sql).bind(&order.id);
        for (offset, item) in chunk.iter().enumerate() {
            query = query
                .bind((chunk_index * ITEMS_PER_STATEMENT + offset) as i64)
                .bind(&item.device_id)
                .bind(&item.device_name)
                .bind(item.model.clone())
                .bind(&item.serial_number)
                .bind(item.link.clone())
                .bind(item.batch.clone());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<OrderRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, state, source, digest, imported_at, imported_by, operator, closed_at, closed_by, close_reason \
         FROM work_orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

const COUNTS: &str = "SELECT o.id, o.state, o.imported_at, o.closed_at, \
     CAST(COUNT(i.device_id) AS BIGINT) AS expected, \
     CAST(COALESCE(SUM(CASE WHEN d.state = 'provisioned' THEN 1 ELSE 0 END), 0) AS BIGINT) AS provisioned, \
     CAST(COALESCE(SUM(CASE WHEN d.state = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed, \
     CAST(COALESCE(SUM(CASE WHEN d.state = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT) AS pending, \
     CAST(COALESCE(SUM(CASE WHEN i.device_id IS NOT NULL AND d.id IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS not_started \
     FROM work_orders o LEFT JOIN work_order_items i ON i.order_id = o.id LEFT JOIN devices d ON d.id = i.device_id";

/// Every order (or only open ones) with its counts, oldest first.
pub async fn list(pool: &AnyPool, open_only: bool) -> Result<Vec<OrderCounts>, DbError> {
    let filter = if open_only { "WHERE o.state = 'open'" } else { "" };
    Ok(sqlx::query_as(&format!(
        "{COUNTS} {filter} GROUP BY o.id, o.state, o.imported_at, o.closed_at ORDER BY o.imported_at, o.id"
    ))
    .fetch_all(pool)
    .await?)
}

/// One order's counts.
pub async fn counts(pool: &AnyPool, id: &str) -> Result<Option<OrderCounts>, DbError> {
    Ok(sqlx::query_as(&format!("{COUNTS} WHERE o.id = $1 GROUP BY o.id, o.state, o.imported_at, o.closed_at"))
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// The order's items in file order, each with its device's state.
pub async fn items(pool: &AnyPool, id: &str) -> Result<Vec<ItemState>, DbError> {
    Ok(sqlx::query_as(
        "SELECT i.order_id, i.position, i.device_id, i.device_name, i.model, i.serial_number, i.link, i.batch, \
         d.state, d.current_key_id AS key_id, d.provisioned_at, k.station_id, d.failure \
         FROM work_order_items i LEFT JOIN devices d ON d.id = i.device_id \
         LEFT JOIN device_keys k ON k.device_id = d.id AND k.key_id = d.current_key_id \
         WHERE i.order_id = $1 ORDER BY i.position",
    )
    .bind(id)
    .fetch_all(pool)
    .await?)
}

/// Devices recorded under the order that it does not list.
pub async fn unexpected(pool: &AnyPool, id: &str) -> Result<Vec<Unexpected>, DbError> {
    Ok(sqlx::query_as(
        "SELECT d.id AS device_id, d.name, d.state, d.current_key_id AS key_id, d.provisioned_at FROM devices d \
         WHERE d.order_id = $1 AND NOT EXISTS \
         (SELECT 1 FROM work_order_items i WHERE i.order_id = d.order_id AND i.device_id = d.id) ORDER BY d.id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?)
}

/// The open orders that list the device, oldest first.
pub async fn open_items_for(pool: &AnyPool, device_id: &str) -> Result<Vec<ItemState>, DbError> {
    Ok(sqlx::query_as(
        "SELECT i.order_id, i.position, i.device_id, i.device_name, i.model, i.serial_number, i.link, i.batch, \
         NULL AS state, NULL AS key_id, CAST(NULL AS BIGINT) AS provisioned_at, NULL AS station_id, NULL AS failure \
         FROM work_order_items i JOIN work_orders o ON o.id = i.order_id \
         WHERE i.device_id = $1 AND o.state = 'open' ORDER BY o.imported_at, o.id",
    )
    .bind(device_id)
    .fetch_all(pool)
    .await?)
}

/// Devices of order `id` that another open order lists too (at most `limit`): (device name,
/// other order).
pub async fn also_on_open_orders(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    limit: i64,
) -> Result<Vec<(String, String)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT mine.device_name, other.order_id FROM work_order_items mine \
         JOIN work_order_items other ON other.device_id = mine.device_id AND other.order_id <> mine.order_id \
         JOIN work_orders o ON o.id = other.order_id AND o.state = 'open' \
         WHERE mine.order_id = $1 ORDER BY mine.position LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// Closes an open order; false if it was not open.
pub async fn close(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    closed_by: &str,
    reason: Option<&str>,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE work_orders SET state = 'closed', closed_at = $1, closed_by = $2, close_reason = $3 \
         WHERE id = $4 AND state = 'open'",
    )
    .bind(now_millis())
    .bind(closed_by)
    .bind(reason.map(str::to_owned))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
