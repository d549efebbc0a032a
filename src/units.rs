//! Units: how addresses, instants and durations are written, in one place for every stage that names them
//! (the verdict's findings, the samples file, the renderers), so that none of them needs another's
//! module for it.

use crate::decode::Ts;
use std::net::IpAddr;

/// `ip:port`, with IPv6 in brackets.
pub(crate) fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Human duration: 5h33m, 2m58s, 41s.
pub(crate) fn human_duration(s: f64) -> String {
    if !s.is_finite() {
        return "never".into();
    }
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=172_799 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Seconds with microseconds, like Zeek's `ts`.
pub(crate) fn ts_secs(ts: Ts) -> String {
    let s = ts.div_euclid(1_000_000_000);
    let us = ts.rem_euclid(1_000_000_000) / 1000;
    format!("{s}.{us:06}")
}

/// A packet-time instant in UTC with a chrono format; the raw nanoseconds when out of range.
pub(crate) fn utc(t: Ts, fmt: &str) -> String {
    chrono::DateTime::from_timestamp(t.div_euclid(1_000_000_000), t.rem_euclid(1_000_000_000) as u32)
        .map_or_else(|| t.to_string(), |d| d.format(fmt).to_string())
}

/// `12:03:44.120 UTC`: when something happened, in a sentence.
pub(crate) fn clock(t: Ts) -> String {
    utc(t, "%H:%M:%S%.3f UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_addresses_and_instants() {
        assert_eq!(endpoint("10.0.0.1".parse().unwrap(), 8080), "10.0.0.1:8080");
        assert_eq!(endpoint("::1".parse().unwrap(), 80), "[::1]:80");
        let t = 1_700_000_000_123_456_789;
        assert_eq!(ts_secs(t), "1700000000.123456");
        assert_eq!(clock(t), "22:13:20.123 UTC");
        assert_eq!(utc(t, "%Y-%m-%d %H:%M:%S UTC"), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn writes_durations_in_the_two_largest_units() {
        assert_eq!(human_duration(0.4), "0s");
        assert_eq!(human_duration(59.0), "59s");
        assert_eq!(human_duration(60.0), "1m00s");
        assert_eq!(human_duration(178.0), "2m58s");
        assert_eq!(human_duration(3599.0), "59m59s");
        assert_eq!(human_duration(3600.0), "1h00m");
        assert_eq!(human_duration(20_000.0), "5h33m");
        assert_eq!(human_duration(172_800.0), "2d00h");
        assert_eq!(human_duration(f64::INFINITY), "never");
        assert_eq!(human_duration(-5.0), "0s");
    }
}
