//! Probe counts on a generated load-balancer capture (examples/gen_capture.rs, `lb` mix): twenty
//! backends, three probers with one steady stream each per backend, and client traffic from 4096
//! addresses — hundreds of clients per backend. Every probe must be counted as its own kind on
//! its own backend, exactly, and no client connection as a probe.

#[allow(dead_code)]
#[path = "../examples/gen_capture.rs"]
mod gen;

use hcleak::backend::Backends;
use hcleak::flow::FlowConfig;
use hcleak::pipeline::read_flows;
use hcleak::verdict::{judge, Options};
use serde_json::Value;
use std::collections::BTreeMap;

/// Generates `packets` packets with `seed`, judges the connections that started inside the truth
/// window, and compares the probe counts per backend and kind with what the generator sent.
fn exact_probe_counts(packets: u64, seed: u64, rate: Option<f64>) {
    let dir = std::env::temp_dir().join(format!("hcleak-gen-{}-{seed}-{packets}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pcap, truth) = (dir.join("lb.pcap"), dir.join("lb.truth.json"));
    let args = gen::Args {
        out: pcap.to_string_lossy().into_owned(),
        packets,
        snaplen: 96,
        seed,
        mix: "lb".into(),
        rate,
        truth: Some(truth.to_string_lossy().into_owned()),
    };
    gen::run(&args).unwrap();
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap();
    let (conns, _, errors) = read_flows(std::slice::from_ref(&pcap), None, FlowConfig::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let end = t["window_end_ns"].as_i64().unwrap();
    let mut b = Backends::new();
    for c in conns.iter().filter(|c| c.first_ts < end) {
        b.add(c);
    }
    let r = judge(&b, None, &Options { limit: None, min_conns: 1 });
    let mut checked = 0;
    for (name, kinds) in t["backends"].as_object().unwrap() {
        let want: BTreeMap<&str, u64> = kinds
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "traffic")
            .map(|(k, n)| (k.as_str(), n.as_u64().unwrap()))
            .collect();
        let got_b = r.backends.iter().find(|x| x.name() == *name).unwrap_or_else(|| panic!("no backend {name}"));
        let got: BTreeMap<&str, u64> = got_b.probe_kinds().map(|(k, n)| (k.name(), n)).collect();
        assert_eq!(got, want, "probe kinds of {name} (seed {seed}, {packets} packets): {:?}", got_b.kinds);
        checked += 1;
    }
    assert!(checked >= 20, "{checked} backends");
}

#[test]
fn probes_per_backend_and_kind_are_exact_among_hundreds_of_clients() {
    exact_probe_counts(300_000, 1, None);
}

#[test]
fn probes_stay_exact_when_clients_outnumber_probes_tenfold() {
    // Twice the default connection rate: probes are a smaller share, client groups more numerous.
    exact_probe_counts(200_000, 7, Some(1200.0));
}
