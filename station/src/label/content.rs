//! What a label holds: the QR text and the facts printed beside it.
//!
//! The rule for a label made from the inventory ([`LabelContent::for_device`]):
//! - identity-mode device with its stored identity public key: the QR is a complete `KF1:`
//!   onboarding payload re-encoded from the stored facts (name, id, serial number, public key,
//!   model). The station can provision or reconcile the device from it again. It lacks the
//!   factory label's transport hints, which the inventory does not keep.
//! - any other device (setup-secret mode): the QR holds only the device id, 32 lowercase hex
//!   characters, as `keyfill devices show` accepts it. The setup secret is erased once the device
//!   is provisioned and must never be printed by the station, so there is no payload to print.
//!
//! A caller that holds the exact payload it just scanned ([`LabelContent::from_scanned`]) prints
//! that payload, setup secret included: it is already printed on the device by the factory.
//! No constructor takes arbitrary text, a key or a sealed secret, so nothing else can reach a label.

use super::LabelError;
use crate::db::devices::Device;
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload, TransportHints};
use keyfill_formats::{DeviceId, DeviceName};
use std::fmt;

/// What the label's QR code encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QrKind {
    /// A `KF1:` onboarding payload with the device's identity public key.
    IdentityPayload,
    /// The device's factory `KF1:` payload with its setup secret, passed in by the caller.
    ScannedSetupSecretPayload,
    /// Only the device id (lowercase hex): an inventory label, not usable to provision.
    DeviceId,
}

/// Everything one label shows. Build it with [`LabelContent::for_device`] or
/// [`LabelContent::from_scanned`]; the fields are private so that no other text reaches a label:
///
/// ```compile_fail
/// let content = keyfill_station::label::LabelContent { qr_text: "secret".into() };
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct LabelContent {
    qr_text: String,
    kind: QrKind,
    name: String,
    device_id: DeviceId,
    serial_number: String,
    provisioned_at: Option<i64>,
}

impl LabelContent {
    /// The label of an inventory record, following the rule in the module documentation.
    /// Never reads the record's sealed setup secret.
    pub fn for_device(device: &Device) -> Result<Self, LabelError> {
        let device_id = DeviceId::from_hex(&device.id)
            .ok_or_else(|| LabelError::InconsistentRecord { id: device.id.clone(), reason: "the id is not 32 hex" })?;
        if DeviceId::from_name(&device.name) != device_id {
            return Err(LabelError::InconsistentRecord {
                id: device.id.clone(),
                reason: "the id is not the E4 id of the device's name",
            });
        }
        let identity_key = match (device.credential_mode.as_str(), device.identity_public_key.as_deref()) {
            ("identity", Some(key)) => Some(<[u8; 32]>::try_from(key).map_err(|_| LabelError::InconsistentRecord {
                id: device.id.clone(),
                reason: "the stored identity public key is not 32 bytes",
            })?),
            _ => None,
        };
        let (qr_text, kind) = match identity_key {
            Some(public_key) => {
                // A record from an earlier version may hold a name a label must not carry.
                let name = DeviceName::parse(&device.name).map_err(|_| LabelError::InconsistentRecord {
                    id: device.id.clone(),
                    reason: "the stored name is not a valid device name (control characters, '/', \".\" or \"..\")",
                })?;
                let payload = OnboardingPayload {
                    name,
                    device_id,
                    serial_number: device.serial_number.clone(),
                    credential: DeviceCredential::Identity { public_key },
                    hints: TransportHints::default(),
                    model: device.model.clone(),
                };
                let text = payload.encode().map_err(|source| LabelError::InvalidPayload { source })?;
                (text, QrKind::IdentityPayload)
            }
            None => (device_id.to_hex(), QrKind::DeviceId),
        };
        Ok(LabelContent {
            qr_text,
            kind,
            name: device.name.clone(),
            device_id,
            serial_number: device.serial_number.clone(),
            provisioned_at: device.provisioned_at,
        })
    }

    /// The label of a payload the caller scanned from the device, printed exactly (a setup
    /// secret included). Add the provisioning date with [`Self::with_provisioned_at`].
    pub fn from_scanned(payload: &OnboardingPayload) -> Result<Self, LabelError> {
        let qr_text = payload.encode().map_err(|source| LabelError::InvalidPayload { source })?;
        let kind = match payload.credential {
            DeviceCredential::Identity { .. } => QrKind::IdentityPayload,
            DeviceCredential::SetupSecret(_) => QrKind::ScannedSetupSecretPayload,
        };
        Ok(LabelContent {
            qr_text,
            kind,
            name: payload.name.as_str().to_owned(),
            device_id: payload.device_id,
            serial_number: payload.serial_number.clone(),
            provisioned_at: None,
        })
    }

    /// Like [`Self::from_scanned`], from the scanned text; it must be a valid `KF1:` payload
    /// (a scanner's trailing newline is ignored).
    pub fn from_scanned_text(text: &str) -> Result<Self, LabelError> {
        let payload = OnboardingPayload::parse(text).map_err(|source| LabelError::InvalidPayload { source })?;
        Self::from_scanned(&payload)
    }

    /// Sets the provisioning time (Unix milliseconds) printed as a UTC date; `None` prints none.
    pub fn with_provisioned_at(mut self, millis: Option<i64>) -> Self {
        self.provisioned_at = millis;
        self
    }

    /// The text the QR code encodes.
    pub fn qr_text(&self) -> &str {
        &self.qr_text
    }

    pub fn kind(&self) -> QrKind {
        self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    pub fn serial_number(&self) -> &str {
        &self.serial_number
    }

    pub fn provisioned_at(&self) -> Option<i64> {
        self.provisioned_at
    }

    /// The provisioning date as printed, `YYYY-MM-DD UTC`.
    pub(crate) fn provisioned_date(&self) -> Option<String> {
        self.provisioned_at.map(|millis| format!("{} UTC", crate::time::utc_date(millis)))
    }
}

/// The QR text is shown unless it holds a setup secret.
impl fmt::Debug for LabelContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let qr_text = match self.kind {
            QrKind::ScannedSetupSecretPayload => "<KF1 payload with setup secret, redacted>",
            _ => self.qr_text.as_str(),
        };
        f.debug_struct("LabelContent")
            .field("qr_text", &qr_text)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("device_id", &self.device_id)
            .field("serial_number", &self.serial_number)
            .field("provisioned_at", &self.provisioned_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::devices::DeviceState;
    use keyfill_formats::qr::SetupSecret;

    pub(crate) fn device(name: &str, mode: &str) -> Device {
        Device {
            id: DeviceId::from_name(name).to_hex(),
            name: name.into(),
            serial_number: "SN-0001".into(),
            credential_mode: mode.into(),
            identity_public_key: (mode == "identity").then(|| vec![7; 32]),
            sealed_setup_secret: (mode == "secret").then(|| vec![0xA5; 60]),
            model: None,
            state: DeviceState::Provisioned,
            transport: Some("serial".into()),
            port: Some("/dev/ttyUSB0".into()),
            key_id: Some("k1".into()),
            failure: None,
            created_at: 0,
            updated_at: 0,
            provisioned_at: Some(1_738_332_000_000),
            rotation: None,
            rotation_attempts: None,
            order_id: None,
        }
    }

    #[test]
    fn label_identity_device_gets_a_provisionable_payload() {
        let content = LabelContent::for_device(&device("sensor-1", "identity")).expect("content");
        assert_eq!(content.kind(), QrKind::IdentityPayload);
        let payload = OnboardingPayload::parse(content.qr_text()).expect("payload");
        assert_eq!(payload.credential, DeviceCredential::Identity { public_key: [7; 32] });
        assert_eq!(payload.name, "sensor-1");
        assert_eq!(content.provisioned_date().as_deref(), Some("2025-01-31 UTC"));
    }

    #[test]
    fn label_secret_device_gets_only_its_id() {
        let record = device("sensor-2", "secret");
        let content = LabelContent::for_device(&record).expect("content");
        assert_eq!(content.kind(), QrKind::DeviceId);
        assert_eq!(content.qr_text(), record.id);
    }

    #[test]
    fn label_rejects_an_inconsistent_record() {
        let mut record = device("sensor-3", "identity");
        record.name = "someone-else".into();
        assert!(matches!(LabelContent::for_device(&record), Err(LabelError::InconsistentRecord { .. })));
        let mut record = device("sensor-3", "identity");
        record.identity_public_key = Some(vec![1; 31]);
        assert!(matches!(LabelContent::for_device(&record), Err(LabelError::InconsistentRecord { .. })));
    }

    #[test]
    fn label_scanned_secret_payload_is_printed_exactly_but_not_debugged() {
        let payload = OnboardingPayload::new(
            "dev".parse().expect("valid"),
            "SN",
            DeviceCredential::SetupSecret(SetupSecret([9; 16])),
        );
        let text = payload.encode().expect("encode");
        let content = LabelContent::from_scanned_text(&format!("{text}\n")).expect("content");
        assert_eq!(content.qr_text(), text);
        assert_eq!(content.kind(), QrKind::ScannedSetupSecretPayload);
        assert!(!format!("{content:?}").contains(&text));
        assert!(LabelContent::from_scanned_text("hello").is_err());
    }
}
