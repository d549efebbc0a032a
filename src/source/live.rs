//! A live interface through libpcap: the packet ring, read without blocking behind our own poll,
//! stopped by a flag, a deadline or a count, optionally written to a pcap file as it is read.

use super::{packet_ts, pcap_msg, After, DropStats, Frame, Next, PacketSource, SharedDrops, SourceError};
use crate::clock::now_ts;
use crate::decode::{Link, Ts};
use pcap::Capture;

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
    pub(crate) promisc: bool,
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
    pub(crate) fn new(file: std::fs::File, dlt: i32, snaplen: i32) -> std::io::Result<PcapWriter> {
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
    counters: SharedDrops,
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
        // On `any`, ask for Linux cooked v2: it names each packet's interface, which tells the
        // two copies of a packet crossing a veth and a bridge apart from a retransmission.
        if o.iface == "any" && cap.list_datalinks().is_ok_and(|l| l.contains(&pcap::Linktype(276))) {
            let _ = cap.set_datalink(pcap::Linktype(276));
        }
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

    fn refresh_counters(&mut self) {
        let d = self.drops();
        if let Ok(mut c) = self.counters.lock() {
            *c = d;
        }
        self.st.since_stats = 0;
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
    /// A handle on the kernel counters that stays current while the capture runs.
    fn counters(&self) -> Option<SharedDrops> {
        Some(std::sync::Arc::clone(&self.counters))
    }

    fn drops(&mut self) -> Option<DropStats> {
        self.cap.stats().ok().map(|s| DropStats {
            received: s.received,
            dropped_kernel: s.dropped,
            dropped_iface: s.if_dropped,
        })
    }

    /// Flushes the pcap being written, so the file is complete up to now.
    fn flush(&mut self) -> Result<(), SourceError> {
        if let Some(s) = &mut self.st.save {
            s.flush().map_err(|e| SourceError::Live {
                iface: self.iface.clone(),
                msg: format!("writing the capture: {e}"),
            })?;
        }
        self.st.since_flush = 0;
        Ok(())
    }

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
