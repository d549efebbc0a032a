//! The floor any libpcap-based reader pays: open a capture, read every record, sum the captured
//! bytes. No decoding. `benches/run.sh` compares hcleak's packets/s with this loop's.
//!
//! ```sh
//! cargo run --release --example pcap_floor -- FILE            # libpcap as it comes
//! cargo run --release --example pcap_floor -- FILE 65536      # through a 64 KiB stdio buffer
//! ```
//!
//! The second form opens the file the way hcleak does (`hcleak::source::open_offline`), so the
//! bench can show what the larger buffer alone is worth.

use pcap::{Capture, Packet, Precision};
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: pcap_floor FILE [STDIO_BUFFER_BYTES]");
        return ExitCode::from(2);
    };
    // A typo must not silently measure the default buffer instead.
    let buffer: Option<usize> = match std::env::args().nth(2).map(|b| b.parse()) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(_)) => {
            eprintln!("usage: pcap_floor FILE [STDIO_BUFFER_BYTES]: the buffer size must be a number of bytes");
            return ExitCode::from(2);
        }
    };
    let read = match buffer {
        None => match Capture::from_file_with_precision(&path, Precision::Nano) {
            Ok(mut cap) => drain(|| cap.next_packet().map(caplen)),
            Err(e) => Err((0, e.to_string())),
        },
        Some(b) => match hcleak::source::open_offline(path.as_ref(), b) {
            Ok(mut cap) => drain(|| cap.next_packet().map(caplen)),
            Err(e) => Err((0, e)),
        },
    };
    match read {
        Ok((packets, bytes)) => {
            println!("{packets} packets, {bytes} captured bytes");
            ExitCode::SUCCESS
        }
        Err((packets, e)) => {
            eprintln!("pcap_floor: {path}: after {packets} packets: {e}");
            ExitCode::from(1)
        }
    }
}

fn caplen(p: Packet<'_>) -> u32 {
    p.header.caplen
}

/// Reads to the end: (packets, captured bytes), or the packets read before an error.
#[inline(always)]
fn drain(mut next: impl FnMut() -> Result<u32, pcap::Error>) -> Result<(u64, u64), (u64, String)> {
    let (mut packets, mut bytes) = (0u64, 0u64);
    loop {
        match next() {
            Ok(len) => {
                packets += 1;
                bytes += u64::from(len);
            }
            Err(pcap::Error::NoMorePackets) => return Ok((packets, bytes)),
            Err(e) => return Err((packets, e.to_string())),
        }
    }
}
