//! The flow engine on real loopback recordings (fixtures/, see fixtures/README.md), checked against
//! an independent tool: tshark's `-z conv,tcp` table recorded beside each capture.

use hcleak::flow::{Conn, FlowConfig};
use hcleak::pipeline::read_flows;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

fn flows(name: &str) -> Vec<Conn> {
    let (conns, stats, errors) = read_flows(&[fixture(name)], None, FlowConfig::default()).unwrap();
    assert!(errors.is_empty(), "{name}: {errors:?}");
    assert_eq!(stats.skipped_total(), 0, "{name}: nothing on these recordings should be skipped");
    conns
}

/// Direction-free 5-tuple → total frames, from tshark's conversation table.
fn tshark_conversations(name: &str) -> BTreeMap<(String, String), u64> {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[1] != "<->" {
            continue;
        }
        // a <-> b  frames_ba bytes "bytes" frames_ab bytes "bytes" frames_total ...
        let total: u64 = f[9].parse().unwrap();
        let (a, b) = (f[0].to_string(), f[2].to_string());
        out.insert(if a <= b { (a, b) } else { (b, a) }, total);
    }
    assert!(!out.is_empty(), "{name}: no conversations parsed");
    out
}

fn ours_by_tuple(conns: &[Conn]) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for c in conns {
        let a = format!("{}:{}", c.orig_h, c.orig_p);
        let b = format!("{}:{}", c.resp_h, c.resp_p);
        *out.entry(if a <= b { (a, b) } else { (b, a) }).or_insert(0) += u64::from(c.orig.pkts + c.resp.pkts);
    }
    out
}

#[test]
fn every_link_type_matches_tshark_conversations() {
    for (cap, expected) in [
        ("lo-basic.pcap", "lo-basic.expected.txt"),
        ("lo-basic.pcapng", "lo-basic.expected.txt"),
        ("any-sll.pcap", "any-sll.expected.txt"),
        ("any-sll2.pcap", "any-sll2.expected.txt"),
        ("ipv6-lo.pcap", "ipv6-lo.expected.txt"),
        ("vlan.pcap", "vlan.expected.txt"),
        ("null-loop.pcap", "null-loop.expected.txt"),
        ("raw-ip.pcap", "raw-ip.expected.txt"),
    ] {
        let ours = ours_by_tuple(&flows(cap));
        let theirs = tshark_conversations(expected);
        assert_eq!(ours, theirs, "{cap}: per-connection packet totals differ from tshark");
    }
}

#[test]
fn recordings_hold_the_probe_shapes_domain_md_describes() {
    let conns = flows("lo-basic.pcap");
    let shape = |h: &str| conns.iter().filter(|c| c.history.as_str() == h).count();
    // HAProxy's plain `check` on Linux: SYN, SYN-ACK, RST with no bare ACK, 2 + 1 packets.
    assert!(shape("ShR") >= 10);
    assert!(conns
        .iter()
        .filter(|c| c.history.as_str() == "ShR")
        .all(|c| (c.orig.pkts, c.resp.pkts) == (2, 1) && c.conn_state().as_str() == "RSTO"));
    // Checks against a port with nothing listening are refused.
    assert!(shape("Sr") >= 10);
    assert!(conns.iter().filter(|c| c.history.as_str() == "Sr").all(|c| c.conn_state().as_str() == "REJ"));
    // HAProxy's keep-alive traffic to the server ends with a reset after the response.
    assert!(shape("ShADadR") >= 1);
}

#[test]
fn snaplen_64_gives_the_same_connections_as_the_full_capture() {
    // lo-snap64.pcap was recorded beside lo-basic.pcap with `-s 64`: TCP options are cut off.
    let full = flows("lo-basic.pcap");
    let cut = flows("lo-snap64.pcap");
    let key = |c: &Conn| (c.orig_p, c.resp_p, c.first_ts / 1_000_000);
    type Summary = BTreeMap<(u16, u16), (String, String, u32, u32, u64, u64)>;
    let summarize = |v: &[Conn]| -> Summary {
        v.iter()
            .map(|c| {
                (
                    (key(c).0, key(c).1),
                    (
                        c.conn_state().as_str().to_string(),
                        c.history.as_str().to_string(),
                        c.orig.pkts,
                        c.resp.pkts,
                        c.orig_bytes(),
                        c.resp_bytes(),
                    ),
                )
            })
            .collect()
    };
    assert_eq!(summarize(&full), summarize(&cut));
}

#[test]
fn several_files_are_merged_in_time_order() {
    // The same capture twice, as pcap and pcapng: every packet is seen twice, in time order, so
    // each connection doubles its packets (the copies land as duplicates, not new connections).
    let (both, stats, errors) =
        read_flows(&[fixture("lo-basic.pcap"), fixture("lo-basic.pcapng")], None, FlowConfig::default()).unwrap();
    assert!(errors.is_empty());
    let single = flows("lo-basic.pcap");
    assert_eq!(stats.frames, 2 * single.iter().map(|c| u64::from(c.orig.pkts + c.resp.pkts)).sum::<u64>());
    assert_eq!(both.len(), single.len());
}

#[test]
fn bpf_filter_selects_like_tcpdump() {
    let (conns, stats, _) =
        read_flows(&[fixture("lo-basic.pcap")], Some("tcp port 18081"), FlowConfig::default()).unwrap();
    assert!(!conns.is_empty());
    assert!(conns.iter().all(|c| c.resp_p == 18081 || c.orig_p == 18081));
    let all = flows("lo-basic.pcap");
    assert!(stats.frames < all.iter().map(|c| u64::from(c.orig.pkts + c.resp.pkts)).sum::<u64>());
}
