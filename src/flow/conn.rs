//! One TCP connection: its two endpoints, history letters, timers, and the facts later stages
//! read (handshake and close times, the first bytes each way). Applies one segment at a time in
//! the order of Zeek's `TCPSessionAdapter::DeliverPacket`. Mechanism: it records, it does not judge.

use super::config::FlowConfig;
use super::endpoint::{seq_delta, Endpoint, Flags, TcpState};
use super::history::{History, Seen};
use crate::decode::{Segment, Ts, ACK, FIN, RST, SYN};
use crate::http;
use std::net::IpAddr;

/// Bytes of the first payload each way kept for classification (HTTP request line, status line).
pub const REQ_CAP: usize = 64;
pub const RSP_CAP: usize = 16;

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
    pub(crate) const NONE: Stamp = Stamp(Ts::MIN);
    #[inline]
    pub(crate) fn get(self) -> Option<Ts> {
        (self.0 != Ts::MIN).then_some(self.0)
    }
    #[inline]
    pub(crate) fn is_some(self) -> bool {
        self.0 != Ts::MIN
    }
    #[inline]
    pub(crate) fn is_none(self) -> bool {
        self.0 == Ts::MIN
    }
    pub(crate) fn is_some_and(self, f: impl FnOnce(Ts) -> bool) -> bool {
        self.get().is_some_and(f)
    }
    pub(crate) fn is_none_or(self, f: impl FnOnce(Ts) -> bool) -> bool {
        self.get().is_none_or(f)
    }
    /// Sets the time if unset (the first occurrence wins).
    #[inline]
    pub(crate) fn first(&mut self, t: Ts) {
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
    pub(crate) syn: Stamp,
    pub(crate) syn_count: u16,
    /// First SYN-ACK from the responder.
    pub(crate) synack: Stamp,
    pub(crate) synack_count: u16,
    /// Originator's bare ACK completing the handshake, before it sent any data.
    pub(crate) handshake_ack: Stamp,
    pub(crate) orig_data: Stamp,
    pub(crate) resp_data: Stamp,
    pub(crate) orig_fin: Stamp,
    pub(crate) resp_fin: Stamp,
    pub(crate) orig_rst: Stamp,
    pub(crate) resp_rst: Stamp,
    /// The responder acknowledged the originator's FIN (so its kernel holds the socket in CLOSE_WAIT
    /// until the application closes it).
    pub(crate) resp_acked_orig_fin: Stamp,
    /// What the first request's User-Agent header names ([`crate::http::agent_token`]): 0 when
    /// it had none. Read once per connection from the whole payload, since the header may lie
    /// beyond the bytes kept; what the name means is the classifier's business.
    pub(crate) user_agent: u8,
    /// The server software the first response named in its `Server:` header (index + 1 into
    /// [`crate::http::SERVER_TOKENS`]; 0 when none).
    pub(crate) server: u8,
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
    hist_seen: Seen,
    is_partial: bool,
    first_seen: u8,
    /// The originator is the table key's `a` side (so direction is one comparison per packet).
    pub(super) orig_is_a: bool,
    pub history: History,
    pub facts: Facts,
    // Written once, read when the connection is finished.
    pub first_ts: Ts,
    pub(crate) end: EndReason,
    pub orig_h: IpAddr,
    pub orig_p: u16,
    pub resp_h: IpAddr,
    pub resp_p: u16,
    pub(crate) req: [u8; REQ_CAP],
    pub(crate) req_len: u8,
    pub(crate) rsp: [u8; RSP_CAP],
    pub(crate) rsp_len: u8,
}

/// The sender's endpoint and its peer, borrowing only those two fields of a connection.
#[inline(always)]
fn sides<'a>(orig: &'a mut Endpoint, resp: &'a mut Endpoint, is_orig: bool) -> (&'a mut Endpoint, &'a mut Endpoint) {
    if is_orig {
        (orig, resp)
    } else {
        (resp, orig)
    }
}

impl Conn {
    /// A new record for a segment's connection; `flip`: the segment came from the responder.
    pub(super) fn new(seg: &Segment<'_>, flip: bool, orig_is_a: bool) -> Conn {
        let (orig_h, orig_p, resp_h, resp_p) =
            if flip { (seg.dst, seg.dport, seg.src, seg.sport) } else { (seg.src, seg.sport, seg.dst, seg.dport) };
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
            hist_seen: Seen::default(),
            is_partial: false,
            first_seen: 0,
            last_time: seg.ts,
            attempt_at: Stamp::NONE,
            delete_at: Stamp::NONE,
            orig_is_a,
        };
        if flip {
            c.history.flipped();
        }
        c
    }

    /// Payload bytes in sequence space (retransmissions counted once), as Zeek's orig_bytes.
    pub fn orig_bytes(&self) -> u64 {
        self.orig.size(&self.resp)
    }
    pub fn resp_bytes(&self) -> u64 {
        self.resp.size(&self.orig)
    }
    pub(crate) fn request(&self) -> &[u8] {
        &self.req[..usize::from(self.req_len)]
    }
    pub(crate) fn response(&self) -> &[u8] {
        &self.rsp[..usize::from(self.rsp_len)]
    }

    fn is_closed(&self) -> bool {
        self.orig.did_close || self.resp.did_close
    }

    /// Packet time at which Zeek would drop this connection if nothing else arrives.
    #[inline]
    pub(super) fn expire_at(&self, cfg: &FlowConfig) -> Ts {
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

    /// Why the record ended when it expired at `expire_at`: which timer was due.
    pub(super) fn end_reason_at(&self, expire_at: Ts) -> EndReason {
        if self.delete_at.get() == Some(expire_at) {
            EndReason::Closed
        } else if self.attempt_at.get() == Some(expire_at) {
            EndReason::Attempt
        } else {
            EndReason::Idle
        }
    }

    /// Zeek's IsReuse: does this SYN start a new connection on the same 5-tuple?
    pub(super) fn is_reuse(&self, seg: &Segment<'_>) -> bool {
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
    pub(super) fn update(&mut self, seg: &Segment<'_>, is_orig: bool, cfg: &FlowConfig) {
        // Most segments are plain ACKs, with or without data. A copy of the code compiled for
        // exactly those flags drops every SYN/FIN/RST branch from the hot path; there is still
        // one description of what a segment does, below.
        if seg.flags & (SYN | FIN | RST | ACK) == ACK {
            self.update_with::<true>(seg, is_orig, cfg)
        } else {
            self.update_with::<false>(seg, is_orig, cfg)
        }
    }

    /// Follows Zeek's TCPSessionAdapter::DeliverPacket step by step. `PLAIN`: the segment is
    /// known to carry ACK and none of SYN, FIN, RST.
    #[inline(always)]
    fn update_with<const PLAIN: bool>(&mut self, seg: &Segment<'_>, is_orig: bool, cfg: &FlowConfig) {
        let flags = if PLAIN { Flags::PLAIN_ACK } else { Flags::of(seg.flags) };
        let (len, now) = (seg.payload_len, seg.ts);
        self.last_ts = self.last_ts.max(now);
        self.set_partial_status(is_orig, flags);

        // Sequence space the segment takes: its payload and one octet each for SYN and FIN (a
        // RST's payload is not part of the stream).
        let mut seg_len = len.wrapping_add(u32::from(flags.syn())).wrapping_add(u32::from(flags.fin()));
        if flags.rst() {
            seg_len = seg_len.wrapping_sub(len);
        }
        let end = seg.seq.wrapping_add(seg_len);

        let (ep, peer) = sides(&mut self.orig, &mut self.resp, is_orig);
        ep.sent(flags.syn(), seg.seq, end, len);
        let rel_seq = ep.rel(seg.seq);
        let seq_underflow = seq_delta(seg.seq, ep.start_seq) < 0;
        self.history.segment(&mut self.hist_seen, ep, is_orig, flags, rel_seq, len);

        // update_window: a zero window is interesting unless resets or the peer's FIN make it moot.
        if seg.window == Some(0) && !flags.rst() && peer.state != TcpState::Closed && ep.state != TcpState::Reset {
            ep.win0_cnt += 1;
            self.history.scaled(is_orig, b'W', ep.win0_cnt);
        }
        if !(ep.did_close && peer.did_close) {
            self.last_time = now;
        }
        ep.count_close(flags, rel_seq.wrapping_add(seg_len));
        let rel_ack = if flags.ack() { peer.acked(seg.ack, flags.rst()) } else { 0 };
        if ep.update_last_seq(flags, end, len) {
            ep.rxmt_cnt += 1;
            self.history.scaled(is_orig, b'T', ep.rxmt_cnt);
        }

        let fx = ep.update_state_machine(peer, is_orig, flags, seg);
        if fx.attempt {
            self.attempt_at.first(now.saturating_add(cfg.attempt_delay));
        }
        if fx.not_partial {
            self.is_partial = false;
        }
        if fx.reset_timer {
            let at = now.saturating_add(cfg.close_delay);
            self.delete_at = Stamp(self.delete_at.get().map_or(at, |d| d.min(at)));
        }

        if flags.ack() {
            // This segment acknowledged the peer's data: gaps in it are content never seen.
            for _ in 0..peer.ack_received(ep, rel_ack, self.is_partial) {
                peer.gap_cnt += 1;
                self.history.scaled(!is_orig, b'G', peer.gap_cnt);
            }
        }
        self.first_seen |= if is_orig { 1 } else { 2 };

        if len > 0 && !flags.rst() && !seq_underflow {
            ep.data_sent(if flags.syn() { rel_seq.wrapping_add(1) } else { rel_seq }, len);
        }
        // Zeek's ConnectionClosed: once the close is complete, the record goes after the delay.
        if fx.close && ep.close(peer) {
            self.delete_at = Stamp(self.last_time.saturating_add(cfg.close_delay));
        }

        self.record_facts(is_orig, flags, seg);
    }

    /// Zeek's SetPartialStatus: a connection is partial unless its first segment each way was
    /// the handshake's.
    #[inline(always)]
    fn set_partial_status(&mut self, is_orig: bool, flags: Flags) {
        if is_orig {
            if self.first_seen & 1 == 0 {
                self.is_partial = !flags.syn() || flags.ack();
            }
        } else if self.first_seen & 2 == 0 && !self.is_partial {
            self.is_partial = !flags.syn();
        }
    }

    /// Records what classification needs: handshake and close times, first bytes each way.
    #[inline(always)]
    fn record_facts(&mut self, is_orig: bool, flags: Flags, seg: &Segment<'_>) {
        let f = &mut self.facts;
        let now = seg.ts;
        let (syn, fin, rst, ack) = (flags.syn(), flags.fin(), flags.rst(), flags.ack());
        if is_orig {
            if syn && !ack {
                f.syn.first(now);
                f.syn_count = f.syn_count.saturating_add(1);
            }
            if flags == Flags::PLAIN_ACK && seg.payload_len == 0 && f.synack.is_some() && f.orig_data.is_none() {
                f.handshake_ack.first(now);
            }
            if seg.payload_len > 0 && !rst && f.orig_data.is_none() {
                f.orig_data.first(now);
                let n = seg.payload.len().min(REQ_CAP);
                self.req[..n].copy_from_slice(&seg.payload[..n]);
                self.req_len = n as u8;
                // Once per connection: the header may lie beyond the bytes kept.
                f.user_agent = http::agent_token(seg.payload);
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
            if seg.payload_len > 0 && !rst && f.resp_data.is_none() {
                f.resp_data.first(now);
                let n = seg.payload.len().min(RSP_CAP);
                self.rsp[..n].copy_from_slice(&seg.payload[..n]);
                self.rsp_len = n as u8;
                // Once per connection, like the User-Agent.
                f.server = http::server_token(seg.payload);
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
