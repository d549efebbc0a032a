//! Issue 16, "safe to run as root": the attacks from the issue, each as a test through the real
//! binary (or the library where that is where the behaviour lives).
//!
//! - escape sequences from packets are shown escaped in every output format;
//! - a symlink, dangling or not, at any output path is refused and its target left alone; under
//!   sudo only files hcleak created are given to the invoking user;
//! - a bad argument leaves every existing output byte-identical;
//! - `-Z` with an unknown user exits 3 before capturing; a capture runs as the unprivileged user
//!   with only the capabilities the sampler needs (and those are the minimum);
//! - `/metrics` answers fast with idle connections open, and 405 to POST.
//!
//! Tests that need root (raw capture, chown, capability changes) say "ignored: …" and return
//! when not root, and fail when `CI=true` (CI runs as root: a missing prerequisite there is a bug).
//! Network use is loopback only; every wait is bounded; processes are stopped by their own PID.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hcleak");

/// Kills the process by its PID when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True when running as root; otherwise "ignored" (a failure under CI=true).
fn root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} needs root, and CI runs as root: the prerequisite is missing");
    }
    eprintln!("ignored: {what} needs root");
    false
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hcleak-security-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

fn run(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(cwd).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run hcleak")
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 3 with exactly one `hcleak: ` line on stderr containing `want`.
fn fails_with(o: &Output, want: &str, ctx: &str) {
    let e = err(o);
    assert_eq!(o.status.code(), Some(3), "{ctx}: {e}");
    assert_eq!(e.lines().count(), 1, "{ctx}: want one stderr line, got {e:?}");
    assert!(e.starts_with("hcleak: ") && e.contains(want), "{ctx}: want '{want}' in {e:?}");
}

/// Names in a directory, sorted.
fn listing(d: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Content, inode, owner and mtime of every file in a directory (symlinks as their target text).
fn snapshot(d: &Path) -> Vec<(String, Vec<u8>, u64, u32, i64, i64)> {
    listing(d)
        .into_iter()
        .map(|n| {
            let p = d.join(&n);
            let m = std::fs::symlink_metadata(&p).unwrap();
            let bytes = if m.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()
            } else if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            (n, bytes, m.ino(), m.uid(), m.mtime(), m.mtime_nsec())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Terminal escapes from the wire.

/// The HTTP-check recording with every `/health` (7 bytes) replaced by an OSC title sequence of
/// the same length: ESC ] 0 ; T BEL. Lengths are unchanged, so the capture stays well-formed.
fn hostile_capture(d: &Path) -> PathBuf {
    let mut b = std::fs::read(fixture("diag/httpchk-keepalive.pcap")).unwrap();
    let (from, to) = (b"/health", b"/\x1b]0;T\x07");
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= b.len() {
        if &b[i..i + from.len()] == from {
            b[i..i + from.len()].copy_from_slice(to);
            n += 1;
        }
        i += 1;
    }
    assert!(n > 100, "the fixture should carry many checks, found {n}");
    let p = d.join("hostile.pcap");
    std::fs::write(&p, b).unwrap();
    p
}

fn no_raw_controls(bytes: &[u8], ctx: &str) {
    let bad: Vec<u8> = bytes.iter().copied().filter(|&c| (c < 0x20 && c != b'\n' && c != b'\t') || c == 0x7f).collect();
    assert!(bad.is_empty(), "{ctx}: raw control bytes {bad:?} in output:\n{}", String::from_utf8_lossy(bytes));
}

#[test]
fn escape_sequences_from_packets_are_escaped_in_every_output_format() {
    let d = dir("escapes");
    let cap = hostile_capture(&d);
    let f = cap.to_str().unwrap();
    // The attack is really there: JSON (which escapes by itself) carries the raw request.
    let o = run(&["analyze", f, "--format", "json"], &d, &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    let requests: Vec<String> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["probers"].as_array().unwrap().iter())
        .filter_map(|p| p["request"].as_str().map(String::from))
        .collect();
    assert!(requests.iter().any(|r| r == "GET /\x1b]0;T\x07"), "hostile request not recognised: {requests:?}");
    no_raw_controls(&o.stdout, "json");

    let svg = d.join("plot.svg");
    let runs: [(&str, Vec<&str>); 6] = [
        ("table", vec!["analyze", f]),
        ("nagios", vec!["analyze", f, "--format", "nagios"]),
        ("tsv", vec!["analyze", f, "--format", "tsv"]),
        ("jsonl", vec!["analyze", f, "--format", "jsonl"]),
        ("flows tsv", vec!["analyze", f, "--flows", "--format", "tsv"]),
        ("flows table", vec!["analyze", f, "--flows"]),
    ];
    for (name, args) in &runs {
        let o = run(args, &d, &[]);
        assert!(matches!(o.status.code(), Some(0..=3)), "{name}: {}", err(&o));
        no_raw_controls(&o.stdout, name);
        no_raw_controls(&o.stderr, name);
        if *name == "table" {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("GET /\\x1b]0;T\\x07"), "table must show the request, escaped:\n{text}");
        }
    }
    let o = run(&["analyze", f, "--plot", svg.to_str().unwrap()], &d, &[]);
    assert!(matches!(o.status.code(), Some(0..=3)) && svg.exists(), "plot: {}", err(&o));
    let text = std::fs::read(&svg).unwrap();
    no_raw_controls(&text, "svg");
    roxmltree::Document::parse(std::str::from_utf8(&text).unwrap()).expect("the SVG is well-formed XML");
    let _ = std::fs::remove_dir_all(&d);
}

/// The table, the live view (the same renderer), the Nagios line and the SVG, from a report
/// whose prober request and evidence carry escapes and markup.
#[test]
fn rendered_reports_escape_hostile_text_in_table_nagios_and_svg() {
    use hcleak::backend::Backends;
    use hcleak::flow::FlowConfig;
    use hcleak::pipeline::{read_flows, DecodeStats};
    use hcleak::verdict::{judge, Options};
    let (conns, _, _) = read_flows(&[fixture("diag/httpchk-keepalive.pcap")], None, FlowConfig::default()).unwrap();
    let mut b = Backends::new();
    for c in &conns {
        b.add(c);
    }
    let mut r = judge(&b, None, &Options { limit: Some(100), min_conns: 3 });
    let hostile = "GET /\u{1b}]0;pwned\u{7}\u{1b}[2J<script>&\u{9b}1m\u{202e}";
    let mut seen = false;
    for be in &mut r.backends {
        for p in &mut be.probers {
            p.request = Some(hostile.into());
            seen = true;
        }
        // Findings carry no packet text; the one outside text they carry is a process name,
        // which any local user chooses.
        let process = hcleak::sockets::Comm::new("\u{1b}[2J\u{9b}x\u{7}");
        be.evidence.insert(
            0,
            hcleak::verdict::Finding::ServerSoftware(hcleak::verdict::Software {
                process,
                container: None,
                header: None,
            }),
        );
    }
    assert!(seen, "the recording has probers");
    // A verdict whose headline quotes the first evidence line (what the Nagios line carries).
    r.verdict = hcleak::verdict::Verdict::Suspicious;
    r.backends[0].driver = None;
    r.backends[0].stopped = None;
    let mut table = Vec::new();
    hcleak::render::report_table(&mut table, &r, &DecodeStats::default()).unwrap();
    let mut nagios = Vec::new();
    hcleak::render::report_nagios(&mut nagios, &r).unwrap();
    for (name, out) in [("table", &table), ("nagios", &nagios)] {
        no_raw_controls(out, name);
        let t = String::from_utf8_lossy(out);
        assert!(!t.contains('\u{9b}') && !t.contains('\u{202e}'), "{name}: {t}");
        let want = if name == "table" { "\\x1b]0;pwned\\x07\\x1b[2J" } else { "\\x1b[2J" };
        assert!(t.contains(want), "{name} must show the text escaped: {t}");
    }
    assert_eq!(String::from_utf8_lossy(&nagios).lines().count(), 1);
    let svg = hcleak::plot::svg(&r).unwrap();
    no_raw_controls(svg.as_bytes(), "svg");
    roxmltree::Document::parse(&svg).expect("well-formed SVG");
}

// ---------------------------------------------------------------------------------------------
// 2. Symlinks at output paths; chown only what hcleak created.

/// Every output path, each as a symlink to a file and as a dangling one, with and without
/// --force: refused, the target untouched, nothing new in the directory. These fail before the
/// capture is opened, so they need no root.
#[test]
fn a_symlink_at_any_output_path_is_refused_and_its_target_untouched() {
    let d = dir("symlinks");
    let victim = d.join("victim");
    std::fs::write(&victim, b"root:x:0:0::/root:/bin/sh\n").unwrap();
    let pcap = fixture("lo-basic.pcap");
    let pcap = pcap.to_str().unwrap();
    for dangling in [false, true] {
        for force in [false, true] {
            // (command line, the argument that is a symlink)
            let cases: Vec<(Vec<&str>, &str)> = vec![
                (vec!["capture", "-i", "lo", "--duration", "1s", "-w", "out"], "out"),
                (vec!["capture", "-i", "lo", "--duration", "1s", "-w", "dump.pcap"], "dump.pcap.sockets.csv"),
                (vec!["capture", "-i", "lo", "--duration", "1s", "--plot", "out"], "out"),
                (vec!["analyze", pcap, "--plot", "out"], "out"),
                (vec!["sample", "--port", "9", "--duration", "1s", "-o", "out"], "out"),
            ];
            for (mut args, link) in cases {
                let target = if dangling { d.join("nowhere") } else { victim.clone() };
                std::os::unix::fs::symlink(&target, d.join(link)).unwrap();
                if force {
                    args.push("--force");
                }
                let before = snapshot(&d);
                let ctx = format!("{args:?} with {link} -> {}", target.display());
                let o = run(&args, &d, &[("SUDO_UID", "4242"), ("SUDO_GID", "4242")]);
                fails_with(&o, "symbolic link", &ctx);
                assert_eq!(snapshot(&d), before, "{ctx}: the directory changed");
                assert!(!d.join("nowhere").exists(), "{ctx}: the dangling target was created");
                std::fs::remove_file(d.join(link)).unwrap();
            }
        }
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"root:x:0:0::/root:/bin/sh\n");
    let _ = std::fs::remove_dir_all(&d);
}

/// Under sudo, files hcleak creates go to SUDO_UID by their descriptor; a file it refused to
/// write, or one reached through a symlink, keeps its owner.
#[test]
fn under_sudo_only_files_hcleak_created_are_given_to_the_user() {
    if !root("chown to SUDO_UID") {
        return;
    }
    let d = dir("sudo");
    let victim = d.join("passwd");
    std::fs::write(&victim, b"keep").unwrap();
    std::os::unix::fs::symlink(&victim, d.join("link.svg")).unwrap();
    std::fs::write(d.join("old.svg"), b"old").unwrap();
    let pcap = fixture("diag/close-wait.pcap");
    let pcap = pcap.to_str().unwrap();
    let sudo = [("SUDO_UID", "4242"), ("SUDO_GID", "4343")];
    fails_with(&run(&["analyze", pcap, "--plot", "link.svg", "--force"], &d, &sudo), "symbolic link", "link");
    fails_with(&run(&["analyze", pcap, "--plot", "old.svg"], &d, &sudo), "--force", "existing");
    let o = run(&["analyze", pcap, "--plot", "new.svg"], &d, &sudo);
    assert!(matches!(o.status.code(), Some(0..=2)), "{}", err(&o));
    let o = run(&["analyze", pcap, "--plot", "old.svg", "--force"], &d, &sudo);
    assert!(matches!(o.status.code(), Some(0..=2)), "{}", err(&o));
    for (name, uid, gid) in [("passwd", 0, 0), ("new.svg", 4242, 4343), ("old.svg", 4242, 4343)] {
        let m = std::fs::metadata(d.join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{name}");
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    assert!(std::fs::read_to_string(d.join("old.svg")).unwrap().starts_with("<svg"));
    // No temporary file is left behind.
    assert_eq!(listing(&d), vec!["link.svg", "new.svg", "old.svg", "passwd"]);
    let _ = std::fs::remove_dir_all(&d);
}

// ---------------------------------------------------------------------------------------------
// 3. Bad arguments leave the disk as it was.

#[test]
fn a_bad_metrics_plot_or_w_argument_leaves_every_existing_file_byte_identical() {
    let d = dir("identical");
    std::fs::write(d.join("keep.pcap"), b"\xd4\xc3\xb2\xa1 a capture worth keeping").unwrap();
    std::fs::write(d.join("keep.pcap.sockets.csv"), b"ts,backend,sockets\n1,127.0.0.1:80,3\n").unwrap();
    std::fs::write(d.join("keep.svg"), b"<svg/>").unwrap();
    std::fs::create_dir(d.join("subdir")).unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--metrics", "99999"], "bad --metrics"),
        (vec!["--metrics", &busy_port], "cannot serve metrics"),
        (vec!["--plot", "no/such/dir/x.svg"], "cannot write no/such/dir/x.svg"),
        (vec!["--plot", "subdir"], "not a regular file"),
        (vec!["-w", "no/such/dir/x.pcap"], "cannot write no/such/dir/x.pcap"),
        (vec!["-Z", "no-such-user-hcleak"], "no such user"),
        (vec!["-s", "10"], "-s must be"),
        (vec!["-B", "4194304"], "-B must be"),
    ];
    for (extra, want) in &cases {
        for force in [true, false] {
            let mut args: Vec<&str> = vec!["capture", "-i", "lo", "--duration", "2s"];
            args.extend(extra);
            // The existing outputs, unless the case replaces one of them.
            if !extra.contains(&"-w") {
                args.extend(["-w", "keep.pcap"]);
            }
            if !extra.contains(&"--plot") {
                args.extend(["--plot", "keep.svg"]);
            }
            if force {
                args.push("--force");
            }
            let before = snapshot(&d);
            let o = run(&args, &d, &[]);
            let ctx = format!("{args:?}");
            if force {
                fails_with(&o, want, &ctx);
            } else {
                // Without --force the existing files are refused first, or the bad argument is.
                assert_eq!(o.status.code(), Some(3), "{ctx}: {}", err(&o));
                assert_eq!(err(&o).lines().count(), 1, "{ctx}: {}", err(&o));
            }
            assert_eq!(snapshot(&d), before, "{ctx}: the directory changed");
        }
    }
    drop(busy);
    let _ = std::fs::remove_dir_all(&d);
}

// ---------------------------------------------------------------------------------------------
// 4. Privileges.

#[test]
fn an_unknown_z_user_exits_3_before_capturing() {
    let d = dir("nosuchuser");
    let t = Instant::now();
    for sampling in [true, false] {
        let mut args = vec!["capture", "-i", "lo", "--duration", "5s", "-w", "x.pcap", "-Z", "no-such-user-hcleak"];
        if !sampling {
            args.push("--no-sample");
        }
        let o = run(&args, &d, &[]);
        fails_with(&o, "-Z no-such-user-hcleak: no such user", &format!("{args:?}"));
        assert!(!err(&o).contains("packets captured"));
        assert!(o.stdout.is_empty(), "nothing is reported: {}", String::from_utf8_lossy(&o.stdout));
    }
    assert!(t.elapsed() < Duration::from_secs(4), "it must stop at once, not capture for 5 s");
    assert!(listing(&d).is_empty(), "{:?}", listing(&d));
    let _ = std::fs::remove_dir_all(&d);
}

/// A capture as a child with stderr read line by line.
struct Capture {
    proc: Proc,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Capture {
    fn start(args: &[&str], cwd: &Path) -> Capture {
        Capture::start_env(args, cwd, &[])
    }

    fn start_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Capture {
        let mut c = Command::new(BIN);
        c.args(args).current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut c = c.spawn().unwrap();
        let err = c.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Capture { proc: Proc(c), lines, stderr: Vec::new() }
    }

    /// Waits (bounded) for a stderr line containing `want`.
    fn wait_for(&mut self, want: &str) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.stderr.push(l.clone());
                    if l.contains(want) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no '{want}' on stderr within 10 s: {:?}", self.stderr);
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// Waits (bounded) for the end; stdout and the rest of stderr.
    fn finish(mut self) -> (Option<i32>, Vec<u8>, Vec<String>) {
        let end = Instant::now() + Duration::from_secs(20);
        let code = loop {
            if let Some(s) = self.proc.0.try_wait().unwrap() {
                break s.code();
            }
            assert!(Instant::now() < end, "capture did not end by itself");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = Vec::new();
        if let Some(mut o) = self.proc.0.stdout.take() {
            o.read_to_end(&mut out).unwrap();
        }
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.stderr.push(l);
        }
        (code, out, std::mem::take(&mut self.stderr))
    }
}

fn status_fields(pid: u32) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect()
}

fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody").unwrap().expect("a 'nobody' user");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// CAP_DAC_READ_SEARCH (2) and CAP_SYS_PTRACE (19).
const SAMPLER_MASK: u64 = (1 << 2) | (1 << 19);

/// While a sampling capture runs, /proc/PID/status shows nobody and only the two capabilities;
/// the sampler still reads a root-owned server's sockets (the report's source is the host).
#[test]
fn a_sampling_capture_runs_unprivileged_with_only_the_sampler_capabilities() {
    if !root("a live capture") {
        return;
    }
    let d = dir("caps");
    // A root-owned server (this process) with connections held open.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ports = port.to_string();
    // Under sudo, with -w: the pcap and the samples beside it go to the invoking user.
    let mut cap = Capture::start_env(
        &[
            "capture",
            "-i",
            "lo",
            "--duration",
            "5s",
            "--sample-interval",
            "200ms",
            "--format",
            "json",
            "-w",
            "dump.pcap",
            "tcp",
            "port",
            &ports,
        ],
        &d,
        &[("SUDO_UID", "4242"), ("SUDO_GID", "4343")],
    );
    let line = cap.wait_for("running as");
    assert!(line.contains("CAP_DAC_READ_SEARCH") && line.contains("CAP_SYS_PTRACE"), "{line}");
    let s = status_fields(cap.pid());
    let (uid, gid) = nobody();
    assert_eq!(s["Uid"], format!("{uid}\t{uid}\t{uid}\t{uid}"), "{s:?}");
    assert_eq!(s["Gid"], format!("{gid}\t{gid}\t{gid}\t{gid}"), "{s:?}");
    for k in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(u64::from_str_radix(&s[k], 16).unwrap(), SAMPLER_MASK, "{k}: {s:?}");
    }
    for k in ["CapInh", "CapAmb"] {
        assert_eq!(u64::from_str_radix(&s[k], 16).unwrap(), 0, "{k}: {s:?}");
    }
    assert_eq!(s["NoNewPrivs"], "1");
    // Connections over 2.4 s, so that several host samples fall inside their window.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
        held.push(l.accept().unwrap().0);
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, out, stderr) = cap.finish();
    assert!(matches!(code, Some(0..=3)), "{stderr:?}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {stderr:?}"));
    let b = v["backends"].as_array().unwrap().iter().find(|b| b["backend"] == format!("127.0.0.1:{port}"));
    let b = b.unwrap_or_else(|| panic!("no backend in {v:#}"));
    assert_eq!(b["sockets_source"], "host", "the sampler must still read the server as nobody: {b:#}");
    assert!(b["sockets_now"].as_f64().unwrap() >= 8.0, "{b:#}");
    for f in ["dump.pcap", "dump.pcap.sockets.csv"] {
        let m = std::fs::metadata(d.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (4242, 4343), "{f}");
        assert!(m.len() > 100, "{f} has content");
    }
    assert_eq!(listing(&d), vec!["dump.pcap", "dump.pcap.sockets.csv"]);
    let _ = std::fs::remove_dir_all(&d);
}

/// `hcleak sample` under sudo samples as nobody with the two capabilities, and still counts a
/// root-owned server's sockets; an unknown -Z user fails before the output is made.
#[test]
fn sample_runs_unprivileged_with_only_the_sampler_capabilities() {
    let d = dir("sample");
    fails_with(
        &run(&["sample", "--port", "9", "-o", "s.csv", "-Z", "no-such-user-hcleak"], &d, &[]),
        "no such user",
        "sample -Z",
    );
    assert!(listing(&d).is_empty(), "{:?}", listing(&d));
    if !root("sampling another user's process") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
        held.push(l.accept().unwrap().0);
    }
    let ports = port.to_string();
    let mut s =
        Capture::start(&["sample", "--port", &ports, "--interval", "100ms", "--duration", "2s", "-o", "s.csv"], &d);
    let line = s.wait_for("running as");
    assert!(line.contains("CAP_DAC_READ_SEARCH") && line.contains("CAP_SYS_PTRACE"), "{line}");
    let st = status_fields(s.pid());
    let (uid, _) = nobody();
    assert_eq!(st["Uid"], format!("{uid}\t{uid}\t{uid}\t{uid}"), "{st:?}");
    for k in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(u64::from_str_radix(&st[k], 16).unwrap(), SAMPLER_MASK, "{k}: {st:?}");
    }
    let (code, _, stderr) = s.finish();
    assert_eq!(code, Some(0), "{stderr:?}");
    let text = std::fs::read_to_string(d.join("s.csv")).unwrap();
    let last = text.lines().last().unwrap().split(',').map(String::from).collect::<Vec<_>>();
    // The listener and the three accepted sockets, read as nobody.
    assert!(last[2].parse::<u64>().unwrap() >= 4, "{text}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Child mode: drop to nobody keeping the capabilities named in HCLEAK_TEST_DROP, then read the
/// parent's (root's) socket fds and find its listener, and print what came of it.
#[test]
fn drop_and_sample_child() {
    let Ok(keep) = std::env::var("HCLEAK_TEST_DROP") else { return };
    let pid: u32 = std::env::var("HCLEAK_TEST_PID").unwrap().parse().unwrap();
    let port: u16 = std::env::var("HCLEAK_TEST_PORT").unwrap().parse().unwrap();
    let caps: Vec<caps::Capability> = keep.split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let to = hcleak::privs::resolve("nobody").unwrap();
    let line = hcleak::privs::drop_root(&to, &caps).unwrap();
    let p = hcleak::sampler::Procfs::default();
    let fds = match p.socket_fds(pid) {
        Ok(v) => format!("FDS {}", v.len()),
        Err(e) => format!("FDS error {e}"),
    };
    let found = p.find_server(port, None).map_or("FIND none".to_string(), |s| format!("FIND {}", s.pid));
    let mut out = std::io::stdout();
    writeln!(out, "{line}\n{fds}\n{found}").unwrap();
    out.flush().unwrap();
}

/// The two capabilities are the minimum: with either alone (or none) the sampler cannot read
/// another user's sockets; with both it can.
#[test]
fn the_sampler_needs_both_capabilities_and_either_alone_is_not_enough() {
    if !root("changing capabilities") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _a = l.accept().unwrap();
    let child = |keep: &str| -> String {
        let o = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "drop_and_sample_child", "--nocapture", "--test-threads", "1"])
            .env("HCLEAK_TEST_DROP", keep)
            .env("HCLEAK_TEST_PID", std::process::id().to_string())
            .env("HCLEAK_TEST_PORT", port.to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{keep}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let me = format!("FIND {}", std::process::id());
    let both = child("CAP_DAC_READ_SEARCH,CAP_SYS_PTRACE");
    let fds = |o: &str| -> Option<usize> { o.lines().find_map(|l| l.strip_prefix("FDS ")?.parse().ok()) };
    // This process holds at least the listener and the two ends of the connection.
    assert!(fds(&both).is_some_and(|n| n >= 3) && both.contains(&me), "with both: {both}");
    for keep in ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", ""] {
        let o = child(keep);
        assert!(fds(&o).is_none_or(|n| n == 0) && o.contains("FIND none"), "with only [{keep}] it must fail: {o}");
        eprintln!(
            "with only [{keep}]: {}",
            o.lines().filter(|l| l.starts_with("FDS") || l.starts_with("FIND")).collect::<Vec<_>>().join("; ")
        );
    }
}

/// --no-sample: nothing kept; the plot, opened before the drop, is written into a directory the
/// unprivileged user cannot write; the counters line comes; /metrics answers under idle load.
#[test]
fn a_no_sample_capture_keeps_nothing_and_still_writes_its_plot_and_serves_metrics() {
    if !root("a live capture") {
        return;
    }
    let d = dir("nosample");
    let mport = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let maddr = format!("127.0.0.1:{mport}");
    let mut cap = Capture::start(
        &[
            "capture",
            "-i",
            "lo",
            "--no-sample",
            "--duration",
            "4s",
            "--plot",
            "p.svg",
            "--metrics",
            &maddr,
            "tcp",
            "port",
            "9",
        ],
        &d,
    );
    cap.wait_for("serving metrics");
    let s = status_fields(cap.pid());
    let (uid, _) = nobody();
    assert_eq!(s["Uid"], format!("{uid}\t{uid}\t{uid}\t{uid}"), "{s:?}");
    for k in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(u64::from_str_radix(&s[k], 16).unwrap(), 0, "{k}: {s:?}");
    }
    // Every thread, the metrics ones included.
    for t in std::fs::read_dir(format!("/proc/{}/task", cap.pid())).unwrap().flatten() {
        let st = std::fs::read_to_string(t.path().join("status")).unwrap();
        assert!(st.contains("CapEff:\t0000000000000000"), "thread {:?}: {st}", t.file_name());
    }
    let idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(&maddr).unwrap()).collect();
    let (took, status) = http(&maddr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(took < Duration::from_secs(1), "/metrics took {took:?} with 20 idle connections");
    assert!(http(&maddr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").1.starts_with("HTTP/1.1 405"));
    drop(idle);
    let (_, _, stderr) = cap.finish();
    assert!(stderr.iter().any(|l| l.contains("packets captured")), "{stderr:?}");
    let svg = std::fs::read_to_string(d.join("p.svg")).unwrap();
    roxmltree::Document::parse(&svg).expect("the plot was written whole");
    let _ = std::fs::remove_dir_all(&d);
}

/// `-w -`: the pcap on standard output, the report on standard error, no `-.sockets.csv`.
#[test]
fn w_dash_writes_the_pcap_to_stdout_and_the_report_to_stderr() {
    if !root("a live capture") {
        return;
    }
    let d = dir("dash");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let mut cap = Capture::start(
        &["capture", "-i", "lo", "--duration", "3s", "-w", "-", "--format", "json", "tcp", "port", &port],
        &d,
    );
    cap.wait_for("running as");
    for _ in 0..5 {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        drop((c, a));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out, stderr) = cap.finish();
    assert!(matches!(code, Some(0..=3)), "{stderr:?}");
    assert!(out.len() > 24 + 5 * 16, "a pcap with packets on stdout: {} bytes", out.len());
    assert_eq!(&out[..4], &0xa1b2_3c4du32.to_ne_bytes(), "nanosecond pcap magic");
    let text = stderr.join("\n");
    assert!(text.contains("\"verdict\"") && text.contains("packets captured"), "{text}");
    assert!(listing(&d).is_empty(), "nothing written beside: {:?}", listing(&d));
    // What came out is a capture analyze reads, with the connections made.
    let f = d.join("stdout.pcap");
    std::fs::write(&f, &out).unwrap();
    let o = run(&["analyze", f.to_str().unwrap(), "--flows", "--format", "tsv"], &d, &[]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 6, "{}", String::from_utf8_lossy(&o.stdout));
    let _ = std::fs::remove_dir_all(&d);
}

// ---------------------------------------------------------------------------------------------
// 5. The metrics endpoint.

/// Sends a request, reads the whole answer (bounded); time to the answer and the answer.
fn http(addr: &str, req: &str) -> (Duration, String) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (t.elapsed(), String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn metrics_answer_within_a_second_with_20_idle_connections_and_405_to_post() {
    let m = hcleak::metrics::MetricsServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
    m.publish("hcleak_packets_total 7\n".into());
    let addr = m.addr.to_string();
    let idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let (took, a) = http(&addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n") && a.ends_with("\r\n\r\nhcleak_packets_total 7\n"), "{a}");
    let (_, a) = http(&addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 405 ") && a.contains("Allow: GET, HEAD\r\n"), "{a}");
    let (_, a) = http(&addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n") && a.contains("Content-Length: 23\r\n"), "{a}");
    assert!(a.ends_with("\r\n\r\n"), "HEAD has no body: {a:?}");
    // A request split across segments is answered.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /met").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    s.write_all(b"rics HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    s.write_all(b"\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200 OK") && out.ends_with("hcleak_packets_total 7\n"), "{out}");
    // An idle connection is closed by the server within its time limit.
    let mut idle = idle;
    let t = Instant::now();
    idle[0].set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    let n = idle[0].read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(3), "idle connection held {:?}", t.elapsed());
}

#[test]
fn metrics_connections_beyond_the_bound_are_refused_at_once() {
    let m = hcleak::metrics::MetricsServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = m.addr.to_string();
    let n = hcleak::metrics::MAX_CONNECTIONS;
    let idle: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (took, a) = http(&addr, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 503 "), "{a}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(idle);
    // Freed as soon as they close.
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, a) = http(&addr, "GET /metrics HTTP/1.1\r\n\r\n");
        if a.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < end, "still refused after the idle connections closed: {a}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
