//! Flow table: rebuilds every TCP connection from segments, with Zeek's conn.log semantics.
//!
//! Mechanism only: each connection keeps two endpoint state machines (Zeek's TCP_ENDPOINT_*
//! states), the `history` letters, packet counts, and the timestamps later stages need (handshake,
//! first data each way, FIN/RST each way). `conn_state` is derived from the endpoint states when a
//! connection is finished, exactly as Zeek's `conn_state()` policy does. Classification (what a
//! User-Agent or a shape means) lives in `classify`.
//!
//! Connections are finished (handed to the caller) when Zeek would remove them — five seconds of
//! packet time after a close (so late retransmissions still land in the right record), five seconds
//! after an unanswered SYN, after the inactivity timeout, or when the 5-tuple is reused by a new SYN
//! — and when the table is full (oldest first). All clocks are packet time.

use crate::decode::{Addr, Segment, Ts, ACK, FIN, RST, SYN};
use std::hash::BuildHasher;
use std::net::IpAddr;

pub const SEC: Ts = 1_000_000_000;

/// Default cap on connections tracked at once: about 130 MiB of flow records at most (~500 bytes each).
pub const DEFAULT_MAX_FLOWS: usize = 1 << 18;

/// Zeek's per-endpoint TCP state (`TCP_ENDPOINT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// Zeek's connection summary (`conn_state` in conn.log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnState {
    S0,
    S1,
    SF,
    REJ,
    S2,
    S3,
    RSTO,
    RSTR,
    RSTOS0,
    RSTRH,
    SH,
    SHR,
    OTH,
}

impl ConnState {
    pub const ALL: [ConnState; 13] = [
        ConnState::S0,
        ConnState::S1,
        ConnState::SF,
        ConnState::REJ,
        ConnState::S2,
        ConnState::S3,
        ConnState::RSTO,
        ConnState::RSTR,
        ConnState::RSTOS0,
        ConnState::RSTRH,
        ConnState::SH,
        ConnState::SHR,
        ConnState::OTH,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::S0 => "S0",
            ConnState::S1 => "S1",
            ConnState::SF => "SF",
            ConnState::REJ => "REJ",
            ConnState::S2 => "S2",
            ConnState::S3 => "S3",
            ConnState::RSTO => "RSTO",
            ConnState::RSTR => "RSTR",
            ConnState::RSTOS0 => "RSTOS0",
            ConnState::RSTRH => "RSTRH",
            ConnState::SH => "SH",
            ConnState::SHR => "SHR",
            ConnState::OTH => "OTH",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            ConnState::S0 => "SYN, no reply",
            ConnState::S1 => "established, not closed",
            ConnState::SF => "normal open and close",
            ConnState::REJ => "SYN rejected (refused)",
            ConnState::S2 => "established, originator closed, no reply",
            ConnState::S3 => "established, responder closed, no reply",
            ConnState::RSTO => "established, originator reset",
            ConnState::RSTR => "established, responder reset",
            ConnState::RSTOS0 => "originator SYN then RST, no SYN-ACK",
            ConnState::RSTRH => "responder SYN-ACK then RST, no SYN",
            ConnState::SH => "originator SYN then FIN, no SYN-ACK",
            ConnState::SHR => "responder SYN-ACK then FIN, no SYN",
            ConnState::OTH => "no SYN seen (mid-stream)",
        }
    }
}

/// Why a connection record was finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Closed (FIN/RST) and quiet for the close delay.
    Closed,
    /// SYN never answered within the attempt delay.
    Attempt,
    /// No packet for the inactivity timeout.
    Idle,
    /// A new SYN reused the 5-tuple.
    Reused,
    /// The table was full; the least recently active connection was pushed out.
    Evicted,
    /// The capture ended with the connection still in the table.
    EndOfInput,
}

/// Tunables. Defaults are Zeek's, so `--flows` output is comparable with conn.log.
#[derive(Clone, Copy, Debug)]
pub struct FlowConfig {
    pub close_delay: Ts,
    pub attempt_delay: Ts,
    pub handshake_idle: Ts,
    pub idle: Ts,
    pub max_flows: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            close_delay: 5 * SEC,
            attempt_delay: 5 * SEC,
            handshake_idle: 60 * SEC,
            idle: 300 * SEC,
            max_flows: DEFAULT_MAX_FLOWS,
        }
    }
}

// History bits, Zeek's HIST_* (originator in the low half, responder shifted by 16).
const HIST_SYN: u32 = 0x1;
const HIST_FIN: u32 = 0x2;
const HIST_RST: u32 = 0x4;
const HIST_FIN_RST: u32 = 0x8;
const HIST_DATA: u32 = 0x10;
const HIST_ACK: u32 = 0x20;
const HIST_MULTI: u32 = 0x40;

const HISTORY_CAP: usize = 24;
/// Bytes of the first payload each way kept for classification (HTTP request line, status line).
pub const REQ_CAP: usize = 64;
pub const RSP_CAP: usize = 16;

/// A segment's SYN, FIN, RST and ACK bits.
type Flags = (bool, bool, bool, bool);

/// Sequence-space comparison: positive when `a` is after `b`.
#[inline]
fn seq_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// One side of a connection: Zeek's TCP_Endpoint plus a minimal reassembly tracker for gaps.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub state: TcpState,
    prev_state: TcpState,
    start_seq: u32,
    last_seq: u32,
    ack_seq: u32,
    did_close: bool,
    fin_cnt: u16,
    rst_cnt: u16,
    fin_seq: u32,
    hist_last_syn: u32,
    hist_last_fin: u32,
    hist_last_rst: u32,
    rxmt_cnt: u32,
    win0_cnt: u32,
    gap_cnt: u32,
    // Reassembly (relative sequence numbers): next byte expected, trim point, one held block.
    last_reassem: u32,
    trim_seq: u32,
    held: Option<(u32, u32)>,
    pub pkts: u32,
    /// Payload bytes on the wire, retransmissions included.
    pub payload_bytes: u64,
}

impl Endpoint {
    fn new() -> Self {
        Endpoint {
            state: TcpState::Inactive,
            prev_state: TcpState::Inactive,
            start_seq: 0,
            last_seq: 0,
            ack_seq: 0,
            did_close: false,
            fin_cnt: 0,
            rst_cnt: 0,
            fin_seq: 0,
            hist_last_syn: 0,
            hist_last_fin: 0,
            hist_last_rst: 0,
            rxmt_cnt: 0,
            win0_cnt: 0,
            gap_cnt: 0,
            last_reassem: 1,
            trim_seq: 0,
            held: None,
            pkts: 0,
            payload_bytes: 0,
        }
    }

    fn set_state(&mut self, s: TcpState) {
        if s != self.state {
            self.prev_state = self.state;
            self.state = s;
        }
    }

    fn init_seqs(&mut self, start: u32, last: u32) {
        self.start_seq = start;
        self.ack_seq = start;
        self.last_seq = last;
    }

    fn rel(&self, seq: u32) -> u32 {
        seq.wrapping_sub(self.start_seq)
    }

    /// Zeek's `Size()`: sequence space used, without SYN and FIN octets.
    fn size(&self, peer: &Endpoint) -> u64 {
        if self.prev_state == TcpState::SynSent && self.state == TcpState::Reset && peer.state == TcpState::Inactive {
            return 0;
        }
        let last = self.rel(self.last_seq);
        let ack = self.rel(self.ack_seq);
        let mut size = u64::from(if seq_delta(self.last_seq, self.ack_seq) > 0 { last } else { ack });
        // Neither the SYN nor the FIN octet is payload.
        size = size.saturating_sub(1);
        if self.fin_cnt > 0 {
            size = size.saturating_sub(1);
        }
        size
    }

    fn is_clean(&self) -> bool {
        self.state == TcpState::Established
            || (self.state == TcpState::Closed && self.prev_state == TcpState::Established)
    }
}

/// A bounded letter trail; letters past the cap are dropped (Zeek's grows without bound).
#[derive(Clone, Copy)]
pub struct History {
    buf: [u8; HISTORY_CAP],
    len: u8,
}

impl History {
    fn new() -> Self {
        History { buf: [0; HISTORY_CAP], len: 0 }
    }
    fn push(&mut self, c: u8) {
        if usize::from(self.len) < HISTORY_CAP {
            self.buf[usize::from(self.len)] = c;
            self.len += 1;
        }
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A packet time that may be unset, in 8 bytes instead of `Option<Ts>`'s 16: flow records are
/// kept for every live connection, so their size is the table's memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stamp(Ts);

impl Default for Stamp {
    fn default() -> Self {
        Stamp(Ts::MIN)
    }
}

impl std::fmt::Debug for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl Stamp {
    pub const NONE: Stamp = Stamp(Ts::MIN);
    #[inline]
    pub fn get(self) -> Option<Ts> {
        (self.0 != Ts::MIN).then_some(self.0)
    }
    #[inline]
    pub fn is_some(self) -> bool {
        self.0 != Ts::MIN
    }
    #[inline]
    pub fn is_none(self) -> bool {
        self.0 == Ts::MIN
    }
    pub fn is_some_and(self, f: impl FnOnce(Ts) -> bool) -> bool {
        self.get().is_some_and(f)
    }
    pub fn is_none_or(self, f: impl FnOnce(Ts) -> bool) -> bool {
        self.get().is_none_or(f)
    }
    /// Sets the time if unset (the first occurrence wins).
    #[inline]
    pub fn first(&mut self, t: Ts) {
        if self.0 == Ts::MIN {
            self.0 = t;
        }
    }
}

impl IntoIterator for Stamp {
    type Item = Ts;
    type IntoIter = std::option::IntoIter<Ts>;
    fn into_iter(self) -> Self::IntoIter {
        self.get().into_iter()
    }
}

/// Facts the classifier needs, recorded as packets arrive. Times are packet times.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts {
    /// First SYN from the originator.
    pub syn: Stamp,
    pub syn_count: u16,
    /// First SYN-ACK from the responder.
    pub synack: Stamp,
    pub synack_count: u16,
    /// Originator's bare ACK completing the handshake, before it sent any data.
    pub handshake_ack: Stamp,
    pub orig_data: Stamp,
    pub resp_data: Stamp,
    pub orig_fin: Stamp,
    pub resp_fin: Stamp,
    pub orig_rst: Stamp,
    pub resp_rst: Stamp,
    /// The responder acknowledged the originator's FIN (so its kernel holds the socket in CLOSE_WAIT
    /// until the application closes it).
    pub resp_acked_orig_fin: Stamp,
    /// What the first request's User-Agent header names ([`crate::http::agent_token`]): 0 when
    /// it had none. Read once per connection from the whole payload, since the header may lie
    /// beyond the bytes kept; what the name means is the classifier's business.
    pub user_agent: u8,
    /// The server software the first response named in its `Server:` header (index + 1 into
    /// [`crate::http::SERVER_TOKENS`]; 0 when none).
    pub server: u8,
}

/// One TCP connection, live in the table or finished.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Conn {
    // Fields every packet reads or writes come first and together (hence `repr(C)`): the
    // records of thousands of connections compete for cache, and a packet should pull in as few
    // lines of its record as possible.
    pub orig: Endpoint,
    pub resp: Endpoint,
    pub last_ts: Ts,
    /// Zeek's LastTime: frozen once both sides have closed.
    last_time: Ts,
    attempt_at: Stamp,
    delete_at: Stamp,
    hist_seen: u32,
    is_partial: bool,
    first_seen: u8,
    /// The originator is the table key's `a` side (so direction is one comparison per packet).
    orig_is_a: bool,
    pub history: History,
    pub facts: Facts,
    // Written once, read when the connection is finished.
    pub first_ts: Ts,
    pub end: EndReason,
    pub orig_h: IpAddr,
    pub orig_p: u16,
    pub resp_h: IpAddr,
    pub resp_p: u16,
    pub req: [u8; REQ_CAP],
    pub req_len: u8,
    pub rsp: [u8; RSP_CAP],
    pub rsp_len: u8,
}

impl Conn {
    fn new(seg: &Segment<'_>, cfg_flip: bool, orig_is_a: bool) -> Conn {
        let (orig_h, orig_p, resp_h, resp_p) =
            if cfg_flip { (seg.dst, seg.dport, seg.src, seg.sport) } else { (seg.src, seg.sport, seg.dst, seg.dport) };
        let (orig_h, resp_h) = (orig_h.ip(), resp_h.ip());
        let mut c = Conn {
            orig_h,
            orig_p,
            resp_h,
            resp_p,
            first_ts: seg.ts,
            last_ts: seg.ts,
            orig: Endpoint::new(),
            resp: Endpoint::new(),
            history: History::new(),
            facts: Facts::default(),
            req: [0; REQ_CAP],
            req_len: 0,
            rsp: [0; RSP_CAP],
            rsp_len: 0,
            end: EndReason::EndOfInput,
            hist_seen: 0,
            is_partial: false,
            first_seen: 0,
            last_time: seg.ts,
            attempt_at: Stamp::NONE,
            delete_at: Stamp::NONE,
            orig_is_a,
        };
        if cfg_flip {
            c.history.push(b'^');
        }
        c
    }

    pub fn conn_state(&self) -> ConnState {
        use TcpState::*;
        let (os, rs) = (self.orig.state, self.resp.state);
        let o_inactive = matches!(os, Inactive | Partial);
        let r_inactive = matches!(rs, Inactive | Partial);
        if rs == Reset {
            if os == SynSent
                || os == SynAckSent
                || (os == Reset && self.orig.size(&self.resp) == 0 && self.resp.size(&self.orig) == 0)
            {
                ConnState::REJ
            } else if o_inactive {
                ConnState::RSTRH
            } else {
                ConnState::RSTR
            }
        } else if os == Reset {
            if r_inactive {
                if rstos0_history(self.history.as_str()) {
                    ConnState::RSTOS0
                } else {
                    ConnState::OTH
                }
            } else {
                ConnState::RSTO
            }
        } else if rs == Closed && os == Closed {
            ConnState::SF
        } else if os == Closed {
            if r_inactive {
                ConnState::SH
            } else {
                ConnState::S2
            }
        } else if rs == Closed {
            if o_inactive {
                ConnState::SHR
            } else {
                ConnState::S3
            }
        } else if os == SynSent && rs == Inactive {
            ConnState::S0
        } else if os == Established && rs == Established {
            ConnState::S1
        } else {
            ConnState::OTH
        }
    }

    /// Payload bytes in sequence space (retransmissions counted once), as Zeek's orig_bytes.
    pub fn orig_bytes(&self) -> u64 {
        self.orig.size(&self.resp)
    }
    pub fn resp_bytes(&self) -> u64 {
        self.resp.size(&self.orig)
    }
    pub fn request(&self) -> &[u8] {
        &self.req[..usize::from(self.req_len)]
    }
    pub fn response(&self) -> &[u8] {
        &self.rsp[..usize::from(self.rsp_len)]
    }

    fn is_closed(&self) -> bool {
        self.orig.did_close || self.resp.did_close
    }

    /// Packet time at which Zeek would drop this connection if nothing else arrives.
    #[inline]
    fn expire_at(&self, cfg: &FlowConfig) -> Ts {
        let handshake = |s: TcpState| matches!(s, TcpState::Inactive | TcpState::SynSent | TcpState::SynAckSent);
        let idle = if handshake(self.orig.state) && handshake(self.resp.state) { cfg.handshake_idle } else { cfg.idle };
        let mut t = self.last_time.saturating_add(idle);
        if let Some(a) = self.attempt_at.get() {
            if matches!(self.orig.state, TcpState::SynSent | TcpState::SynAckSent)
                && self.resp.state == TcpState::Inactive
            {
                t = t.min(a);
            }
        }
        if let Some(d) = self.delete_at.get() {
            t = t.min(d);
        }
        t
    }

    fn check_history(&mut self, is_orig: bool, mask: u32, code: u8) -> bool {
        let (mask, code) = if is_orig { (mask, code) } else { (mask << 16, code.to_ascii_lowercase()) };
        if self.hist_seen & mask == 0 {
            self.hist_seen |= mask;
            self.history.push(code);
            false
        } else {
            true
        }
    }

    fn add_history(&mut self, is_orig: bool, code: u8) {
        self.history.push(if is_orig { code } else { code.to_ascii_lowercase() });
    }

    /// Zeek's ScaledHistoryEntry: the letter repeats at the 1st, 10th, 100th … occurrence.
    fn scaled(&mut self, is_orig: bool, code: u8, count: u32) {
        if is_power_of_ten(count) {
            self.add_history(is_orig, code);
        }
    }

    fn ep(&mut self, is_orig: bool) -> (&mut Endpoint, &mut Endpoint) {
        if is_orig {
            (&mut self.orig, &mut self.resp)
        } else {
            (&mut self.resp, &mut self.orig)
        }
    }

    /// Zeek's IsReuse: does this SYN start a new connection on the same 5-tuple?
    fn is_reuse(&self, seg: &Segment<'_>) -> bool {
        if !seg.has(SYN) {
            return false;
        }
        let conn_orig = if seg.has(ACK) {
            if self.orig.state != TcpState::Inactive {
                return false;
            }
            &self.resp
        } else {
            &self.orig
        };
        if !self.is_closed() {
            if seg.seq == conn_orig.start_seq {
                return false;
            }
            if !seg.has(ACK)
                && conn_orig.state == TcpState::SynAckSent
                && self.resp.state == TcpState::Inactive
                && seg.seq == self.resp.start_seq
            {
                return false;
            }
        }
        true
    }

    /// Applies one segment sent by the originator (`is_orig`) or the responder.
    #[inline]
    fn update(&mut self, seg: &Segment<'_>, is_orig: bool, cfg: &FlowConfig) {
        // Most segments are plain ACKs, with or without data. A copy of the code compiled for
        // exactly those flags drops every SYN/FIN/RST branch from the hot path; there is still
        // one description of what a segment does, below.
        if seg.flags & (SYN | FIN | RST | ACK) == ACK {
            self.update_with::<true>(seg, is_orig, cfg)
        } else {
            self.update_with::<false>(seg, is_orig, cfg)
        }
    }

    /// Follows Zeek's TCPAnalyzer::DeliverPacket step by step. `PLAIN`: the segment is known to
    /// carry ACK and none of SYN, FIN, RST.
    #[inline(always)]
    fn update_with<const PLAIN: bool>(&mut self, seg: &Segment<'_>, is_orig: bool, cfg: &FlowConfig) {
        let flags = seg.flags;
        let (syn, fin, rst, ack) = if PLAIN {
            (false, false, false, true)
        } else {
            (flags & SYN != 0, flags & FIN != 0, flags & RST != 0, flags & ACK != 0)
        };
        let fl = (syn, fin, rst, ack);
        let len = seg.payload_len;
        let now = seg.ts;
        self.last_ts = self.last_ts.max(now);

        // SetPartialStatus
        if is_orig {
            if self.first_seen & 1 == 0 {
                self.is_partial = !syn || ack;
            }
        } else if self.first_seen & 2 == 0 && !self.is_partial {
            self.is_partial = !syn;
        }

        let mut seg_len = len.wrapping_add(u32::from(syn)).wrapping_add(u32::from(fin));
        if rst {
            seg_len = seg_len.wrapping_sub(len);
        }
        let seq_one_past = seg.seq.wrapping_add(seg_len);

        // init_endpoint
        {
            let (ep, _) = self.ep(is_orig);
            ep.pkts += 1;
            ep.payload_bytes += u64::from(len);
            match ep.state {
                TcpState::Inactive => {
                    if syn {
                        ep.init_seqs(seg.seq, seq_one_past);
                    } else {
                        ep.init_seqs(seg.seq.wrapping_sub(1), seg.seq);
                    }
                }
                TcpState::SynSent | TcpState::SynAckSent => {
                    if syn && seg.seq != ep.start_seq {
                        ep.init_seqs(seg.seq, seq_one_past);
                    }
                }
                TcpState::Established | TcpState::Partial => {
                    if syn {
                        ep.init_seqs(seg.seq, seq_one_past);
                    }
                }
                TcpState::Reset => {
                    if syn && ep.prev_state == TcpState::Inactive {
                        ep.init_seqs(seg.seq, seq_one_past);
                    }
                }
                TcpState::Closed => {}
            }
        }

        let (rel_seq, seq_underflow) = {
            let (ep, _) = self.ep(is_orig);
            let d = seq_delta(seg.seq, ep.start_seq);
            (ep.rel(seg.seq), d < 0)
        };

        self.update_history(is_orig, fl, rel_seq, len);

        // update_window: a zero window is interesting unless resets or the peer's FIN make it moot.
        if seg.window == Some(0) && !rst {
            let (ep, peer) = self.ep(is_orig);
            if peer.state != TcpState::Closed && ep.state != TcpState::Reset {
                ep.win0_cnt += 1;
                let n = ep.win0_cnt;
                self.scaled(is_orig, b'W', n);
            }
        }

        if !(self.orig.did_close && self.resp.did_close) {
            self.last_time = now;
        }

        {
            let (ep, _) = self.ep(is_orig);
            if fin {
                ep.fin_cnt = ep.fin_cnt.saturating_add(1);
                ep.fin_seq = rel_seq.wrapping_add(seg_len);
            }
            if rst {
                ep.rst_cnt = ep.rst_cnt.saturating_add(1);
            }
        }

        let mut rel_ack: u32 = 0;
        if ack {
            let peer = self.ep(is_orig).1;
            if peer.state == TcpState::Inactive {
                rel_ack = 1;
                let a = seg.ack.wrapping_sub(1);
                peer.init_seqs(a, a);
            } else if seq_delta(seg.ack, peer.start_seq) < 0 {
                rel_ack = 0;
            } else {
                rel_ack = peer.rel(seg.ack);
                if !rst {
                    let d = seq_delta(seg.ack, peer.ack_seq);
                    if !(seg.ack == 0 && d > 1_048_576) && d > 0 {
                        peer.ack_seq = seg.ack;
                    }
                }
            }
        }

        // update_last_seq
        let retransmit = {
            let (ep, _) = self.ep(is_orig);
            let delta_last = seq_delta(seq_one_past, ep.last_seq);
            if (syn || rst) && !(-1_048_576..=1_048_576).contains(&delta_last) {
                false
            } else if fin && ep.last_seq == ep.start_seq.wrapping_add(1) {
                ep.last_seq = seq_one_past;
                false
            } else if ep.state == TcpState::Reset {
                false
            } else if delta_last > 0 {
                ep.last_seq = seq_one_past;
                false
            } else {
                len > 0
            }
        };
        if retransmit {
            let (ep, _) = self.ep(is_orig);
            ep.rxmt_cnt += 1;
            let n = ep.rxmt_cnt;
            self.scaled(is_orig, b'T', n);
        }

        let do_close = self.update_state_machine(is_orig, fl, seg, now, cfg);

        if ack {
            self.ack_received(!is_orig, rel_ack);
        }
        self.first_seen |= if is_orig { 1 } else { 2 };

        if len > 0 && !rst && !seq_underflow {
            let rel_data = if syn { rel_seq.wrapping_add(1) } else { rel_seq };
            self.data_sent(is_orig, rel_data, len);
        }

        if do_close {
            self.connection_closed(is_orig, cfg);
        }

        self.record_facts(is_orig, fl, seg);
    }

    #[inline(always)]
    fn update_history(&mut self, is_orig: bool, (syn, fin, rst, ack): Flags, rel_seq: u32, len: u32) {
        let bits = u8::from(syn) + u8::from(fin) + u8::from(rst);
        if bits > 1 {
            if fin && rst {
                self.check_history(is_orig, HIST_FIN_RST, b'I');
            } else {
                self.check_history(is_orig, HIST_MULTI, b'Q');
            }
        } else if bits == 1 {
            if syn {
                let code = if ack { b'H' } else { b'S' };
                let last = if is_orig { self.orig.hist_last_syn } else { self.resp.hist_last_syn };
                if self.check_history(is_orig, HIST_SYN, code) && rel_seq != last {
                    self.add_history(is_orig, code);
                }
                self.ep(is_orig).0.hist_last_syn = rel_seq;
            }
            if fin {
                let end = rel_seq.wrapping_add(len);
                let last = if is_orig { self.orig.hist_last_fin } else { self.resp.hist_last_fin };
                if self.check_history(is_orig, HIST_FIN, b'F') && end != last {
                    self.add_history(is_orig, b'F');
                }
                self.ep(is_orig).0.hist_last_fin = end;
            }
            if rst {
                let last = if is_orig { self.orig.hist_last_rst } else { self.resp.hist_last_rst };
                if self.check_history(is_orig, HIST_RST, b'R') && rel_seq != last {
                    self.add_history(is_orig, b'R');
                }
                self.ep(is_orig).0.hist_last_rst = rel_seq;
            }
        } else if len > 0 {
            self.check_history(is_orig, HIST_DATA, b'D');
        } else if ack {
            self.check_history(is_orig, HIST_ACK, b'A');
        }
    }

    /// The endpoint state machine (Zeek's UpdateStateMachine). Returns whether the endpoint closed.
    #[inline(always)]
    fn update_state_machine(
        &mut self,
        is_orig: bool,
        (syn, fin, rst, ack): Flags,
        seg: &Segment<'_>,
        now: Ts,
        cfg: &FlowConfig,
    ) -> bool {
        use TcpState::*;
        let len = seg.payload_len;
        let mut do_close = false;
        let state = self.ep(is_orig).0.state;
        match state {
            Inactive => {
                if syn {
                    if is_orig {
                        self.orig.set_state(if ack { SynAckSent } else { SynSent });
                        if self.attempt_at.is_none() {
                            self.attempt_at.first(now.saturating_add(cfg.attempt_delay));
                        }
                    } else {
                        let (ep, peer) = self.ep(false);
                        if !ack && peer.state == SynAckSent && seg.seq == ep.start_seq {
                            // SYN / SYN-ACK reversal: Zeek flips roles here. Rare enough that we
                            // only establish the connection and keep the roles.
                            self.is_partial = false;
                            self.orig.set_state(Established);
                        }
                        if self.orig.state == SynSent {
                            self.orig.set_state(Established);
                        }
                        self.resp.set_state(Established);
                    }
                }
                if fin {
                    self.ep(is_orig).0.set_state(Closed);
                    do_close = true;
                }
                if rst {
                    self.ep(is_orig).0.set_state(Reset);
                    do_close = true;
                }
                if self.ep(is_orig).0.state == Inactive {
                    let orig_state = self.orig.state;
                    let (ep, peer) = self.ep(is_orig);
                    if !is_orig && len == 0 && orig_state == SynSent {
                        // An ACK of the SYN before the SYN-ACK: not yet a partial connection.
                    } else if ack && peer.state == Established {
                        ep.set_state(Established);
                        self.is_partial = false;
                    } else {
                        ep.set_state(Partial);
                    }
                }
            }
            SynSent | SynAckSent => {
                if fin {
                    self.ep(is_orig).0.set_state(Closed);
                    do_close = true;
                }
                if rst {
                    self.ep(is_orig).0.set_state(Reset);
                    do_close = true;
                }
            }
            Established | Partial => {
                let (ep, peer) = self.ep(is_orig);
                if syn && ep.state == Partial && peer.state == Inactive && !ack {
                    ep.set_state(SynSent);
                }
                if fin && !rst {
                    ep.set_state(Closed);
                    if peer.state == Reset && peer.prev_state == Closed {
                        // FIN then RST from the peer was a normal close after all.
                        peer.set_state(Closed);
                    }
                    do_close = true;
                }
                if rst {
                    ep.set_state(Reset);
                    do_close = true;
                }
            }
            Closed => {
                let (ep, peer) = self.ep(is_orig);
                if rst && peer.state != Closed {
                    ep.set_state(Reset);
                    if !ep.did_close {
                        do_close = true;
                    }
                    // Zeek's reset timer: a RST after our own FIN ends the record soon.
                    let at = now.saturating_add(cfg.close_delay);
                    self.delete_at = Stamp(self.delete_at.get().map_or(at, |d| d.min(at)));
                }
            }
            Reset => {}
        }
        do_close
    }

    /// Zeek's ConnectionClosed: marks the endpoint closed and, once the close is complete,
    /// schedules the record's removal after the close delay.
    fn connection_closed(&mut self, is_orig: bool, cfg: &FlowConfig) {
        let last_time = self.last_time;
        let (ep, peer) = self.ep(is_orig);
        if ep.did_close {
            return;
        }
        ep.did_close = true;
        let complete = ep.state == TcpState::Reset || peer.did_close || peer.state == TcpState::Inactive;
        if complete {
            self.delete_at = Stamp(last_time.saturating_add(cfg.close_delay));
        }
    }

    /// Data from `is_orig`'s side entering its reassembler.
    fn data_sent(&mut self, is_orig: bool, seq: u32, len: u32) {
        let ep = self.ep(is_orig).0;
        let ack = ep.rel(ep.ack_seq);
        let mut seq = seq;
        let upper = seq.wrapping_add(len);
        if seq_delta(seq, ack) < 0 {
            if seq_delta(upper, ack) <= 0 {
                return;
            }
            seq = ack;
        }
        if seq_delta(upper, ep.last_reassem) <= 0 {
            return;
        }
        if seq_delta(seq, ep.last_reassem) <= 0 {
            ep.last_reassem = upper;
            if let Some((s, e)) = ep.held {
                if seq_delta(s, ep.last_reassem) <= 0 {
                    if seq_delta(e, ep.last_reassem) > 0 {
                        ep.last_reassem = e;
                    }
                    ep.held = None;
                }
            }
        } else {
            // Out of order: hold one block (merging with the held one when they touch).
            ep.held = Some(match ep.held {
                None => (seq, upper),
                Some((s, e)) if seq_delta(seq, e) <= 0 && seq_delta(s, upper) <= 0 => {
                    (if seq_delta(seq, s) < 0 { seq } else { s }, if seq_delta(upper, e) > 0 { upper } else { e })
                }
                Some((s, e)) => {
                    if seq_delta(seq, s) < 0 {
                        (seq, upper)
                    } else {
                        (s, e)
                    }
                }
            });
        }
    }

    /// The peer acknowledged `side`'s data up to `seq`: anything acknowledged but never seen is a
    /// content gap (Zeek's AckReceived → TrimToSeq → Undelivered).
    #[inline(always)]
    fn ack_received(&mut self, side_is_orig: bool, seq: u32) {
        let is_partial = self.is_partial;
        let (ep, peer) = self.ep(side_is_orig);
        let mut seq = seq;
        if ep.fin_cnt > 0 && seq_delta(seq, ep.fin_seq) >= 0 {
            seq = ep.fin_seq.wrapping_sub(1);
        }
        if seq_delta(seq, ep.trim_seq) <= 0 {
            return;
        }
        let mut gaps = 0;
        if seq_delta(seq, ep.last_reassem) > 0 && !(seq <= 2 && is_partial) {
            if let Some((s, e)) = ep.held {
                if seq_delta(s, seq) < 0 && seq_delta(s, ep.last_reassem) > 0 {
                    gaps += 1;
                    ep.last_reassem = e;
                    ep.held = None;
                }
            }
            if seq_delta(seq, ep.last_reassem) > 0 {
                gaps += 1;
            }
            if seq_delta(seq, ep.last_reassem) > 0 {
                ep.last_reassem = seq;
            }
        }
        ep.trim_seq = seq;
        if let Some((_, e)) = ep.held {
            if seq_delta(e, seq) <= 0 {
                ep.held = None;
            }
        }
        if gaps > 0 && ep.is_clean() && peer.is_clean() {
            for _ in 0..gaps {
                let (ep, _) = self.ep(side_is_orig);
                ep.gap_cnt += 1;
                let n = ep.gap_cnt;
                self.scaled(side_is_orig, b'G', n);
            }
        }
    }

    /// Records what classification needs: handshake and close times, first bytes each way.
    #[inline(always)]
    fn record_facts(&mut self, is_orig: bool, (syn, fin, rst, ack): Flags, seg: &Segment<'_>) {
        let f = &mut self.facts;
        let now = seg.ts;
        if is_orig {
            if syn && !ack {
                f.syn.first(now);
                f.syn_count = f.syn_count.saturating_add(1);
            }
            if !syn && !fin && !rst && ack && seg.payload_len == 0 && f.synack.is_some() && f.orig_data.is_none() {
                f.handshake_ack.first(now);
            }
            if seg.payload_len > 0 && !rst {
                if f.orig_data.is_none() {
                    f.orig_data.first(now);
                    let n = seg.payload.len().min(REQ_CAP);
                    self.req[..n].copy_from_slice(&seg.payload[..n]);
                    self.req_len = n as u8;
                    // Once per connection: the header may lie beyond the bytes kept.
                    f.user_agent = crate::http::agent_token(seg.payload);
                }
            }
            if fin {
                f.orig_fin.first(now);
            }
            if rst {
                f.orig_rst.first(now);
            }
        } else {
            if syn && ack {
                f.synack.first(now);
                f.synack_count = f.synack_count.saturating_add(1);
            }
            if seg.payload_len > 0 && !rst {
                if f.resp_data.is_none() {
                    f.resp_data.first(now);
                    let n = seg.payload.len().min(RSP_CAP);
                    self.rsp[..n].copy_from_slice(&seg.payload[..n]);
                    self.rsp_len = n as u8;
                    // Once per connection, like the User-Agent.
                    f.server = crate::http::server_token(seg.payload);
                }
            }
            if fin {
                f.resp_fin.first(now);
            }
            if rst {
                f.resp_rst.first(now);
            }
            if ack && f.resp_acked_orig_fin.is_none() && self.orig.fin_cnt > 0 {
                let acked = self.orig.rel(seg.ack);
                if seq_delta(acked, self.orig.fin_seq) >= 0 {
                    f.resp_acked_orig_fin.first(now);
                }
            }
        }
    }
}

fn is_power_of_ten(mut n: u32) -> bool {
    if n == 0 {
        return false;
    }
    while n % 10 == 0 {
        n /= 10;
    }
    n == 1
}

/// Zeek's `/\^?S[^HAFGIQ]*R.*/` test for RSTOS0.
fn rstos0_history(h: &str) -> bool {
    let h = h.strip_prefix('^').unwrap_or(h);
    let Some(rest) = h.strip_prefix('S') else { return false };
    for c in rest.chars() {
        match c {
            'R' => return true,
            'H' | 'A' | 'F' | 'G' | 'I' | 'Q' => return false,
            _ => {}
        }
    }
    false
}

/// Ports a server is likely to listen on, for choosing the direction of a flow seen mid-stream.
fn likely_server_port(p: u16) -> bool {
    p < 1024
        || matches!(
            p,
            1080 | 1433
                | 1521
                | 2049
                | 3128
                | 3306
                | 5432
                | 5672
                | 6379
                | 8000
                | 8008
                | 8080
                | 8081
                | 8443
                | 8888
                | 9000
                | 9090
                | 9200
                | 11211
                | 27017
        )
}

/// Whether a segment that opens a new record comes from the responder (Zeek's WantConnection).
fn flip_new(seg: &Segment<'_>) -> bool {
    if seg.has(SYN) && !seg.has(ACK) {
        return false;
    }
    if seg.has(SYN) && seg.has(ACK) {
        return true;
    }
    if likely_server_port(seg.sport) {
        if likely_server_port(seg.dport) {
            seg.sport < seg.dport
        } else {
            true
        }
    } else {
        false
    }
}

/// Direction-free key of a 5-tuple (TCP implied): the lower (address, port) end is `a`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Key {
    a: Addr,
    b: Addr,
    /// `a`'s port in the high half, `b`'s in the low.
    ports: u32,
}

impl Key {
    /// The key, and whether the segment was sent by its `a` side.
    #[inline]
    fn of(seg: &Segment<'_>) -> (Key, bool) {
        let from_a = (seg.src, seg.sport) <= (seg.dst, seg.dport);
        let (a, b, ap, bp) =
            if from_a { (seg.src, seg.dst, seg.sport, seg.dport) } else { (seg.dst, seg.src, seg.dport, seg.sport) };
        (Key { a, b, ports: u32::from(ap) << 16 | u32::from(bp) }, from_a)
    }

    /// A connection to itself (same address and port both ways): every packet is the originator's.
    fn is_loop(&self) -> bool {
        self.a == self.b && self.ports >> 16 == self.ports & 0xffff
    }
}

/// The flow table's hash of a key. foldhash, not Fx: Fx's weak low bits made probe sequences long
/// under a SYN flood's churn. A fixed seed, so that any thread computes the same hash.
#[inline]
fn key_hash(k: &Key) -> u64 {
    foldhash::fast::FixedState::default().hash_one(k)
}

/// The flow table's hash of a segment's connection (both directions alike), for computing ahead
/// of [`FlowTable::push_hashed`] on another thread.
#[inline]
pub fn flow_hash(seg: &Segment<'_>) -> u64 {
    key_hash(&Key::of(seg).0)
}

/// Counters about the table itself, for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableStats {
    pub segments: u64,
    pub conns: u64,
    pub evicted_full: u64,
    pub peak: usize,
}

/// The flow table. Feed segments in (roughly) time order; finished connections come out through
/// the `sink` closure, with their [`EndReason`].
///
/// Records live in a slab indexed by the hash map, so the map moves 4-byte indices, not records,
/// and the sweep scans a dense array of removal times instead of the records themselves.
pub struct FlowTable {
    cfg: FlowConfig,
    /// Slot indices, found by the key's hash and compared against the slot's own key: the key is
    /// stored once and hashed once per packet.
    map: hashbrown::HashTable<u32>,
    slots: Vec<Option<(Key, Conn)>>,
    /// Per slot: when the connection is due to be finished (`Ts::MAX` for a free slot).
    expire: Vec<Ts>,
    /// Per slot: its last packet, for eviction when full.
    last: Vec<Ts>,
    free: Vec<u32>,
    now: Ts,
    next_sweep: Ts,
    doomed: Vec<(Ts, u32)>,
    pub stats: TableStats,
}

/// How often (packet time) the table is swept for expired connections.
const SWEEP_EVERY: Ts = SEC;

impl FlowTable {
    pub fn new(cfg: FlowConfig) -> Self {
        FlowTable {
            cfg,
            map: hashbrown::HashTable::new(),
            slots: Vec::new(),
            expire: Vec::new(),
            last: Vec::new(),
            free: Vec::new(),
            now: Ts::MIN,
            next_sweep: Ts::MIN,
            doomed: Vec::new(),
            stats: TableStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn config(&self) -> &FlowConfig {
        &self.cfg
    }

    /// Iterates over the live connections (for live views).
    pub fn live(&self) -> impl Iterator<Item = &Conn> {
        self.slots.iter().flatten().map(|(_, c)| c)
    }

    /// Feeds one segment.
    #[inline]
    pub fn push(&mut self, seg: &Segment<'_>, sink: &mut impl FnMut(Conn)) {
        self.push_hashed(seg, flow_hash(seg), sink)
    }

    /// [`push`](Self::push) with the segment's [`flow_hash`] already computed (by another thread).
    pub fn push_hashed(&mut self, seg: &Segment<'_>, hash: u64, sink: &mut impl FnMut(Conn)) {
        self.stats.segments += 1;
        if seg.ts > self.now {
            self.now = seg.ts;
        }
        if self.now >= self.next_sweep {
            self.sweep_due(sink);
        }
        let (key, from_a) = Key::of(seg);
        debug_assert_eq!(hash, key_hash(&key));
        let slots = &self.slots;
        let found = self.map.find(hash, |&i| slots[i as usize].as_ref().is_some_and(|(k, _)| *k == key));
        let Some(&i) = found else { return self.insert(seg, key, from_a, hash, sink) };
        let i = i as usize;
        let Some((_, conn)) = self.slots[i].as_mut() else { unreachable!("mapped slots are full") };
        if seg.ts >= self.expire[i] || conn.is_reuse(seg) {
            return self.restart(i, seg, key, from_a, sink);
        }
        // The common case, kept small: the rare paths above are out of line.
        let is_orig = from_a == conn.orig_is_a || key.is_loop();
        conn.update(seg, is_orig, &self.cfg);
        self.expire[i] = conn.expire_at(&self.cfg);
        self.last[i] = conn.last_ts;
    }

    #[cold]
    #[inline(never)]
    fn sweep_due(&mut self, sink: &mut impl FnMut(Conn)) {
        self.sweep(self.now, sink);
        self.next_sweep = self.now.saturating_add(SWEEP_EVERY);
    }

    /// The segment's 5-tuple is in slot `i` but its connection is over (expired, or this SYN
    /// reuses the tuple): finish it and start a new one in the same slot.
    #[inline(never)]
    fn restart(&mut self, i: usize, seg: &Segment<'_>, key: Key, from_a: bool, sink: &mut impl FnMut(Conn)) {
        let Some((_, conn)) = self.slots[i].as_mut() else { unreachable!("mapped slots are full") };
        let expired = seg.ts >= self.expire[i];
        let flip = flip_new(seg);
        let mut old = std::mem::replace(conn, Conn::new(seg, flip, from_a != flip));
        old.end = if expired { end_reason(&old, self.expire[i]) } else { EndReason::Reused };
        conn.update(seg, !flip || key.is_loop(), &self.cfg);
        self.expire[i] = conn.expire_at(&self.cfg);
        self.last[i] = conn.last_ts;
        self.stats.conns += 1;
        sink(old);
    }

    /// A segment of a connection not in the table: start one.
    #[inline(never)]
    fn insert(&mut self, seg: &Segment<'_>, key: Key, from_a: bool, hash: u64, sink: &mut impl FnMut(Conn)) {
        if self.map.len() >= self.cfg.max_flows {
            self.evict_oldest(sink);
        }
        let flip = flip_new(seg);
        let mut conn = Conn::new(seg, flip, from_a != flip);
        conn.update(seg, !flip || key.is_loop(), &self.cfg);
        let (exp, last) = (conn.expire_at(&self.cfg), conn.last_ts);
        let i = match self.free.pop() {
            Some(i) => {
                let u = i as usize;
                self.slots[u] = Some((key, conn));
                self.expire[u] = exp;
                self.last[u] = last;
                i
            }
            None => {
                self.slots.push(Some((key, conn)));
                self.expire.push(exp);
                self.last.push(last);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.map.insert_unique(hash, i, |&j| slots[j as usize].as_ref().map_or(0, |(k, _)| key_hash(k)));
        self.stats.conns += 1;
        self.stats.peak = self.stats.peak.max(self.map.len());
    }

    /// Finishes every connection whose removal time has passed.
    pub fn sweep(&mut self, now: Ts, sink: &mut impl FnMut(Conn)) {
        self.doomed.clear();
        for (i, &e) in self.expire.iter().enumerate() {
            if now >= e {
                self.doomed.push((0, i as u32));
            }
        }
        self.finish_doomed(sink, None);
    }

    /// Table full: push out the least recently active eighth, so this runs rarely.
    fn evict_oldest(&mut self, sink: &mut impl FnMut(Conn)) {
        let mut ages: Vec<Ts> =
            self.slots.iter().zip(&self.last).filter(|(s, _)| s.is_some()).map(|(_, t)| *t).collect();
        if ages.is_empty() {
            return;
        }
        let k = (ages.len() / 8).max(1);
        let (_, cut, _) = ages.select_nth_unstable(k - 1);
        let cut = *cut;
        self.doomed.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if s.is_some() && self.last[i] <= cut {
                self.doomed.push((0, i as u32));
            }
        }
        let n = self.doomed.len() as u64;
        self.finish_doomed(sink, Some(EndReason::Evicted));
        self.stats.evicted_full += n;
    }

    fn finish_doomed(&mut self, sink: &mut impl FnMut(Conn), reason: Option<EndReason>) {
        // Finished in start order so output is stable across runs; sort indices, not records.
        let mut doomed = std::mem::take(&mut self.doomed);
        for d in doomed.iter_mut() {
            d.0 = self.slots[d.1 as usize].as_ref().map_or(Ts::MAX, |(_, c)| c.first_ts);
        }
        doomed.sort_unstable();
        for &(_, i) in &doomed {
            let u = i as usize;
            if let Some((key, mut c)) = self.slots[u].take() {
                if let Ok(e) = self.map.find_entry(key_hash(&key), |&j| j == i) {
                    e.remove();
                }
                c.end = reason.unwrap_or_else(|| end_reason(&c, self.expire[u]));
                self.expire[u] = Ts::MAX;
                self.free.push(i);
                sink(c);
            }
        }
        doomed.clear();
        self.doomed = doomed;
    }

    /// End of input: finishes everything still in the table.
    pub fn finish(&mut self, sink: &mut impl FnMut(Conn)) {
        self.doomed.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if s.is_some() {
                self.doomed.push((0, i as u32));
            }
        }
        self.finish_doomed(sink, Some(EndReason::EndOfInput));
    }
}

fn end_reason(c: &Conn, expire_at: Ts) -> EndReason {
    if c.delete_at.get() == Some(expire_at) {
        EndReason::Closed
    } else if c.attempt_at.get() == Some(expire_at) {
        EndReason::Attempt
    } else {
        EndReason::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::PSH;
    use proptest::prelude::*;

    const C: (u8, u16) = (2, 40000);
    const S: (u8, u16) = (1, 8080);

    /// A segment from `from` to the other side: times in ms, flags, seq, ack, payload length.
    fn seg(t_ms: i64, from: (u8, u16), flags: u8, seq: u32, ack: u32, len: u32) -> Segment<'static> {
        let to = if from == C { S } else { C };
        Segment {
            ts: 1_700_000_000 * SEC + t_ms * 1_000_000,
            src: Addr::v4([127, 0, 0, from.0]),
            dst: Addr::v4([127, 0, 0, to.0]),
            sport: from.1,
            dport: to.1,
            seq,
            ack,
            flags,
            window: Some(1000),
            payload_len: len,
            payload: &[],
        }
    }

    fn run(segs: &[Segment<'static>]) -> Vec<Conn> {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for s in segs {
            t.push(s, &mut |c| out.push(c));
        }
        t.finish(&mut |c| out.push(c));
        out
    }

    fn one(segs: &[Segment<'static>]) -> (ConnState, String) {
        let v = run(segs);
        assert_eq!(v.len(), 1, "{v:?}");
        (v[0].conn_state(), v[0].history.as_str().to_string())
    }

    /// A clean request/response exchange closed by FINs both ways.
    fn clean_exchange() -> Vec<Segment<'static>> {
        vec![
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, SYN | ACK, 500, 101, 0),
            seg(2, C, ACK, 101, 501, 0),
            seg(3, C, ACK | PSH, 101, 501, 20),
            seg(4, S, ACK, 501, 121, 0),
            seg(5, S, ACK | PSH, 501, 121, 40),
            seg(6, C, ACK, 121, 541, 0),
            seg(7, C, FIN | ACK, 121, 541, 0),
            seg(8, S, FIN | ACK, 541, 122, 0),
            seg(9, C, ACK, 122, 542, 0),
        ]
    }

    #[test]
    fn halfopen_rst_probe_is_rsto() {
        // HAProxy's plain check on Linux: SYN, SYN-ACK, RST (no bare ACK).
        let (st, h) =
            one(&[seg(0, C, SYN, 100, 0, 0), seg(1, S, SYN | ACK, 500, 101, 0), seg(2, C, RST | ACK, 101, 501, 0)]);
        assert_eq!((st, h.as_str()), (ConnState::RSTO, "ShR"));
    }

    #[test]
    fn handshake_then_rst_probe() {
        let (st, h) = one(&[
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, SYN | ACK, 500, 101, 0),
            seg(2, C, ACK, 101, 501, 0),
            seg(3, C, RST | ACK, 101, 501, 0),
        ]);
        assert_eq!((st, h.as_str()), (ConnState::RSTO, "ShAR"));
    }

    #[test]
    fn refused_and_unanswered() {
        assert_eq!(one(&[seg(0, C, SYN, 100, 0, 0), seg(1, S, RST | ACK, 0, 101, 0)]), (ConnState::REJ, "Sr".into()));
        assert_eq!(one(&[seg(0, C, SYN, 100, 0, 0), seg(1000, C, SYN, 100, 0, 0)]), (ConnState::S0, "S".into()));
        assert_eq!(one(&[seg(0, C, SYN, 100, 0, 0), seg(5, C, RST, 101, 0, 0)]), (ConnState::RSTOS0, "SR".into()));
    }

    #[test]
    fn connect_then_fin_with_server_never_closing_is_s2() {
        let v = run(&[
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, SYN | ACK, 500, 101, 0),
            seg(2, C, ACK, 101, 501, 0),
            seg(3, C, FIN | ACK, 101, 501, 0),
            seg(4, S, ACK, 501, 102, 0),
        ]);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].conn_state(), v[0].history.as_str()), (ConnState::S2, "ShAFa"));
        assert!(v[0].facts.resp_acked_orig_fin.is_some(), "the backend ACKed the FIN: CLOSE_WAIT");
    }

    #[test]
    fn clean_exchange_is_sf_with_facts() {
        let v = run(&clean_exchange());
        assert_eq!(v.len(), 1);
        let c = &v[0];
        assert_eq!((c.conn_state(), c.history.as_str()), (ConnState::SF, "ShADadFf"));
        assert_eq!((c.orig.pkts, c.resp.pkts, c.orig_bytes(), c.resp_bytes()), (6, 4, 20, 40));
        let f = c.facts;
        assert!(f.handshake_ack.is_some() && f.orig_data.is_some() && f.resp_data.is_some());
        assert!(f.orig_fin.get().unwrap() < f.resp_fin.get().unwrap(), "client closed first");
    }

    #[test]
    fn a_connection_to_itself_is_all_originator() {
        // Same address and port both ways (a TCP simultaneous open to oneself): every packet
        // counts as the originator's, whichever side the record was started from.
        let mut segs = vec![seg(0, S, SYN, 100, 0, 0), seg(1, S, SYN | ACK, 100, 101, 0), seg(2, S, ACK, 101, 101, 0)];
        for s in &mut segs {
            s.dst = s.src;
            s.dport = s.sport;
        }
        let v = run(&segs);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].orig.pkts, v[0].resp.pkts), (3, 0));
        // Started from the SYN-ACK (a flipped record), it is still one-sided.
        let v = run(&segs[1..]);
        assert_eq!((v[0].orig.pkts, v[0].resp.pkts), (2, 0));
    }

    #[test]
    fn port_reuse_after_close_starts_a_new_connection() {
        let mut segs = clean_exchange();
        // Same 5-tuple, new ISN, one second later: a new probe from a reused source port.
        segs.push(seg(1000, C, SYN, 9000, 0, 0));
        segs.push(seg(1001, S, SYN | ACK, 7000, 9001, 0));
        segs.push(seg(1002, C, RST | ACK, 9001, 7001, 0));
        let v = run(&segs);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].end, EndReason::Reused);
        assert_eq!((v[1].conn_state(), v[1].history.as_str()), (ConnState::RSTO, "ShR"));
    }

    #[test]
    fn retransmitted_data_is_t_and_counted_once_in_bytes() {
        let mut segs = clean_exchange();
        segs.insert(4, seg(3, C, ACK | PSH, 101, 501, 20));
        let v = run(&segs);
        assert_eq!(v[0].history.as_str(), "ShADTadFf");
        assert_eq!(v[0].orig_bytes(), 20);
    }

    #[test]
    fn midstream_flow_takes_server_port_as_responder() {
        let v = run(&[seg(0, S, ACK | PSH, 500, 100, 10), seg(1, C, ACK, 100, 510, 0)]);
        assert_eq!((v[0].orig_p, v[0].resp_p), (40000, 8080));
        assert_eq!((v[0].conn_state(), v[0].history.as_str()), (ConnState::OTH, "^dA"));
    }

    #[test]
    fn table_cap_evicts_oldest_and_counts() {
        let mut t = FlowTable::new(FlowConfig { max_flows: 64, ..FlowConfig::default() });
        let mut out = 0;
        for i in 0..1000u32 {
            let mut s = seg(i64::from(i), C, SYN, i, 0, 0);
            s.sport = 1024 + i as u16;
            t.push(&s, &mut |_| out += 1);
            assert!(t.len() <= 64);
        }
        t.finish(&mut |_| out += 1);
        assert_eq!(out, 1000);
        assert!(t.stats.evicted_full > 0);
    }

    #[test]
    fn idle_connections_expire_by_packet_time() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for s in &clean_exchange()[..6] {
            t.push(s, &mut |c| out.push(c));
        }
        assert!(out.is_empty());
        // An unrelated packet 301 s later sweeps the established-but-idle connection out.
        let mut late = seg(301_000, C, SYN, 1, 0, 0);
        late.sport = 1;
        t.push(&late, &mut |c| out.push(c));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end, EndReason::Idle);
        assert_eq!(out[0].conn_state(), ConnState::S1);
    }

    fn arb_seg() -> impl Strategy<Value = Segment<'static>> {
        (0i64..5000, any::<bool>(), 0u8..64, 0u32..2000, 0u32..2000, 0u32..100, 0u16..3).prop_map(
            |(t, from_c, flags, seq, ack, len, w)| {
                let mut s = seg(t, if from_c { C } else { S }, flags, seq, ack, len);
                s.window = if w == 0 { Some(0) } else { Some(512) };
                s
            },
        )
    }

    proptest! {
        /// Any sequence of segments: no panic, and every packet lands in exactly one record.
        #[test]
        fn arbitrary_segments_are_all_accounted(mut segs in proptest::collection::vec(arb_seg(), 0..60)) {
            segs.sort_by_key(|s| s.ts);
            let v = run(&segs);
            let pkts: u64 = v.iter().map(|c| u64::from(c.orig.pkts + c.resp.pkts)).sum();
            prop_assert_eq!(pkts, segs.len() as u64);
            for c in &v {
                let _ = c.conn_state();
                prop_assert!(c.history.as_str().is_ascii());
            }
        }

        /// Duplicated packets (retransmissions, capture duplicates) never change how a clean
        /// exchange ended, and every copy is counted.
        #[test]
        fn duplicates_keep_sf(dups in proptest::collection::vec(1usize..10, 0..6)) {
            let base = clean_exchange();
            let mut segs = base.clone();
            for &i in dups.iter().rev() {
                let d = base[i];
                let pos = segs.iter().position(|s| s.ts == d.ts && s.seq == d.seq && s.flags == d.flags).unwrap();
                segs.insert(pos + 1, d);
            }
            let v = run(&segs);
            prop_assert_eq!(v.len(), 1);
            prop_assert_eq!(v[0].conn_state(), ConnState::SF);
            prop_assert_eq!(u64::from(v[0].orig.pkts + v[0].resp.pkts), segs.len() as u64);
        }

        /// Reordering the established phase (data and ACKs arriving out of order) keeps SF and the
        /// byte counts.
        #[test]
        fn reordered_middle_keeps_sf(perm in Just((3usize..7).collect::<Vec<_>>()).prop_shuffle()) {
            let base = clean_exchange();
            let mut segs: Vec<_> = base[..3].to_vec();
            segs.extend(perm.iter().map(|&i| base[i]));
            segs.extend_from_slice(&base[7..]);
            let v = run(&segs);
            prop_assert_eq!(v.len(), 1);
            prop_assert_eq!(v[0].conn_state(), ConnState::SF);
            prop_assert_eq!((v[0].orig_bytes(), v[0].resp_bytes()), (20, 40));
        }
    }
}
