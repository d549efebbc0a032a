//! What a judgement found and what to change, as data; [`crate::explain`] words them.

use super::{Driver, Stopped};
use crate::backend::Backend;
use crate::classify::Kind;
use crate::decode::Ts;
use crate::sockets::{Comm, Sample};
use std::net::IpAddr;

/// What one backend's judgement found: the numbers behind each statement. Sentences are written
/// from these in [`crate::explain`]; tests assert these, not wording.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// Host samples: sockets grew with a driver.
    HostGrowth {
        start: f64,
        now: u64,
        span_s: f64,
        driver: Driver,
        samples: usize,
    },
    /// Host samples: sockets did not follow any kind (from `start` to `now`).
    HostNoGrowth {
        start: f64,
        now: u64,
        probes: u64,
        span_s: f64,
    },
    /// Socket fds in no kernel TCP table (accepted, reset, never closed).
    HiddenSockets {
        n: u64,
    },
    /// CLOSE_WAIT sockets counted on the host.
    HostCloseWait {
        n: u64,
    },
    /// The accept queue holds connections and the kernel drops new handshakes.
    AcceptQueueOverflowing {
        queue: u64,
        overflows: u64,
    },
    /// Sockets plateaued at the limit: the fit covers the growth before it.
    FitBeforePlateau {
        plateau: f64,
        samples: usize,
    },
    /// On the wire, the server never closed connections of one kind after the client's FIN.
    WireCloseWait {
        never_closed: u64,
        driver: Driver,
    },
    /// Connections half-closed by the client and never closed by the server.
    HalfClosed {
        n: u64,
    },
    /// Connections end in a reset after accept(): a leak of them is invisible on the wire.
    ResetsInvisible {
        kinds: Vec<(Kind, u64)>,
    },
    /// Half-open probes cannot reach accept() on Linux.
    HalfOpenCannotLeak,
    /// The backend stopped answering and never recovered.
    Stopped(Stopped),
    /// It stopped answering, but there is no sign it ever accepted a connection: not a
    /// probe-driven leak. `queue` is the accept queue from the host samples, when known.
    NeverAccepted {
        at: Ts,
        requests_unanswered: u64,
        queue: Option<u64>,
    },
    /// The wire suggested it stopped answering, but host samples show an accept queue that is
    /// neither full nor growing: it is answering.
    StallOverruled {
        at: Ts,
        queue: u64,
    },
    /// Nothing listens any more.
    Refusing {
        since: Ts,
    },
    SynAckRetransmits {
        n: u64,
    },
    /// The projection to the limit.
    Exhaustion {
        driver: Driver,
        limit: u64,
        in_use: f64,
        eta_s: f64,
    },
    /// Growth without a known limit.
    GainPerMinute {
        per_minute: f64,
    },
    /// Port-only host samples applied to several backends.
    SamplesPortOnly {
        port: u16,
        backends: Vec<IpAddr>,
    },
    /// Host samples were given for this backend but none fall inside the capture.
    SamplesOutsideCapture {
        samples: usize,
        first: Ts,
        last: Ts,
    },
    /// Connections filed in "other clients" buckets (past the group caps): never probes.
    OtherClients {
        conns: u64,
    },
    /// What the server is: the sampled process's name, the `Server:` header of its responses.
    ServerSoftware(Software),
    /// Its connections were also seen to this published address, before DNAT (joined through
    /// the host's conntrack table).
    Published {
        ip: IpAddr,
        port: u16,
    },
    /// No conntrack to ask: this other backend carried the very same probes (same prober, count
    /// and interval), and may be this one seen on the other side of a DNAT.
    MaybeSameBackend {
        ip: IpAddr,
        port: u16,
    },
}

/// What the evidence says the server software is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Software {
    /// The sampled process (`/proc/PID/comm`): `beam.smp` is the Erlang VM.
    pub process: Option<Comm>,
    /// The container (or systemd unit) the sampled process runs in.
    pub container: Option<crate::container::Container>,
    /// The `Server:` header of its responses, as one of [`crate::http::SERVER_TOKENS`].
    pub header: Option<&'static str>,
}

impl Software {
    pub(super) fn of(b: &Backend, samples: &[Sample]) -> Software {
        Software {
            process: samples.iter().rev().find_map(|s| s.process),
            container: samples.iter().rev().find_map(|s| s.container),
            header: usize::from(b.server).checked_sub(1).and_then(|i| crate::http::SERVER_TOKENS.get(i).copied()),
        }
    }
    /// Runs on the Erlang VM (Bandit / Thousand Island, Cowboy): the Thousand Island advice fits.
    pub fn is_erlang(&self) -> bool {
        self.process.is_some_and(|p| p.is_erlang_vm()) || self.header.is_some_and(crate::http::is_erlang_server)
    }
}

/// What to change, as data; [`crate::explain`] words it.
#[derive(Clone, Debug, PartialEq)]
pub enum Remedy {
    /// Fix for a leak that follows this kind. `erlang`: the server is the Erlang VM (Bandit /
    /// Thousand Island), so the Thousand Island advice fits.
    ForDriver { kind: Kind, erlang: bool },
    /// It stopped accepting after probes that reached accept(): acceptors or sockets ran out.
    AcceptorsExhausted { erlang: bool },
    /// A server that never accepted: look at why accept() is not called.
    NeverAccepted { port: u16 },
    /// Resets hide the leak: measure the host.
    MeasureHost { port: u16 },
    /// Commands that confirm it on the host.
    Confirm { port: u16 },
}
