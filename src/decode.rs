//! Decode: turns one captured frame into a TCP segment view, or a counted reason to skip it.
//!
//! Decoding is total: any byte string yields either a [`Segment`] or a [`Skip`]; nothing here
//! panics or allocates. Link layers libpcap hands us (Ethernet with 802.1Q/QinQ tags, Linux cooked
//! SLL and SLL2, raw IP, BSD NULL/LOOP) are peeled off here, and so are overlays ([`Encap`]: VXLAN,
//! Geneve, GRE and ERSPAN, IP-in-IP, MPLS), at most four deep; etherparse slices the IP layer
//! (IPv4 options, IPv6 extension headers). The fixed 20-byte TCP header is read by hand because
//! a small snaplen often cuts the TCP options, and etherparse then refuses the whole header while
//! the ports, sequence numbers and flags we need are all present.

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket};
use std::net::{IpAddr, Ipv6Addr};

/// Packet time in nanoseconds since the Unix epoch.
pub type Ts = i64;

/// Seconds from `a` to `b`, without overflow whatever the timestamps (damaged captures have any).
#[inline]
pub(crate) fn secs(a: Ts, b: Ts) -> f64 {
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
    pub(crate) fn from_dlt(dlt: i32) -> Option<Link> {
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
    pub(crate) const ALL: [Skip; 5] = [Skip::Truncated, Skip::NotIp, Skip::NotTcp, Skip::Fragment, Skip::Malformed];
    pub(crate) fn name(self) -> &'static str {
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
    pub(crate) const fn v6(o: [u8; 16]) -> Addr {
        Addr(u128::from_be_bytes(o))
    }
    /// The address as the standard library's type (IPv4 again for mapped ones).
    pub(crate) fn ip(self) -> IpAddr {
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
    pub(crate) fn has(&self, flag: u8) -> bool {
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
pub(crate) fn decode_then<'a, R>(
    link: Link,
    ts: Ts,
    frame: &'a [u8],
    ok: impl FnOnce(Segment<'a>) -> R,
    skip: impl FnOnce(Skip) -> R,
) -> R {
    decode_encap_then(link, ts, frame, |seg, _| ok(seg), skip)
}

/// [`decode_then`], also saying which encapsulation, if any, the segment was found inside.
#[inline(always)]
pub fn decode_encap_then<'a, R>(
    link: Link,
    ts: Ts,
    frame: &'a [u8],
    ok: impl FnOnce(Segment<'a>, Encap) -> R,
    skip: impl FnOnce(Skip) -> R,
) -> R {
    match fast_path(link, ts, frame, ok) {
        Ok(r) => r,
        Err(ok) => {
            let mut encap = Encap::None;
            match peel(link, ts, frame, 0, &mut encap) {
                Ok(seg) => ok(seg, encap),
                Err(e) => skip(e),
            }
        }
    }
}

/// A tunnel or label stack the TCP segment was carried in: the outer headers are counted by
/// kind, and the inner packet is analysed as if captured on the inner interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Encap {
    None = 0,
    /// VXLAN: UDP 4789, or Flannel's 8472.
    Vxlan,
    /// Geneve: UDP 6081.
    Geneve,
    /// GRE carrying Ethernet (0x6558) or IP.
    Gre,
    /// ERSPAN types I, II and III (in GRE).
    Erspan,
    /// IPv4 or IPv6 in IPv4 or IPv6 (Calico's IP-in-IP, 6in4, 4in6).
    IpInIp,
    /// MPLS labels over Ethernet.
    Mpls,
}

impl Encap {
    pub(crate) const ALL: [Encap; 7] =
        [Encap::None, Encap::Vxlan, Encap::Geneve, Encap::Gre, Encap::Erspan, Encap::IpInIp, Encap::Mpls];
    pub(crate) fn name(self) -> &'static str {
        match self {
            Encap::None => "none",
            Encap::Vxlan => "VXLAN",
            Encap::Geneve => "Geneve",
            Encap::Gre => "GRE",
            Encap::Erspan => "ERSPAN",
            Encap::IpInIp => "IP-in-IP",
            Encap::Mpls => "MPLS",
        }
    }
}

/// Tunnels inside tunnels are peeled this deep at most (a crafted packet cannot recurse further).
const MAX_DEPTH: u8 = 4;

/// The EtherType and what follows it, past any number of VLAN tags (at most 8), for the links
/// that carry one.
fn ether_payload(link: Link, f: &[u8]) -> Option<(u16, &[u8])> {
    let be = |i: usize| Some(u16::from_be_bytes([*f.get(i)?, *f.get(i + 1)?]));
    match link {
        Link::Ethernet => {
            let (mut et, mut off) = (be(12)?, 14);
            for _ in 0..8 {
                if !matches!(et, 0x8100 | 0x88a8 | 0x9100) {
                    break;
                }
                et = be(off + 2)?;
                off += 4;
            }
            Some((et, f.get(off..)?))
        }
        Link::Sll => Some((be(14)?, f.get(16..)?)),
        Link::Sll2 => Some((be(0)?, f.get(20..)?)),
        Link::Raw | Link::Null => None,
    }
}

/// An MPLS label stack: the labels up to the bottom of stack, then IPv4 or IPv6 by its version
/// nibble (anything else, such as a pseudowire, is not IP).
fn mpls(p: &[u8]) -> Result<&[u8], Skip> {
    for i in 0..16 {
        let label = p.get(i * 4..i * 4 + 4).ok_or(Skip::Truncated)?;
        if label[2] & 0x01 != 0 {
            return Ok(&p[i * 4 + 4..]);
        }
    }
    Err(Skip::Malformed)
}

/// The frame inside a UDP tunnel (`udp` starts at the UDP header), and its link layer.
fn udp_tunnel(udp: &[u8]) -> Option<(Encap, Link, &[u8])> {
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let h = udp.get(8..)?;
    match dport {
        // VXLAN: flags with the I bit, 3 reserved, VNI, reserved; Ethernet after 8 bytes.
        4789 | 8472 if h.first()? & 0x08 != 0 => Some((Encap::Vxlan, Link::Ethernet, h.get(8..)?)),
        // Geneve: version 0, options length in 4-byte words, protocol type.
        6081 if h.first()? >> 6 == 0 => {
            let opts = usize::from(h[0] & 0x3f) * 4;
            let inner = h.get(8 + opts..)?;
            match u16::from_be_bytes([*h.get(2)?, *h.get(3)?]) {
                0x6558 => Some((Encap::Geneve, Link::Ethernet, inner)),
                0x0800 | 0x86dd => Some((Encap::Geneve, Link::Raw, inner)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The frame inside GRE (RFC 2784/2890), ERSPAN I, II and III included.
fn gre(g: &[u8]) -> Option<(Encap, Link, &[u8])> {
    let (flags, ver) = (*g.first()?, g.get(1)? & 0x07);
    if ver != 0 {
        return None; // PPTP's enhanced GRE carries PPP
    }
    let proto = u16::from_be_bytes([*g.get(2)?, *g.get(3)?]);
    let seq = flags & 0x10 != 0;
    let off = 4 + 4 * usize::from(flags & 0xc0 != 0) + 4 * usize::from(flags & 0x20 != 0) + 4 * usize::from(seq);
    let p = g.get(off..)?;
    match proto {
        0x6558 => Some((Encap::Gre, Link::Ethernet, p)),
        0x0800 | 0x86dd => Some((Encap::Gre, Link::Raw, p)),
        // ERSPAN type II has a sequence number and an 8-byte header; type I has neither.
        0x88be if seq => Some((Encap::Erspan, Link::Ethernet, p.get(8..)?)),
        0x88be => Some((Encap::Erspan, Link::Ethernet, p)),
        // ERSPAN type III: 12 bytes, and 8 more of platform data when the O bit is set.
        0x22eb => {
            let extra = if p.get(11)? & 0x01 != 0 { 8 } else { 0 };
            Some((Encap::Erspan, Link::Ethernet, p.get(12 + extra..)?))
        }
        _ => None,
    }
}

/// Everything the fast path leaves: etherparse slices the packet; tunnels are peeled here, the
/// outermost one noted in `encap`.
#[inline(never)]
fn peel<'a>(link: Link, ts: Ts, frame: &'a [u8], depth: u8, encap: &mut Encap) -> Result<Segment<'a>, Skip> {
    let inner = |kind: Encap, link: Link, f: &'a [u8], encap: &mut Encap| {
        if depth >= MAX_DEPTH {
            return Err(Skip::NotTcp);
        }
        if *encap == Encap::None {
            *encap = kind;
        }
        peel(link, ts, f, depth + 1, encap)
    };
    let sliced = match link {
        Link::Ethernet | Link::Sll | Link::Sll2 => {
            let (et, rest) = ether_payload(link, frame).ok_or(Skip::Truncated)?;
            if matches!(et, 0x8847 | 0x8848) {
                return inner(Encap::Mpls, Link::Raw, mpls(rest)?, encap);
            }
            LaxSlicedPacket::from_ether_type(EtherType(et), rest)
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
    match payload.ip_number.0 {
        6 => tcp_fixed(ts, src, dst, payload.payload, wire_len),
        17 => match udp_tunnel(payload.payload) {
            Some((kind, link, f)) => inner(kind, link, f, encap),
            None => Err(Skip::NotTcp),
        },
        47 => match gre(payload.payload) {
            Some((kind, link, f)) => inner(kind, link, f, encap),
            None => Err(Skip::NotTcp),
        },
        4 | 41 => inner(Encap::IpInIp, Link::Raw, payload.payload, encap),
        _ => Err(Skip::NotTcp),
    }
}

/// The common case read directly: Ethernet (optionally one VLAN tag) or Linux cooked capture,
/// carrying unfragmented IPv4 or IPv6 whose next header is TCP. Building etherparse's full layered
/// view cost as much per packet as all of libpcap's reading; anything else (options we must
/// validate, extension headers, fragments, odd link layers, damage) goes to etherparse below.
/// The segment goes to `ok`; `ok` comes back unused when the frame needs etherparse.
#[inline(always)]
fn fast_path<'a, R, F: FnOnce(Segment<'a>, Encap) -> R>(link: Link, ts: Ts, f: &'a [u8], ok: F) -> Result<R, F> {
    if link == Link::Ethernet {
        if let Some(checked) = ether_ipv4_tcp_check(f) {
            // Built right in the call, not moved out of an Option: it is ~100 bytes.
            return Ok(ok(ether_ipv4_tcp_segment(ts, f, checked), Encap::None));
        }
    }
    match fast_path_general(link, ts, f) {
        Some(seg) => Ok(ok(seg, Encap::None)),
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
pub(crate) fn tcp_fixed(ts: Ts, src: Addr, dst: Addr, seg: &[u8], wire_len: usize) -> Result<Segment<'_>, Skip> {
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

/// What the decoder saw, for the summary: frames, bytes, TCP segments and every skip by reason.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeStats {
    pub frames: u64,
    pub(crate) wire_bytes: u64,
    pub tcp: u64,
    pub(crate) skipped: [u64; Skip::ALL.len()],
    /// TCP segments whose captured bytes were cut by the snaplen (still analysed).
    pub(crate) cut: u64,
    pub(crate) first_ts: Option<Ts>,
    pub last_ts: Option<Ts>,
    /// Bytes of input read so far and in total (files), updated at each tick.
    pub(crate) input: (u64, u64),
    /// Connections finished early because the flow table was full (`--max-flows`).
    pub(crate) evicted: u64,
    /// TCP segments seen a second time on another interface of the same `-i any` capture (a veth
    /// and the bridge it is on), counted once.
    pub duplicates: u64,
    /// Most connections tracked at once.
    pub(crate) peak_flows: usize,
    /// TCP segments found inside a tunnel, by the outermost one ([`Encap`]; `None` unused).
    pub(crate) encapsulated: [u64; Encap::ALL.len()],
    /// The kernel's counters at the end of a live capture (`None` for files).
    pub(crate) kernel: Option<DropStats>,
}

impl DecodeStats {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().sum()
    }
}

/// The kernel's counters of a live capture (libpcap's `pcap_stats`), reported beside the decoder's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropStats {
    pub received: u32,
    pub dropped_kernel: u32,
    pub dropped_iface: u32,
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
            let fast = fast_path(Link::Ethernet, 0, f, |s, _| s).ok().expect("common case");
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
        assert!(fast_path(Link::Ethernet, 0, &frag, |s, _| s).is_err());
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

    /// An outer IPv4 header (192.0.2.1 → 192.0.2.2) around `payload` with IP protocol `proto`.
    fn outer_v4(proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[192, 0, 2, 1]);
        p[16..20].copy_from_slice(&[192, 0, 2, 2]);
        p.extend_from_slice(payload);
        p
    }

    fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&54321u16.to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(payload);
        u
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// The inner probe: Ethernet, IPv4 10.0.0.1 → 10.0.0.2, TCP 40000 → 8080 with a request.
    fn inner_eth() -> Vec<u8> {
        ether(0x0800, &ipv4_tcp(ACK | PSH, b"GET / HTTP/1.0\r\n\r\n"))
    }

    fn check(f: &[u8], link: Link, want: Encap) {
        let mut got = None;
        decode_encap_then(link, 0, f, |s, e| got = Some((s.sport, s.dport, s.payload_len, s.src.ip(), e)), |_| ());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(got, Some((40000, 8080, 18, ip, want)), "{want:?}: {f:?}");
    }

    /// Every overlay the issue names: the inner TCP comes out as if captured inside, and the
    /// outermost tunnel is named.
    #[test]
    fn overlays_are_peeled_to_the_inner_tcp() {
        let eth = inner_eth();
        let ip = ipv4_tcp(ACK | PSH, b"GET / HTTP/1.0\r\n\r\n");
        let vxlan_hdr = [0x08u8, 0, 0, 0, 0, 0, 42, 0];
        for port in [4789, 8472] {
            let f = ether(0x0800, &outer_v4(17, &udp(port, &cat(&[&vxlan_hdr, &eth]))));
            check(&f, Link::Ethernet, Encap::Vxlan);
        }
        // Geneve with 8 bytes of options, carrying Ethernet; and carrying IP directly.
        let gen = |proto: u16, opts: &[u8], inner: &[u8]| {
            let mut h = vec![(opts.len() / 4) as u8, 0, 0, 0, 0, 0, 7, 0];
            h[2..4].copy_from_slice(&proto.to_be_bytes());
            cat(&[&h, opts, inner])
        };
        check(&ether(0x0800, &outer_v4(17, &udp(6081, &gen(0x6558, &[1; 8], &eth)))), Link::Ethernet, Encap::Geneve);
        check(&ether(0x0800, &outer_v4(17, &udp(6081, &gen(0x0800, &[], &ip)))), Link::Ethernet, Encap::Geneve);
        // GRE: IP with key and sequence number; Ethernet (transparent bridging) with a checksum.
        check(&ether(0x0800, &outer_v4(47, &cat(&[&[0x30, 0, 0x08, 0x00], &[0; 8], &ip]))), Link::Ethernet, Encap::Gre);
        check(
            &ether(0x0800, &outer_v4(47, &cat(&[&[0x80, 0, 0x65, 0x58], &[0; 4], &eth]))),
            Link::Ethernet,
            Encap::Gre,
        );
        // ERSPAN type I (no sequence, no header), II (sequence + 8 bytes), III (12 bytes, + 8 with O).
        check(&ether(0x0800, &outer_v4(47, &cat(&[&[0x00, 0, 0x88, 0xbe], &eth]))), Link::Ethernet, Encap::Erspan);
        check(
            &ether(0x0800, &outer_v4(47, &cat(&[&[0x10, 0, 0x88, 0xbe], &[0; 4], &[0x10, 0, 0, 1, 0, 0, 0, 0], &eth]))),
            Link::Ethernet,
            Encap::Erspan,
        );
        let mut e3 = [0u8; 12];
        e3[11] = 0x01;
        check(
            &ether(0x0800, &outer_v4(47, &cat(&[&[0x10, 0, 0x22, 0xeb], &[0; 4], &e3, &[0; 8], &eth]))),
            Link::Ethernet,
            Encap::Erspan,
        );
        // IP-in-IP (Calico) and IPv4 in IPv6.
        check(&ether(0x0800, &outer_v4(4, &ip)), Link::Ethernet, Encap::IpInIp);
        let mut v6 = vec![0u8; 40];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&(ip.len() as u16).to_be_bytes());
        v6[6] = 4;
        v6[7] = 64;
        check(&ether(0x86dd, &cat(&[&v6, &ip])), Link::Ethernet, Encap::IpInIp);
        // MPLS: two labels, the second with bottom-of-stack; behind a VLAN tag, and in SLL2.
        let labels = [0x00u8, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
        check(&ether(0x8847, &cat(&[&labels, &ip])), Link::Ethernet, Encap::Mpls);
        check(&ether(0x8100, &cat(&[&[0, 5, 0x88, 0x47], &labels, &ip])), Link::Ethernet, Encap::Mpls);
        let mut sll2 = vec![0x88, 0x47];
        sll2.extend_from_slice(&[0u8; 18]);
        check(&cat(&[&sll2, &labels, &ip]), Link::Sll2, Encap::Mpls);
        // VXLAN inside GRE: the outermost is named.
        let nested = outer_v4(47, &cat(&[&[0, 0, 0x08, 0x00], &outer_v4(17, &udp(4789, &cat(&[&vxlan_hdr, &eth])))]));
        check(&ether(0x0800, &nested), Link::Ethernet, Encap::Gre);
        // Three VLAN tags.
        check(
            &ether(0x88a8, &cat(&[&[0, 1, 0x81, 0x00], &[0, 2, 0x81, 0x00], &[0, 3, 0x08, 0x00], &ip])),
            Link::Ethernet,
            Encap::None,
        );
    }

    #[test]
    fn overlays_that_are_not_tcp_inside_are_counted_reasons() {
        let vxlan_hdr = [0x08u8, 0, 0, 0, 0, 0, 42, 0];
        // Plain UDP to another port, VXLAN without its I flag, an ARP inside VXLAN, PPTP GRE.
        let eth = inner_eth();
        assert_eq!(decode(Link::Raw, 0, &outer_v4(17, &udp(53, &eth))).unwrap_err(), Skip::NotTcp);
        assert_eq!(decode(Link::Raw, 0, &outer_v4(17, &udp(4789, &cat(&[&[0; 8], &eth])))).unwrap_err(), Skip::NotTcp);
        let arp = ether(0x0806, &[0u8; 28]);
        assert_eq!(
            decode(Link::Raw, 0, &outer_v4(17, &udp(4789, &cat(&[&vxlan_hdr, &arp])))).unwrap_err(),
            Skip::NotIp
        );
        assert_eq!(
            decode(Link::Raw, 0, &outer_v4(47, &[0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 0])).unwrap_err(),
            Skip::NotTcp
        );
        // IP-in-IP nested past the depth limit.
        let mut p = ipv4_tcp(SYN, b"");
        for _ in 0..=MAX_DEPTH {
            p = outer_v4(4, &p);
        }
        assert_eq!(decode(Link::Raw, 0, &p).unwrap_err(), Skip::NotTcp);
        // Every prefix and single-byte change of a VXLAN frame decodes or skips, never panics.
        let f = ether(0x0800, &outer_v4(17, &udp(4789, &cat(&[&vxlan_hdr, &eth]))));
        for n in 0..=f.len() {
            let _ = decode(Link::Ethernet, 0, &f[..n]);
        }
        for i in 0..f.len() {
            for b in [0u8, 0x01, 0x08, 0x45, 0x65, 0x88, 0xff] {
                let mut g = f.clone();
                g[i] = b;
                let _ = decode(Link::Ethernet, 0, &g);
            }
        }
    }
}
