//! Clock: the one place the wall clock is read. A running capture (and `sample`) reads time through
//! the [`Clock`] trait, so tests drive it with a [`FakeClock`] instead of sleeping; [`now_ts`] is
//! the plain reading for code that only stamps (probe, the live source's stop).
//!
//! Two readings, both from the same clock: [`Clock::wall`], Unix time in nanoseconds (the clock the
//! kernel stamps live packets with, so samples and packets line up), and [`Clock::instant`], a
//! monotonic instant for schedules (sample every second, refresh every few). Waiting goes through
//! it too ([`Clock::sleep_until`]): a fake clock just moves on.

use crate::decode::Ts;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Wall-clock now as packet-time nanoseconds (live packets carry the same clock).
pub fn now_ts() -> Ts {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as Ts)
}

/// Where a running capture reads the time.
pub trait Clock: Send + Sync {
    /// Unix time in nanoseconds.
    fn wall(&self) -> Ts;
    /// A monotonic instant, for schedules.
    fn instant(&self) -> Instant;
    /// Waits until `t`, or until `stop` is set, whichever comes first.
    fn sleep_until(&self, t: Instant, stop: &AtomicBool);
}

/// The system's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> Ts {
        now_ts()
    }
    fn instant(&self) -> Instant {
        Instant::now()
    }
    fn sleep_until(&self, t: Instant, stop: &AtomicBool) {
        // In short steps, so that a signal stops the wait at once.
        while Instant::now() < t && !stop.load(Ordering::Relaxed) {
            std::thread::sleep((t - Instant::now()).min(Duration::from_millis(50)));
        }
    }
}

/// A clock that moves only when told to: both readings advance together.
#[derive(Debug)]
pub struct FakeClock {
    /// (wall time, monotonic instant) now.
    now: Mutex<(Ts, Instant)>,
}

impl FakeClock {
    /// A clock showing Unix time `wall` (nanoseconds).
    pub fn at(wall: Ts) -> FakeClock {
        FakeClock { now: Mutex::new((wall, Instant::now())) }
    }

    /// Moves the clock on by `d`.
    pub(crate) fn advance(&self, d: Duration) {
        let mut g = self.now.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = g.0.saturating_add(d.as_nanos().min(i64::MAX as u128) as Ts);
        g.1 += d;
    }

    /// Moves the clock to wall time `wall`; never backwards.
    pub(crate) fn set(&self, wall: Ts) {
        let ahead = {
            let g = self.now.lock().unwrap_or_else(|e| e.into_inner());
            wall.saturating_sub(g.0)
        };
        if ahead > 0 {
            self.advance(Duration::from_nanos(ahead as u64));
        }
    }
}

impl Clock for FakeClock {
    fn wall(&self) -> Ts {
        self.now.lock().unwrap_or_else(|e| e.into_inner()).0
    }
    fn instant(&self) -> Instant {
        self.now.lock().unwrap_or_else(|e| e.into_inner()).1
    }
    /// Moves the clock to `t` at once (unless stopped).
    fn sleep_until(&self, t: Instant, stop: &AtomicBool) {
        let now = self.instant();
        if t > now && !stop.load(Ordering::Relaxed) {
            self.advance(t - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_clock_moves_both_readings_together_and_never_back() {
        let c = FakeClock::at(1_000);
        let (w, i) = (c.wall(), c.instant());
        c.advance(Duration::from_millis(5));
        assert_eq!(c.wall(), w + 5_000_000);
        assert_eq!(c.instant() - i, Duration::from_millis(5));
        c.set(500);
        assert_eq!(c.wall(), w + 5_000_000, "set never moves back");
        c.set(w + 2_000_000_000);
        assert_eq!(c.instant() - i, Duration::from_secs(2));
    }
}
