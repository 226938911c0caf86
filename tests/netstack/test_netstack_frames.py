"""The per-frame fast paths: software GSO (``_frames.split_tcp``), batched
TAP writes (``_frames.write_frames``), the one-call receive decoder
(``_frames.parse_tcp_frame``), and the stack paths built on them.

Frames are checked with an independent plain-Python decoder (struct only),
not with netstack's own parsers.
"""

import errno
import os
import random
import struct

import pytest

from pyvisor.netstack import _checksum as ck
from pyvisor.netstack import _frames
from pyvisor.netstack.addr import ip
from pyvisor.netstack.link.capture import CaptureLink, read_pcap
from pyvisor.netstack.stack import SOFT_GSO_MAX, Stack
from pyvisor.netstack.tcp_segment import ACK, FIN, PSH, SYN, Segment, encode
from pyvisor.netstack.testing import Network, tcp_pair, transfer

SRC, DST = ip("10.9.0.2"), ip("10.9.0.1")
MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x0a", b"\x02\x00\x00\x00\x00\x0b"
CWR = 0x80


def _sum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _decode(f):
    """(ip fields, tcp fields, payload) of an Ethernet+IPv4+TCP frame, with
    both checksums verified independently."""
    assert f[12:14] == b"\x08\x00"
    ipb = f[14:34]
    assert _sum(ipb) == 0xFFFF, "bad IP header checksum"
    ver_ihl, _tos, total, ident, ff, ttl, proto, _c, src, dst = struct.unpack("!BBHHHBBHII", ipb)
    assert ver_ihl == 0x45 and proto == 6 and total == len(f) - 14
    seg = f[34:14 + total]
    pseudo = struct.pack("!IIBBH", src, dst, 0, 6, len(seg))
    assert _sum(pseudo + seg) == 0xFFFF, "bad TCP checksum"
    sport, dport, seq, ack, off, flags, win = struct.unpack("!HHIIBBH", seg[:16])
    doff = (off >> 4) * 4
    return ((ident, ff, ttl), (sport, dport, seq, ack, flags, win, seg[20:doff]), seg[doff:])


def _frame(payload, flags=ACK | PSH, seq=1000, ack=2000, ts=(7, 9), ident=100, sack=()):
    seg = Segment(seq, ack, flags, 4000, payload, ts=ts, sack=sack)
    buf, n = encode(seg, 40000, 80, SRC, DST, 34)
    ck.build_ipv4(buf, 14, 20 + n, ident, 0x4000, 64, 6, SRC, DST)
    buf[0:14] = MAC_B + MAC_A + b"\x08\x00"
    return buf, 34 + n - len(payload)


# ---------------------------------------------------------------- split_tcp

@pytest.mark.parametrize("size", [1, 1448, 2896, 5000, 61000])
def test_split_tcp_cuts_a_super_segment_like_linux_gso(size):
    payload = random.Random(size).randbytes(size)
    buf, hdr_len = _frame(payload, flags=ACK | PSH | FIN | CWR, seq=0xFFFFF000)
    frames = _frames.split_tcp(buf, hdr_len, 1448, 0xFFFE)
    assert len(frames) == -(-size // 1448)
    joined = b""
    for i, f in enumerate(frames):
        (ident, ff, ttl), (sp, dp, seq, ack, flags, win, opts), data = _decode(f)
        assert ident == (0xFFFE + i) & 0xFFFF and ff == 0x4000 and ttl == 64
        assert (sp, dp, ack, win) == (40000, 80, 2000, 4000)
        assert seq == (0xFFFFF000 + 1448 * i) & 0xFFFFFFFF  # wraps
        assert opts == bytes(buf[54:hdr_len])              # timestamps copied
        last, first = i == len(frames) - 1, i == 0
        assert bool(flags & FIN) == last and bool(flags & PSH) == last
        assert bool(flags & CWR) == first and flags & ACK
        assert len(data) <= 1448 and f[:14] == buf[:14]
        joined += data
    assert joined == payload


def test_split_tcp_of_an_empty_payload_is_one_frame():
    buf, hdr_len = _frame(b"", flags=ACK | FIN)
    [f] = _frames.split_tcp(buf, hdr_len, 1448, 5)
    assert _decode(f)[1][4] == ACK | FIN and _decode(f)[2] == b""


@pytest.mark.parametrize("hdr_len,gso_size", [(10, 1448), (54, 0), (54, -1), (5000, 1448)])
def test_split_tcp_rejects_bad_geometry(hdr_len, gso_size):
    buf, _ = _frame(b"x" * 3000)
    with pytest.raises(ValueError):
        _frames.split_tcp(buf, hdr_len, gso_size, 0)


# ---------------------------------------------------------------- write_frames

def test_write_frames_writes_each_frame_in_order():
    r, w = os.pipe()
    try:
        frames = [b"hdr-%d-" % i + bytes([i]) * i for i in range(50)]
        assert _frames.write_frames(w, frames) == (50, 0)
        assert os.read(r, 1 << 16) == b"".join(frames)
        assert _frames.write_frames(w, [b"0123456789abc"], 10) == (1, 0)
        assert os.read(r, 100) == b"abc"
    finally:
        os.close(r)
        os.close(w)


def test_write_frames_drops_on_eagain_and_raises_other_errors():
    r, w = os.pipe()
    try:
        os.set_blocking(w, False)
        big = b"z" * 65536
        written, dropped = _frames.write_frames(w, [big] * 64)  # a pipe holds 64 KB
        assert written >= 1 and dropped >= 1 and written + dropped == 64
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(OSError) as e:
        _frames.write_frames(w, [b"x"])  # closed fd
    assert e.value.errno == errno.EBADF
    with pytest.raises(ValueError):
        _frames.write_frames(1, [b"ab"], 5)
    with pytest.raises(TypeError):
        _frames.write_frames(1, ["not bytes"])


# ---------------------------------------------------------------- parse_tcp_frame

def test_parse_tcp_frame_decodes_the_common_shape():
    buf, hdr_len = _frame(b"hello", ts=(0xDEADBEEF, 42))
    buf[0:6] = MAC_A
    p = _frames.parse_tcp_frame(bytes(buf), MAC_A)
    assert p == (SRC, DST, 40000, 80, 1000, 2000, ACK | PSH, 4000, 32, len(buf), (0xDEADBEEF, 42))
    # Trailing Ethernet padding is not part of the segment.
    assert _frames.parse_tcp_frame(bytes(buf) + b"\0" * 6, MAC_A)[9] == len(buf)
    plain, _ = _frame(b"", ts=None)
    plain[0:6] = MAC_A
    assert _frames.parse_tcp_frame(bytes(plain), MAC_A)[10] is None
    sacked, _ = _frame(b"", sack=((1, 2),))
    sacked[0:6] = MAC_A
    assert _frames.parse_tcp_frame(bytes(sacked), MAC_A)[10] is False  # caller parses


def _bad(name, f):
    """Mutations the fast decoder must leave to the general path."""
    if name == "mac":
        f[0] ^= 1
    elif name == "ethertype":
        f[12:14] = b"\x08\x06"
    elif name == "ihl":
        f[14] = 0x46
    elif name == "version":
        f[14] = 0x65
    elif name == "ttl":
        f[22] = 0
    elif name == "proto":
        f[23] = 17
    elif name == "frag":
        f[20] |= 0x20
    elif name == "evil":
        f[20] |= 0x80
    elif name == "ip_sum":
        f[24] ^= 0xFF
    elif name == "tcp_sum":
        f[50] ^= 0xFF
    elif name == "total_long":
        ck.put16(f, 16, len(f))
    elif name == "total_short":
        ck.put16(f, 16, 30)
    elif name == "doff_small":
        f[46] = 0x40
    elif name == "doff_big":
        f[46] = 0xF0
    elif name == "port":
        f[34:36] = b"\0\0"
    elif name == "truncated":
        del f[40:]
    if name not in ("ip_sum", "tcp_sum", "truncated") and len(f) >= 34:
        f[24:26] = b"\0\0"
        ck.put16(f, 24, ck.checksum(f, 14, 34))
    return bytes(f)


BAD = ["mac", "ethertype", "ihl", "version", "ttl", "proto", "frag", "evil", "ip_sum",
       "tcp_sum", "total_long", "total_short", "doff_small", "doff_big", "port", "truncated"]


@pytest.mark.parametrize("name", BAD)
def test_parse_tcp_frame_declines_anything_unusual(name):
    buf, _ = _frame(b"payload")
    buf[0:6] = MAC_A
    assert _frames.parse_tcp_frame(bytes(buf), MAC_A) is not None
    assert _frames.parse_tcp_frame(_bad(name, bytearray(buf)), MAC_A) is None


def test_parse_tcp_frame_skips_the_checksum_when_the_link_vouches():
    buf, _ = _frame(b"payload")
    buf[0:6] = MAC_A
    f = _bad("tcp_sum", bytearray(buf))
    assert _frames.parse_tcp_frame(f, MAC_A, False) is not None
    assert _frames.parse_tcp_frame(b"", MAC_A) is None
    assert _frames.parse_tcp_frame(bytes(buf), b"\x02") is None  # not a MAC


# ---------------------------------------------------------------- in the stack

def _wire_frames(net, fn):
    """Frames a-side wrote while fn ran, as recorded by a CaptureLink."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "a.pcap")
        inner = net.link_a
        cap = CaptureLink(inner, path)
        cap.attach(net.nic_a.receive)
        net.nic_a.link = cap
        try:
            fn()
        finally:
            net.nic_a.link = inner
            inner.attach(net.nic_a.receive)
            cap.file.close()
        return read_pcap(path)


def test_tcp_uses_software_gso_on_links_without_tso_and_frames_stay_within_mtu():
    net = Network()
    c, a, _ = tcp_pair(net)
    assert c.conn.gso_max == SOFT_GSO_MAX and a.conn.gso_max == SOFT_GSO_MAX
    data = random.Random(1).randbytes(3 << 20)
    got = []
    frames = _wire_frames(net, lambda: got.append(transfer(net, c, a, data)))
    assert got == [data]
    sizes = [len(f) for f in frames]
    assert max(sizes) == 1514 and all(s <= 1514 for s in sizes)
    for f in frames[:200]:
        _decode(f)
    assert net.a.stats["ipv4_out"] >= len(data) // 1448


def test_software_gso_off_and_loopback_send_one_mss_per_segment():
    net = Network()
    net.a.soft_gso = net.b.soft_gso = False
    c, a, _ = tcp_pair(net)
    assert c.conn.gso_max == 0
    assert transfer(net, c, a, b"q" * 100_000) == b"q" * 100_000
    s = Stack()
    lo = s.add_loopback()
    assert s.gso_max_for(lo) == 0


def test_software_gso_frames_wait_for_arp_one_by_one():
    """A super-segment sent while the neighbour's MAC is unknown is queued
    as the frames it will be (bounded per neighbour, as Linux's arp_queue);
    the rest is retransmitted, and the transfer completes."""
    net = Network()
    c, a, _ = tcp_pair(net)
    transfer(net, c, a, bytes(1 << 20))  # open the window well past 16 frames
    net.nic_a.arp.cache.clear()
    data = random.Random(2).randbytes(500_000)
    frames = _wire_frames(net, lambda: transfer(net, c, a, data))
    assert all(len(f) <= 1514 for f in frames)
    assert net.a.drops["arp_queue_full"] > 0


def test_fast_receive_path_gives_the_same_run_as_the_general_path(monkeypatch):
    """Same seeds, with and without the one-call decoder: the same bytes
    arrive at the same simulated time with the same TCP counters."""
    def run(fast):
        if not fast:
            monkeypatch.setattr(_frames, "parse_tcp_frame", lambda *a: None)
        random.seed(5)  # ephemeral ports
        net = Network(seed=4, loss=0.02, reorder=0.05, delay=0.01)
        c, a, _ = tcp_pair(net)
        data = random.Random(3).randbytes(400_000)
        assert transfer(net, c, a, data) == data
        assert transfer(net, a, c, data[:100_000]) == data[:100_000]
        monkeypatch.undo()
        return (net.clock.now(), dict(c.conn.counters), dict(a.conn.counters),
                net.a.stats["ipv4_in"], net.b.stats["ipv4_in"])
    assert run(True) == run(False)


def test_mutated_segments_of_a_live_connection_never_raise():
    """Byte flips (checksums fixed so they pass) in frames of an established
    connection go through the fast path: dropped and counted, or processed
    as TCP would, never an exception; the stack then still serves."""
    net = Network(seed=2)
    c, a, srv = tcp_pair(net)
    corpus = []
    orig = net.nic_b.receive

    def tap(frame, csum_ok=False):
        corpus.append(bytes(frame))
        orig(frame, csum_ok)

    net.link_b.attach(tap)
    transfer(net, c, a, b"live" * 20000)
    net.link_b.attach(orig)
    assert len(corpus) > 20
    rng = random.Random(77)
    for i in range(20000):
        f = bytearray(rng.choice(corpus))
        for _ in range(rng.randrange(1, 4)):
            j = rng.randrange(34, len(f))
            f[j] = rng.randrange(256)
        if rng.random() < 0.8:
            f[50:52] = b"\0\0"
            end = 14 + ck.get16(f, 16)
            if 54 <= end <= len(f):
                ck.put16(f, 50, ck.transport_checksum(ck.get32(f, 26), ck.get32(f, 30), 6,
                                                      bytes(f[34:end])))
        orig(bytes(f))
        if i % 2000 == 0:
            net.run_for(0.2)
    assert net.b.drops["tcp_bad_checksum"] > 0
    c2, a2, _ = tcp_pair(net, port=81)
    assert transfer(net, c2, a2, b"after" * 1000) == b"after" * 1000
