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
