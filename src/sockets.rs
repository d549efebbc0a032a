//! Host samples: the backend host's own socket counts over time ([`Sample`], [`HostSamples`]), and
//! their CSV. A [`crate::sampler`] takes them (procfs, or a fake); `hcleak sample` and `capture -w`
//! write them as CSV, and `analyze --sockets` reads that back:
//!
//! ```text
//! ts,backend,sockets[,hidden,close_wait,unaccepted,accept_queue,listen_overflows,fd_limit,process,container]
//! 1732543200.25,127.0.0.1:8080,118,112,0,0,0,0,1024
//! ```
//!
//! `ts` is Unix seconds, `backend` is `ip:port`, `[v6]:port` or `:port` (any address), `sockets` the
//! server process's socket file descriptors. Optional columns may be empty. `container` is
//! `runtime://id` with `;pod=UID` for a Kubernetes pod (`containerd://3f0b…;pod=5b1c…`), or
//! `systemd://nginx.service`.

use crate::container::Container;
use crate::decode::Ts;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// One sample of one backend.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub ts: Ts,
    pub sockets: u64,
    /// Socket fds in none of the kernel's TCP tables: accepted, reset, never closed.
    pub hidden: Option<u64>,
    pub close_wait: Option<u64>,
    /// Connections the kernel established on the port that the server never accepted.
    pub unaccepted: Option<u64>,
    pub accept_queue: Option<u64>,
    pub listen_overflows: Option<u64>,
    /// The process's open-files limit.
    pub fd_limit: Option<u64>,
    /// The server process's name (`/proc/PID/comm`).
    pub process: Option<Comm>,
    /// The container (or systemd unit) the server runs in (`/proc/PID/cgroup`).
    pub container: Option<Container>,
}

/// A process name as the kernel keeps it (`/proc/PID/comm`, at most 15 bytes), kept inline so
/// that samples stay plain copyable data.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comm([u8; 15], u8);

impl Comm {
    /// The name, cut to 15 bytes as the kernel does; `None` when empty.
    pub fn new(name: &str) -> Option<Comm> {
        let b = name.trim().as_bytes();
        let n = b.len().min(15);
        if n == 0 {
            return None;
        }
        let mut a = [0u8; 15];
        a[..n].copy_from_slice(&b[..n]);
        Some(Comm(a, n as u8))
    }
    pub(crate) fn as_str(&self) -> &str {
        // Built from a str and cut on a byte count: fall back to the valid prefix.
        let b = &self.0[..usize::from(self.1)];
        std::str::from_utf8(b).unwrap_or_else(|e| std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""))
    }
    /// The Erlang VM (Bandit, Cowboy, Thousand Island run on it).
    pub(crate) fn is_erlang_vm(&self) -> bool {
        matches!(self.as_str(), "beam.smp" | "beam")
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which backend a row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendSpec {
    Exact(IpAddr, u16),
    /// `:8080`: any address on this port.
    Port(u16),
}

impl BackendSpec {
    pub(crate) fn parse(s: &str) -> Option<BackendSpec> {
        let s = s.trim();
        if let Some(p) = s.strip_prefix(':') {
            return p.parse().ok().map(BackendSpec::Port);
        }
        if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
            return Some(BackendSpec::Exact(sa.ip(), sa.port()));
        }
        None
    }

    pub(crate) fn matches(&self, ip: IpAddr, port: u16) -> bool {
        match *self {
            BackendSpec::Exact(i, p) => i == ip && p == port,
            BackendSpec::Port(p) => p == port,
        }
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendSpec::Exact(ip, port) => f.write_str(&crate::units::endpoint(*ip, *port)),
            BackendSpec::Port(p) => write!(f, ":{p}"),
        }
    }
}

/// All samples, grouped by backend, each group sorted by time.
#[derive(Clone, Debug, Default)]
pub struct HostSamples {
    pub backends: Vec<(BackendSpec, Vec<Sample>)>,
}

impl HostSamples {
    /// Samples for a backend: an exact address match first, then a port-only row.
    pub(crate) fn for_backend(&self, ip: IpAddr, port: u16) -> Option<&[Sample]> {
        let exact = self.backends.iter().find(|(s, _)| matches!(s, BackendSpec::Exact(..)) && s.matches(ip, port));
        exact
            .or_else(|| self.backends.iter().find(|(s, _)| matches!(s, BackendSpec::Port(_)) && s.matches(ip, port)))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether the samples used for this backend matched by port only (`:port`).
    pub(crate) fn port_only(&self, ip: IpAddr, port: u16) -> bool {
        let exact = self.backends.iter().any(|(s, _)| matches!(s, BackendSpec::Exact(..)) && s.matches(ip, port));
        !exact && self.backends.iter().any(|(s, _)| matches!(s, BackendSpec::Port(_)) && s.matches(ip, port))
    }

    pub fn push(&mut self, spec: BackendSpec, s: Sample) {
        match self.backends.iter_mut().find(|(b, _)| *b == spec) {
            Some((_, v)) => v.push(s),
            None => self.backends.push((spec, vec![s])),
        }
    }

    fn sort(&mut self) {
        for (_, v) in &mut self.backends {
            v.sort_by_key(|s| s.ts);
        }
    }
}

/// A problem with the samples file, naming the file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplesError {
    pub path: PathBuf,
    pub(crate) line: Option<u64>,
    pub(crate) msg: String,
}

impl fmt::Display for SamplesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path.display(), l, self.msg),
            None => write!(f, "{}: {}", self.path.display(), self.msg),
        }
    }
}

impl std::error::Error for SamplesError {}

/// The CSV header `hcleak sample` writes.
pub const CSV_HEADER: &str =
    "ts,backend,sockets,hidden,close_wait,unaccepted,accept_queue,listen_overflows,fd_limit,process,container";

/// One CSV row in the format [`read_csv`] reads.
pub(crate) fn csv_row(spec: &BackendSpec, s: &Sample) -> String {
    let o = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    format!(
        "{}.{:06},{},{},{},{},{},{},{},{},{},{}",
        s.ts.div_euclid(1_000_000_000),
        s.ts.rem_euclid(1_000_000_000) / 1000,
        spec,
        s.sockets,
        o(s.hidden),
        o(s.close_wait),
        o(s.unaccepted),
        o(s.accept_queue),
        o(s.listen_overflows),
        o(s.fd_limit),
        // A comm is the program's own choice: keep it to characters a CSV field can hold bare.
        s.process
            .map(|p| p.as_str().replace(|c: char| c == ',' || c == '"' || c.is_control(), "_"))
            .unwrap_or_default(),
        // Built only from hex digits, uuids and unit names: no comma, quote or control character.
        s.container.map(|c| c.to_field()).unwrap_or_default()
    )
}

pub fn read_csv(path: &Path) -> Result<HostSamples, SamplesError> {
    let f = std::fs::File::open(path).map_err(|e| SamplesError {
        path: path.into(),
        line: None,
        msg: csv_msg(&csv::Error::from(e)),
    })?;
    read_csv_from(f, path)
}

/// [`read_csv`] from an open file (or any reader); `path` names it in errors. `probe` keeps a
/// samples file open across a privilege drop and reads it again as it grows.
pub(crate) fn read_csv_from(r: impl std::io::Read, path: &Path) -> Result<HostSamples, SamplesError> {
    let err = |line: Option<u64>, msg: String| SamplesError { path: path.into(), line, msg };
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(r);
    let headers = rdr.headers().map_err(|e| err(Some(1), csv_msg(&e)))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(ts_i), Some(be_i), Some(so_i)) = (col("ts"), col("backend"), col("sockets")) else {
        return Err(err(
            Some(1),
            format!(
                "header must start with ts,backend,sockets (found '{}')",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    };
    let opt_cols = [
        col("hidden"),
        col("close_wait"),
        col("unaccepted"),
        col("accept_queue"),
        col("listen_overflows"),
        col("fd_limit"),
    ];
    let process_i = col("process");
    let container_i = col("container");
    let mut out = HostSamples::default();
    for (i, rec) in rdr.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.map_err(|e| err(Some(line), csv_msg(&e)))?;
        let field = |c: usize| rec.get(c).unwrap_or("");
        let ts: f64 = field(ts_i)
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite() && *t > 0.0)
            .ok_or_else(|| err(Some(line), format!("bad ts '{}' (want Unix seconds)", field(ts_i))))?;
        let spec = BackendSpec::parse(field(be_i))
            .ok_or_else(|| err(Some(line), format!("bad backend '{}' (want ip:port or :port)", field(be_i))))?;
        let sockets: u64 =
            field(so_i).parse().map_err(|_| err(Some(line), format!("bad sockets count '{}'", field(so_i))))?;
        let mut opts = [None; 6];
        for (k, c) in opt_cols.iter().enumerate() {
            if let Some(c) = c {
                let v = field(*c);
                if !v.is_empty() {
                    opts[k] = Some(
                        v.parse()
                            .map_err(|_| err(Some(line), format!("bad value '{}' in column {}", v, &headers[*c])))?,
                    );
                }
            }
        }
        out.push(
            spec,
            Sample {
                ts: (ts * 1e9).round() as Ts,
                sockets,
                hidden: opts[0],
                close_wait: opts[1],
                unaccepted: opts[2],
                accept_queue: opts[3],
                listen_overflows: opts[4],
                fd_limit: opts[5],
                process: process_i.and_then(|c| Comm::new(field(c))),
                container: container_i.and_then(|c| Container::parse(field(c))),
            },
        );
    }
    if out.backends.is_empty() {
        return Err(err(None, "no samples".into()));
    }
    out.sort();
    Ok(out)
}

fn csv_msg(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound => "no such file".into(),
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("hcleak-sockets-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_minimal_and_full_rows() {
        let p = write(
            "ok.csv",
            "ts,backend,sockets\n10.5,127.0.0.1:8080,3\n9.5,127.0.0.1:8080,2\n11,:9000,7\n12,[::1]:8080,1\n",
        );
        let h = read_csv(&p).unwrap();
        let v = h.for_backend("127.0.0.1".parse().unwrap(), 8080).unwrap();
        assert_eq!(v.iter().map(|s| s.sockets).collect::<Vec<_>>(), vec![2, 3], "sorted by time");
        assert_eq!(h.for_backend("10.1.1.1".parse().unwrap(), 9000).unwrap()[0].sockets, 7);
        assert_eq!(h.for_backend("::1".parse().unwrap(), 8080).unwrap()[0].sockets, 1);
        assert!(h.for_backend("127.0.0.1".parse().unwrap(), 1).is_none());
        assert!(h.port_only("10.1.1.1".parse().unwrap(), 9000));
        assert!(!h.port_only("127.0.0.1".parse().unwrap(), 8080));

        let spec = BackendSpec::parse("127.0.0.1:8080").unwrap();
        let s = Sample {
            ts: 1_500_000_000,
            sockets: 4,
            hidden: Some(3),
            close_wait: None,
            unaccepted: Some(2),
            accept_queue: Some(0),
            listen_overflows: None,
            fd_limit: Some(1024),
            process: Comm::new("beam.smp"),
            container: Container::from_cgroup(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod5b1c2d3e_4f50_6172_8394_a5b6c7d8e9f0.slice/cri-containerd-3f0b1a6f5d1e2c3b4a59687766554433221100ffeeddccbbaa99887766554433.scope\n",
            ),
        };
        assert!(s.container.is_some());
        let p = write("full.csv", &format!("{CSV_HEADER}\n{}\n", csv_row(&spec, &s)));
        let h = read_csv(&p).unwrap();
        assert_eq!(h.backends[0].1[0], s);
    }

    #[test]
    fn errors_name_file_and_line() {
        let p = write("bad.csv", "ts,backend,sockets\n1,127.0.0.1:80,x\n");
        let e = read_csv(&p).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("bad sockets count 'x'"), "{e}");
        let p = write("hdr.csv", "time,sockets\n1,2\n");
        assert!(read_csv(&p).unwrap_err().to_string().contains("header must start with ts,backend,sockets"));
        let e = read_csv(Path::new("/no/such/samples.csv")).unwrap_err();
        assert!(e.to_string().contains("no such file"));
    }
}
