//! The flow engine against Zeek's own conn.log answers for real traces (../shared/conformance/zeek).
//! Every connection must agree on conn_state, history and packet counts: that is the level reached,
//! and this test keeps it there. Without the corpus the tests are ignored, and fail under CI=true
//! (CI has ../shared beside the clone); run through libtest-mimic (`harness = false`) for that.

mod common;
use common::gated;

use hcleak::flow::FlowConfig;
use hcleak::pipeline::read_flows;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// orig_h, orig_p, resp_h, resp_p
type Tuple = (String, u16, String, u16);
/// conn_state, history, orig_pkts, resp_pkts
type Row = (String, String, u32, u32);

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/zeek")
}

fn mixed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/pcapng-mixed-snaplen")
}

fn agrees_with_zeek_on_every_connection() {
    let dir = corpus();
    let mut expected_files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".expected.tsv"))
        .collect();
    expected_files.sort();
    assert!(expected_files.len() >= 10, "corpus looks incomplete: {expected_files:?}");

    let (mut total, mut state_ok, mut hist_ok, mut pkts_ok) = (0, 0, 0, 0);
    let mut disagreements = Vec::new();
    for exp in &expected_files {
        let name = exp.file_name().unwrap().to_string_lossy().trim_end_matches(".expected.tsv").to_string();
        let trace = ["pcap", "pcapng"]
            .iter()
            .map(|e| dir.join(format!("{name}.{e}")))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no trace for {name}"));
        let (conns, _, errors) = read_flows(&[trace], None, FlowConfig::default()).unwrap();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        let mut ours: HashMap<Tuple, Vec<Row>> = HashMap::new();
        for c in &conns {
            ours.entry((c.orig_h.to_string(), c.orig_p, c.resp_h.to_string(), c.resp_p)).or_default().push((
                c.conn_state().as_str().to_string(),
                c.history.as_str().to_string(),
                c.orig.pkts,
                c.resp.pkts,
            ));
        }
        for line in std::fs::read_to_string(exp).unwrap().lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            let key = (f[1].to_string(), f[2].parse().unwrap(), f[3].to_string(), f[4].parse().unwrap());
            let want = (f[5].to_string(), f[6].to_string(), f[7].parse::<u32>().unwrap(), f[8].parse::<u32>().unwrap());
            total += 1;
            let cands = ours.entry(key.clone()).or_default();
            // Several connections may share a 5-tuple: take the closest one.
            let best = (0..cands.len()).max_by_key(|&i| {
                let c = &cands[i];
                (c.0 == want.0) as u8 + (c.1 == want.1) as u8 + ((c.2, c.3) == (want.2, want.3)) as u8
            });
            let Some(i) = best else {
                disagreements.push(format!("{name}: missing {key:?} {want:?}"));
                continue;
            };
            let got = cands.remove(i);
            state_ok += (got.0 == want.0) as usize;
            hist_ok += (got.1 == want.1) as usize;
            pkts_ok += ((got.2, got.3) == (want.2, want.3)) as usize;
            if got != want {
                disagreements.push(format!("{name}: {key:?} want {want:?} got {got:?}"));
            }
        }
        for (k, left) in ours {
            for l in left {
                disagreements.push(format!("{name}: extra connection {k:?} {l:?}"));
            }
        }
    }
    eprintln!("zeek conformance: {total} connections, conn_state {state_ok}, history {hist_ok}, packets {pkts_ok}");
    assert!(total >= 50, "expected the whole corpus, saw {total} connections");
    assert!(disagreements.is_empty(), "disagreements with Zeek:\n{}", disagreements.join("\n"));
}

/// `../shared/conformance/pcapng-mixed-snaplen`: a pcapng file whose interfaces have different
/// snapshot lengths, which libpcap refuses at its first packet. Zeek's baseline names one TCP
/// connection; hcleak reads the file with its own pcapng reader and finds the same one.
fn pcapng_with_mixed_snaplens_is_read_without_libpcap() {
    let dir = mixed();
    let trace = dir.join("modify-request.pcapng");
    // Zeek's baseline: uid, id.orig_h, id.resp_h, id.resp_p, service.
    let baseline = std::fs::read_to_string(dir.join("modify-request.conn.log")).unwrap();
    let want: Vec<Vec<&str>> =
        baseline.lines().filter(|l| l.starts_with('C')).map(|l| l.split('\t').collect()).collect();
    assert_eq!(want.len(), 1, "{baseline}");
    // Compressed too: the fallback reads the file again from its start, unpacked.
    let zst = std::env::temp_dir().join(format!("hcleak-mixed-{}.pcapng.zst", std::process::id()));
    std::fs::write(&zst, zstd::encode_all(&std::fs::read(&trace).unwrap()[..], 3).unwrap()).unwrap();
    for (path, filter) in [(&trace, None), (&trace, Some("vlan and tcp port 389")), (&zst, None)] {
        let (conns, stats, errors) = read_flows(std::slice::from_ref(path), filter, FlowConfig::default()).unwrap();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        assert_eq!(conns.len(), 1, "{} {filter:?}: {} connections", path.display(), conns.len());
        let c = &conns[0];
        assert_eq!(
            (c.orig_h.to_string(), c.resp_h.to_string(), c.resp_p.to_string()),
            (want[0][1].to_string(), want[0][2].to_string(), want[0][3].to_string())
        );
        assert!(c.orig.pkts + c.resp.pkts >= 10 && stats.tcp == u64::from(c.orig.pkts + c.resp.pkts));
        // Packet times are scaled by the interface's resolution: Unix seconds of 2024.
        assert!((1.70e18..1.80e18).contains(&(c.first_ts as f64)), "{}", c.first_ts);
    }
    // The filter runs on the fallback path too: a filter for another port keeps nothing.
    let (conns, _, errors) =
        read_flows(std::slice::from_ref(&trace), Some("vlan and tcp port 80"), FlowConfig::default()).unwrap();
    assert!(conns.is_empty() && errors.is_empty());
    std::fs::remove_file(&zst).ok();
}

/// From a file hcleak reads it with its own pcapng reader (above); standard input cannot be read a
/// second time, so the one line says how to convert it.
fn pcapng_with_mixed_snaplens_on_stdin_is_refused_with_a_way_out() {
    use std::process::{Command, Stdio};
    let trace = mixed().join("modify-request.pcapng");
    let run = |args: &[&str], stdin: Stdio| {
        Command::new(env!("CARGO_BIN_EXE_hcleak")).args(args).stdin(stdin).output().expect("run hcleak")
    };
    let o = run(&["analyze", trace.to_str().unwrap(), "--flows", "--format", "tsv"], Stdio::null());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\t389\tRSTR\t"));
    let o = run(&["analyze", "-r", "-"], Stdio::from(std::fs::File::open(&trace).unwrap()));
    assert_eq!(o.status.code(), Some(3));
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
    assert!(e.contains("snapshot length") && e.contains("editcap -F pcap") && !e.contains("panicked"), "{e}");
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let trace = mixed().join("modify-request.pcapng");
    let tests = vec![
        gated(
            "agrees_with_zeek_on_every_connection",
            (!corpus().is_dir()).then(|| format!("the Zeek conformance corpus is not at {}", corpus().display())),
            agrees_with_zeek_on_every_connection,
        ),
        gated(
            "pcapng_with_mixed_snaplens_is_read_without_libpcap",
            (!trace.exists()).then(|| format!("{} not found", trace.display())),
            pcapng_with_mixed_snaplens_is_read_without_libpcap,
        ),
        gated(
            "pcapng_with_mixed_snaplens_on_stdin_is_refused_with_a_way_out",
            (!trace.exists()).then(|| format!("{} not found", trace.display())),
            pcapng_with_mixed_snaplens_on_stdin_is_refused_with_a_way_out,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
