//! Every option each `--help` lists does what its help says, or fails as a usage error: one line
//! on stderr, exit 3. The options are read from `--help` itself, so an option added without a
//! check here fails `every_listed_option_is_checked`.

mod common;
use common::gated;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs hcleak and waits at most a minute: a usage error that is not one (a capture that starts
/// instead) must fail the test, not hang it.
fn hcleak(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_hcleak"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hcleak");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(o) => o.expect("run hcleak"),
        Err(_) => {
            // Stop it by its own PID, then fail.
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("hcleak {args:?} did not end within 60 s");
        }
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hcleak-help-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A usage error: exit 3, one line on stderr naming the subcommand, nothing on stdout.
#[track_caller]
fn usage_error(args: &[&str], says: &str) {
    let o = hcleak(args);
    let e = err(&o);
    assert_eq!(o.status.code(), Some(3), "{args:?}: {e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{args:?}: want one line, got {e:?}");
    assert!(e.starts_with("hcleak") && e.contains(says), "{args:?}: want {says:?} in {e:?}");
    assert!(out(&o).is_empty(), "{args:?} printed {}", out(&o));
}

/// The options a `--help` lists (long name, else short), without help and version.
fn listed(sub: &[&str]) -> BTreeSet<String> {
    let o = hcleak(&[sub, &["--help"]].concat());
    assert_eq!(o.status.code(), Some(0));
    let mut opts = BTreeSet::new();
    for line in out(&o).lines() {
        let t = line.trim_start();
        if !t.starts_with('-') || line.len() - t.len() > 6 {
            continue;
        }
        let names: Vec<&str> =
            t.split([' ', ',']).filter(|w| !w.is_empty()).take_while(|w| w.starts_with('-')).collect();
        let name = names.iter().find(|n| n.starts_with("--")).or(names.first()).unwrap();
        if !matches!(*name, "--help" | "--version" | "-h" | "-V") {
            opts.insert(name.to_string());
        }
    }
    opts
}

/// Options checked below, per subcommand.
const CHECKED: [(&str, &[&str]); 7] = [
    ("", &[]),
    (
        "analyze",
        &[
            "-r",
            "--flows",
            "--format",
            "--sockets",
            "--limit",
            "--min-conns",
            "--plot",
            "--force",
            "--conntrack",
            "--max-flows",
            "--threads",
        ],
    ),
    (
        "capture",
        &[
            "--interface",
            "--list-interfaces",
            "-c",
            "--duration",
            "--snaplen",
            "-w",
            "--force",
            "--buffer-size",
            "--no-promiscuous-mode",
            "--no-sample",
            "--user",
            "--refresh",
            "--sample-interval",
            "--limit",
            "--min-conns",
            "--format",
            "--plot",
            "--metrics",
        ],
    ),
    ("sample", &["--port", "--pid", "--addr", "--interval", "--duration", "-o", "--force", "--user"]),
    (
        "probe",
        &[
            "--kinds",
            "--rate",
            "--count",
            "--duration",
            "--settle",
            "--payload",
            "--path",
            "--timeout",
            "--pid",
            "--sockets",
            "--no-sample",
            "--interval",
            "--limit",
            "--format",
            "--user",
        ],
    ),
    ("completions", &[]),
    ("man", &[]),
];

fn every_listed_option_is_checked() {
    for (sub, checked) in CHECKED {
        let args: Vec<&str> = if sub.is_empty() { vec![] } else { vec![sub] };
        let want: BTreeSet<String> = checked.iter().map(|s| s.to_string()).collect();
        assert_eq!(listed(&args), want, "`hcleak {sub} --help` lists options this test does not check, or lost one");
    }
    // And the subcommands `hcleak --help` lists are the ones above.
    let help = out(&hcleak(&["--help"]));
    for (sub, _) in CHECKED.iter().skip(1) {
        assert!(help.contains(&format!("\n  {sub} ")), "{sub} missing from hcleak --help");
    }
}

const LEAK: &str = "fixtures/diag/close-wait.pcap";
const LEAK_CSV: &str = "fixtures/diag/close-wait.sockets.csv";

fn analyze_options_do_what_help_says() {
    // -r: the capture to read; every other word is the filter.
    let plain = hcleak(&["analyze", LEAK, "--format", "json"]);
    let r = hcleak(&["analyze", "-r", LEAK, "--format", "json"]);
    assert_eq!((r.status.code(), out(&r)), (plain.status.code(), out(&plain)));
    let r = hcleak(&["analyze", "-r", LEAK, "--flows", "--format", "tsv", "port", "18142"]);
    assert!(out(&r).lines().skip(1).all(|l| l.contains("\t18142\t")) && out(&r).lines().count() > 3);

    // --flows: a summary by conn_state by default; one row per connection with tsv/zeek/json/jsonl.
    let summary = out(&hcleak(&["analyze", LEAK, "--flows"]));
    let total: usize = summary.split("; ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
    assert!(summary.contains("conn_state") && total > 10, "{summary}");
    let rows = |f: &str| {
        out(&hcleak(&["analyze", LEAK, "--flows", "--format", f])).lines().filter(|l| !l.starts_with('#')).count()
    };
    assert_eq!(rows("tsv"), total + 1, "tsv: a header row, then one per connection");
    assert_eq!(rows("zeek"), total);
    assert_eq!(rows("json"), total);
    assert_eq!(rows("jsonl"), total);

    // --format: each value as its help says.
    let first = |f: &str, flows: bool| {
        let mut a = vec!["analyze", LEAK, "--format", f];
        if flows {
            a.push("--flows");
        }
        out(&hcleak(&a)).lines().next().unwrap_or_default().to_string()
    };
    assert!(first("table", false).starts_with("UNKNOWN — ") || first("table", false).starts_with("LEAK — "));
    assert!(serde_json::from_str::<serde_json::Value>(&out(&hcleak(&["analyze", LEAK, "--format", "json"]))).is_ok());
    let jsonl: serde_json::Value = serde_json::from_str(&first("jsonl", false)).unwrap();
    assert_eq!(jsonl["type"], "final");
    assert!(first("nagios", false).starts_with("HCLEAK "));
    assert!(first("zeek", true).starts_with("#separator \\x09"));
    let conn: serde_json::Value = serde_json::from_str(&first("jsonl", true)).unwrap();
    assert_eq!(conn["type"], "conn");
    assert!(serde_json::from_str::<serde_json::Value>(&first("json", true)).unwrap()["conn_state"].is_string());
    usage_error(&["analyze", LEAK, "--format", "tsv"], "--format tsv writes one row per connection: add --flows");
    usage_error(&["analyze", LEAK, "--format", "zeek"], "add --flows");
    usage_error(&["analyze", LEAK, "--flows", "--format", "nagios"], "no meaning with --flows");
    usage_error(&["analyze", LEAK, "--format", "csv"], "invalid value 'csv' for '--format <FORMAT>'");

    // --sockets: host samples decide what the wire cannot.
    assert_eq!(hcleak(&["analyze", "fixtures/diag/reset-leak.pcap"]).status.code(), Some(3));
    let s = hcleak(&["analyze", "fixtures/diag/reset-leak.pcap", "--sockets", "fixtures/diag/reset-leak.sockets.csv"]);
    assert_eq!(s.status.code(), Some(2));
    usage_error(&["analyze", LEAK, "--flows", "--sockets", LEAK_CSV], "no meaning with --flows");

    // --limit: the time to exhaustion.
    let l = out(&hcleak(&["analyze", LEAK, "--sockets", LEAK_CSV, "--limit", "1024"]));
    assert!(l.lines().next().unwrap().contains("limit 1024 reached in"), "{l}");
    usage_error(&["analyze", LEAK, "--limit", "-1"], "--limit <N>': must be a positive number");
    usage_error(&["analyze", LEAK, "--limit", "0"], "must be a positive number");
    usage_error(&["analyze", LEAK, "--flows", "--limit", "9"], "no meaning with --flows");

    // --min-conns: servers with fewer connections are left out.
    let json = |args: &[&str]| -> serde_json::Value { serde_json::from_str(&out(&hcleak(args))).unwrap() };
    let all = json(&["analyze", "fixtures/diag/restart.pcap", "--format", "json", "--min-conns", "0"]);
    let n = all["backends"].as_array().unwrap().len();
    let least = all["backends"].as_array().unwrap().iter().map(|b| b["connections"].as_u64().unwrap()).min().unwrap();
    let fewer =
        json(&["analyze", "fixtures/diag/restart.pcap", "--format", "json", "--min-conns", &(least + 1).to_string()]);
    assert_eq!(fewer["backends"].as_array().unwrap().len(), n - 1, "the server with {least} connections is left out");
    usage_error(&["analyze", LEAK, "--min-conns", "-3"], "must be at least 0");
    usage_error(&["analyze", LEAK, "--flows", "--min-conns", "1"], "no meaning with --flows");

    // --plot: an SVG file.
    let svg = tmp("a.svg");
    assert_eq!(
        hcleak(&["analyze", LEAK, "--sockets", LEAK_CSV, "--plot", svg.to_str().unwrap()]).status.code(),
        Some(2)
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    usage_error(&["analyze", LEAK, "--flows", "--plot", "x.svg"], "no meaning with --flows");
    // --force: the plot exists now; it is replaced only when asked, and asking needs a --plot.
    usage_error(&["analyze", LEAK, "--plot", svg.to_str().unwrap()], "exists");
    std::fs::write(&svg, b"old").unwrap();
    assert_eq!(hcleak(&["analyze", LEAK, "--plot", svg.to_str().unwrap(), "--force"]).status.code(), Some(2));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    usage_error(&["analyze", LEAK, "--force"], "--plot <FILE.svg>");

    // --conntrack: a saved table (tests/containers.rs joins a real one); a missing file is one line.
    usage_error(&["analyze", LEAK, "--conntrack", "/no/such/ct.txt"], "/no/such/ct.txt: no such file");

    // --max-flows: beyond it connections are finished early, and the report says how many.
    let capped = out(&hcleak(&["analyze", "fixtures/lo-basic.pcap", "--max-flows", "1"]));
    assert!(capped.contains("finished early because the flow table was full"), "{capped}");
    assert!(!out(&hcleak(&["analyze", "fixtures/lo-basic.pcap"])).contains("finished early"));
    usage_error(&["analyze", LEAK, "--max-flows", "0"], "must be a positive number");

    // --threads: 1 or 2, same results.
    let one = hcleak(&["analyze", LEAK, "--threads", "1", "--format", "json"]);
    let two = hcleak(&["analyze", LEAK, "--threads", "2", "--format", "json"]);
    assert_eq!(out(&one), out(&two));
    usage_error(&["analyze", LEAK, "--threads", "3"], "--threads must be 1 or 2");
}

fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(u32::MAX)
}

fn capture_options_do_what_help_says_or_are_refused() {
    // Refused before anything is opened.
    usage_error(&["capture"], "--interface <IFACE>");
    usage_error(&["capture", "-i", "lo", "--force"], "-w <FILE>");
    usage_error(&["capture", "-i", "lo", "-Z", "no-such-user-hcleak"], "no-such-user-hcleak");
    usage_error(&["capture", "-i", "lo", "--no-sample", "--sample-interval", "1s"], "cannot be used with");
    usage_error(&["capture", "-i", "lo", "-c", "-5"], "must be a positive number");
    usage_error(&["capture", "-i", "lo", "-s", "10"], "-s must be 0 (whole packets) or 64 to 262144 bytes");
    usage_error(&["capture", "-i", "lo", "-s", "-1"], "-s must be 0 (whole packets) or 64 to 262144 bytes");
    usage_error(&["capture", "-i", "lo", "-B", "0"], "-B must be 1 to 2097151 (KiB");
    usage_error(&["capture", "-i", "lo", "-B", "-3"], "-B must be 1 to 2097151 (KiB");
    usage_error(&["capture", "-i", "lo", "--limit", "-1"], "must be a positive number");
    usage_error(&["capture", "-i", "lo", "--min-conns", "x"], "not a whole number");
    usage_error(&["capture", "-i", "lo", "--duration", "soon"], "bad duration 'soon'");
    usage_error(&["capture", "-i", "lo", "--refresh", "soon"], "bad duration");
    usage_error(&["capture", "-i", "lo", "--format", "tsv"], "invalid value 'tsv'");
    let exists = tmp("exists.pcap");
    std::fs::write(&exists, b"keep").unwrap();
    usage_error(&["capture", "-i", "lo", "-w", exists.to_str().unwrap()], "exists; pass --force to overwrite it");
    assert_eq!(std::fs::read(&exists).unwrap(), b"keep");

    // -D lists interfaces, loopback among them.
    let d = hcleak(&["capture", "-D"]);
    assert_eq!(d.status.code(), Some(0), "{}", err(&d));
    assert!(out(&d).lines().any(|l| l.contains(".lo")), "{}", out(&d));
}

/// The capture options on a live capture of loopback (root).
fn capture_options_work_on_a_live_capture() {
    // A listener and a client make traffic on loopback while hcleak captures it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let traffic = std::thread::spawn(move || {
        for _ in 0..40 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let _c = std::net::TcpStream::connect(l.local_addr().unwrap());
            let _ = l.accept();
        }
    });
    // Without sampling: -c stops it, -s cuts frames, -w keeps them (and --force overwrites), -Z
    // drops root, the final report comes as --format says with --limit, --min-conns and --plot.
    let pcap = tmp("live.pcap");
    std::fs::write(&pcap, b"old").unwrap();
    // The plot is written after root is dropped: into a directory anyone may write.
    let open_dir = tmp("open");
    std::fs::create_dir_all(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let svg = open_dir.join("live.svg");
    let o = hcleak(&[
        "capture",
        "-i",
        "lo",
        "-c",
        "12",
        "--duration",
        "20",
        "-s",
        "96",
        "-B",
        "4",
        "-p",
        "--no-sample",
        "-Z",
        "nobody",
        "-w",
        pcap.to_str().unwrap(),
        "--force",
        "--format",
        "json",
        "--limit",
        "500",
        "--min-conns",
        "1",
        "--refresh",
        "100ms",
        "--plot",
        svg.to_str().unwrap(),
        "tcp",
        "port",
        &port,
    ]);
    assert_eq!(err(&o).lines().filter(|l| l.contains("usage") || l.contains("--help")).count(), 0, "{}", err(&o));
    assert!(err(&o).contains("12 packets captured") && err(&o).contains("running as nobody"), "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["capture"]["packets"], 12);
    assert_eq!(doc["backends"][0]["limit"], 500, "{doc}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let saved = std::fs::read(&pcap).unwrap();
    assert_eq!(u32::from_le_bytes(saved[16..20].try_into().unwrap()), 96, "snaplen in the pcap header");
    let again = hcleak(&["analyze", pcap.to_str().unwrap(), "--flows"]);
    assert!(out(&again).starts_with("12 packets"), "{}", out(&again));

    // With sampling, --duration ends it; --metrics serves while it runs (tests/live.rs scrapes it).
    let t0 = std::time::Instant::now();
    let o = hcleak(&[
        "capture",
        "-i",
        "lo",
        "--duration",
        "1s",
        "--sample-interval",
        "200ms",
        "--metrics",
        "0",
        "--format",
        "jsonl",
        "tcp",
        "port",
        &port,
    ]);
    assert!(t0.elapsed().as_secs_f64() < 10.0);
    assert!(err(&o).contains("serving metrics at http://127.0.0.1:"), "{}", err(&o));
    assert!(out(&o).lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{}", out(&o));
    traffic.join().unwrap();
}

fn sample_options_do_what_help_says() {
    usage_error(&["sample"], "--port <PORT>");
    usage_error(&["sample", "--port", "0", "--pid", "1"], "process 1 does not listen on port 0");
    usage_error(&["sample", "--port", "70000"], "invalid value '70000'");
    usage_error(&["sample", "--port", "9", "--addr", "nowhere"], "invalid value 'nowhere'");
    // This test process listens; hcleak samples it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let pid = std::process::id().to_string();
    let csv = tmp("samples.csv");
    let o = hcleak(&[
        "sample",
        "--port",
        &port,
        "--pid",
        &pid,
        "--addr",
        "10.1.2.3",
        "--interval",
        "100ms",
        "--duration",
        "550ms",
        "-o",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!((3..=7).contains(&rows.len()), "every 100 ms for 550 ms: {text}");
    assert!(rows.iter().all(|r| r.contains(&format!(",10.1.2.3:{port},"))), "{text}");
    assert!(err(&o).contains(&format!("of pid {pid}")), "{}", err(&o));
    // --force: -o exists now; replaced only when asked, and asking needs an -o.
    usage_error(&["sample", "--port", &port, "--duration", "150ms", "-o", csv.to_str().unwrap()], "exists");
    let o = hcleak(&["sample", "--port", &port, "--duration", "150ms", "-o", csv.to_str().unwrap(), "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    usage_error(&["sample", "--port", &port, "--force"], "-o <FILE>");
    // --user: an unknown user is refused before anything is sampled.
    usage_error(&["sample", "--port", &port, "-Z", "no-such-user-hcleak"], "no-such-user-hcleak");
    // Without -o, the CSV goes to standard output, labelled with the listening address.
    let o = hcleak(&["sample", "--port", &port, "--duration", "150ms"]);
    assert!(
        out(&o).starts_with("ts,backend,sockets") && out(&o).contains(&format!(",127.0.0.1:{port},")),
        "{}",
        out(&o)
    );
    drop(l);
}

fn completions_and_man_come_from_the_same_definitions() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef hcleak"),
        ("fish", "complete -c hcleak"),
        ("elvish", "arg-completer[hcleak]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let o = hcleak(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0));
        let s = out(&o);
        assert!(s.contains(marker) && s.contains("max-flows") && s.contains("sample-interval"), "{shell}");
    }
    usage_error(&["completions", "tcsh"], "invalid value 'tcsh'");
    let o = hcleak(&["man"]);
    assert_eq!(o.status.code(), Some(0));
    let page = out(&o);
    assert!(page.starts_with(".ie") || page.contains(".TH hcleak"), "{}", &page[..200.min(page.len())]);
    for opt in
        ["\\-\\-flows", "\\-\\-max\\-flows", "\\-\\-snaplen", "\\-\\-sample\\-interval", "\\-\\-pid", "HCLEAK ANALYZE"]
    {
        assert!(page.contains(opt), "man page lacks {opt}");
    }
    // man(1) can render it, when installed.
    if Path::new("/usr/bin/groff").exists() {
        let f = tmp("hcleak.1");
        std::fs::write(&f, &page).unwrap();
        let r = Command::new("groff").args(["-k", "-man", "-Tutf8"]).arg(&f).output().unwrap();
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(r.status.success() && text.contains("Servers with fewer connections than this"), "{text}");
    }
}

fn usage_errors_are_one_line_with_exit_3() {
    usage_error(&[], "a subcommand is required");
    usage_error(&["frob"], "unrecognized subcommand 'frob'");
    usage_error(&["analyze"], "required arguments were not provided");
    usage_error(&["analyze", "--no-such-flag", "x.pcap"], "unexpected argument '--no-such-flag'");
    usage_error(&["analyze", "-r"], "a value is required for '-r <FILE>'");
    usage_error(&["analyze", LEAK, "--limit", "-1"], "hcleak analyze: invalid value '-1' for '--limit <N>'");
    let v = hcleak(&["--version"]);
    assert_eq!(v.status.code(), Some(0));
    assert!(out(&v).starts_with("hcleak "));
}

fn completions_and_man_into_a_closed_pipe_end_quietly() {
    for args in [&["completions", "zsh"][..], &["completions", "bash"][..], &["man"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hcleak"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", err(&o));
        assert!(err(&o).is_empty(), "{args:?}: {}", err(&o));
    }
}

/// `hcleak probe`: what each option does against real servers is in tests/probe.rs (root,
/// loopback); here, that every option is used there, and that bad values are one-line refusals
/// before anything is sent.
fn probe_options_are_exercised_or_refused() {
    let tests = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/probe.rs")).unwrap();
    for opt in ["--kinds", "--rate", "--count", "--duration", "--settle", "--payload", "--path", "--sockets"] {
        assert!(tests.contains(&format!("\"{opt}\"")), "tests/probe.rs never uses {opt}");
    }
    for opt in ["--no-sample", "--interval", "--limit", "--format"] {
        assert!(tests.contains(opt), "tests/probe.rs never uses {opt}");
    }
    let t = "127.0.0.1:9";
    usage_error(&["probe", t, "--rate", "0"], "--rate must be above 0");
    usage_error(&["probe", t, "--rate", "-1"], "--rate must be above 0");
    usage_error(&["probe", t, "--count", "0"], "at least 5");
    usage_error(&["probe", t, "--count", "-3"], "--count");
    usage_error(&["probe", t, "--kinds", "bogus"], "unknown shape 'bogus'");
    usage_error(&["probe", t, "--format", "tsv"], "invalid value 'tsv'");
    usage_error(&["probe", t, "--payload", "\\xZZ"], "--payload: bad \\xZZ");
    usage_error(&["probe", t, "--limit", "0"], "must be a positive number");
    usage_error(&["probe", t, "--settle", "soon"], "bad duration");
    usage_error(&["probe", t, "--duration", "soon"], "bad duration");
    usage_error(&["probe", t, "--interval", "soon"], "bad duration");
    usage_error(&["probe", "nohostport"], "give HOST:PORT");
    // Nothing listens on port 9: refused before any probe, whatever the timeout and sampling.
    let o = hcleak(&["probe", t, "--no-sample", "--kinds", "connect_fin", "--timeout", "200ms", "--path", "/x"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(err(&o).contains("does not take a plain connection"), "{}", err(&o));
    usage_error(&["probe", t, "--timeout", "soon"], "bad duration");
}

/// The probe options that only root reaches (`--pid` of another process, `-Z`).
fn probe_options_as_root() {
    let t = "127.0.0.1:9";
    let o = hcleak(&["probe", t, "--pid", "999999", "--kinds", "connect_fin"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(err(&o).contains("process 999999 does not listen on port 9"), "{}", err(&o));
    let o = hcleak(&["probe", t, "-Z", "no-such-user-hcleak"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(err(&o).contains("no-such-user-hcleak: no such user"), "{}", err(&o));
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let root = (!is_root()).then(|| "the live capture checks need root".to_string());
    let tests = vec![
        gated("capture_options_work_on_a_live_capture", root.clone(), capture_options_work_on_a_live_capture),
        gated("probe_options_as_root", root, probe_options_as_root),
        gated("every_listed_option_is_checked", None, every_listed_option_is_checked),
        gated("analyze_options_do_what_help_says", None, analyze_options_do_what_help_says),
        gated(
            "capture_options_do_what_help_says_or_are_refused",
            None,
            capture_options_do_what_help_says_or_are_refused,
        ),
        gated("sample_options_do_what_help_says", None, sample_options_do_what_help_says),
        gated(
            "completions_and_man_come_from_the_same_definitions",
            None,
            completions_and_man_come_from_the_same_definitions,
        ),
        gated("usage_errors_are_one_line_with_exit_3", None, usage_errors_are_one_line_with_exit_3),
        gated(
            "completions_and_man_into_a_closed_pipe_end_quietly",
            None,
            completions_and_man_into_a_closed_pipe_end_quietly,
        ),
        gated("probe_options_are_exercised_or_refused", None, probe_options_are_exercised_or_refused),
    ];
    libtest_mimic::run(&args, tests).exit();
}
