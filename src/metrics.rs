//! Metrics: the report in Prometheus text exposition format, and a tiny HTTP endpoint that serves
//! the latest one at `/metrics` while a capture runs. Names follow Prometheus conventions: base
//! units, `_total` for counters, one `backend` label per server.

use crate::source::DropStats;
use crate::verdict::Report;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Capture-wide counters for the exposition.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureCounters {
    pub packets: u64,
    pub drops: Option<DropStats>,
}

/// Renders the exposition text.
pub fn exposition(r: &Report, c: &CaptureCounters) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
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
    family(
        &mut o,
        "hcleak_verdict",
        "gauge",
        "Verdict per backend: 0 ok, 1 suspicious, 2 leak, 3 unknown (the exit-code convention).",
    );
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
pub fn bind_addr(spec: &str) -> Result<SocketAddr, String> {
    if let Ok(p) = spec.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    spec.parse().map_err(|_| format!("bad --metrics address '{spec}' (want PORT or ADDR:PORT)"))
}

/// Serves the latest exposition at /metrics from a background thread.
pub struct MetricsServer {
    pub addr: SocketAddr,
    pub body: Arc<Mutex<String>>,
}

impl MetricsServer {
    pub fn start(addr: SocketAddr) -> Result<MetricsServer, String> {
        let l = TcpListener::bind(addr).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        let body = Arc::new(Mutex::new(String::new()));
        let shared = Arc::clone(&body);
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for s in l.incoming().flatten() {
                    let _ = serve(s, &shared);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(MetricsServer { addr, body })
    }

    pub fn publish(&self, text: String) {
        if let Ok(mut b) = self.body.lock() {
            *b = text;
        }
    }
}

fn serve(mut s: TcpStream, body: &Mutex<String>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut req = [0u8; 1024];
    let n = s.read(&mut req)?;
    let line = String::from_utf8_lossy(&req[..n]);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, text) = if path == "/metrics" || path.starts_with("/metrics?") {
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body.lock().map(|b| b.clone()).unwrap_or_default())
    } else {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
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
    fn empty_report_is_valid_exposition() {
        let r = Report {
            verdict: crate::verdict::Verdict::Unknown,
            backends: vec![],
            minor_backends: 0,
            minor_conns: 0,
            min_conns: 3,
        };
        let t = exposition(&r, &CaptureCounters { packets: 5, drops: Some(DropStats::default()) });
        assert!(t.contains("hcleak_packets_total 5\n"));
        assert!(t.contains("hcleak_capture_dropped_total{by=\"kernel\"} 0\n"));
        for l in t.lines() {
            assert!(l.starts_with('#') || l.starts_with("hcleak_"), "{l}");
        }
    }
}
