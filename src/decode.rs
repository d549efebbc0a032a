//! Decode: turns one captured frame into a TCP segment view, or a counted reason to skip it.
//!
//! Decoding is total: any byte string yields either a [`Segment`] or a [`Skip`]; nothing here
//! panics or allocates. Link layers libpcap hands us (Ethernet with 802.1Q/QinQ tags, Linux cooked
//! SLL and SLL2, raw IP, BSD NULL/LOOP) are peeled off here; etherparse slices the IP layer
//! (IPv4 options, IPv6 extension headers). The fixed 20-byte TCP header is read by hand because
//! a small snaplen often cuts the TCP options, and etherparse then refuses the whole header while
//! the ports, sequence numbers and flags we need are all present.

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket};
use std::net::{IpAddr, Ipv6Addr};

/// Packet time in nanoseconds since the Unix epoch.
pub type Ts = i64;

/// Seconds from `a` to `b`, without overflow whatever the timestamps (damaged captures have any).
#[inline]
pub fn secs(a: Ts, b: Ts) -> f64 {
    (b as f64 - a as f64) / 1e9
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

/// The link layer of a capture, from libpcap's data-link type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    Sll,
    /// Linux cooked capture v2 (`tcpdump -i any` with libpcap ≥ 1.10).
    Sll2,
    /// Raw IPv4 or IPv6, version taken from the first nibble.
    Raw,
    /// BSD loopback: a 4-byte address family (host order for NULL, network order for LOOP).
    Null,
}

impl Link {
    /// Maps a libpcap DLT (or LINKTYPE) value to a link layer we can decode.
    pub fn from_dlt(dlt: i32) -> Option<Link> {
        Some(match dlt {
            1 => Link::Ethernet,
            113 => Link::Sll,
            276 => Link::Sll2,
            // DLT_RAW is 12 on most systems, 14 on OpenBSD; LINKTYPE_RAW 101; IPV4/IPV6 228/229.
            12 | 14 | 101 | 228 | 229 => Link::Raw,
            0 | 108 => Link::Null,
            _ => return None,
        })
    }
}

/// Why a frame was not turned into a TCP segment. Counted per reason and shown in the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Skip {
    /// The frame ends before the link, IP or fixed TCP header does.
    Truncated = 0,
    /// Not IPv4/IPv6 (ARP, LLDP, …).
    NotIp,
    /// IP, but not TCP (UDP, ICMP, …).
    NotTcp,
    /// A non-first IP fragment, or a fragmented TCP segment.
    Fragment,
    /// A malformed IP or TCP header (bad version, header length below minimum, …).
    Malformed,
}

impl Skip {
    pub const ALL: [Skip; 5] = [Skip::Truncated, Skip::NotIp, Skip::NotTcp, Skip::Fragment, Skip::Malformed];
    pub fn name(self) -> &'static str {
        match self {
            Skip::Truncated => "truncated",
            Skip::NotIp => "not IP",
            Skip::NotTcp => "not TCP",
            Skip::Fragment => "IP fragment",
            Skip::Malformed => "malformed header",
        }
    }
}

/// An IP address as one integer: IPv6 as it is, IPv4 in its IPv4-mapped form (`::ffff:a.b.c.d`).
/// Mapped addresses never appear in packets (RFC 4291 §2.5.5.2), so the two families cannot
/// collide, and comparing or hashing a 5-tuple is a few integer operations instead of enum matches.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr(pub u128);

impl Addr {
    #[inline]
    pub const fn v4(o: [u8; 4]) -> Addr {
        Addr(0xffff_0000_0000 | u32::from_be_bytes(o) as u128)
    }
    #[inline]
    pub const fn v6(o: [u8; 16]) -> Addr {
        Addr(u128::from_be_bytes(o))
    }
    /// The address as the standard library's type (IPv4 again for mapped ones).
    pub fn ip(self) -> IpAddr {
        Ipv6Addr::from(self.0).to_canonical()
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(a) => Addr::v4(a.octets()),
            IpAddr::V6(a) => Addr::v6(a.octets()),
        }
    }
}

impl From<[u8; 4]> for Addr {
    fn from(o: [u8; 4]) -> Addr {
        Addr::v4(o)
    }
}

impl std::fmt::Debug for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.ip())
    }
}

/// One TCP segment as seen on the wire. Borrowed from the capture buffer; nothing is copied.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub ts: Ts,
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Advertised window (unscaled). `None` when the snaplen cut it off.
    pub window: Option<u16>,
    /// Payload length on the wire (from the IP length fields, not the captured length).
    pub payload_len: u32,
    /// The captured part of the payload (may be shorter than `payload_len`).
    pub payload: &'a [u8],
}

impl Segment<'_> {
    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Decodes one frame. `ts` is carried through so the segment is self-contained.
#[inline]
pub fn decode(link: Link, ts: Ts, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    decode_then(link, ts, frame, Ok, Err)
}

/// [`decode`] handing the outcome to `ok` or `skip` instead of returning it: on the per-packet
/// path this saves copying the segment through `Option` and `Result` (it is ~100 bytes).
#[inline(always)]
pub fn decode_then<'a, R>(
    link: Link,
    ts: Ts,
    frame: &'a [u8],
    ok: impl FnOnce(Segment<'a>) -> R,
    skip: impl FnOnce(Skip) -> R,
) -> R {
    match fast_path(link, ts, frame, ok) {
        Ok(r) => r,
        Err(ok) => match slow_path(link, ts, frame) {
            Ok(seg) => ok(seg),
            Err(e) => skip(e),
        },
    }
}

/// Everything the fast path leaves: etherparse slices the packet.
#[inline(never)]
fn slow_path(link: Link, ts: Ts, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    let sliced = match link {
        Link::Ethernet => LaxSlicedPacket::from_ethernet(frame).map_err(|_| Skip::Truncated)?,
        Link::Sll => {
            // 16-byte header; protocol (an EtherType for IP) in the last two bytes.
            let hdr = frame.get(..16).ok_or(Skip::Truncated)?;
            let proto = u16::from_be_bytes([hdr[14], hdr[15]]);
            LaxSlicedPacket::from_ether_type(EtherType(proto), &frame[16..])
        }
        Link::Sll2 => {
            // 20-byte header; protocol first. etherparse has no SLL2, so it is stripped here.
            let hdr = frame.get(..20).ok_or(Skip::Truncated)?;
            let proto = u16::from_be_bytes([hdr[0], hdr[1]]);
            LaxSlicedPacket::from_ether_type(EtherType(proto), &frame[20..])
        }
        Link::Raw => from_ip(frame)?,
        Link::Null => {
            // The family's byte order depends on the capturing host; the IP version nibble does not.
            from_ip(frame.get(4..).ok_or(Skip::Truncated)?)?
        }
    };
    let net = match sliced.net {
        Some(net) => net,
        None => {
            return Err(match sliced.stop_err {
                Some((etherparse::err::packet::SliceError::Len(_), _)) => Skip::Truncated,
                Some(_) => Skip::Malformed,
                None => Skip::NotIp,
            })
        }
    };
    let (src, dst, payload, wire_len) = match &net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let p = v4.payload();
            let header_len = h.slice().len() + v4.extensions().auth.map_or(0, |a| a.slice().len());
            let total = usize::from(h.total_len());
            // A zero or short total length (TSO on the capturing host) falls back to what was captured.
            let wire = if total >= header_len && (total > header_len || !p.incomplete) {
                total - header_len
            } else {
                p.payload.len()
            };
            (Addr::v4(h.source()), Addr::v4(h.destination()), p, wire)
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            let p = v6.payload();
            let plen = usize::from(h.payload_length());
            let ext = v6.extensions().slice().len();
            let wire = if plen >= ext && plen > 0 { plen - ext } else { p.payload.len() };
            (Addr::v6(h.source()), Addr::v6(h.destination()), p, wire)
        }
    };
    // Fragments would need reassembly; health checks and their answers never fragment.
    if payload.fragmented {
        return Err(Skip::Fragment);
    }
    if payload.ip_number != etherparse::IpNumber::TCP {
        return Err(Skip::NotTcp);
    }
    tcp_fixed(ts, src, dst, payload.payload, wire_len)
}

/// The common case read directly: Ethernet (optionally one VLAN tag) or Linux cooked capture,
/// carrying unfragmented IPv4 or IPv6 whose next header is TCP. Building etherparse's full layered
/// view cost as much per packet as all of libpcap's reading; anything else (options we must
/// validate, extension headers, fragments, odd link layers, damage) goes to etherparse below.
/// The segment goes to `ok`; `ok` comes back unused when the frame needs etherparse.
#[inline(always)]
fn fast_path<'a, R, F: FnOnce(Segment<'a>) -> R>(link: Link, ts: Ts, f: &'a [u8], ok: F) -> Result<R, F> {
    if link == Link::Ethernet {
        if let Some(checked) = ether_ipv4_tcp_check(f) {
            // Built right in the call, not moved out of an Option: it is ~100 bytes.
            return Ok(ok(ether_ipv4_tcp_segment(ts, f, checked)));
        }
    }
    match fast_path_general(link, ts, f) {
        Some(seg) => Ok(ok(seg)),
        None => Err(ok),
    }
}

/// The commonest frame of all: Ethernet, IPv4 without options, TCP. All three fixed headers are
/// read from one 54-byte view, one length check instead of one per field. Returns the headers,
/// the IP total length and the TCP data offset.
#[inline(always)]
fn ether_ipv4_tcp_check(f: &[u8]) -> Option<(&[u8; 54], &[u8; 20], usize, usize)> {
    let h: &[u8; 54] = f.first_chunk()?;
    let (_, t) = h.split_last_chunk::<20>()?;
    // IPv4 with a 20-byte header, TCP, not a fragment.
    if be16(h, 12) != 0x0800 || h[14] != 0x45 || h[23] != 6 || be16(h, 20) & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(be16(h, 16));
    let data_off = usize::from(h[46] >> 4) * 4;
    if total < 40 || data_off < 20 || data_off > total - 20 {
        return None;
    }
    Some((h, t, total, data_off))
}

/// The segment of a frame [`ether_ipv4_tcp_check`] accepted.
#[inline(always)]
fn ether_ipv4_tcp_segment<'a>(
    ts: Ts,
    f: &'a [u8],
    (h, t, total, data_off): (&[u8; 54], &[u8; 20], usize, usize),
) -> Segment<'a> {
    tcp_segment(
        ts,
        Addr::v4([h[26], h[27], h[28], h[29]]),
        Addr::v4([h[30], h[31], h[32], h[33]]),
        t,
        total - 20 - data_off,
        f.get(34 + data_off..f.len().min(14 + total)).unwrap_or(&[]),
    )
}

/// A segment from a whole fixed TCP header `t`.
#[inline(always)]
fn tcp_segment<'a>(ts: Ts, src: Addr, dst: Addr, t: &[u8; 20], payload_len: usize, payload: &'a [u8]) -> Segment<'a> {
    Segment {
        ts,
        src,
        dst,
        sport: be16(t, 0),
        dport: be16(t, 2),
        seq: be32(t, 4),
        ack: be32(t, 8),
        flags: t[13] & 0x3f,
        window: Some(be16(t, 14)),
        payload_len: payload_len as u32,
        payload,
    }
}

/// Ethernet with a VLAN tag, Linux cooked captures, IPv6, IPv4 options, cut TCP headers.
#[inline(always)]
fn fast_path_general(link: Link, ts: Ts, f: &[u8]) -> Option<Segment<'_>> {
    // Fixed-size array views: one length check each, then plain loads.
    let (ethertype, l3) = match link {
        Link::Ethernet => {
            let h: &[u8; 18] = f.get(..18)?.try_into().ok()?;
            let et = be16(h, 12);
            if et == 0x8100 {
                (be16(h, 16), 18)
            } else {
                (et, 14)
            }
        }
        Link::Sll2 => (u16::from_be_bytes([*f.first()?, *f.get(1)?]), 20),
        Link::Sll => (u16::from_be_bytes([*f.get(14)?, *f.get(15)?]), 16),
        _ => return None,
    };
    let ip = f.get(l3..)?;
    match ethertype {
        0x0800 => {
            let h: &[u8; 20] = ip.get(..20)?.try_into().ok()?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            // Version 4, TCP, not a fragment (MF clear, offset 0), a sane header and total length.
            if h[0] >> 4 != 4 || h[9] != 6 || ihl < 20 || (be16(h, 6) & 0x3fff) != 0 {
                return None;
            }
            let total = usize::from(be16(h, 2));
            if total < ihl + 20 {
                return None;
            }
            let src = Addr::v4([h[12], h[13], h[14], h[15]]);
            let dst = Addr::v4([h[16], h[17], h[18], h[19]]);
            let captured = ip.get(ihl..)?;
            tcp_fast(ts, src, dst, &captured[..captured.len().min(total - ihl)], total - ihl)
        }
        0x86dd => {
            let h: &[u8; 40] = ip.get(..40)?.try_into().ok()?;
            let plen = usize::from(be16(h, 4));
            if h[0] >> 4 != 6 || h[6] != 6 || plen < 20 {
                return None;
            }
            let src = Addr::v6(h[8..24].try_into().ok()?);
            let dst = Addr::v6(h[24..40].try_into().ok()?);
            let captured = &ip[40..];
            tcp_fast(ts, src, dst, &captured[..captured.len().min(plen)], plen)
        }
        _ => None,
    }
}

#[inline(always)]
fn be16<const N: usize>(h: &[u8; N], i: usize) -> u16 {
    u16::from_be_bytes([h[i], h[i + 1]])
}

#[inline(always)]
fn be32<const N: usize>(h: &[u8; N], i: usize) -> u32 {
    u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]])
}

/// [`tcp_fixed`] for a whole 20-byte header without options that would need checking; a cut
/// header goes the careful way.
#[inline(always)]
fn tcp_fast(ts: Ts, src: Addr, dst: Addr, seg: &[u8], wire_len: usize) -> Option<Segment<'_>> {
    let Some(t) = seg.get(..20) else { return tcp_fixed(ts, src, dst, seg, wire_len).ok() };
    let t: &[u8; 20] = t.try_into().ok()?;
    let data_off = usize::from(t[12] >> 4) * 4;
    // The captured bytes never exceed the wire length here: the IP length bounded them.
    if data_off < 20 || data_off > wire_len {
        return None;
    }
    Some(tcp_segment(ts, src, dst, t, wire_len - data_off, seg.get(data_off..).unwrap_or(&[])))
}

fn from_ip(data: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    match data.first().map(|b| b >> 4) {
        None => Err(Skip::Truncated),
        Some(4) | Some(6) => LaxSlicedPacket::from_ip(data).map_err(|e| match e {
            etherparse::err::ip::LaxHeaderSliceError::Len(_) => Skip::Truncated,
            etherparse::err::ip::LaxHeaderSliceError::Content(_) => Skip::Malformed,
        }),
        Some(_) => Err(Skip::NotIp),
    }
}

/// Reads the fixed TCP header fields by hand. `seg` is the captured TCP bytes, `wire_len` the
/// segment's length on the wire. At least 14 bytes (ports, sequence numbers, offset, flags) are
/// required; the window is optional so that a 14..20-byte cut still counts.
pub fn tcp_fixed(ts: Ts, src: Addr, dst: Addr, seg: &[u8], wire_len: usize) -> Result<Segment<'_>, Skip> {
    if seg.len() < 14 {
        return Err(Skip::Truncated);
    }
    let be16 = |i: usize| u16::from_be_bytes([seg[i], seg[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([seg[i], seg[i + 1], seg[i + 2], seg[i + 3]]);
    let data_off = usize::from(seg[12] >> 4) * 4;
    if data_off < 20 {
        return Err(Skip::Malformed);
    }
    let wire_len = wire_len.max(seg.len());
    if data_off > wire_len {
        return Err(Skip::Malformed);
    }
    let payload = seg.get(data_off..).unwrap_or(&[]);
    Ok(Segment {
        ts,
        src,
        dst,
        sport: be16(0),
        dport: be16(2),
        seq: be32(4),
        ack: be32(8),
        flags: seg[13] & 0x3f,
        window: if seg.len() >= 16 { Some(be16(14)) } else { None },
        payload_len: u32::try_from(wire_len - data_off).unwrap_or(u32::MAX),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal IPv4/TCP packet built by hand: 20-byte IP header + 20-byte TCP header + payload.
    pub(crate) fn ipv4_tcp(flags: u8, payload: &[u8]) -> Vec<u8> {
        let total = 40 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&8080u16.to_be_bytes());
        p[24..28].copy_from_slice(&1000u32.to_be_bytes());
        p[28..32].copy_from_slice(&2000u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        p[40..].copy_from_slice(payload);
        p
    }

    fn ether(ethertype: u16, inner: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(inner);
        f
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let f = ether(0x0800, &ipv4_tcp(SYN, b""));
        let s = decode(Link::Ethernet, 5, &f).unwrap();
        assert_eq!((s.sport, s.dport, s.seq, s.ack), (40000, 8080, 1000, 2000));
        assert_eq!(s.flags, SYN);
        assert_eq!(s.payload_len, 0);
        assert_eq!(s.src.ip(), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut f = ether(0x0800, &ipv4_tcp(ACK, b""));
        f.extend_from_slice(&[0u8; 6]); // minimum-frame padding
        let s = decode(Link::Ethernet, 0, &f).unwrap();
        assert_eq!(s.payload_len, 0);
    }

    #[test]
    fn qinq_vlan_tags() {
        let mut inner = vec![0x00, 0x2a, 0x81, 0x00, 0x00, 0x07, 0x08, 0x00];
        inner.extend_from_slice(&ipv4_tcp(ACK | PSH, b"GET / HTTP/1.0\r\n\r\n"));
        let f = ether(0x88a8, &inner);
        let s = decode(Link::Ethernet, 0, &f).unwrap();
        assert_eq!(s.payload_len, 18);
        assert_eq!(s.payload, b"GET / HTTP/1.0\r\n\r\n");
    }

    #[test]
    fn snaplen_cut_keeps_wire_length() {
        let f = ether(0x0800, &ipv4_tcp(ACK, &[7u8; 500]));
        let cut = &f[..60];
        let s = decode(Link::Ethernet, 0, cut).unwrap();
        assert_eq!(s.payload_len, 500);
        assert_eq!(s.payload.len(), 6);
    }

    #[test]
    fn cut_inside_tcp_header_still_gives_flags() {
        let f = ether(0x0800, &ipv4_tcp(RST | ACK, b""));
        let s = decode(Link::Ethernet, 0, &f[..14 + 20 + 14]).unwrap();
        assert_eq!(s.flags, RST | ACK);
        assert_eq!(s.window, None);
        assert_eq!(decode(Link::Ethernet, 0, &f[..14 + 20 + 13]).unwrap_err(), Skip::Truncated);
    }

    #[test]
    fn sll2_and_null_and_raw() {
        let ip = ipv4_tcp(SYN, b"");
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(decode(Link::Sll2, 0, &sll2).unwrap().dport, 8080);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        assert_eq!(decode(Link::Null, 0, &null).unwrap().dport, 8080);
        assert_eq!(decode(Link::Raw, 0, &ip).unwrap().dport, 8080);
    }

    #[test]
    fn non_tcp_and_non_ip_are_counted_reasons() {
        let mut udp = ipv4_tcp(0, b"");
        udp[9] = 17;
        assert_eq!(decode(Link::Raw, 0, &udp).unwrap_err(), Skip::NotTcp);
        assert_eq!(decode(Link::Ethernet, 0, &ether(0x0806, &[0u8; 28])).unwrap_err(), Skip::NotIp);
        assert_eq!(decode(Link::Raw, 0, &[]).unwrap_err(), Skip::Truncated);
        assert_eq!(decode(Link::Raw, 0, &[0x20, 1, 2]).unwrap_err(), Skip::NotIp);
    }

    #[test]
    fn bad_data_offset_is_malformed() {
        let mut ip = ipv4_tcp(ACK, b"");
        ip[32] = 2 << 4;
        assert_eq!(decode(Link::Raw, 0, &ip).unwrap_err(), Skip::Malformed);
    }

    /// The fast path must agree with etherparse wherever it answers.
    fn slow(link: Link, f: &[u8]) -> Option<(u16, u16, u32, u32, u8, u32, usize)> {
        // Force the etherparse path by decoding through a link layer the fast path skips.
        let inner = match link {
            Link::Ethernet => f.get(14..)?.to_vec(),
            _ => return None,
        };
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&inner);
        let s = decode(Link::Null, 0, &null).ok()?;
        Some((s.sport, s.dport, s.seq, s.ack, s.flags, s.payload_len, s.payload.len()))
    }

    #[test]
    fn fast_path_agrees_with_etherparse() {
        let mut cases = vec![
            ether(0x0800, &ipv4_tcp(SYN, b"")),
            ether(0x0800, &ipv4_tcp(ACK | PSH, b"GET /health HTTP/1.1\r\n\r\n")),
            ether(0x0800, &ipv4_tcp(RST | ACK, &[1u8; 300]))[..80].to_vec(),
        ];
        let mut padded = ether(0x0800, &ipv4_tcp(ACK, b""));
        padded.extend_from_slice(&[0u8; 6]);
        cases.push(padded);
        for f in &cases {
            let fast = fast_path(Link::Ethernet, 0, f, |s| s).ok().expect("common case");
            let got = (fast.sport, fast.dport, fast.seq, fast.ack, fast.flags, fast.payload_len, fast.payload.len());
            assert_eq!(Some(got), slow(Link::Ethernet, f), "{f:?}");
        }
        // The 54-byte shortcut and the general fast path agree on every prefix and on every
        // single-byte change of the frame's headers.
        let base = ether(0x0800, &ipv4_tcp(ACK | PSH, b"GET / HTTP/1.1\r\n"));
        let key = |s: Segment<'_>| {
            (s.src, s.dst, s.sport, s.dport, s.seq, s.ack, s.flags, s.window, s.payload_len, s.payload.to_vec())
        };
        let mut variants: Vec<Vec<u8>> = (0..=base.len()).map(|n| base[..n].to_vec()).collect();
        for i in 12..54 {
            for v in [0u8, 0x01, 0x06, 0x20, 0x45, 0x46, 0x50, 0xff] {
                let mut f = base.clone();
                f[i] = v;
                variants.push(f);
            }
        }
        let mut shortcut = 0;
        for f in &variants {
            if let Some(checked) = ether_ipv4_tcp_check(f) {
                let s = ether_ipv4_tcp_segment(0, f, checked);
                shortcut += 1;
                assert_eq!(Some(key(s)), fast_path_general(Link::Ethernet, 0, f).map(key), "{f:?}");
            }
        }
        assert!(shortcut > 100, "the shortcut took only {shortcut} frames");
        // Fragments and options-bearing headers are left to etherparse.
        let mut frag = ether(0x0800, &ipv4_tcp(ACK, b"x"));
        frag[14 + 6] = 0x20;
        assert!(fast_path(Link::Ethernet, 0, &frag, |s| s).is_err());
        assert_eq!(decode(Link::Ethernet, 0, &frag).unwrap_err(), Skip::Fragment);
    }

    #[test]
    fn any_bytes_never_panic() {
        // Every prefix and every single-byte corruption of a valid frame decodes or skips.
        let f = ether(0x86dd, &{
            let mut v6 = vec![0u8; 40];
            v6[0] = 0x60;
            v6[4..6].copy_from_slice(&20u16.to_be_bytes());
            v6[6] = 6;
            v6[7] = 64;
            v6.extend_from_slice(&ipv4_tcp(SYN, b"")[20..]);
            v6
        });
        assert_eq!(decode(Link::Ethernet, 0, &f).unwrap().dport, 8080);
        for link in [Link::Ethernet, Link::Sll, Link::Sll2, Link::Raw, Link::Null] {
            for n in 0..=f.len() {
                let _ = decode(link, 0, &f[..n]);
            }
            for i in 0..f.len() {
                for b in [0u8, 0xff, 0x45, 0x60] {
                    let mut g = f.clone();
                    g[i] = b;
                    let _ = decode(link, 0, &g);
                }
            }
        }
    }
}
