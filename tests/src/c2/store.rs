//! Storage: clients in PostgreSQL, keys sealed with AES-SIV.

use super::*;

/// Clients in PostgreSQL, keys sealed.
pub(super) struct ClientStore {
    pub(super) pool: PgPool,
    pub(super) sealer: KeySealer,
}

impl ClientStore {
    pub(super) async fn create_schema(&self) -> Result<()> {
        sqlx::query(&format!(
            "CREATE TABLE clients (
                name VARCHAR({NAME_COLUMN_CHARS}) PRIMARY KEY,
                e4_id BYTEA NOT NULL UNIQUE,
                sealed_key BYTEA NOT NULL,
                updated_at BIGINT NOT NULL,
                version BIGINT NOT NULL
            )"
        ))
        .execute(&self.pool)
        .await
        .context("cannot create the clients table")?;
        Ok(())
    }

    /// Creates the client or replaces its key, as C2's NewClient does.
    pub(super) async fn upsert(&self, name: &str, key: &[u8]) -> Result<()> {
        let sealed = self.sealer.seal(name, key)?;
        sqlx::query(
            "INSERT INTO clients (name, e4_id, sealed_key, updated_at, version) VALUES ($1, $2, $3, $4, 1)
             ON CONFLICT (name) DO UPDATE SET sealed_key = EXCLUDED.sealed_key,
                 updated_at = EXCLUDED.updated_at, version = clients.version + 1",
        )
        .bind(name)
        .bind(DeviceId::from_name(name).0.to_vec())
        .bind(sealed)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .context("cannot store the client")?;
        Ok(())
    }

    /// Gives an existing client a fresh random key; false if there is no such client.
    pub(super) async fn replace_with_random_key(&self, name: &str) -> Result<bool> {
        let sealed = self.sealer.seal(name, &random_client_key()?)?;
        let updated =
            sqlx::query("UPDATE clients SET sealed_key = $2, updated_at = $3, version = version + 1 WHERE name = $1")
                .bind(name)
                .bind(sealed)
                .bind(unix_now())
                .execute(&self.pool)
                .await
                .context("cannot rotate the client key")?;
        Ok(updated.rows_affected() == 1)
    }

    pub(super) async fn exists(&self, name: &str) -> Result<bool> {
        let row = sqlx::query("SELECT count(*) FROM clients WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .context("cannot look the client up")?;
        Ok(row.try_get::<i64, _>(0).context("count column")? == 1)
    }

    /// Removes a client; false if there was none.
    pub(super) async fn remove(&self, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM clients WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .context("cannot remove the client")?;
        Ok(deleted.rows_affected() == 1)
    }

    /// A page of names, in byte order (`COLLATE "C"`: the database's locale must not decide).
    pub(super) async fn names(&self, offset: i64, count: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM clients ORDER BY name COLLATE \"C\" OFFSET $1 LIMIT $2")
            .bind(offset)
            .bind(count)
            .fetch_all(&self.pool)
            .await
            .context("cannot list clients")?;
        rows.iter().map(|row| row.try_get("name").context("name column")).collect()
    }

    pub(super) async fn count(&self) -> Result<i64> {
        let row =
            sqlx::query("SELECT count(*) FROM clients").fetch_one(&self.pool).await.context("cannot count clients")?;
        row.try_get(0).context("count column")
    }

    pub(super) async fn all_keys(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let rows = sqlx::query("SELECT name, sealed_key FROM clients")
            .fetch_all(&self.pool)
            .await
            .context("cannot read clients")?;
        let mut keys = BTreeMap::new();
        for row in rows {
            let name: String = row.try_get("name")?;
            let sealed: Vec<u8> = row.try_get("sealed_key")?;
            let key = self.sealer.open(&name, &sealed)?;
            keys.insert(name, key);
        }
        Ok(keys)
    }

    /// Every row of every table of the public schema, as `row_to_json` text (bytea as hex).
    pub(super) async fn dump(&self) -> Result<Vec<u8>> {
        let tables = sqlx::query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .context("cannot list tables")?;
        let mut dump = Vec::new();
        for table in tables {
            let table: String = table.try_get(0)?;
            let quoted = table.replace('"', "\"\"");
            let rows = sqlx::query(&format!("SELECT row_to_json(t)::text FROM \"{quoted}\" t"))
                .fetch_all(&self.pool)
                .await
                .with_context(|| format!("cannot dump {table}"))?;
            for row in rows {
                let json: String = row.try_get(0)?;
                dump.extend_from_slice(json.as_bytes());
                dump.push(b'\n');
            }
        }
        Ok(dump)
    }
}

/// AES-SIV sealing of keys at rest, as C2 does, under a key that lives only in this process.
pub(super) struct KeySealer {
    pub(super) key: [u8; SEALING_KEY_LEN],
}

impl KeySealer {
    pub(super) fn random() -> Result<Self> {
        let mut key = [0u8; SEALING_KEY_LEN];
        SystemRandom::new().fill(&mut key).map_err(|_| anyhow!("no randomness for the sealing key"))?;
        Ok(KeySealer { key })
    }

    fn cipher(&self) -> Result<Aes256Siv> {
        Aes256Siv::new_from_slice(&self.key).map_err(|_| anyhow!("AES-SIV key length"))
    }

    /// Seals `key` bound to the client's name, so a sealed key cannot be moved to another client.
    fn seal(&self, name: &str, key: &[u8]) -> Result<Vec<u8>> {
        self.cipher()?.encrypt([name.as_bytes()], key).map_err(|_| anyhow!("AES-SIV sealing failed"))
    }

    pub(super) fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        self.cipher()?
            .decrypt([name.as_bytes()], sealed)
            .map_err(|_| anyhow!("the sealed key of {name:?} does not open"))
    }
}

fn random_client_key() -> Result<[u8; CLIENT_KEY_LEN]> {
    let mut key = [0u8; CLIENT_KEY_LEN];
    // All zero is invalid in E4; with 256 random bits it does not happen, but never store one.
    while key.iter().all(|byte| *byte == 0) {
        SystemRandom::new().fill(&mut key).map_err(|_| anyhow!("no randomness for a client key"))?;
    }
    Ok(key)
}

fn unix_now() -> i64 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default();
    i64::try_from(seconds).unwrap_or(i64::MAX)
}
