//! One side of a TCP connection: Zeek's `TCP_Endpoint` (sequence tracking, counters), its
//! per-endpoint state machine (`TCPSessionAdapter::UpdateStateMachine`) and a minimal reassembly
//! tracker that finds content gaps. Mechanism: it records what each side did, not what it means.

use crate::decode::{Segment, ACK, FIN, RST, SYN};

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

/// A segment's SYN, FIN, RST and ACK bits (the decoder's flags byte, other bits dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flags(u8);

impl Flags {
    /// ACK alone: most segments, with or without data.
    pub(crate) const PLAIN_ACK: Flags = Flags(ACK);

    #[inline(always)]
    pub(crate) fn of(bits: u8) -> Flags {
        Flags(bits & (SYN | FIN | RST | ACK))
    }
    #[inline(always)]
    pub(crate) fn syn(self) -> bool {
        self.0 & SYN != 0
    }
    #[inline(always)]
    pub(crate) fn fin(self) -> bool {
        self.0 & FIN != 0
    }
    #[inline(always)]
    pub(crate) fn rst(self) -> bool {
        self.0 & RST != 0
    }
    #[inline(always)]
    pub(crate) fn ack(self) -> bool {
        self.0 & ACK != 0
    }
    /// How many of SYN, FIN and RST the segment carries.
    #[inline(always)]
    pub(crate) fn controls(self) -> u8 {
        u8::from(self.syn()) + u8::from(self.fin()) + u8::from(self.rst())
    }
}

/// What the state machine reacts to. A segment carrying several of SYN, FIN and RST is applied as
/// that many controls in Zeek's order (SYN, then FIN, then RST), each judged against the state the
/// segment found; a segment with none of them is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    None,
    Syn,
    Fin,
    Rst,
}

/// What a transition asks of the connection around its two endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// The endpoint closed (Zeek's ConnectionClosed is due).
    pub(crate) close: bool,
    /// The originator's SYN started a connection attempt: its timer starts.
    pub(crate) attempt: bool,
    /// A RST after the endpoint's own FIN: the record ends soon (Zeek's reset timer).
    pub(crate) reset_timer: bool,
    /// The connection was seen opening after all: it is not partial.
    pub(crate) not_partial: bool,
}

impl std::ops::BitOrAssign for Effects {
    fn bitor_assign(&mut self, o: Effects) {
        self.close |= o.close;
        self.attempt |= o.attempt;
        self.reset_timer |= o.reset_timer;
        self.not_partial |= o.not_partial;
    }
}

/// Sequence-space comparison: positive when `a` is after `b`.
#[inline]
pub(crate) fn seq_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// One side of a connection: Zeek's TCP_Endpoint plus a minimal reassembly tracker for gaps.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub state: TcpState,
    pub(super) prev_state: TcpState,
    pub(super) start_seq: u32,
    pub(super) last_seq: u32,
    pub(super) ack_seq: u32,
    pub(super) did_close: bool,
    pub(super) fin_cnt: u16,
    pub(super) rst_cnt: u16,
    pub(super) fin_seq: u32,
    pub(super) hist_last_syn: u32,
    pub(super) hist_last_fin: u32,
    pub(super) hist_last_rst: u32,
    pub(super) rxmt_cnt: u32,
    pub(super) win0_cnt: u32,
    pub(super) gap_cnt: u32,
    // Reassembly (relative sequence numbers): next byte expected, trim point, one held block.
    last_reassem: u32,
    trim_seq: u32,
    held: Option<(u32, u32)>,
    pub pkts: u32,
    /// Payload bytes on the wire, retransmissions included.
    pub(crate) payload_bytes: u64,
}

impl Endpoint {
    pub(super) fn new() -> Self {
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

    /// The one place an endpoint's state changes; the state it left is kept (Zeek's `prev_state`).
    #[inline]
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

    /// `seq` relative to the initial sequence number.
    #[inline]
    pub(super) fn rel(&self, seq: u32) -> u32 {
        seq.wrapping_sub(self.start_seq)
    }

    /// Zeek's `Size()`: sequence space used, without SYN and FIN octets.
    pub(super) fn size(&self, peer: &Endpoint) -> u64 {
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

    pub(super) fn is_clean(&self) -> bool {
        self.state == TcpState::Established
            || (self.state == TcpState::Closed && self.prev_state == TcpState::Established)
    }

    /// Zeek's `init_endpoint`: counts the segment and (re)starts the sequence space where a SYN,
    /// or the first segment seen, says it starts. `end` is one past the segment's last octet.
    #[inline(always)]
    pub(super) fn sent(&mut self, syn: bool, seq: u32, end: u32, len: u32) {
        self.pkts += 1;
        self.payload_bytes += u64::from(len);
        match self.state {
            TcpState::Inactive => {
                if syn {
                    self.init_seqs(seq, end);
                } else {
                    self.init_seqs(seq.wrapping_sub(1), seq);
                }
            }
            TcpState::SynSent | TcpState::SynAckSent => {
                if syn && seq != self.start_seq {
                    self.init_seqs(seq, end);
                }
            }
            TcpState::Established | TcpState::Partial => {
                if syn {
                    self.init_seqs(seq, end);
                }
            }
            TcpState::Reset => {
                if syn && self.prev_state == TcpState::Inactive {
                    self.init_seqs(seq, end);
                }
            }
            TcpState::Closed => {}
        }
    }

    /// Counts FINs and RSTs; a FIN's end is where the close sits in sequence space.
    #[inline(always)]
    pub(super) fn count_close(&mut self, flags: Flags, fin_end: u32) {
        if flags.fin() {
            self.fin_cnt = self.fin_cnt.saturating_add(1);
            self.fin_seq = fin_end;
        }
        if flags.rst() {
            self.rst_cnt = self.rst_cnt.saturating_add(1);
        }
    }

    /// The peer acknowledged this side up to `ack`: returns it relative to this side's ISN (1 for
    /// a side not seen yet, whose sequence space the ACK starts; 0 when it is before the ISN).
    #[inline(always)]
    pub(super) fn acked(&mut self, ack: u32, rst: bool) -> u32 {
        if self.state == TcpState::Inactive {
            let a = ack.wrapping_sub(1);
            self.init_seqs(a, a);
            1
        } else if seq_delta(ack, self.start_seq) < 0 {
            0
        } else {
            if !rst {
                let d = seq_delta(ack, self.ack_seq);
                if !(ack == 0 && d > 1_048_576) && d > 0 {
                    self.ack_seq = ack;
                }
            }
            self.rel(ack)
        }
    }

    /// Zeek's `update_last_seq`: moves the highest sequence sent; returns whether the segment
    /// was a retransmission of data.
    #[inline(always)]
    pub(super) fn update_last_seq(&mut self, flags: Flags, end: u32, len: u32) -> bool {
        let delta_last = seq_delta(end, self.last_seq);
        if (flags.syn() || flags.rst()) && !(-1_048_576..=1_048_576).contains(&delta_last) {
            false
        } else if flags.fin() && self.last_seq == self.start_seq.wrapping_add(1) {
            self.last_seq = end;
            false
        } else if self.state == TcpState::Reset {
            false
        } else if delta_last > 0 {
            self.last_seq = end;
            false
        } else {
            len > 0
        }
    }

    /// Zeek's UpdateStateMachine for a segment this endpoint sent: one [`step`](Self::step) per
    /// control it carries, in Zeek's order (SYN, FIN, RST), or one `Control::None` step.
    #[inline(always)]
    pub(super) fn update_state_machine(
        &mut self,
        peer: &mut Endpoint,
        is_orig: bool,
        flags: Flags,
        seg: &Segment<'_>,
    ) -> Effects {
        let arrival = self.state;
        if flags.controls() == 0 {
            return self.step(peer, is_orig, arrival, Control::None, flags, seg);
        }
        let mut fx = Effects::default();
        if flags.syn() {
            fx |= self.step(peer, is_orig, arrival, Control::Syn, flags, seg);
        }
        if flags.fin() {
            fx |= self.step(peer, is_orig, arrival, Control::Fin, flags, seg);
        }
        if flags.rst() {
            fx |= self.step(peer, is_orig, arrival, Control::Rst, flags, seg);
        }
        fx
    }

    /// One step of Zeek's UpdateStateMachine: this endpoint sent `ctl` in a segment with `flags`,
    /// and found itself in `arrival`. States change only through [`set_state`](Self::set_state).
    #[inline(always)]
    pub(super) fn step(
        &mut self,
        peer: &mut Endpoint,
        is_orig: bool,
        arrival: TcpState,
        ctl: Control,
        flags: Flags,
        seg: &Segment<'_>,
    ) -> Effects {
        use Control as C;
        use TcpState::*;
        let mut fx = Effects::default();
        match (arrival, ctl) {
            // The originator's SYN opens the connection (SYN_SENT; SYN_ACK_SENT when it already
            // acknowledges something) and starts the attempt timer.
            (Inactive, C::Syn) if is_orig => {
                self.set_state(if flags.ack() { SynAckSent } else { SynSent });
                fx.attempt = true;
            }
            // The responder's SYN-ACK establishes both sides. A SYN without ACK answering the
            // originator's SYN-ACK is Zeek's role reversal: rare enough that we only establish the
            // connection and keep the roles.
            (Inactive, C::Syn) => {
                if !flags.ack() && peer.state == SynAckSent && seg.seq == self.start_seq {
                    fx.not_partial = true;
                    peer.set_state(Established);
                }
                if peer.state == SynSent {
                    peer.set_state(Established);
                }
                self.set_state(Established);
            }
            // The responder's ACK of a SYN, sent before its SYN-ACK: not yet a partial connection.
            (Inactive, C::None) if !is_orig && seg.payload_len == 0 && peer.state == SynSent => {}
            // A first segment acknowledging an established peer: this side is established too.
            (Inactive, C::None) if flags.ack() && peer.state == Established => {
                self.set_state(Established);
                fx.not_partial = true;
            }
            // Any other first segment without SYN, FIN or RST: joined mid-stream (PARTIAL).
            (Inactive, C::None) => self.set_state(Partial),
            // A FIN before the handshake completed: this side closed.
            (Inactive | SynSent | SynAckSent, C::Fin) => {
                self.set_state(Closed);
                fx.close = true;
            }
            // A RST before the handshake completed: this side reset.
            (Inactive | SynSent | SynAckSent, C::Rst) => {
                self.set_state(Reset);
                fx.close = true;
            }
            // A side seen mid-stream sends a bare SYN to a peer never seen: it is opening after all.
            (Partial, C::Syn) if peer.state == Inactive && !flags.ack() => self.set_state(SynSent),
            // A FIN (without RST) once data may flow: this side closed. If the peer had sent FIN
            // then RST, that was a normal close after all.
            (Established | Partial, C::Fin) if !flags.rst() => {
                self.set_state(Closed);
                if peer.state == Reset && peer.prev_state == Closed {
                    peer.set_state(Closed);
                }
                fx.close = true;
            }
            // A RST once data may flow (FIN and RST together count as the RST): this side reset.
            (Established | Partial, C::Rst) => {
                self.set_state(Reset);
                fx.close = true;
            }
            // A RST after our own FIN while the peer is still open: reset, and the record ends
            // soon.
            (Closed, C::Rst) if peer.state != Closed => {
                self.set_state(Reset);
                fx.close = !self.did_close;
                fx.reset_timer = true;
            }
            // Anything else changes nothing: retransmitted SYNs, segments after the handshake
            // started or after a close, anything after a reset.
            _ => {}
        }
        fx
    }

    /// Zeek's ConnectionClosed for this side: returns whether that completed the connection's
    /// close (this side reset, or the peer closed too or never appeared); false when this side
    /// had already closed.
    pub(super) fn close(&mut self, peer: &Endpoint) -> bool {
        if self.did_close {
            return false;
        }
        self.did_close = true;
        self.state == TcpState::Reset || peer.did_close || peer.state == TcpState::Inactive
    }

    /// Data from this side entering its reassembler (relative `seq`).
    pub(super) fn data_sent(&mut self, seq: u32, len: u32) {
        let ack = self.rel(self.ack_seq);
        let mut seq = seq;
        let upper = seq.wrapping_add(len);
        if seq_delta(seq, ack) < 0 {
            if seq_delta(upper, ack) <= 0 {
                return;
            }
            seq = ack;
        }
        if seq_delta(upper, self.last_reassem) <= 0 {
            return;
        }
        if seq_delta(seq, self.last_reassem) <= 0 {
            self.last_reassem = upper;
            if let Some((s, e)) = self.held {
                if seq_delta(s, self.last_reassem) <= 0 {
                    if seq_delta(e, self.last_reassem) > 0 {
                        self.last_reassem = e;
                    }
                    self.held = None;
                }
            }
        } else {
            // Out of order: hold one block (merging with the held one when they touch).
            self.held = Some(match self.held {
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

    /// The peer acknowledged this side's data up to relative `seq`: returns how many content
    /// gaps (acknowledged but never seen) that revealed, counted only while both sides are clean
    /// (Zeek's AckReceived → TrimToSeq → Undelivered).
    #[inline(always)]
    pub(super) fn ack_received(&mut self, peer: &Endpoint, seq: u32, is_partial: bool) -> u32 {
        let mut seq = seq;
        if self.fin_cnt > 0 && seq_delta(seq, self.fin_seq) >= 0 {
            seq = self.fin_seq.wrapping_sub(1);
        }
        if seq_delta(seq, self.trim_seq) <= 0 {
            return 0;
        }
        let mut gaps = 0;
        if seq_delta(seq, self.last_reassem) > 0 && !(seq <= 2 && is_partial) {
            if let Some((s, e)) = self.held {
                if seq_delta(s, seq) < 0 && seq_delta(s, self.last_reassem) > 0 {
                    gaps += 1;
                    self.last_reassem = e;
                    self.held = None;
                }
            }
            if seq_delta(seq, self.last_reassem) > 0 {
                gaps += 1;
                self.last_reassem = seq;
            }
        }
        self.trim_seq = seq;
        if let Some((_, e)) = self.held {
            if seq_delta(e, seq) <= 0 {
                self.held = None;
            }
        }
        if gaps > 0 && self.is_clean() && peer.is_clean() {
            gaps
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Addr;
    use TcpState::*;

    const START: u32 = 1000;

    fn ep(state: TcpState, prev: TcpState) -> Endpoint {
        let mut e = Endpoint::new();
        (e.state, e.prev_state, e.start_seq) = (state, prev, START);
        e
    }

    fn seg(flags: u8, seq: u32, len: u32) -> Segment<'static> {
        Segment {
            ts: 0,
            src: Addr::v4([10, 0, 0, 1]),
            dst: Addr::v4([10, 0, 0, 2]),
            sport: 40000,
            dport: 8080,
            seq,
            ack: 0,
            flags,
            window: None,
            payload_len: len,
            payload: &[],
        }
    }

    /// `c`lose, `a`ttempt timer, `r`eset timer, not `p`artial.
    fn fx(s: &str) -> Effects {
        Effects {
            close: s.contains('c'),
            attempt: s.contains('a'),
            reset_timer: s.contains('r'),
            not_partial: s.contains('p'),
        }
    }

    /// (sender is the originator, its state, (peer's state, peer's previous state), flags, seq,
    /// payload) → ((sender's state, previous state), peer's state, effects).
    type Row = (bool, TcpState, (TcpState, TcpState), u8, u32, u32, (TcpState, TcpState), TcpState, &'static str);

    /// One row per arm of the state machine, and the guards that keep a segment out of an arm:
    /// (sender is the originator, sender's state, peer's state and previous state, flags, seq,
    /// payload) → (sender's state and previous state, peer's state, effects).
    #[test]
    fn each_state_answers_each_control_as_zeek_does() {
        #[rustfmt::skip]
        let rows: &[Row] = &[
            // Inactive.
            (true, Inactive, (Inactive, Inactive), SYN, START, 0, (SynSent, Inactive), Inactive, "a"),
            (true, Inactive, (Inactive, Inactive), SYN | ACK, START, 0, (SynAckSent, Inactive), Inactive, "a"),
            (false, Inactive, (SynSent, Inactive), SYN | ACK, START, 0, (Established, Inactive), Established, ""),
            (false, Inactive, (SynAckSent, Inactive), SYN, START, 0, (Established, Inactive), Established, "p"),
            (false, Inactive, (SynAckSent, Inactive), SYN, START + 1, 0, (Established, Inactive), SynAckSent, ""),
            (false, Inactive, (SynAckSent, Inactive), SYN | ACK, START, 0, (Established, Inactive), SynAckSent, ""),
            (false, Inactive, (SynSent, Inactive), ACK, START, 0, (Inactive, Inactive), SynSent, ""),
            (false, Inactive, (SynSent, Inactive), ACK, START, 5, (Partial, Inactive), SynSent, ""),
            (true, Inactive, (SynSent, Inactive), ACK, START, 0, (Partial, Inactive), SynSent, ""),
            (true, Inactive, (Established, Inactive), ACK, START, 0, (Established, Inactive), Established, "p"),
            (true, Inactive, (Established, Inactive), 0, START, 0, (Partial, Inactive), Established, ""),
            (true, Inactive, (Inactive, Inactive), FIN, START, 0, (Closed, Inactive), Inactive, "c"),
            (true, Inactive, (Inactive, Inactive), RST, START, 0, (Reset, Inactive), Inactive, "c"),
            // Several controls: each in Zeek's order, judged against the state the segment found.
            (true, Inactive, (Inactive, Inactive), SYN | FIN, START, 0, (Closed, SynSent), Inactive, "ac"),
            (true, Inactive, (Inactive, Inactive), FIN | RST, START, 0, (Reset, Closed), Inactive, "c"),
            (false, Inactive, (SynSent, Inactive), SYN | ACK | RST, START, 0, (Reset, Established), Established, "c"),
            // Opening.
            (true, SynSent, (Inactive, Inactive), SYN, START, 0, (SynSent, Inactive), Inactive, ""),
            (true, SynSent, (Inactive, Inactive), FIN, START, 0, (Closed, SynSent), Inactive, "c"),
            (true, SynAckSent, (Inactive, Inactive), RST | ACK, START, 0, (Reset, SynAckSent), Inactive, "c"),
            // Partial and established.
            (true, Partial, (Inactive, Inactive), SYN, START, 0, (SynSent, Partial), Inactive, ""),
            (true, Partial, (Inactive, Inactive), SYN | ACK, START, 0, (Partial, Inactive), Inactive, ""),
            (true, Partial, (SynSent, Inactive), SYN, START, 0, (Partial, Inactive), SynSent, ""),
            (true, Established, (Inactive, Inactive), SYN, START, 0, (Established, Inactive), Inactive, ""),
            (true, Established, (Established, Inactive), FIN | ACK, START, 0, (Closed, Established), Established, "c"),
            (true, Partial, (Established, Inactive), FIN | ACK, START, 0, (Closed, Partial), Established, "c"),
            (true, Established, (Reset, Closed), FIN | ACK, START, 0, (Closed, Established), Closed, "c"),
            (true, Established, (Reset, Established), FIN | ACK, START, 0, (Closed, Established), Reset, "c"),
            (true, Established, (Established, Inactive), FIN | RST, START, 0, (Reset, Established), Established, "c"),
            (true, Partial, (Established, Inactive), RST, START, 0, (Reset, Partial), Established, "c"),
            // Closed and reset.
            (true, Closed, (Established, Inactive), RST, START, 0, (Reset, Closed), Established, "cr"),
            (true, Closed, (Closed, Inactive), RST, START, 0, (Closed, Inactive), Closed, ""),
            (true, Closed, (Established, Inactive), FIN, START, 0, (Closed, Inactive), Established, ""),
            (true, Reset, (Established, Inactive), RST, START, 0, (Reset, Inactive), Established, ""),
            (true, Reset, (Established, Inactive), SYN | FIN, START, 0, (Reset, Inactive), Established, ""),
        ];
        for (i, &(is_orig, state, (peer_state, peer_prev), flags, seq, len, (want, want_prev), want_peer, want_fx)) in
            rows.iter().enumerate()
        {
            let (mut e, mut peer) = (ep(state, Inactive), ep(peer_state, peer_prev));
            let got = e.update_state_machine(&mut peer, is_orig, Flags::of(flags), &seg(flags, seq, len));
            assert_eq!((e.state, e.prev_state, peer.state, got), (want, want_prev, want_peer, fx(want_fx)), "row {i}");
        }
    }

    #[test]
    fn a_reset_after_our_own_close_closes_nothing_twice() {
        let (mut e, mut peer) = (ep(Closed, Established), ep(Established, Inactive));
        e.did_close = true;
        let got = e.update_state_machine(&mut peer, true, Flags::of(RST), &seg(RST, START, 0));
        assert_eq!((e.state, got), (Reset, fx("r")));
    }

    fn seqs(e: &Endpoint) -> (u32, u32, u32) {
        (e.start_seq, e.ack_seq, e.last_seq)
    }

    #[test]
    fn a_syn_or_the_first_segment_starts_the_sequence_space() {
        let sent = |state: TcpState, prev: TcpState, syn: bool, seq: u32| {
            let mut e = ep(state, prev);
            (e.ack_seq, e.last_seq) = (START + 5, START + 9);
            e.sent(syn, seq, seq + 3, 2);
            seqs(&e)
        };
        let kept = (START, START + 5, START + 9);
        // A first segment: its SYN starts the space; without one, the space starts just before it.
        assert_eq!(sent(Inactive, Inactive, true, 70), (70, 70, 73));
        assert_eq!(sent(Inactive, Inactive, false, 70), (69, 69, 70));
        // A SYN with a new ISN restarts an opening side, a retransmitted one does not.
        assert_eq!(sent(SynSent, Inactive, true, 70), (70, 70, 73));
        assert_eq!(sent(SynAckSent, Inactive, true, START), kept);
        assert_eq!(sent(SynSent, Inactive, false, 70), kept);
        // Any SYN restarts an established or partial side; other segments do not.
        assert_eq!(sent(Established, Inactive, true, START), (START, START, START + 3));
        assert_eq!(sent(Partial, Inactive, true, 70), (70, 70, 73));
        assert_eq!(sent(Established, Inactive, false, 70), kept);
        // After a reset, only a side that had been silent before it starts again.
        assert_eq!(sent(Reset, Inactive, true, 70), (70, 70, 73));
        assert_eq!(sent(Reset, Inactive, false, 70), kept);
        assert_eq!(sent(Reset, SynSent, true, 70), kept);
        assert_eq!(sent(Closed, Inactive, true, 70), kept);
        // Every segment is counted, with its payload, retransmissions included.
        let mut e = ep(Established, Inactive);
        e.sent(false, START + 1, START + 3, 2);
        e.sent(false, START + 1, START + 3, 2);
        assert_eq!((e.pkts, e.payload_bytes), (2, 4));
    }

    #[test]
    fn acks_move_the_acknowledged_sequence_forward_only() {
        let acked = |ack: u32, rst: bool, ack_seq: u32| {
            let mut e = ep(Established, Inactive);
            (e.start_seq, e.ack_seq) = (START, ack_seq);
            let rel = e.acked(ack, rst);
            (rel, e.ack_seq)
        };
        assert_eq!(acked(START + 20, false, START + 10), (20, START + 20));
        assert_eq!(acked(START + 5, false, START + 10), (5, START + 10), "an old ACK");
        assert_eq!(acked(START + 10, false, START + 10), (10, START + 10));
        assert_eq!(acked(START + 20, true, START + 10), (20, START + 10), "a RST's ACK is not trusted");
        assert_eq!(acked(START - 1, false, START), (0, START), "before the ISN");
        // An ACK of 0 more than 2^20 ahead is a broken stack, not progress; within 2^20 it is.
        let (far, near) = (0u32.wrapping_sub(1 << 21), 0u32.wrapping_sub(1 << 20));
        let mut e = ep(Established, Inactive);
        (e.start_seq, e.ack_seq) = (far, far);
        assert_eq!((e.acked(0, false), e.ack_seq), (1 << 21, far));
        (e.start_seq, e.ack_seq) = (near, near);
        assert_eq!((e.acked(0, false), e.ack_seq), (1 << 20, 0));
        // A side never seen starts its sequence space just before what the peer acknowledges.
        let mut e = Endpoint::new();
        assert_eq!((e.acked(500, false), seqs(&e)), (1, (499, 499, 499)));
    }

    #[test]
    fn the_highest_sequence_sent_moves_forward_and_data_behind_it_is_a_retransmission() {
        let update = |state: TcpState, flags: u8, end: u32, len: u32| {
            let mut e = ep(state, Inactive);
            e.last_seq = START + 100;
            let rxmt = e.update_last_seq(Flags::of(flags), end, len);
            (rxmt, e.last_seq)
        };
        assert_eq!(update(Established, ACK, START + 150, 50), (false, START + 150));
        assert_eq!(update(Established, ACK, START + 100, 50), (true, START + 100));
        assert_eq!(update(Established, ACK, START + 90, 0), (false, START + 100));
        assert_eq!(update(Reset, ACK, START + 150, 50), (false, START + 100));
        // A SYN or RST more than 2^20 away is ignored; one just within is not.
        let far = START + 100 + (1 << 20);
        assert_eq!(update(Established, SYN, far + 1, 0), (false, START + 100));
        assert_eq!(update(Established, RST, far + 1, 0), (false, START + 100));
        assert_eq!(update(Established, SYN, far, 0), (false, far));
        assert_eq!(update(Established, RST, (START + 100).wrapping_sub(1 << 20), 10), (true, START + 100));
        // A FIN right after the SYN sets the end even when it lies behind; data does not.
        let mut e = ep(Established, Inactive);
        e.last_seq = START + 1;
        assert_eq!((e.update_last_seq(Flags::of(ACK), START, 5), e.last_seq), (true, START + 1));
        assert_eq!((e.update_last_seq(Flags::of(FIN), START, 0), e.last_seq), (false, START));
    }

    #[test]
    fn flags_keep_only_syn_fin_rst_and_ack() {
        let f = Flags::of(0xff);
        assert_eq!((f.syn(), f.fin(), f.rst(), f.ack(), f.controls()), (true, true, true, true, 3));
        let f = Flags::of(crate::decode::PSH);
        assert_eq!((f.syn(), f.fin(), f.rst(), f.ack(), f.controls()), (false, false, false, false, 0));
        assert_eq!(Flags::of(ACK | crate::decode::PSH), Flags::PLAIN_ACK);
        assert_eq!((Flags::of(SYN).controls(), Flags::of(FIN | RST).controls()), (1, 2));
    }
}
