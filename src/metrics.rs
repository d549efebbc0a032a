//! Metrics: the report in Prometheus text exposition format, and a tiny HTTP endpoint that serves
//! the latest one at `/metrics` while a capture runs. Names follow Prometheus conventions: base
//! units, `_total` for counters, one `backend` label per server.

use crate::decode::DropStats;
use crate::verdict::{Report, Verdict};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Capture-wide counters for the exposition.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CaptureCounters {
    pub(crate) packets: u64,
    pub(crate) drops: Option<DropStats>,
}

/// Renders the exposition text.
pub(crate) fn exposition(r: &Report, c: &CaptureCounters) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut o,
        "hcleak_backend_info",
        "gauge",
        "What serves a backend on this host: its process and container (or systemd unit), from host samples.",
    );
    for b in &r.backends {
        let sw = &b.software;
        if sw.process.is_none() && sw.container.is_none() {
            continue;
        }
        let c = sw.container;
        let _ = writeln!(
            o,
            "hcleak_backend_info{{backend=\"{}\",process=\"{}\",container=\"{}\",container_id=\"{}\",pod_uid=\"{}\"}} 1",
            esc(&b.name()),
            esc(&sw.process.map(|p| p.to_string()).unwrap_or_default()),
            c.map(|c| c.short()).unwrap_or_default(),
            c.map(|c| c.id().to_string()).unwrap_or_default(),
            c.and_then(|c| c.pod().map(str::to_string)).unwrap_or_default(),
        );
    }
    family(&mut o, "hcleak_probes_total", "counter", "Health-check probe connections seen, by backend and probe kind.");
    for b in &r.backends {
        for (k, n) in b.kinds.iter().filter(|(k, _)| k.is_probe()) {
            let _ = writeln!(o, "hcleak_probes_total{{backend=\"{}\",kind=\"{}\"}} {n}", esc(&b.name()), k.name());
        }
    }
    family(
        &mut o,
        "hcleak_connections_total",
        "counter",
        "Ordinary traffic connections seen, by backend and how they ended.",
    );
    for b in &r.backends {
        for (k, n) in b.kinds.iter().filter(|(k, _)| !k.is_probe()) {
            let _ = writeln!(o, "hcleak_connections_total{{backend=\"{}\",kind=\"{}\"}} {n}", esc(&b.name()), k.name());
        }
    }
    family(&mut o, "hcleak_sockets", "gauge", "Sockets the backend holds now (source: host samples or the wire).");
    for b in &r.backends {
        if let Some(s) = b.sockets_now {
            let _ = writeln!(
                o,
                "hcleak_sockets{{backend=\"{}\",source=\"{}\"}} {s}",
                esc(&b.name()),
                b.sockets_source.name()
            );
        }
    }
    family(
        &mut o,
        "hcleak_sockets_hidden",
        "gauge",
        "Backend socket fds in no kernel table: accepted, reset, never closed.",
    );
    for b in &r.backends {
        if let Some(h) = b.hidden_now {
            let _ = writeln!(o, "hcleak_sockets_hidden{{backend=\"{}\"}} {h}", esc(&b.name()));
        }
    }
    family(
        &mut o,
        "hcleak_sockets_per_driver_event",
        "gauge",
        "Sockets kept per event of the connection kind the growth follows.",
    );
    for b in &r.backends {
        if let Some(d) = &b.driver {
            let _ = writeln!(
                o,
                "hcleak_sockets_per_driver_event{{backend=\"{}\",driver=\"{}\"}} {}",
                esc(&b.name()),
                d.kind.name(),
                d.per_event
            );
        }
    }
    // The help names the codes from the one table, `Verdict::exit_code`.
    let codes: Vec<String> = [Verdict::Ok, Verdict::Suspicious, Verdict::Leak, Verdict::Unknown]
        .iter()
        .map(|v| format!("{} {}", v.exit_code(), v.name()))
        .collect();
    let help = format!("Verdict per backend: {} (the exit-code convention).", codes.join(", "));
    family(&mut o, "hcleak_verdict", "gauge", &help);
    for b in &r.backends {
        let _ = writeln!(o, "hcleak_verdict{{backend=\"{}\"}} {}", esc(&b.name()), b.verdict.exit_code());
    }
    family(
        &mut o,
        "hcleak_exhaustion_eta_seconds",
        "gauge",
        "Projected seconds until the backend's socket limit is reached.",
    );
    for b in &r.backends {
        if let Some(e) = b.exhaustion_eta_s {
            let _ = writeln!(o, "hcleak_exhaustion_eta_seconds{{backend=\"{}\"}} {e}", esc(&b.name()));
        }
    }
    family(&mut o, "hcleak_packets_total", "counter", "Packets read from the capture.");
    let _ = writeln!(o, "hcleak_packets_total {}", c.packets);
    if let Some(d) = c.drops {
        family(&mut o, "hcleak_capture_received_total", "counter", "Packets the kernel filter accepted.");
        let _ = writeln!(o, "hcleak_capture_received_total {}", d.received);
        family(&mut o, "hcleak_capture_dropped_total", "counter", "Packets dropped before hcleak read them.");
        let _ = writeln!(o, "hcleak_capture_dropped_total{{by=\"kernel\"}} {}", d.dropped_kernel);
        let _ = writeln!(o, "hcleak_capture_dropped_total{{by=\"interface\"}} {}", d.dropped_iface);
    }
    o
}

/// `9917` → 127.0.0.1:9917; anything with an address is used as given (an explicit choice).
pub(crate) fn bind_addr(spec: &str) -> Result<SocketAddr, String> {
    if let Ok(p) = spec.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    spec.parse().map_err(|_| format!("bad --metrics address '{spec}' (want PORT or ADDR:PORT)"))
}

/// Most connections served at once; more are answered 503 at once and closed.
pub const MAX_CONNECTIONS: usize = 32;
/// Longest a connection may take to send its request and read the answer.
pub(crate) const REQUEST_TIME: Duration = Duration::from_secs(2);
/// Longest request head read (request line and headers).
const MAX_REQUEST: usize = 8192;

/// A bound metrics port, not yet served: bound before anything is written, served after the
/// privilege drop so that no thread ever runs with more than the main one keeps.
pub struct MetricsListener {
    listener: TcpListener,
    pub(crate) addr: SocketAddr,
}

impl MetricsListener {
    pub fn bind(addr: SocketAddr) -> Result<MetricsListener, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        Ok(MetricsListener { listener, addr })
    }

    /// Starts serving: a thread per connection, at most [`MAX_CONNECTIONS`] at once, each limited
    /// to [`REQUEST_TIME`], so idle or slow clients cannot hold up a scrape.
    pub fn start(self) -> Result<MetricsServer, String> {
        let body = Arc::new(Mutex::new(String::new()));
        let shared = Arc::clone(&body);
        let l = self.listener;
        let busy = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for s in l.incoming().flatten() {
                    if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                        busy.fetch_sub(1, Ordering::AcqRel);
                        let _ = refuse(s);
                        continue;
                    }
                    let (body, count) = (Arc::clone(&shared), Arc::clone(&busy));
                    let spawned = std::thread::Builder::new().name("metrics-conn".into()).spawn(move || {
                        let _ = serve(s, &body);
                        count.fetch_sub(1, Ordering::AcqRel);
                    });
                    if spawned.is_err() {
                        busy.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(MetricsServer { addr: self.addr, body })
    }
}

/// Serves the latest exposition at /metrics from background threads.
pub struct MetricsServer {
    pub addr: SocketAddr,
    pub(crate) body: Arc<Mutex<String>>,
}

impl MetricsServer {
    /// Binds and serves at once (for callers with nothing to do in between).
    pub fn start(addr: SocketAddr) -> Result<MetricsServer, String> {
        MetricsListener::bind(addr)?.start()
    }

    pub fn publish(&self, text: String) {
        if let Ok(mut b) = self.body.lock() {
            *b = text;
        }
    }
}

fn refuse(mut s: TcpStream) -> std::io::Result<()> {
    s.set_write_timeout(Some(Duration::from_millis(200)))?;
    s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

/// Reads the request head (it may come in several segments) within the connection's deadline.
/// `None`: the client was too slow, sent too much, or closed.
fn read_head(s: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut req = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        s.set_read_timeout(Some(left)).ok()?;
        let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
        req.extend_from_slice(&buf[..n]);
        if req.windows(4).any(|w| w == b"\r\n\r\n") || req.windows(2).any(|w| w == b"\n\n") {
            return Some(req);
        }
        if req.len() > MAX_REQUEST {
            return None;
        }
    }
}

/// The answer to one request head: status, content type, body, and whether to send the body.
pub(crate) fn respond(head: &[u8], body: &Mutex<String>) -> (&'static str, &'static str, String, bool) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    let mut words = line.split(|&b| b == b' ' || b == b'\r').filter(|w| !w.is_empty());
    let (method, path) = (words.next().unwrap_or(b""), words.next().unwrap_or(b""));
    let send_body = method != b"HEAD";
    if method != b"GET" && method != b"HEAD" {
        return ("405 Method Not Allowed", "text/plain", "GET or HEAD only\n".into(), true);
    }
    if path == b"/metrics" || path.starts_with(b"/metrics?") {
        let text = body.lock().map(|b| b.clone()).unwrap_or_default();
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text, send_body)
    } else {
        ("404 Not Found", "text/plain", "try /metrics\n".into(), send_body)
    }
}

fn serve(mut s: TcpStream, body: &Mutex<String>) -> std::io::Result<()> {
    let deadline = Instant::now() + REQUEST_TIME;
    let Some(head) = read_head(&mut s, deadline) else { return Ok(()) };
    let (status, ctype, text, send_body) = respond(&head, body);
    s.set_write_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100))))?;
    let allow = if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        text.len()
    )?;
    if send_body {
        s.write_all(text.as_bytes())?;
    }
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(bind_addr("9917").unwrap(), "127.0.0.1:9917".parse().unwrap());
        assert_eq!(bind_addr("0.0.0.0:9917").unwrap(), "0.0.0.0:9917".parse().unwrap());
        assert!(bind_addr("localhost").is_err());
    }

    #[test]
    fn methods_other_than_get_and_head_are_405_and_head_has_no_body() {
        let body = Mutex::new("hcleak_packets_total 1\n".to_string());
        let (st, _, _, send) = respond(b"POST /metrics HTTP/1.1\r\n\r\n", &body);
        assert_eq!((st, send), ("405 Method Not Allowed", true));
        let (st, _, text, send) = respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", &body);
        assert_eq!((st, send, text.len()), ("200 OK", false, 23));
        let (st, _, text, send) = respond(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", &body);
        assert_eq!((st, send, text.as_str()), ("200 OK", true, "hcleak_packets_total 1\n"));
        assert_eq!(respond(b"GET / HTTP/1.1\r\n\r\n", &body).0, "404 Not Found");
        assert_eq!(respond(b"\x16\x03\x01", &body).0, "405 Method Not Allowed");
    }

    #[test]
    fn empty_report_is_valid_exposition() {
        let r = Report::empty();
        let t = exposition(&r, &CaptureCounters { packets: 5, drops: Some(DropStats::default()) });
        assert!(t.contains("hcleak_packets_total 5\n"));
        assert!(t.contains("hcleak_capture_dropped_total{by=\"kernel\"} 0\n"));
        for l in t.lines() {
            assert!(l.starts_with('#') || l.starts_with("hcleak_"), "{l}");
        }
    }
}
