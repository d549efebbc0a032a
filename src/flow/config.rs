//! The flow engine's tunables: Zeek's connection timers and the table's size cap.

use crate::decode::Ts;

/// One second of packet time.
pub const SEC: Ts = 1_000_000_000;

/// Default cap on connections tracked at once: about 130 MiB of flow records at most (~500 bytes each).
pub const DEFAULT_MAX_FLOWS: usize = 1 << 18;

/// Tunables. Defaults are Zeek's, so `--flows` output is comparable with conn.log.
#[derive(Clone, Copy, Debug)]
pub struct FlowConfig {
    pub close_delay: Ts,
    pub attempt_delay: Ts,
    pub handshake_idle: Ts,
    pub idle: Ts,
    pub max_flows: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            close_delay: 5 * SEC,
            attempt_delay: 5 * SEC,
            handshake_idle: 60 * SEC,
            idle: 300 * SEC,
            max_flows: DEFAULT_MAX_FLOWS,
        }
    }
}
