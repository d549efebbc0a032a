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

    let o = hcleak(&["analyze", "fixtures/truncated.pcap"]);
    assert_eq!(o.status.code(), Some(3));
    one_line_no_panic(&o);
    assert!(stdout(&o).contains("TCP connections"), "{}", stdout(&o));
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
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(o.status.code().is_some(), "killed by a signal");
}
