//! A live capture loses nothing at the stop: what the kernel already holds when SIGINT, `--duration`
//! or `-c` comes is read and reported (issue 15).
//!
//! Each test makes its own network namespace and replays a capture written here with `tcpreplay`
//! into that namespace's `lo`; the frames go to a foreign MAC address, so the kernel drops them
//! after the capture has seen them and nothing answers. The namespace is removed when the test
//! ends, even when it fails; processes are stopped by their own PID; every wait is bounded. These
//! tests need root, `ip` and `tcpreplay`; `.ci/run` provides them.

mod common;
use common::{gated, Proc};

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hcleak");

/// A network namespace with `lo` up, removed when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("hcleak-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        let ok = Command::new("ip").args(["netns", "add", &name]).status().is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed");
        let ns = Netns(name);
        assert!(ns.cmd("ip").args(["link", "set", "lo", "up"]).status().is_ok_and(|s| s.success()));
        ns
    }

    /// A command run inside the namespace (`ip netns exec` execs it: its PID is the command's).
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// What these tests need that may be missing here: root, ip and tcpreplay.
fn lacking() -> Option<String> {
    let root = nix::unistd::geteuid().is_root();
    let has = |p: &str, arg: &str| Command::new(p).arg(arg).output().is_ok_and(|o| o.status.success());
    let (ip, tcpreplay) = (has("ip", "-V"), has("tcpreplay", "-V"));
    (!(root && ip && tcpreplay))
        .then(|| format!("drain tests need root, ip and tcpreplay (root={root}, ip={ip}, tcpreplay={tcpreplay})"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hcleak-drain-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A pcap of `n` TCP segments of 600-byte payload, client to server over a few hundred
/// connections, between MAC addresses that are not the namespace's.
fn write_capture(path: &Path, n: usize) {
    let mut out = Vec::with_capacity(24 + n * 700);
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let payload = [b'x'; 600];
    for i in 0..n {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 9, 0, 2], [10, 9, 0, 1], 64)
            .tcp(20_000 + (i % 300) as u16, 8080, i as u32 * 600, 512)
            .ack(1)
            .write(&mut f, &payload)
            .unwrap();
        out.extend_from_slice(&(1_700_000_000u32 + (i / 1000) as u32).to_le_bytes());
        out.extend_from_slice(&((i % 1000) as u32 * 1000).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f);
    }
    std::fs::write(path, out).unwrap();
}

/// Starts `hcleak capture -i lo ARGS` in the namespace and waits (bounded) until it listens.
/// Returns the process and a channel with the rest of its standard error, line by line.
fn start_capture(ns: &Netns, args: &[&str]) -> (Proc, mpsc::Receiver<String>) {
    let mut c = ns
        .cmd(BIN)
        .args(["capture", "-i", "lo", "--no-sample", "--format", "json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = c.stderr.take().unwrap();
    let p = Proc(c);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("listening on lo") => break,
            Ok(_) => {}
            Err(_) => panic!("capture did not start listening within 10 s"),
        }
    }
    (p, rx)
}

fn replay(ns: &Netns, pcap: &Path) {
    let o = ns.cmd("tcpreplay").args(["-q", "-i", "lo", "--topspeed"]).arg(pcap).output().unwrap();
    assert!(o.status.success(), "tcpreplay: {}", String::from_utf8_lossy(&o.stderr));
}

/// Waits (bounded) for the capture to end; its exit code, JSON report and standard error.
fn finish(mut p: Proc, err: mpsc::Receiver<String>) -> (Option<i32>, serde_json::Value, String) {
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "capture did not end within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = Vec::new();
    p.0.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let stderr: Vec<String> = err.try_iter().collect();
    let stderr = stderr.join("\n");
    let v = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out)));
    (status.code(), v, stderr)
}

fn signal(p: &Proc, s: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.0.id() as i32), s).unwrap();
}

/// The strongest form: the capture is frozen (SIGSTOP) while the packets arrive, so every one of
/// them is still in the kernel's ring when SIGINT comes. Taking no new packets after the stop but
/// reading what the kernel held reports all of them; stopping without the drain reports none.
fn packets_in_the_ring_at_sigint_are_all_reported() {
    const N: usize = 20_000;
    let dir = tmpdir("frozen");
    let pcap = dir.join("in.pcap");
    write_capture(&pcap, N);
    let ns = Netns::new("frozen");
    // 128 MiB: room for both of lo's copies of every packet.
    let (cap, err) = start_capture(&ns, &["-B", "131072"]);
    signal(&cap, nix::sys::signal::Signal::SIGSTOP);
    replay(&ns, &pcap);
    std::thread::sleep(Duration::from_millis(500));
    // Delivered when the capture runs again, before it has read a single packet.
    signal(&cap, nix::sys::signal::Signal::SIGINT);
    signal(&cap, nix::sys::signal::Signal::SIGCONT);
    let (_, v, stderr) = finish(cap, err);
    assert_eq!(v["capture"]["packets"], N, "{stderr}");
    assert_eq!(v["capture"]["tcp_packets"], N, "{stderr}");
    assert!(stderr.contains(" 0 dropped by kernel"), "{stderr}");
    // The same counters in the JSON report; lo counts each packet twice.
    let k = &v["capture"]["kernel"];
    assert_eq!((k["dropped_by_kernel"].as_u64(), k["received_by_filter"].as_u64()), (Some(0), Some(2 * N as u64)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The issue's own test: replay at top speed, stop half a second later, all N reported.
fn a_replay_stopped_half_a_second_later_is_reported_whole() {
    const N: usize = 60_000;
    let dir = tmpdir("replay");
    let pcap = dir.join("in.pcap");
    write_capture(&pcap, N);
    let ns = Netns::new("replay");
    // 256 MiB holds the whole replay: a slow (debug) build may fall behind, but loses nothing.
    let (cap, err) = start_capture(&ns, &["-B", "262144"]);
    replay(&ns, &pcap);
    std::thread::sleep(Duration::from_millis(500));
    signal(&cap, nix::sys::signal::Signal::SIGINT);
    let (_, v, stderr) = finish(cap, err);
    // A kernel drop would be a ring too small for this machine, not a drain failure: say which.
    assert!(stderr.contains(" 0 dropped by kernel"), "the kernel dropped packets: {stderr}");
    assert_eq!(v["capture"]["packets"], N, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-c N` takes exactly N packets — the report and the `-w` file alike — and then stops by itself.
fn count_takes_exactly_n_packets_into_the_report_and_the_pcap() {
    let dir = tmpdir("count");
    let pcap = dir.join("in.pcap");
    write_capture(&pcap, 3000);
    let dump = dir.join("out.pcap");
    let ns = Netns::new("count");
    let dump_s = dump.to_str().unwrap();
    let (cap, err) = start_capture(&ns, &["-c", "1000", "-w", dump_s]);
    replay(&ns, &pcap);
    let (_, v, stderr) = finish(cap, err);
    assert_eq!(v["capture"]["packets"], 1000, "{stderr}");
    assert!(stderr.contains("1000 packets captured"), "{stderr}");
    let mut back = pcap::Capture::from_file(&dump).unwrap();
    let mut n = 0;
    while back.next_packet().is_ok() {
        n += 1;
    }
    assert_eq!(n, 1000, "records in the -w file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// While it drains, a second SIGINT ends the capture at once (exit 130), as a second Ctrl-C does.
fn a_second_sigint_during_the_drain_stops_at_once() {
    const N: usize = 100_000;
    let dir = tmpdir("second");
    let pcap = dir.join("in.pcap");
    write_capture(&pcap, N);
    let ns = Netns::new("second");
    // 256 MiB: the whole replay (both of lo's copies) waits in the ring.
    let (cap, err) = start_capture(&ns, &["-B", "262144"]);
    signal(&cap, nix::sys::signal::Signal::SIGSTOP);
    replay(&ns, &pcap);
    signal(&cap, nix::sys::signal::Signal::SIGINT);
    signal(&cap, nix::sys::signal::Signal::SIGCONT);
    // Draining 100 000 packets takes far longer than this on any machine.
    std::thread::sleep(Duration::from_millis(20));
    let sent = Instant::now();
    signal(&cap, nix::sys::signal::Signal::SIGINT);
    let mut cap = cap;
    let status = loop {
        if let Some(s) = cap.0.try_wait().unwrap() {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(5), "a second SIGINT did not stop the capture");
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(err);
    assert_eq!(status.code(), Some(130), "stopped at once, without a report");
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let tests = vec![
        gated(
            "packets_in_the_ring_at_sigint_are_all_reported",
            lacking(),
            packets_in_the_ring_at_sigint_are_all_reported,
        ),
        gated(
            "a_replay_stopped_half_a_second_later_is_reported_whole",
            lacking(),
            a_replay_stopped_half_a_second_later_is_reported_whole,
        ),
        gated(
            "count_takes_exactly_n_packets_into_the_report_and_the_pcap",
            lacking(),
            count_takes_exactly_n_packets_into_the_report_and_the_pcap,
        ),
        gated(
            "a_second_sigint_during_the_drain_stops_at_once",
            lacking(),
            a_second_sigint_during_the_drain_stops_at_once,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
