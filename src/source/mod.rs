//! Source: where frames come from, behind one trait ([`PacketSource`]) so that `analyze`,
//! `capture` and the tests run the same pipeline.
//!
//! - [`file`]: capture files (pcap, pcapng; plain, gzip, zstd; standard input) through libpcap,
//!   several merged in time order ([`FileSource`], [`MergedSource`], [`open_files`]).
//! - [`live`]: a live interface through libpcap's packet ring ([`LiveSource`]), which can also
//!   write what it reads as pcap (`-w`) and stops on a flag, a deadline or a count ([`StopWhen`]).
//! - [`memory`]: frames held in memory ([`MemorySource`]), for tests and the fuzzer, with idle
//!   moments and read errors where a script says, and an optional fake clock that follows the
//!   frames' timestamps.
//!
//! A source yields borrowed frames one at a time. Errors are typed so the CLI can say in one line
//! what went wrong and where, and so a damaged file still yields what came before the damage.
//!
//! Naming: "live" means a libpcap interface ([`LiveSource`], [`LiveOptions`]); the `capture`
//! subcommand's running state is [`crate::capture`].

pub(crate) mod file;
pub(crate) mod live;
pub(crate) mod memory;

pub use crate::decode::DropStats;
pub use file::{
    empty_filter_hint, encapsulation, open_files, open_offline, CaptureFile, Encapsulation, FileSource, MergedSource,
    OfflineCapture, READ_BUFFER,
};
pub use live::{list_interfaces, local_addresses, LiveOptions, LiveSource, PcapWriter, StopWhen, BUFFER_TIMEOUT_MS};
pub use memory::{MemorySource, Step};

use crate::decode::{Link, Ts};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The kernel's counters of a running live capture, kept current for whoever reports while it
/// runs (the live view, metrics).
pub(crate) type SharedDrops = Arc<Mutex<Option<DropStats>>>;

/// One captured frame, borrowed from the source.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ts: Ts,
    pub link: Link,
    pub data: &'a [u8],
    /// Length on the wire (≥ `data.len()` when the snaplen cut the frame).
    pub(crate) wire_len: u32,
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
    /// Makes what the source also writes (`-w`) complete up to now. Nothing for most sources.
    fn flush(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
    /// The kernel's counters now (a live interface); `None` for files and memory.
    fn drops(&mut self) -> Option<DropStats> {
        None
    }
    /// A handle on the kernel's counters that stays current while the source runs (a live
    /// interface); `None` for files and memory.
    fn counters(&self) -> Option<SharedDrops> {
        None
    }
}

/// A record's time in nanoseconds (the handles are opened with nanosecond precision).
#[inline]
pub(crate) fn packet_ts(h: &pcap::PacketHeader) -> Ts {
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
