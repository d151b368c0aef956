//! A BLE peripheral whose radio is a relay: a GATT server elsewhere (the simulated BlueZ in the
//! tests, a BLE bridge on a bench) forwards each written fragment over TCP and notifies each
//! fragment it gets back. Frames both ways: a 2-byte big-endian length, then the fragment.

use crate::ble::FragmentChannel;
use keyfill_formats::ble::MAX_MTU;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One relay connection, standing for one connected central.
#[derive(Debug)]
pub struct RelayChannel {
    stream: TcpStream,
    mtu: usize,
    pending: Vec<u8>,
}

impl RelayChannel {
    pub fn new(stream: TcpStream, mtu: usize) -> Self {
        let _ = stream.set_nodelay(true);
        RelayChannel { stream, mtu, pending: Vec::new() }
    }

    /// A complete frame from the bytes received so far, if there is one.
    fn take_frame(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.pending.len() < 2 {
            return Ok(None);
        }
        let length = usize::from(u16::from_be_bytes([self.pending[0], self.pending[1]]));
        if length > MAX_MTU {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("relay frame of {length} bytes")));
        }
        if self.pending.len() < 2 + length {
            return Ok(None);
        }
        let frame = self.pending[2..2 + length].to_vec();
        self.pending.drain(..2 + length);
        Ok(Some(frame))
    }
}

impl FragmentChannel for RelayChannel {
    fn mtu(&self) -> usize {
        self.mtu
    }

    async fn notify(&mut self, fragment: &[u8]) -> std::io::Result<()> {
        let mut framed = (fragment.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(fragment);
        self.stream.write_all(&framed).await
    }

    /// Cancel-safe: bytes read are kept in `pending` until a whole frame is there.
    async fn written(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            let mut buffer = [0u8; 1024];
            let n = self.stream.read(&mut buffer).await?;
            if n == 0 {
                return Ok(None);
            }
            self.pending.extend_from_slice(&buffer[..n]);
        }
    }
}
