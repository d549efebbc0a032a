//! Sampler: takes host samples — the backend host's own socket counts for the server process
//! behind a backend, in whichever network namespace holds its LISTEN socket (a container's too):
//! socket fds, fds in no kernel table (accepted, reset, never closed), CLOSE_WAIT and
//! never-accepted connections, the accept queue, the fd limit, ListenOverflows.
//!
//! [`HostSampler`] is to host samples what [`crate::source::PacketSource`] is to frames: procfs
//! ([`ProcSampler`], everything read relative to a root directory, normally `/proc`, so tests can
//! point it at a fake tree) or a script ([`FakeSampler`]). [`sample_every`] is `hcleak sample`'s
//! loop over any of them. The samples themselves, and their CSV, are [`crate::sockets`].

use crate::clock::Clock;
use crate::decode::Ts;
use crate::sockets::{BackendSpec, Sample};
use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// One row of /proc/net/tcp{,6}.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpEntry {
    pub(crate) local: IpAddr,
    pub local_port: u16,
    /// Kernel state: 0x01 ESTABLISHED, 0x08 CLOSE_WAIT, 0x0A LISTEN, …
    pub state: u8,
    pub(crate) rx_queue: u64,
    pub(crate) inode: u64,
}

pub(crate) const ESTABLISHED: u8 = 0x01;
pub const CLOSE_WAIT: u8 = 0x08;
pub const LISTEN: u8 = 0x0A;

fn parse_addr(hex: &str) -> Option<IpAddr> {
    match hex.len() {
        8 => {
            let v = u32::from_str_radix(hex, 16).ok()?;
            // Host byte order on little-endian machines, as the kernel prints it.
            Some(IpAddr::V4(Ipv4Addr::from(v.to_le_bytes())))
        }
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Parses the text of /proc/net/tcp or tcp6; malformed lines are skipped.
pub fn parse_tcp_table(text: &str) -> Vec<TcpEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            let (_, rx) = f.get(4)?.split_once(':')?;
            Some(TcpEntry {
                local: parse_addr(addr)?,
                local_port: u16::from_str_radix(port, 16).ok()?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// The inode column of any /proc/net table (tcp, udp, unix, raw…), for "is this socket known".
fn table_inodes(text: &str, unix: bool, out: &mut HashSet<u64>) {
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let col = if unix { 6 } else { 9 };
        if let Some(i) = f.get(col).and_then(|s| s.parse::<u64>().ok()) {
            out.insert(i);
        }
    }
}

/// `Max open files` soft limit from /proc/PID/limits.
pub(crate) fn parse_fd_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// `TcpExt: … ListenOverflows …` from /proc/net/netstat.
pub(crate) fn parse_listen_overflows(text: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// The local addresses of a network namespace, from its `net/fib_trie` (IPv4: the `/32 host
/// LOCAL` leaves) and `net/if_inet6` (IPv6, 32 hex digits in network order).
pub(crate) fn parse_local_addresses(fib_trie: &str, if_inet6: &str, out: &mut Vec<IpAddr>) {
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let t = line.trim_start();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last {
                if !out.contains(&IpAddr::V4(a)) {
                    out.push(IpAddr::V4(a));
                }
            }
        }
    }
    for line in if_inet6.lines() {
        let Some(hex) = line.split_whitespace().next().filter(|h| h.len() == 32) else { continue };
        if let Ok(v) = u128::from_str_radix(hex, 16) {
            out.push(IpAddr::V6(Ipv6Addr::from(v)));
        }
    }
}

/// The server behind a port: the process holding its LISTEN socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub pid: u32,
    pub(crate) port: u16,
    /// The listening address; `None` when it listens on all addresses.
    pub addr: Option<IpAddr>,
    pub listen_inode: u64,
    /// The network namespace holding the socket (its inode), when it is not hcleak's own.
    pub(crate) netns: Option<u64>,
    /// The backend address the server was looked up for (the address seen on the wire): a server
    /// in another namespace listening on all addresses is known by it, since many pods listen on
    /// the same port.
    pub(crate) seen_as: Option<IpAddr>,
}

impl Server {
    pub(crate) fn spec(&self) -> BackendSpec {
        match (self.addr, self.netns, self.seen_as) {
            (Some(ip), _, _) => BackendSpec::Exact(ip, self.port),
            (None, Some(_), Some(ip)) => BackendSpec::Exact(ip, self.port),
            (None, _, _) => BackendSpec::Port(self.port),
        }
    }
}

/// A network namespace and the process its tables are read through (`None`: hcleak's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Netns {
    pub(crate) inode: u64,
    pub(crate) via: Option<u32>,
}

/// Reads procfs under `root`.
#[derive(Clone, Debug)]
pub struct Procfs {
    pub(crate) root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Procfs { root: PathBuf::from("/proc") }
    }
}

impl Procfs {
    fn read(&self, rel: impl AsRef<Path>) -> Option<String> {
        fs::read_to_string(self.root.join(rel)).ok()
    }

    /// TCP entries as seen from a process's network namespace (or this process's).
    pub(crate) fn tcp(&self, pid: Option<u32>) -> Vec<TcpEntry> {
        let base = pid.map_or_else(|| PathBuf::from("self"), |p| PathBuf::from(p.to_string()));
        let mut v = Vec::new();
        for t in ["net/tcp", "net/tcp6"] {
            if let Some(text) = self.read(base.join(t)) {
                v.extend(parse_tcp_table(&text));
            }
        }
        v
    }

    /// Socket inodes a process holds open.
    pub fn socket_fds(&self, pid: u32) -> std::io::Result<Vec<u64>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join(pid.to_string()).join("fd"))? {
            let Ok(e) = e else { continue };
            if let Ok(target) = fs::read_link(e.path()) {
                let t = target.to_string_lossy();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(i) = i.parse() {
                        out.push(i);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The process holding `inode` open, scanning every /proc/PID/fd (once per new port).
    pub(crate) fn pid_of_inode(&self, inode: u64) -> Option<u32> {
        let want = format!("socket:[{inode}]");
        for e in fs::read_dir(&self.root).ok()? {
            let Ok(e) = e else { continue };
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(fds) = fs::read_dir(e.path().join("fd")) else { continue };
            for fd in fds.flatten() {
                if fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()) {
                    return Some(pid);
                }
            }
        }
        None
    }

    /// Every process holding `inode` open: a pre-forking server's master and workers share one
    /// listener.
    pub fn pids_of_inode(&self, inode: u64) -> Vec<u32> {
        let want = format!("socket:[{inode}]");
        let mut out = Vec::new();
        let Ok(dir) = fs::read_dir(&self.root) else { return out };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(fds) = fs::read_dir(e.path().join("fd")) else { continue };
            if fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str())) {
                out.push(pid);
            }
        }
        out.sort_unstable();
        out
    }

    /// The network namespace a process is in (`self` for hcleak's own).
    fn netns_of(&self, pid: &str) -> Option<u64> {
        let link = fs::read_link(self.root.join(pid).join("ns/net")).ok()?;
        link.to_str()?.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
    }

    /// Every network namespace on the host, hcleak's own first, each with one member process.
    /// Without a readable `ns/net` (a fake tree, no privileges) only hcleak's own is listed.
    pub(crate) fn namespaces(&self) -> Vec<Netns> {
        let own = self.netns_of("self");
        let mut out = vec![Netns { inode: own.unwrap_or(0), via: None }];
        let Some(own) = own else { return out };
        let Ok(dir) = fs::read_dir(&self.root) else { return out };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Some(ns) = self.netns_of(&pid.to_string()) else { continue };
            if ns != own && !out.iter().any(|n| n.inode == ns) {
                out.push(Netns { inode: ns, via: Some(pid) });
            }
        }
        out
    }

    /// The local addresses of a namespace (read through its member process).
    pub(crate) fn addresses(&self, ns: &Netns) -> Vec<IpAddr> {
        let base = ns.via.map_or_else(|| PathBuf::from("self"), |p| PathBuf::from(p.to_string()));
        let mut out = Vec::new();
        parse_local_addresses(
            &self.read(base.join("net/fib_trie")).unwrap_or_default(),
            &self.read(base.join("net/if_inet6")).unwrap_or_default(),
            &mut out,
        );
        out
    }

    /// Every server listening on `port` in any network namespace, for the backend address `ip`
    /// when given: a socket bound to `ip` itself, or to all addresses in the namespace that owns
    /// `ip` (many pods listen on 8080, each at its own address). hcleak's own namespace comes
    /// first. Without a namespace list (no privileges) this is hcleak's own namespace only.
    pub fn find_servers(&self, ip: Option<IpAddr>, port: u16) -> Vec<Server> {
        let mut out = Vec::new();
        for ns in self.namespaces() {
            let own = ns.via.is_none();
            let listeners: Vec<TcpEntry> =
                self.tcp(ns.via).into_iter().filter(|e| e.state == LISTEN && e.local_port == port).collect();
            if listeners.is_empty() {
                continue;
            }
            // Read a namespace's addresses only when a wildcard listener needs them.
            let mut addrs: Option<Vec<IpAddr>> = None;
            for l in &listeners {
                let fits = match ip {
                    None => true,
                    Some(ip) if l.local == ip => true,
                    Some(_) if !l.local.is_unspecified() => false,
                    Some(ip) => {
                        let a = addrs.get_or_insert_with(|| self.addresses(&ns));
                        // Our own namespace's table unreadable: as before, any address will do.
                        a.contains(&ip) || (own && (ip.is_loopback() || a.is_empty()))
                    }
                };
                if !fits || out.iter().any(|s: &Server| s.listen_inode == l.inode) {
                    continue;
                }
                let owner = match ns.via {
                    // A member of the namespace usually holds it: look there first.
                    Some(p) if self.socket_fds(p).is_ok_and(|v| v.contains(&l.inode)) => Some(p),
                    _ => self.pid_of_inode(l.inode),
                };
                if let Some(pid) = owner {
                    out.push(Server {
                        pid,
                        port,
                        addr: (!l.local.is_unspecified()).then_some(l.local),
                        listen_inode: l.inode,
                        netns: (!own).then_some(ns.inode),
                        seen_as: ip,
                    });
                }
            }
        }
        out
    }

    /// The local server listening on `port`, if any: in process `pid`'s namespace, or in hcleak's
    /// own and then any other namespace.
    pub fn find_server(&self, port: u16, pid: Option<u32>) -> Option<Server> {
        if pid.is_none() {
            return self.find_servers(None, port).into_iter().next();
        }
        self.find_server_of(port, pid)
    }

    fn find_server_of(&self, port: u16, pid: Option<u32>) -> Option<Server> {
        let listeners: Vec<TcpEntry> =
            self.tcp(pid).into_iter().filter(|e| e.state == LISTEN && e.local_port == port).collect();
        for l in &listeners {
            let owner = match pid {
                Some(p) if self.socket_fds(p).is_ok_and(|v| v.contains(&l.inode)) => Some(p),
                Some(_) => None,
                None => self.pid_of_inode(l.inode),
            };
            if let Some(pid) = owner {
                let other = self.netns_of(&pid.to_string()).filter(|&n| Some(n) != self.netns_of("self"));
                return Some(Server {
                    pid,
                    port,
                    addr: (!l.local.is_unspecified()).then_some(l.local),
                    listen_inode: l.inode,
                    netns: other,
                    seen_as: None,
                });
            }
        }
        None
    }

    /// The server behind `ip:port` on this host, in whichever network namespace holds it (a
    /// container's): see [`Procfs::find_servers`].
    pub fn find_server_in_netns(&self, ip: IpAddr, port: u16) -> Option<Server> {
        self.find_servers(Some(ip), port).into_iter().next()
    }

    /// One sample of a server. `Err` when the process is gone or unreadable.
    pub(crate) fn sample(&self, s: &Server, now: Ts) -> std::io::Result<Sample> {
        let fds = self.socket_fds(s.pid)?;
        let pid_dir = PathBuf::from(s.pid.to_string());
        let tcp = self.tcp(Some(s.pid));
        let mut known = HashSet::with_capacity(tcp.len() * 2);
        for e in &tcp {
            known.insert(e.inode);
        }
        for (t, unix) in
            [("net/udp", false), ("net/udp6", false), ("net/raw", false), ("net/raw6", false), ("net/unix", true)]
        {
            if let Some(text) = self.read(pid_dir.join(t)) {
                table_inodes(&text, unix, &mut known);
            }
        }
        let mine = |e: &&TcpEntry| e.local_port == s.port && s.addr.is_none_or(|a| a == e.local);
        Ok(Sample {
            ts: now,
            sockets: fds.len() as u64,
            hidden: Some(fds.iter().filter(|i| !known.contains(i)).count() as u64),
            close_wait: Some(tcp.iter().filter(mine).filter(|e| e.state == CLOSE_WAIT).count() as u64),
            unaccepted: Some(tcp.iter().filter(mine).filter(|e| e.state == ESTABLISHED && e.inode == 0).count() as u64),
            accept_queue: tcp.iter().find(|e| e.inode == s.listen_inode).map(|e| e.rx_queue),
            listen_overflows: self.read(pid_dir.join("net/netstat")).as_deref().and_then(parse_listen_overflows),
            fd_limit: self.read(pid_dir.join("limits")).as_deref().and_then(parse_fd_limit),
            process: self.read(pid_dir.join("comm")).as_deref().and_then(crate::sockets::Comm::new),
            container: self.read(pid_dir.join("cgroup")).as_deref().and_then(crate::container::Container::from_cgroup),
        })
    }
}

/// Where host samples come from in a live run.
pub trait HostSampler {
    /// Starts following the server behind the backend `ip:port` if it runs on this host, in any
    /// network namespace; true if found.
    fn watch(&mut self, ip: IpAddr, port: u16) -> bool;
    /// One sample of every watched server.
    fn sample(&mut self, now: Ts) -> Vec<(BackendSpec, Sample)>;
}

/// Samples servers through procfs.
#[derive(Debug, Default)]
pub struct ProcSampler {
    pub proc: Procfs,
    pub servers: Vec<Server>,
    /// Backends already looked up and not served here.
    pub absent: HashSet<(IpAddr, u16)>,
    /// Backends already looked up and served here.
    pub present: HashSet<(IpAddr, u16)>,
    /// Servers whose process went away: looked up again (same address and port) every round
    /// until a new process holds the port — a restarted container.
    pub lost: Vec<Server>,
}

impl HostSampler for ProcSampler {
    fn watch(&mut self, ip: IpAddr, port: u16) -> bool {
        // Each backend is looked up by itself: a server of our own on all addresses of port 8080
        // does not stand for a pod listening on 8080 at its own address.
        if self.present.contains(&(ip, port)) {
            return true;
        }
        if self.absent.contains(&(ip, port)) {
            return false;
        }
        match self.proc.find_servers(Some(ip), port).into_iter().next() {
            Some(s) => {
                self.present.insert((ip, port));
                // The same listener under the same name is sampled once.
                if !self
                    .servers
                    .iter()
                    .chain(&self.lost)
                    .any(|o| o.listen_inode == s.listen_inode && o.spec() == s.spec())
                {
                    self.servers.push(s);
                }
                true
            }
            None => {
                self.absent.insert((ip, port));
                false
            }
        }
    }

    fn sample(&mut self, now: Ts) -> Vec<(BackendSpec, Sample)> {
        // A restarted server has a new PID: look its address and port up again.
        let proc = &self.proc;
        let found: Vec<Server> = self
            .lost
            .iter()
            .filter_map(|l| proc.find_servers(l.seen_as.or(l.addr), l.port).into_iter().next().map(|n| (l, n)))
            .map(|(l, mut n)| {
                n.seen_as = l.seen_as;
                n
            })
            .collect();
        self.lost.retain(|l| !found.iter().any(|n| n.port == l.port && n.seen_as == l.seen_as));
        self.servers.extend(found);
        let mut out = Vec::with_capacity(self.servers.len());
        let mut gone = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            match self.proc.sample(s, now) {
                Ok(x) => out.push((s.spec(), x)),
                Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            self.lost.push(self.servers.remove(i));
        }
        out
    }
}

/// A sample as a fake server gives it at a time.
pub type SampleFn = Box<dyn FnMut(Ts) -> Sample + Send>;

/// What a [`FakeSampler`] was asked, for the test that holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeLog {
    /// Every backend it was asked to watch, in order.
    pub asked: Vec<(IpAddr, u16)>,
    /// The time of every round of samples.
    pub rounds: Vec<Ts>,
}

/// A sampler with scripted servers, for tests: the backends it serves and each one's sample as a
/// function of time. What it is asked is logged where the test can read it.
#[derive(Default)]
pub struct FakeSampler {
    serves: Vec<((IpAddr, u16), SampleFn)>,
    watched: Vec<usize>,
    log: std::sync::Arc<std::sync::Mutex<FakeLog>>,
}

impl FakeSampler {
    /// Serves the backend `ip:port`, whose sample at time `ts` is `f(ts)` (its `ts` set to the
    /// round's time).
    pub fn serve(mut self, ip: IpAddr, port: u16, f: impl FnMut(Ts) -> Sample + Send + 'static) -> Self {
        self.serves.push(((ip, port), Box::new(f)));
        self
    }

    /// Where it logs what it is asked.
    pub fn log(&self) -> std::sync::Arc<std::sync::Mutex<FakeLog>> {
        std::sync::Arc::clone(&self.log)
    }

    /// Watches every backend it serves from the start (as `hcleak sample` does with its server).
    pub fn watching_all(mut self) -> Self {
        self.watched = (0..self.serves.len()).collect();
        self
    }
}

impl HostSampler for FakeSampler {
    fn watch(&mut self, ip: IpAddr, port: u16) -> bool {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).asked.push((ip, port));
        match self.serves.iter().position(|(b, _)| *b == (ip, port)) {
            Some(i) => {
                if !self.watched.contains(&i) {
                    self.watched.push(i);
                }
                true
            }
            None => false,
        }
    }

    fn sample(&mut self, now: Ts) -> Vec<(BackendSpec, Sample)> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).rounds.push(now);
        self.watched
            .iter()
            .map(|&i| {
                let ((ip, port), f) = &mut self.serves[i];
                (BackendSpec::Exact(*ip, *port), Sample { ts: now, ..f(now) })
            })
            .collect()
    }
}

/// `hcleak sample`'s loop: a round of samples every `every`, each written to `out` as a CSV row
/// (under the name `label` gives it) and flushed, until `stop` is set or `until` passes on
/// `clock`. A server that went away is looked up again at once (the sampler follows a restarted
/// process on the same port); not found, it is looked up once a round. Returns the number of
/// samples written.
pub fn sample_every(
    sampler: &mut dyn HostSampler,
    label: &dyn Fn(BackendSpec) -> BackendSpec,
    every: std::time::Duration,
    until: Option<std::time::Instant>,
    stop: &std::sync::atomic::AtomicBool,
    clock: &dyn Clock,
    out: &mut dyn std::io::Write,
) -> std::io::Result<u64> {
    use std::sync::atomic::Ordering;
    let mut n = 0;
    let mut next = clock.instant();
    let mut sampled = true;
    while !stop.load(Ordering::Relaxed) && until.is_none_or(|d| clock.instant() < d) {
        let now = clock.wall();
        let mut round = sampler.sample(now);
        if round.is_empty() && sampled {
            // Gone since the last round: looked up again at once (the sampler does that first
            // thing). Still gone, it is looked up once a round, not twice.
            round = sampler.sample(now);
        }
        sampled = !round.is_empty();
        for (spec, x) in round {
            writeln!(out, "{}", crate::sockets::csv_row(&label(spec), &x))?;
            out.flush()?;
            n += 1;
        }
        next += every;
        clock.sleep_until(next, stop);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000009 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:A000 08 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:A002 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   3: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn parses_the_kernel_tcp_table() {
        let v = parse_tcp_table(TCP);
        assert_eq!(v.len(), 4);
        assert_eq!(
            v[0],
            TcpEntry { local: "127.0.0.1".parse().unwrap(), local_port: 8080, state: LISTEN, rx_queue: 9, inode: 1111 }
        );
        assert_eq!(v[1].state, CLOSE_WAIT);
        assert!(v[3].local.is_unspecified());
        let v6 = parse_tcp_table("h\n   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 44 1\n");
        assert_eq!(v6[0].local, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn parses_limits_and_netstat() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 1048576              files\n";
        assert_eq!(parse_fd_limit(limits), Some(1024));
        let netstat =
            "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 75 75\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_listen_overflows(netstat), Some(75));
    }

    #[test]
    fn a_namespace_owns_an_address_by_its_local_routes() {
        let root = std::env::temp_dir().join(format!("hcleak-fakens-addr-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("7/net")).unwrap();
        fs::write(
            root.join("7/net/fib_trie"),
            "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.231.1.0\n        /30 link UNICAST\n     |-- 10.231.1.2\n        /32 host LOCAL\n",
        )
        .unwrap();
        fs::write(root.join("7/net/if_inet6"), "fd000000000000000000000000000002 02 40 00 80 eth0\n").unwrap();
        let p = Procfs { root: root.clone() };
        let has = |pid: u32, ip: &str| p.addresses(&Netns { inode: 1, via: Some(pid) }).contains(&ip.parse().unwrap());
        assert!(has(7, "10.231.1.2"));
        assert!(!has(7, "10.231.1.0"), "a network, not an address");
        assert!(!has(7, "10.231.1.1"));
        assert!(has(7, "fd00::2"));
        assert!(!has(8, "10.231.1.2"), "no such process");
        fs::remove_dir_all(&root).unwrap();
    }

    /// A fake /proc with one server holding a listener, a CLOSE_WAIT socket and a hidden socket.
    #[test]
    fn samples_a_fake_proc_tree() {
        let root = std::env::temp_dir().join(format!("hcleak-fakeproc-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let pid = root.join("4242");
        fs::create_dir_all(pid.join("fd")).unwrap();
        fs::create_dir_all(pid.join("net")).unwrap();
        fs::create_dir_all(root.join("self/net")).unwrap();
        for (n, ino) in [(3, 1111), (4, 2222), (5, 9999)] {
            std::os::unix::fs::symlink(format!("socket:[{ino}]"), pid.join("fd").join(n.to_string())).unwrap();
        }
        std::os::unix::fs::symlink("/dev/null", pid.join("fd/0")).unwrap();
        fs::write(pid.join("net/tcp"), TCP).unwrap();
        fs::write(root.join("self/net/tcp"), TCP).unwrap();
        fs::write(pid.join("limits"), "Max open files            64                 64              files\n").unwrap();
        fs::write(pid.join("net/netstat"), "TcpExt: ListenOverflows\nTcpExt: 7\n").unwrap();
        let p = Procfs { root: root.clone() };
        let s = p.find_server(8080, None).unwrap();
        assert_eq!((s.pid, s.listen_inode, s.spec().to_string()), (4242, 1111, "127.0.0.1:8080".to_string()));
        let x = p.sample(&s, 5).unwrap();
        assert_eq!(x.sockets, 3);
        assert_eq!(x.hidden, Some(1), "inode 9999 is in no table");
        assert_eq!(
            (x.close_wait, x.accept_queue, x.fd_limit, x.listen_overflows),
            (Some(1), Some(9), Some(64), Some(7))
        );
        assert_eq!(x.unaccepted, Some(1));
        assert!(p.find_server(9090, None).is_none());
        fs::remove_dir_all(&root).unwrap();
    }

    const FIB: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.213.0.0/24 2 0 2
        |-- 10.213.0.0
           /24 link UNICAST
        |-- 10.213.0.2
           /32 host LOCAL
        |-- 10.213.0.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
";

    #[test]
    fn reads_a_namespace_s_addresses() {
        let mut v = Vec::new();
        parse_local_addresses(FIB, "fd000000000000000000000000000002 04 40 00 82     eth0\nbad\n", &mut v);
        let want: Vec<IpAddr> = ["10.213.0.2", "127.0.0.1", "fd00::2"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(v, want, "broadcast and network routes are not addresses");
    }

    /// Two pods on port 8080, each listening on all addresses of its own namespace: the backend's
    /// address picks the pod, and hcleak's own namespace (nothing on 8080) is not taken for either.
    #[test]
    fn finds_the_listener_in_the_namespace_that_owns_the_address() {
        let root = std::env::temp_dir().join(format!("hcleak-fakens-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let wild = |ino: u64| {
            format!("h\n   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {ino} 1\n")
        };
        let fib = |ip: &str| FIB.replace("10.213.0.2", ip);
        let tree: [(&str, u64, String, String, u64); 4] = [
            ("self", 1, "h\n".into(), fib("192.0.2.9"), 0),
            ("100", 2, wild(5001), fib("10.213.0.2"), 5001),
            ("101", 2, wild(5001), fib("10.213.0.2"), 0),
            ("200", 3, wild(6001), fib("10.213.0.3"), 6001),
        ];
        for (dir, ns, tcp, fib, held) in &tree {
            let d = root.join(dir);
            fs::create_dir_all(d.join("net")).unwrap();
            fs::create_dir_all(d.join("fd")).unwrap();
            fs::create_dir_all(d.join("ns")).unwrap();
            std::os::unix::fs::symlink(format!("net:[{ns}]"), d.join("ns/net")).unwrap();
            fs::write(d.join("net/tcp"), tcp).unwrap();
            fs::write(d.join("net/fib_trie"), fib).unwrap();
            if *held != 0 {
                std::os::unix::fs::symlink(format!("socket:[{held}]"), d.join("fd/3")).unwrap();
            }
        }
        fs::write(
            root.join("200/cgroup"),
            "0::/system.slice/docker-3f0b1a6f5d1e2c3b4a59687766554433221100ffeeddccbbaa99887766554433.scope\n",
        )
        .unwrap();
        let p = Procfs { root: root.clone() };
        let ns: Vec<u64> = p.namespaces().iter().map(|n| n.inode).collect();
        assert_eq!(ns.len(), 3, "one entry per namespace, however many members: {ns:?}");
        assert_eq!(ns[0], 1, "our own first");
        let a = p.find_servers(Some("10.213.0.2".parse().unwrap()), 8080);
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].pid, a[0].listen_inode, a[0].netns), (100, 5001, Some(2)));
        assert_eq!(a[0].spec().to_string(), "10.213.0.2:8080", "known by its own address, not by the port alone");
        let b = p.find_servers(Some("10.213.0.3".parse().unwrap()), 8080);
        assert_eq!((b[0].pid, b[0].spec().to_string()), (200, "10.213.0.3:8080".to_string()));
        let x = p.sample(&b[0], 1).unwrap();
        assert_eq!(x.container.map(|c| c.short()), Some("docker://3f0b1a6f5d1e".to_string()));
        assert!(p.find_servers(Some("10.213.0.4".parse().unwrap()), 8080).is_empty(), "no namespace owns it");
        assert!(p.find_servers(Some("192.0.2.9".parse().unwrap()), 8080).is_empty(), "nothing on 8080 at home");
        assert_eq!(p.find_servers(None, 8080).len(), 2, "by port alone: both pods");
        // The sampler follows a backend by address: the pod that goes away is looked for again
        // and found in its new process.
        let mut s = ProcSampler { proc: p.clone(), ..ProcSampler::default() };
        assert!(s.watch("10.213.0.3".parse().unwrap(), 8080));
        assert!(!s.watch("10.213.0.9".parse().unwrap(), 8080));
        assert_eq!(s.sample(2).len(), 1);
        fs::remove_file(root.join("200/fd/3")).unwrap();
        fs::remove_dir_all(root.join("200/fd")).unwrap();
        assert!(s.sample(3).is_empty(), "the process is gone");
        let d = root.join("300");
        fs::create_dir_all(d.join("fd")).unwrap();
        fs::create_dir_all(d.join("net")).unwrap();
        fs::create_dir_all(d.join("ns")).unwrap();
        std::os::unix::fs::symlink("net:[4]", d.join("ns/net")).unwrap();
        fs::write(d.join("net/tcp"), wild(7001)).unwrap();
        fs::write(d.join("net/fib_trie"), fib("10.213.0.3")).unwrap();
        std::os::unix::fs::symlink("socket:[7001]", d.join("fd/3")).unwrap();
        fs::remove_dir_all(root.join("200")).unwrap();
        let got = s.sample(4);
        assert_eq!(got.len(), 1, "the restarted container is followed");
        assert_eq!(got[0].0.to_string(), "10.213.0.3:8080");
        assert_eq!(s.servers[0].pid, 300);
        fs::remove_dir_all(&root).unwrap();
    }

    /// A server of our own on all addresses of 8080 and a pod on 8080 at its own address: each
    /// backend gets its own server, the pod's is not taken for ours (nor ours for the pod's).
    #[test]
    fn our_own_wildcard_listener_does_not_stand_for_a_pod_on_the_same_port() {
        let root = std::env::temp_dir().join(format!("hcleak-fakens2-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let wild = |ino: u64| {
            format!("h\n   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {ino} 1\n")
        };
        for (dir, ns, ino, ip) in
            [("self", 1, 0, "192.0.2.9"), ("10", 1, 4001, "192.0.2.9"), ("20", 2, 5001, "10.213.0.2")]
        {
            let d = root.join(dir);
            for sub in ["net", "fd", "ns"] {
                fs::create_dir_all(d.join(sub)).unwrap();
            }
            std::os::unix::fs::symlink(format!("net:[{ns}]"), d.join("ns/net")).unwrap();
            fs::write(d.join("net/tcp"), wild(if dir == "self" { 4001 } else { ino })).unwrap();
            fs::write(d.join("net/fib_trie"), FIB.replace("10.213.0.2", ip)).unwrap();
            if ino != 0 {
                std::os::unix::fs::symlink(format!("socket:[{ino}]"), d.join("fd/3")).unwrap();
            }
        }
        let mut s = ProcSampler { proc: Procfs { root: root.clone() }, ..ProcSampler::default() };
        assert!(s.watch("192.0.2.9".parse().unwrap(), 8080));
        assert!(s.watch("10.213.0.2".parse().unwrap(), 8080));
        assert!(s.watch("127.0.0.1".parse().unwrap(), 8080), "loopback is ours");
        let specs: Vec<(u32, String)> = s.servers.iter().map(|x| (x.pid, x.spec().to_string())).collect();
        assert_eq!(specs, vec![(10, ":8080".to_string()), (20, "10.213.0.2:8080".to_string())]);
        fs::remove_dir_all(&root).unwrap();
    }

    /// `hcleak sample`'s loop on a fake server and a fake clock: a row a round, named as asked,
    /// until the deadline; nothing once stopped.
    #[test]
    fn sample_every_writes_a_row_each_round_until_the_deadline() {
        use crate::clock::{Clock, FakeClock};
        use std::sync::atomic::AtomicBool;
        use std::time::Duration;
        const T0: Ts = 1_700_000_000_000_000_000;
        let sample =
            |ts: Ts| Sample { ts, sockets: 3 + ((ts - T0) / 100_000_000) as u64, hidden: Some(1), ..Sample::default() };
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let clock = FakeClock::at(T0);
        let mut fake = FakeSampler::default().serve(ip, 8080, sample).watching_all();
        let log = fake.log();
        let until = Some(clock.instant() + Duration::from_secs(1));
        let label = |_: BackendSpec| BackendSpec::Exact("192.0.2.7".parse().unwrap(), 8080);
        let mut out = Vec::new();
        let stop = AtomicBool::new(false);
        let n = sample_every(&mut fake, &label, Duration::from_millis(100), until, &stop, &clock, &mut out).unwrap();
        assert_eq!(n, 10);
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 10, "{text}");
        assert!(rows.iter().all(|r| r.split(',').nth(1) == Some("192.0.2.7:8080")), "{text}");
        assert_eq!(rows[9].split(',').nth(2), Some("12"), "{text}");
        let rounds = log.lock().unwrap().rounds.clone();
        assert!(rounds.windows(2).all(|w| w[1] - w[0] == 100_000_000), "{rounds:?}");
        // Stopped before it starts: no round at all.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut out = Vec::new();
        assert_eq!(
            sample_every(&mut fake, &label, Duration::from_millis(100), None, &stop, &clock, &mut out).unwrap(),
            0
        );
        assert!(out.is_empty());
    }
}
