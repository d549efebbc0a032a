//! The binary's contract: exit codes (0 ok, 1 suspicious, 2 leak, 3 error or unknown) and one
//! clear stderr line for each kind of bad input, never a panic.

mod common;
use common::gated;

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

fn missing_file_is_exit_3_with_the_path() {
    let o = hcleak(&["analyze", "no/such/dump.pcap"]);
    assert_eq!(o.status.code(), Some(3));
    let e = one_line_no_panic(&o);
    assert!(e.contains("no/such/dump.pcap") && e.contains("no such file"), "{e}");
}

fn not_a_capture_is_exit_3() {
    let o = hcleak(&["analyze", "fixtures/not-a-capture.pcap"]);
    assert_eq!(o.status.code(), Some(3));
    let e = one_line_no_panic(&o);
    assert!(e.contains("not-a-capture.pcap") && e.contains("not a pcap or pcapng capture"), "{e}");
}

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

fn bad_filter_is_exit_3_with_the_expression() {
    let o = hcleak(&["analyze", "fixtures/lo-basic.pcap", "tcp", "prot", "8080"]);
    assert_eq!(o.status.code(), Some(3));
    let e = one_line_no_panic(&o);
    assert!(e.contains("bad filter expression 'tcp prot 8080'"), "{e}");
}

fn a_directory_is_not_a_capture() {
    let o = hcleak(&["analyze", "fixtures/"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("is a directory"));
}

fn usage_errors_are_exit_3_not_2() {
    // clap's own exit code for usage errors is 2, which on-call scripts read as "leak".
    let o = hcleak(&["analyze", "--no-such-flag", "x.pcap"]);
    assert_eq!(o.status.code(), Some(3));
    let o = hcleak(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Exit codes"));
}

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
}

/// The plot renders: rsvg-convert (librsvg2-bin, installed by .ci/run) turns it into a PNG.
fn plot_renders_to_png() {
    let svg = tmp("render.svg");
    let o = hcleak(&["analyze", "fixtures/diag/close-wait.pcap", "--limit", "200", "--plot", svg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let r = Command::new("rsvg-convert").arg(&svg).arg("-o").arg(tmp("plot.png")).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let png = std::fs::read(tmp("plot.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
}

fn empty_file_says_so() {
    let empty = tmp("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let o = hcleak(&["analyze", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("empty.pcap: empty file, not a capture"));
}

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

fn hcleak_stdin(args: &[&str], input: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hcleak"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .expect("run hcleak")
}

fn r_file_stdin_gzip_and_zstd_give_the_plain_files_report() {
    let plain = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/diag/close-wait.pcap");
    let bytes = std::fs::read(&plain).unwrap();
    let gz = tmp("close-wait.pcap.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &bytes).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let zst = tmp("close-wait.zst");
    std::fs::write(&zst, zstd::encode_all(&bytes[..], 3).unwrap()).unwrap();
    // Told by content, not by name: gzip bytes under a .pcap name.
    let disguised = tmp("really-gzip.pcap");
    std::fs::copy(&gz, &disguised).unwrap();
    let sockets = "fixtures/diag/close-wait.sockets.csv";
    let want = hcleak(&["analyze", plain.to_str().unwrap(), "--sockets", sockets, "--format", "json"]);
    assert_eq!(want.status.code(), Some(2), "{}", stderr(&want));
    assert!(stdout(&want).contains("\"verdict\": \"leak\""));
    let mut runs = vec![];
    for f in [&plain, &gz, &zst, &disguised] {
        runs.push((
            f.display().to_string(),
            hcleak(&["analyze", "-r", f.to_str().unwrap(), "--sockets", sockets, "--format", "json"]),
        ));
    }
    for f in [&plain, &gz, &zst] {
        let o = hcleak_stdin(&["analyze", "-r", "-", "--sockets", sockets, "--format", "json"], f);
        runs.push((format!("-r - < {}", f.display()), o));
    }
    for (what, o) in &runs {
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(o));
        assert_eq!(stdout(o), stdout(&want), "{what}");
    }
}

fn a_damaged_archive_says_so_in_one_line() {
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lo-basic.pcap")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &bytes).unwrap();
    let gz = enc.finish().unwrap();
    let cut = tmp("cut.pcap.gz");
    std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let o = hcleak(&["analyze", cut.to_str().unwrap(), "--flows", "--format", "tsv"]);
    assert_eq!(o.status.code(), Some(3));
    let e = one_line_no_panic(&o);
    assert!(e.contains("cut.pcap.gz: capture damaged after") && e.contains("gzip"), "{e}");
    assert!(stdout(&o).lines().count() > 3, "what came before the damage is still printed");
    let empty = tmp("empty-input");
    std::fs::write(&empty, b"").unwrap();
    let o = hcleak_stdin(&["analyze", "-r", "-"], &empty);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("standard input: empty input, not a capture"));
}

fn after_r_or_dashes_every_word_is_the_filter() {
    // A file named like a filter word must not be read as a capture after -r or --.
    let dir = tmp("filter-words");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("port"), b"not a capture").unwrap();
    std::fs::write(dir.join("18101"), b"not a capture").unwrap();
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/diag/reset-leak.pcap");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hcleak")).args(args).current_dir(&dir).stdin(Stdio::null()).output().unwrap()
    };
    let p = pcap.to_str().unwrap();
    let want = run(&["analyze", p, "--flows", "--format", "tsv", "tcp", "port", "18102"]);
    assert_eq!(want.status.code(), Some(0), "{}", stderr(&want));
    let rows = stdout(&want).lines().count();
    assert!(rows > 5 && !stdout(&want).contains("\t18101\t"), "{}", stdout(&want));
    for args in [
        &["analyze", "-r", p, "--flows", "--format", "tsv", "tcp", "port", "18102"][..],
        &["analyze", "--flows", "--format", "tsv", p, "--", "tcp", "port", "18102"][..],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), stdout(&want), "{args:?}");
    }
    // Words after `--` are filter even when they name files; before it, all are files.
    let o = run(&["analyze", "-r", p, "port", "18101"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).contains("127.0.0.1:18101") && !stdout(&o).contains("127.0.0.1:18102"), "{}", stdout(&o));
}

fn the_same_capture_twice_is_refused_not_double_counted() {
    let o = hcleak(&["analyze", "fixtures/lo-basic.pcap", "./fixtures/lo-basic.pcap"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("are the same file"), "{}", stderr(&o));
    let o = hcleak(&["analyze", "-r", "fixtures/lo-basic.pcap", "-r", "fixtures/lo-basic.pcap"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("fixtures/lo-basic.pcap is given twice"), "{}", stderr(&o));
    let o = hcleak(&["analyze", "-r", "-", "-r", "-"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("standard input (-) is given twice"), "{}", stderr(&o));
}

fn a_filter_that_misses_tagged_frames_says_which_one_would_match() {
    let o = hcleak(&["analyze", "fixtures/vlan.pcap", "tcp", "port", "18081"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).contains("no packets"), "{}", stdout(&o));
    let e = one_line_no_panic(&o);
    assert!(e.contains("802.1Q") && e.contains("'vlan and tcp port 18081'"), "{e}");
    // The suggested filter does match, and then nothing more is said.
    let o =
        hcleak(&["analyze", "fixtures/vlan.pcap", "--flows", "--format", "tsv", "vlan", "and", "tcp", "port", "18081"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).lines().count() > 5 && stderr(&o).is_empty(), "{}", stderr(&o));
    // Untagged captures that a filter misses get no such line.
    let o = hcleak(&["analyze", "fixtures/lo-basic.pcap", "tcp", "port", "9"]);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

fn no_server_above_min_conns_says_how_many_connections_and_why() {
    let o = hcleak(&["analyze", "fixtures/diag/plain-check.pcap", "--min-conns", "100000"]);
    assert_eq!(o.status.code(), Some(3));
    let first = stdout(&o).lines().next().unwrap_or_default().to_string();
    assert!(
        first.starts_with("UNKNOWN — 251 TCP connections to 2 servers") && first.contains("--min-conns"),
        "{first}"
    );
    // With nothing at all, it says just that.
    let o = hcleak(&["analyze", "fixtures/lo-basic.pcap", "tcp", "port", "9"]);
    assert_eq!(stdout(&o).lines().next(), Some("UNKNOWN — no TCP connections to judge"));
}

fn ctrl_c_on_a_tcpdump_pipe_still_gives_the_report() {
    // `tcpdump -w - | hcleak analyze -r -`: Ctrl-C goes to both; hcleak reports what came.
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/diag/close-wait.pcap")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hcleak"))
        .args(["analyze", "-r", "-", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, &bytes[..bytes.len() / 2]).unwrap();
    // hcleak is reading (its header came through libpcap) before the signal.
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::io::Write::write_all(&mut input, &bytes[bytes.len() / 2..]).unwrap();
    drop(input);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.code().is_some(), "ended by the signal: {:?}", o.status);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    let plain = hcleak(&["analyze", "fixtures/diag/close-wait.pcap", "--format", "json"]);
    assert_eq!(stdout(&o), stdout(&plain), "the whole input was read: {}", v["capture"]);
}

fn damage_early_in_a_long_piped_capture_ends_the_run_instead_of_hanging() {
    // A bad first record, then megabytes more: libpcap stops reading while the thread feeding its
    // pipe still has data to write. The run must end with the damage line, not wait on that thread.
    let mut bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lo-basic.pcap")).unwrap();
    bytes.truncate(24);
    for v in [1u32, 0, 0x7fff_fff0, 0x7fff_fff0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.resize(bytes.len() + 3_000_000, 0);
    let input = tmp("bad-first-record.pcap");
    std::fs::write(&input, &bytes).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hcleak"))
        .args(["analyze", "-r", "-"])
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > end {
            child.kill().unwrap();
            panic!("hcleak hung on a damaged capture from standard input");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line_no_panic(&o).contains("standard input: capture damaged at its first packet"));
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let rsvg = Command::new("rsvg-convert").arg("--version").output().is_ok_and(|o| o.status.success());
    let tests = vec![
        gated(
            "plot_renders_to_png",
            (!rsvg).then(|| "the rendering check needs rsvg-convert (librsvg2-bin, installed by .ci/run)".into()),
            plot_renders_to_png,
        ),
        gated("missing_file_is_exit_3_with_the_path", None, missing_file_is_exit_3_with_the_path),
        gated("not_a_capture_is_exit_3", None, not_a_capture_is_exit_3),
        gated(
            "truncated_capture_reports_what_was_read_and_exits_3",
            None,
            truncated_capture_reports_what_was_read_and_exits_3,
        ),
        gated("bad_filter_is_exit_3_with_the_expression", None, bad_filter_is_exit_3_with_the_expression),
        gated("a_directory_is_not_a_capture", None, a_directory_is_not_a_capture),
        gated("usage_errors_are_exit_3_not_2", None, usage_errors_are_exit_3_not_2),
        gated(
            "flows_tsv_header_starts_with_the_conn_log_columns",
            None,
            flows_tsv_header_starts_with_the_conn_log_columns,
        ),
        gated("flows_json_lines_parse", None, flows_json_lines_parse),
        gated("closed_pipe_ends_quietly", None, closed_pipe_ends_quietly),
        gated("diagnosis_exit_codes_follow_the_verdict", None, diagnosis_exit_codes_follow_the_verdict),
        gated("table_leads_with_the_verdict_line", None, table_leads_with_the_verdict_line),
        gated("bad_samples_file_is_one_line_exit_3", None, bad_samples_file_is_one_line_exit_3),
        gated("nagios_line_and_exit_codes", None, nagios_line_and_exit_codes),
        gated("plot_is_valid_svg_with_the_expected_series", None, plot_is_valid_svg_with_the_expected_series),
        gated("empty_file_says_so", None, empty_file_says_so),
        gated(
            "one_or_two_threads_give_the_same_report_and_flows",
            None,
            one_or_two_threads_give_the_same_report_and_flows,
        ),
        gated(
            "r_file_stdin_gzip_and_zstd_give_the_plain_files_report",
            None,
            r_file_stdin_gzip_and_zstd_give_the_plain_files_report,
        ),
        gated("a_damaged_archive_says_so_in_one_line", None, a_damaged_archive_says_so_in_one_line),
        gated("after_r_or_dashes_every_word_is_the_filter", None, after_r_or_dashes_every_word_is_the_filter),
        gated(
            "the_same_capture_twice_is_refused_not_double_counted",
            None,
            the_same_capture_twice_is_refused_not_double_counted,
        ),
        gated(
            "a_filter_that_misses_tagged_frames_says_which_one_would_match",
            None,
            a_filter_that_misses_tagged_frames_says_which_one_would_match,
        ),
        gated(
            "no_server_above_min_conns_says_how_many_connections_and_why",
            None,
            no_server_above_min_conns_says_how_many_connections_and_why,
        ),
        gated("ctrl_c_on_a_tcpdump_pipe_still_gives_the_report", None, ctrl_c_on_a_tcpdump_pipe_still_gives_the_report),
        gated(
            "damage_early_in_a_long_piped_capture_ends_the_run_instead_of_hanging",
            None,
            damage_early_in_a_long_piped_capture_ends_the_run_instead_of_hanging,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
