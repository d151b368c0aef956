//! A farm of simulated devices in the test process: real agent cores, each on a real
//! pseudo-terminal pair (socat) whose station side any station process may open, with keys kept
//! in memory. A thousand of them cost a thousand socat processes, not two thousand agent
//! processes.

use crate::PtyPair;
use anyhow::{Context, Result};
use keyfill_agent::core::AgentCore;
use keyfill_agent::driver::FaultInjection;
use keyfill_agent::identity::DeviceIdentity;
use keyfill_agent::keystore::{Keystore, KeystoreError, StoredKey};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A device's key store: what it holds, shared with the test.
#[derive(Debug, Clone, Default)]
pub struct SharedKeystore(Arc<Mutex<Option<StoredKey>>>);

impl SharedKeystore {
    pub fn key_id(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|key| hex::encode(key.key_id))
    }

    /// The key the device holds, for leak scans.
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|key| key.key.expose().to_vec())
    }
}

impl Keystore for SharedKeystore {
    fn load(&self) -> Result<Option<StoredKey>, KeystoreError> {
        Ok(self.0.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    fn store(&mut self, key: &StoredKey) -> Result<(), KeystoreError> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(key.clone());
        Ok(())
    }
}

/// One simulated device.
#[derive(Debug)]
pub struct FarmDevice {
    pub name: String,
    pub id: String,
    /// Its label's QR payload.
    pub payload: String,
    /// The pseudo-terminal a station opens to reach it.
    pub port: PathBuf,
    pub keystore: SharedKeystore,
    /// Bytes the device read and wrote on its link, framing included.
    pub wire_bytes: Arc<AtomicU64>,
    _pty: PtyPair,
}

/// A byte stream that counts what crosses it.
struct Counted<S> {
    inner: S,
    bytes: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.bytes.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(written)) = &polled {
            self.bytes.fetch_add(*written as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The farm: its devices answer for as long as it lives.
#[derive(Debug)]
pub struct Farm {
    pub devices: Vec<FarmDevice>,
    runtime: tokio::runtime::Runtime,
}

impl Farm {
    /// `count` devices named `PREFIX-NNNNN`, trusting `factory_root`, their pseudo-terminals in
    /// `dir`.
    pub fn start(dir: &Path, prefix: &str, count: usize, factory_root: [u8; 32]) -> Result<Farm> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let mut devices = Vec::with_capacity(count);
        for index in 0..count {
            let name = format!("{prefix}-{index:05}");
            let identity = DeviceIdentity::generate(name.parse()?, &format!("SN-{index}"), factory_root, false)?;
            let payload = identity.onboarding_payload().encode()?;
            let pty = PtyPair::named(dir, &format!("{prefix}-{index}-station"), &format!("{prefix}-{index}-device"))?;
            let keystore = SharedKeystore::default();
            let builder = tokio_serial::new(pty.device_side.to_string_lossy(), 115_200);
            let wire_bytes = Arc::new(AtomicU64::new(0));
            let mut stream = {
                let _entered = runtime.enter();
                let inner =
                    tokio_serial::SerialStream::open(&builder).with_context(|| format!("device side of {name}"))?;
                Counted { inner, bytes: wire_bytes.clone() }
            };
            let mut core = AgentCore::new(identity.clone(), None);
            let mut store = keystore.clone();
            runtime.spawn(async move {
                // A closed station side ends one serve; the device waits for the next station.
                loop {
                    if keyfill_agent::serial::serve_stream(&mut stream, &mut core, &mut store, FaultInjection::None)
                        .await
                        .is_err()
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
            });
            devices.push(FarmDevice {
                id: identity.device_id.to_hex(),
                name,
                payload,
                port: pty.station_side.clone(),
                keystore,
                wire_bytes,
                _pty: pty,
            });
        }
        Ok(Farm { devices, runtime })
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        // The serving tasks never end by themselves.
        let runtime = std::mem::replace(
            &mut self.runtime,
            match tokio::runtime::Builder::new_current_thread().build() {
                Ok(runtime) => runtime,
                Err(_) => return,
            },
        );
        runtime.shutdown_background();
    }
}

/// A device provisioned in this process over an in-memory serial link (the station's framing
/// on a pipe): its identity, key store and label.
#[derive(Debug)]
pub struct MemoryDevice {
    pub identity: DeviceIdentity,
    pub keystore: SharedKeystore,
}

impl MemoryDevice {
    pub fn new(name: &str, factory_root: [u8; 32]) -> Result<Self> {
        let identity = DeviceIdentity::generate(name.parse()?, "SN-MEM", factory_root, false)?;
        Ok(MemoryDevice { identity, keystore: SharedKeystore::default() })
    }

    /// Runs `station.provision` against this device over a fresh in-memory link.
    pub async fn provision(
        &self,
        station: &keyfill_station::provision::Station,
    ) -> Result<keyfill_station::provision::ProvisionReport, keyfill_station::provision::ProvisionError> {
        use keyfill_station::link::{FramedStream, LinkInfo};
        let (station_side, mut device_side) = tokio::io::duplex(4096);
        let mut core = AgentCore::new(self.identity.clone(), self.keystore.load().ok().flatten());
        let mut store = self.keystore.clone();
        let device = tokio::spawn(async move {
            let _ = keyfill_agent::serial::serve_stream(&mut device_side, &mut core, &mut store, FaultInjection::None)
                .await;
        });
        let port = format!("memory:{}", self.identity.name);
        let mut link = FramedStream::new(station_side, LinkInfo { transport: "serial", port });
        let result = station.provision(&mut link, &self.identity.onboarding_payload(), |_| {}).await;
        drop(link);
        let _ = device.await;
        result
    }
}
