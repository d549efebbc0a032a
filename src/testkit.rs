//! Test kit (unit tests only): Ethernet/IPv4/TCP frames built with etherparse, and a [`Script`]
//! of one connection's segments, seq and ack numbers kept by the script, run through the real
//! pipeline on a [`MemorySource`] — so classification and verdict tests start from packets, as
//! hcleak does, without depending on how the flow table stores a connection.

use crate::decode::{Link, Ts, ACK, FIN, PSH, RST, SYN};
use crate::flow::{Conn, FlowConfig, FlowTable};
use crate::source::MemorySource;

/// One Ethernet/IPv4/TCP frame.
pub(crate) fn frame(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src.0, dst.0, 64).tcp(src.1, dst.1, seq, 512);
    let b = if flags & SYN != 0 { b.syn() } else { b };
    let b = if flags & ACK != 0 { b.ack(ack) } else { b };
    let b = if flags & FIN != 0 { b.fin() } else { b };
    let b = if flags & RST != 0 { b.rst() } else { b };
    let b = if flags & PSH != 0 { b.psh() } else { b };
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("build frame");
    out
}

/// The client and server of every script: 10.0.0.1 (port chosen per script) → 10.0.0.2:8080.
pub(crate) const CLIENT: [u8; 4] = [10, 0, 0, 1];
pub(crate) const SERVER: ([u8; 4], u16) = ([10, 0, 0, 2], 8080);
pub(crate) const T0: Ts = 1_700_000_000_000_000_000;

/// One connection's segments, a millisecond apart unless [`Script::wait`] says otherwise. Each side
/// sends from its own sequence number on (a SYN and a FIN take one, payload its length) and
/// acknowledges everything the other side sent.
pub(crate) struct Script {
    port: u16,
    t: Ts,
    next: [u32; 2],
    frames: Vec<(Ts, Vec<u8>)>,
}

impl Script {
    /// A connection from client port `port`, starting `start_ms` after [`T0`].
    pub(crate) fn new(port: u16, start_ms: i64) -> Script {
        Script { port, t: T0 + start_ms * 1_000_000, next: [1000, 5000], frames: Vec::new() }
    }

    fn send(mut self, from_client: bool, flags: &str, payload: &[u8]) -> Script {
        let bits = flags.chars().fold(0u8, |b, ch| {
            b | match ch {
                'S' => SYN,
                'A' => ACK,
                'F' => FIN,
                'R' => RST,
                'P' => PSH,
                _ => panic!("flag {ch}"),
            }
        });
        let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
        let client = (CLIENT, self.port);
        let (src, dst) = if from_client { (client, SERVER) } else { (SERVER, client) };
        self.frames.push((self.t, frame(src, dst, bits, self.next[me], self.next[peer], payload)));
        self.next[me] += payload.len() as u32 + u32::from(bits & SYN != 0) + u32::from(bits & FIN != 0);
        self.t += 1_000_000;
        self
    }

    /// The client sends a segment with these flags (`S`, `A`, `F`, `R`, `P`) and payload.
    pub(crate) fn c(self, flags: &str, payload: &[u8]) -> Script {
        self.send(true, flags, payload)
    }

    /// The server sends a segment.
    pub(crate) fn s(self, flags: &str, payload: &[u8]) -> Script {
        self.send(false, flags, payload)
    }

    /// The server's segment is lost before the capture point: its sequence space is used, but
    /// nothing is captured.
    pub(crate) fn s_lost(mut self, flags: &str) -> Script {
        let n = self.frames.len();
        self = self.send(false, flags, b"");
        self.frames.truncate(n);
        self
    }

    /// Nothing happens for `ms` milliseconds.
    pub(crate) fn wait(mut self, ms: i64) -> Script {
        self.t += ms * 1_000_000;
        self
    }
}

/// The connections these scripts make, finished, in the order they end.
pub(crate) fn conns(scripts: Vec<Script>) -> Vec<Conn> {
    let mut frames: Vec<(Ts, Vec<u8>)> = scripts.into_iter().flat_map(|s| s.frames).collect();
    frames.sort_by_key(|f| f.0);
    let mut src = MemorySource::frames(Link::Ethernet, frames);
    let mut table = FlowTable::new(FlowConfig::default());
    let (mut stats, mut errors, mut out) = (Default::default(), Vec::new(), Vec::new());
    let mut sink = |c: Conn| out.push(c);
    crate::pipeline::run(&mut src, &mut table, &mut stats, &mut errors, &mut sink);
    table.finish(&mut sink);
    assert!(errors.is_empty(), "{errors:?}");
    out
}

/// The one connection a script makes.
pub(crate) fn conn(script: Script) -> Conn {
    let mut v = conns(vec![script]);
    assert_eq!(v.len(), 1, "one connection");
    v.pop().unwrap()
}
