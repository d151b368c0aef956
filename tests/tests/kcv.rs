//! Key check values: every key's one-way check value is unique across the inventory. A station
//! whose random source repeats itself is refused before the key leaves; a key cloned onto
//! another device is found by `keyfill keys check-duplicates` and refused by a bundle import;
//! keys recorded before check values existed get theirs at the next start.

use anyhow::{Context, Result, bail};
use keyfill_e2e::farm::MemoryDevice;
use keyfill_e2e::{Database, OPERATOR_PASSPHRASE, Station, runtime};
use keyfill_formats::{DeviceId, SecretKey};
use keyfill_station::db::events;
use keyfill_station::db::{DbError, Inventory, devices, keys};
use keyfill_station::provision::ProvisionError;
use keyfill_station::seal::{self, KeyCheckValue, KeySource, SealError};
use std::sync::Arc;

/// A random source broken the way that matters: it gives the same key every time.
#[derive(Debug)]
struct StuckRandom;

impl KeySource for StuckRandom {
    fn new_key(&self) -> Result<SecretKey, SealError> {
        Ok(SecretKey::from_bytes([0x42; 32]))
    }
}

fn databases(dir: &std::path::Path) -> Result<Vec<Database>> {
    Ok(vec![Database::sqlite(dir), Database::postgres()?])
}

#[test]
fn kcv_a_random_source_that_repeats_itself_is_refused_before_the_key_leaves() -> Result<()> {
    let runtime = runtime()?;
    for (index, db) in databases(tempfile::tempdir()?.path())?.into_iter().enumerate() {
        let dir = tempfile::tempdir()?;
        let fixture = Station::init(dir.path(), db)?;
        runtime.block_on(async {
            let mut station = fixture.open_in_process("kcv-test").await?;
            station.key_source = Arc::new(StuckRandom);
            let root = station.unlocked.info.factory_root;
            let first = MemoryDevice::new(&format!("kcv-first-{index}"), root)?;
            let second = MemoryDevice::new(&format!("kcv-second-{index}"), root)?;
            let report = first.provision(&station).await?;
            assert_eq!(report.device.state, devices::DeviceState::Provisioned);

            let refused = second.provision(&station).await;
            let Err(ProvisionError::Db(DbError::DuplicateKey { check_value })) = &refused else {
                bail!("a repeated key was not refused: {refused:?}");
            };
            let stuck = KeyCheckValue::of(&SecretKey::from_bytes([0x42; 32]));
            assert_eq!(check_value, &stuck.to_hex());
            let said = refused.as_ref().err().map(ToString::to_string).unwrap_or_default();
            for needed in ["random source", "Nothing was recorded and nothing was sent", "check-duplicates"] {
                assert!(said.contains(needed), "{needed:?} missing from: {said}");
            }
            // Nothing left the station: the device holds no key, and has no record.
            assert_eq!(second.keystore.key_id(), None);
            let second_id = second.identity.device_id.to_hex();
            assert!(devices::get(station.inventory.pool(), &second_id).await?.is_none());
            // The refusal is in the device's history, by check value only.
            let history = events::for_device(station.inventory.pool(), &second_id).await?;
            assert!(history.iter().any(|e| e.kind == "duplicate_key_refused" && e.detail.contains(&stuck.to_hex())));

            // A rotation's key repeating is refused too (as a rotation records it: its key id
            // derived from the key).
            let stuck_key = SecretKey::from_bytes([0x42; 32]);
            let key_id = hex::encode(keyfill_formats::e4::keyfill::rotated_key_id(&stuck_key));
            let first_id = first.identity.device_id.to_hex();
            let mut tx = station.inventory.pool().begin().await?;
            let next = keys::NewKey {
                state: keys::NewKeyState::Next,
                key_id: &key_id,
                device_id: &first_id,
                kind: "e4-symmetric-client-key",
                sealed_key: &[0; 60],
                check_value: stuck,
                station_id: "station",
            };
            let refused = keys::insert(&mut tx, next).await;
            assert!(matches!(refused, Err(DbError::DuplicateKey { .. })), "{refused:?}");
            drop(tx);

            // With a sound random source the same device is keyed at once.
            station.key_source = Arc::new(seal::SystemKeys);
            let report = second.provision(&station).await?;
            assert_eq!(report.device.state, devices::DeviceState::Provisioned);
            assert_eq!(second.keystore.key_id(), report.device.key_id);
            station.inventory.close().await;
            anyhow::Ok(())
        })?;
    }
    Ok(())
}

/// Provisions two devices in this process, then copies the first one's key onto the second (as
/// a cloned station would): re-sealed for the second device, its stored check value left as it
/// was, so that only opening the keys tells.
fn station_with_a_cloned_key(dir: &std::path::Path, db: Database) -> Result<(Station, [String; 2])> {
    let fixture = Station::init(dir, db)?;
    let key_ids = runtime()?.block_on(async {
        let station = fixture.open_in_process("kcv-test").await?;
        let root = station.unlocked.info.factory_root;
        let mut key_ids = Vec::new();
        for name in ["kcv-original", "kcv-clone"] {
            let device = MemoryDevice::new(name, root)?;
            let report = device.provision(&station).await?;
            key_ids.push((report.device.id.clone(), report.device.key_id.clone().context("key id")?));
        }
        let master = &station.unlocked.master_key;
        let context = |(device, key_id): &(String, String)| -> Result<Vec<u8>> {
            let device = DeviceId::from_hex(device).context("device id")?;
            let key_id: [u8; 16] = hex::decode(key_id)?.try_into().map_err(|_| anyhow::anyhow!("key id"))?;
            Ok(seal::device_key_context(&device, &key_id))
        };
        let pool = station.inventory.pool();
        let original = keys::get(pool, &key_ids[0].1).await?.context("original key")?;
        let key = master.open_key(&context(&key_ids[0])?, &original.sealed_key)?;
        let cloned = master.seal(&context(&key_ids[1])?, key.expose())?;
        sqlx::query("UPDATE device_keys SET sealed_key = $1 WHERE key_id = $2")
            .bind(cloned)
            .bind(&key_ids[1].1)
            .execute(pool)
            .await?;
        station.inventory.close().await;
        anyhow::Ok([key_ids[0].1.clone(), key_ids[1].1.clone()])
    })?;
    Ok((fixture, key_ids))
}

#[test]
fn kcv_check_duplicates_names_a_key_cloned_onto_another_device() -> Result<()> {
    for (index, db) in databases(tempfile::tempdir()?.path())?.into_iter().enumerate() {
        let dir = tempfile::tempdir()?;
        let (station, [original, clone]) = station_with_a_cloned_key(dir.path(), db)?;
        let output = station.run(&["keys", "check-duplicates", "--json"])?;
        assert!(!output.status.success(), "a duplicate makes the scan fail ({index})");
        let scan: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        assert_eq!(scan["keys"], 2, "{scan}");
        let group = &scan["duplicates"][0]["keys"];
        let mut found: Vec<&str> =
            group.as_array().context("a group")?.iter().filter_map(|k| k["key_id"].as_str()).collect();
        found.sort();
        let mut expected = vec![original.as_str(), clone.as_str()];
        expected.sort();
        assert_eq!(found, expected, "{scan}");
        assert_eq!(scan["mismatched"][0]["key"]["key_id"], clone.as_str(), "the clone's stored value is not its key's");
        assert!(scan["duplicates"][0]["keys"][0]["device_name"].is_string(), "{scan}");

        let text = station.run(&["keys", "check-duplicates"])?;
        let said = String::from_utf8_lossy(&text.stdout);
        for needed in ["DUPLICATE: 2 keys are one key", "kcv-original", "kcv-clone", "MISMATCH", "what to do"] {
            assert!(said.contains(needed), "{needed:?} missing from: {said}");
        }
    }
    Ok(())
}

#[test]
fn kcv_a_bundle_that_gives_one_key_to_two_devices_is_refused_whole_at_import() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (station, _) = station_with_a_cloned_key(dir.path(), Database::sqlite(dir.path()))?;
    let operator_key = station.new_operator_key(dir.path())?;
    let bundle = dir.path().join("cloned.kfb");
    let output = station.export_bundle(&operator_key, &bundle, &[])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let key = operator_key.to_str().context("path")?;
    let root = station.factory_root_file();
    let root = root.to_str().context("path")?;
    let file = bundle.to_str().context("path")?;
    // No C2 answers at this address: the refusal comes before any connection.
    let import = ["import", "bundle", file, "--key", key, "--factory-root", root, "--c2", "https://127.0.0.1:9"];
    let inspect = ["bundle", "inspect", file, "--key", key, "--factory-root", root];
    for args in [&import[..], &inspect[..]] {
        let output = station.run_env(args, &[("KEYFILL_BUNDLE_KEY_PASSPHRASE", OPERATOR_PASSPHRASE)])?;
        assert!(!output.status.success(), "{args:?}");
        let said = String::from_utf8_lossy(&output.stderr);
        for needed in ["gives one key to two devices", "key check value", "refused"] {
            assert!(said.contains(needed), "{args:?}: {needed:?} missing from: {said}");
        }
        // The bundle lists devices in id order: the second of the two is named.
        assert!(said.contains("kcv-clone") || said.contains("kcv-original"), "{said}");
    }
    Ok(())
}

#[test]
fn kcv_keys_recorded_before_check_values_get_them_at_the_next_start() -> Result<()> {
    for db in databases(tempfile::tempdir()?.path())? {
        let dir = tempfile::tempdir()?;
        let fixture = Station::init(dir.path(), db)?;
        let runtime = runtime()?;
        let before: Vec<(String, Option<String>)> = runtime.block_on(async {
            let station = fixture.open_in_process("kcv-test").await?;
            let root = station.unlocked.info.factory_root;
            for name in ["kcv-old-1", "kcv-old-2", "kcv-old-3"] {
                MemoryDevice::new(name, root)?.provision(&station).await?;
            }
            let pool = station.inventory.pool();
            let rows =
                sqlx::query_as("SELECT key_id, check_value FROM device_keys ORDER BY key_id").fetch_all(pool).await?;
            // As an inventory from before check values holds them.
            sqlx::query("UPDATE device_keys SET check_value = NULL").execute(pool).await?;
            station.inventory.close().await;
            anyhow::Ok(rows)
        })?;
        assert_eq!(before.len(), 3);
        assert!(before.iter().all(|(_, value)| value.is_some()));
        let output = fixture.run(&["keys", "check-duplicates", "--json"])?;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let after: Vec<(String, Option<String>)> = runtime.block_on(async {
            let inventory = Inventory::open(fixture.db.url()).await?;
            let rows = sqlx::query_as("SELECT key_id, check_value FROM device_keys ORDER BY key_id")
                .fetch_all(inventory.pool())
                .await?;
            inventory.close().await;
            anyhow::Ok(rows)
        })?;
        assert_eq!(after, before, "the values computed at start are the ones recorded at generation");
    }
    Ok(())
}
