//! Hostile input (issue 6): every fixture capture, damaged in many ways, through the real binary.
//!
//! Each fixture (`fixtures/*.pcap`, `*.pcapng`, `fixtures/diag/*.pcap`) is parsed here — pcap's
//! 24-byte global header and 16-byte record headers, pcapng's blocks by their total-length fields —
//! and mutated: truncation at (sampled) record boundaries and inside records, bit flips in the
//! global header, record headers and the link/IP/TCP headers of a few records, caplen above len and
//! above the snaplen, zero-length records, extreme timestamps, wrong magic, and pcapng blocks with
//! bad lengths. Each mutant is written to a temp dir and analysed by the binary (`analyze FILE
//! --format json`, every sixth also `--flows --format tsv`) with two runs at a time, each killed
//! after 10 s (a hang) and limited to 4 GiB of address space (a runaway allocation aborts instead
//! of swapping). Every run must:
//!
//! - exit 0..=3, never by a signal and never 101 (a panic);
//! - print no "panicked" and at most one line on stderr, starting with `hcleak: `;
//! - when it must fail (cut inside a record, bad magic, …), exit 3 with exactly that one line;
//! - print a JSON document (or TSV whose rows all have the header's columns) when it prints anything;
//! - when the records before the damage are known (a cut at or inside a record, a mutation that
//!   keeps the record structure), count exactly those in `capture.packets`.
//!
//! Failing mutants are kept in the temp dir, named in the failure message, for replay. With
//! `HCLEAK_MUTATION_LOG=FILE` every run's mutant, exit code and stderr are written to FILE (to
//! review the error messages).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);
const THREADS: usize = 2;
/// Record boundaries cut at per file (besides the first three and the end).
const BOUNDARY_CUTS: usize = 8;
/// Records whose insides (header, data) are cut per file.
const INSIDE_CUTS: usize = 4;
/// Address-space cap for each run, KiB.
const VMEM_KIB: u64 = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Json,
    FlowsTsv,
    /// The default report table (for the regressions: text from the wire shown escaped).
    Table,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Anything but a crash, a hang or a noisy stderr.
    Survive,
    /// Survive, and count exactly this many packets.
    Packets(u64),
    /// Fail cleanly: exit 3, one stderr line.
    Fail,
    /// Fail cleanly after analysing exactly this many packets (the JSON report is still printed).
    FailAfter(u64),
}

struct Mutant {
    name: String,
    bytes: Vec<u8>,
    mode: Mode,
    expect: Expect,
    /// An intact capture analysed together with the mutant (merged by time), given first.
    companion: Option<PathBuf>,
}

/// Collects mutants of one fixture; every sixth also runs as `--flows --format tsv`.
struct Mutants {
    file: String,
    list: Vec<Mutant>,
    n: usize,
}

impl Mutants {
    fn add(&mut self, what: impl Into<String>, bytes: Vec<u8>, expect: Expect) {
        let name = format!("{}: {}", self.file, what.into());
        if self.n % 6 == 0 {
            // `--flows --format tsv` has no packet count to check; failures must fail the same way.
            let tsv = if let Expect::Packets(_) = expect { Expect::Survive } else { expect };
            let name = format!("{name} [--flows --format tsv]");
            self.list.push(Mutant { name, bytes: bytes.clone(), mode: Mode::FlowsTsv, expect: tsv, companion: None });
        }
        self.n += 1;
        self.list.push(Mutant { name, bytes, mode: Mode::Json, expect, companion: None });
    }
}

// ---------------------------------------------------------------------------------------------
// Byte helpers

fn rd32(b: &[u8], at: usize, le: bool) -> u32 {
    let a: [u8; 4] = b[at..at + 4].try_into().unwrap();
    if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    }
}

fn wr32(b: &mut [u8], at: usize, v: u32, le: bool) {
    let a = if le { v.to_le_bytes() } else { v.to_be_bytes() };
    b[at..at + 4].copy_from_slice(&a);
}

fn flipped(b: &[u8], at: usize, bit: u8) -> Vec<u8> {
    let mut v = b.to_vec();
    v[at] ^= 1 << bit;
    v
}

fn with32(b: &[u8], at: usize, v: u32, le: bool) -> Vec<u8> {
    let mut out = b.to_vec();
    wr32(&mut out, at, v, le);
    out
}

/// `count` indices spread evenly over `0..n` (all of them when there are few).
fn spread(n: usize, count: usize) -> Vec<usize> {
    if n <= count {
        return (0..n).collect();
    }
    let mut v: Vec<usize> = (0..count).map(|i| i * (n - 1) / (count - 1).max(1)).collect();
    v.dedup();
    v
}

/// Deterministic xorshift, so a failing mutant is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Offsets inside one frame worth flipping: link header, IP version/length/fragment/protocol, TCP
/// sequence, data offset and flags, as (offset, bit, label).
fn header_flips(frame: &[u8], link_len: usize) -> Vec<(usize, u8, String)> {
    let mut v = Vec::new();
    let mut push = |off: usize, bit: u8, what: &str| {
        if off < frame.len() {
            v.push((off, bit, format!("{what} (byte {off} bit {bit})")));
        }
    };
    if link_len > 0 {
        push(0, 0, "link header first byte");
        push(link_len - 1, 0, "link protocol low byte");
        push(link_len - 2, 3, "link protocol high byte");
    }
    let Some(&vb) = frame.get(link_len) else { return v };
    push(link_len, 4, "IP version");
    push(link_len, 0, "IP header length");
    push(link_len, 2, "IP header length");
    let tcp = if vb >> 4 == 6 {
        push(link_len + 4, 7, "IPv6 payload length high");
        push(link_len + 5, 0, "IPv6 payload length low");
        push(link_len + 6, 0, "IPv6 next header");
        push(link_len + 6, 3, "IPv6 next header");
        link_len + 40
    } else {
        push(link_len + 2, 7, "IPv4 total length high");
        push(link_len + 3, 0, "IPv4 total length low");
        push(link_len + 6, 5, "IPv4 more-fragments flag");
        push(link_len + 7, 0, "IPv4 fragment offset");
        push(link_len + 9, 0, "IPv4 protocol");
        link_len + usize::from(vb & 0x0f) * 4
    };
    push(tcp + 4, 7, "TCP sequence number");
    push(tcp + 12, 4, "TCP data offset");
    push(tcp + 12, 7, "TCP data offset");
    push(tcp + 13, 0, "TCP FIN");
    push(tcp + 13, 1, "TCP SYN");
    push(tcp + 13, 2, "TCP RST");
    push(tcp + 13, 4, "TCP ACK");
    v
}

fn link_header_len(dlt: u32) -> usize {
    match dlt {
        1 => 14,
        113 => 16,
        276 => 20,
        0 | 108 => 4,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// pcap

struct Pcap {
    le: bool,
    dlt: u32,
    /// (offset of the record header, caplen) of every intact record.
    records: Vec<(usize, usize)>,
    /// Where the intact records end (the file's length unless it is damaged).
    end: usize,
}

fn parse_pcap(b: &[u8]) -> Option<Pcap> {
    let le = match b.get(..4)? {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return None,
    };
    if b.len() < 24 {
        return None;
    }
    let dlt = rd32(b, 20, le) & 0xffff;
    let mut records = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let caplen = rd32(b, off + 8, le) as usize;
        if off + 16 + caplen > b.len() {
            break;
        }
        records.push((off, caplen));
        off += 16 + caplen;
    }
    Some(Pcap { le, dlt, records, end: off })
}

fn pcap_mutants(m: &mut Mutants, b: &[u8], p: &Pcap, rng: &mut Rng) {
    let n = p.records.len();
    let le = p.le;
    let boundary = |k: usize| if k < n { p.records[k].0 } else { p.end };
    let intact = &b[..p.end];
    let all = n as u64;

    // Truncation at record boundaries: the records kept are all analysed.
    let mut ks: Vec<usize> = vec![0, 1, 2, n];
    ks.extend(spread(n + 1, BOUNDARY_CUTS));
    ks.retain(|&k| k <= n);
    ks.sort_unstable();
    ks.dedup();
    for &k in &ks {
        m.add(format!("cut after {k} of {n} records"), b[..boundary(k)].to_vec(), Expect::Packets(k as u64));
    }
    // Truncation inside records: the records before the damage are analysed, and it says so.
    for k in spread(n, INSIDE_CUTS) {
        let (off, caplen) = p.records[k];
        m.add(format!("cut inside record {k}'s header"), b[..off + 7].to_vec(), Expect::FailAfter(k as u64));
        if caplen >= 2 {
            m.add(
                format!("cut inside record {k}'s data"),
                b[..off + 16 + caplen / 2].to_vec(),
                Expect::FailAfter(k as u64),
            );
        }
    }
    m.add("empty file", Vec::new(), Expect::Fail);
    m.add("cut inside the global header", b[..10].to_vec(), Expect::Fail);

    // Global header: bits of the magic, version, timezone, snaplen and link type, then chosen values.
    for (i, bit) in [(0, 0), (3, 7), (4, 1), (6, 0), (8, 7), (16, 3), (19, 7), (20, 1), (21, 0), (23, 7)] {
        m.add(format!("global header byte {i} bit {bit}"), flipped(intact, i, bit), Expect::Survive);
    }
    // libpcap cuts records longer than the header's snaplen to it: every record is still counted.
    m.add("snaplen 0", with32(intact, 16, 0, le), Expect::Packets(all));
    m.add("snaplen 1", with32(intact, 16, 1, le), Expect::Packets(all));
    m.add("snaplen 0xffffffff", with32(intact, 16, u32::MAX, le), Expect::Packets(all));
    m.add("caplen above the snaplen (snaplen 40)", with32(intact, 16, 40, le), Expect::Packets(all));
    m.add("link type 147 (unsupported)", with32(intact, 20, 147, le), Expect::Fail);
    m.add("link type 0xffff", with32(intact, 20, 0xffff, le), Expect::Fail);
    for dlt in [0u32, 1, 101, 113, 276] {
        if dlt != p.dlt {
            m.add(format!("link type {dlt} instead of {}", p.dlt), with32(intact, 20, dlt, le), Expect::Packets(all));
        }
    }
    m.add("version 0.0", with32(intact, 4, 0, le), Expect::Survive);

    // Wrong magic.
    let mut bad = intact.to_vec();
    bad[..4].copy_from_slice(b"abcd");
    m.add("magic 'abcd'", bad, Expect::Fail);
    let mut swapped = intact.to_vec();
    swapped[..4].reverse();
    m.add("magic of the other byte order", swapped, Expect::Survive);
    let mut nano = intact.to_vec();
    nano[..4].copy_from_slice(if le { &[0x4d, 0x3c, 0xb2, 0xa1] } else { &[0xa1, 0xb2, 0x3c, 0x4d] });
    if nano != intact {
        m.add("nanosecond magic on a microsecond file", nano, Expect::Packets(all));
    }
    let mut ng = intact.to_vec();
    ng[..4].copy_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a]);
    m.add("pcapng block type as magic", ng, Expect::Fail);

    if n == 0 {
        return;
    }
    // Record headers of a few records.
    for k in spread(n, 3) {
        let (off, _) = p.records[k];
        for (field, at, bit) in [
            ("ts_sec bit 31", 0, 31),
            ("ts_sec bit 24", 0, 24),
            ("ts_sec bit 0", 0, 0),
            ("ts_usec bit 31", 4, 31),
            ("caplen bit 0", 8, 0),
            ("caplen bit 18", 8, 18),
            ("len bit 0", 12, 0),
            ("len bit 31", 12, 31),
        ] {
            let v = rd32(b, off + at, le) ^ (1u32 << bit);
            // Flips that leave the record structure intact must still count every record.
            let expect = if at == 8 { Expect::Survive } else { Expect::Packets(all) };
            m.add(format!("record {k} {field}"), with32(intact, off + at, v, le), expect);
        }
        m.add(format!("record {k} len 0 (caplen > len)"), with32(intact, off + 12, 0, le), Expect::Packets(all));
        m.add(
            format!("record {k} caplen 262145 (above libpcap's maximum)"),
            with32(intact, off + 8, 262_145, le),
            Expect::FailAfter(k as u64),
        );
        m.add(
            format!("record {k} caplen 0xffffffff"),
            with32(intact, off + 8, u32::MAX, le),
            Expect::FailAfter(k as u64),
        );
        for (what, ts) in [("0", 0u32), ("0x80000000 (negative)", 0x8000_0000)] {
            m.add(format!("record {k} ts_sec {what}"), with32(intact, off, ts, le), Expect::Packets(all));
        }
    }

    // Zero-length records: inserted before the first, in the middle and at the end, and one
    // record's data removed.
    for k in [0, n / 2, n] {
        let at = boundary(k);
        let mut v = intact[..at].to_vec();
        let ts_from = p.records[k.min(n - 1)].0;
        v.extend_from_slice(&intact[ts_from..ts_from + 8]);
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&intact[at..]);
        m.add(format!("zero-length record inserted at {k}"), v, Expect::Packets(all + 1));
    }
    {
        let (off, caplen) = p.records[n / 2];
        let mut v = intact[..off + 16].to_vec();
        wr32(&mut v, off + 8, 0, le);
        v.extend_from_slice(&intact[off + 16 + caplen..]);
        m.add(format!("record {} emptied (caplen 0, len kept)", n / 2), v, Expect::Packets(all));
    }

    // Link/IP/TCP headers of the first and a middle record.
    let link_len = link_header_len(p.dlt);
    for k in spread(n, 2) {
        let (off, caplen) = p.records[k];
        let frame = &intact[off + 16..off + 16 + caplen];
        for (at, bit, what) in header_flips(frame, link_len) {
            m.add(format!("record {k} {what}"), flipped(intact, off + 16 + at, bit), Expect::Packets(all));
        }
    }

    // Random damage: inside record data only (structure kept), then anywhere.
    for i in 0..4 {
        let mut v = intact.to_vec();
        for _ in 0..8 {
            let (off, caplen) = p.records[rng.below(n)];
            if caplen > 0 {
                v[off + 16 + rng.below(caplen)] = rng.next() as u8;
            }
        }
        m.add(format!("random bytes in record data #{i}"), v, Expect::Packets(all));
    }
    for i in 0..3 {
        let mut v = b.to_vec();
        for _ in 0..4 {
            let at = 24 + rng.below(v.len().saturating_sub(24));
            if at < v.len() {
                v[at] = rng.next() as u8;
            }
        }
        m.add(format!("random bytes anywhere #{i}"), v, Expect::Survive);
    }
    // Time running backwards: two records' timestamps swapped.
    if n >= 4 {
        let (a, z) = (p.records[1].0, p.records[n - 2].0);
        let mut v = intact.to_vec();
        let (ta, tz) = (intact[a..a + 8].to_vec(), intact[z..z + 8].to_vec());
        v[a..a + 8].copy_from_slice(&tz);
        v[z..z + 8].copy_from_slice(&ta);
        m.add("timestamps of records 1 and n-2 swapped", v, Expect::Packets(all));
    }
}

// ---------------------------------------------------------------------------------------------
// pcapng

struct Block {
    off: usize,
    ty: u32,
    len: usize,
}

struct Pcapng {
    le: bool,
    blocks: Vec<Block>,
    end: usize,
}

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const EPB: u32 = 6;

fn is_packet_block(ty: u32) -> bool {
    matches!(ty, 2 | 3 | 6)
}

fn parse_pcapng(b: &[u8]) -> Option<Pcapng> {
    let le = match b.get(8..12)? {
        [0x4d, 0x3c, 0x2b, 0x1a] => true,
        [0x1a, 0x2b, 0x3c, 0x4d] => false,
        _ => return None,
    };
    if rd32(b, 0, le) != SHB {
        return None;
    }
    let mut blocks = Vec::new();
    let mut off = 0;
    while off + 12 <= b.len() {
        let ty = rd32(b, off, le);
        let len = rd32(b, off + 4, le) as usize;
        if len < 12 || len % 4 != 0 || off + len > b.len() {
            break;
        }
        blocks.push(Block { off, ty, len });
        off += len;
    }
    Some(Pcapng { le, blocks, end: off })
}

fn pcapng_mutants(m: &mut Mutants, b: &[u8], p: &Pcapng) {
    let le = p.le;
    let intact = &b[..p.end];
    let nb = p.blocks.len();
    let boundary = |k: usize| if k < nb { p.blocks[k].off } else { p.end };
    let packets_before = |k: usize| p.blocks[..k].iter().filter(|bl| is_packet_block(bl.ty)).count() as u64;
    let all = packets_before(nb);
    // libpcap needs the section header and the first interface description to open the file.
    let first_idb = p.blocks.iter().position(|bl| bl.ty == IDB).expect("fixture has an IDB");
    let opens = |k: usize| k > first_idb;

    // Truncation at block boundaries.
    let mut ks: Vec<usize> = vec![0, 1, 2, 3, nb];
    ks.extend(spread(nb + 1, BOUNDARY_CUTS));
    ks.retain(|&k| k <= nb);
    ks.sort_unstable();
    ks.dedup();
    for &k in &ks {
        let e = if k == 0 || !opens(k) { Expect::Fail } else { Expect::Packets(packets_before(k)) };
        m.add(format!("cut after {k} of {nb} blocks"), b[..boundary(k)].to_vec(), e);
    }
    // Truncation inside blocks.
    for k in spread(nb, INSIDE_CUTS + 1) {
        let bl = &p.blocks[k];
        let e = |_: ()| if opens(k) { Expect::FailAfter(packets_before(k)) } else { Expect::Fail };
        m.add(format!("cut inside block {k}'s header"), b[..bl.off + 6].to_vec(), e(()));
        m.add(format!("cut inside block {k}'s body"), b[..bl.off + bl.len / 2].to_vec(), e(()));
    }

    // Bad block lengths: the section header, the interface description, a few packets.
    let mut which = vec![0, first_idb];
    let epbs: Vec<usize> = (0..nb).filter(|&i| p.blocks[i].ty == EPB).collect();
    for i in spread(epbs.len(), 3) {
        which.push(epbs[i]);
    }
    for &k in &which {
        let bl = &p.blocks[k];
        let len = bl.len as u32;
        for (what, v) in [
            ("0", 0),
            ("8", 8),
            ("12", 12),
            ("len-4", len - 4),
            ("len+4", len + 4),
            ("len+1", len + 1),
            ("len+2", len + 2),
            ("0x80000000", 0x8000_0000),
            ("0xfffffff0", 0xffff_fff0),
        ] {
            m.add(
                format!("block {k} (type {}) length {what}", bl.ty),
                with32(intact, bl.off + 4, v, le),
                Expect::Survive,
            );
        }
        m.add(
            format!("block {k} trailing length len+4"),
            with32(intact, bl.off + bl.len - 4, len + 4, le),
            Expect::Survive,
        );
        let mut both = with32(intact, bl.off + 4, len + 8, le);
        wr32(&mut both, bl.off + bl.len - 4, len + 8, le);
        m.add(format!("block {k} both lengths len+8"), both, Expect::Survive);
    }

    // Section header.
    let mut bad = intact.to_vec();
    bad[..4].copy_from_slice(b"abcd");
    m.add("block type 'abcd' instead of the section header", bad, Expect::Fail);
    m.add("byte-order magic flipped", flipped(intact, 8, 0), Expect::Fail);
    m.add(
        "byte-order magic of the other byte order",
        {
            let mut v = intact.to_vec();
            v[8..12].reverse();
            v
        },
        Expect::Survive,
    );
    m.add(
        "section major version 2",
        {
            let mut v = intact.to_vec();
            let major = if le { 2u16.to_le_bytes() } else { 2u16.to_be_bytes() };
            v[12..14].copy_from_slice(&major);
            v
        },
        Expect::Fail,
    );
    m.add(
        "section length 5",
        {
            let mut v = intact.to_vec();
            v[16..24].copy_from_slice(&if le { 5u64.to_le_bytes() } else { 5u64.to_be_bytes() });
            v
        },
        Expect::Survive,
    );

    // Interface description: link type, snaplen.
    let idb = &p.blocks[first_idb];
    let set16 = |v: &mut Vec<u8>, at: usize, x: u16| {
        v[at..at + 2].copy_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() })
    };
    for (what, dlt, e) in [
        ("147 (unsupported)", 147u16, Expect::Fail),
        ("0xffff", 0xffff, Expect::Fail),
        ("101 (raw)", 101, Expect::Packets(all)),
        ("0 (NULL)", 0, Expect::Packets(all)),
    ] {
        let mut v = intact.to_vec();
        set16(&mut v, idb.off + 8, dlt);
        m.add(format!("interface link type {what}"), v, e);
    }
    for snap in [0u32, 1, 40, u32::MAX] {
        m.add(format!("interface snaplen {snap}"), with32(intact, idb.off + 12, snap, le), Expect::Survive);
    }
    // A bit flip in every byte of the interface description (its options included).
    for i in 8..idb.len - 4 {
        m.add(
            format!("interface block byte {i} bit {}", i % 8),
            flipped(intact, idb.off + i, (i % 8) as u8),
            Expect::Survive,
        );
    }

    // Enhanced packet blocks: interface, timestamps, lengths, headers.
    let dlt = u32::from(if le {
        u16::from_le_bytes([b[idb.off + 8], b[idb.off + 9]])
    } else {
        u16::from_be_bytes([b[idb.off + 8], b[idb.off + 9]])
    });
    let link_len = link_header_len(dlt);
    for i in spread(epbs.len(), 3) {
        let k = epbs[i];
        let bl = &p.blocks[k];
        let before = packets_before(k);
        let caplen = rd32(b, bl.off + 20, le);
        m.add(format!("packet block {k} on interface 7 (none)"), with32(intact, bl.off + 8, 7, le), Expect::Survive);
        for (what, at, v) in [
            ("timestamp high 0xffffffff", 12, u32::MAX),
            ("timestamp high 0x80000000", 12, 0x8000_0000),
            ("timestamp high 0", 12, 0),
            ("timestamp low 0xffffffff", 16, u32::MAX),
            ("original length 0 (caplen > len)", 24, 0),
            ("original length 0xffffffff", 24, u32::MAX),
        ] {
            m.add(format!("packet block {k} {what}"), with32(intact, bl.off + at, v, le), Expect::Packets(all));
        }
        m.add(format!("packet block {k} caplen 0"), with32(intact, bl.off + 20, 0, le), Expect::Packets(all));
        m.add(
            format!("packet block {k} caplen beyond the block"),
            with32(intact, bl.off + 20, caplen + 64, le),
            Expect::FailAfter(before),
        );
        m.add(
            format!("packet block {k} caplen 0xffffffff"),
            with32(intact, bl.off + 20, u32::MAX, le),
            Expect::FailAfter(before),
        );
        let frame = &intact[bl.off + 28..bl.off + 28 + caplen as usize];
        for (at, bit, what) in header_flips(frame, link_len) {
            m.add(format!("packet block {k} {what}"), flipped(intact, bl.off + 28 + at, bit), Expect::Packets(all));
        }
    }

    // Blocks inserted: an unknown type (skipped) and an empty packet.
    let mid = boundary(nb / 2).max(boundary(first_idb + 1));
    let mut unknown = intact[..mid].to_vec();
    for x in [0x0bad_bad0u32, 16, 0, 16] {
        unknown.extend_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() });
    }
    unknown.extend_from_slice(&intact[mid..]);
    m.add("unknown block inserted", unknown, Expect::Packets(all));
    let mut empty = intact[..mid].to_vec();
    let ts_from = epbs.first().map(|&k| p.blocks[k].off + 12).unwrap_or(0);
    for x in [EPB, 32, 0] {
        empty.extend_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() });
    }
    empty.extend_from_slice(&intact[ts_from..ts_from + 8]);
    for x in [0u32, 0, 32] {
        empty.extend_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() });
    }
    empty.extend_from_slice(&intact[mid..]);
    m.add("empty packet block inserted", empty, Expect::Packets(all + 1));
}

/// Files that are neither: a few flips and cuts, all of which must fail cleanly or survive.
fn other_mutants(m: &mut Mutants, b: &[u8]) {
    for cut in spread(b.len() + 1, 5) {
        m.add(format!("cut at byte {cut}"), b[..cut].to_vec(), Expect::Survive);
    }
    for i in spread(b.len(), 8) {
        m.add(format!("byte {i} bit 0"), flipped(b, i, 0), Expect::Survive);
    }
}

// ---------------------------------------------------------------------------------------------
// Running

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut v = Vec::new();
    for dir in [root.clone(), root.join("diag")] {
        for e in fs::read_dir(&dir).expect("fixtures dir") {
            let p = e.expect("dir entry").path();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if p.is_file() && (ext == "pcap" || (ext == "pcapng" && dir == root)) {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn all_mutants() -> Vec<Mutant> {
    let mut out = Vec::new();
    for (i, path) in fixtures().iter().enumerate() {
        let b = fs::read(path).expect("read fixture");
        let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(path).display().to_string();
        let mut m = Mutants { file: rel, list: Vec::new(), n: 0 };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
        if let Some(p) = parse_pcap(&b) {
            pcap_mutants(&mut m, &b, &p, &mut rng);
        } else if let Some(p) = parse_pcapng(&b) {
            pcapng_mutants(&mut m, &b, &p);
        } else {
            other_mutants(&mut m, &b);
        }
        out.extend(m.list);
    }
    out.extend(merged_mutants(&out));
    out
}

/// Several files merged by time: an intact fixture first, then a damaged one. The damage ends the
/// damaged file only; everything in the intact one and before the damage is analysed.
fn merged_mutants(single: &[Mutant]) -> Vec<Mutant> {
    let companion = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lo-basic.pcap");
    let n = parse_pcap(&fs::read(&companion).expect("read fixture")).expect("a pcap").records.len() as u64;
    single
        .iter()
        .filter(|m| m.mode == Mode::Json && m.name.starts_with("fixtures/diag/") && m.name.contains(": cut "))
        .step_by(3)
        .map(|m| Mutant {
            name: format!("fixtures/lo-basic.pcap + {}", m.name),
            bytes: m.bytes.clone(),
            mode: Mode::Json,
            expect: match m.expect {
                Expect::Packets(k) => Expect::Packets(n + k),
                Expect::FailAfter(k) => Expect::FailAfter(n + k),
                other => other,
            },
            companion: Some(companion.clone()),
        })
        .collect()
}

struct Outcome {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs the binary on `files` with a 4 GiB address-space cap, killed (by PID) after `TIMEOUT`.
fn run(files: &[&Path], mode: Mode, scratch: &Path) -> Outcome {
    let (out_p, err_p) = (scratch.with_extension("out"), scratch.with_extension("err"));
    let flags: &[&str] = match mode {
        Mode::Json => &["--format", "json"],
        Mode::FlowsTsv => &["--flows", "--format", "tsv"],
        Mode::Table => &[],
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {VMEM_KIB} 2>/dev/null; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_hcleak"))
        .arg("analyze")
        .args(files)
        .args(flags)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_p).expect("stdout file"))
        .stderr(fs::File::create(&err_p).expect("stderr file"))
        .spawn()
        .expect("run hcleak");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let o = Outcome { status, stdout: read(&out_p), stderr: read(&err_p) };
    let _ = fs::remove_file(&out_p);
    let _ = fs::remove_file(&err_p);
    o
}

/// Checks one run against the contract; `Err` says what broke.
fn check(mode: Mode, expect: Expect, o: &Outcome) -> Result<(), String> {
    let first_err_line = o
        .stderr
        .lines()
        .find(|l| l.contains("panicked"))
        .or_else(|| o.stderr.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .to_string();
    let Some(status) = o.status else { return Err(format!("hang: killed after {} s", TIMEOUT.as_secs())) };
    let code = match status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            return Err(format!("killed by signal {:?}; stderr: {first_err_line}", status.signal()));
        }
    };
    if o.stderr.contains("panicked") {
        return Err(format!("panic (exit {code}): {first_err_line}"));
    }
    if !(0..=3).contains(&code) {
        return Err(format!("exit {code}; stderr: {first_err_line}"));
    }
    let lines: Vec<&str> = o.stderr.lines().collect();
    if lines.len() > 1 {
        return Err(format!("{} stderr lines: {:?}", lines.len(), o.stderr));
    }
    if let Some(l) = lines.first() {
        if !l.starts_with("hcleak: ") {
            return Err(format!("stderr line without the 'hcleak: ' prefix: {l:?}"));
        }
    }
    // Issue 16: nothing from the wire reaches the terminal raw (escape sequences, NUL, BEL, …).
    let raw = |t: &str| t.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t');
    if let Some(c) = raw(&o.stdout).or_else(|| raw(&o.stderr)) {
        return Err(format!("raw control character {c:?} in the output"));
    }
    let must_fail = matches!(expect, Expect::Fail | Expect::FailAfter(_));
    if must_fail && (code != 3 || lines.len() != 1) {
        return Err(format!("should fail with exit 3 and one stderr line, got exit {code} and {:?}", o.stderr));
    }
    let packets = match mode {
        Mode::Json if !o.stdout.trim().is_empty() => {
            let doc: serde_json::Value =
                serde_json::from_str(&o.stdout).map_err(|e| format!("stdout is not one JSON document: {e}"))?;
            doc["capture"]["packets"].as_u64()
        }
        Mode::FlowsTsv if !o.stdout.is_empty() => {
            let mut rows = o.stdout.lines();
            let cols = rows.next().unwrap_or("").split('\t').count();
            if let Some(bad) = rows.find(|r| r.split('\t').count() != cols) {
                return Err(format!("TSV row without the header's {cols} columns: {bad:?}"));
            }
            None
        }
        _ => None,
    };
    let want = match expect {
        Expect::Packets(n) => Some(n),
        Expect::FailAfter(n) if mode == Mode::Json => Some(n),
        _ => None,
    };
    if let Some(n) = want {
        match packets {
            Some(got) if got == n => {}
            Some(got) => return Err(format!("capture.packets is {got}, want {n} (exit {code}, {first_err_line})")),
            None => return Err(format!("no JSON report, want {n} packets analysed (exit {code}, {first_err_line})")),
        }
    }
    Ok(())
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hcleak-{name}-{}", std::process::id()));
    fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn damaged_fixtures_never_crash_hang_or_lose_what_came_before() {
    let mutants = all_mutants();
    let dir = scratch_dir("mutation");
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let log = Mutex::new(Vec::new());
    let logging = std::env::var_os("HCLEAK_MUTATION_LOG");
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = mutants.get(i) else { break };
                let file = dir.join(format!("m{i:05}.cap"));
                fs::write(&file, &m.bytes).expect("write mutant");
                let files: Vec<&Path> = m.companion.iter().map(|p| p.as_path()).chain([file.as_path()]).collect();
                let o = run(&files, m.mode, &dir.join(format!("m{i:05}")));
                if logging.is_some() {
                    let code = o.status.and_then(|s| s.code()).map_or("-".into(), |c| c.to_string());
                    log.lock().unwrap().push(format!("{}\t{code}\t{:?}", m.name, o.stderr));
                }
                match check(m.mode, m.expect, &o) {
                    Ok(()) => {
                        let _ = fs::remove_file(&file);
                    }
                    Err(e) => failures.lock().unwrap().push(format!("{} ({}): {e}", m.name, file.display())),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    if let Some(p) = logging {
        fs::write(p, log.into_inner().unwrap().join("\n") + "\n").expect("write the log");
    }
    println!("{} mutants of {} fixtures in {:.1} s", mutants.len(), fixtures().len(), start.elapsed().as_secs_f64());
    if failures.is_empty() {
        let _ = fs::remove_dir_all(&dir);
    } else {
        let _ = fs::write(dir.join("failures.txt"), failures.join("\n") + "\n");
    }
    assert!(
        failures.is_empty(),
        "{} of {} mutants broke the contract (mutants and the full list, failures.txt, kept in {}):\n{}",
        failures.len(),
        mutants.len(),
        dir.display(),
        failures.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Regressions: minimized inputs in tests/regressions/ (see its README.md).

fn regression(name: &str, mode: Mode, expect: Expect) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions").join(name);
    let dir = scratch_dir("regression");
    let o = run(&[&file], mode, &dir.join(name));
    let r = check(mode, expect, &o);
    let _ = fs::remove_dir(&dir);
    if let Err(e) = r {
        panic!("{name}: {e}");
    }
}

/// Three SYNs to one backend over 63 years: the report's time arithmetic must not overflow.
#[test]
fn regression_verdict_spark_time_overflow() {
    regression("verdict-spark-time-overflow.pcap", Mode::Json, Expect::Packets(3));
}

/// A connection that starts 63 years before one already aggregated: the backend timeline must not
/// try to allocate a bucket for every 50 ms in between.
#[test]
fn regression_backend_timeline_shift_oom() {
    regression("backend-timeline-shift-oom.pcap", Mode::Json, Expect::Packets(3));
}

/// Issue 16: HTTP checks whose request line, User-Agent, status text and Server header carry
/// terminal escapes (window title, clear screen, a lone C1 CSI, a non-UTF-8 byte). Every format
/// must show them escaped; the table shows the request as `\x1b]0;OWNED\x07…`.
#[test]
fn regression_terminal_escape_http_check() {
    regression("terminal-escape-http-check.pcap", Mode::Json, Expect::Packets(30));
    regression("terminal-escape-http-check.pcap", Mode::FlowsTsv, Expect::Survive);
    regression("terminal-escape-http-check.pcap", Mode::Table, Expect::Survive);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/terminal-escape-http-check.pcap");
    let dir = scratch_dir("regression-escape");
    let o = run(&[&file], Mode::Table, &dir.join("table"));
    let _ = fs::remove_dir(&dir);
    assert!(o.stdout.contains("GET /\\x1b]0;OWNED\\x07\\x1b[2J"), "the request, escaped:\n{}", o.stdout);
}
