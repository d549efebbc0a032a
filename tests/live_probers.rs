//! A prober nobody on this project wrote, live: the Prometheus blackbox exporter (`http_2xx`,
//! Debian's `prometheus-blackbox-exporter`) probing a server that ignores `Connection: close` and
//! never closes after the client's FIN, and a healthy one, in turn, as a probe loop does; `hcleak
//! capture -i lo` with its own host samples must call the first a leak driven by HTTP checks, the
//! second ok, and count the probes within 2% of the loop's own count.
//!
//! Loopback only. The servers are fixtures/record/servers.py; every process is stopped by its own
//! PID; every wait is bounded. Needs root, python3 and the exporter; `.ci/run` installs them.

mod common;
use common::{gated, loopback, Proc};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hcleak");
const EXPORTER: &str = "prometheus-blackbox-exporter";

/// What this test needs that may be missing here: root, python3 and the blackbox exporter.
fn lacking() -> Option<String> {
    let root = nix::unistd::geteuid().is_root();
    let has = |cmd: &str, arg: &str| Command::new(cmd).arg(arg).output().is_ok_and(|o| o.status.success());
    let (py, exporter) = (has("python3", "--version"), has(EXPORTER, "--version"));
    (!(root && py && exporter)).then(|| {
        format!(
            "the live blackbox test needs root, python3 and {EXPORTER} (root={root}, python3={py}, exporter={exporter}); .ci/run provides them"
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits (bounded) until something accepts connections on the port.
fn wait_listening(port: u16, what: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn python_server(dir: &Path, port: u16, args: &[&str]) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/record/servers.py");
    let p = Command::new("python3")
        .arg(script)
        .args(["--port", &port.to_string(), "--max-seconds", "60", "--log"])
        .arg(dir.join(format!("server-{port}.log")))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(p);
    wait_listening(port, "servers.py");
    p
}

/// One probe through the exporter, as Prometheus would ask for it; true when the exporter said
/// the probe succeeded.
fn probe(exporter: u16, target: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", exporter)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let req = format!(
        "GET /probe?module=http_2xx&target=http://127.0.0.1:{target}/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("probe_success 1")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hcleak-live-probers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn capture_judges_blackbox_exporter_http_probes() {
    let dir = tmpdir("blackbox");
    let (lport, hport, xport) = (free_port(), free_port(), free_port());
    let _leaky = python_server(&dir, lport, &["--mode", "close-wait", "--ignore-connection-close"]);
    let _healthy = python_server(&dir, hport, &["--mode", "close"]);
    let cfg = dir.join("blackbox.yml");
    std::fs::write(
        &cfg,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n    http:\n      method: GET\n      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n",
    )
    .unwrap();
    let _exporter = Proc(
        Command::new(EXPORTER)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{xport}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(xport, EXPORTER);

    let cap = Command::new(BIN)
        .args(["capture", "-i", "lo", "--duration", "9s", "--sample-interval", "250ms", "--format", "json"])
        .args(["tcp", "port", &lport.to_string(), "or", "tcp", "port", &hport.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // The probe loop: both targets in turn, every 250 ms each, for 6 s; it counts what it asked for.
    let (mut sent, mut ok) = ([0u64; 2], [0u64; 2]);
    let end = Instant::now() + Duration::from_secs(6);
    while Instant::now() < end {
        let round = Instant::now();
        for (i, port) in [lport, hport].into_iter().enumerate() {
            sent[i] += 1;
            ok[i] += u64::from(probe(xport, port));
        }
        std::thread::sleep(Duration::from_millis(250).saturating_sub(round.elapsed()));
    }
    // Bounded by --duration: the capture ends by itself (also if the loop above panicked).
    let out = cap.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(2), "{v:#}");
    // The exporter itself sees nothing wrong: every probe of both servers succeeds.
    assert_eq!(ok, sent, "the exporter's own verdicts");

    let leaky = loopback(&v, lport);
    assert_eq!(leaky["verdict"], "leak", "{leaky:#}");
    assert_eq!(leaky["driver"], "http_check", "{leaky:#}");
    assert_eq!(leaky["sockets_source"], "host", "{leaky:#}");
    let per = leaky["sockets_per_driver"].as_f64().unwrap();
    assert!((per - 1.0).abs() < 0.15, "{per}");
    let healthy = loopback(&v, hport);
    assert_eq!(healthy["verdict"], "ok", "{healthy:#}");
    for (b, n) in [(leaky, sent[0]), (healthy, sent[1])] {
        let probes = b["probes"].as_u64().unwrap() as f64;
        assert!((probes - n as f64).abs() <= (0.02 * n as f64).max(1.0), "{probes} probes of {n} sent: {b:#}");
        assert_eq!(b["probe_kinds"]["http_check"].as_u64().unwrap() as f64, probes, "{b:#}");
        let prober = &b["probers"][0];
        assert_eq!(prober["request"], "GET /health", "{b:#}");
    }
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let tests = vec![gated(
        "capture_judges_blackbox_exporter_http_probes",
        lacking(),
        capture_judges_blackbox_exporter_http_probes,
    )];
    libtest_mimic::run(&args, tests).exit();
}
