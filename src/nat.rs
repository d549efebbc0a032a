//! NAT: a connection to a published port (Docker `-p`, a NodePort) is seen before DNAT, to the
//! host's address, and after it, to the container's. The host's conntrack table links the two
//! tuples; with it the backend is reported once, as the container's `ip:port`, with the published
//! address beside it. Without it, two backends that carry the very same probes are said to be
//! possibly one.

use crate::backend::Backends;
use crate::verdict::{Finding, Report};
use std::net::IpAddr;
use std::path::Path;

/// The verdict on `backends`, joined through a conntrack table that could be read (a published
/// port and its container are one backend); without one, the report says which may be one.
pub fn judge(
    backends: &Backends,
    host: Option<&crate::sockets::HostSamples>,
    opts: &crate::verdict::Options,
    nat: Option<&NatTable>,
) -> Report {
    match nat {
        Some(n) if n.readable == Some(true) => {
            let (b, joined) = n.join(backends);
            let mut r = crate::verdict::judge(&b, host, opts);
            annotate(&mut r, &joined);
            r
        }
        _ => {
            let mut r = crate::verdict::judge(backends, host, opts);
            maybe_one(&mut r);
            r
        }
    }
}

/// A published address and the backend conntrack says it was translated to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dnat {
    pub published: (IpAddr, u16),
    pub(crate) backend: (IpAddr, u16),
}

/// The DNAT'ed TCP entries of `/proc/net/nf_conntrack` or of `conntrack -L` (the same fields,
/// without the leading `ipv4 2`): those whose reply does not come from where the original went.
/// Anything else, and malformed lines, are skipped.
pub fn parse_conntrack(text: &str) -> Vec<Dnat> {
    let mut out: Vec<Dnat> = Vec::new();
    for line in text.lines() {
        let mut toks = line.split_whitespace();
        if !toks.by_ref().take(3).any(|t| t == "tcp") {
            continue;
        }
        // The original direction's src, dst, sport, dport, then the reply's.
        let mut addrs: [Option<IpAddr>; 4] = [None; 4];
        let mut ports: [Option<u16>; 4] = [None; 4];
        let (mut na, mut np) = (0, 0);
        for t in toks {
            let Some((k, v)) = t.split_once('=') else { continue };
            match k {
                "src" | "dst" if na < 4 => {
                    addrs[na] = v.parse().ok();
                    na += 1;
                }
                "sport" | "dport" if np < 4 => {
                    ports[np] = v.parse().ok();
                    np += 1;
                }
                _ => {}
            }
        }
        let (Some(dst), Some(rsrc)) = (addrs[1], addrs[2]) else { continue };
        let (Some(dport), Some(rsport)) = (ports[1], ports[2]) else { continue };
        let d = Dnat { published: (dst, dport), backend: (rsrc, rsport) };
        if d.published != d.backend && !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// The translations seen during a run, gathered from conntrack on each sampling round (entries
/// leave the table seconds after a connection closes).
#[derive(Clone, Debug, Default)]
pub struct NatTable {
    pub seen: Vec<Dnat>,
    /// Whether the conntrack table could be read: `None` before the first try.
    pub readable: Option<bool>,
}

/// Translations kept at most (a busy node has many; the report needs the probed ones).
const MAX_KEPT: usize = 4096;

impl NatTable {
    /// Reads `net/nf_conntrack` under a procfs root (normally `/proc`).
    pub(crate) fn read(&mut self, proc_root: &Path) {
        match std::fs::read_to_string(proc_root.join("net/nf_conntrack")) {
            Ok(text) => {
                self.readable = Some(true);
                for d in parse_conntrack(&text) {
                    if self.seen.len() < MAX_KEPT && !self.seen.contains(&d) {
                        self.seen.push(d);
                    }
                }
            }
            Err(_) => {
                self.readable.get_or_insert(false);
            }
        }
    }

    /// The backends with each published address folded into its backend: when both were
    /// captured they are the same connections seen twice, and the published one is dropped;
    /// when only the published one was, it is renamed. Returns the joins made.
    pub(crate) fn join(&self, all: &Backends) -> (Backends, Vec<Dnat>) {
        let mut b = all.clone();
        let mut joined = Vec::new();
        for d in &self.seen {
            let Some(mut p) = b.map.remove(&d.published) else { continue };
            if let std::collections::hash_map::Entry::Vacant(e) = b.map.entry(d.backend) {
                (p.ip, p.port) = d.backend;
                e.insert(p);
            }
            joined.push(*d);
        }
        (b, joined)
    }
}

/// Says beside each joined backend the address it was published at.
pub(crate) fn annotate(r: &mut Report, joined: &[Dnat]) {
    for d in joined {
        if let Some(b) = r.backends.iter_mut().find(|b| (b.ip, b.port) == d.backend) {
            let f = Finding::Published { ip: d.published.0, port: d.published.1 };
            if !b.evidence.contains(&f) {
                b.evidence.insert(0, f);
            }
        }
    }
}

/// Without conntrack: backends at another address and port whose probes came from the same
/// prober, as many of the same kinds, may be one backend seen before and after DNAT. (Two real
/// backends usually share their port or their address.)
pub(crate) fn maybe_one(r: &mut Report) {
    let key = |b: &crate::verdict::BackendReport| b.probers.first().map(|p| (p.src, b.probes, b.kinds.clone()));
    let keys: Vec<_> = r.backends.iter().map(key).collect();
    for i in 0..r.backends.len() {
        for j in 0..r.backends.len() {
            let (a, b) = (&r.backends[i], &r.backends[j]);
            if i == j || a.port == b.port || a.ip == b.ip || a.probes < 3 || keys[i].is_none() || keys[i] != keys[j] {
                continue;
            }
            let f = Finding::MaybeSameBackend { ip: b.ip, port: b.port };
            if !r.backends[i].evidence.contains(&f) {
                r.backends[i].evidence.push(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines: /proc/net/nf_conntrack (Docker -p 18080:8080, a probe reset in CLOSE), an
    // SNAT-only entry (masquerade: not a DNAT), UDP, and conntrack -L output of an IPv6 entry.
    const PROC: &str = "ipv4     2 tcp      6 9 CLOSE src=10.213.5.9 dst=10.213.4.1 sport=51234 dport=18080 src=10.213.4.2 dst=10.213.5.9 sport=8080 dport=51234 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=172.17.0.2 dst=93.184.216.34 sport=40022 dport=443 src=93.184.216.34 dst=192.168.1.20 sport=443 dport=40022 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 28 src=10.0.0.5 dst=10.96.0.10 sport=5353 dport=53 src=10.244.1.3 dst=10.0.0.5 sport=53 dport=5353 mark=0 zone=0 use=2
ipv4     2 tcp      6 9 CLOSE src=10.213.5.9 dst=10.213.4.1 sport=51236 dport=18080 src=10.213.4.2 dst=10.213.5.9 sport=8080 dport=51236 [ASSURED] mark=0 zone=0 use=2
garbage line
";
    const CONNTRACK_L: &str = "tcp      6 86399 ESTABLISHED src=fd00::9 dst=fd00::1 sport=40000 dport=30080 src=fd00:0:0:0:0:0:0:42 dst=fd00::9 sport=8080 dport=40000 [ASSURED] mark=0 use=1\nconntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n";

    #[test]
    fn reads_the_dnat_entries_of_both_formats() {
        let v = parse_conntrack(PROC);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(v, vec![Dnat { published: (ip("10.213.4.1"), 18080), backend: (ip("10.213.4.2"), 8080) }]);
        let v = parse_conntrack(CONNTRACK_L);
        assert_eq!(v, vec![Dnat { published: (ip("fd00::1"), 30080), backend: (ip("fd00::42"), 8080) }]);
        assert!(parse_conntrack("tcp src=1.2.3.4 dst=x").is_empty());
    }
}
