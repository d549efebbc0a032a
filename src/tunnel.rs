//! Tunnel: the hint for a BPF filter that cannot see into an overlay. On a node's NIC a filter such
//! as `tcp port 8080` matches only outer headers, so the pods' traffic inside VXLAN, Geneve or GRE
//! never reaches hcleak (which would decapsulate it, see [`crate::decode::Encap`]).

use crate::source::{self, LiveOptions, LiveSource, Next, PacketSource};
use std::path::PathBuf;

/// The outer headers of the overlays hcleak decapsulates.
pub(crate) const OVERLAY_FILTER: &str =
    "udp port 4789 or udp port 8472 or udp port 6081 or ip proto 47 or ip6 proto 47";

/// Bytes of input looked through for an overlay packet before giving up.
const LOOK_AT_MOST: u64 = 256 << 20;

/// Whether the files hold at least one overlay packet (in their first 256 MiB).
pub fn overlay_in_files(paths: &[PathBuf]) -> bool {
    let Ok(mut src) = source::open_files(paths, Some(OVERLAY_FILTER)) else { return false };
    // A damaged file ends that file: at most one error per file.
    let mut errors = 0;
    loop {
        match src.next_frame() {
            Ok(Next::Frame(_)) => return true,
            Ok(Next::End) => return false,
            Ok(Next::Idle) => {}
            Err(_) => {
                errors += 1;
                if errors > paths.len() {
                    return false;
                }
            }
        }
        if src.progress().0 > LOOK_AT_MOST {
            return false;
        }
    }
}

/// A second, small capture beside a filtered live capture, on the same interface, catching
/// overlay packets only; looked at once, at the end, if the main filter matched no TCP.
pub struct LiveWatch(LiveSource);

impl LiveWatch {
    /// `None` when it cannot be opened (it is only for a hint: never an error).
    pub fn open(iface: &str) -> Option<LiveWatch> {
        let o = LiveOptions {
            iface: iface.into(),
            filter: Some(OVERLAY_FILTER.into()),
            snaplen: 96,
            buffer: 1 << 20,
            promisc: false,
        };
        LiveSource::open(&o).ok().map(LiveWatch)
    }

    /// Whether an overlay packet arrived since it was opened.
    pub fn seen(&mut self) -> bool {
        for _ in 0..3 {
            match self.0.next_frame() {
                Ok(Next::Frame(_)) => return true,
                Ok(Next::Idle) => {}
                Ok(Next::End) | Err(_) => return false,
            }
        }
        false
    }
}

/// The hint, one line, for a filter that matched no TCP while overlay packets are present.
pub fn hint(filter: &str) -> String {
    format!(
        "the filter '{filter}' matched no TCP, but VXLAN, Geneve or GRE packets are present: a filter sees only their outer headers; filter on '{OVERLAY_FILTER}' (hcleak analyses the TCP inside)"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hint_names_the_filter_and_the_overlay_ports() {
        let h = super::hint("tcp port 8080");
        assert!(h.contains("'tcp port 8080'") && h.contains("udp port 4789") && h.contains("ip proto 47"), "{h}");
        assert!(!h.contains('\n'));
    }
}
