//! Links to devices. A [`Link`] moves whole wire messages; the protocol never knows which
//! transport carries them.

use keyfill_formats::frame::{self, FrameDecoder, FrameError};
use std::collections::VecDeque;
use std::path::Path;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

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
    #[error("no Bluetooth adapter {wanted} (present: {present:?})")]
    NoSuchBluetoothAdapter { wanted: String, present: Vec<String> },
    #[error("BLE device {0} has no Keyfill GATT service")]
    BleNoService(String),
}

impl LinkError {
    /// What the operator should do.
    pub fn advice(&self) -> &'static str {
        match self {
            LinkError::Open { .. } => {
                "Check that the port exists, that no other program holds it, and that you may open it (the \
                 `dialout` group)."
            }
            LinkError::Closed | LinkError::Io(_) | LinkError::Frame(_) | LinkError::BleDisconnected(_) => {
                "The link dropped: check the cable or radio range, the device's power and that its agent runs; \
                 then retry."
            }
            LinkError::NoReader { .. } | LinkError::AmbiguousReader { .. } => {
                "Connect the reader, check that pcscd runs, and name the reader (`keyfill readers`)."
            }
            LinkError::NoCard { .. } => "Present the card or device to the reader, then retry.",
            LinkError::CardRemoved { .. } => "Keep the card or device on the reader until the end, then retry.",
            LinkError::NotKeyfillCard { .. } => "This card has no Keyfill application: present the labelled device.",
            LinkError::NoBluetoothAdapter => "Plug in a Bluetooth adapter and check that bluetoothd runs.",
            LinkError::NoSuchBluetoothAdapter { .. } => {
                "Plug in the adapter the lane names, or name one that is present (`hciconfig` or \
                 `bluetoothctl list`)."
            }
            LinkError::BleNotFound { .. } | LinkError::BleNoService(_) => {
                "Check that the device is powered, advertising and close to the station; then retry."
            }
            _ => "Check the link and the device, then retry.",
        }
    }
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
    /// Throws away everything received and not yet read: called when a link opens and before
    /// each session, since nothing of a session can have arrived before its first message.
    fn discard_received(&mut self) -> Result<(), LinkError>;
}

/// A byte stream whose unread input can be thrown away at the source.
pub trait DiscardInput {
    fn discard_input(&mut self) -> std::io::Result<()>;
}

impl DiscardInput for tokio_serial::SerialStream {
    fn discard_input(&mut self) -> std::io::Result<()> {
        use tokio_serial::SerialPort;
        // tcflush(TCIFLUSH): what the driver (or the pseudo-terminal) holds for us goes.
        self.clear(tokio_serial::ClearBuffer::Input).map_err(std::io::Error::from)
    }
}

impl DiscardInput for tokio::io::DuplexStream {
    fn discard_input(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
    let mut link = FramedStream::new(stream, LinkInfo { transport: "serial", port });
    // A reply to an earlier session (one the station gave up on, or ran when it was killed) may
    // still wait in the port's input queue.
    link.discard_received()?;
    Ok(link)
}

impl<S: AsyncRead + AsyncWrite + DiscardInput + Unpin> Link for FramedStream<S> {
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

    fn discard_received(&mut self) -> Result<(), LinkError> {
        let queued = self.ready.len();
        self.ready.clear();
        self.decoder = FrameDecoder::new();
        self.stream.discard_input()?;
        if queued > 0 {
            debug!(queued, port = %self.info.port, "discarded messages left on the link");
        }
        Ok(())
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

    fn discard_received(&mut self) -> Result<(), LinkError> {
        match self {
            AnyLink::Serial(link) => link.discard_received(),
            AnyLink::Pcsc(link) => link.discard_received(),
            AnyLink::Ble(link) => link.discard_received(),
        }
    }
}
