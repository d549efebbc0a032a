//! Sampler: reads the backend host's own socket tables (procfs) for the server process behind a
//! port — socket fds, fds in no kernel table (accepted, reset, never closed), CLOSE_WAIT and
//! never-accepted connections, the accept queue, the fd limit, ListenOverflows.
//!
//! Everything is read relative to a root directory (normally `/proc`) so tests can point it at a
//! fake tree; a [`HostSampler`] trait lets the live loop take samples from procfs or from a fake.

use crate::decode::Ts;
use crate::sockets::{BackendSpec, Sample};
use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// One row of /proc/net/tcp{,6}.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpEntry {
    pub local: IpAddr,
    pub local_port: u16,
    /// Kernel state: 0x01 ESTABLISHED, 0x08 CLOSE_WAIT, 0x0A LISTEN, …
    pub state: u8,
    pub rx_queue: u64,
    pub inode: u64,
}

pub const ESTABLISHED: u8 = 0x01;
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
pub fn parse_fd_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// `TcpExt: … ListenOverflows …` from /proc/net/netstat.
pub fn parse_listen_overflows(text: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// The server behind a port: the process holding its LISTEN socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub pid: u32,
    pub port: u16,
    /// The listening address; `None` when it listens on all addresses.
    pub addr: Option<IpAddr>,
    pub listen_inode: u64,
}

impl Server {
    pub fn spec(&self) -> BackendSpec {
        match self.addr {
            Some(ip) => BackendSpec::Exact(ip, self.port),
            None => BackendSpec::Port(self.port),
        }
    }
}

/// Reads procfs under `root`.
#[derive(Clone, Debug)]
pub struct Procfs {
    pub root: PathBuf,
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
    pub fn tcp(&self, pid: Option<u32>) -> Vec<TcpEntry> {
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
    pub fn pid_of_inode(&self, inode: u64) -> Option<u32> {
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

    /// The local server listening on `port`, if any.
    pub fn find_server(&self, port: u16, pid: Option<u32>) -> Option<Server> {
        let listeners: Vec<TcpEntry> =
            self.tcp(pid).into_iter().filter(|e| e.state == LISTEN && e.local_port == port).collect();
        for l in &listeners {
            let owner = match pid {
                Some(p) if self.socket_fds(p).is_ok_and(|v| v.contains(&l.inode)) => Some(p),
                Some(_) => None,
                None => self.pid_of_inode(l.inode),
            };
            if let Some(pid) = owner {
                return Some(Server {
                    pid,
                    port,
                    addr: (!l.local.is_unspecified()).then_some(l.local),
                    listen_inode: l.inode,
                });
            }
        }
        None
    }

    /// The server behind `ip:port` in another network namespace on this host (a container's): the
    /// namespace with a listener on that address — or on all addresses, when the namespace owns
    /// `ip` — then the process holding it. One representative process per namespace is read.
    pub fn find_server_in_netns(&self, ip: IpAddr, port: u16) -> Option<Server> {
        let own = fs::read_link(self.root.join("self/ns/net")).ok();
        let mut seen = HashSet::new();
        for e in fs::read_dir(&self.root).ok()?.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(ns) = fs::read_link(e.path().join("ns/net")) else { continue };
            if own.as_ref() == Some(&ns) || !seen.insert(ns) {
                continue;
            }
            for l in self.tcp(Some(pid)).into_iter().filter(|t| t.state == LISTEN && t.local_port == port) {
                if l.local != ip && !(l.local.is_unspecified() && self.netns_has_addr(pid, ip)) {
                    continue;
                }
                if let Some(owner) = self.pid_of_inode(l.inode) {
                    let addr = (!l.local.is_unspecified()).then_some(l.local);
                    return Some(Server { pid: owner, port, addr, listen_inode: l.inode });
                }
            }
        }
        None
    }

    /// Whether the network namespace of `pid` has `ip` on one of its interfaces (IPv4: a `/32 host
    /// LOCAL` route in fib_trie; IPv6: a row of if_inet6).
    fn netns_has_addr(&self, pid: u32, ip: IpAddr) -> bool {
        let dir = PathBuf::from(pid.to_string());
        match ip {
            IpAddr::V4(a) => self.read(dir.join("net/fib_trie")).is_some_and(|t| {
                let want = format!("|-- {a}");
                let lines: Vec<&str> = t.lines().collect();
                lines.windows(2).any(|w| w[0].trim() == want && w[1].contains("/32 host LOCAL"))
            }),
            IpAddr::V6(a) => {
                let hex: String = a.octets().iter().map(|b| format!("{b:02x}")).collect();
                self.read(dir.join("net/if_inet6")).is_some_and(|t| t.lines().any(|l| l.starts_with(&hex)))
            }
        }
    }

    /// One sample of a server. `Err` when the process is gone or unreadable.
    pub fn sample(&self, s: &Server, now: Ts) -> std::io::Result<Sample> {
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
        })
    }
}

/// Where host samples come from in a live run.
pub trait HostSampler {
    /// Starts following the server behind `port` if there is one on this host; true if found.
    fn watch(&mut self, port: u16) -> bool;
    /// One sample of every watched server.
    fn sample(&mut self, now: Ts) -> Vec<(BackendSpec, Sample)>;
}

/// Samples servers through procfs.
#[derive(Debug, Default)]
pub struct ProcSampler {
    pub proc: Procfs,
    pub servers: Vec<Server>,
    /// Ports already looked up and not served here.
    pub absent: HashSet<u16>,
}

impl HostSampler for ProcSampler {
    fn watch(&mut self, port: u16) -> bool {
        if self.servers.iter().any(|s| s.port == port) {
            return true;
        }
        if self.absent.contains(&port) {
            return false;
        }
        match self.proc.find_server(port, None) {
            Some(s) => {
                self.servers.push(s);
                true
            }
            None => {
                self.absent.insert(port);
                false
            }
        }
    }

    fn sample(&mut self, now: Ts) -> Vec<(BackendSpec, Sample)> {
        let mut out = Vec::with_capacity(self.servers.len());
        let mut gone = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            match self.proc.sample(s, now) {
                Ok(x) => out.push((s.spec(), x)),
                Err(_) => gone.push(i),
            }
        }
        // A restarted server has a new PID: look the port up again next time.
        for i in gone.into_iter().rev() {
            let s = self.servers.remove(i);
            if let Some(n) = self.proc.find_server(s.port, None) {
                self.servers.push(n);
            }
        }
        out
    }
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
        let root = std::env::temp_dir().join(format!("hcleak-fakens-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("7/net")).unwrap();
        fs::write(
            root.join("7/net/fib_trie"),
            "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.231.1.0\n        /30 link UNICAST\n     |-- 10.231.1.2\n        /32 host LOCAL\n",
        )
        .unwrap();
        fs::write(root.join("7/net/if_inet6"), "fd000000000000000000000000000002 02 40 00 80 eth0\n").unwrap();
        let p = Procfs { root: root.clone() };
        assert!(p.netns_has_addr(7, "10.231.1.2".parse().unwrap()));
        assert!(!p.netns_has_addr(7, "10.231.1.0".parse().unwrap()), "a network, not an address");
        assert!(!p.netns_has_addr(7, "10.231.1.1".parse().unwrap()));
        assert!(p.netns_has_addr(7, "fd00::2".parse().unwrap()));
        assert!(!p.netns_has_addr(8, "10.231.1.2".parse().unwrap()), "no such process");
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
}
