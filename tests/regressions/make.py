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

# Issue 16: HTTP checks whose request line, User-Agent, status text and Server header carry
# terminal escapes (OSC window title, clear screen). Six HAProxy-like checks 2 s apart (SYN,
# SYN-ACK, request with no bare ACK first, response, client RST), so they group as a prober and
# the request is shown in the report: it must come out escaped, never raw.
PSH = 0x08


def http_check(sport, t):
    req = (b"GET /\x1b]0;OWNED\x07\x1b[2J HTTP/1.1\r\nHost: x\r\n"
           b"User-Agent: kube-probe/1.29\x1b[31m\xff\r\n\r\n")
    resp = b"HTTP/1.1 200 \x1b]0;T\x07OK\r\nServer: \x1b[2J\x9b6n\r\nContent-Length: 0\r\n\r\n"
    c_isn, s_isn = 1000, 5000

    def data(src, sp, dst, dp, flags, seq, ack, payload):
        f = seg(src, sp, dst, dp, flags, seq, ack)
        # Fix the IPv4 total length for the payload (bytes 16..18 of the frame).
        total = 20 + 20 + len(payload)
        return f[:16] + struct.pack(">H", total) + f[18:] + payload

    return [
        (t, seg(C, sport, S, 80, SYN, c_isn)),
        (t, seg(S, 80, C, sport, SYN | ACK, s_isn, c_isn + 1)),
        (t, data(C, sport, S, 80, PSH | ACK, c_isn + 1, s_isn + 1, req)),
        (t, data(S, 80, C, sport, PSH | ACK, s_isn + 1, c_isn + 1 + len(req), resp)),
        (t, seg(C, sport, S, 80, RST | ACK, c_isn + 1 + len(req), s_isn + 1 + len(resp))),
    ]


pcap("terminal-escape-http-check.pcap", [p for i in range(6) for p in http_check(41000 + i, 100 + 2 * i)])
