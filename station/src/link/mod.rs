//! Links to devices. A [`Link`] moves whole wire messages; the protocol never knows which
//! transport carries them.

use keyfill_formats::frame::{self, FrameDecoder, FrameError};
use std::collections::VecDeque;
use std::path::Path;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::warn;

pub mod ble;
pub mod btle;
pub mod pcsc;

pub use self::pcsc::{PcscLink, list_readers, open_pcsc};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("cannot open {port}: {source}")]
    Open { port: String, source: tokio_serial::Error },
    #[error("link closed")]
    Closed,
    #[error("link I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    #[error("PC/SC on reader {reader}: {source}")]
    Pcsc { reader: String, source: ::pcsc::Error },
    #[error("the card was removed from {reader}")]
    CardRemoved { reader: String },
    #[error("the card in {reader} has no Keyfill application (status {sw:04X})")]
    NotKeyfillCard { reader: String, sw: u16 },
    #[error("the card in {reader} answered with status {sw:04X}")]
    CardStatus { reader: String, sw: u16 },
    #[error("no PC/SC reader matches {wanted:?}")]
    NoReader { wanted: String },
    #[error("several PC/SC readers match {wanted:?}: {matches:?}")]
    AmbiguousReader { wanted: String, matches: Vec<String> },
    #[error("no card was presented within {seconds} s")]
    NoCard { seconds: u64 },
    #[error("BLE: {0}")]
    Ble(keyfill_formats::ble::BleError),
    #[error("BLE device {0} disconnected")]
    BleDisconnected(String),
    #[error("no BLE device advertising as {target} within {seconds} s")]
    BleNotFound { target: String, seconds: u64 },
    #[error("no Bluetooth adapter (is bluetoothd running?)")]
    NoBluetoothAdapter,
    #[error("BLE device {0} has no Keyfill GATT service")]
    BleNoService(String),
}

/// Which transport and which port or reader a session used; recorded with the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub transport: &'static str,
    pub port: String,
}

/// A bidirectional message link to one device.
#[allow(async_fn_in_trait)] // Used with concrete types only; no Send bound needed by callers.
pub trait Link {
    fn info(&self) -> LinkInfo;
    /// Sends one wire message.
    async fn send(&mut self, message: &[u8]) -> Result<(), LinkError>;
    /// Receives the next wire message. Cancel-safe: a message is never lost if the future is
    /// dropped.
    async fn recv(&mut self) -> Result<Vec<u8>, LinkError>;
}

/// A byte stream with serial framing: a UART, a pseudo-terminal, or an in-memory pipe.
#[derive(Debug)]
pub struct FramedStream<S> {
    stream: S,
    decoder: FrameDecoder,
    ready: VecDeque<Vec<u8>>,
    info: LinkInfo,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramedStream<S> {
    pub fn new(stream: S, info: LinkInfo) -> Self {
        FramedStream { stream, decoder: FrameDecoder::new(), ready: VecDeque::new(), info }
    }
}

/// A serial port opened like a real UART.
pub type SerialLink = FramedStream<tokio_serial::SerialStream>;

/// Opens a serial port (raw mode, 8N1) as a link.
pub fn open_serial(path: &Path, baud: u32) -> Result<SerialLink, LinkError> {
    let port = path.to_string_lossy().into_owned();
    let builder = tokio_serial::new(&port, baud);
    let stream =
        tokio_serial::SerialStream::open(&builder).map_err(|source| LinkError::Open { port: port.clone(), source })?;
    Ok(FramedStream::new(stream, LinkInfo { transport: "serial", port }))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link for FramedStream<S> {
    fn info(&self) -> LinkInfo {
        self.info.clone()
    }

    async fn send(&mut self, message: &[u8]) -> Result<(), LinkError> {
        let framed = frame::encode(message)?;
        self.stream.write_all(&framed).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        let mut buffer = [0u8; 512];
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Ok(message);
            }
            let n = self.stream.read(&mut buffer).await?;
            if n == 0 {
                return Err(LinkError::Closed);
            }
            for frame in self.decoder.push(&buffer[..n]) {
                match frame {
                    Ok(message) => self.ready.push_back(message),
                    Err(error) => warn!(%error, port = %self.info.port, "dropped a bad frame"),
                }
            }
        }
    }
}

/// Any of the station's links, for callers that choose the transport at run time.
#[derive(Debug)]
pub enum AnyLink {
    Serial(SerialLink),
    Pcsc(PcscLink),
    Ble(ble::BleLink<btle::BtleplugGatt>),
}

impl Link for AnyLink {
    fn info(&self) -> LinkInfo {
        match self {
            AnyLink::Serial(link) => link.info(),
            AnyLink::Pcsc(link) => link.info(),
            AnyLink::Ble(link) => link.info(),
        }
    }

    async fn send(&mut self, message: &[u8]) -> Result<(), LinkError> {
        match self {
            AnyLink::Serial(link) => link.send(message).await,
            AnyLink::Pcsc(link) => link.send(message).await,
            AnyLink::Ble(link) => link.send(message).await,
        }
    }

    async fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        match self {
            AnyLink::Serial(link) => link.recv().await,
            AnyLink::Pcsc(link) => link.recv().await,
            AnyLink::Ble(link) => link.recv().await,
        }
    }
}
