//! hcleak: finds backends that lose a socket per health-check probe.
//!
//! Data flows one way: [`source`] → [`decode`] → [`flow`] → [`classify`] → [`backend`] →
//! [`verdict`] → [`render`]. [`pipeline`] is the loop that drives the first stages; [`sockets`]
//! reads host socket samples. The binary in `main.rs` only parses arguments and wires stages.
// One function may use unsafe code: source::open_offline, the C calls that give libpcap a FILE with
// a larger buffer. Everything else is safe Rust.
#![deny(unsafe_code)]

pub mod backend;
pub mod classify;
pub mod cli;
pub mod container;
pub mod decode;
pub mod explain;
pub mod flow;
pub mod http;
pub mod live;
pub mod metrics;
pub mod nat;
pub mod output;
pub mod pipeline;
pub mod plot;
pub mod privs;
pub mod render;
pub mod sampler;
pub mod sockets;
pub mod source;
pub mod stats;
pub mod text;
pub mod tunnel;
pub mod verdict;
