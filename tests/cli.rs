//! The binary's contract: exit codes (0 ok, 1 suspicious, 2 leak, 3 error or unknown) and one
//! clear stderr line for each kind of bad input, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn hcleak(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hcleak"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("run hcleak")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn one_line_no_panic(o: &Output) -> String {
    let e = stderr(o);
    assert!(!e.contains("panicked") && !e.contains("RUST_BACKTRACE"), "panic: {e}");
    assert_eq!(e.trim_end().lines().count(), 1, "want exactly one stderr line, got: {e:?}");
    e
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hcleak-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn missing_file_is_exit_3_with_the_path() {
    let o = hcleak(&["analyze", "no/such/dump.pcap"]);
    assert_eq!(o.status.code(), Some(3));
    let e = one_line_no_panic(&o);
    assert!(e.contains("no/such/dump.pcap") && e.contains("no such file"), "{e}");
}

#[test]
fn not_a_capture_is_exit_3() {
    let o = hcleak(&["analyze", "fixtures/not-a-capture.pcap"]);
    assert_eq!(o.status.code(), Some(3));
    let e = one_line_no_panic(&o);
    assert!(e.contains("not-a-capture.pcap") && e.contains("not a pcap or pcapng capture"), "{e}");
}

#[test]
fn truncated_capture_reports_what_was_read_and_exits_3() {
    // Cut a real capture in the middle of a packet record.
    let full = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lo-basic.pcap")).unwrap();
    let cut = tmp("cut.pcap");
    std::fs::write(&cut, &full[..full.len() / 2 + 7]).unwrap();
    let o = hcleak(&["analyze", cut.to_str().unwrap(), "--flows", "--format", "tsv"]);
    assert_eq!(o.status.code(), Some(3));
    let e = one_line_no_panic(&o);
    assert!(e.contains("cut.pcap") && e.contains("damaged after") && e.contains("analysed"), "{e}");
    let rows = stdout(&o).lines().count();
    assert!(rows > 5, "connections before the damage must still be printed, got {rows} lines");

    let o = hcleak(&["analyze", "fixtures/truncated.pcap", "--min-conns", "1"]);
    assert_eq!(o.status.code(), Some(3));
    one_line_no_panic(&o);
    assert!(stdout(&o).contains("12 packets (12 TCP)") && stdout(&o).contains("127.0.0.1:18081"), "{}", stdout(&o));
}

#[test]
fn bad_filter_is_exit_3_with_the_expression() {
    let o = hcleak(&["analyze", "fixtures/lo-basic.pcap", "tcp", "prot", "8080"]);
    assert_eq!(o.status.code(), Some(3));
    let e = one_line_no_panic(&o);
    assert!(e.contains("bad filter expression 'tcp prot 8080'"), "{e}");
}

#[test]
fn a_directory_is_not_a_capture() {
    let o = hcleak(&["analyze", "fixtures/"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("is a directory"));
}

#[test]
fn usage_errors_are_exit_3_not_2() {
    // clap's own exit code for usage errors is 2, which on-call scripts read as "leak".
    let o = hcleak(&["analyze", "--no-such-flag", "x.pcap"]);
    assert_eq!(o.status.code(), Some(3));
    let o = hcleak(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Exit codes"));
}

#[test]
fn flows_tsv_header_starts_with_the_conn_log_columns() {
    let o = hcleak(&["analyze", "fixtures/lo-basic.pcap", "--flows", "--format", "tsv"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("ts\torig_h\torig_p\tresp_h\tresp_p\tconn_state\thistory\torig_pkts\tresp_pkts"));
    let row: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let ts: f64 = row[0].parse().unwrap();
    assert!(ts > 1.6e9 && row[0].contains('.'), "ts must be Unix seconds with a fraction: {}", row[0]);
}

#[test]
fn flows_json_lines_parse() {
    let o = hcleak(&["analyze", "fixtures/ipv6-lo.pcap", "--flows", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let mut n = 0;
    for line in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["conn_state"].is_string() && v["orig_pkts"].is_u64());
        assert_eq!(v["resp_h"], "::1");
        n += 1;
    }
    assert!(n > 10);
}

#[test]
fn closed_pipe_ends_quietly() {
    // `hcleak analyze big.pcap --flows | head -1` must not print a panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hcleak"))
        .args(["analyze", "fixtures/null-loop.pcap", "--flows", "--format", "tsv"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(stderr(&o).is_empty(), "a closed pipe is not an error: {}", stderr(&o));
    assert_eq!(o.status.code(), Some(0), "a closed pipe ends quietly, not by a signal or an error code");
}

#[test]
fn diagnosis_exit_codes_follow_the_verdict() {
    let leak = hcleak(&[
        "analyze",
        "fixtures/diag/reset-leak.pcap",
        "--sockets",
        "fixtures/diag/reset-leak.sockets.csv",
        "--format",
        "json",
    ]);
    assert_eq!(leak.status.code(), Some(2), "{}", stderr(&leak));
    let v: serde_json::Value = serde_json::from_str(&stdout(&leak)).unwrap();
    assert_eq!(v["verdict"], "leak");
    let b = &v["backends"][0];
    assert_eq!(b["backend"], "127.0.0.1:18101");
    for key in [
        "verdict",
        "probes",
        "probe_kinds",
        "driver",
        "sockets_per_driver",
        "sockets_source",
        "exhaustion_eta_s",
        "probers",
        "evidence",
    ] {
        assert!(b.get(key).is_some(), "missing {key} in {b}");
    }
    assert_eq!(b["driver"], "handshake_rst");
    assert_eq!(b["sockets_source"], "host");
    assert_eq!(b["probe_kinds"]["handshake_rst"], 77);
    assert!(b["evidence"].as_array().unwrap().iter().all(|e| e.is_string()));
    assert_eq!(v["backends"][1]["verdict"], "ok");
    assert!(v["backends"][1]["driver"].is_null() && v["backends"][1]["sockets_per_driver"].is_null());

    assert_eq!(hcleak(&["analyze", "fixtures/diag/plain-check.pcap"]).status.code(), Some(0));
    // Resets after accept without host samples: cannot be judged from packets.
    let unknown = hcleak(&["analyze", "fixtures/diag/reset-leak.pcap"]);
    assert_eq!(unknown.status.code(), Some(3));
    assert!(stdout(&unknown).starts_with("UNKNOWN"), "{}", stdout(&unknown));
}

#[test]
fn table_leads_with_the_verdict_line() {
    let o = hcleak(&[
        "analyze",
        "fixtures/diag/close-wait.pcap",
        "--sockets",
        "fixtures/diag/close-wait.sockets.csv",
        "--limit",
        "1024",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("LEAK — 127.0.0.1:18141 keeps 1.00 socket per connect_fin"), "{first}");
    assert!(first.contains("limit 1024 reached in"), "{first}");
    assert!(out.contains("close the socket on EOF"), "{out}");
}

#[test]
fn bad_samples_file_is_one_line_exit_3() {
    let bad = tmp("bad-samples.csv");
    std::fs::write(&bad, "ts,backend,sockets\n1795647736.3,127.0.0.1:18101,many\n").unwrap();
    let o = hcleak(&["analyze", "fixtures/diag/reset-leak.pcap", "--sockets", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let e = one_line_no_panic(&o);
    assert!(e.contains("bad-samples.csv:2") && e.contains("bad sockets count 'many'"), "{e}");
    let o = hcleak(&["analyze", "fixtures/diag/reset-leak.pcap", "--sockets", "no-such.csv"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("no-such.csv: no such file"));
    // The conntrack table likewise; garbage in it is simply no translation.
    let o = hcleak(&["analyze", "fixtures/diag/reset-leak.pcap", "--conntrack", "no-such-ct.txt"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("no-such-ct.txt: no such file"));
    let junk = tmp("junk-conntrack.txt");
    std::fs::write(&junk, b"tcp 6 src= dst=\x00\n\n\xff garbage sport=99999\n").unwrap();
    let with = hcleak(&["analyze", "fixtures/diag/reset-leak.pcap", "--conntrack", junk.to_str().unwrap()]);
    let without = hcleak(&["analyze", "fixtures/diag/reset-leak.pcap"]);
    assert_eq!((with.status.code(), &with.stdout), (without.status.code(), &without.stdout));
}

#[test]
fn nagios_line_and_exit_codes() {
    let o = hcleak(&[
        "analyze",
        "fixtures/diag/reset-leak.pcap",
        "--sockets",
        "fixtures/diag/reset-leak.sockets.csv",
        "--limit",
        "1024",
        "--format",
        "nagios",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (text, perf) = out.trim_end().split_once(" | ").unwrap();
    assert!(text.starts_with("HCLEAK LEAK - 127.0.0.1:18101 keeps 1.00 socket per handshake_rst"), "{text}");
    // Perfdata: 'label'=value[UOM];warn;crit;min;max, space separated.
    for item in perf.split("' '") {
        let item = item.trim_matches('\'');
        let (label, value) = item.split_once("'=").unwrap_or_else(|| panic!("bad perfdata item {item}"));
        assert!(!label.is_empty() && !label.contains('='));
        let num: String = value.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        num.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {item}"));
    }
    assert!(perf.contains("'127.0.0.1:18101 probes'=77c"), "{perf}");
    assert!(perf.contains("'127.0.0.1:18101 sockets'=78;;;0;1024"), "{perf}");

    let ok = hcleak(&["analyze", "fixtures/diag/plain-check.pcap", "--format", "nagios"]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(stdout(&ok).starts_with("HCLEAK OK - "));
    let unknown = hcleak(&["analyze", "fixtures/diag/reset-leak.pcap", "--format", "nagios"]);
    assert_eq!(unknown.status.code(), Some(3));
    assert!(stdout(&unknown).starts_with("HCLEAK UNKNOWN - "));
}

#[test]
fn plot_is_valid_svg_with_the_expected_series() {
    let svg = tmp("plot.svg");
    let o = hcleak(&[
        "analyze",
        "fixtures/diag/close-wait.pcap",
        "--sockets",
        "fixtures/diag/close-wait.sockets.csv",
        "--limit",
        "200",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<String> =
        doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(String::from).collect();
    let has = |s: &str| texts.iter().any(|t| t.contains(s));
    assert!(has("127.0.0.1:18141 — LEAK: 1.00 socket per connect_fin"), "{texts:?}");
    assert!(has("127.0.0.1:18142 — OK"), "{texts:?}");
    assert!(has("connect_fin (cumulative)") && has("limit 200") && has("fit: 1.00 per event"), "{texts:?}");
    assert!(has("limit 200 reached in"), "{texts:?}");
    // Sockets for both backends in both panels, the fitted line and the projection.
    let lines = doc.descendants().filter(|n| n.has_tag_name("polyline")).count();
    assert!(lines >= 6, "{lines} polylines");
    // It renders: rsvg-convert (librsvg2-bin, installed by .ci/run) turns it into a PNG.
    match Command::new("rsvg-convert").arg(&svg).arg("-o").arg(tmp("plot.png")).output() {
        Ok(r) => {
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            let png = std::fs::read(tmp("plot.png")).unwrap();
            assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
        }
        Err(_) => eprintln!("SKIPPED rendering check: rsvg-convert not installed"),
    }
}

#[test]
fn empty_file_says_so() {
    let empty = tmp("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let o = hcleak(&["analyze", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("empty.pcap: empty file, not a capture"));
}

#[test]
fn one_or_two_threads_give_the_same_report_and_flows() {
    for args in [
        &["analyze", "fixtures/diag/close-wait.pcap", "--format", "json"][..],
        &["analyze", "fixtures/diag/fd-exhaustion.pcap", "fixtures/lo-basic.pcap", "--format", "json"][..],
        &["analyze", "fixtures/vlan.pcap", "--flows", "--format", "tsv"][..],
    ] {
        let one = hcleak(&[args, &["--threads", "1"]].concat());
        let two = hcleak(&[args, &["--threads", "2"]].concat());
        assert_eq!(one.status.code(), two.status.code(), "{args:?}");
        assert!(stdout(&one).len() > 100, "{args:?}: {}", stderr(&one));
        assert_eq!(stdout(&one), stdout(&two), "{args:?}");
    }
    let o = hcleak(&["analyze", "fixtures/lo-basic.pcap", "--threads", "3"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("--threads must be 1 or 2"));
}
