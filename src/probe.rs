//! Probe: reproduces a leak on purpose. Opens connections of each probe shape — as real probers
//! put them on the wire — against the one server it is given, at a bounded rate, while counting
//! that server's sockets, and judges each shape with the verdict's growth rules. It never connects
//! anywhere else: no scanning, no discovery.
//!
//! Each shape is a small function over a non-blocking socket ([`send`]); [`run`] drives the shapes
//! in turn, samples the server before, during and after each, waits for it to settle, checks that
//! it still accepts a plain connection, and fits sockets against probes sent.

use crate::classify::Kind;
use crate::clock::now_ts;
use crate::decode::Ts;
use crate::sampler::{Procfs, Server};
use crate::sockets::{HostSamples, Sample};
use crate::verdict::{self, Verdict};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self as sock, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6,
};
use std::io::{self, Read, Seek, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a probe looks on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// `S h R`: quick-ACK off, closed with linger 0 before the delayed handshake ACK (HAProxy's
    /// plain check on Linux).
    HalfOpenRst,
    /// `S h A R`: handshake, nothing sent, linger-0 close.
    HandshakeRst,
    /// `S h D R`: handshake (its ACK riding on the data), a payload, linger-0 close.
    DataRst,
    /// `S h A F`: handshake, then a plain close (blackbox tcp_connect, check_tcp, kubelet).
    ConnectFin,
    /// `GET` with `Connection: close`, the response read to its end, FIN.
    HttpClose,
    /// `GET` keep-alive, the response read, then a reset (HAProxy's traffic and keep-alive checks).
    HttpKeepaliveRst,
    /// A burst of handshakes reset at once, so the server accepts sockets that are already dead.
    ResetInQueue,
}

/// Connections per `reset_in_queue` burst.
pub(crate) const BURST: u64 = 8;

impl Shape {
    /// The default order: the shape that may stop the server comes last.
    pub(crate) const ALL: [Shape; 7] = [
        Shape::HalfOpenRst,
        Shape::HandshakeRst,
        Shape::DataRst,
        Shape::ConnectFin,
        Shape::HttpClose,
        Shape::HttpKeepaliveRst,
        Shape::ResetInQueue,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Shape::HalfOpenRst => "halfopen_rst",
            Shape::HandshakeRst => "handshake_rst",
            Shape::DataRst => "data_rst",
            Shape::ConnectFin => "connect_fin",
            Shape::HttpClose => "http_close",
            Shape::HttpKeepaliveRst => "http_keepalive_rst",
            Shape::ResetInQueue => "reset_in_queue",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|k| k.name() == s.trim())
    }

    /// Its packets, in the letters of Zeek's history (uppercase: us).
    pub(crate) fn wire(self) -> &'static str {
        match self {
            Shape::HalfOpenRst => "S h R",
            Shape::HandshakeRst => "S h A R",
            Shape::DataRst => "S h D R",
            Shape::ConnectFin => "S h A F",
            Shape::HttpClose => "S h D d F",
            Shape::HttpKeepaliveRst => "S h D d R",
            Shape::ResetInQueue => "8 × S h A R",
        }
    }

    /// How `analyze --flows` labels each of its connections.
    pub(crate) fn flow_label(self) -> &'static str {
        match self {
            Shape::HalfOpenRst => "halfopen_rst",
            Shape::HandshakeRst | Shape::ResetInQueue => "handshake_rst",
            Shape::DataRst => "data_rst",
            Shape::ConnectFin => "connect_fin",
            Shape::HttpClose | Shape::HttpKeepaliveRst => "http",
        }
    }

    /// The probe kind whose remedy fits a leak of this shape.
    pub(crate) fn kind(self) -> Kind {
        match self {
            Shape::HalfOpenRst => Kind::HalfOpenRst,
            Shape::HandshakeRst | Shape::ResetInQueue => Kind::HandshakeRst,
            Shape::DataRst => Kind::DataRst,
            Shape::ConnectFin => Kind::ConnectFin,
            Shape::HttpClose | Shape::HttpKeepaliveRst => Kind::HttpCheck,
        }
    }

    /// Connections one probe of this shape opens.
    pub(crate) fn connections(self) -> u64 {
        if self == Shape::ResetInQueue {
            BURST
        } else {
            1
        }
    }
}

/// What the shapes send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    /// `data_rst`'s bytes.
    pub(crate) payload: Vec<u8>,
    /// The HTTP shapes' path (starts with `/`, no spaces or control characters).
    pub(crate) path: String,
    /// The HTTP `Host` header: the target as the user named it.
    pub(crate) host: String,
    /// Connect and response timeout of one probe.
    pub(crate) timeout: Duration,
}

/// What one probe saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) connections: u64,
    pub(crate) connected: u64,
    pub(crate) refused: u64,
    pub(crate) timed_out: u64,
    pub(crate) failed: u64,
    pub(crate) http_status: Option<u16>,
}

impl Sent {
    fn add(&mut self, r: io::Result<()>) {
        self.connections += 1;
        match r {
            Ok(()) => self.connected += 1,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => self.refused += 1,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => self.timed_out += 1,
            Err(_) => self.failed += 1,
        }
    }
}

/// TCP_QUICKACK (nix has no wrapper for it). Off before connect(), the kernel delays the
/// handshake's ACK, as HAProxy's checks do.
#[allow(unsafe_code)]
fn set_quickack(fd: &OwnedFd, on: bool) -> io::Result<()> {
    let v: libc::c_int = on.into();
    // SAFETY: the fd is open for the whole call (borrowed), and setsockopt reads exactly
    // size_of::<c_int>() bytes from a live local.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A non-blocking TCP socket with its connect() started.
fn start(addr: SocketAddr, quickack: bool) -> io::Result<OwnedFd> {
    let fam = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = sock::socket(fam, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp)?;
    if !quickack {
        set_quickack(&fd, false)?;
    }
    let r = match addr {
        SocketAddr::V4(a) => sock::connect(fd.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => sock::connect(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    };
    match r {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e.into()),
    }
}

fn poll_ms(left: Duration) -> PollTimeout {
    PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::ZERO)
}

/// Waits until the handshake is done (or failed) or the deadline passes.
fn established(fd: &OwnedFd, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
        match nix::poll::poll(&mut p, poll_ms(left)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {
                return match sock::getsockopt(fd, sockopt::SocketError)? {
                    0 => Ok(()),
                    e => Err(io::Error::from_raw_os_error(e)),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Closes with linger 0: the kernel sends a RST instead of a FIN.
fn reset(fd: OwnedFd) {
    let _ = sock::setsockopt(&fd, sockopt::Linger, &libc::linger { l_onoff: 1, l_linger: 0 });
    drop(fd);
}

fn connect(addr: SocketAddr, quickack: bool, timeout: Duration) -> (io::Result<()>, Option<OwnedFd>) {
    match start(addr, quickack) {
        Ok(fd) => match established(&fd, Instant::now() + timeout) {
            Ok(()) => (Ok(()), Some(fd)),
            Err(e) => (Err(e), None),
        },
        Err(e) => (Err(e), None),
    }
}

/// Sends one probe of `shape` to `addr`. Never panics; failures are counted in [`Sent`].
pub(crate) fn send(shape: Shape, addr: SocketAddr, spec: &Spec) -> Sent {
    let mut out = Sent::default();
    match shape {
        Shape::HalfOpenRst | Shape::HandshakeRst | Shape::DataRst | Shape::ConnectFin => {
            // Quick-ACK off delays the handshake ACK: alone it never goes out (half-open), with
            // data it rides on the data.
            let quick = matches!(shape, Shape::HandshakeRst | Shape::ConnectFin);
            let (r, fd) = connect(addr, quick, spec.timeout);
            out.add(r);
            if let Some(fd) = fd {
                match shape {
                    Shape::DataRst => {
                        let _ = nix::unistd::write(&fd, &spec.payload);
                        reset(fd);
                    }
                    Shape::ConnectFin => drop(fd),
                    _ => reset(fd),
                }
            }
        }
        Shape::HttpClose | Shape::HttpKeepaliveRst => {
            let (r, fd) = connect(addr, true, spec.timeout);
            out.add(r);
            if let Some(fd) = fd {
                let close = shape == Shape::HttpClose;
                let (status, fd) = http_exchange(fd, spec, close);
                out.http_status = status;
                if close {
                    drop(fd);
                } else {
                    reset(fd);
                }
            }
        }
        Shape::ResetInQueue => {
            // All handshakes first, then every reset at once: the server finds them dead in its
            // accept queue.
            let deadline = Instant::now() + spec.timeout;
            let started: Vec<io::Result<OwnedFd>> = (0..BURST).map(|_| start(addr, true)).collect();
            let mut done = Vec::new();
            for s in started {
                match s.and_then(|fd| established(&fd, deadline).map(|_| fd)) {
                    Ok(fd) => {
                        out.add(Ok(()));
                        done.push(fd);
                    }
                    Err(e) => out.add(Err(e)),
                }
            }
            for fd in done {
                reset(fd);
            }
        }
    }
    out
}

/// The request line and headers of the HTTP shapes (no User-Agent, like HAProxy's checks).
pub(crate) fn http_request(spec: &Spec, close: bool) -> String {
    let conn = if close { "Connection: close\r\n" } else { "" };
    format!("GET {} HTTP/1.1\r\nHost: {}\r\n{conn}\r\n", spec.path, spec.host)
}

/// Writes the request and reads the response (to EOF with `close`, else to its declared end),
/// within the probe's timeout. Returns the status code, if one came.
fn http_exchange(fd: OwnedFd, spec: &Spec, close: bool) -> (Option<u16>, OwnedFd) {
    let mut s = TcpStream::from(fd);
    let deadline = Instant::now() + spec.timeout;
    let mut buf = Vec::with_capacity(1024);
    let ok = s.set_nonblocking(false).is_ok() && s.write_all(http_request(spec, close).as_bytes()).is_ok();
    let mut chunk = [0u8; 4096];
    while ok && buf.len() < 1 << 16 && !response_complete(&buf, close) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    (status_of(&buf), OwnedFd::from(s))
}

/// `HTTP/1.1 200 OK…` → 200.
pub(crate) fn status_of(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// Whether a keep-alive response is complete: headers, then Content-Length bytes or the last chunk.
pub(crate) fn response_complete(buf: &[u8], close: bool) -> bool {
    if close {
        return false; // read to EOF
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = buf.len() - end - 4;
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:") {
            return v.trim().parse::<usize>().is_ok_and(|n| body >= n);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return buf.ends_with(b"0\r\n\r\n");
        }
    }
    // No length: a status without a body (204, 304) or a body we cannot delimit; stop at the head.
    true
}

/// Parses `--payload`: text with `\r`, `\n`, `\t`, `\\` and `\xHH` escapes.
pub(crate) fn parse_payload(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = s.get(i + 2..i + 4).ok_or_else(|| format!("--payload: \\x needs two hex digits in '{s}'"))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("--payload: bad \\x{hex} in '{s}'"))?);
                i += 2;
            }
            _ => return Err(format!("--payload: unknown escape at byte {i} in '{s}' (use \\r \\n \\t \\\\ \\xHH)")),
        }
        i += 2;
    }
    if out.is_empty() {
        return Err("--payload must not be empty (a probe with nothing is handshake_rst)".into());
    }
    Ok(out)
}

/// Whether the server still takes a plain connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The handshake completed and the server accepted it (its accept queue emptied).
    Accepted,
    /// The handshake completed; whether the server accepted it is not known (no host samples).
    Connects,
    /// No host samples, but it answered an HTTP request.
    Http {
        status: u16,
    },
    /// No host samples; it answered HTTP before and now sends no response.
    NoResponse,
    /// The kernel completed the handshake but nothing accepted it: the accept queue stays full.
    NotAccepted {
        queue: u64,
    },
    /// No answer to the SYN within the timeout (the accept queue overflows, or the host is gone).
    NoHandshake,
    Refused,
    /// The server process is gone.
    ProcessGone,
}

impl Answer {
    pub(crate) fn ok(self) -> bool {
        matches!(self, Answer::Accepted | Answer::Connects | Answer::Http { .. })
    }
}

/// Where the server's socket counts come from.
pub enum Counter {
    /// A server on this host, read through procfs; `workers` are the other processes sharing its
    /// listener (a pre-forking server's), whose sockets are added to its own.
    Local { proc: Procfs, server: Server, workers: Vec<u32>, gone: bool },
    /// A CSV that `hcleak sample` on the server's host keeps writing, read again as it grows.
    File { file: std::fs::File, path: PathBuf, port: u16, ip: std::net::IpAddr, last: Ts, error: Option<String> },
    /// Nothing: verdicts need a count, so they say `unknown` (a stop still shows).
    None,
}

impl Counter {
    /// New samples since the last call.
    fn poll(&mut self, now: Ts, out: &mut Vec<Sample>) {
        match self {
            Counter::Local { proc, server, workers, gone } => match proc.sample(server, now) {
                Ok(mut s) => {
                    for &pid in workers.iter() {
                        if let Ok(w) = proc.sample(&Server { pid, ..server.clone() }, now) {
                            s.sockets += w.sockets;
                            s.hidden = Some(s.hidden.unwrap_or(0) + w.hidden.unwrap_or(0));
                            s.fd_limit = s.fd_limit.min(w.fd_limit).or(s.fd_limit).or(w.fd_limit);
                        }
                    }
                    out.push(s)
                }
                Err(_) => *gone = true,
            },
            Counter::File { file, path, port, ip, last, error } => {
                let mut text = Vec::new();
                // Bounded: ten hours of samples at 10 a second are about 40 MiB.
                if file.rewind().and_then(|_| (&*file).take(256 << 20).read_to_end(&mut text)).is_err() {
                    return;
                }
                // A row being written is cut: read only whole lines.
                let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                match crate::sockets::read_csv_from(&text[..whole], path) {
                    Ok(h) => {
                        for s in rows_for(&h, *ip, *port) {
                            if s.ts > *last {
                                *last = s.ts;
                                out.push(*s);
                            }
                        }
                        *error = None;
                    }
                    Err(e) => *error = Some(e.to_string()),
                }
            }
            Counter::None => {}
        }
    }

    fn local(&self) -> Option<(&Procfs, &Server)> {
        match self {
            Counter::Local { proc, server, gone: false, .. } => Some((proc, server)),
            _ => None,
        }
    }
}

/// The rows of a samples file for the target: its own address, its port, or the file's only
/// backend (the server may know itself by another address than the one we connect to).
fn rows_for(h: &HostSamples, ip: std::net::IpAddr, port: u16) -> &[Sample] {
    match h.for_backend(ip, port) {
        Some(v) => v,
        None if h.backends.len() == 1 => &h.backends[0].1,
        None => &[],
    }
}

/// A validated probe run.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    /// The target as the user named it.
    pub target: String,
    pub(crate) shapes: Vec<Shape>,
    pub(crate) rate: f64,
    /// Connections per shape.
    pub(crate) count: u64,
    pub(crate) settle: Duration,
    pub(crate) spec: Spec,
    /// The production check interval, for the time to exhaustion.
    pub(crate) interval: Duration,
    pub(crate) limit: Option<u64>,
}

/// Hard caps: a probe run is a diagnosis, not a load test.
pub(crate) const MAX_RATE: f64 = 500.0;
pub(crate) const MAX_COUNT: u64 = 5_000;
pub(crate) const MAX_SHAPE_TIME: Duration = Duration::from_secs(600);
pub(crate) const MAX_SETTLE: Duration = Duration::from_secs(60);
/// Probes keep at most this share of the server's fd limit (the rest is its real work).
pub(crate) const FD_BUDGET: f64 = 0.8;
/// Time between local samples while probing.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// One shape's run and judgement.
#[derive(Clone, Debug)]
pub(crate) struct ShapeRun {
    pub(crate) shape: Shape,
    pub(crate) sent: Sent,
    pub(crate) statuses: Vec<(u16, u64)>,
    pub(crate) started: Ts,
    pub(crate) last_probe: Ts,
    pub(crate) ended: Ts,
    pub(crate) before: Option<Sample>,
    pub(crate) after: Option<Sample>,
    /// The most sockets seen during the shape and its settle wait.
    pub(crate) peak: Option<u64>,
    pub(crate) samples: usize,
    /// The growth rules' verdict on the socket curve alone (`unknown` without counts).
    pub(crate) growth: Verdict,
    /// The shape's verdict: the growth's, or `leak` when the server stopped answering.
    pub(crate) verdict: Verdict,
    /// Sockets kept per connection sent, its 95% CI and Spearman ρ, when there was a fit.
    pub(crate) per_probe: Option<(f64, (f64, f64), f64)>,
    pub(crate) answer: Answer,
    /// Ctrl-C or the shape's time cap cut it short.
    pub(crate) cut_short: bool,
}

impl ShapeRun {
    /// Sockets still held after the settle wait, against before.
    pub(crate) fn kept(&self) -> Option<i64> {
        Some(self.after?.sockets as i64 - self.before?.sockets as i64)
    }
    /// Sockets rose by three or more during the probes and were all released by the end of the
    /// settle wait (`None` when they never rose that much, or without counts).
    pub(crate) fn came_back(&self) -> Option<bool> {
        let (b, p) = (self.before?.sockets, self.peak?);
        (p >= b + 3).then(|| self.kept().is_some_and(|k| k <= 0))
    }

    /// The server stopped answering during this shape.
    pub(crate) fn stopped(&self) -> bool {
        !self.answer.ok()
    }
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    pub target: String,
    pub(crate) addr: SocketAddr,
    pub verdict: Verdict,
    pub(crate) runs: Vec<ShapeRun>,
    /// Shapes not run, and why.
    pub(crate) skipped: Vec<(Shape, Skipped)>,
    pub(crate) counted: bool,
    pub(crate) in_use: Option<u64>,
    pub(crate) limit: Option<u64>,
    pub(crate) interval: Duration,
    /// Connections per second and per shape, as run.
    pub(crate) rate: f64,
    pub(crate) count: u64,
    pub(crate) exhaustion_eta_s: Option<f64>,
    pub(crate) erlang: bool,
    pub(crate) interrupted: bool,
    pub(crate) samples_error: Option<String>,
}

/// Whether the server takes a plain connection now; held open until accepted (at most `wait`).
///
/// Without the server's own counts the client side cannot see an accept(); a server that answered
/// HTTP at the start (`http`) is asked `GET --path` instead, and its response is the proof.
pub(crate) fn answers(addr: SocketAddr, counter: &Counter, spec: &Spec, http: bool) -> Answer {
    if let Counter::Local { gone: true, .. } = counter {
        return Answer::ProcessGone;
    }
    let timeout = spec.timeout;
    let (r, fd) = connect(addr, true, timeout);
    let Some(fd) = fd else {
        return match r {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Answer::Refused,
            _ => Answer::NoHandshake,
        };
    };
    let Some((proc, server)) = counter.local() else {
        if !http {
            return Answer::Connects;
        }
        return match http_exchange(fd, spec, true).0 {
            Some(status) => Answer::Http { status },
            None => Answer::NoResponse,
        };
    };
    let end = Instant::now() + timeout;
    loop {
        let queue = match proc.sample(server, now_ts()) {
            Ok(s) => s.accept_queue.unwrap_or(0),
            Err(_) => return Answer::ProcessGone,
        };
        if queue == 0 {
            return Answer::Accepted;
        }
        if Instant::now() >= end {
            drop(fd);
            return Answer::NotAccepted { queue };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sleeps until `until` in short steps, sampling on the way; false when stopped.
fn wait_sampling(
    until: Instant,
    stop: &AtomicBool,
    counter: &mut Counter,
    samples: &mut Vec<Sample>,
    last: &mut Instant,
) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        if now.duration_since(*last) >= SAMPLE_EVERY && matches!(counter, Counter::Local { .. }) {
            counter.poll(now_ts(), samples);
            *last = Instant::now();
        }
        std::thread::sleep((until - now).min(Duration::from_millis(10)));
    }
}

/// Runs one shape: baseline, probes at the rate, settle, answer check, judgement.
fn run_shape(cfg: &Config, shape: Shape, counter: &mut Counter, stop: &AtomicBool, http: bool) -> ShapeRun {
    let per = shape.connections();
    let probes = cfg.count.div_ceil(per).max(1);
    let gap = Duration::try_from_secs_f64(per as f64 / cfg.rate).unwrap_or(Duration::from_secs(1));
    let mut samples = Vec::new();
    let started = now_ts();
    counter.poll(started, &mut samples);
    let t0 = Instant::now();
    let n = u32::try_from(probes).unwrap_or(u32::MAX);
    let cap =
        gap.saturating_mul(n).saturating_add(cfg.spec.timeout.saturating_mul(2)).saturating_add(Duration::from_secs(5));
    let cap = cap.min(MAX_SHAPE_TIME);
    let mut sent = Sent::default();
    let mut statuses: Vec<(u16, u64)> = Vec::new();
    let mut events: Vec<(Ts, u64)> = Vec::with_capacity(probes as usize);
    let mut last_sample = Instant::now();
    let mut cut_short = false;
    for i in 0..probes {
        let due = t0 + gap.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX)).min(cap);
        if t0.elapsed() > cap || !wait_sampling(due, stop, counter, &mut samples, &mut last_sample) {
            cut_short = true;
            break;
        }
        let s = send(shape, cfg.addr, &cfg.spec);
        sent.connections += s.connections;
        sent.connected += s.connected;
        sent.refused += s.refused;
        sent.timed_out += s.timed_out;
        sent.failed += s.failed;
        if let Some(code) = s.http_status {
            match statuses.iter_mut().find(|(c, _)| *c == code) {
                Some(e) => e.1 += 1,
                None => statuses.push((code, 1)),
            }
        }
        events.push((now_ts(), sent.connections));
    }
    let last_probe = events.last().map_or(started, |e| e.0);
    // Settle: the server gets time to close what it will close; a Ctrl-C shortens it.
    let settle = if stop.load(Ordering::Relaxed) { cfg.settle.min(Duration::from_millis(300)) } else { cfg.settle };
    let never = AtomicBool::new(false);
    wait_sampling(Instant::now() + settle, &never, counter, &mut samples, &mut last_sample);
    // The last sample before the plain connection, which would otherwise be counted in it.
    counter.poll(now_ts(), &mut samples);
    let answer = answers(cfg.addr, counter, &cfg.spec, http);
    let ended = now_ts();
    let before = samples.iter().rev().find(|s| s.ts <= started).or(samples.first()).copied();
    let inside: Vec<Sample> =
        samples.iter().filter(|s| s.ts >= started.saturating_sub(1_000_000_000)).copied().collect();
    let after = inside.last().copied();
    // Sockets against connections sent by each sample's time.
    let x: Vec<f64> =
        inside.iter().map(|s| events.iter().take_while(|e| e.0 <= s.ts).last().map_or(0.0, |e| e.1 as f64)).collect();
    let y: Vec<f64> = inside.iter().map(|s| s.sockets as f64).collect();
    let (mut growth, mut per_probe) = (Verdict::Unknown, None);
    if inside.len() >= 5 && sent.connections > 0 {
        let (v, fit, rho) = verdict::judge_growth(&x, &y, sent.connections);
        growth = v;
        per_probe = fit.map(|f| (f.slope, f.ci95(), rho));
    }
    // Probes that reached accept() and then a server that no longer accepts: analyze's rule too.
    let verdict = if answer.ok() { growth } else { Verdict::Leak };
    statuses.sort_by_key(|s| std::cmp::Reverse(s.1));
    ShapeRun {
        shape,
        sent,
        statuses,
        started,
        last_probe,
        ended,
        before,
        after,
        peak: inside.iter().map(|s| s.sockets).max(),
        samples: inside.len(),
        growth,
        verdict,
        per_probe,
        answer,
        cut_short,
    }
}

/// Why `probe` sends nothing: as data, worded by [`crate::explain::refusal`].
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// The probes could leave more sockets than the server can spare: `total` probes against
    /// `in_use` of `limit` open files; at most `room` per shape for `shapes` shapes would fit.
    Budget { target: String, total: u64, in_use: u64, limit: u64, room: u64, shapes: usize },
    /// The server does not take a plain connection at the start: nothing to probe.
    NotAnswering { target: String, answer: Answer },
}

/// Why a shape was not run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Skipped {
    /// Ctrl-C came first.
    Interrupted,
    /// The server stopped answering after this shape.
    AfterStop(Shape),
}

/// The refusal: probes that could leave more sockets than the server can spare.
pub fn check_budget(cfg: &Config, first: Option<&Sample>) -> Result<(), Refusal> {
    let Some(s) = first else { return Ok(()) };
    let Some(limit) = s.fd_limit else { return Ok(()) };
    let total: u64 = cfg.shapes.iter().map(|k| cfg.count.div_ceil(k.connections()).max(1) * k.connections()).sum();
    let budget = (limit as f64 * FD_BUDGET) as u64;
    if s.sockets + total > budget {
        let room = budget.saturating_sub(s.sockets) / cfg.shapes.len().max(1) as u64;
        return Err(Refusal::Budget {
            target: cfg.target.clone(),
            total,
            in_use: s.sockets,
            limit,
            room,
            shapes: cfg.shapes.len(),
        });
    }
    Ok(())
}

/// Runs every shape in turn and judges the whole. `Err` when the server does not answer at the
/// start (nothing to probe) or the probes could exhaust it.
pub fn run(cfg: &Config, counter: &mut Counter, stop: &AtomicBool) -> Result<ProbeReport, Refusal> {
    let mut first = Vec::new();
    counter.poll(now_ts(), &mut first);
    // A samples file gives its whole history at once: the newest row is the server now.
    check_budget(cfg, first.last())?;
    let a = answers(cfg.addr, counter, &cfg.spec, counter.local().is_none());
    // Without counts, whether it still answers is judged by HTTP only if it speaks HTTP now.
    let http = matches!(a, Answer::Http { .. });
    let a = if a == Answer::NoResponse { Answer::Connects } else { a };
    if !a.ok() {
        return Err(Refusal::NotAnswering { target: cfg.target.clone(), answer: a });
    }
    let mut runs: Vec<ShapeRun> = Vec::new();
    let mut skipped = Vec::new();
    for &shape in &cfg.shapes {
        if stop.load(Ordering::Relaxed) {
            skipped.push((shape, Skipped::Interrupted));
            continue;
        }
        if let Some(r) = runs.iter().find(|r| r.stopped()) {
            skipped.push((shape, Skipped::AfterStop(r.shape)));
            continue;
        }
        runs.push(run_shape(cfg, shape, counter, stop, http));
    }
    let samples_error = match counter {
        Counter::File { error, .. } => error.clone(),
        _ => None,
    };
    let counted = runs.iter().any(|r| r.samples >= 5);
    let in_use = first.last().map(|s| s.sockets).or(runs.first().and_then(|r| r.before).map(|s| s.sockets));
    let limit = cfg.limit.or(first.last().and_then(|s| s.fd_limit));
    let worst = runs
        .iter()
        .filter(|r| r.growth == Verdict::Leak)
        .filter_map(|r| r.per_probe.map(|p| p.0))
        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))));
    let eta = match (limit, worst) {
        (Some(l), Some(per)) => {
            verdict::time_to_exhaustion(l as f64, in_use.unwrap_or(0) as f64, per, 1.0 / cfg.interval.as_secs_f64())
        }
        _ => None,
    };
    let interrupted = stop.load(Ordering::Relaxed);
    let mut verdict = runs.iter().map(|r| r.verdict).max().unwrap_or(Verdict::Unknown);
    // A run cut short has not judged every shape asked for: it cannot say `ok`.
    if interrupted && verdict == Verdict::Ok {
        verdict = Verdict::Unknown;
    }
    let erlang = runs.iter().filter_map(|r| r.after.and_then(|s| s.process)).any(|p| p.is_erlang_vm());
    Ok(ProbeReport {
        target: cfg.target.clone(),
        addr: cfg.addr,
        verdict,
        runs,
        skipped,
        counted,
        in_use,
        limit,
        interval: cfg.interval,
        rate: cfg.rate,
        count: cfg.count,
        exhaustion_eta_s: eta,
        erlang,
        interrupted,
        samples_error,
    })
}

pub(crate) fn fmt_interval(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if (s - s.round()).abs() < 1e-9 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

impl ProbeReport {
    pub(crate) fn leaking(&self) -> impl Iterator<Item = &ShapeRun> {
        self.runs.iter().filter(|r| r.growth == Verdict::Leak)
    }

    /// The remedies, as data: one per leaking kind, and the acceptor advice when it stopped.
    pub(crate) fn remedies(&self) -> Vec<verdict::Remedy> {
        let mut out = Vec::new();
        for r in self.leaking() {
            let m = verdict::Remedy::ForDriver { kind: r.shape.kind(), erlang: self.erlang };
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if self.runs.iter().any(ShapeRun::stopped) {
            out.push(verdict::Remedy::AcceptorsExhausted { erlang: self.erlang });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_escapes() {
        assert_eq!(parse_payload("PING\\r\\n").unwrap(), b"PING\r\n");
        assert_eq!(parse_payload("\\x00\\xffa\\\\").unwrap(), vec![0, 255, b'a', b'\\']);
        assert!(parse_payload("\\q").is_err());
        assert!(parse_payload("\\x4").is_err());
        assert!(parse_payload("\\xzz").is_err());
        assert!(parse_payload("").is_err());
    }

    #[test]
    fn shape_names_round_trip() {
        for k in Shape::ALL {
            assert_eq!(Shape::parse(k.name()), Some(k));
        }
        assert_eq!(Shape::parse("scan"), None);
        assert_eq!(Shape::ALL.last(), Some(&Shape::ResetInQueue), "the shape that may stop the server runs last");
    }

    #[test]
    fn http_responses() {
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_of(b"SSH-2.0"), None);
        assert_eq!(status_of(b"HTTP/1."), None);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok";
        assert!(!response_complete(r, false));
        assert!(response_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", false));
        assert!(!response_complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", false));
        assert!(response_complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false));
        assert!(!response_complete(r, true), "with Connection: close the response ends at EOF");
        let spec =
            Spec { payload: vec![], path: "/health".into(), host: "10.0.0.1:80".into(), timeout: Duration::ZERO };
        assert_eq!(http_request(&spec, true), "GET /health HTTP/1.1\r\nHost: 10.0.0.1:80\r\nConnection: close\r\n\r\n");
        assert!(!http_request(&spec, false).contains("Connection"));
    }

    fn sample(sockets: u64, fd_limit: Option<u64>) -> Sample {
        Sample { ts: 1, sockets, fd_limit, ..Sample::default() }
    }

    fn cfg(count: u64, shapes: Vec<Shape>) -> Config {
        Config {
            addr: "127.0.0.1:1".parse().unwrap(),
            target: "127.0.0.1:1".into(),
            shapes,
            rate: 20.0,
            count,
            settle: Duration::ZERO,
            spec: Spec { payload: vec![], path: "/".into(), host: String::new(), timeout: Duration::ZERO },
            interval: Duration::from_secs(5),
            limit: None,
        }
    }

    fn run(shape: Shape, growth: Verdict, per: f64, answer: Answer, before: u64, after: u64) -> ShapeRun {
        ShapeRun {
            shape,
            sent: Sent { connections: 50, connected: 50, ..Sent::default() },
            statuses: vec![],
            started: 0,
            last_probe: 0,
            ended: 0,
            before: Some(sample(before, Some(1024))),
            after: Some(sample(after, Some(1024))),
            peak: Some(after.max(before)),
            samples: 50,
            growth,
            verdict: if answer.ok() { growth } else { Verdict::Leak },
            per_probe: Some((per, (per - 0.01, per + 0.01), 0.99)),
            answer,
            cut_short: false,
        }
    }

    fn report(runs: Vec<ShapeRun>, verdict: Verdict) -> ProbeReport {
        ProbeReport {
            target: "10.0.0.12:8080".into(),
            addr: "10.0.0.12:8080".parse().unwrap(),
            verdict,
            runs,
            skipped: vec![(Shape::ResetInQueue, Skipped::Interrupted)],
            counted: true,
            in_use: Some(0),
            limit: Some(4096),
            interval: Duration::from_secs(5),
            rate: 20.0,
            count: 50,
            exhaustion_eta_s: Some(4096.0 * 5.0),
            erlang: false,
            interrupted: false,
            samples_error: None,
        }
    }

    #[test]
    fn every_format_names_the_leaking_shapes_the_time_to_exhaustion_and_the_stop() {
        let r = report(
            vec![
                run(Shape::HalfOpenRst, Verdict::Ok, 0.0, Answer::Accepted, 1, 1),
                run(Shape::DataRst, Verdict::Leak, 1.0, Answer::Accepted, 1, 51),
                run(Shape::HandshakeRst, Verdict::Ok, 0.0, Answer::NotAccepted { queue: 9 }, 51, 51),
            ],
            Verdict::Leak,
        );
        let h = crate::explain::probe_headline(&r);
        assert!(h.starts_with("LEAK — 10.0.0.12:8080 keeps sockets after data_rst probes (1.00 per probe"), "{h}");
        assert!(
            h.contains("at one check every 5 s this server runs out of sockets in 5h41m (limit 4096, 0 in use)"),
            "{h}"
        );
        assert!(h.contains("stopped answering after 50 handshake_rst probes"), "{h}");
        let mut t = Vec::new();
        crate::render::probe::table(&mut t, &r).unwrap();
        let t = String::from_utf8(t).unwrap();
        assert!(t.contains("1 → 51") && t.contains("never accepted, accept queue 9"), "{t}");
        assert!(t.contains("reset_in_queue not run: stopped (Ctrl-C)"), "{t}");
        assert_eq!(t.matches("  → ").count(), 2, "one remedy for the reset leak, one for the stop: {t}");
        let mut j = Vec::new();
        crate::render::probe::json(&mut j, &r).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert_eq!(v["leaking"], serde_json::json!(["data_rst"]));
        assert_eq!(v["stopped_answering_after"], "handshake_rst");
        assert_eq!(v["shapes"][1]["kept"], 50);
        let mut n = Vec::new();
        crate::render::probe::nagios(&mut n, &r).unwrap();
        let n = String::from_utf8(n).unwrap();
        assert!(n.starts_with("HCLEAK LEAK - 10.0.0.12:8080 keeps sockets"), "{n}");
        assert!(n.contains("| ") && n.contains("'data_rst per_probe'=1.000") && n.contains("'eta'=20480s"), "{n}");
        assert_eq!(n.lines().count(), 1);

        // Sockets that rose during the probes and were released in the settle wait came back.
        let mut slow = run(Shape::ConnectFin, Verdict::Ok, 0.0, Answer::Accepted, 3, 3);
        assert_eq!(slow.came_back(), None, "never rose");
        slow.peak = Some(20);
        assert_eq!(slow.came_back(), Some(true));
        let mut t = Vec::new();
        crate::render::probe::table(&mut t, &report(vec![slow.clone()], Verdict::Ok)).unwrap();
        assert!(String::from_utf8(t).unwrap().contains("rose to 20 and came back to 3"));
        slow.after = Some(sample(12, None));
        assert_eq!(slow.came_back(), Some(false));

        let ok = report(vec![run(Shape::ConnectFin, Verdict::Ok, 0.0, Answer::Accepted, 3, 3)], Verdict::Ok);
        let ok = ProbeReport { exhaustion_eta_s: None, skipped: vec![], ..ok };
        assert_eq!(
            crate::explain::probe_headline(&ok),
            "OK — 10.0.0.12:8080 kept no sockets after any of 1 probe shape"
        );
        assert!(ok.remedies().is_empty());
    }

    #[test]
    fn refuses_probes_that_could_exhaust_the_fd_limit() {
        // 6 shapes × 50 + reset_in_queue 56 = 356 connections; 80% of 1024 is 819.
        let all = cfg(50, Shape::ALL.to_vec());
        assert!(check_budget(&all, Some(&sample(10, Some(1024)))).is_ok());
        let e = check_budget(&all, Some(&sample(10, Some(256)))).unwrap_err();
        assert!(matches!(e, Refusal::Budget { total: 356, in_use: 10, limit: 256, room: 27, shapes: 7, .. }), "{e:?}");
        let e = crate::explain::refusal(&e);
        assert!(e.contains("refusing") && e.contains("at most 27 per shape"), "{e}");
        // 460 in use + 356 > 819.
        assert!(check_budget(&all, Some(&sample(470, Some(1024)))).is_err());
        // Unknown limit: nothing to protect against.
        assert!(check_budget(&all, Some(&sample(10, None))).is_ok());
        assert!(check_budget(&all, None).is_ok());
    }
}
