//! conn.log's `conn_state`: Zeek's policy (`base/protocols/conn/main.zeek`, `conn_state()`) that
//! sums up a finished connection from its two endpoint states and its history. Policy, kept apart
//! from the mechanism that records those states: the flow engine never calls it.

use super::conn::Conn;
use super::endpoint::TcpState;

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
    pub(crate) const ALL: [ConnState; 13] = [
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
    pub(crate) fn describe(self) -> &'static str {
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

impl Conn {
    /// The connection's `conn_state`, as Zeek's policy script derives it.
    pub fn conn_state(&self) -> ConnState {
        use TcpState::*;
        let (os, rs) = (self.orig.state, self.resp.state);
        let o_inactive = matches!(os, Inactive | Partial);
        let r_inactive = matches!(rs, Inactive | Partial);
        if rs == Reset {
            if os == SynSent || os == SynAckSent || (os == Reset && self.orig_bytes() == 0 && self.resp_bytes() == 0) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Addr, Segment};
    use TcpState::*;

    /// A record whose endpoints are in `os` and `rs` and whose history is `letters`; `bytes`
    /// gives the originator and responder that many payload bytes in sequence space.
    fn conn(os: TcpState, rs: TcpState, letters: &str, bytes: (u32, u32)) -> Conn {
        let seg = Segment {
            ts: 0,
            src: Addr::v4([10, 0, 0, 1]),
            dst: Addr::v4([10, 0, 0, 2]),
            sport: 40000,
            dport: 8080,
            seq: 0,
            ack: 0,
            flags: 0,
            window: None,
            payload_len: 0,
            payload: &[],
        };
        let mut c = Conn::new(&seg, false, true);
        c.orig.state = os;
        c.resp.state = rs;
        // The SYN octet plus the payload.
        c.orig.last_seq = 1 + bytes.0;
        c.resp.last_seq = 1 + bytes.1;
        c.history = crate::flow::history::History::from_letters(letters);
        c
    }

    /// Zeek's `conn_state()` (base/protocols/conn/main.zeek), branch by branch.
    #[test]
    fn conn_state_follows_zeeks_policy_for_each_pair_of_endpoint_states() {
        let cases = [
            // Responder reset: refused while the originator was still opening, or after nothing was sent.
            (SynSent, Reset, "", (0, 0), ConnState::REJ),
            (SynAckSent, Reset, "", (0, 0), ConnState::REJ),
            (Reset, Reset, "", (0, 0), ConnState::REJ),
            (Reset, Reset, "", (5, 0), ConnState::RSTR),
            (Reset, Reset, "", (0, 5), ConnState::RSTR),
            (Inactive, Reset, "", (0, 0), ConnState::RSTRH),
            (Partial, Reset, "", (0, 0), ConnState::RSTRH),
            (Established, Reset, "", (0, 0), ConnState::RSTR),
            (Closed, Reset, "", (0, 0), ConnState::RSTR),
            // Originator reset.
            (Reset, Inactive, "SR", (0, 0), ConnState::RSTOS0),
            (Reset, Partial, "^SdR", (0, 0), ConnState::RSTOS0),
            (Reset, Inactive, "SAR", (0, 0), ConnState::OTH),
            (Reset, Inactive, "DR", (0, 0), ConnState::OTH),
            (Reset, Established, "ShR", (0, 0), ConnState::RSTO),
            (Reset, Closed, "ShAfR", (0, 0), ConnState::RSTO),
            // Closes.
            (Closed, Closed, "", (0, 0), ConnState::SF),
            (Closed, Inactive, "", (0, 0), ConnState::SH),
            (Closed, Partial, "", (0, 0), ConnState::SH),
            (Closed, Established, "", (0, 0), ConnState::S2),
            (Inactive, Closed, "", (0, 0), ConnState::SHR),
            (Partial, Closed, "", (0, 0), ConnState::SHR),
            (Established, Closed, "", (0, 0), ConnState::S3),
            (SynSent, Closed, "", (0, 0), ConnState::S3),
            // Neither side closed.
            (SynSent, Inactive, "", (0, 0), ConnState::S0),
            (SynSent, Partial, "", (0, 0), ConnState::OTH),
            (Established, Inactive, "", (0, 0), ConnState::OTH),
            (Established, Established, "", (0, 0), ConnState::S1),
            (Established, Partial, "", (0, 0), ConnState::OTH),
            (Partial, Established, "", (0, 0), ConnState::OTH),
            (Inactive, Inactive, "", (0, 0), ConnState::OTH),
        ];
        for (os, rs, h, bytes, want) in cases {
            assert_eq!(conn(os, rs, h, bytes).conn_state(), want, "{os:?}/{rs:?} {h:?} {bytes:?}");
        }
    }

    #[test]
    fn rstos0_needs_a_syn_then_a_reset_with_no_answer_between() {
        for h in ["SR", "^SR", "STR", "SdR", "SWR", "STRA"] {
            assert!(rstos0_history(h), "{h}");
        }
        for h in ["", "R", "S", "ST", "SHR", "SAR", "SFR", "SGR", "SIR", "SQR", "DSR", "^^SR"] {
            assert!(!rstos0_history(h), "{h}");
        }
    }

    #[test]
    fn conn_state_names_are_zeeks_and_each_is_described() {
        let mut seen = std::collections::HashSet::new();
        for s in ConnState::ALL {
            assert_eq!(s.as_str(), format!("{s:?}"));
            assert!(s.describe().len() > 8 && seen.insert(s.describe()), "{s:?}: {}", s.describe());
        }
    }
}
