//! conn.log's `history` letters: one per kind of event, uppercase from the originator, lowercase
//! from the responder (Zeek's `HIST_*` flags, `CheckHistory` and `ScaledHistoryEntry`). Mechanism:
//! the letters say what was seen; `conn_state` and classification read them.

use super::endpoint::{Endpoint, Flags};

// History bits, Zeek's HIST_* (originator in the low half, responder shifted by 16).
const HIST_SYN: u32 = 0x1;
const HIST_FIN: u32 = 0x2;
const HIST_RST: u32 = 0x4;
const HIST_FIN_RST: u32 = 0x8;
const HIST_DATA: u32 = 0x10;
const HIST_ACK: u32 = 0x20;
const HIST_MULTI: u32 = 0x40;

const HISTORY_CAP: usize = 24;

/// A bounded letter trail; letters past the cap are dropped (Zeek's grows without bound).
#[derive(Clone, Copy)]
pub struct History {
    buf: [u8; HISTORY_CAP],
    len: u8,
}

/// The letters already written once (Zeek's `hist_flags`), as `HIST_*` bits.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Seen(u32);

impl History {
    pub(super) fn new() -> Self {
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

    /// Marks a connection whose record was started from the responder's side (`^`).
    pub(super) fn flipped(&mut self) {
        self.push(b'^');
    }

    /// Writes `code`, lowercase for the responder.
    fn add(&mut self, is_orig: bool, code: u8) {
        self.push(if is_orig { code } else { code.to_ascii_lowercase() });
    }

    /// Zeek's CheckHistory: writes `code` the first time its bit is seen from that side; returns
    /// whether it had been seen before.
    fn check(&mut self, seen: &mut Seen, is_orig: bool, mask: u32, code: u8) -> bool {
        let (mask, code) = if is_orig { (mask, code) } else { (mask << 16, code.to_ascii_lowercase()) };
        if seen.0 & mask == 0 {
            seen.0 |= mask;
            self.push(code);
            false
        } else {
            true
        }
    }

    /// Zeek's ScaledHistoryEntry: the letter repeats at the 1st, 10th, 100th … occurrence.
    pub(super) fn scaled(&mut self, is_orig: bool, code: u8, count: u32) {
        if is_power_of_ten(count) {
            self.add(is_orig, code);
        }
    }

    /// The letter of one segment from `ep`'s side: `I` for FIN with RST, `Q` for other control
    /// combinations, `S`/`H`, `F`, `R` (again when repeated at a new sequence number), else `D`
    /// for data or `A` for a pure ACK, each once.
    #[inline(always)]
    pub(super) fn segment(
        &mut self,
        seen: &mut Seen,
        ep: &mut Endpoint,
        is_orig: bool,
        flags: Flags,
        rel_seq: u32,
        len: u32,
    ) {
        let bits = flags.controls();
        if bits > 1 {
            if flags.fin() && flags.rst() {
                self.check(seen, is_orig, HIST_FIN_RST, b'I');
            } else {
                self.check(seen, is_orig, HIST_MULTI, b'Q');
            }
        } else if bits == 1 {
            if flags.syn() {
                let code = if flags.ack() { b'H' } else { b'S' };
                if self.check(seen, is_orig, HIST_SYN, code) && rel_seq != ep.hist_last_syn {
                    self.add(is_orig, code);
                }
                ep.hist_last_syn = rel_seq;
            }
            if flags.fin() {
                let end = rel_seq.wrapping_add(len);
                if self.check(seen, is_orig, HIST_FIN, b'F') && end != ep.hist_last_fin {
                    self.add(is_orig, b'F');
                }
                ep.hist_last_fin = end;
            }
            if flags.rst() {
                if self.check(seen, is_orig, HIST_RST, b'R') && rel_seq != ep.hist_last_rst {
                    self.add(is_orig, b'R');
                }
                ep.hist_last_rst = rel_seq;
            }
        } else if len > 0 {
            self.check(seen, is_orig, HIST_DATA, b'D');
        } else if flags.ack() {
            self.check(seen, is_orig, HIST_ACK, b'A');
        }
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

#[cfg(test)]
impl History {
    /// A trail holding `letters` (for tests of what reads it).
    pub(super) fn from_letters(letters: &str) -> Self {
        let mut h = History::new();
        letters.bytes().for_each(|c| h.push(c));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{ACK, FIN, RST, SYN};

    #[test]
    fn counted_letters_repeat_at_each_power_of_ten() {
        let powers: Vec<u32> = (0..=1000).filter(|&n| is_power_of_ten(n)).collect();
        assert_eq!(powers, [1, 10, 100, 1000]);
        assert!(is_power_of_ten(1_000_000_000) && !is_power_of_ten(u32::MAX));
        let mut h = History::new();
        for n in 1..=100 {
            h.scaled(n % 2 == 0, b'T', n);
        }
        // The 1st (odd: the responder's), the 10th and the 100th (even: the originator's).
        assert_eq!(h.as_str(), "tTT");
    }

    /// Letters of a sequence of segments from (originator?, flags, relative seq, payload length).
    fn letters(segs: &[(bool, u8, u32, u32)]) -> String {
        let (mut h, mut seen) = (History::new(), Seen::default());
        let (mut orig, mut resp) = (Endpoint::new(), Endpoint::new());
        for &(is_orig, flags, seq, len) in segs {
            let ep = if is_orig { &mut orig } else { &mut resp };
            h.segment(&mut seen, ep, is_orig, Flags::of(flags), seq, len);
        }
        format!("{h:?}")
    }

    #[test]
    fn each_letter_once_per_side_unless_repeated_at_a_new_sequence_number() {
        assert_eq!(letters(&[(true, SYN, 0, 0), (true, SYN, 0, 0), (true, SYN, 7, 0)]), "SS");
        assert_eq!(letters(&[(true, SYN, 0, 0), (false, SYN | ACK, 0, 0), (false, SYN | ACK, 0, 0)]), "Sh");
        assert_eq!(letters(&[(true, FIN, 5, 0), (true, FIN, 5, 0)]), "F");
        assert_eq!(letters(&[(true, FIN, 5, 0), (true, FIN, 5, 2)]), "FF");
        assert_eq!(letters(&[(true, RST, 5, 0), (true, RST, 5, 0), (false, RST, 0, 0)]), "Rr");
        assert_eq!(letters(&[(true, RST, 5, 0), (true, RST, 6, 0)]), "RR");
        assert_eq!(letters(&[(true, ACK, 1, 3), (true, ACK, 4, 3), (true, ACK, 7, 0), (true, ACK, 7, 0)]), "DA");
        assert_eq!(letters(&[(false, ACK, 1, 3), (false, 0, 4, 0), (true, 0, 1, 0)]), "d");
        // Several controls at once: I for FIN with RST, Q for the other mixtures, once each.
        assert_eq!(letters(&[(true, FIN | RST, 0, 0), (true, SYN | FIN, 0, 0), (true, SYN | RST | ACK, 0, 0)]), "IQ");
        assert_eq!(letters(&[(false, FIN | RST | ACK, 0, 0), (true, FIN | RST, 0, 0)]), "iI");
    }

    #[test]
    fn a_trail_keeps_its_first_letters_and_flipped_records_start_with_a_caret() {
        let mut h = History::new();
        h.flipped();
        for _ in 0..30 {
            h.push(b'T');
        }
        assert_eq!(h.as_str().len(), HISTORY_CAP);
        assert!(h.as_str().starts_with("^T"));
    }
}
