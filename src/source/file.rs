//! Capture files: pcap and pcapng through libpcap, merged in time order.
//!
//! A single file is read without copying, several files are merged by timestamp with one reusable
//! buffer per file. gzip and zstd captures (told by their first bytes) and standard input reach
//! libpcap through a pipe fed by a thread; pcapng files libpcap refuses for their mixed interfaces
//! are read by the pcap-file crate instead.

use super::{packet_ts, pcap_msg, After, Frame, Next, PacketSource, SourceError};
use crate::decode::{Link, Ts};
use pcap::{Capture, Offline};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

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
    pub(crate) fn get_datalink(&self) -> pcap::Linktype {
        self.cap.get_datalink()
    }

    pub(crate) fn filter(&mut self, expr: &str) -> Result<(), pcap::Error> {
        self.cap.filter(expr, true)
    }

    #[inline]
    pub fn next_packet(&mut self) -> Result<pcap::Packet<'_>, pcap::Error> {
        self.cap.next_packet()
    }

    /// Up to `max` (≥ 1) packets through libpcap's own loop; how many, 0 at the end of the file.
    #[inline]
    pub(crate) fn dispatch(&mut self, max: usize, each: impl FnMut(pcap::Packet<'_>)) -> Result<usize, pcap::Error> {
        self.cap.dispatch(Some(max.max(1)), each)
    }
}

/// Opens a pcap or pcapng file through libpcap with a `buffer`-byte stdio buffer (0: stdio's
/// default), time stamps in nanoseconds. The error is libpcap's or the OS's message.
#[allow(unsafe_code)]
pub fn open_offline(path: &Path, buffer: usize) -> Result<OfflineCapture, String> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| "the path holds a NUL byte".to_string())?;
    // SAFETY: a plain C call; the FILE is handed on to `offline_from_stdio`, which owns it.
    let fp = unsafe { libc::fopen(cpath.as_ptr(), c"rb".as_ptr()) };
    if fp.is_null() {
        return Err(io_msg(&std::io::Error::last_os_error()));
    }
    offline_from_stdio(fp, buffer)
}

/// The same, for a capture arriving on a file descriptor (the read end of a pipe).
#[allow(unsafe_code)]
pub(crate) fn open_offline_fd(fd: std::os::fd::OwnedFd, buffer: usize) -> Result<OfflineCapture, String> {
    use std::os::fd::IntoRawFd;
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` is an open descriptor we own; on success the FILE owns it, on failure we close it.
    let fp = unsafe { libc::fdopen(raw, c"rb".as_ptr()) };
    if fp.is_null() {
        let e = std::io::Error::last_os_error();
        // SAFETY: still ours, closed once.
        unsafe { libc::close(raw) };
        return Err(io_msg(&e));
    }
    offline_from_stdio(fp, buffer)
}

/// libpcap on an open FILE, which it owns from here on (closed on failure too).
#[allow(unsafe_code)]
fn offline_from_stdio(fp: *mut libc::FILE, buffer: usize) -> Result<OfflineCapture, String> {
    // SAFETY: plain C calls on a FILE this function owns until libpcap takes it. On success the
    // handle owns the FILE and closes it when dropped, before the buffer (see OfflineCapture); on
    // failure libpcap leaves the FILE to us and we close it.
    unsafe {
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

/// How a capture's bytes are packed, told by its first bytes (never by its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Packing {
    Plain,
    Gzip,
    Zstd,
}

impl Packing {
    pub(crate) fn of(head: &[u8]) -> Packing {
        match head {
            [0x1f, 0x8b, ..] => Packing::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Packing::Zstd,
            _ => Packing::Plain,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Packing::Plain => "read",
            Packing::Gzip => "gzip",
            Packing::Zstd => "zstd",
        }
    }
}

/// Reads until `buf` is full or the input ends; how many bytes.
fn read_head(r: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The input, unpacked when its first bytes say it is compressed.
fn unpack(mut input: Box<dyn std::io::Read + Send>) -> Result<(Packing, Box<dyn std::io::Read + Send>), String> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let n = read_head(&mut input, &mut head).map_err(|e| io_msg(&e))?;
    if n == 0 {
        return Err("empty input, not a capture".into());
    }
    let packing = Packing::of(&head[..n]);
    let rest = std::io::Cursor::new(head[..n].to_vec()).chain(input);
    Ok((
        packing,
        match packing {
            Packing::Plain => Box::new(rest),
            Packing::Gzip => Box::new(flate2::read::MultiGzDecoder::new(rest)),
            Packing::Zstd => Box::new(zstd::stream::read::Decoder::new(rest).map_err(|e| format!("zstd: {e}"))?),
        },
    ))
}

/// A thread that unpacks a capture (or copies standard input) into a pipe that libpcap reads, so a
/// compressed capture is read as it unpacks, never whole in memory or on disk. Its result says
/// why the pipe ended early, if it did.
struct Feeder(Option<std::thread::JoinHandle<Result<(), String>>>);

impl Feeder {
    /// Starts the thread on `input`; the read end of the pipe is for libpcap.
    fn start(input: Box<dyn std::io::Read + Send>) -> Result<(Feeder, std::os::fd::OwnedFd), String> {
        let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        // A larger pipe means fewer wake-ups between the two threads; the default works too.
        let _ = nix::fcntl::fcntl(std::os::fd::AsRawFd::as_raw_fd(&w), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        let h = std::thread::Builder::new()
            .name("hcleak-unpack".into())
            .spawn(move || Feeder::run(input, std::fs::File::from(w)))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok((Feeder(Some(h)), r))
    }

    fn run(input: Box<dyn std::io::Read + Send>, mut out: std::fs::File) -> Result<(), String> {
        use std::io::Read;
        let (packing, mut unpacked) = unpack(input)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = match unpacked.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("{}: {e}", packing.name())),
            };
            match std::io::Write::write_all(&mut out, &buf[..k]) {
                Ok(()) => {}
                // libpcap stopped reading (the run ended early): not an error of the input.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Why the input ended early, if the thread has ended with a reason. A thread that ended the
    /// pipe has finished within moments; one still blocked — writing into a pipe libpcap no longer
    /// reads, or waiting on a slow producer — is not waited for (it ends when the pipe closes).
    fn failure(&mut self) -> Option<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        while !self.0.as_ref()?.is_finished() {
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        self.0.take()?.join().unwrap_or_else(|_| Err("the unpacking thread failed".into())).err()
    }
}

/// One capture file.
pub struct FileSource {
    cap: OfflineCapture,
    link: Link,
    read: Tally,
}

/// What `FileSource::open` reads from.
enum Input {
    /// A plain capture file, read by libpcap itself.
    Plain,
    /// Unpacked or copied by a thread into a pipe.
    Fed(Box<dyn std::io::Read + Send>),
}

/// How far a file has been read (kept apart from the handle, so frames borrowed from the handle
/// can be counted).
struct Tally {
    path: PathBuf,
    frames: u64,
    bytes: u64,
    total: u64,
    done: bool,
    /// The thread unpacking a compressed file or copying standard input, if any.
    feeder: Option<Feeder>,
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
            e => {
                // A pipe that ended early looks truncated to libpcap; the unpacker knows why.
                let msg = self.feeder.as_mut().and_then(Feeder::failure).unwrap_or_else(|| pcap_msg(&e));
                Err(SourceError::Damaged { path: self.path.clone(), frames: self.frames, msg })
            }
        }
    }
}

impl FileSource {
    /// Opens a capture file — pcap or pcapng, plain, gzip or zstd (told by content) — or standard
    /// input when `path` is `-`.
    pub(crate) fn open(path: &Path, filter: Option<&str>) -> Result<FileSource, SourceError> {
        let open_err = |path: &Path, msg: String| SourceError::Open { path: path.into(), msg };
        let (name, input, total) = if path.as_os_str() == "-" {
            use std::io::IsTerminal;
            let name = PathBuf::from("standard input");
            if std::io::stdin().is_terminal() {
                return Err(open_err(
                    &name,
                    "is a terminal; pipe a capture into it (tcpdump -w - | hcleak analyze -r -)".into(),
                ));
            }
            (name, Input::Fed(Box::new(std::io::stdin())), 0)
        } else {
            // libpcap's message for a missing file is fine, but a directory or unreadable file
            // deserves the OS's own words.
            let meta = std::fs::metadata(path).map_err(|e| open_err(path, io_msg(&e)))?;
            if meta.is_dir() {
                return Err(open_err(path, "is a directory".into()));
            }
            if meta.len() == 0 {
                return Err(open_err(path, "empty file, not a capture".into()));
            }
            let mut f = std::fs::File::open(path).map_err(|e| open_err(path, io_msg(&e)))?;
            let mut head = [0u8; 4];
            let n = read_head(&mut f, &mut head).map_err(|e| open_err(path, io_msg(&e)))?;
            match Packing::of(&head[..n]) {
                Packing::Plain => (path.into(), Input::Plain, meta.len()),
                _ => {
                    use std::io::Seek;
                    f.rewind().map_err(|e| open_err(path, io_msg(&e)))?;
                    (path.into(), Input::Fed(Box::new(f)), 0)
                }
            }
        };
        let (opened, feeder) = match input {
            Input::Plain => (open_offline(path, READ_BUFFER), None),
            Input::Fed(r) => {
                let (mut feeder, fd) = Feeder::start(r).map_err(|e| open_err(&name, e))?;
                // When libpcap refuses the stream, the unpacker may know why (a corrupt archive).
                let opened = open_offline_fd(fd, READ_BUFFER).map_err(|e| feeder.failure().unwrap_or(e));
                (opened, Some(feeder))
            }
        };
        let mut cap = opened.map_err(|e| open_err(&name, open_msg(&name, &e)))?;
        let dl = cap.get_datalink();
        let link = Link::from_dlt(dl.0).ok_or_else(|| SourceError::LinkType {
            path: name.clone(),
            dlt: dl.0,
            name: dl.get_name().unwrap_or_else(|_| "unknown".into()),
        })?;
        if let Some(expr) = filter {
            cap.filter(expr).map_err(|e| SourceError::Filter { expr: expr.to_string(), msg: pcap_msg(&e) })?;
        }
        Ok(FileSource {
            cap,
            link,
            read: Tally { path: name, frames: 0, bytes: if total > 0 { 24 } else { 0 }, total, done: false, feeder },
        })
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

/// A pcapng file read without libpcap, for the files libpcap refuses: interfaces with different
/// snapshot lengths or link types (merged captures; tshark and Zeek read them). The pcap-file
/// crate parses the blocks; a BPF filter is compiled per link type and run on each frame.
pub(crate) struct NgSource {
    reader: pcap_file::pcapng::PcapNgReader<std::io::BufReader<Box<dyn std::io::Read + Send>>>,
    path: PathBuf,
    filter: Option<String>,
    /// Per interface: its link (None: not one hcleak reads), nanoseconds per tick as a ratio
    /// (multiply, divide), and the compiled filter.
    ifaces: Vec<(Option<Link>, u64, u64, Option<pcap::BpfProgram>)>,
    frames: u64,
    data: Vec<u8>,
    done: bool,
}

impl NgSource {
    /// Opens `path` (plain or compressed) with the pcapng reader.
    pub(crate) fn open(path: &Path, filter: Option<&str>) -> Result<NgSource, SourceError> {
        let err = |msg: String| SourceError::Open { path: path.into(), msg };
        let f = std::fs::File::open(path).map_err(|e| err(io_msg(&e)))?;
        let (_, input) = unpack(Box::new(f)).map_err(err)?;
        let reader = pcap_file::pcapng::PcapNgReader::new(std::io::BufReader::with_capacity(READ_BUFFER, input))
            .map_err(|e| err(format!("not a pcapng capture ({e})")))?;
        Ok(NgSource {
            reader,
            path: path.into(),
            filter: filter.map(String::from),
            ifaces: Vec::new(),
            frames: 0,
            data: Vec::new(),
            done: false,
        })
    }

    /// Takes in interfaces described since the last look (a new section starts the list again).
    fn learn_interfaces(&mut self) {
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
        let known = self.reader.interfaces();
        if known.len() < self.ifaces.len() {
            self.ifaces.clear();
        }
        for idb in &known[self.ifaces.len()..] {
            let dlt = u32::from(idb.linktype) as i32;
            let link = Link::from_dlt(dlt);
            // if_tsresol: 10^-n seconds per tick (2^-n with the top bit set); microseconds by default.
            let resol = idb
                .options
                .iter()
                .find_map(|o| match o {
                    InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                    _ => None,
                })
                .unwrap_or(6);
            let (mul, div) = if resol & 0x80 != 0 {
                (1_000_000_000, 1u64.checked_shl(u32::from(resol & 0x7f)).unwrap_or(u64::MAX))
            } else if resol <= 9 {
                (10u64.pow(9 - u32::from(resol)), 1)
            } else {
                (1, 10u64.checked_pow(u32::from(resol) - 9).unwrap_or(u64::MAX))
            };
            // libpcap already compiled the filter for the first interface, so it is valid; one that
            // cannot apply to another interface's link type (`vlan` on Linux cooked) matches none of
            // that interface's packets.
            let (link, bpf) = match (&self.filter, link) {
                (Some(expr), Some(l)) => {
                    match pcap::Capture::dead(pcap::Linktype(dlt)).and_then(|c| c.compile(expr, true)) {
                        Ok(b) => (Some(l), Some(b)),
                        Err(_) => (None, None),
                    }
                }
                _ => (link, None),
            };
            self.ifaces.push((link, mul, div, bpf));
        }
    }
}

impl PacketSource for NgSource {
    fn next_frame(&mut self) -> Result<Next<'_>, SourceError> {
        use pcap_file::pcapng::Block;
        while !self.done {
            let (iface, ticks, wire_len) = match self.reader.next_block() {
                None => {
                    self.done = true;
                    break;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Err(SourceError::Damaged {
                        path: self.path.clone(),
                        frames: self.frames,
                        msg: e.to_string(),
                    });
                }
                Some(Ok(Block::EnhancedPacket(p))) => {
                    self.data.clear();
                    self.data.extend_from_slice(&p.data);
                    (p.interface_id as usize, p.timestamp.as_nanos() as u64, p.original_len)
                }
                // Interface descriptions are read below; statistics, names and the rest say nothing
                // about connections. Simple packet blocks carry no time and are left out.
                Some(Ok(_)) => continue,
            };
            if iface >= self.ifaces.len() {
                self.learn_interfaces();
            }
            let Some((Some(link), mul, div, bpf)) = self.ifaces.get(iface) else { continue };
            if bpf.as_ref().is_some_and(|b| !b.filter(&self.data)) {
                continue;
            }
            self.frames += 1;
            let ns = u128::from(ticks) * u128::from(*mul) / u128::from(*div);
            let ts = Ts::try_from(ns).unwrap_or(Ts::MAX);
            return Ok(Next::Frame(Frame { ts, link: *link, data: &self.data, wire_len }));
        }
        Ok(Next::End)
    }
}

/// libpcap refused this pcapng file for a reason the pcapng reader does not share.
fn libpcap_refuses_mixed_interfaces(msg: &str) -> bool {
    msg.contains("different from the snapshot length of the first interface")
        || msg.contains("different from the type of the first interface")
}

/// A capture file: through libpcap, or — when libpcap refuses a pcapng file with mixed
/// interfaces at its first packet — through [`NgSource`], from the start.
pub struct CaptureFile {
    pcap: FileSource,
    ng: Option<NgSource>,
    filter: Option<String>,
    /// A file can be read again from its start; standard input cannot.
    rereadable: bool,
}

impl CaptureFile {
    pub(crate) fn open(path: &Path, filter: Option<&str>) -> Result<CaptureFile, SourceError> {
        Ok(CaptureFile {
            pcap: FileSource::open(path, filter)?,
            ng: None,
            filter: filter.map(String::from),
            rereadable: path.as_os_str() != "-",
        })
    }
}

/// After libpcap's error: the pcapng reader when it can take over, else the error (with a way out
/// when the input cannot be read again). A free function over the fields it needs, so a frame
/// borrowed from libpcap's handle can be returned beside it.
fn fall_back<'a>(
    ng: &'a mut Option<NgSource>,
    filter: Option<&str>,
    rereadable: bool,
    e: SourceError,
) -> Result<&'a mut NgSource, SourceError> {
    let SourceError::Damaged { path, frames: 0, msg } = &e else { return Err(e) };
    if !libpcap_refuses_mixed_interfaces(msg) {
        return Err(e);
    }
    if !rereadable {
        return Err(SourceError::Damaged {
            path: path.clone(),
            frames: 0,
            msg: format!(
                "{msg}; save it to a file for hcleak to read with its own pcapng reader, or convert it: editcap -F pcap IN OUT"
            ),
        });
    }
    Ok(ng.insert(NgSource::open(path, filter)?))
}

impl PacketSource for CaptureFile {
    fn next_frame(&mut self) -> Result<Next<'_>, SourceError> {
        if self.ng.is_none() {
            match self.pcap.next_frame() {
                Err(e) => {
                    fall_back(&mut self.ng, self.filter.as_deref(), self.rereadable, e)?;
                }
                ok => return ok,
            }
        }
        match &mut self.ng {
            Some(ng) => ng.next_frame(),
            None => Ok(Next::End),
        }
    }

    fn next_frames(&mut self, max: usize, each: &mut dyn FnMut(Frame<'_>)) -> Result<After, SourceError> {
        if let Some(ng) = &mut self.ng {
            return ng.next_frames(max, each);
        }
        match self.pcap.next_frames(max, each) {
            Err(e) => fall_back(&mut self.ng, self.filter.as_deref(), self.rereadable, e)?.next_frames(max, each),
            ok => ok,
        }
    }

    fn progress(&self) -> (u64, u64) {
        if self.ng.is_some() {
            (0, 0)
        } else {
            self.pcap.progress()
        }
    }
}

/// Several files merged by timestamp. Each file's head frame is copied into its own buffer.
pub struct MergedSource {
    files: Vec<CaptureFile>,
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
    pub(crate) fn new(files: Vec<CaptureFile>) -> Self {
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
        files.push(CaptureFile::open(p, filter)?);
    }
    if files.len() == 1 {
        Ok(Box::new(files.pop().expect("one file")))
    } else {
        Ok(Box::new(MergedSource::new(files)))
    }
}

/// What lies between the link header and the TCP a BPF filter looks for, from a look at the
/// first frames of captures: a filter like `tcp port 8080` matches neither tagged frames nor
/// tunnelled ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encapsulation {
    /// Frames with an 802.1Q or 802.1ad tag.
    pub(crate) vlan: u64,
    /// The first tunnel seen: VXLAN, Geneve, GRE, IP-in-IP.
    pub(crate) tunnel: Option<&'static str>,
}

impl Encapsulation {
    /// Looks at one frame.
    pub(crate) fn add(&mut self, link: Link, f: &[u8]) {
        let be16 = |o: usize| f.get(o..o + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let (mut et, mut off) = match link {
            Link::Ethernet => (be16(12), 14),
            Link::Sll => (be16(14), 16),
            Link::Sll2 => (be16(0), 20),
            Link::Raw | Link::Null => {
                let off = if link == Link::Null { 4 } else { 0 };
                match f.get(off).map(|b| b >> 4) {
                    Some(4) => (Some(0x0800), off),
                    Some(6) => (Some(0x86dd), off),
                    _ => return,
                }
            }
        };
        let mut tagged = false;
        while let Some(0x8100 | 0x88a8 | 0x9100) = et {
            tagged = true;
            et = be16(off + 2);
            off += 4;
        }
        self.vlan += u64::from(tagged);
        let (proto, l4) = match et {
            Some(0x0800) => match (f.get(off), f.get(off + 9)) {
                (Some(v), Some(p)) => (*p, off + usize::from(v & 0x0f) * 4),
                _ => return,
            },
            Some(0x86dd) => match f.get(off + 6) {
                Some(p) => (*p, off + 40),
                None => return,
            },
            _ => return,
        };
        let tunnel = match (proto, be16(l4 + 2)) {
            (47, _) => "GRE",
            (4 | 41, _) => "IP-in-IP",
            (17, Some(4789)) => "VXLAN (UDP 4789)",
            (17, Some(8472)) => "VXLAN (Flannel, UDP 8472)",
            (17, Some(6081)) => "Geneve (UDP 6081)",
            _ => return,
        };
        self.tunnel.get_or_insert(tunnel);
    }
}

/// The encapsulation in the first `max` frames of each capture, read without a filter.
pub fn encapsulation(paths: &[PathBuf], max: u64) -> Result<Encapsulation, SourceError> {
    let mut e = Encapsulation::default();
    for p in paths {
        let mut src = CaptureFile::open(p, None)?;
        let mut n = 0;
        while n < max {
            match src.next_frame() {
                Ok(Next::Frame(f)) => e.add(f.link, f.data),
                Ok(_) | Err(_) => break,
            }
            n += 1;
        }
    }
    Ok(e)
}

/// A line for a filter that matched nothing in captures with this encapsulation, if it explains why.
pub fn empty_filter_hint(filter: &str, e: &Encapsulation) -> Option<String> {
    if e.vlan > 0 {
        return Some(format!(
            "the filter '{filter}' matched no packets, but the capture has 802.1Q VLAN tags, which it does not look past: use 'vlan and {filter}' (or '({filter}) or (vlan and {filter})' for tagged and untagged frames together)"
        ));
    }
    e.tunnel.map(|t| {
        format!(
            "the filter '{filter}' matched no packets, but the capture carries {t} tunnels: a filter sees only their outer headers, and hcleak does not decode inside tunnels; capture on the bridge or pod interface (cni0, a veth) instead"
        )
    })
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

    /// Ethernet with `tags` 802.1Q tags, IPv4 carrying `proto` to `dport`.
    fn tagged_frame(tags: usize, proto: u8, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        for _ in 0..tags {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[9] = proto;
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x30, 0x39]);
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0u8; 16]);
        f
    }

    #[test]
    fn encapsulation_names_tags_and_tunnels() {
        let look = |frames: &[Vec<u8>]| {
            let mut e = Encapsulation::default();
            for f in frames {
                e.add(Link::Ethernet, f);
            }
            e
        };
        assert_eq!(look(&[tagged_frame(0, 6, 8080)]), Encapsulation::default());
        assert_eq!(look(&[tagged_frame(1, 6, 8080), tagged_frame(2, 6, 80)]).vlan, 2);
        assert_eq!(look(&[tagged_frame(0, 17, 4789)]).tunnel, Some("VXLAN (UDP 4789)"));
        assert_eq!(look(&[tagged_frame(1, 17, 6081)]).tunnel, Some("Geneve (UDP 6081)"));
        assert_eq!(look(&[tagged_frame(0, 47, 0)]).tunnel, Some("GRE"));
        assert_eq!(look(&[tagged_frame(0, 17, 53)]).tunnel, None);
        // Cut anywhere, a frame is looked at without panicking.
        let f = tagged_frame(2, 17, 4789);
        for n in 0..f.len() {
            look(&[f[..n].to_vec()]);
        }
        let hint = empty_filter_hint("tcp port 8080", &look(&[tagged_frame(1, 6, 8080)])).unwrap();
        assert!(
            hint.contains("'vlan and tcp port 8080'") && hint.contains("'(tcp port 8080) or (vlan and tcp port 8080)'")
        );
        let hint = empty_filter_hint("port 80", &look(&[tagged_frame(0, 17, 8472)])).unwrap();
        assert!(hint.contains("Flannel") && hint.contains("does not decode inside tunnels"), "{hint}");
        assert_eq!(empty_filter_hint("port 80", &Encapsulation::default()), None);
    }

    #[test]
    fn open_offline_says_what_is_wrong() {
        let missing = open_offline(&fixture("no-such.pcap"), READ_BUFFER).err();
        assert_eq!(missing.as_deref(), Some("no such file"));
        let text = open_offline(&fixture("README.md"), READ_BUFFER).err().expect("not a capture");
        assert!(text.contains("unknown file format"), "{text}");
    }
}
