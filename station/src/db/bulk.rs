//! Reading a SQLite inventory in bulk. sqlx runs each SQLite connection on a worker thread and
//! hands every row to the async side on its own, with a wake-up of each thread per row: a
//! million keys spent nine tenths of an export's read there, where SQLite alone reads them in
//! under a second. Exports read through a connection of their own instead, opened read-only
//! on the same file (SQLite in WAL mode lets it read beside the pool's writers), and hand on
//! whole pages.

use super::DbError;
use super::keys::{PROVISIONED_KEYS_SQLITE, ProvisionedKeyRow};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// Reads every provisioned device with its current key in device-id order, as one statement
/// (one snapshot of the inventory), and sends them `page` rows at a time; an error ends the
/// pages. Returns once every row was sent or `pages` was closed. Blocks: call it from a
/// blocking thread.
pub fn send_provisioned_pages(file: &Path, page: usize, pages: &Sender<Result<Vec<ProvisionedKeyRow>, DbError>>) {
    if let Err(error) = read_provisioned(file, page.max(1), pages) {
        let _ = pages.blocking_send(Err(error));
    }
}

fn read_provisioned(
    file: &Path,
    page: usize,
    pages: &Sender<Result<Vec<ProvisionedKeyRow>, DbError>>,
) -> Result<(), DbError> {
    let failed = |error: rusqlite::Error| DbError::Bulk(format!("{}: {error}", file.display()));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(file, flags).map_err(failed)?;
    connection.busy_timeout(Duration::from_secs(10)).map_err(failed)?;
    let mut statement = connection.prepare(PROVISIONED_KEYS_SQLITE).map_err(failed)?;
    let mut rows = statement.query([]).map_err(failed)?;
    let mut current = Vec::with_capacity(page);
    while let Some(row) = rows.next().map_err(failed)? {
        current.push(ProvisionedKeyRow {
            device_id: row.get(0).map_err(failed)?,
            name: row.get(1).map_err(failed)?,
            current_key_id: row.get(2).map_err(failed)?,
            provisioned_at: row.get(3).map_err(failed)?,
            rotation_state: row.get(4).map_err(failed)?,
            key_state: row.get(5).map_err(failed)?,
            sealed_key: row.get(6).map_err(failed)?,
            key_created_at: row.get(7).map_err(failed)?,
            confirmed_at: row.get(8).map_err(failed)?,
        });
        if current.len() == page {
            let full = std::mem::replace(&mut current, Vec::with_capacity(page));
            if pages.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !current.is_empty() {
        let _ = pages.blocking_send(Ok(current));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Inventory;
    use crate::db::keys::provisioned_rows;
    use tokio_stream::StreamExt;

    /// Devices in a mix of states, one with a rotation, one provisioned without its key row
    /// (an inconsistency the export reports), inserted out of id order.
    async fn inventory() -> (tempfile::TempDir, Inventory) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("inventory.db").display());
        let inventory = Inventory::open(&url).await.unwrap();
        let pool = inventory.pool();
        for (id, state, key) in [
            ("0c", "provisioned", Some("k0c")),
            ("0a", "provisioned", Some("k0a")),
            ("0f", "pending", None),
            ("0b", "failed", None),
            ("0e", "provisioned", Some("k0e")),
            ("0d", "provisioned", Some("missing")),
            ("01", "provisioned", Some("k01")),
        ] {
            sqlx::query(
                "INSERT INTO devices (id, name, serial_number, credential_mode, state, current_key_id, created_at, \
                 updated_at, provisioned_at) VALUES ($1, $2, 'sn', 'identity', $3, $4, 1, 2, 3)",
            )
            .bind(id)
            .bind(format!("device-{id}"))
            .bind(state)
            .bind(key)
            .execute(pool)
            .await
            .unwrap();
            if let Some(key) = key.filter(|k| *k != "missing") {
                sqlx::query(
                    "INSERT INTO device_keys (key_id, device_id, kind, sealed_key, state, station_id, created_at, \
                     confirmed_at) VALUES ($1, $2, 'initial', $3, 'active', 'st', 4, 5)",
                )
                .bind(key)
                .bind(id)
                .bind(vec![1u8, 2, 3])
                .execute(pool)
                .await
                .unwrap();
            }
        }
        sqlx::query(
            "INSERT INTO rotations (device_id, old_key_id, new_key_id, state, attempts, command_timestamps, \
             started_at, updated_at) VALUES ('0e', 'k0e', 'k0e2', 'rotation_pending', 1, '[]', 6, 7)",
        )
        .execute(pool)
        .await
        .unwrap();
        (dir, inventory)
    }

    #[tokio::test]
    async fn c2_export_bulk_read_sees_what_the_pool_reads() {
        let (_dir, inventory) = inventory().await;
        let through_pool: Vec<ProvisionedKeyRow> =
            provisioned_rows(&inventory).collect::<Result<_, _>>().await.unwrap();
        let file = inventory.sqlite_file().unwrap().to_path_buf();
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
        let reader = tokio::task::spawn_blocking(move || send_provisioned_pages(&file, 2, &sender));
        let mut bulk = Vec::new();
        let mut sizes = Vec::new();
        while let Some(page) = receiver.recv().await {
            let page = page.unwrap();
            sizes.push(page.len());
            bulk.extend(page);
        }
        reader.await.unwrap();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(bulk, through_pool);
        let ids: Vec<&str> = bulk.iter().map(|row| row.device_id.as_str()).collect();
        assert_eq!(ids, ["01", "0a", "0c", "0d", "0e"]);
        assert_eq!(bulk[3].sealed_key, None, "a missing key row reads as no key");
        assert_eq!(bulk[4].rotation_state.as_deref(), Some("rotation_pending"));
    }

    #[tokio::test]
    async fn c2_export_bulk_read_of_a_missing_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
        let file = dir.path().join("absent.db");
        tokio::task::spawn_blocking(move || send_provisioned_pages(&file, 2, &sender)).await.unwrap();
        let error = receiver.recv().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("absent.db"), "{error}");
    }
}
