//! Source: frames from capture files (pcap, pcapng) through libpcap, merged in time order.
//!
//! A source yields borrowed frames one at a time; a single file is read without copying, several
//! files are merged by timestamp with one reusable buffer per file. Errors are typed so the CLI can
//! say in one line what went wrong and where, and so a damaged file still yields what came before
//! the damage.

use crate::decode::{Link, Ts};
use pcap::{Capture, Offline, Precision};
use std::fmt;
use std::path::{Path, PathBuf};

/// One captured frame, borrowed from the source.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ts: Ts,
    pub link: Link,
    pub data: &'a [u8],
    /// Length on the wire (≥ `data.len()` when the snaplen cut the frame).
    pub wire_len: u32,
}

/// What can go wrong reading captures. Each variant renders as one line naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    Open {
        path: PathBuf,
        msg: String,
    },
    LinkType {
        path: PathBuf,
        dlt: i32,
        name: String,
    },
    Filter {
        expr: String,
        msg: String,
    },
    /// The file stopped being readable after `frames` frames; those were analysed.
    Damaged {
        path: PathBuf,
        frames: u64,
        msg: String,
    },
    Live {
        iface: String,
        msg: String,
    },
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Open { path, msg } => write!(f, "cannot read {}: {}", path.display(), msg),
            SourceError::LinkType { path, dlt, name } => {
                write!(f, "{}: unsupported link type {} ({}); hcleak reads Ethernet, Linux cooked (SLL/SLL2), raw IP and BSD loopback", path.display(), dlt, name)
            }
            SourceError::Filter { expr, msg } => write!(f, "bad filter expression '{}': {}", expr, msg),
            SourceError::Damaged { path, frames, msg } => write!(
                f,
                "{}: capture damaged after {} packets ({}); the packets before it were analysed",
                path.display(),
                frames,
                msg
            ),
            SourceError::Live { iface, msg } => write!(f, "capture on {}: {}", iface, msg),
        }
    }
}

impl std::error::Error for SourceError {}

/// Something that yields frames in time order.
pub trait PacketSource {
    /// The next frame, `Ok(None)` at the end. After an `Err` the source may still have more.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, SourceError>;
    /// Bytes of input consumed so far and in total, for progress display (0 when unknown).
    fn progress(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// libpcap's message, made to fit one line.
pub(crate) fn pcap_msg(e: &pcap::Error) -> String {
    let s = match e {
        pcap::Error::PcapError(s) => s.clone(),
        other => other.to_string(),
    };
    s.replace('\n', " ")
}

/// One capture file.
pub struct FileSource {
    path: PathBuf,
    cap: Capture<Offline>,
    link: Link,
    frames: u64,
    bytes: u64,
    total: u64,
    done: bool,
}

impl FileSource {
    pub fn open(path: &Path, filter: Option<&str>) -> Result<FileSource, SourceError> {
        // libpcap's message for a missing file is fine, but a directory or unreadable file deserves
        // the OS's own words.
        let meta = std::fs::metadata(path).map_err(|e| SourceError::Open { path: path.into(), msg: io_msg(&e) })?;
        if meta.is_dir() {
            return Err(SourceError::Open { path: path.into(), msg: "is a directory".into() });
        }
        let mut cap = Capture::from_file_with_precision(path, Precision::Nano)
            .map_err(|e| SourceError::Open { path: path.into(), msg: open_msg(path, &pcap_msg(&e)) })?;
        let dl = cap.get_datalink();
        let link = Link::from_dlt(dl.0).ok_or_else(|| SourceError::LinkType {
            path: path.into(),
            dlt: dl.0,
            name: dl.get_name().unwrap_or_else(|_| "unknown".into()),
        })?;
        if let Some(expr) = filter {
            cap.filter(expr, true).map_err(|e| SourceError::Filter { expr: expr.to_string(), msg: pcap_msg(&e) })?;
        }
        Ok(FileSource { path: path.into(), cap, link, frames: 0, bytes: 24, total: meta.len(), done: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn open_msg(path: &Path, msg: &str) -> String {
    // libpcap prefixes some messages with the path; keep the line short.
    let p = path.display().to_string();
    let m = msg.strip_prefix(&format!("{p}: ")).unwrap_or(msg);
    if m.contains("unknown file format") || m.contains("bad dump file format") {
        format!("not a pcap or pcapng capture ({m})")
    } else {
        m.to_string()
    }
}

impl PacketSource for FileSource {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, SourceError> {
        if self.done {
            return Ok(None);
        }
        match self.cap.next_packet() {
            Ok(p) => {
                self.frames += 1;
                self.bytes += 16 + u64::from(p.header.caplen);
                // time_t and suseconds_t are not i64 everywhere.
                #[allow(clippy::unnecessary_cast)]
                let ts = (p.header.ts.tv_sec as i64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(p.header.ts.tv_usec as i64);
                Ok(Some(Frame { ts, link: self.link, data: p.data, wire_len: p.header.len }))
            }
            Err(pcap::Error::NoMorePackets) => {
                self.done = true;
                self.bytes = self.total;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(SourceError::Damaged { path: self.path.clone(), frames: self.frames, msg: pcap_msg(&e) })
            }
        }
    }

    fn progress(&self) -> (u64, u64) {
        (self.bytes.min(self.total), self.total)
    }
}

/// Several files merged by timestamp. Each file's head frame is copied into its own buffer.
pub struct MergedSource {
    files: Vec<FileSource>,
    heads: Vec<Option<Head>>,
    refill: Option<usize>,
    primed: bool,
}

struct Head {
    ts: Ts,
    link: Link,
    wire_len: u32,
    data: Vec<u8>,
}

impl MergedSource {
    pub fn new(files: Vec<FileSource>) -> Self {
        let n = files.len();
        MergedSource { files, heads: (0..n).map(|_| None).collect(), refill: None, primed: false }
    }

    fn load(&mut self, i: usize) -> Result<(), SourceError> {
        let mut buf = self.heads[i].take().map(|h| h.data).unwrap_or_default();
        match self.files[i].next_frame() {
            Ok(Some(f)) => {
                buf.clear();
                buf.extend_from_slice(f.data);
                self.heads[i] = Some(Head { ts: f.ts, link: f.link, wire_len: f.wire_len, data: buf });
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl PacketSource for MergedSource {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, SourceError> {
        if !self.primed {
            self.primed = true;
            let mut first_err = None;
            for i in 0..self.files.len() {
                if let Err(e) = self.load(i) {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        if let Some(i) = self.refill.take() {
            self.load(i)?;
        }
        let best =
            self.heads.iter().enumerate().filter_map(|(i, h)| h.as_ref().map(|h| (h.ts, i))).min().map(|(_, i)| i);
        let Some(i) = best else { return Ok(None) };
        self.refill = Some(i);
        let h = self.heads[i].as_ref().expect("chosen head exists");
        Ok(Some(Frame { ts: h.ts, link: h.link, data: &h.data, wire_len: h.wire_len }))
    }

    fn progress(&self) -> (u64, u64) {
        self.files.iter().fold((0, 0), |(a, b), f| {
            let (x, y) = f.progress();
            (a + x, b + y)
        })
    }
}

/// Opens one or several capture files as a single time-ordered source.
pub fn open_files(paths: &[PathBuf], filter: Option<&str>) -> Result<Box<dyn PacketSource>, SourceError> {
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        files.push(FileSource::open(p, filter)?);
    }
    if files.len() == 1 {
        Ok(Box::new(files.pop().expect("one file")))
    } else {
        Ok(Box::new(MergedSource::new(files)))
    }
}
