#!/usr/bin/env python3
"""Writes the hand-minimized regression captures in this folder (see README.md).

Each is a classic little-endian pcap (Ethernet, microsecond timestamps) of bare IPv4/TCP
segments with the timestamps that trigger the bug. Run from anywhere: python3 make.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SYN, RST, ACK = 0x02, 0x04, 0x10


def seg(src, sport, dst, dport, flags, seq=1000, ack=0):
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 512, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, bytes(src), bytes(dst))
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp


def pcap(name, packets):
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for ts_sec, frame in packets:
        out += struct.pack("<IIII", ts_sec, 0, len(frame), len(frame)) + frame
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(out)


C, S = [10, 0, 0, 2], [10, 0, 0, 1]
# Three unanswered SYNs to one backend (three: --min-conns), in time order, the last 2e9 s
# (63 years) after the first: the sparkline's time arithmetic overflows. (pcap seconds are signed
# 32-bit: 2e9 is about as late as a pcap can say.)
pcap("verdict-spark-time-overflow.pcap", [
    (1, seg(C, 40000, S, 80, SYN)),
    (2, seg(C, 40001, S, 80, SYN)),
    (2_000_000_000, seg(C, 40002, S, 80, SYN)),
])
# A connection finished (swept) late in time, then one that starts 2e9 s earlier: the backend
# timeline is shifted right by ~4e10 buckets at once (a 160 GB allocation).
pcap("backend-timeline-shift-oom.pcap", [
    (2_000_000_000, seg(C, 40000, S, 80, SYN)),
    (2_000_000_010, seg(C, 40001, S, 80, SYN)),
    (1, seg(C, 40002, S, 80, SYN)),
])
