//! A DNS responder on loopback UDP that answers A queries from a fixed
//! table, as a headless Service's records would (one address per pod).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const TYPE_A: u16 = 1;
const HEADER_BYTES: usize = 12;

/// Names (lower case, no trailing dot) and their A records.
pub type Records = Arc<Mutex<BTreeMap<String, Vec<Ipv4Addr>>>>;

pub struct StubDns {
    pub addr: SocketAddr,
    pub records: Records,
    stop: Arc<AtomicBool>,
}

impl StubDns {
    pub fn start(records: BTreeMap<String, Vec<Ipv4Addr>>) -> StubDns {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("cannot bind a DNS responder");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        let addr = socket.local_addr().expect("a bound address");
        let records: Records = Arc::new(Mutex::new(records));
        let stop = Arc::new(AtomicBool::new(false));
        let (table, stopped) = (records.clone(), stop.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stopped.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let table = table.lock().unwrap().clone();
                if let Some(answer) = answer(&buf[..n], &table) {
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        StubDns {
            addr,
            records,
            stop,
        }
    }
}

impl Drop for StubDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The response to one query; `None` for what is not a query.
fn answer(query: &[u8], table: &BTreeMap<String, Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    if query.len() < HEADER_BYTES || query[2] & 0x80 != 0 {
        return None;
    }
    // The question: labels, then type and class.
    let mut at = HEADER_BYTES;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    let question = query.get(HEADER_BYTES..question_end)?;
    let name = labels.join(".");
    let known = table.get(&name);
    let ips: &[Ipv4Addr] = match known {
        Some(ips) if qtype == TYPE_A => ips,
        _ => &[],
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[..2]);
    // QR, AA, RD, RA; NXDOMAIN for an unknown name.
    let rcode = if known.is_some() { 0 } else { 3 };
    out.extend_from_slice(&[0x85, 0x80 | rcode]);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in ips {
        out.extend_from_slice(&[0xC0, HEADER_BYTES as u8]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&5u32.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}
