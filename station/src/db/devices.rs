//! Devices: identity from the label, provisioning state, and which link was used.

use super::{DbError, now_millis};
use serde::Serialize;
use sqlx::{Any, AnyPool, FromRow, Transaction};
use thiserror::Error;

/// Provisioning state of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// A key was generated and may have reached the device; not yet confirmed.
    Pending,
    /// The device proved it holds its key.
    Provisioned,
    /// Provisioning failed and the device holds no key from this station.
    Failed,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Provisioned => "provisioned",
            DeviceState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "pending" => Ok(DeviceState::Pending),
            "provisioned" => Ok(DeviceState::Provisioned),
            "failed" => Ok(DeviceState::Failed),
            other => Err(DbError::Inconsistent(format!("unknown device state {other:?}"))),
        }
    }
}

#[derive(Debug, FromRow)]
struct DeviceRow {
    id: String,
    name: String,
    serial_number: String,
    credential_mode: String,
    identity_public_key: Option<Vec<u8>>,
    sealed_setup_secret: Option<Vec<u8>>,
    model: Option<String>,
    state: String,
    transport: Option<String>,
    port: Option<String>,
    current_key_id: Option<String>,
    failure: Option<String>,
    created_at: i64,
    updated_at: i64,
    provisioned_at: Option<i64>,
    rotation_state: Option<String>,
    rotation_attempts: Option<i64>,
    order_id: Option<String>,
}

/// A device as stored. `sealed_setup_secret` stays sealed and is never serialised.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub serial_number: String,
    pub credential_mode: String,
    #[serde(skip)]
    pub identity_public_key: Option<Vec<u8>>,
    #[serde(skip)]
    pub sealed_setup_secret: Option<Vec<u8>>,
    pub model: Option<String>,
    pub state: DeviceState,
    pub transport: Option<String>,
    pub port: Option<String>,
    pub key_id: Option<String>,
    pub failure: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub provisioned_at: Option<i64>,
    /// Rotation state, if a rotation was ever started: rotation_pending, active, rotation_failed.
    pub rotation: Option<String>,
    pub rotation_attempts: Option<i64>,
    /// The work order the device was keyed under.
    pub order_id: Option<String>,
}

impl TryFrom<DeviceRow> for Device {
    type Error = DbError;
    fn try_from(row: DeviceRow) -> Result<Self, DbError> {
        Ok(Device {
            state: DeviceState::parse(&row.state)?,
            id: row.id,
            name: row.name,
            serial_number: row.serial_number,
            credential_mode: row.credential_mode,
            identity_public_key: row.identity_public_key,
            sealed_setup_secret: row.sealed_setup_secret,
            model: row.model,
            transport: row.transport,
            port: row.port,
            key_id: row.current_key_id,
            failure: row.failure,
            created_at: row.created_at,
            updated_at: row.updated_at,
            provisioned_at: row.provisioned_at,
            rotation: row.rotation_state,
            rotation_attempts: row.rotation_attempts,
            order_id: row.order_id,
        })
    }
}

/// What the station knows of a device from its label, ready to store.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub id: String,
    pub name: String,
    pub serial_number: String,
    pub credential_mode: &'static str,
    pub identity_public_key: Option<Vec<u8>>,
    pub sealed_setup_secret: Option<Vec<u8>>,
    pub model: Option<String>,
}

const SELECT: &str = "SELECT d.id, d.name, d.serial_number, d.credential_mode, d.identity_public_key, d.sealed_setup_secret, \
     d.model, d.state, d.transport, d.port, d.current_key_id, d.failure, d.created_at, d.updated_at, d.provisioned_at, \
     r.state AS rotation_state, r.attempts AS rotation_attempts, d.order_id \
     FROM devices d LEFT JOIN rotations r ON r.device_id = d.id";

pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<Device>, DbError> {
    let row: Option<DeviceRow> =
        sqlx::query_as(&format!("{SELECT} WHERE d.id = $1")).bind(id).fetch_optional(pool).await?;
    row.map(Device::try_from).transpose()
}

pub async fn get_by_name(pool: &AnyPool, name: &str) -> Result<Option<Device>, DbError> {
    let row: Option<DeviceRow> =
        sqlx::query_as(&format!("{SELECT} WHERE d.name = $1")).bind(name).fetch_optional(pool).await?;
    row.map(Device::try_from).transpose()
}

/// How an operator names one device: `id:HEX`, `name:NAME`, or bare text, which is an id only in
/// an id's exact form (32 lowercase hex digits) and a name otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRef {
    /// `id:HEX` (either case).
    Id(String),
    /// `name:NAME`, or bare text that is not an id's exact form.
    Name(String),
    /// Bare text in an id's exact form: one device's id, or another's name.
    IdOrName(String),
}

/// Why a device reference does not name exactly one device. Messages quote what was typed as it
/// is: whoever prints them on a terminal escapes them ([`keyfill_formats::printable`]).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LookupError {
    #[error("no device {text}: give its id (32 hex digits) or its name")]
    NotFound { text: String },
    #[error("{text}: a device id is 32 hex digits")]
    BadId { text: String },
    #[error(
        "{text} matches two devices: the device whose id it is (named {by_id_name}) and the device named {text} \
         (id {by_name_id}); say `id:{text}` or `name:{text}`"
    )]
    Ambiguous { text: String, by_id_name: String, by_name_id: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl DeviceRef {
    pub fn parse(text: &str) -> Result<Self, LookupError> {
        if let Some(id) = text.strip_prefix("id:") {
            let id = id.to_ascii_lowercase();
            return if is_exact_id(&id) {
                Ok(DeviceRef::Id(id))
            } else {
                Err(LookupError::BadId { text: text.into() })
            };
        }
        if let Some(name) = text.strip_prefix("name:") {
            return Ok(DeviceRef::Name(name.into()));
        }
        Ok(if is_exact_id(text) { DeviceRef::IdOrName(text.into()) } else { DeviceRef::Name(text.into()) })
    }

    /// The id to look for, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            DeviceRef::Id(id) | DeviceRef::IdOrName(id) => Some(id),
            DeviceRef::Name(_) => None,
        }
    }

    /// The name to look for, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            DeviceRef::Name(name) | DeviceRef::IdOrName(name) => Some(name),
            DeviceRef::Id(_) => None,
        }
    }

    /// The one device meant, from the device with [`Self::id`] and the one with [`Self::name`].
    pub fn choose(&self, by_id: Option<Device>, by_name: Option<Device>) -> Result<Device, LookupError> {
        let text = match self {
            DeviceRef::Id(text) | DeviceRef::Name(text) | DeviceRef::IdOrName(text) => text,
        };
        match (by_id, by_name) {
            (Some(by_id), Some(by_name)) if by_id.id != by_name.id => {
                Err(LookupError::Ambiguous { text: text.clone(), by_id_name: by_id.name, by_name_id: by_name.id })
            }
            (Some(device), _) | (None, Some(device)) => Ok(device),
            (None, None) => Err(LookupError::NotFound { text: text.clone() }),
        }
    }
}

fn is_exact_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The one device an operator's reference names (see [`DeviceRef`]); every command that looks a
/// device up by "id or name" goes through here.
pub async fn resolve(pool: &AnyPool, text: &str) -> Result<Device, LookupError> {
    let reference = DeviceRef::parse(text)?;
    let by_id = match reference.id() {
        Some(id) => get(pool, id).await?,
        None => None,
    };
    let by_name = match reference.name() {
        Some(name) => get_by_name(pool, name).await?,
        None => None,
    };
    reference.choose(by_id, by_name)
}

/// [`resolve`] over devices already in memory.
pub fn resolve_among<'a>(devices: impl IntoIterator<Item = &'a Device>, text: &str) -> Result<Device, LookupError> {
    let reference = DeviceRef::parse(text)?;
    let (mut by_id, mut by_name) = (None, None);
    for device in devices {
        if reference.id() == Some(device.id.as_str()) {
            by_id = Some(device.clone());
        }
        if reference.name() == Some(device.name.as_str()) {
            by_name = Some(device.clone());
        }
    }
    reference.choose(by_id, by_name)
}

pub async fn list(pool: &AnyPool, state: Option<DeviceState>) -> Result<Vec<Device>, DbError> {
    let rows: Vec<DeviceRow> = match state {
        Some(state) => {
            sqlx::query_as(&format!("{SELECT} WHERE d.state = $1 ORDER BY d.created_at, d.id"))
                .bind(state.as_str())
                .fetch_all(pool)
                .await?
        }
        None => sqlx::query_as(&format!("{SELECT} ORDER BY d.created_at, d.id")).fetch_all(pool).await?,
    };
    rows.into_iter().map(Device::try_from).collect()
}

/// Which devices a page holds.
#[derive(Debug, Clone, Default)]
pub struct PageFilter {
    pub state: Option<DeviceState>,
    pub order: Option<String>,
    /// Only ids after this one (the previous page's last).
    pub after: Option<String>,
}

/// Up to `limit` devices in id order, filtered.
pub async fn page(pool: &AnyPool, filter: &PageFilter, limit: u32) -> Result<Vec<Device>, DbError> {
    let mut conditions = Vec::new();
    let mut values: Vec<String> = Vec::new();
    for (column, value) in
        [("d.state", filter.state.map(|state| state.as_str().to_owned())), ("d.order_id", filter.order.clone())]
    {
        if let Some(value) = value {
            values.push(value);
            conditions.push(format!("{column} = ${}", values.len()));
        }
    }
    if let Some(after) = &filter.after {
        values.push(after.clone());
        conditions.push(format!("d.id > ${}", values.len()));
    }
    let mut sql = SELECT.to_owned();
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY d.id LIMIT {limit}"));
    let mut query = sqlx::query_as::<_, DeviceRow>(&sql);
    for value in values {
        query = query.bind(value);
    }
    query.fetch_all(pool).await?.into_iter().map(Device::try_from).collect()
}

/// Inserts the device, or refreshes its label facts, and puts it in `pending` with `key_id`.
pub async fn begin_provisioning(
    tx: &mut Transaction<'_, Any>,
    device: &NewDevice,
    key_id: &str,
    transport: &str,
    port: &str,
) -> Result<(), DbError> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO devices (id, name, serial_number, credential_mode, identity_public_key, sealed_setup_secret, model, \
         state, transport, port, current_key_id, failure, created_at, updated_at, provisioned_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, NULL, $11, $12, NULL) \
         ON CONFLICT (id) DO UPDATE SET serial_number = excluded.serial_number, credential_mode = excluded.credential_mode, \
         identity_public_key = excluded.identity_public_key, sealed_setup_secret = excluded.sealed_setup_secret, \
         model = excluded.model, state = 'pending', transport = excluded.transport, port = excluded.port, \
         current_key_id = excluded.current_key_id, failure = NULL, updated_at = excluded.updated_at",
    )
    .bind(&device.id)
    .bind(&device.name)
    .bind(&device.serial_number)
    .bind(device.credential_mode)
    .bind(device.identity_public_key.clone())
    .bind(device.sealed_setup_secret.clone())
    .bind(device.model.clone())
    .bind(transport)
    .bind(port)
    .bind(key_id)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the device provisioned; its setup secret, no longer needed, is erased.
pub async fn mark_provisioned(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    key_id: &str,
    transport: &str,
    port: &str,
) -> Result<(), DbError> {
    let now = now_millis();
    sqlx::query(
        "UPDATE devices SET state = 'provisioned', sealed_setup_secret = NULL, current_key_id = $1, transport = $2, port = $3, failure = NULL, \
         updated_at = $4, provisioned_at = $5 WHERE id = $6",
    )
    .bind(key_id)
    .bind(transport)
    .bind(port)
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn mark_failed(tx: &mut Transaction<'_, Any>, id: &str, failure: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE devices SET state = 'failed', failure = $1, updated_at = $2 WHERE id = $3")
        .bind(failure)
        .bind(now_millis())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records why a pending device is still pending (e.g. confirmation lost), without changing state.
pub async fn note_pending(tx: &mut Transaction<'_, Any>, id: &str, note: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE devices SET failure = $1, updated_at = $2 WHERE id = $3 AND state = 'pending'")
        .bind(note)
        .bind(now_millis())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records the work order the device is keyed under.
pub async fn set_order(tx: &mut Transaction<'_, Any>, id: &str, order_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE devices SET order_id = $1 WHERE id = $2").bind(order_id).bind(id).execute(&mut **tx).await?;
    Ok(())
}

/// Makes `key_id` the device's current key (after a confirmed rotation).
pub async fn set_current_key(tx: &mut Transaction<'_, Any>, id: &str, key_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE devices SET current_key_id = $1, updated_at = $2 WHERE id = $3")
        .bind(key_id)
        .bind(now_millis())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, name: &str) -> Device {
        Device {
            id: id.into(),
            name: name.into(),
            serial_number: "SN".into(),
            credential_mode: "identity".into(),
            identity_public_key: None,
            sealed_setup_secret: None,
            model: None,
            state: DeviceState::Provisioned,
            transport: None,
            port: None,
            key_id: None,
            failure: None,
            created_at: 0,
            updated_at: 0,
            provisioned_at: None,
            rotation: None,
            rotation_attempts: None,
            order_id: None,
        }
    }

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn hostile_device_references_read_one_way() {
        assert_eq!(DeviceRef::parse(A).ok(), Some(DeviceRef::IdOrName(A.into())));
        assert_eq!(DeviceRef::parse(&A.to_uppercase()).ok(), Some(DeviceRef::Name(A.to_uppercase())));
        assert_eq!(DeviceRef::parse(&format!("id:{}", A.to_uppercase())).ok(), Some(DeviceRef::Id(A.into())));
        assert_eq!(DeviceRef::parse(&format!("name:{A}")).ok(), Some(DeviceRef::Name(A.into())));
        assert_eq!(DeviceRef::parse("name:id:x").ok(), Some(DeviceRef::Name("id:x".into())));
        assert_eq!(DeviceRef::parse("sensor 1").ok(), Some(DeviceRef::Name("sensor 1".into())));
        assert!(matches!(DeviceRef::parse("id:00ff"), Err(LookupError::BadId { .. })));
    }

    #[test]
    fn hostile_name_that_is_another_devices_id_is_ambiguous() {
        // Device 1 has id A; device 2 is named A.
        let devices = [device(A, "pump 1"), device(B, A)];
        let error = resolve_among(&devices, A).expect_err("ambiguous");
        let message = error.to_string();
        assert!(matches!(error, LookupError::Ambiguous { .. }), "{message}");
        for needed in [A, B, "pump 1", &format!("id:{A}"), &format!("name:{A}")] {
            assert!(message.contains(needed), "{needed}: {message}");
        }
        assert_eq!(resolve_among(&devices, &format!("id:{A}")).map(|d| d.id).ok(), Some(A.to_owned()));
        assert_eq!(resolve_among(&devices, &format!("name:{A}")).map(|d| d.id).ok(), Some(B.to_owned()));
        assert_eq!(resolve_among(&devices, "pump 1").map(|d| d.id).ok(), Some(A.to_owned()));
        assert_eq!(resolve_among(&devices, B).map(|d| d.id).ok(), Some(B.to_owned()));
        // A device named by its own id is one device, not two.
        let own = [device(A, A)];
        assert_eq!(resolve_among(&own, A).map(|d| d.id).ok(), Some(A.to_owned()));
        assert!(matches!(resolve_among(&devices, "nobody"), Err(LookupError::NotFound { .. })));
    }
}
