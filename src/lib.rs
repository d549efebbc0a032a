//! hcleak: finds backends that lose a socket per health-check probe.
//!
//! Data flows one way: [`source`] → [`decode`] → [`flow`] → [`classify`] → [`backend`] →
//! [`verdict`] → [`render`]. [`pipeline`] is the loop that drives the first stages. The verdict
//! returns findings as data; [`explain`] alone words them, [`render`] lays them out, and [`units`]
//! writes addresses, instants and durations for all of them.
//!
//! Host samples (the backend host's socket counts) come from a [`sampler`] (procfs, or a fake) as
//! frames come from a source, and [`sockets`] holds them and reads and writes their CSV. A running
//! `capture` ([`capture`]) is the pipeline plus sampling, views and metrics, with its source,
//! sampler and [`clock`] passed in; [`probe`] sends probes of each shape to one server and judges
//! the sockets it keeps with the same rules. [`cli`] validates each subcommand's arguments into
//! its configuration; the binary in `main.rs` opens the real sources and outputs, drops
//! privileges, runs the subcommand (`analyze`'s consumer is [`analyze`], `capture`'s [`capture`])
//! and turns its verdict into the exit code.
// Only source::file's open_offline, open_offline_fd and offline_from_stdio (the C calls that give
// libpcap a FILE, a file's or a pipe's, with a larger buffer) and probe::set_quickack (one
// setsockopt nix has no wrapper for) use unsafe code. Everything else is safe Rust.
#![deny(unsafe_code)]

pub mod analyze;
pub mod backend;
pub mod capture;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod container;
pub mod decode;
pub mod explain;
pub mod flow;
pub mod http;
pub mod metrics;
pub mod nat;
pub mod output;
pub mod pipeline;
pub mod plot;
pub mod privs;
pub mod probe;
pub mod render;
pub mod sampler;
pub mod sockets;
pub mod source;
pub mod stats;
#[cfg(test)]
mod testkit;
pub mod text;
pub mod tunnel;
pub mod units;
pub mod verdict;
