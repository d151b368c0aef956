//! A keystore in memory, so that targets never touch the disk for the agent's key.

use keyfill_agent::keystore::{Keystore, KeystoreError, StoredKey};

/// Holds the last stored key; `fail_next` makes the next store fail, as a full disk would.
#[derive(Debug, Default)]
pub struct MemoryKeystore {
    pub key: Option<StoredKey>,
    pub fail_next: bool,
}

impl Keystore for MemoryKeystore {
    fn load(&self) -> Result<Option<StoredKey>, KeystoreError> {
        Ok(self.key.clone())
    }

    fn store(&mut self, key: &StoredKey) -> Result<(), KeystoreError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(KeystoreError::Io {
                path: "memory".into(),
                source: std::io::Error::other("injected store failure"),
            });
        }
        self.key = Some(key.clone());
        Ok(())
    }
}
