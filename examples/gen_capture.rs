//! Deterministic generator of large synthetic captures for the benchmarks (`benches/run.sh`).
//!
//! ```sh
//! cargo run --release --example gen_capture -- --out FILE --packets N [--snaplen 96] [--seed 1]
//!     [--mix lb|synflood|elephant] [--rate CONNS_PER_S]
//! ```
//!
//! Writes classic pcap (nanosecond magic `0xa1b23c4d`, Ethernet) by hand through one big
//! `BufWriter`; no allocation per packet. The same seed and arguments give the same bytes.
//!
//! Mixes:
//! - `lb` (default): a load balancer's backend segment. About a third of the connections are health
//!   checks from three probers (10.1.0.1–3), one steady stream per prober and backend (interval
//!   180/rate s, ±0.5 ms), of every kind: half-open `S h R` (SYN, SYN-ACK, RST+ACK), handshake then
//!   RST, data then RST, HTTP checks (`GET /health` → `HTTP/1.1 200 OK`, FINs), connect then FIN;
//!   backend 10.0.2.19 refuses (`S` + `R.`), 10.0.2.20 never answers (lone SYNs). The other two
//!   thirds are traffic from 4096 clients (Poisson arrivals): short HTTP-like exchanges (bare ACK,
//!   request 100–600 bytes, response 200–8000 bytes cut at 1448-byte segments, client ACK every
//!   second segment, a few keep-alive rounds, closed by client FIN, server FIN or client RST),
//!   long-lived connections (tens to hundreds of rounds seconds apart), mid-stream connections (no
//!   SYN), unanswered SYNs (one retransmission after 1 s) and refusals. ~4% of traffic is IPv6.
//!   Default rate 600 connections/s.
//! - `synflood`: SYNs from random IPv4 sources and ports to 10.0.0.11:8080, never answered.
//!   Default rate 500 000 SYN/s.
//! - `elephant`: one connection carrying bulk data (1448-byte segments at ~1 Gbit/s, an ACK every
//!   second segment), closed by FINs at the end of the packet budget.
//!
//! Every segment carries the options Linux sends (MSS/SACK/TS/WS on SYNs, timestamps otherwise),
//! so full-size segments hold 1448 payload bytes. TCP checksums are left zero (nothing here checks
//! them); IPv4 header checksums are right. `--snaplen N` cuts records at N bytes; the record's
//! original length keeps the wire length.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use hcleak::decode::{ACK, FIN, PSH, RST, SYN};
use hcleak::flow::SEC;

const US: i64 = 1_000;
const MS: i64 = 1_000_000;
/// 2023-11-14T22:13:20Z, the capture's first instant.
const START: i64 = 1_700_000_000 * SEC;
const MSS: u32 = 1448;

/// xorshift64* seeded through splitmix64: tiny, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    /// Uniform in `0..n` (n < 2^32).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Exponential with the given mean (Poisson arrivals).
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// Addresses and ports of one connection; `c` is the client (originator), `s` the server.
#[derive(Clone, Copy)]
struct Ends {
    v6: bool,
    c_ip: [u8; 16],
    s_ip: [u8; 16],
    c_mac: [u8; 6],
    s_mac: [u8; 6],
    cport: u16,
    sport: u16,
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
    let mut ip = [0u8; 16];
    ip[..4].copy_from_slice(&[a, b, c, d]);
    ip
}

fn v6(group: u16, host: u16) -> [u8; 16] {
    let mut ip = [0u8; 16];
    ip[0] = 0xfd;
    ip[12..14].copy_from_slice(&group.to_be_bytes());
    ip[14..16].copy_from_slice(&host.to_be_bytes());
    ip
}

fn mac_of(ip: &[u8; 16], v6: bool) -> [u8; 6] {
    let t = if v6 { &ip[12..16] } else { &ip[..4] };
    [0x02, 0x42, t[0], t[1], t[2], t[3]]
}

impl Ends {
    fn new(v6: bool, c_ip: [u8; 16], cport: u16, s_ip: [u8; 16], sport: u16) -> Ends {
        Ends { v6, c_ip, s_ip, c_mac: mac_of(&c_ip, v6), s_mac: mac_of(&s_ip, v6), cport, sport }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Opts {
    None,
    /// MSS, SACK permitted, timestamps, window scale: 20 bytes, as Linux sends on SYN and SYN-ACK.
    Syn,
    /// NOP NOP timestamps: 12 bytes, on every other segment of a Linux connection.
    Ts,
}

/// The pcap writer: builds each frame's headers in a fixed buffer and copies the payload from
/// static templates.
struct Out {
    w: BufWriter<File>,
    snaplen: u32,
    last_ts: i64,
    packets: u64,
    file_bytes: u64,
    wire_bytes: u64,
    ip_id: u16,
    hdr: [u8; 128],
}

const ZEROS: [u8; 64] = [0; 64];

impl Out {
    fn new(path: &str, snaplen: u32) -> std::io::Result<Out> {
        let mut w = BufWriter::with_capacity(8 << 20, File::create(path)?);
        let mut g = [0u8; 24];
        g[0..4].copy_from_slice(&0xa1b2_3c4du32.to_le_bytes());
        g[4..6].copy_from_slice(&2u16.to_le_bytes());
        g[6..8].copy_from_slice(&4u16.to_le_bytes());
        g[16..20].copy_from_slice(&snaplen.to_le_bytes());
        g[20..24].copy_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        w.write_all(&g)?;
        Ok(Out { w, snaplen, last_ts: i64::MIN, packets: 0, file_bytes: 24, wire_bytes: 0, ip_id: 1, hdr: [0; 128] })
    }

    /// Writes one TCP segment. `from_c`: sent by the client. Timestamps are forced to increase.
    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        ts: i64,
        e: &Ends,
        from_c: bool,
        seq: u32,
        ack: u32,
        flags: u8,
        opts: Opts,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let ts = if ts > self.last_ts { ts } else { self.last_ts + 1 };
        self.last_ts = ts;
        let (src, dst, smac, dmac, sp, dp) = if from_c {
            (&e.c_ip, &e.s_ip, &e.c_mac, &e.s_mac, e.cport, e.sport)
        } else {
            (&e.s_ip, &e.c_ip, &e.s_mac, &e.c_mac, e.sport, e.cport)
        };
        let opt_len = match opts {
            Opts::None => 0,
            Opts::Syn => 20,
            Opts::Ts => 12,
        };
        let tcp_len = 20 + opt_len;
        let ip_len = if e.v6 { 40 } else { 20 };
        let h = &mut self.hdr;
        h[0..6].copy_from_slice(dmac);
        h[6..12].copy_from_slice(smac);
        let mut o = 14;
        if e.v6 {
            h[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            h[14..18].copy_from_slice(&[0x60, 0, 0, 0]);
            h[18..20].copy_from_slice(&((tcp_len + payload.len()) as u16).to_be_bytes());
            h[20] = 6;
            h[21] = 64;
            h[22..38].copy_from_slice(src);
            h[38..54].copy_from_slice(dst);
            o += 40;
        } else {
            h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let total = (ip_len + tcp_len + payload.len()) as u16;
            h[14] = 0x45;
            h[15] = 0;
            h[16..18].copy_from_slice(&total.to_be_bytes());
            h[18..20].copy_from_slice(&self.ip_id.to_be_bytes());
            self.ip_id = self.ip_id.wrapping_add(1);
            h[20..22].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            h[22] = 64;
            h[23] = 6;
            h[24..26].copy_from_slice(&[0, 0]);
            h[26..30].copy_from_slice(&src[..4]);
            h[30..34].copy_from_slice(&dst[..4]);
            let mut sum = 0u32;
            for i in (14..34).step_by(2) {
                sum += u32::from(u16::from_be_bytes([h[i], h[i + 1]]));
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            h[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            o += 20;
        }
        let t = o;
        h[t..t + 2].copy_from_slice(&sp.to_be_bytes());
        h[t + 2..t + 4].copy_from_slice(&dp.to_be_bytes());
        h[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        h[t + 8..t + 12].copy_from_slice(&(if flags & ACK != 0 { ack } else { 0 }).to_be_bytes());
        h[t + 12] = ((tcp_len / 4) as u8) << 4;
        h[t + 13] = flags;
        let win: u16 = if flags & RST != 0 {
            0
        } else if flags & SYN != 0 {
            if flags & ACK != 0 {
                65160
            } else {
                64240
            }
        } else {
            502
        };
        h[t + 14..t + 16].copy_from_slice(&win.to_be_bytes());
        h[t + 16..t + 20].copy_from_slice(&[0, 0, 0, 0]); // checksum (not computed), urgent pointer
        let tsval = ((ts / MS) as u32).wrapping_add(if from_c { 0x1000_0000 } else { 0x5000_0000 });
        let tsecr = if flags & SYN != 0 && flags & ACK == 0 { 0 } else { tsval ^ 0x4000_0000 };
        let op = t + 20;
        match opts {
            Opts::None => {}
            Opts::Syn => {
                h[op..op + 4].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
                h[op + 4..op + 6].copy_from_slice(&[4, 2]); // SACK permitted
                h[op + 6..op + 8].copy_from_slice(&[8, 10]);
                h[op + 8..op + 12].copy_from_slice(&tsval.to_be_bytes());
                h[op + 12..op + 16].copy_from_slice(&tsecr.to_be_bytes());
                h[op + 16..op + 20].copy_from_slice(&[1, 3, 3, 7]); // NOP, window scale 7
            }
            Opts::Ts => {
                h[op..op + 4].copy_from_slice(&[1, 1, 8, 10]);
                h[op + 4..op + 8].copy_from_slice(&tsval.to_be_bytes());
                h[op + 8..op + 12].copy_from_slice(&tsecr.to_be_bytes());
            }
        }
        let hlen = op + opt_len;
        // Ethernet pads short frames to 60 bytes (without FCS).
        let wire = (hlen + payload.len()).max(60);
        let pad = wire - hlen - payload.len();
        let incl = wire.min(self.snaplen as usize);
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&((ts / SEC) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&((ts % SEC) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(wire as u32).to_le_bytes());
        self.w.write_all(&rec)?;
        let hc = hlen.min(incl);
        self.w.write_all(&self.hdr[..hc])?;
        let pc = payload.len().min(incl - hc);
        self.w.write_all(&payload[..pc])?;
        let zc = pad.min(incl - hc - pc);
        self.w.write_all(&ZEROS[..zc])?;
        self.packets += 1;
        self.file_bytes += 16 + incl as u64;
        self.wire_bytes += wire as u64;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    // Probes.
    HalfOpenRst,
    HandshakeRst,
    DataRst,
    HttpCheck,
    ConnectFin,
    ProbeRefused,
    ProbeUnanswered,
    // Traffic.
    Http,
    Long,
    Mid,
    Unanswered,
    Refused,
    // Other mixes.
    Flood,
    Bulk,
}

const KINDS: [Kind; 14] = [
    Kind::HalfOpenRst,
    Kind::HandshakeRst,
    Kind::DataRst,
    Kind::HttpCheck,
    Kind::ConnectFin,
    Kind::ProbeRefused,
    Kind::ProbeUnanswered,
    Kind::Http,
    Kind::Long,
    Kind::Mid,
    Kind::Unanswered,
    Kind::Refused,
    Kind::Flood,
    Kind::Bulk,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Close {
    ClientFin,
    ServerFin,
    ClientRst,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Syn,
    SynRetx,
    Refuse,
    SynAck,
    HsAck,
    Req,
    ReqAck,
    Rsp,
    RspAckMid,
    RspAckEnd,
    ClientRst,
    Bulk,
    Close1,
    Close2,
    Close3,
}

/// One generated connection: its script is the kind plus a phase, advanced one packet at a time.
#[derive(Clone, Copy)]
struct Flow {
    e: Ends,
    kind: Kind,
    phase: Phase,
    cseq: u32,
    sseq: u32,
    rounds: u32,
    req_len: u32,
    rsp_len: u32,
    rsp_off: u32,
    unacked: u8,
    close: Close,
    /// Half a round trip.
    half_rtt: i64,
    think: i64,
    gap: i64,
    bulk_sent: u64,
}

/// Request and response templates; payloads are slices of these (no allocation per packet).
struct Templates {
    /// One complete request of every length from 100 to 600 bytes, back to back.
    reqs: Vec<u8>,
    rsp: Vec<u8>,
    filler: Vec<u8>,
}

const HEALTH_REQ: &[u8] = b"GET /health HTTP/1.1\r\nHost: backend\r\nConnection: close\r\nAccept: */*\r\n\r\n";
const HEALTH_RSP: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK";
const PROXY_HDR: &[u8] = b"PROXY TCP4 10.1.0.1 10.0.1.11 43210 8080\r\n";

impl Templates {
    fn new() -> Templates {
        let head: &[u8] =
            b"GET /api/v2/items?page=17 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0\r\nX-Pad: ";
        assert!(head.len() + 4 <= MIN_REQ);
        let mut reqs = Vec::new();
        for len in MIN_REQ..=MAX_REQ {
            reqs.extend_from_slice(head);
            reqs.extend((head.len()..len - 4).map(|i| b'a' + (i % 26) as u8));
            reqs.extend_from_slice(b"\r\n\r\n");
        }
        let mut rsp =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\r\n{\"items\":["
                .to_vec();
        while rsp.len() < 8200 {
            rsp.extend_from_slice(b"{\"id\":12345,\"name\":\"widget\"},");
        }
        let filler = (0..2048u32).map(|i| (i * 7 + 13) as u8).collect();
        Templates { reqs, rsp, filler }
    }

    /// A complete HTTP request of `len` bytes (`MIN_REQ..=MAX_REQ`).
    fn request(&self, len: u32) -> &[u8] {
        let len = len as usize;
        // Requests of MIN_REQ.. bytes are stored in order: the offset is a triangular sum.
        let k = len - MIN_REQ;
        let off = k * MIN_REQ + k * k.saturating_sub(1) / 2;
        &self.reqs[off..off + len]
    }
}

const MIN_REQ: usize = 100;
const MAX_REQ: usize = 600;

/// What a flow's step produced: the next packet's delay, or the end of the flow.
type Step = Option<i64>;

impl Flow {
    fn new(e: Ends, kind: Kind, rng: &mut Rng) -> Flow {
        let close = match rng.below(10) {
            0..=5 => Close::ClientFin,
            6..=7 => Close::ServerFin,
            _ => Close::ClientRst,
        };
        let rounds = match kind {
            Kind::Http => {
                if rng.chance(0.8) {
                    0
                } else {
                    rng.range(1, 3) as u32
                }
            }
            Kind::Long => rng.range(10, 200) as u32,
            Kind::Mid => rng.range(0, 5) as u32,
            _ => 0,
        };
        let (phase, think) = match kind {
            Kind::Mid => (Phase::Req, rng.range(200 * US, 20 * MS)),
            _ => (Phase::Syn, rng.range(200 * US, 20 * MS)),
        };
        let mut f = Flow {
            e,
            kind,
            phase,
            cseq: rng.u32(),
            sseq: rng.u32(),
            rounds,
            req_len: 0,
            rsp_len: 0,
            rsp_off: 0,
            unacked: 0,
            close,
            half_rtt: rng.range(50 * US, 400 * US),
            think,
            gap: 0,
            bulk_sent: 0,
        };
        f.new_round(rng);
        match kind {
            Kind::HttpCheck => f.close = Close::ClientFin,
            Kind::Bulk => f.half_rtt = 100 * US,
            _ => {}
        }
        f
    }

    fn new_round(&mut self, rng: &mut Rng) {
        self.req_len = rng.range(MIN_REQ as i64, MAX_REQ as i64) as u32;
        self.rsp_len = rng.range(200, 8000) as u32;
        self.rsp_off = 0;
        self.unacked = 0;
        self.gap = match self.kind {
            Kind::Long => rng.range(200 * MS, 3 * SEC),
            _ => rng.range(MS, 50 * MS),
        };
    }

    /// Emits this flow's next packet at `now`; returns the delay to the one after, or `None` when
    /// the flow is over. `budget` is how many packets the capture still takes.
    fn step(&mut self, now: i64, out: &mut Out, t: &Templates, rng: &mut Rng, budget: u64) -> std::io::Result<Step> {
        let e = self.e;
        let hr = self.half_rtt;
        Ok(match self.phase {
            Phase::Syn => {
                out.tcp(now, &e, true, self.cseq, 0, SYN, Opts::Syn, &[])?;
                self.cseq = self.cseq.wrapping_add(1);
                match self.kind {
                    Kind::ProbeUnanswered | Kind::Flood => None,
                    Kind::Unanswered => {
                        self.phase = Phase::SynRetx;
                        Some(SEC)
                    }
                    Kind::ProbeRefused | Kind::Refused => {
                        self.phase = Phase::Refuse;
                        Some(2 * hr)
                    }
                    _ => {
                        self.phase = Phase::SynAck;
                        Some(2 * hr)
                    }
                }
            }
            Phase::SynRetx => {
                out.tcp(now, &e, true, self.cseq.wrapping_sub(1), 0, SYN, Opts::Syn, &[])?;
                None
            }
            Phase::Refuse => {
                out.tcp(now, &e, false, 0, self.cseq, RST | ACK, Opts::None, &[])?;
                None
            }
            Phase::SynAck => {
                out.tcp(now, &e, false, self.sseq, self.cseq, SYN | ACK, Opts::Syn, &[])?;
                self.sseq = self.sseq.wrapping_add(1);
                match self.kind {
                    Kind::HalfOpenRst => {
                        self.phase = Phase::ClientRst;
                        Some(2 * hr)
                    }
                    // HAProxy's HTTP check sends its request with the handshake's ACK.
                    Kind::HttpCheck => {
                        self.phase = Phase::Req;
                        Some(2 * hr + 20 * US)
                    }
                    _ => {
                        self.phase = Phase::HsAck;
                        Some(2 * hr)
                    }
                }
            }
            Phase::HsAck => {
                out.tcp(now, &e, true, self.cseq, self.sseq, ACK, Opts::Ts, &[])?;
                match self.kind {
                    Kind::HandshakeRst => {
                        self.phase = Phase::ClientRst;
                        Some(rng.range(50 * US, MS))
                    }
                    Kind::ConnectFin => {
                        self.phase = Phase::Close1;
                        Some(rng.range(50 * US, MS))
                    }
                    Kind::Bulk => {
                        self.phase = Phase::Bulk;
                        Some(20 * US)
                    }
                    _ => {
                        self.phase = Phase::Req;
                        Some(rng.range(30 * US, 500 * US))
                    }
                }
            }
            Phase::Req => {
                let p: &[u8] = match self.kind {
                    Kind::HttpCheck => HEALTH_REQ,
                    Kind::DataRst => PROXY_HDR,
                    _ => t.request(self.req_len),
                };
                out.tcp(now, &e, true, self.cseq, self.sseq, PSH | ACK, Opts::Ts, p)?;
                self.cseq = self.cseq.wrapping_add(p.len() as u32);
                self.phase = Phase::ReqAck;
                Some(2 * hr)
            }
            Phase::ReqAck => {
                out.tcp(now, &e, false, self.sseq, self.cseq, ACK, Opts::Ts, &[])?;
                if self.kind == Kind::DataRst {
                    self.phase = Phase::ClientRst;
                    Some(rng.range(50 * US, MS))
                } else {
                    self.phase = Phase::Rsp;
                    Some(if self.kind == Kind::HttpCheck { rng.range(100 * US, MS) } else { self.think })
                }
            }
            Phase::Rsp => {
                let (p, last): (&[u8], bool) = if self.kind == Kind::HttpCheck {
                    (HEALTH_RSP, true)
                } else {
                    let off = self.rsp_off as usize;
                    let n = (self.rsp_len - self.rsp_off).min(MSS) as usize;
                    self.rsp_off += n as u32;
                    (&t.rsp[off..off + n], self.rsp_off == self.rsp_len)
                };
                let flags = if last { PSH | ACK } else { ACK };
                out.tcp(now, &e, false, self.sseq, self.cseq, flags, Opts::Ts, p)?;
                self.sseq = self.sseq.wrapping_add(p.len() as u32);
                self.unacked += 1;
                if last {
                    self.phase = Phase::RspAckEnd;
                    Some(2 * hr)
                } else if self.unacked >= 2 {
                    self.phase = Phase::RspAckMid;
                    Some(2 * hr)
                } else {
                    Some(12 * US)
                }
            }
            Phase::RspAckMid => {
                out.tcp(now, &e, true, self.cseq, self.sseq, ACK, Opts::Ts, &[])?;
                self.unacked = 0;
                self.phase = Phase::Rsp;
                Some(2 * hr)
            }
            Phase::RspAckEnd => {
                if self.kind == Kind::HttpCheck {
                    // HAProxy closes as soon as it has the status: FIN with the ACK.
                    self.phase = Phase::Close1;
                    return self.step(now, out, t, rng, budget);
                }
                out.tcp(now, &e, true, self.cseq, self.sseq, ACK, Opts::Ts, &[])?;
                if self.rounds > 0 {
                    self.rounds -= 1;
                    self.new_round(rng);
                    self.phase = Phase::Req;
                    Some(self.gap)
                } else {
                    self.phase = if self.close == Close::ClientRst { Phase::ClientRst } else { Phase::Close1 };
                    Some(rng.range(100 * US, 5 * MS))
                }
            }
            Phase::ClientRst => {
                out.tcp(now, &e, true, self.cseq, self.sseq, RST | ACK, Opts::None, &[])?;
                None
            }
            Phase::Bulk => {
                if budget <= 4 {
                    self.phase = Phase::Close1;
                    return self.step(now, out, t, rng, budget);
                }
                if self.unacked >= 2 {
                    out.tcp(now, &e, false, self.sseq, self.cseq, ACK, Opts::Ts, &[])?;
                    self.unacked = 0;
                    return Ok(Some(12 * US));
                }
                let off = (self.bulk_sent % 512) as usize;
                let p = &t.filler[off..off + MSS as usize];
                out.tcp(now, &e, true, self.cseq, self.sseq, ACK, Opts::Ts, p)?;
                self.cseq = self.cseq.wrapping_add(MSS);
                self.bulk_sent += 1;
                self.unacked += 1;
                Some(if self.unacked >= 2 { 5 * US } else { 12 * US })
            }
            Phase::Close1 | Phase::Close2 | Phase::Close3 => {
                let first_c = self.close != Close::ServerFin;
                let (from_c, flags) = match self.phase {
                    Phase::Close1 => (first_c, FIN | ACK),
                    Phase::Close2 => (!first_c, FIN | ACK),
                    _ => (first_c, ACK),
                };
                let (seq, ack) = if from_c { (self.cseq, self.sseq) } else { (self.sseq, self.cseq) };
                out.tcp(now, &e, from_c, seq, ack, flags, Opts::Ts, &[])?;
                if flags & FIN != 0 {
                    if from_c {
                        self.cseq = self.cseq.wrapping_add(1);
                    } else {
                        self.sseq = self.sseq.wrapping_add(1);
                    }
                }
                match self.phase {
                    Phase::Close1 => {
                        self.phase = Phase::Close2;
                        Some(2 * hr)
                    }
                    Phase::Close2 => {
                        self.phase = Phase::Close3;
                        Some(2 * hr)
                    }
                    _ => None,
                }
            }
        })
    }
}

pub struct Args {
    pub out: String,
    pub packets: u64,
    pub snaplen: u32,
    pub seed: u64,
    pub mix: String,
    pub rate: Option<f64>,
    /// Where to write what was generated, per backend and kind (`--truth FILE`).
    pub truth: Option<String>,
}

const USAGE: &str = "usage: gen_capture --out FILE --packets N [--snaplen N] [--seed N] \
[--mix lb|synflood|elephant] [--rate CONNS_PER_S] [--truth FILE]";

fn parse_args() -> Result<Args, String> {
    let mut a =
        Args { out: String::new(), packets: 0, snaplen: 262_144, seed: 1, mix: "lb".into(), rate: None, truth: None };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "-h" || k == "--help" {
            return Err(USAGE.into());
        }
        let v = it.next().ok_or_else(|| format!("{k} needs a value\n{USAGE}"))?;
        let num = |v: &str| v.replace('_', "").parse::<u64>().map_err(|_| format!("{k}: not a number: {v}"));
        match k.as_str() {
            "--out" => a.out = v,
            "--packets" => a.packets = num(&v)?,
            "--snaplen" => a.snaplen = num(&v)?.clamp(60, 262_144) as u32,
            "--seed" => a.seed = num(&v)?,
            "--mix" => a.mix = v,
            "--rate" => a.rate = Some(v.parse::<f64>().map_err(|_| format!("--rate: not a number: {v}"))?),
            "--truth" => a.truth = Some(v),
            _ => return Err(format!("unknown option {k}\n{USAGE}")),
        }
    }
    if a.out.is_empty() || a.packets == 0 {
        return Err(USAGE.into());
    }
    if !matches!(a.mix.as_str(), "lb" | "synflood" | "elephant") {
        return Err(format!("unknown mix {}\n{USAGE}", a.mix));
    }
    Ok(a)
}

const BACKENDS: usize = 20;
const PROBERS: usize = 3;
/// Backend 18 refuses every connection; backend 19 never answers.
const REFUSING: usize = 18;
const DEAD: usize = 19;

/// Backend `i`: 10.0.1.11–20 then 10.0.2.11–20, mostly on port 8080.
fn backend(i: usize) -> ([u8; 16], u16) {
    let port = [8080, 8080, 8080, 8443, 9000][i % 5];
    (v4(10, 0, 1 + (i / 10) as u8, 11 + (i % 10) as u8), port)
}

fn backend_v6(i: usize) -> [u8; 16] {
    v6(0x10, i as u16 + 11)
}

fn ephemeral(rng: &mut Rng) -> u16 {
    rng.range(32768, 60999) as u16
}

/// The `lb` mix: probe streams and traffic arrivals in one event queue, one packet per event.
fn gen_lb(
    a: &Args,
    out: &mut Out,
    rng: &mut Rng,
    counts: &mut [u64; 14],
    starts: &mut Vec<Started>,
) -> std::io::Result<()> {
    let record = a.truth.is_some();
    let t = Templates::new();
    let rate = a.rate.unwrap_or(600.0);
    let streams = BACKENDS * PROBERS;
    let interval = (streams as f64 * 3.0 / rate * 1e9) as i64;
    let healthy = [Kind::HalfOpenRst, Kind::HandshakeRst, Kind::DataRst, Kind::HttpCheck, Kind::ConnectFin];
    // Event ids: 0 traffic arrivals, 1..=streams probe streams, then flows (slot + 1 + streams).
    let base = 1 + streams as u32;
    let mut heap: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::with_capacity(1 << 16);
    let mut flows: Vec<Flow> = Vec::with_capacity(1 << 14);
    let mut free: Vec<u32> = Vec::with_capacity(1 << 14);
    heap.push(Reverse((START, 0)));
    // Each probe stream walks the ephemeral range by two, as Linux's connect() does per destination.
    let mut probe_ports: Vec<u16> = Vec::with_capacity(streams);
    for s in 0..streams {
        heap.push(Reverse((START + rng.below(interval as u64) as i64, 1 + s as u32)));
        probe_ports.push(ephemeral(rng));
    }
    let traffic_mean = 1.5 / rate;
    // Start in steady state: the long-lived connections a real capture would find already open
    // (arrival rate × mean lifetime of about 170 s), seen mid-stream.
    let steady_long = (rate / 1.5 * 0.01 * 170.0) as usize;
    for _ in 0..steady_long {
        let mut f = traffic_flow(Kind::Long, rng);
        f.phase = Phase::Req;
        f.rounds = rng.range(0, 200) as u32;
        counts[Kind::Long as usize] += 1;
        let at = START + rng.range(0, 3 * SEC);
        add_flow(&mut flows, &mut free, &mut heap, base, f, at);
    }
    while out.packets < a.packets {
        let Some(Reverse((now, id))) = heap.pop() else { break };
        let budget = a.packets - out.packets;
        if id >= base {
            let slot = (id - base) as usize;
            match flows[slot].step(now, out, &t, rng, budget)? {
                Some(d) => heap.push(Reverse((now + d.max(1), id))),
                None => free.push(slot as u32),
            }
            continue;
        }
        let f = if id == 0 {
            heap.push(Reverse((now + (rng.exp(traffic_mean) * 1e9) as i64 + 1, 0)));
            let kind = match rng.below(1000) {
                0..=839 => Kind::Http,
                840..=849 => Kind::Long,
                850..=909 => Kind::Mid,
                910..=954 => Kind::Unanswered,
                _ => Kind::Refused,
            };
            traffic_flow(kind, rng)
        } else {
            let s = (id - 1) as usize;
            let (p, b) = (s % PROBERS, s / PROBERS);
            let jitter = rng.range(-500 * US, 500 * US);
            heap.push(Reverse((now + interval + jitter, id)));
            let kind = match b {
                REFUSING => Kind::ProbeRefused,
                DEAD => Kind::ProbeUnanswered,
                _ => healthy[(b + p) % healthy.len()],
            };
            let (bip, bport) = backend(b);
            let port = probe_ports[s];
            probe_ports[s] = if port >= 60997 { 32768 + (port & 1) } else { port + 2 };
            let e = Ends::new(false, v4(10, 1, 0, 1 + p as u8), port, bip, bport);
            Flow::new(e, kind, rng)
        };
        counts[f.kind as usize] += 1;
        if record {
            starts.push(Started { server: (f.e.v6, f.e.s_ip, f.e.sport), kind: f.kind, at: now });
        }
        add_flow(&mut flows, &mut free, &mut heap, base, f, now);
    }
    Ok(())
}

fn v6_addr_client(c: u16) -> [u8; 16] {
    v6(0xa, c)
}

/// A traffic connection of `kind` from one of 4096 clients to its backend: refusals go to the
/// refusing backend, unanswered SYNs to the dead one, the rest to backends 0..18 (some hotter).
fn traffic_flow(kind: Kind, rng: &mut Rng) -> Flow {
    let b = match kind {
        Kind::Refused => REFUSING,
        Kind::Unanswered => DEAD,
        _ => (rng.below(18 * 18) as f64).sqrt() as usize,
    };
    let v6 = rng.chance(0.04) && kind != Kind::Refused && kind != Kind::Unanswered;
    let client = rng.below(4096) as u16;
    let (bip, bport) = backend(b);
    let e = if v6 {
        Ends::new(true, v6_addr_client(client), ephemeral(rng), backend_v6(b), bport)
    } else {
        Ends::new(false, v4(172, 16, (client >> 8) as u8, client as u8), ephemeral(rng), bip, bport)
    };
    Flow::new(e, kind, rng)
}

/// Puts a flow in a free slot and schedules its first packet at `at`.
fn add_flow(
    flows: &mut Vec<Flow>,
    free: &mut Vec<u32>,
    heap: &mut BinaryHeap<Reverse<(i64, u32)>>,
    base: u32,
    f: Flow,
    at: i64,
) {
    let slot = match free.pop() {
        Some(s) => {
            flows[s as usize] = f;
            s
        }
        None => {
            flows.push(f);
            (flows.len() - 1) as u32
        }
    };
    heap.push(Reverse((at, base + slot)));
}

fn gen_synflood(a: &Args, out: &mut Out, rng: &mut Rng, counts: &mut [u64; 14]) -> std::io::Result<()> {
    let rate = a.rate.unwrap_or(500_000.0);
    let mean = 1e9 / rate;
    let (bip, bport) = (v4(10, 0, 0, 11), 8080);
    let mut now = START;
    while out.packets < a.packets {
        let src = loop {
            let x = rng.u32().to_be_bytes();
            if (1..=223).contains(&x[0]) && x[0] != 10 && x[0] != 127 {
                break x;
            }
        };
        let e = Ends::new(false, v4(src[0], src[1], src[2], src[3]), rng.range(1024, 65535) as u16, bip, bport);
        out.tcp(now, &e, true, rng.u32(), 0, SYN, Opts::Syn, &[])?;
        counts[Kind::Flood as usize] += 1;
        now += (rng.exp(mean) as i64).max(1);
    }
    Ok(())
}

fn gen_elephant(a: &Args, out: &mut Out, rng: &mut Rng, counts: &mut [u64; 14]) -> std::io::Result<()> {
    let t = Templates::new();
    let (bip, bport) = backend(0);
    let e = Ends::new(false, v4(172, 16, 0, 1), 45678, bip, bport);
    let mut f = Flow::new(e, Kind::Bulk, rng);
    counts[Kind::Bulk as usize] += 1;
    let mut now = START;
    while out.packets < a.packets {
        let budget = a.packets - out.packets;
        match f.step(now, out, &t, rng, budget)? {
            Some(d) => now += d,
            None => break,
        }
    }
    Ok(())
}

/// One connection the generator started: its server, what it is, when.
pub struct Started {
    server: (bool, [u8; 16], u16),
    kind: Kind,
    at: i64,
}

/// Connections that start this long before the capture's last packet are complete in it.
pub const TRUTH_MARGIN: i64 = 2 * SEC;

/// The name hcleak gives a generated connection of `kind` when it is judged right: probes by
/// their kind, client traffic (refused and unanswered client SYNs included) as `traffic`.
fn truth_name(kind: Kind) -> &'static str {
    match kind {
        Kind::HalfOpenRst => "halfopen_rst",
        Kind::HandshakeRst => "handshake_rst",
        Kind::DataRst => "data_rst",
        Kind::HttpCheck => "http_check",
        Kind::ConnectFin => "connect_fin",
        Kind::ProbeRefused => "refused",
        Kind::ProbeUnanswered => "unanswered",
        _ => "traffic",
    }
}

/// Per backend (`ip:port`), per name, the connections that started at least [`TRUTH_MARGIN`]
/// before the last packet; and that instant, as `window_end_ns`.
fn truth_json(starts: &[Started], last_ts: i64) -> String {
    use std::collections::BTreeMap;
    let end = last_ts - TRUTH_MARGIN;
    let mut per: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for s in starts.iter().filter(|s| s.at < end) {
        let (v6, ip, port) = s.server;
        let addr = if v6 {
            format!("[{}]:{port}", std::net::Ipv6Addr::from(ip))
        } else {
            format!("{}:{port}", std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
        };
        *per.entry(addr).or_default().entry(truth_name(s.kind)).or_default() += 1;
    }
    let mut o = format!("{{\"window_end_ns\": {end}, \"backends\": {{");
    for (i, (addr, kinds)) in per.iter().enumerate() {
        let ks: Vec<String> = kinds.iter().map(|(k, n)| format!("\"{k}\": {n}")).collect();
        o.push_str(&format!("{}\n  \"{addr}\": {{{}}}", if i > 0 { "," } else { "" }, ks.join(", ")));
    }
    o.push_str("\n}}\n");
    o
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(summary) => {
            eprintln!("gen_capture: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_capture: {e}");
            ExitCode::from(1)
        }
    }
}

/// Writes the capture (and the truth file, if asked); returns a one-line summary.
pub fn run(a: &Args) -> Result<String, String> {
    let started = std::time::Instant::now();
    let mut out = Out::new(&a.out, a.snaplen).map_err(|e| format!("cannot write {}: {e}", a.out))?;
    let mut rng = Rng::new(a.seed);
    let mut counts = [0u64; 14];
    let mut starts = Vec::new();
    let r = match a.mix.as_str() {
        "lb" => gen_lb(a, &mut out, &mut rng, &mut counts, &mut starts),
        "synflood" => gen_synflood(a, &mut out, &mut rng, &mut counts),
        _ => gen_elephant(a, &mut out, &mut rng, &mut counts),
    };
    r.and_then(|_| out.w.flush()).map_err(|e| format!("writing {}: {e}", a.out))?;
    if let Some(path) = &a.truth {
        std::fs::write(path, truth_json(&starts, out.last_ts)).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    let span = (out.last_ts - START) as f64 / 1e9;
    let conns: u64 = counts.iter().sum();
    let probes: u64 = counts[..7].iter().sum();
    let kinds: Vec<String> =
        KINDS.iter().filter(|k| counts[**k as usize] > 0).map(|k| format!("{:?} {}", k, counts[*k as usize])).collect();
    Ok(format!(
        "{} packets, {} bytes in file, {} bytes on the wire, {:.1} s of capture, {} connections started \
({} probes): {}; {:.1} s",
        out.packets,
        out.file_bytes,
        out.wire_bytes,
        span,
        conns,
        probes,
        kinds.join(", "),
        started.elapsed().as_secs_f64()
    ))
}
