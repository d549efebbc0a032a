//! Source: frames from capture files (pcap, pcapng) through libpcap, merged in time order.
//!
//! A source yields borrowed frames one at a time; a single file is read without copying, several
//! files are merged by timestamp with one reusable buffer per file. Errors are typed so the CLI can
//! say in one line what went wrong and where, and so a damaged file still yields what came before
//! the damage.

use crate::decode::{Link, Ts};
use pcap::{Capture, Offline};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

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
            SourceError::Damaged { path, frames: 0, msg } => {
                write!(
                    f,
                    "{}: capture damaged at its first packet ({}); nothing in it could be analysed",
                    path.display(),
                    msg
                )
            }
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

/// What a source has next.
#[derive(Debug)]
pub enum Next<'a> {
    Frame(Frame<'a>),
    /// Nothing arrived for a while (live capture): a chance to refresh, sample, or stop.
    Idle,
    End,
}

/// What a source has after a run of frames (see [`PacketSource::next_frames`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Possibly more frames.
    More,
    /// Nothing arrived for a while (live capture).
    Idle,
    End,
}

/// Something that yields frames in time order.
pub trait PacketSource {
    /// The next frame. After an `Err` the source may still have more.
    fn next_frame(&mut self) -> Result<Next<'_>, SourceError>;

    /// Up to `max` frames, each handed to `each` in order, then what follows them. An `Err` comes
    /// after the frames read before it; the source may still have more. The same frames as
    /// [`next_frame`](Self::next_frame) gives; a file overrides this with libpcap's own loop.
    fn next_frames(&mut self, max: usize, each: &mut dyn FnMut(Frame<'_>)) -> Result<After, SourceError> {
        for _ in 0..max {
            match self.next_frame()? {
                Next::Frame(f) => each(f),
                Next::Idle => return Ok(After::Idle),
                Next::End => return Ok(After::End),
            }
        }
        Ok(After::More)
    }
    /// Bytes of input consumed so far and in total, for progress display (0 when unknown).
    fn progress(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// A record's time in nanoseconds (the handles are opened with nanosecond precision).
#[inline]
fn packet_ts(h: &pcap::PacketHeader) -> Ts {
    // time_t and suseconds_t are not i64 everywhere.
    #[allow(clippy::unnecessary_cast)]
    (h.ts.tv_sec as i64).saturating_mul(1_000_000_000).saturating_add(h.ts.tv_usec as i64)
}

/// libpcap's message, made to fit one line.
pub(crate) fn pcap_msg(e: &pcap::Error) -> String {
    let s = match e {
        pcap::Error::PcapError(s) => s.clone(),
        other => other.to_string(),
    };
    s.replace('\n', " ")
}

/// The stdio buffer a capture file is read through. libpcap reads a savefile with two `fread`s
/// per record, and glibc gives a regular file a 4 KiB buffer: one read(2) every ~40 records at
/// snaplen 96, a quarter of the time libpcap takes to read it. 64 KiB cuts those calls 16-fold; larger buffers
/// stop fitting the cache beside the batches and were slower (benches/README.md).
pub const READ_BUFFER: usize = 64 * 1024;

// The `pcap` crate opens files by name only, which leaves stdio's default buffer; this entry point
// of the same libpcap takes a FILE we have already given a buffer.
#[link(name = "pcap")]
extern "C" {
    fn pcap_fopen_offline_with_tstamp_precision(
        fp: *mut libc::FILE,
        precision: c_uint,
        errbuf: *mut c_char,
    ) -> *mut c_void;
}

// glibc locks a FILE on every fread once the process has a second thread (libpcap does two per
// record). Only one thread at a time reads this FILE, so it is told not to (measured: 39
// instructions a record).
extern "C" {
    fn __fsetlocking(fp: *mut libc::FILE, kind: c_int) -> c_int;
}
const FSETLOCKING_BYCALLER: c_int = 2;

/// libpcap's PCAP_TSTAMP_PRECISION_NANO: time stamps in nanoseconds whatever the file holds.
const PRECISION_NANO: c_uint = 1;

/// An offline libpcap handle and the stdio buffer it reads through. The handle is not handed
/// out: moved away from its buffer, it would read freed memory.
pub struct OfflineCapture {
    // Field order is drop order: the handle (whose pcap_close fcloses the FILE) goes first, then
    // the buffer the FILE was using.
    cap: Capture<Offline>,
    _stdio: Option<Box<[u8]>>,
}

impl OfflineCapture {
    pub fn get_datalink(&self) -> pcap::Linktype {
        self.cap.get_datalink()
    }

    pub fn filter(&mut self, expr: &str) -> Result<(), pcap::Error> {
        self.cap.filter(expr, true)
    }

    #[inline]
    pub fn next_packet(&mut self) -> Result<pcap::Packet<'_>, pcap::Error> {
        self.cap.next_packet()
    }

    /// Up to `max` (≥ 1) packets through libpcap's own loop; how many, 0 at the end of the file.
    #[inline]
    pub fn dispatch(&mut self, max: usize, each: impl FnMut(pcap::Packet<'_>)) -> Result<usize, pcap::Error> {
        self.cap.dispatch(Some(max.max(1)), each)
    }
}

/// Opens a pcap or pcapng file through libpcap with a `buffer`-byte stdio buffer (0: stdio's
/// default), time stamps in nanoseconds. The error is libpcap's or the OS's message.
#[allow(unsafe_code)]
pub fn open_offline(path: &Path, buffer: usize) -> Result<OfflineCapture, String> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| "the path holds a NUL byte".to_string())?;
    // SAFETY: plain C calls on a FILE this function owns until libpcap takes it. On success the
    // handle owns the FILE and closes it when dropped, before the buffer (see OfflineCapture); on
    // failure libpcap leaves the FILE to us and we close it.
    unsafe {
        let fp = libc::fopen(cpath.as_ptr(), c"rb".as_ptr());
        if fp.is_null() {
            return Err(io_msg(&std::io::Error::last_os_error()));
        }
        __fsetlocking(fp, FSETLOCKING_BYCALLER);
        let mut stdio = (buffer > 0).then(|| vec![0u8; buffer].into_boxed_slice());
        if let Some(b) = stdio.as_mut() {
            if libc::setvbuf(fp, b.as_mut_ptr().cast(), libc::_IOFBF, b.len()) != 0 {
                stdio = None; // stdio keeps its own buffer; slower, not wrong
            }
        }
        let mut errbuf = [0 as c_char; 257]; // PCAP_ERRBUF_SIZE is 256
        let handle = pcap_fopen_offline_with_tstamp_precision(fp, PRECISION_NANO, errbuf.as_mut_ptr());
        match NonNull::new(handle.cast()) {
            Some(h) => Ok(OfflineCapture { cap: Capture::from(h), _stdio: stdio }),
            None => {
                libc::fclose(fp);
                Err(CStr::from_ptr(errbuf.as_ptr()).to_string_lossy().into_owned())
            }
        }
    }
}

/// One capture file.
pub struct FileSource {
    cap: OfflineCapture,
    link: Link,
    read: Tally,
}

/// How far a file has been read (kept apart from the handle, so frames borrowed from the handle
/// can be counted).
struct Tally {
    path: PathBuf,
    frames: u64,
    bytes: u64,
    total: u64,
    done: bool,
}

impl Tally {
    /// A record read: counted (its 16-byte header and its data) and made a frame.
    #[inline(always)]
    fn count<'p>(&mut self, link: Link, p: &pcap::Packet<'p>) -> Frame<'p> {
        self.frames += 1;
        self.bytes += 16 + u64::from(p.header.caplen);
        Frame { ts: packet_ts(p.header), link, data: p.data, wire_len: p.header.len }
    }

    /// The file is over: at its end, or at damage (reported with the count read before it).
    fn stop(&mut self, e: pcap::Error) -> Result<(), SourceError> {
        self.done = true;
        match e {
            pcap::Error::NoMorePackets => {
                self.bytes = self.total;
                Ok(())
            }
            e => Err(SourceError::Damaged { path: self.path.clone(), frames: self.frames, msg: pcap_msg(&e) }),
        }
    }
}

impl FileSource {
    pub fn open(path: &Path, filter: Option<&str>) -> Result<FileSource, SourceError> {
        // libpcap's message for a missing file is fine, but a directory or unreadable file deserves
        // the OS's own words.
        let meta = std::fs::metadata(path).map_err(|e| SourceError::Open { path: path.into(), msg: io_msg(&e) })?;
        if meta.is_dir() {
            return Err(SourceError::Open { path: path.into(), msg: "is a directory".into() });
        }
        if meta.len() == 0 {
            return Err(SourceError::Open { path: path.into(), msg: "empty file, not a capture".into() });
        }
        let mut cap = open_offline(path, READ_BUFFER)
            .map_err(|e| SourceError::Open { path: path.into(), msg: open_msg(path, &e) })?;
        let dl = cap.get_datalink();
        let link = Link::from_dlt(dl.0).ok_or_else(|| SourceError::LinkType {
            path: path.into(),
            dlt: dl.0,
            name: dl.get_name().unwrap_or_else(|_| "unknown".into()),
        })?;
        if let Some(expr) = filter {
            cap.filter(expr).map_err(|e| SourceError::Filter { expr: expr.to_string(), msg: pcap_msg(&e) })?;
        }
        Ok(FileSource {
            cap,
            link,
            read: Tally { path: path.into(), frames: 0, bytes: 24, total: meta.len(), done: false },
        })
    }

    pub fn path(&self) -> &Path {
        &self.read.path
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
    fn next_frame(&mut self) -> Result<Next<'_>, SourceError> {
        if self.read.done {
            return Ok(Next::End);
        }
        match self.cap.next_packet() {
            Ok(p) => Ok(Next::Frame(self.read.count(self.link, &p))),
            Err(e) => self.read.stop(e).map(|()| Next::End),
        }
    }

    /// libpcap's `pcap_dispatch`: one call reads `max` records and calls back for each, which
    /// skips `pcap_next_ex`'s per-record set-up and this trait's per-frame return.
    fn next_frames(&mut self, max: usize, each: &mut dyn FnMut(Frame<'_>)) -> Result<After, SourceError> {
        if self.read.done {
            return Ok(After::End);
        }
        if max == 0 {
            return Ok(After::More);
        }
        let (read, link) = (&mut self.read, self.link);
        match self.cap.dispatch(max, |p| each(read.count(link, &p))) {
            // A file's dispatch returns 0 only at its end (filtered-out records do not count).
            Ok(0) => self.read.stop(pcap::Error::NoMorePackets).map(|()| After::End),
            Ok(_) => Ok(After::More),
            Err(e) => self.read.stop(e).map(|()| After::End),
        }
    }

    fn progress(&self) -> (u64, u64) {
        (self.read.bytes.min(self.read.total), self.read.total)
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
            Ok(Next::Frame(f)) => {
                buf.clear();
                buf.extend_from_slice(f.data);
                self.heads[i] = Some(Head { ts: f.ts, link: f.link, wire_len: f.wire_len, data: buf });
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl PacketSource for MergedSource {
    fn next_frame(&mut self) -> Result<Next<'_>, SourceError> {
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
        let Some(i) = best else { return Ok(Next::End) };
        self.refill = Some(i);
        let h = self.heads[i].as_ref().expect("chosen head exists");
        Ok(Next::Frame(Frame { ts: h.ts, link: h.link, data: &h.data, wire_len: h.wire_len }))
    }

    fn progress(&self) -> (u64, u64) {
        self.files.iter().fold((0, 0), |(a, b), f| {
            let (x, y) = f.progress();
            (a + x, b + y)
        })
    }
}

/// Opens one or several capture files as a single time-ordered source.
pub fn open_files(paths: &[PathBuf], filter: Option<&str>) -> Result<Box<dyn PacketSource + Send>, SourceError> {
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

/// Options for a live capture, with tcpdump's habits.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub iface: String,
    pub filter: Option<String>,
    pub snaplen: i32,
    /// Kernel buffer (the packet ring) in bytes: big enough that a burst does not overflow
    /// between reads.
    pub buffer: i32,
    /// Promiscuous mode (tcpdump's default; `-p` turns it off).
    pub promisc: bool,
}

/// libpcap's packet-buffer timeout. Without immediate mode libpcap uses TPACKET_V3 on Linux:
/// the kernel packs packets into blocks by their real size (a 32 MiB ring then holds tens of
/// thousands of packets, not the 128 it holds as 262 144-byte immediate-mode frames) and hands a
/// block over when it is full or this old. 25 ms keeps delivery prompt.
pub const BUFFER_TIMEOUT_MS: u16 = 25;

/// How long an idle interface keeps the reader waiting before it hands control back.
const IDLE_WAIT_MS: u16 = 50;

/// When a live capture stops taking packets: a flag (SIGINT, SIGTERM, a closed output), a
/// deadline (`--duration`), a packet count (`-c`).
#[derive(Clone, Debug, Default)]
pub struct StopWhen {
    pub flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub deadline: Option<std::time::Instant>,
    pub count: Option<u64>,
}

/// What the reading side of a live capture has seen, kept apart from the libpcap handle so the
/// per-packet callback can update it while the handle is borrowed.
struct LiveState {
    link: Link,
    save: Option<PcapWriter>,
    since_flush: u32,
    /// The last read found nothing: wait on the descriptor before reading again.
    drained: bool,
    since_stats: u32,
    stop: StopWhen,
    /// Frames taken so far.
    frames: u64,
    /// Set at the stop: frames stamped up to this time are still taken (the kernel held them
    /// already), the first one after it ends the capture.
    stop_ts: Option<Ts>,
    /// Nothing more will be taken.
    done: bool,
}

impl LiveState {
    /// Takes a packet unless it came after the stop or past the count; writes it to `-w`.
    #[inline(always)]
    fn take<'p>(&mut self, p: &pcap::Packet<'p>) -> Option<Frame<'p>> {
        if self.done {
            return None;
        }
        let ts = packet_ts(p.header);
        if self.stop_ts.is_some_and(|s| ts > s) {
            self.done = true;
            return None;
        }
        self.frames += 1;
        if self.stop.count.is_some_and(|n| self.frames >= n) {
            self.done = true;
        }
        self.since_stats += 1;
        if let Some(s) = &mut self.save {
            s.write(p.header, p.data);
            self.since_flush += 1;
            if self.since_flush >= 1024 {
                // Keep the file complete up to a recent packet even if we are killed.
                let _ = s.flush();
                self.since_flush = 0;
            }
        }
        Some(Frame { ts, link: self.link, data: p.data, wire_len: p.header.len })
    }

    /// Checks the stop conditions: after the first, only what the kernel already holds is read.
    fn check_stop(&mut self) {
        if self.stop_ts.is_none()
            && (self.stop.flag.load(std::sync::atomic::Ordering::Relaxed)
                || self.stop.deadline.is_some_and(|d| std::time::Instant::now() >= d))
        {
            self.stop_ts = Some(now_ts());
        }
        if self.stop.count.is_some_and(|n| self.frames >= n) {
            self.done = true;
        }
    }

    /// A quiet moment: make the file on disk complete up to now.
    fn quiet(&mut self) {
        self.drained = true;
        if let (Some(s), true) = (&mut self.save, self.since_flush > 0) {
            let _ = s.flush();
            self.since_flush = 0;
        }
    }
}

/// Wall-clock now in nanoseconds, the clock the kernel stamps live packets with.
fn now_ts() -> Ts {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as Ts)
}

/// The raw packets written as a pcap file (nanosecond timestamps), to an already open file or
/// standard output: the caller decides how the file is created (see `output`). One 16-byte record
/// header and the packet bytes per packet, through a buffer: nothing is allocated per packet.
pub struct PcapWriter {
    out: std::io::BufWriter<std::fs::File>,
    /// The first write error; the rest are skipped and this is reported at the next flush.
    err: Option<std::io::Error>,
}

impl PcapWriter {
    /// Writes the global header for `dlt` (libpcap's link type) and `snaplen`.
    pub fn new(file: std::fs::File, dlt: i32, snaplen: i32) -> std::io::Result<PcapWriter> {
        use std::io::Write;
        // The file format's LINKTYPE_ numbers equal the DLT_ ones except for raw IP.
        let linktype: u32 = match dlt {
            12 | 14 => 101,
            d => d as u32,
        };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_3c4du32.to_ne_bytes());
        h[4..6].copy_from_slice(&2u16.to_ne_bytes());
        h[6..8].copy_from_slice(&4u16.to_ne_bytes());
        h[16..20].copy_from_slice(&(snaplen as u32).to_ne_bytes());
        h[20..24].copy_from_slice(&linktype.to_ne_bytes());
        let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
        out.write_all(&h)?;
        Ok(PcapWriter { out, err: None })
    }

    fn write(&mut self, h: &pcap::PacketHeader, data: &[u8]) {
        use std::io::Write;
        if self.err.is_some() {
            return;
        }
        let mut r = [0u8; 16];
        r[0..4].copy_from_slice(&(h.ts.tv_sec as u32).to_ne_bytes());
        r[4..8].copy_from_slice(&(h.ts.tv_usec as u32).to_ne_bytes());
        r[8..12].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        r[12..16].copy_from_slice(&h.len.to_ne_bytes());
        if let Err(e) = self.out.write_all(&r).and_then(|_| self.out.write_all(data)) {
            self.err = Some(e);
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        if self.err.is_none() {
            if let Err(e) = self.out.flush() {
                self.err = Some(e);
            }
        }
        match &self.err {
            // Kept: the idle-time flushes ignore errors, the final one must still see it.
            Some(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }
}

/// Counters from the kernel at the end of a live capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropStats {
    pub received: u32,
    pub dropped_kernel: u32,
    pub dropped_iface: u32,
}

/// A live interface through libpcap: a TPACKET_V3 ring (see [`BUFFER_TIMEOUT_MS`]), read
/// without blocking behind our own poll, so that an idle interface still hands control back (to
/// refresh, sample, or stop). Once told to stop (see [`StopWhen`]) it takes no new packets but
/// reads what the kernel already holds, then ends.
pub struct LiveSource {
    iface: String,
    cap: Capture<pcap::Active>,
    dlt: i32,
    snaplen: i32,
    st: LiveState,
    /// The kernel's counters, refreshed at quiet moments and every few thousand packets, for
    /// whoever reports while the capture runs (the live view, metrics).
    counters: std::sync::Arc<std::sync::Mutex<Option<DropStats>>>,
}

impl LiveSource {
    /// Opens the interface (this is what needs `CAP_NET_RAW`).
    pub fn open(o: &LiveOptions) -> Result<LiveSource, SourceError> {
        let err = |msg: String| SourceError::Live { iface: o.iface.clone(), msg };
        let inactive = Capture::from_device(o.iface.as_str()).map_err(|e| err(live_msg(&pcap_msg(&e))))?;
        let mut cap = inactive
            .promisc(o.promisc)
            .snaplen(o.snaplen)
            .buffer_size(o.buffer)
            .timeout(i32::from(BUFFER_TIMEOUT_MS))
            .precision(pcap::Precision::Nano)
            .open()
            .map_err(|e| err(live_msg(&pcap_msg(&e))))?;
        let dl = cap.get_datalink();
        let link = Link::from_dlt(dl.0).ok_or_else(|| {
            err(format!("unsupported link type {} ({})", dl.0, dl.get_name().unwrap_or_else(|_| "unknown".into())))
        })?;
        if let Some(expr) = &o.filter {
            cap.filter(expr, true).map_err(|e| SourceError::Filter { expr: expr.clone(), msg: pcap_msg(&e) })?;
        }
        // Non-blocking reads plus our own poll with a timeout: with TPACKET_V3 a blocking read on
        // an idle interface never returns, and then nothing could stop or refresh the capture.
        let cap = cap.setnonblock().map_err(|e| err(pcap_msg(&e)))?;
        Ok(LiveSource {
            iface: o.iface.clone(),
            cap,
            dlt: dl.0,
            snaplen: o.snaplen,
            st: LiveState {
                link,
                save: None,
                since_flush: 0,
                drained: false,
                since_stats: 0,
                stop: StopWhen::default(),
                frames: 0,
                stop_ts: None,
                done: false,
            },
            counters: Default::default(),
        })
    }

    /// libpcap's name for the link type (`EN10MB`), for the start-up line.
    pub fn link_name(&self) -> String {
        self.cap.get_datalink().get_name().unwrap_or_else(|_| self.dlt.to_string())
    }

    /// When to stop taking packets (default: never).
    pub fn stop_when(&mut self, s: StopWhen) {
        self.st.stop = s;
    }

    /// From now on, every packet read is also written to `file` as pcap (its header first).
    pub fn write_to(&mut self, file: std::fs::File) -> Result<(), SourceError> {
        let w = PcapWriter::new(file, self.dlt, self.snaplen)
            .map_err(|e| SourceError::Live { iface: self.iface.clone(), msg: format!("writing the capture: {e}") })?;
        self.st.save = Some(w);
        Ok(())
    }

    /// A handle on the kernel counters that stays current while the capture runs.
    pub fn counters(&self) -> std::sync::Arc<std::sync::Mutex<Option<DropStats>>> {
        std::sync::Arc::clone(&self.counters)
    }

    fn refresh_counters(&mut self) {
        let d = self.drops();
        if let Ok(mut c) = self.counters.lock() {
            *c = d;
        }
        self.st.since_stats = 0;
    }

    pub fn drops(&mut self) -> Option<DropStats> {
        self.cap.stats().ok().map(|s| DropStats {
            received: s.received,
            dropped_kernel: s.dropped,
            dropped_iface: s.if_dropped,
        })
    }

    /// Flushes the pcap being written, so the file is complete up to now.
    pub fn flush(&mut self) -> Result<(), SourceError> {
        if let Some(s) = &mut self.st.save {
            s.flush().map_err(|e| SourceError::Live {
                iface: self.iface.clone(),
                msg: format!("writing the capture: {e}"),
            })?;
        }
        self.st.since_flush = 0;
        Ok(())
    }

    /// What comes before a read: counters, the stop, and (after an empty read) a wait on the
    /// descriptor. `Some` when there is nothing to read now.
    fn before_read(&mut self) -> Result<Option<After>, SourceError> {
        if self.st.since_stats >= 4096 || (self.st.drained && self.st.since_stats > 0) {
            self.refresh_counters();
        }
        self.st.check_stop();
        if self.st.done {
            self.refresh_counters();
            return Ok(Some(After::End));
        }
        if self.st.drained {
            self.st.drained = false;
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            // Stopping: the kernel hands over its last, partly filled block within one buffer
            // timeout; nothing by then means everything it held has been read.
            let wait = if self.st.stop_ts.is_some() { BUFFER_TIMEOUT_MS * 2 } else { IDLE_WAIT_MS };
            let mut fds = [PollFd::new(self.cap.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(wait)) {
                Ok(0) if self.st.stop_ts.is_some() => {
                    self.st.done = true;
                    self.refresh_counters();
                    return Ok(Some(After::End));
                }
                Ok(0) => return Ok(Some(After::Idle)),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(SourceError::Live { iface: self.iface.clone(), msg: format!("poll: {e}") }),
            }
        }
        Ok(None)
    }
}

/// libpcap's permission message, made actionable.
fn live_msg(m: &str) -> String {
    if m.contains("Operation not permitted") || m.contains("ermission") {
        format!(
            "permission denied ({m}): capturing needs CAP_NET_RAW — run as root, or grant it once with `sudo setcap cap_net_raw,cap_net_admin=eip $(command -v hcleak)`"
        )
    } else if m.contains("No such device") || m.contains("doesn't exist") {
        format!("no such interface ({m}); `hcleak capture -D` lists them")
    } else {
        m.to_string()
    }
}

impl PacketSource for LiveSource {
    fn next_frame(&mut self) -> Result<Next<'_>, SourceError> {
        match self.before_read()? {
            Some(After::End) => return Ok(Next::End),
            Some(_) => return Ok(Next::Idle),
            None => {}
        }
        match self.cap.next_packet() {
            // Nothing taken: the packet came after the stop, or past the count.
            Ok(p) => Ok(self.st.take(&p).map_or(Next::End, Next::Frame)),
            Err(pcap::Error::TimeoutExpired) => {
                // While stopping, the next call waits for the kernel's last block, then ends.
                self.st.quiet();
                Ok(Next::Idle)
            }
            Err(pcap::Error::NoMorePackets) => Ok(Next::End),
            Err(e) => Err(SourceError::Live { iface: self.iface.clone(), msg: pcap_msg(&e) }),
        }
    }

    /// libpcap's `pcap_dispatch`: all the packets of the ring's ready blocks, up to `max`, in
    /// one call.
    fn next_frames(&mut self, max: usize, each: &mut dyn FnMut(Frame<'_>)) -> Result<After, SourceError> {
        if let Some(a) = self.before_read()? {
            return Ok(a);
        }
        let st = &mut self.st;
        let left = st.stop.count.map_or(max, |n| (n.saturating_sub(st.frames)).min(max as u64) as usize);
        match self.cap.dispatch(Some(left.max(1)), |p| {
            if let Some(f) = st.take(&p) {
                each(f)
            }
        }) {
            Ok(0) => {
                self.st.quiet();
                // While stopping, an empty ring is not the end yet: the last block may come.
                Ok(if self.st.stop_ts.is_some() { After::More } else { After::Idle })
            }
            Ok(_) => Ok(After::More),
            Err(pcap::Error::NoMorePackets) => Ok(After::End),
            Err(e) => Err(SourceError::Live { iface: self.iface.clone(), msg: pcap_msg(&e) }),
        }
    }
}

/// Interfaces libpcap can open, with their descriptions, for `hcleak capture -D`.
pub fn list_interfaces() -> Result<Vec<(String, Option<String>)>, SourceError> {
    pcap::Device::list()
        .map(|v| v.into_iter().map(|d| (d.name, d.desc)).collect())
        .map_err(|e| SourceError::Live { iface: "any".into(), msg: pcap_msg(&e) })
}

/// This host's addresses (from libpcap's interface list), to tell local backends from remote ones.
pub fn local_addresses() -> std::collections::HashSet<std::net::IpAddr> {
    pcap::Device::list()
        .map(|v| v.into_iter().flat_map(|d| d.addresses.into_iter().map(|a| a.addr)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
    }

    /// A record as (seconds, nanoseconds, wire length, bytes).
    type Record = (i64, i64, u32, Vec<u8>);

    fn records(mut next: impl FnMut() -> Result<Option<Record>, pcap::Error>) -> Vec<Record> {
        let mut v = Vec::new();
        while let Some(r) = next().expect("readable fixture") {
            v.push(r);
        }
        v
    }

    fn own(p: Result<pcap::Packet<'_>, pcap::Error>) -> Result<Option<Record>, pcap::Error> {
        #[allow(clippy::unnecessary_cast)]
        match p {
            Ok(p) => Ok(Some((p.header.ts.tv_sec as i64, p.header.ts.tv_usec as i64, p.header.len, p.data.to_vec()))),
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => Err(e),
        }
    }

    #[test]
    fn the_larger_stdio_buffer_reads_the_same_records_as_libpcaps_own_open() {
        // pcap and pcapng, several link types; buffers smaller and larger than the files.
        for name in ["lo-basic.pcap", "lo-basic.pcapng", "any-sll2.pcap", "ipv6-lo.pcap"] {
            let path = fixture(name);
            let mut plain = Capture::from_file_with_precision(&path, pcap::Precision::Nano).expect("opens");
            let want = records(|| own(plain.next_packet()));
            assert!(want.len() > 10, "{name}: {} records", want.len());
            for buffer in [0, 512, READ_BUFFER] {
                let mut ours = open_offline(&path, buffer).expect("opens");
                assert_eq!(ours.get_datalink(), plain.get_datalink(), "{name}");
                assert!(records(|| own(ours.next_packet())) == want, "{name} with a {buffer}-byte buffer");
            }
        }
    }

    /// Everything a file source yields through `next_frame`: frames as (ns, link, wire length,
    /// bytes), then the error if any, and the progress at the end.
    type Yield = (Vec<(Ts, Link, u32, Vec<u8>)>, Option<SourceError>, (u64, u64));

    fn one_by_one(path: &Path, filter: Option<&str>) -> Yield {
        let mut src = FileSource::open(path, filter).expect("opens");
        let mut frames = Vec::new();
        let err = loop {
            match src.next_frame() {
                Ok(Next::Frame(f)) => frames.push((f.ts, f.link, f.wire_len, f.data.to_vec())),
                Ok(Next::End) => break None,
                Ok(Next::Idle) => panic!("a file is never idle"),
                Err(e) => break Some(e),
            }
        };
        (frames, err, src.progress())
    }

    fn in_runs(path: &Path, filter: Option<&str>, max: usize) -> Yield {
        let mut src = FileSource::open(path, filter).expect("opens");
        let mut frames = Vec::new();
        let err = loop {
            match src.next_frames(max, &mut |f| frames.push((f.ts, f.link, f.wire_len, f.data.to_vec()))) {
                Ok(After::More) => {}
                Ok(After::End) => break None,
                Ok(After::Idle) => panic!("a file is never idle"),
                Err(e) => break Some(e),
            }
        };
        assert!(matches!(src.next_frames(max, &mut |_| panic!("frame after the end")), Ok(After::End)));
        (frames, err, src.progress())
    }

    #[test]
    fn libpcaps_batch_loop_yields_what_the_record_loop_yields() {
        // A file cut in the middle of a record: the frames before the cut, then the same error.
        let whole = std::fs::read(fixture("lo-basic.pcap")).expect("fixture");
        let cut = std::env::temp_dir().join(format!("hcleak-cut-{}.pcap", std::process::id()));
        std::fs::write(&cut, &whole[..whole.len() * 2 / 3]).expect("temp file");
        let cases: [(PathBuf, Option<&str>); 5] = [
            (fixture("lo-basic.pcap"), None),
            (fixture("lo-basic.pcapng"), None),
            (fixture("any-sll2.pcap"), Some("tcp[tcpflags] & tcp-rst != 0")),
            (fixture("ipv6-lo.pcap"), None),
            (cut.clone(), None),
        ];
        for (path, filter) in &cases {
            let want = one_by_one(path, *filter);
            assert!(!want.0.is_empty(), "{}", path.display());
            for max in [1, 7, 4096] {
                assert!(in_runs(path, *filter, max) == want, "{} {filter:?} in runs of {max}", path.display());
            }
        }
        let (frames, err, _) = one_by_one(&cut, None);
        assert!(matches!(err, Some(SourceError::Damaged { frames: n, .. }) if n == frames.len() as u64), "{err:?}");
        std::fs::remove_file(&cut).ok();
    }

    #[test]
    fn open_offline_says_what_is_wrong() {
        let missing = open_offline(&fixture("no-such.pcap"), READ_BUFFER).err();
        assert_eq!(missing.as_deref(), Some("no such file"));
        let text = open_offline(&fixture("README.md"), READ_BUFFER).err().expect("not a capture");
        assert!(text.contains("unknown file format"), "{text}");
    }

    /// The pcap written by a live capture is one libpcap reads back, record for record.
    #[test]
    fn pcap_writer_output_reads_back_through_libpcap() {
        let p = std::env::temp_dir().join(format!("hcleak-pcapwriter-{}.pcap", std::process::id()));
        let mut w = PcapWriter::new(std::fs::File::create(&p).unwrap(), 1, 96).unwrap();
        let frame = [0xabu8; 60];
        for i in 0..3i64 {
            let h = pcap::PacketHeader {
                ts: libc::timeval { tv_sec: 1_700_000_000 + i, tv_usec: 123_456_789 },
                caplen: 60,
                len: 1500,
            };
            w.write(&h, &frame);
        }
        w.flush().unwrap();
        let mut cap = pcap::Capture::from_file_with_precision(&p, pcap::Precision::Nano).unwrap();
        assert_eq!(cap.get_datalink().0, 1);
        let mut n = 0;
        while let Ok(pk) = cap.next_packet() {
            assert_eq!((pk.header.ts.tv_sec, pk.header.ts.tv_usec), (1_700_000_000 + n, 123_456_789));
            assert_eq!((pk.header.caplen, pk.header.len, pk.data), (60, 1500, &frame[..]));
            n += 1;
        }
        assert_eq!(n, 3);
        let _ = std::fs::remove_file(&p);
    }

    fn state(count: Option<u64>) -> LiveState {
        LiveState {
            link: Link::Ethernet,
            save: None,
            since_flush: 0,
            drained: false,
            since_stats: 0,
            stop: StopWhen { count, ..StopWhen::default() },
            frames: 0,
            stop_ts: None,
            done: false,
        }
    }

    fn header(ns: i64) -> pcap::PacketHeader {
        pcap::PacketHeader {
            ts: libc::timeval { tv_sec: ns / 1_000_000_000, tv_usec: ns % 1_000_000_000 },
            caplen: 60,
            len: 60,
        }
    }

    /// Taken or not, for packets stamped at these times (ns).
    fn takes(st: &mut LiveState, times: &[i64]) -> Vec<bool> {
        let data = [0u8; 60];
        times
            .iter()
            .map(|&t| {
                let h = header(t);
                st.take(&pcap::Packet::new(&h, &data)).is_some()
            })
            .collect()
    }

    #[test]
    fn after_a_stop_packets_stamped_before_it_are_taken_and_the_first_later_one_ends_the_capture() {
        let mut st = state(None);
        assert_eq!(takes(&mut st, &[10, 20]), [true, true]);
        // The stop at t = 25: what the kernel stamped before it is still read from the ring.
        st.stop_ts = Some(25);
        assert_eq!(takes(&mut st, &[21, 25, 26, 22]), [true, true, false, false]);
        assert!(st.done);
        assert_eq!(st.frames, 4);
    }

    #[test]
    fn a_count_takes_exactly_that_many() {
        let mut st = state(Some(3));
        assert_eq!(takes(&mut st, &[1, 2, 3, 4, 5]), [true, true, true, false, false]);
        assert!(st.done);
        // The stop flag is read at the next check: nothing more either way.
        st.check_stop();
        assert!(st.done && st.frames == 3);
    }

    #[test]
    fn the_stop_flag_and_the_deadline_fix_the_stop_time_once() {
        let mut st = state(None);
        st.check_stop();
        assert_eq!(st.stop_ts, None);
        st.stop.deadline = Some(std::time::Instant::now());
        st.check_stop();
        let first = st.stop_ts.expect("deadline passed");
        assert!((first - now_ts()).abs() < 5_000_000_000);
        st.stop.flag.store(true, std::sync::atomic::Ordering::Relaxed);
        st.check_stop();
        assert_eq!(st.stop_ts, Some(first), "a later check does not move the stop");
        assert!(!st.done, "stopping is not the end: the ring is drained first");
    }
}
