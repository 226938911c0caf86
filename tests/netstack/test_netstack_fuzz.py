"""Hostile input: random and mutated frames never raise, never grow memory
without bound, and leave the stack able to serve a connection."""

import random

from pyvisor.netstack import _checksum as ck
from pyvisor.netstack.socket import EPOLLIN, TCPSocket, UDPSocket
from pyvisor.netstack.testing import Network, tcp_pair, transfer

N_FRAMES = 300_000


def _capture(net):
    """Frames of a short real exchange (handshake, data, UDP, ping, close)."""
    frames = []
    orig = net.nic_b.receive

    def tap(frame):
        frames.append(bytes(frame))
        orig(frame)

    net.link_b.attach(tap)
    c, a, _ = tcp_pair(net)
    transfer(net, c, a, b"seed" * 3000)
    u = UDPSocket(net.a)
    u.sendto(b"dgram", ("10.0.0.2", 53))
    net.a.ping("10.0.0.2")
    big = UDPSocket(net.a)
    big.sendto(b"F" * 4000, ("10.0.0.2", 9))  # fragments
    c.close()
    net.run_for(1)
    net.link_b.attach(orig)
    return frames


def _fix_checksums(f):
    """Recompute IPv4 and TCP/UDP checksums so the mutation reaches deeper."""
    if len(f) < 34 or f[12:14] != b"\x08\x00":
        return
    ihl = (f[14] & 0xF) * 4
    if ihl < 20 or 14 + ihl > len(f):
        return
    f[24:26] = b"\0\0"
    ck.put16(f, 24, ck.checksum(f, 14, 14 + ihl))
    total = ck.get16(f, 16)
    end = min(len(f), 14 + total)
    l4 = 14 + ihl
    src, dst, proto = ck.get32(f, 26), ck.get32(f, 30), f[23]
    if proto == 6 and end - l4 >= 20:
        f[l4 + 16:l4 + 18] = b"\0\0"
        seg = bytes(f[l4:end])
        ck.put16(f, l4 + 16, ck.transport_checksum(src, dst, 6, seg))
    elif proto == 17 and end - l4 >= 8:
        f[l4 + 6:l4 + 8] = b"\0\0"
        seg = bytes(f[l4:end])
        ck.put16(f, l4 + 6, ck.transport_checksum(src, dst, 17, seg))


def _mutants(rng, corpus, mac):
    while True:
        kind = rng.random()
        if kind < 0.1:
            yield rng.randbytes(rng.randrange(0, 100))
            continue
        f = bytearray(rng.choice(corpus))
        if kind < 0.2:
            f = f[:rng.randrange(len(f) + 1)]          # truncation
        elif kind < 0.25:
            f += rng.randbytes(rng.randrange(1, 2000))  # oversize
        else:
            for _ in range(rng.randrange(1, 6)):        # byte flips
                if len(f) > 14:
                    i = rng.randrange(14, len(f))
                    f[i] = rng.randrange(256)
            if kind < 0.85:
                _fix_checksums(f)
        if len(f) >= 6:
            f[0:6] = mac
        yield bytes(f)


def test_random_and_mutated_frames_never_raise_and_stack_still_serves():
    net = Network(seed=1)
    srv = TCPSocket(net.b)
    srv.bind(("0.0.0.0", 7))
    srv.listen(8)
    udp = UDPSocket(net.b)
    udp.bind(("0.0.0.0", 53))
    corpus = _capture(net)
    assert len(corpus) > 15
    rng = random.Random(1234)
    gen = _mutants(rng, corpus, net.nic_b.mac)
    receive = net.nic_b.receive
    for i in range(N_FRAMES):
        receive(next(gen))
        if i % 5000 == 0:
            net.run_for(0.5)
    drops = net.b.drops
    assert sum(drops.values()) > N_FRAMES // 2
    for reason in ("eth_truncated", "ipv4_bad_checksum", "ipv4_bad_ihl",
                   "tcp_bad_checksum", "udp_bad_checksum", "ipv4_bad_length"):
        assert drops[reason] > 0, reason
    # Bounded state.
    assert net.b.reassembler.bytes <= net.b.reassembler.max_bytes
    assert len(net.b.tcp_conns) <= 300
    assert udp.queued <= udp.rcvbuf
    while udp.poll() & EPOLLIN:
        udp.recv(65536)
    # And it still works: a fresh connection moves data both ways.
    net.run_for(130)  # let embryonic connections from the fuzz expire
    while True:
        try:
            srv.accept()[0].close()
        except Exception:
            break
    c, a, _ = tcp_pair(net, port=8)
    data = rng.randbytes(200_000)
    assert transfer(net, c, a, data) == data
    assert transfer(net, a, c, data) == data


def test_fragment_flood_is_bounded():
    net = Network()
    rng = random.Random(9)
    for i in range(20_000):
        payload = rng.randbytes(1000)
        buf = bytearray(14 + 20 + len(payload))
        buf[0:6] = net.nic_b.mac
        buf[12:14] = b"\x08\x00"
        ck.build_ipv4(buf, 14, 20 + len(payload), i, 0x2000 | rng.randrange(0, 8000),
                      64, 17, 0x0A000001, 0x0A000002)
        buf[34:] = payload
        net.nic_b.receive(bytes(buf))
        assert net.b.reassembler.bytes <= net.b.reassembler.max_bytes
    assert len(net.b.reassembler.datagrams) <= 256
    assert net.b.drops["frag_too_many"] > 0
    net.run_for(31)
    assert net.b.reassembler.bytes == 0 and not net.b.reassembler.datagrams


def test_forged_rsts_outside_window_do_not_kill_connection():
    net = Network()
    c, a, _ = tcp_pair(net)
    from pyvisor.netstack.tcp_segment import RST, Segment
    rng = random.Random(3)
    for _ in range(2000):
        seq = rng.randrange(1 << 32)
        d = (seq - a.conn.rcv_nxt) & 0xFFFFFFFF
        if d < 1 << 20 or d > (1 << 32) - (1 << 20):
            continue  # keep to blind guesses far from the window
        net.a.send_tcp(0x0A000001, c.lport, 0x0A000002, 80, Segment(seq, 0, RST, 0))
    net.run_for(1)
    assert transfer(net, c, a, b"alive" * 100) == b"alive" * 100
