//! Explain: the sentences of a report (and of `probe`'s). The verdict step returns findings and remedies as data
//! ([`Finding`], [`Remedy`]); this module alone words them, for every output format.

use crate::classify::{Ending, Kind};
use crate::probe::{Answer, ProbeReport, Refusal, ShapeRun, Skipped};
use crate::sockets::Sample;
pub(crate) use crate::units::clock;
use crate::units::endpoint;
use crate::units::human_duration;
use crate::verdict::{BackendReport, Coverage, Finding, Remedy, Verdict};

fn plural_kind(k: Kind) -> String {
    match k {
        Kind::Traffic(_) => format!("{} connections", k.name()),
        _ => format!("{} probes", k.name()),
    }
}

/// Every finding of a backend, in order, as sentences.
pub fn evidence(b: &BackendReport) -> Vec<String> {
    b.evidence.iter().map(|f| finding(f, &b.name())).collect()
}

/// Every remedy of a backend, as sentences.
pub fn remedies(b: &BackendReport) -> Vec<String> {
    b.remedies.iter().map(remedy).collect()
}

/// One finding about the backend called `name`.
pub fn finding(f: &Finding, name: &str) -> String {
    match f {
        Finding::HostGrowth { start, now, span_s, driver: d, samples } => format!(
            "{name} sockets grew from {start:.0} to {now} over {span_s:.0} s while {} {} arrived: {:.2} socket kept per {} (95% CI {:.2}–{:.2}), Spearman ρ {:.2} over {samples} host samples",
            d.events, plural_kind(d.kind), d.per_event, d.kind.name(), d.ci95.0, d.ci95.1, d.rho
        ),
        Finding::HostNoGrowth { start, now, probes, span_s } => {
            let change = *now as f64 - start;
            format!(
                "host samples: sockets {} ({start:.0} → {now}, {change:+.0}) while {probes} probes arrived over {span_s:.0} s",
                if change.abs() < 2.0 { "flat" } else { "changed without following any probe or traffic kind" },
            )
        }
        Finding::HiddenSockets { n } => format!(
            "{n} of its socket fds are in no kernel TCP table: accepted, reset by the peer, never closed (lsof: \"can't identify protocol\")"
        ),
        Finding::HostCloseWait { n } => format!("{n} sockets in CLOSE_WAIT on the host: the peer closed, the server never did"),
        Finding::AcceptQueueOverflowing { queue, overflows } => format!(
            "accept queue holds {queue} connections nobody accepts and ListenOverflows rose by {overflows}: the kernel is dropping new handshakes"
        ),
        Finding::FitBeforePlateau { plateau, samples } => format!(
            "sockets stopped growing at {plateau:.0} (the server could not take more): the fit covers the {samples} samples before that"
        ),
        Finding::WireCloseWait { never_closed, driver: d } => format!(
            "on the wire, {name} never closed {never_closed} of its {} {} after the client's FIN ({:.2} per {}, 95% CI {:.2}–{:.2}, Spearman ρ {:.2})",
            d.events, plural_kind(d.kind), d.per_event, d.kind.name(), d.ci95.0, d.ci95.1, d.rho
        ),
        Finding::HalfClosed { n } => format!(
            "{n} connections are half-closed: the client sent FIN, the server ACKed it and never closed (CLOSE_WAIT on the server)"
        ),
        Finding::ResetsInvisible { kinds } => {
            let what = kinds.iter().map(|(k, n)| format!("{n} {}", k.name())).collect::<Vec<_>>().join(", ");
            format!(
                "connections here end in a reset after the server accepted them ({what}); a socket leaked after a reset is invisible on the wire — a leaking and a healthy server give identical captures"
            )
        }
        Finding::HalfOpenCannotLeak => "half-open probes (SYN, SYN-ACK, RST) never reach accept() on Linux, so they cannot leak in the application there; on FreeBSD they can — confirm with --sockets".into(),
        Finding::Stopped(s) => format!(
            "stopped answering at {} after {} probes: {} connection attempts since got no answer (SYNs dropped or requests left without a response) — its accept queue is full",
            clock(s.at), s.probes_before, s.unanswered_since
        ),
        Finding::NeverAccepted { at, requests_unanswered, queue } => {
            let q = queue.map_or(String::new(), |q| format!(", accept queue {q} (`ss -lnt`: Recv-Q stuck at Send-Q+1)"));
            format!(
                "never accepted a connection; accept queue full: not one of its {requests_unanswered} requests got a response byte and it never closed a connection{q}; new connections got no answer from {} — this is not a leak driven by the probes",
                clock(*at)
            )
        }
        Finding::StallOverruled { at, queue } => format!(
            "from {} some connections got no answer on the wire, but the host's accept queue is {queue} and not growing: it is still accepting",
            clock(*at)
        ),
        Finding::Refusing { since } => format!("refusing connections since {} (nothing listening on the port)", clock(*since)),
        Finding::SynAckRetransmits { n } => format!(
            "{n} connections had their SYN-ACK retransmitted (the server's handshake ACKs are being dropped)"
        ),
        Finding::Exhaustion { driver: d, limit, in_use, eta_s } => format!(
            "at {:.2} {} per second and {:.2} socket kept per {}, the limit of {limit} ({in_use:.0} in use) is reached in {}",
            d.rate_per_s, plural_kind(d.kind), d.per_event, d.kind.name(), human_duration(*eta_s)
        ),
        Finding::GainPerMinute { per_minute } => format!(
            "it gains {per_minute:.2} sockets per minute; pass --limit N (the server's socket or fd limit, see /proc/PID/limits) for a time to exhaustion"
        ),
        Finding::SamplesPortOnly { port, backends } => {
            let list = backends.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
            format!(
                "the host samples name only the port (:{port}) and were applied to every backend on it ({list}); if these are different hosts, label each host's samples with its address (`hcleak sample --addr IP`)"
            )
        }
        Finding::SamplesOutsideCapture { samples, first, last } => format!(
            "the {samples} host samples for it run from {} to {}, outside the capture: they were not used (check their clock and unit: Unix seconds)",
            clock(*first), clock(*last)
        ),
        Finding::ServerSoftware(s) => {
            let mut parts = Vec::new();
            if let Some(p) = s.process {
                let vm = if p.is_erlang_vm() { " (the Erlang VM: Bandit, Thousand Island, Cowboy)" } else { "" };
                parts.push(format!("the server process is {p}{vm}"));
            }
            if let Some(c) = s.container {
                parts.push(match c.runtime {
                    crate::container::Runtime::Systemd => format!("it runs in the systemd unit {}", c.id()),
                    _ => format!("it runs in the container {c}"),
                });
            }
            if let Some(h) = s.header {
                parts.push(format!("its responses name {h} in their Server header"));
            }
            parts.join("; ")
        }
        Finding::Published { ip, port } => format!(
            "it is also reached as {} (a published port: the same connections before DNAT, joined through the host's conntrack table)",
            endpoint(*ip, *port)
        ),
        Finding::MaybeSameBackend { ip, port } => format!(
            "{} carried the very same probes: it may be this backend seen before or after DNAT (a published port or NodePort); run the capture on the host as root so that hcleak can read /proc/net/nf_conntrack and join the two",
            endpoint(*ip, *port)
        ),
        Finding::OtherClients { conns } => format!(
            "{conns} connections from many other clients were counted together as traffic (past the per-backend group cap), never as probes"
        ),
    }
}

/// One remedy.
pub(crate) fn remedy(r: &Remedy) -> String {
    match r {
        Remedy::ForDriver { kind, erlang } => for_driver(*kind, *erlang),
        Remedy::AcceptorsExhausted { erlang: true } => "a server that stops accepting after a run of probes that reached accept() has run out of acceptors or sockets: on Bandit/Thousand Island upgrade Thousand Island to ≥ 1.3.12; restart buys time only".into(),
        Remedy::AcceptorsExhausted { erlang: false } => "a server that stops accepting after a run of probes that reached accept() has run out of acceptors or sockets: make its accept loop survive errors on connections the peer already reset (ECONNABORTED, EINVAL, ENOTCONN) and close such sockets; on the prober side, a check that closes cleanly (`option httpchk` with `Connection: close`) avoids the resets; restart buys time only".into(),
        Remedy::NeverAccepted { port } => format!(
            "find out why the server does not call accept(): its accept loop is blocked or dead, or it is saturated (`ss -lnt 'sport = :{port}'`, a stack dump of the process); this is not caused by the health checks"
        ),
        Remedy::MeasureHost { port } => format!(
            "to decide, measure the host: run `hcleak capture -i any port {port}` on the backend host, or `hcleak sample --port {port} -o samples.csv` there while capturing and then `hcleak analyze dump.pcap --sockets samples.csv`"
        ),
        Remedy::Confirm { port } => format!(
            "confirm on the host: `ss -tanp state close-wait '( sport = :{port} )'` (CLOSE_WAIT), `ls -l /proc/PID/fd | grep -c socket` and `lsof -nP -p PID | grep -c \"can't identify protocol\"` (leaked reset sockets), `ss -lnt 'sport = :{port}'` (Recv-Q at Send-Q+1: accept queue full), `nstat -az TcpExtListenOverflows`; or `hcleak sample --port {port}`"
        ),
    }
}

fn for_driver(k: Kind, erlang: bool) -> String {
    let reset_fix = if erlang {
        "on Bandit/Phoenix upgrade Thousand Island to ≥ 1.3.12 (earlier versions ended an acceptor on the `einval` a reset socket returns)"
    } else {
        "the server must close a socket when a read, write or option call on it fails because the peer reset it (ECONNRESET, ENOTCONN, EINVAL)"
    };
    match k {
        Kind::HandshakeRst | Kind::DataRst => format!(
            "the server loses a socket each time a check it accepted is reset: {reset_fix}; workaround on the prober: a check that closes cleanly (HAProxy `option httpchk GET /health` with `Connection: close`); raising maxconn only delays the outage"
        ),
        Kind::HttpCheck => "the HTTP check keeps the connection or the server ignores `Connection: close`: make the check close it (HAProxy: `hdr Connection close` in `http-check send`, or HTTP/1.0), and fix the server to close sockets on EOF and on ECONNRESET".into(),
        Kind::ConnectFin => "the server never closes a connection after the client's FIN (read() returned 0): close the socket on EOF; until then every probe leaves a CLOSE_WAIT socket".into(),
        Kind::HalfOpenRst => format!(
            "half-open probes reach accept() only on some kernels (FreeBSD): {reset_fix}, or switch the prober to an HTTP check"
        ),
        Kind::Traffic(Ending::Rst) => format!(
            "the leak follows traffic that ends in a reset, not the probes: HAProxy resets keep-alive server connections after the response, so {reset_fix}; changing the health check will not help"
        ),
        Kind::Traffic(Ending::Fin) => "sockets follow traffic closed by the client: the server does not close its side after the client's FIN".into(),
        Kind::Traffic(_) => "sockets follow ordinary traffic: look for connections the server keeps open without need".into(),
        Kind::Refused | Kind::Unanswered => String::new(),
    }
}

/// The backend's name and first finding, for one-line outputs.
pub(crate) fn first_finding(b: &BackendReport) -> Option<String> {
    b.evidence.first().map(|f| finding(f, &endpoint(b.ip, b.port)))
}

/// One line on what host samples covered against the capture.
pub fn coverage(c: &Coverage) -> String {
    let labels = c.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ");
    let mut s = format!(
        "host samples: {} rows from {} to {} for {labels}; the capture runs from {} to {}; {} backend{} judged with them",
        c.samples,
        clock(c.first),
        clock(c.last),
        clock(c.capture.0),
        clock(c.capture.1),
        c.used,
        if c.used == 1 { "" } else { "s" }
    );
    if !c.unmatched.is_empty() {
        let u = c.unmatched.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ");
        s.push_str(&format!("; no backend in the capture matches {u}"));
    }
    if c.used == 0 && c.unmatched.len() < c.labels.len() {
        s.push_str("; none of the samples fall inside the capture (Unix seconds, same clock?)");
    }
    s
}

/// The Nagios plugin state word for a verdict (`hcleak` keeps `LEAK` for exit code 2, as its
/// README documents; the exit code carries the state for the plugin API).
pub(crate) fn nagios_state(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => "OK",
        Verdict::Suspicious => "WARNING",
        Verdict::Leak => "LEAK",
        Verdict::Unknown => "UNKNOWN",
    }
}

/// `hcleak probe`'s headline: which shapes leak, whether it stopped answering, the time to
/// exhaustion at the production interval.
pub(crate) fn probe_headline(r: &ProbeReport) -> String {
    let tag = match r.verdict {
        Verdict::Ok => "OK",
        Verdict::Suspicious => "SUSPICIOUS",
        Verdict::Leak => "LEAK",
        Verdict::Unknown => "UNKNOWN",
    };
    let mut parts = Vec::new();
    let leaking: Vec<&ShapeRun> = r.leaking().collect();
    if !leaking.is_empty() {
        let names = leaking.iter().map(|s| s.shape.name()).collect::<Vec<_>>().join(", ");
        let mut s = format!("{} keeps sockets after {names} probes", r.target);
        if let Some((p, ci, _)) = leaking.iter().filter_map(|s| s.per_probe).max_by(|a, b| a.0.total_cmp(&b.0)) {
            s.push_str(&format!(" ({p:.2} per probe, 95% CI {:.2}–{:.2})", ci.0, ci.1));
        }
        parts.push(s);
    }
    if let Some(st) = r.runs.iter().find(|s| s.stopped()) {
        parts.push(format!(
            "{} stopped answering after {} {} probes ({})",
            r.target,
            st.sent.connections,
            st.shape.name(),
            answer(st.answer)
        ));
    }
    let suspicious: Vec<&str> =
        r.runs.iter().filter(|s| s.growth == Verdict::Suspicious).map(|s| s.shape.name()).collect();
    if !suspicious.is_empty() {
        parts.push(format!("sockets rose unsteadily after {}", suspicious.join(", ")));
    }
    match (r.exhaustion_eta_s, r.limit) {
        (Some(eta), Some(l)) => parts.push(format!(
            "at one check every {} this server runs out of sockets in {} (limit {l}, {} in use)",
            crate::probe::fmt_interval(r.interval),
            human_duration(eta),
            r.in_use.unwrap_or(0)
        )),
        (None, None) if !leaking.is_empty() => parts.push("no limit known (--limit N)".into()),
        _ => {}
    }
    if parts.is_empty() {
        parts.push(match r.verdict {
            Verdict::Unknown if r.interrupted && r.counted => format!(
                "{} kept no sockets after the {} shape{} that ran; {} not run",
                r.target,
                r.runs.len(),
                if r.runs.len() == 1 { "" } else { "s" },
                r.skipped.len()
            ),
            Verdict::Unknown if !r.counted => format!(
                "no socket counts for {}: run hcleak probe on its host (as root), pass --pid, or --sockets FILE from `hcleak sample` running there",
                r.target
            ),
            Verdict::Unknown => "too few socket samples to judge".into(),
            _ => format!(
                "{} kept no sockets after any of {} probe shape{}",
                r.target,
                r.runs.len(),
                if r.runs.len() == 1 { "" } else { "s" }
            ),
        });
    }
    let mut s = format!("{tag} — {}", parts.join("; "));
    if r.interrupted {
        s.push_str(" (stopped early by Ctrl-C)");
    }
    s
}

/// `hcleak probe`'s notes under the table: what the host shows after each shape, shapes not run.
pub(crate) fn probe_notes(r: &ProbeReport) -> Vec<String> {
    let mut out = Vec::new();
    for s in &r.runs {
        if let Some(n) = s.after.and_then(|a| a.hidden).filter(|_| s.verdict == Verdict::Leak && s.kept() > Some(0)) {
            out.push(format!(
                "after {}: {n} of the server's socket fds are in no kernel TCP table: accepted, reset by the peer, never closed",
                s.shape.name()
            ));
        }
        // A connection or two in CLOSE_WAIT is the server catching up; more is what it keeps.
        let cw = |x: Option<Sample>| x.and_then(|a| a.close_wait).unwrap_or(0);
        if cw(s.after) >= cw(s.before) + 3 {
            out.push(format!(
                "after {}: {} sockets in CLOSE_WAIT: the peer closed, the server never did",
                s.shape.name(),
                cw(s.after)
            ));
        }
        if let (Some(true), Some(p), Some(a)) = (s.came_back(), s.peak, s.after) {
            out.push(format!(
                "during {} the server's sockets rose to {p} and came back to {} after the settle wait",
                s.shape.name(),
                a.sockets
            ));
        }
        if s.stopped() {
            out.push(format!(
                "after {} the server no longer takes a plain connection: {}",
                s.shape.name(),
                answer(s.answer)
            ));
        }
    }
    for (k, why) in &r.skipped {
        out.push(format!("{} not run: {}", k.name(), skipped(*why)));
    }
    if let Some(e) = &r.samples_error {
        out.push(format!("the samples file could not be read at the end: {e}"));
    }
    out
}

/// Why a shape was not run, in words.
pub(crate) fn skipped(why: Skipped) -> String {
    match why {
        Skipped::Interrupted => "stopped (Ctrl-C)".into(),
        Skipped::AfterStop(s) => format!("the server stopped answering after {}", s.name()),
    }
}

/// Why `probe` sends nothing, in one line.
pub fn refusal(r: &Refusal) -> String {
    match r {
        Refusal::Budget { target, total, in_use, limit, room, shapes } => format!(
            "refusing: {total} probes could leave up to {total} sockets on {target}, which has {in_use} of its {limit} open files in use — that would exhaust it before the answer is in; lower --count (at most {room} per shape for {shapes} shapes) or pick fewer --kinds"
        ),
        Refusal::NotAnswering { target, answer: a } => {
            format!("{target} does not take a plain connection ({}): nothing to probe", answer(*a))
        }
    }
}

/// Whether the server still takes a plain connection, in words.
pub(crate) fn answer(a: Answer) -> String {
    match a {
        Answer::Accepted => "yes".into(),
        Answer::Connects => "connects".into(),
        Answer::Http { status } => format!("yes: HTTP {status}"),
        Answer::NoResponse => "no: it connects but sends no HTTP response".into(),
        Answer::NotAccepted { queue } => format!("no: it connects but is never accepted, accept queue {queue}"),
        Answer::NoHandshake => "no: no answer to its SYN".into(),
        Answer::Refused => "no: refused".into(),
        Answer::ProcessGone => "no: the process exited".into(),
    }
}

/// Bytes a TPACKET_V3 ring spends on one packet besides its data: the packet header and the
/// link-layer address, aligned (about 80 bytes on Linux).
const RING_OVERHEAD: u64 = 80;
/// The packet size the ring's cost is told in: about the average of a load balancer's traffic
/// with full payloads (the generated captures average 500 bytes).
const RING_TYPICAL_PACKET: u64 = 500;

/// What the packet ring holds, said when it is set up: `ring 64 MiB (≈ 1.2 s at 100 k packets/s of
/// 500 bytes)`. A large ring takes a while to set up; this line says why the start waits.
pub fn ring_cost(bytes: u64, snaplen: u64) -> String {
    let per = RING_OVERHEAD + RING_TYPICAL_PACKET.min(snaplen);
    let secs = bytes as f64 / per as f64 / 100_000.0;
    let size = if bytes >= 1 << 20 { format!("{} MiB", bytes >> 20) } else { format!("{} KiB", bytes >> 10) };
    format!("ring {size} (≈ {secs:.1} s at 100 k packets/s of {} bytes)", RING_TYPICAL_PACKET.min(snaplen))
}

/// The kernel's capture counters in one line: `taken` packets read, what the kernel received and
/// dropped, why `lo` counts double, and, when the drops have just grown, what to do about it.
pub(crate) fn kernel_counters(iface: &str, taken: u64, d: &crate::source::DropStats, drops_grew: bool) -> String {
    let mut s = format!(
        "{taken} packets captured, {} received by filter, {} dropped by kernel, {} dropped by interface",
        d.received, d.dropped_kernel, d.dropped_iface
    );
    if iface == "lo" {
        s.push_str(
            " (on lo the kernel counts each packet twice, as it leaves and as it arrives; hcleak reads one copy)",
        );
    }
    if drops_grew {
        s.push_str(" — packets are being lost: give the kernel a larger ring (-B, in KiB) or a tighter filter");
    }
    s
}

#[cfg(test)]
mod capture_tests {
    use super::*;
    use crate::source::DropStats;

    #[test]
    fn the_ring_cost_is_told_in_seconds_of_busy_traffic() {
        assert_eq!(ring_cost(64 << 20, 262_144), "ring 64 MiB (≈ 1.2 s at 100 k packets/s of 500 bytes)");
        // With -s 96 the same ring holds four times as long.
        assert_eq!(ring_cost(64 << 20, 96), "ring 64 MiB (≈ 3.8 s at 100 k packets/s of 96 bytes)");
        assert!(ring_cost(512 << 10, 0).starts_with("ring 512 KiB"));
    }

    #[test]
    fn counters_explain_lo_and_hint_only_when_drops_grow() {
        let d = DropStats { received: 20, dropped_kernel: 3, dropped_iface: 0 };
        let lo = kernel_counters("lo", 10, &d, false);
        assert!(lo.starts_with("10 packets captured, 20 received by filter, 3 dropped by kernel"), "{lo}");
        assert!(lo.contains("counts each packet twice") && !lo.contains("-B"), "{lo}");
        let eth = kernel_counters("eth0", 10, &d, true);
        assert!(!eth.contains("twice") && eth.contains("-B, in KiB") && eth.contains("filter"), "{eth}");
    }
}
