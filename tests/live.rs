//! Live capture and host sampling end to end, on loopback only: real HAProxy checking a server that
//! keeps every reset socket and one that closes correctly; `hcleak capture` must tell them apart with
//! its own host samples, write a pcap that `analyze` judges the same way, and stop at once on SIGINT.
//!
//! The servers are this test binary re-run in server mode (`HCLEAK_TEST_SERVER` set: `main` serves
//! instead of testing, so server mode is no test), one process each, so the sampler sees one
//! process per port. Every process is stopped by its own PID; every wait is on a condition and
//! bounded. The tests need root (raw capture, other processes' /proc/PID/fd) and the first also
//! `haproxy`; `.ci/run` provides both. Without them a test is ignored, and under CI=true it fails
//! (tests/common). Run through libtest-mimic (`harness = false`) for that.

mod common;
use common::{gated, json, loopback, wait_until, Proc};

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hcleak");

/// Server mode: a TCP server on a free loopback port that prints `PORT n` and, by `mode`, keeps
/// the sockets its peers reset (`hold-reset`), never closes after the peer's FIN (`close-wait`),
/// or always closes (`close`).
fn serve(mode: &str) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        writeln!(out, "PORT {}", l.local_addr().unwrap().port()).unwrap();
        out.flush().unwrap();
    }
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    // Bounded: a forgotten server ends by itself at its next connection.
    let end = Instant::now() + Duration::from_secs(120);
    for s in l.incoming() {
        if Instant::now() > end {
            break;
        }
        let Ok(mut s) = s else { continue };
        let held = Arc::clone(&held);
        let mode = mode.to_string();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let outcome = loop {
                match s.read(&mut buf) {
                    Ok(0) => break "eof",
                    Ok(_) => continue,
                    Err(_) => break "reset",
                }
            };
            // hold-reset never closes a socket the peer reset (or closed); close-wait never
            // closes after the peer's FIN; close always closes.
            let keep = match mode.as_str() {
                "hold-reset" => true,
                "close-wait" => outcome == "eof",
                _ => false,
            };
            if keep {
                held.lock().unwrap().push(s);
            }
        });
    }
}

fn server(mode: &str) -> (Proc, u16) {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .env("HCLEAK_TEST_SERVER", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = c.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let port = loop {
        let line = lines.next().expect("server printed its port").unwrap();
        if let Some(p) = line.strip_prefix("PORT ") {
            break p.trim().parse().unwrap();
        }
    };
    (Proc(c), port)
}

/// What the machine lacks for a test that needs root, and haproxy when `haproxy`.
fn lacking(haproxy: bool) -> Option<String> {
    let root = nix::unistd::geteuid().is_root();
    let have_haproxy = !haproxy || Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success());
    (!root || !have_haproxy).then(|| {
        format!(
            "needs root{} (root={root}, haproxy={have_haproxy}); .ci/run provides both",
            if haproxy { " and haproxy" } else { "" }
        )
    })
}

/// `hcleak capture` started with its stderr read as it comes, to wait on what it says.
struct Started {
    child: Proc,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Started {
    fn spawn(cmd: &mut Command) -> Started {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let stderr: Arc<Mutex<String>> = Arc::default();
        let sink = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Started { child: Proc(child), stderr, reader: Some(reader) }
    }

    /// Waits (at most 20 s) until the capture has said `what` on stderr.
    fn wait_for(&self, what: &str) {
        wait_until(&format!("capture to say {what:?}"), Duration::from_secs(20), || {
            self.stderr.lock().unwrap().contains(what)
        });
    }

    /// Waits for the exit (bounded by the capture's own --duration, or 30 s); stdout, stderr.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<u8>, String) {
        let mut out = Vec::new();
        self.child.0.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.0.try_wait().unwrap() {
                break s;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "capture did not end");
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let err = self.stderr.lock().unwrap().clone();
        (status, out, err)
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hcleak-live-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn capture_with_haproxy_flags_the_leaking_backend_and_writes_an_analysable_pcap() {
    let (_leaky, lport) = server("hold-reset");
    let (_healthy, hport) = server("close");
    let dir = tmpdir("e2e");
    let cfg = dir.join("haproxy.cfg");
    // HAProxy refuses to start without a listener: give it a free loopback port.
    let fe = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // tcp-check connect + expect: the check completes the handshake, waits for "OK", and resets it
    // when `timeout check` expires — a handshake-then-RST probe that reaches accept().
    std::fs::write(
        &cfg,
        format!(
            "global\n    nbthread 1\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n    timeout check 100ms\n\
             frontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\
             backend be\n    option tcp-check\n    tcp-check connect\n    tcp-check expect string OK\n\
             \x20   server leaky 127.0.0.1:{lport} check inter 200ms fall 1000 rise 1\n\
             \x20   server healthy 127.0.0.1:{hport} check inter 200ms fall 1000 rise 1\n"
        ),
    )
    .unwrap();
    let dump = dir.join("dump.pcap");
    let cap = Started::spawn(
        Command::new(BIN)
            .args(["capture", "-i", "lo", "--duration", "8s", "--sample-interval", "250ms", "--format", "json", "-w"])
            .arg(&dump)
            .args(["tcp", "port", &lport.to_string(), "or", "tcp", "port", &hport.to_string()]),
    );
    // HAProxy starts checking once the capture is taking packets.
    cap.wait_for("listening on lo");
    let _haproxy = Proc(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Bounded by --duration: the capture ends by itself.
    let (status, stdout, stderr) = cap.finish();
    let v = json(&stdout);
    assert_eq!(status.code(), Some(2), "{v:#}\n{stderr}");
    assert!(stderr.contains("dropped by kernel"), "{stderr}");

    let leaky = loopback(&v, lport);
    assert_eq!(leaky["verdict"], "leak", "{leaky:#}");
    assert_eq!(leaky["sockets_source"], "host");
    assert_eq!(leaky["driver"], "handshake_rst");
    let per = leaky["sockets_per_driver"].as_f64().unwrap();
    assert!((per - 1.0).abs() < 0.15, "{per}");
    let healthy = loopback(&v, hport);
    assert_eq!(healthy["verdict"], "ok", "{healthy:#}");
    assert_eq!(healthy["sockets_source"], "host");
    assert!(healthy["probes"].as_u64().unwrap() >= 10);

    // The written capture and samples, analysed later, give the same verdicts.
    let samples = dir.join("dump.pcap.sockets.csv");
    assert!(samples.exists());
    let again = Command::new(BIN)
        .arg("analyze")
        .arg(&dump)
        .arg("--sockets")
        .arg(&samples)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stderr));
    let w = json(&again.stdout);
    assert_eq!(loopback(&w, lport)["verdict"], "leak");
    assert_eq!(loopback(&w, lport)["driver"], "handshake_rst");
    assert_eq!(loopback(&w, hport)["verdict"], "ok");

    // -w never clobbers an existing file unless asked.
    let o = Command::new(BIN).args(["capture", "-i", "lo", "-c", "1", "-w"]).arg(&dump).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists; pass --force"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn capture_on_an_idle_interface_stops_within_a_second_of_sigint() {
    let cap = Started::spawn(Command::new(BIN).args([
        "capture",
        "-i",
        "lo",
        "--no-sample",
        "tcp",
        "port",
        "9",
        "and",
        "host",
        "127.0.0.254",
    ]));
    // Interrupted once it runs: the privilege drop is the last thing said before the capture loop.
    cap.wait_for("running as");
    let pid = nix::unistd::Pid::from_raw(cap.child.0.id() as i32);
    let sent = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let (status, out, err) = cap.finish();
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?} to stop");
    let out = String::from_utf8_lossy(&out);
    // Nothing seen: a report that says so, the kernel's counters, and "could not decide".
    assert!(out.contains("no TCP connections"), "{out}");
    assert!(err.contains("received by filter"), "{err}");
    assert!(err.contains("running as nobody (uid") || err.contains("not running as root"), "{err}");
    assert_eq!(status.code(), Some(3));
}

/// The sampler against real processes: one holding reset sockets, one leaving CLOSE_WAIT.
fn sampler_sees_reset_and_held_sockets_and_close_wait() {
    use hcleak::sampler::{parse_tcp_table, CLOSE_WAIT, LISTEN};
    use std::os::fd::AsFd;
    let (hold, hport) = server("hold-reset");
    let (cw, cport) = server("close-wait");
    let fds = |pid: u32| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let (hold_base, cw_base) = (fds(hold.0.id()), fds(cw.0.id()));
    let limit = Duration::from_secs(5);
    for i in 1..=5 {
        let s = TcpStream::connect(("127.0.0.1", hport)).unwrap();
        // Reset once accepted: the server then holds a socket in no kernel table.
        wait_until("the server to accept", limit, || fds(hold.0.id()) >= hold_base + i);
        // SO_LINGER 0: close() sends a RST, like a health checker giving up.
        nix::sys::socket::setsockopt(
            &s.as_fd(),
            nix::sys::socket::sockopt::Linger,
            &nix::libc::linger { l_onoff: 1, l_linger: 0 },
        )
        .unwrap();
        drop(s);
    }
    for i in 1..=4 {
        let s = TcpStream::connect(("127.0.0.1", cport)).unwrap();
        wait_until("the server to accept", limit, || fds(cw.0.id()) >= cw_base + i);
        drop(s); // FIN
    }
    // Wait (bounded) until the kernel's tables show what the sampler must see: the reset sockets
    // gone from them, the four closed by the peer in CLOSE_WAIT.
    let on = |port: u16| {
        let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        parse_tcp_table(&text)
            .into_iter()
            .filter(move |e| e.local_port == port && e.state != LISTEN)
            .collect::<Vec<_>>()
    };
    wait_until("the resets and FINs to reach the tables", limit, || {
        on(hport).is_empty() && on(cport).iter().filter(|e| e.state == CLOSE_WAIT).count() == 4
    });
    let dir = tmpdir("sampler");
    for (port, check) in [(hport, "hold"), (cport, "close-wait")] {
        let csv = dir.join(format!("{check}.csv"));
        let o = Command::new(BIN)
            .args(["sample", "--port", &port.to_string(), "--interval", "100ms", "--duration", "1s", "-o"])
            .arg(&csv)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&csv).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), hcleak::sockets::CSV_HEADER);
        let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
        assert!(rows.len() >= 3, "{text}");
        assert!(rows.iter().all(|r| r[1] == format!("127.0.0.1:{port}")), "{text}");
        // A busy machine may let the server accept late: the last sample must show the state.
        let n = |r: &Vec<String>, i: usize| r[i].parse::<u64>().unwrap();
        let last = rows.last().unwrap();
        if check == "hold" {
            // The listener plus five accepted sockets the peer reset, none in any TCP table.
            assert_eq!((n(last, 2), n(last, 3)), (6, 5), "{text}");
        } else {
            assert_eq!(n(last, 4), 4, "CLOSE_WAIT count: {text}");
            assert_eq!(n(last, 3), 0, "CLOSE_WAIT sockets are still in the TCP table: {text}");
        }
    }
    // The same CSV feeds analyze --sockets.
    hcleak::sockets::read_csv(&dir.join("hold.csv")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn scrape(addr: &str) -> std::collections::HashMap<String, f64> {
    use std::io::Write;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut out = std::collections::HashMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            assert!(
                line.is_empty() || line.starts_with("# HELP hcleak_") || line.starts_with("# TYPE hcleak_"),
                "{line}"
            );
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line}"));
        out.insert(name.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line}")));
    }
    out
}

/// `/metrics` is scraped while a capture runs: its counters move with the traffic.
fn metrics_endpoint_counts_probes_as_they_happen_and_jsonl_streams() {
    let (_srv, port) = server("close");
    let mport = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{mport}");
    let cap = Started::spawn(Command::new(BIN).args([
        "capture",
        "-i",
        "lo",
        "--duration",
        "14s",
        "--sample-interval",
        "200ms",
        "--format",
        "jsonl",
        "--metrics",
        &addr,
        "tcp",
        "port",
        &port.to_string(),
    ]));
    cap.wait_for("serving metrics at");
    // A prober of our own: connect, then close (FIN), every 100 ms for 10 s.
    let prober = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                drop(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let key = format!("hcleak_probes_total{{backend=\"127.0.0.1:{port}\",kind=\"connect_fin\"}}");
    let probes = |m: &std::collections::HashMap<String, f64>| m.get(&key).copied().unwrap_or(0.0);
    // Finished connections are counted 5 s after they close (late packets still land there):
    // scrape until the first ones are, then until ten more have been.
    let mut first = scrape(&addr);
    wait_until("the first probes to be counted", Duration::from_secs(9), || {
        first = scrape(&addr);
        probes(&first) >= 5.0
    });
    let mut second = first.clone();
    wait_until("ten more probes to be counted", Duration::from_secs(5), || {
        second = scrape(&addr);
        probes(&second) >= probes(&first) + 10.0
    });
    prober.join().unwrap();
    assert!(second["hcleak_packets_total"] > first["hcleak_packets_total"]);
    assert_eq!(second[&format!("hcleak_verdict{{backend=\"127.0.0.1:{port}\"}}")], 0.0);
    assert!(second.contains_key("hcleak_capture_dropped_total{by=\"kernel\"}"));
    assert!(second.contains_key(&format!("hcleak_sockets{{backend=\"127.0.0.1:{port}\",source=\"host\"}}")));

    // Bounded by --duration: the capture ends by itself.
    let (status, stdout, stderr) = cap.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let text = String::from_utf8_lossy(&stdout);
    let (mut conns, mut summaries, mut finals) = (0, 0, 0);
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        match v["type"].as_str().unwrap() {
            "conn" => conns += 1,
            "backend" => summaries += 1,
            "final" => finals += 1,
            other => panic!("unknown line type {other}"),
        }
    }
    assert!(conns >= 50 && summaries >= 3 && finals >= 1, "{conns} conns, {summaries} summaries, {finals} finals");
}

fn main() {
    // Server mode for the tests below: serve, not test.
    if let Ok(mode) = std::env::var("HCLEAK_TEST_SERVER") {
        serve(&mode);
        return;
    }
    let args = libtest_mimic::Arguments::from_args();
    let tests = vec![
        gated(
            "capture_with_haproxy_flags_the_leaking_backend_and_writes_an_analysable_pcap",
            lacking(true),
            capture_with_haproxy_flags_the_leaking_backend_and_writes_an_analysable_pcap,
        ),
        gated(
            "capture_on_an_idle_interface_stops_within_a_second_of_sigint",
            lacking(false),
            capture_on_an_idle_interface_stops_within_a_second_of_sigint,
        ),
        gated(
            "sampler_sees_reset_and_held_sockets_and_close_wait",
            lacking(false),
            sampler_sees_reset_and_held_sockets_and_close_wait,
        ),
        gated(
            "metrics_endpoint_counts_probes_as_they_happen_and_jsonl_streams",
            lacking(false),
            metrics_endpoint_counts_probes_as_they_happen_and_jsonl_streams,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
