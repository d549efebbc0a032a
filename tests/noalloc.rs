//! The per-packet path allocates nothing, tunnels and `-i any` copies included: a counting
//! allocator around decoding VXLAN, Geneve, GRE, IP-in-IP and MPLS frames and the duplicate check
//! of Linux cooked v2 frames.

use hcleak::decode::{decode_encap_then, Encap, Link};
use hcleak::pipeline::Dedup;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
    p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn tcp() -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&8080u16.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t
}

fn eth(et: u16, p: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(p);
    f
}

fn udp(dport: u16, p: &[u8]) -> Vec<u8> {
    let mut u = vec![0, 1, 0, 0, 0, 0, 0, 0];
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + p.len()) as u16).to_be_bytes());
    u.extend_from_slice(p);
    u
}

#[test]
fn decoding_tunnels_and_dropping_copies_allocates_nothing() {
    let inner_ip = ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], &tcp());
    let inner_eth = eth(0x0800, &inner_ip);
    let o = |proto, p: &[u8]| eth(0x0800, &ipv4(proto, [192, 0, 2, 1], [192, 0, 2, 2], p));
    let frames: Vec<(Vec<u8>, Encap)> = vec![
        (o(17, &udp(4789, &[&[0x08, 0, 0, 0, 0, 0, 1, 0][..], &inner_eth].concat())), Encap::Vxlan),
        (o(17, &udp(6081, &[&[0, 0, 0x65, 0x58, 0, 0, 1, 0][..], &inner_eth].concat())), Encap::Geneve),
        (o(47, &[&[0, 0, 0x08, 0x00][..], &inner_ip].concat()), Encap::Gre),
        (o(47, &[&[0x10, 0, 0x88, 0xbe, 0, 0, 0, 1][..], &[0; 8], &inner_eth].concat()), Encap::Erspan),
        (o(4, &inner_ip), Encap::IpInIp),
        (eth(0x8847, &[&[0, 0, 1, 64][..], &inner_ip].concat()), Encap::Mpls),
    ];
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 7, 0, 1, 4, 6, 0, 0, 0, 0, 0, 0, 0, 0];
    sll2.extend_from_slice(&inner_ip);
    let mut copy = sll2.clone();
    copy[7] = 3;
    let mut dedup = Dedup::default();
    let before = ALLOCS.load(Ordering::Relaxed);
    let (mut found, mut copies) = (0u64, 0u64);
    for i in 0..10_000i64 {
        for (f, want) in &frames {
            decode_encap_then(Link::Ethernet, i, f, |s, e| found += u64::from(s.dport == 8080 && e == *want), |_| ());
        }
        for (f, ts) in [(&sll2, i * 10_000_000), (&copy, i * 10_000_000 + 5_000)] {
            decode_encap_then(Link::Sll2, ts, f, |s, _| copies += u64::from(dedup.is_copy(Link::Sll2, f, &s)), |_| ());
        }
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(found, 60_000, "every tunnel decoded to its inner TCP");
    assert_eq!(copies, 10_000, "every second copy dropped");
    assert_eq!(allocs, 0, "allocations on the per-packet path");
}
