//! Frames held in memory: the packet source of tests and the fuzzer. The same pipeline runs on it
//! as on a file or an interface; a script says where idle moments and read errors come.
//!
//! With a [`FakeClock`] attached, the clock follows the frames: it shows each frame's timestamp
//! as the frame is read, and moves on by an idle step's length — so a running capture's schedule
//! (sampling, refresh, `--duration`) is driven by packet time, and no test sleeps.

use super::{DropStats, Frame, Next, PacketSource, SharedDrops, SourceError, StopWhen};
use crate::clock::{Clock, FakeClock};
use crate::decode::{Link, Ts};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One step of an in-memory source.
#[derive(Clone, Debug)]
pub enum Step {
    /// A frame, captured whole, stamped `ts`.
    Frame(Ts, Vec<u8>),
    /// Nothing arrives for this long (the source is idle, as an interface is).
    Idle(Duration),
    /// A read error; the source goes on after it.
    Error(SourceError),
}

/// Frames from memory, in the order given.
#[derive(Debug)]
pub struct MemorySource {
    link: Link,
    steps: Vec<Step>,
    next: usize,
    clock: Option<Arc<FakeClock>>,
    stop: StopWhen,
    frames: u64,
    counters: Option<SharedDrops>,
}

impl MemorySource {
    /// A source of `steps` on link layer `link`.
    pub fn new(link: Link, steps: Vec<Step>) -> MemorySource {
        MemorySource { link, steps, next: 0, clock: None, stop: StopWhen::default(), frames: 0, counters: None }
    }

    /// Frames only, each with its time.
    pub fn frames(link: Link, frames: impl IntoIterator<Item = (Ts, Vec<u8>)>) -> MemorySource {
        MemorySource::new(link, frames.into_iter().map(|(ts, f)| Step::Frame(ts, f)).collect())
    }

    /// Moves `clock` with the frames: to each frame's time as it is read, on by each idle step.
    pub fn with_clock(mut self, clock: Arc<FakeClock>) -> MemorySource {
        self.clock = Some(clock);
        self
    }

    /// Ends early on the flag, the deadline (read on the attached clock) or the count, as a live
    /// source does (without a kernel ring to drain).
    pub fn stop_when(&mut self, s: StopWhen) {
        self.stop = s;
    }

    /// Kernel counters to report, as a live source's (shared, so a test can change them while
    /// the source runs).
    pub fn with_counters(mut self, c: DropStats) -> MemorySource {
        self.counters = Some(Arc::new(std::sync::Mutex::new(Some(c))));
        self
    }

    /// Steps read so far.
    pub fn position(&self) -> usize {
        self.next
    }

    fn stopped(&self) -> bool {
        self.stop.flag.load(Ordering::Relaxed)
            || self.stop.count.is_some_and(|n| self.frames >= n)
            || self.stop.deadline.is_some_and(|d| self.clock.as_ref().is_some_and(|c| c.instant() >= d))
    }
}

impl PacketSource for MemorySource {
    fn next_frame(&mut self) -> Result<Next<'_>, SourceError> {
        if self.stopped() {
            return Ok(Next::End);
        }
        let Some(step) = self.steps.get(self.next) else { return Ok(Next::End) };
        self.next += 1;
        match step {
            Step::Error(e) => Err(e.clone()),
            Step::Idle(d) => {
                if let Some(c) = &self.clock {
                    c.advance(*d);
                }
                Ok(Next::Idle)
            }
            Step::Frame(ts, data) => {
                if let Some(c) = &self.clock {
                    c.set(*ts);
                }
                self.frames += 1;
                Ok(Next::Frame(Frame { ts: *ts, link: self.link, data, wire_len: data.len() as u32 }))
            }
        }
    }

    /// Steps read so far and in all.
    fn progress(&self) -> (u64, u64) {
        (self.next as u64, self.steps.len() as u64)
    }

    fn drops(&mut self) -> Option<DropStats> {
        self.counters.as_ref().and_then(|c| c.lock().ok().and_then(|g| *g))
    }

    fn counters(&self) -> Option<SharedDrops> {
        self.counters.clone()
    }
}
