//! A pass-through TCP proxy in front of the real Mosquitto that records each MQTT connection
//! made through it: the client id of its CONNECT, whether the client said DISCONNECT, who closed
//! the connection first, and whether it is still open. Mosquitto itself cannot be asked which
//! clients are connected (its `$SYS` counters are global to the shared broker and refreshed every
//! `sys_interval` seconds), so a test points the station at the proxy and reads its record: only
//! the station's own connections are counted, at once, and a client-id takeover shows as the
//! broker closing the old connection first.
//!
//! Standard library only, so that other crates' tests can include this file with `#[path]`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const BROKER_ADDRESS: &str = "127.0.0.1:1883";
/// Bytes of a client's stream kept to parse packets from (a CONNECT is far smaller).
const MAX_PARSED: usize = 64 * 1024;
const PACKET_CONNECT: u8 = 1;
const PACKET_DISCONNECT: u8 = 14;

/// What one connection through the proxy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub client_id: Option<String>,
    /// The client sent an MQTT DISCONNECT: it closed the session on purpose.
    pub said_disconnect: bool,
    /// The broker closed the connection while the client was still connected and had not said
    /// DISCONNECT (a client-id takeover, a broker error).
    pub closed_by_broker_first: bool,
    pub client_closed: bool,
    pub broker_closed: bool,
}

impl ConnectionRecord {
    pub fn is_open(&self) -> bool {
        !(self.client_closed && self.broker_closed)
    }
}

#[derive(Debug)]
pub struct MqttProxy {
    address: SocketAddr,
    connections: Arc<Mutex<Vec<ConnectionRecord>>>,
}

impl MqttProxy {
    /// Listens on a free port of 127.0.0.1; each connection is forwarded to Mosquitto on 1883.
    /// The accepting thread lives as long as the test process.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let connections: Arc<Mutex<Vec<ConnectionRecord>>> = Arc::default();
        let accepted = connections.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(broker) = TcpStream::connect(BROKER_ADDRESS) else { continue };
                let index = {
                    let mut records = accepted.lock().unwrap_or_else(PoisonError::into_inner);
                    records.push(ConnectionRecord::default());
                    records.len() - 1
                };
                forward(client, broker, accepted.clone(), index);
            }
        });
        Ok(MqttProxy { address, connections })
    }

    /// `mqtt://127.0.0.1:PORT`, for the station's broker setting.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.address)
    }

    pub fn connections(&self) -> Vec<ConnectionRecord> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits (at most `timeout`) until every connection made so far is closed on both sides.
    pub fn wait_all_closed(&self, timeout: Duration) -> Vec<ConnectionRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let connections = self.connections();
            if connections.iter().all(|c| !c.is_open()) || Instant::now() >= deadline {
                return connections;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn update(connections: &Mutex<Vec<ConnectionRecord>>, index: usize, change: impl FnOnce(&mut ConnectionRecord)) {
    if let Some(record) = connections.lock().unwrap_or_else(PoisonError::into_inner).get_mut(index) {
        change(record);
    }
}

fn forward(client: TcpStream, broker: TcpStream, connections: Arc<Mutex<Vec<ConnectionRecord>>>, index: usize) {
    let (Ok(mut client_read), Ok(mut broker_write)) = (client.try_clone(), broker.try_clone()) else { return };
    let (mut broker_read, mut client_write) = (broker, client);
    let upstream = connections.clone();
    std::thread::spawn(move || {
        let mut parser = PacketParser::default();
        let mut buffer = [0u8; 8192];
        loop {
            match client_read.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    for packet in parser.feed(&buffer[..read]) {
                        update(&upstream, index, |record| match packet {
                            Packet::Connect { client_id } => record.client_id = Some(client_id),
                            Packet::Disconnect => record.said_disconnect = true,
                        });
                    }
                    if broker_write.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
            }
        }
        update(&upstream, index, |record| record.client_closed = true);
        let _ = broker_write.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        loop {
            match broker_read.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    if client_write.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
            }
        }
        update(&connections, index, |record| {
            // After a DISCONNECT the broker closes the connection itself: that is the client's doing.
            record.closed_by_broker_first = !record.client_closed && !record.said_disconnect;
            record.broker_closed = true;
        });
        let _ = client_write.shutdown(Shutdown::Both);
    });
}

enum Packet {
    Connect { client_id: String },
    Disconnect,
}

/// Splits a client's byte stream into MQTT packets: a fixed header byte, a variable-length
/// remaining length, then the rest.
#[derive(Default)]
struct PacketParser {
    pending: Vec<u8>,
}

impl PacketParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Packet> {
        self.pending.extend_from_slice(bytes);
        let mut packets = Vec::new();
        while let Some((header, length, body_start)) = fixed_header(&self.pending) {
            let end = body_start + length;
            if self.pending.len() < end {
                break;
            }
            match header >> 4 {
                PACKET_CONNECT => {
                    if let Some(client_id) = connect_client_id(&self.pending[body_start..end]) {
                        packets.push(Packet::Connect { client_id });
                    }
                }
                PACKET_DISCONNECT => packets.push(Packet::Disconnect),
                _ => {}
            }
            self.pending.drain(..end);
        }
        if self.pending.len() > MAX_PARSED {
            self.pending.clear();
        }
        packets
    }
}

/// The first byte, the remaining length and where the rest starts, once that much arrived.
fn fixed_header(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let header = *bytes.first()?;
    let mut length = 0usize;
    for (position, byte) in bytes.iter().skip(1).take(4).enumerate() {
        length |= usize::from(byte & 0x7f) << (7 * position);
        if byte & 0x80 == 0 {
            return Some((header, length, position + 2));
        }
    }
    None
}

/// The client id of a CONNECT body: protocol name, level, flags and keep-alive, then the id.
fn connect_client_id(body: &[u8]) -> Option<String> {
    let name_length = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let id_at = 2 + name_length + 4;
    let id_length = usize::from(u16::from_be_bytes([*body.get(id_at)?, *body.get(id_at + 1)?]));
    let id = body.get(id_at + 2..id_at + 2 + id_length)?;
    String::from_utf8(id.to_vec()).ok()
}
