//! The floor any libpcap-based reader pays: open a capture, read every record, sum the captured
//! bytes. No decoding. `benches/run.sh` compares hcleak's packets/s with this loop's.
//!
//! ```sh
//! cargo run --release --example pcap_floor -- FILE
//! ```

use pcap::{Capture, Precision};
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: pcap_floor FILE");
        return ExitCode::from(2);
    };
    let mut cap = match Capture::from_file_with_precision(&path, Precision::Nano) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pcap_floor: {path}: {e}");
            return ExitCode::from(1);
        }
    };
    let (mut packets, mut bytes) = (0u64, 0u64);
    loop {
        match cap.next_packet() {
            Ok(p) => {
                packets += 1;
                bytes += u64::from(p.header.caplen);
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => {
                eprintln!("pcap_floor: {path}: after {packets} packets: {e}");
                return ExitCode::from(1);
            }
        }
    }
    println!("{packets} packets, {bytes} captured bytes");
    ExitCode::SUCCESS
}
