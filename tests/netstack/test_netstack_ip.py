"""Ethernet, ARP, IPv4 (validation, routing, reassembly), ICMP and UDP."""

import errno
from collections import Counter

import pytest

from pyvisor.netstack import _checksum as ck
from pyvisor.netstack import arp, ethernet, icmp, ipv4
from pyvisor.netstack.addr import ip, ip_str, mac, mac_str, prefix_mask
from pyvisor.netstack.clock import FakeClock
from pyvisor.netstack.socket import TCPSocket, UDPSocket
from pyvisor.netstack.stack import HEADROOM, Stack
from pyvisor.netstack.testing import Network
from pyvisor.netstack.errors import NetError

A_MAC = bytes.fromhex("020000000001")
B_MAC = bytes.fromhex("020000000002")


# ------------------------------------------------------------------ addresses

def test_address_helpers():
    assert ip("10.0.0.1") == 0x0A000001 and ip(5) == 5
    assert ip_str(0x0A000001) == "10.0.0.1"
    assert mac("02:00:00:00:00:01") == A_MAC and mac_str(A_MAC) == "02:00:00:00:00:01"
    assert prefix_mask(24) == 0xFFFFFF00 and prefix_mask(0) == 0
    with pytest.raises(ValueError):
        prefix_mask(33)
    with pytest.raises(ValueError):
        mac("02:00")
    with pytest.raises(ValueError):
        mac(b"\x01")


# ------------------------------------------------------------------ ethernet

def test_ethernet_parse_and_accept():
    frame = ethernet.header(B_MAC, A_MAC, 0x0800) + b"data"
    dst, src, et, payload = ethernet.parse(frame)
    assert (dst, src, et, bytes(payload)) == (B_MAC, A_MAC, 0x0800, b"data")
    assert ethernet.parse(frame[:13]) is None
    assert ethernet.accepts(B_MAC, B_MAC)
    assert ethernet.accepts(b"\xff" * 6, B_MAC)
    assert not ethernet.accepts(A_MAC, B_MAC)


# ------------------------------------------------------------------ ARP

class Wire:
    def __init__(self):
        self.sent = []

    def __call__(self, dst, ethertype, payload):
        self.sent.append((dst, ethertype, bytes(payload)))


def arp_packet(op, sha, spa, tha, tpa):
    import struct
    return struct.pack("!HHBBH6sI6sI", 1, 0x0800, 6, 4, op, sha, spa, tha, tpa)


def test_arp_answers_request_for_us_and_learns_sender():
    wire, drops = Wire(), Counter()
    r = arp.ArpResolver(B_MAC, ip("10.0.0.2"), wire, drops)
    r.input(arp_packet(1, A_MAC, ip("10.0.0.1"), b"\0" * 6, ip("10.0.0.2")), 0.0)
    assert len(wire.sent) == 1
    dst, et, payload = wire.sent[0]
    assert dst == A_MAC and et == ethernet.ETHERTYPE_ARP
    assert payload == arp_packet(2, B_MAC, ip("10.0.0.2"), A_MAC, ip("10.0.0.1"))
    assert r.lookup(ip("10.0.0.1"), 1.0) == A_MAC


def test_arp_ignores_requests_for_others_and_does_not_learn_strangers():
    wire, drops = Wire(), Counter()
    r = arp.ArpResolver(B_MAC, ip("10.0.0.2"), wire, drops)
    r.input(arp_packet(1, A_MAC, ip("10.0.0.1"), b"\0" * 6, ip("10.0.0.9")), 0.0)
    assert wire.sent == [] and r.lookup(ip("10.0.0.1"), 0.0) is None


@pytest.mark.parametrize("payload,reason", [
    (b"\x00" * 10, "arp_truncated"),
    (arp_packet(1, A_MAC, 1, A_MAC, 2)[:2] + b"\x86\xdd" + arp_packet(1, A_MAC, 1, A_MAC, 2)[4:],
     "arp_unsupported"),
    (arp_packet(7, A_MAC, 1, A_MAC, 2), "arp_malformed"),
    (arp_packet(1, b"\xff" * 6, 1, A_MAC, 2), "arp_malformed"),
])
def test_arp_bad_packets_are_counted(payload, reason):
    wire, drops = Wire(), Counter()
    r = arp.ArpResolver(B_MAC, 2, wire, drops)
    r.input(payload, 0.0)
    assert drops[reason] == 1 and wire.sent == []


def test_arp_resolution_queues_retries_and_gives_up():
    wire, drops = Wire(), Counter()
    r = arp.ArpResolver(A_MAC, ip("10.0.0.1"), wire, drops)
    target = ip("10.0.0.2")
    for i in range(arp.MAX_QUEUED + 3):
        r.resolve(target, b"pkt%d" % i, 0.0)
    assert drops["arp_queue_full"] == 3
    assert len(wire.sent) == 1 and wire.sent[0][0] == b"\xff" * 6
    assert r.next_deadline() == arp.RETRANS_TIME
    r.tick(0.5)
    assert len(wire.sent) == 1
    r.tick(1.0)
    r.tick(2.0)
    assert len(wire.sent) == arp.MAX_REQUESTS
    r.tick(3.0)
    assert drops["arp_unresolved"] == arp.MAX_QUEUED and not r.pending


def test_arp_reply_flushes_queued_packets_in_order():
    wire, drops = Wire(), Counter()
    r = arp.ArpResolver(A_MAC, ip("10.0.0.1"), wire, drops)
    r.resolve(ip("10.0.0.2"), b"one", 0.0)
    r.resolve(ip("10.0.0.2"), b"two", 0.0)
    r.input(arp_packet(2, B_MAC, ip("10.0.0.2"), A_MAC, ip("10.0.0.1")), 0.1)
    assert [(d, p) for d, _e, p in wire.sent[1:]] == [(B_MAC, b"one"), (B_MAC, b"two")]
    assert r.lookup(ip("10.0.0.2"), 0.2) == B_MAC
    assert r.lookup(ip("10.0.0.2"), 0.1 + arp.REACHABLE_TIME) is None  # expired


def test_arp_cache_and_pending_are_bounded():
    wire, drops = Wire(), Counter()
    r = arp.ArpResolver(A_MAC, 1, wire, drops)
    for i in range(arp.MAX_ENTRIES + 50):
        r._learn(1000 + i, B_MAC, 0.0)
    assert len(r.cache) == arp.MAX_ENTRIES
    for i in range(arp.MAX_PENDING + 5):
        r.resolve(5000 + i, b"x", 0.0)
    assert len(r.pending) == arp.MAX_PENDING and drops["arp_pending_full"] == 5


# ------------------------------------------------------------------ IPv4

def good_packet(payload=b"hello", proto=17, src="10.0.0.1", dst="10.0.0.2", ff=0, ttl=64):
    buf = bytearray(20 + len(payload))
    ck.build_ipv4(buf, 0, len(buf), 7, ff, ttl, proto, ip(src), ip(dst))
    buf[20:] = payload
    return buf


def test_ipv4_validate_good_and_trims_link_padding():
    drops = Counter()
    pkt = ipv4.validate(bytes(good_packet()) + b"\0" * 20, drops)
    assert pkt is not None and bytes(pkt.payload) == b"hello" and not drops
    assert (pkt.src, pkt.dst, pkt.proto, pkt.ttl) == (ip("10.0.0.1"), ip("10.0.0.2"), 17, 64)


def _mutate(f):
    b = good_packet()
    f(b)
    return bytes(b)


def _refix(b):
    b[10:12] = b"\0\0"
    ck.put16(b, 10, ck.checksum(b, 0, (b[0] & 0xF) * 4))


@pytest.mark.parametrize("data,reason", [
    (b"\x45" * 19, "ipv4_truncated"),
    (_mutate(lambda b: (b.__setitem__(0, 0x65), _refix(b))), "ipv4_bad_version"),
    (_mutate(lambda b: b.__setitem__(0, 0x44)), "ipv4_bad_ihl"),
    (_mutate(lambda b: (b.__setitem__(0, 0x4F), _refix(b))), "ipv4_bad_ihl"),
    (_mutate(lambda b: (ck.put16(b, 2, 19), _refix(b))), "ipv4_bad_length"),
    (_mutate(lambda b: (ck.put16(b, 2, 500), _refix(b))), "ipv4_bad_length"),
    (_mutate(lambda b: b.__setitem__(15, 9)), "ipv4_bad_checksum"),
    (bytes(good_packet(ttl=0)), "ipv4_ttl_zero"),
    (bytes(good_packet(ff=0x8000)), "ipv4_reserved_flag"),
])
def test_ipv4_bad_headers_counted(data, reason):
    drops = Counter()
    assert ipv4.validate(data, drops) is None
    assert drops == Counter({reason: 1})


def test_routing_longest_prefix_and_default():
    t = ipv4.RoutingTable()
    t.add(ipv4.Route(0, 0, ip("10.0.0.254"), "eth0"))
    t.add(ipv4.Route(ip("10.0.0.0"), 24, 0, "eth0"))
    t.add(ipv4.Route(ip("10.1.0.0"), 16, 0, "eth1"))
    assert t.lookup(ip("10.0.0.7")) == ("eth0", ip("10.0.0.7"))
    assert t.lookup(ip("10.1.2.3")) == ("eth1", ip("10.1.2.3"))
    assert t.lookup(ip("8.8.8.8")) == ("eth0", ip("10.0.0.254"))
    t2 = ipv4.RoutingTable()
    assert t2.lookup(1) is None


def fragments(payload, step, ident=9, src="10.0.0.1", dst="10.0.0.2"):
    out = []
    for off in range(0, len(payload), step):
        more = off + step < len(payload)
        chunk = payload[off:off + step]
        out.append(good_packet(chunk, 17, src, dst, (0x2000 if more else 0) | off // 8))
        ck.put16(out[-1], 4, ident)
        _refix(out[-1])
    return out


def _reasm_all(frags, r, drops, now=0.0):
    result = None
    for f in frags:
        pkt = ipv4.validate(bytes(f), drops)
        got = r.add(pkt, now)
        result = got or result
    return result


def test_reassembly_in_and_out_of_order():
    drops = Counter()
    payload = bytes(range(256)) * 10
    frags = fragments(payload, 800)
    r = ipv4.Reassembler(drops)
    assert bytes(_reasm_all(frags, r, drops).payload) == payload
    r2 = ipv4.Reassembler(drops)
    assert bytes(_reasm_all(list(reversed(frags)), r2, drops).payload) == payload
    assert r.bytes == r2.bytes == 0 and not drops


def test_reassembly_overlap_drops_datagram():
    drops = Counter()
    r = ipv4.Reassembler(drops)
    frags = fragments(b"x" * 1600, 800)
    bad = good_packet(b"y" * 800, 17, ff=0x2000 | 50)  # overlaps the first
    ck.put16(bad, 4, 9)
    _refix(bad)
    assert _reasm_all([frags[0], bad], r, drops) is None
    assert drops["frag_overlap"] == 1 and r.bytes == 0 and not r.datagrams


def test_reassembly_timeout_and_memory_limit():
    drops = Counter()
    r = ipv4.Reassembler(drops, max_bytes=5000)
    for ident in range(20):
        _reasm_all(fragments(b"z" * 1600, 800, ident=ident)[:1], r, drops)
    assert r.bytes <= 5000 and drops["frag_memory"] > 0
    r.tick(ipv4.REASM_TIMEOUT + 1)
    assert not r.datagrams and r.bytes == 0 and drops["frag_timeout"] > 0


@pytest.mark.parametrize("ff,size", [(0x2000, 7), (0x2000 | 8191, 800)])
def test_reassembly_malformed_fragments(ff, size):
    drops = Counter()
    r = ipv4.Reassembler(drops)
    pkt = ipv4.validate(bytes(good_packet(b"q" * size, ff=ff)), drops)
    assert r.add(pkt, 0.0) is None and drops["frag_malformed"] == 1


# ------------------------------------------------------------------ ICMP

def test_ping_answered_and_bad_icmp_counted():
    net = Network()
    assert net.a.ping("10.0.0.2", ident=7, seq=3, data=b"abc")
    net.run_until(lambda: net.a.echo_replies)
    assert net.a.echo_replies[0] == (ip("10.0.0.2"), 7, 3, b"abc")
    drops = Counter()
    assert icmp.parse(b"\x08\x00\x00", drops) is None
    assert icmp.parse(b"\x08\x00\x12\x34\x00\x00\x00\x00", drops) is None
    assert drops == Counter({"icmp_truncated": 1, "icmp_bad_checksum": 1})


def test_ping_unroutable_and_arp_failure():
    net = Network()
    assert not net.a.ping("192.168.9.9")
    assert net.a.ping("10.0.0.77")  # on-link, nobody answers ARP
    net.run_for(5)
    assert net.a.drops["arp_unresolved"] == 1


def test_unknown_protocol_gets_protocol_unreachable():
    net = Network()
    buf = bytearray(HEADROOM) + b"?" * 8
    net.a.send_ip(ip("10.0.0.1"), ip("10.0.0.2"), 99, buf)
    net.run_for(0.1)
    assert net.b.drops["ipv4_unknown_proto"] == 1
    assert net.a.drops["icmp_no_socket"] == 1  # the error came back, nobody to tell


def test_packets_for_other_hosts_dropped():
    net = Network()
    buf = bytearray(HEADROOM) + b"\0" * 8
    net.a.add_route("10.9.0.0", 16, "10.0.0.2", net.nic_a)
    net.a.send_ip(ip("10.0.0.1"), ip("10.9.0.1"), 17, buf)
    net.run_for(0.1)
    assert net.b.drops["ipv4_not_for_us"] == 1


def test_default_gateway_route_used():
    net = Network()
    net.a.set_default_gateway("10.0.0.2", net.nic_a)
    assert net.a.route(ip("1.2.3.4")) == (net.nic_a, ip("10.0.0.2"))


# ------------------------------------------------------------------ UDP

def udp_pair(net):
    s = UDPSocket(net.b)
    s.bind(("0.0.0.0", 5353))
    c = UDPSocket(net.a)
    return c, s


def test_udp_echo_both_ways():
    net = Network()
    c, s = udp_pair(net)
    c.sendto(b"ping", ("10.0.0.2", 5353))
    net.run_until(lambda: s.poll() & 1)
    data, addr = s.recvfrom(100)
    assert data == b"ping" and addr[0] == "10.0.0.1"
    s.sendto(b"pong", addr)
    net.run_until(lambda: c.poll() & 1)
    assert c.recvfrom(100) == (b"pong", ("10.0.0.2", 5353))
    with pytest.raises(NetError) as e:
        c.recvfrom(100)
    assert e.value.errno == errno.EAGAIN


def test_udp_large_datagram_fragmented_and_reassembled():
    net = Network()
    c, s = udp_pair(net)
    payload = bytes(range(256)) * 40  # 10240 bytes, 8 fragments
    c.sendto(payload, ("10.0.0.2", 5353))
    net.run_until(lambda: s.poll() & 1)
    assert s.recv(1 << 16) == payload
    assert net.a.stats["ipv4_frags_out"] >= 7


def test_udp_port_unreachable_reported_to_connected_socket():
    net = Network()
    c = UDPSocket(net.a)
    c.connect(("10.0.0.2", 9999))
    c.send(b"x")
    net.run_until(lambda: c.poll() & 8)  # EPOLLERR
    with pytest.raises(NetError) as e:
        c.recv(10)
    assert e.value.errno == errno.ECONNREFUSED
    with pytest.raises(NetError) as e:
        c.recv(10)
    assert e.value.errno == errno.EAGAIN
    assert net.b.drops["udp_no_socket"] == 1


def test_udp_connected_socket_filters_sources_and_truncates():
    net = Network()
    c, s = udp_pair(net)
    s.connect(("10.0.0.1", 1))  # only accept from port 1
    c.sendto(b"abcdef", ("10.0.0.2", 5353))
    net.run_for(0.1)
    assert not s.poll() & 1 and net.b.drops["udp_no_socket"] == 1
    s2 = UDPSocket(net.b)
    s2.bind(("10.0.0.2", 7))
    c.sendto(b"abcdef", ("10.0.0.2", 7))
    net.run_for(0.1)
    assert s2.recv(3) == b"abc"  # the rest of the datagram is gone
    assert not s2.poll() & 1


def test_udp_bad_datagrams_counted():
    net = Network()
    c, s = udp_pair(net)
    for raw, reason in ((b"\x00\x01", "udp_truncated"),
                        (b"\x00\x01\x14\xe9\x00\x03\x00\x00", "udp_bad_length"),
                        (b"\x00\x01\x14\xe9\x00\x08\x12\x34", "udp_bad_checksum"),
                        (b"\x00\x01\x00\x00\x00\x08\x00\x00", "udp_bad_port")):
        buf = bytearray(HEADROOM) + raw
        net.a.send_ip(ip("10.0.0.1"), ip("10.0.0.2"), 17, buf)
        net.run_for(0.01)
        assert net.b.drops[reason] == 1, reason


def test_udp_socket_errors():
    net = Network()
    u = UDPSocket(net.a)
    cases = [
        (lambda: u.send(b"x"), errno.EDESTADDRREQ),
        (lambda: u.getpeername(), errno.ENOTCONN),
        (lambda: u.recv(1), errno.EAGAIN),
        (lambda: u.sendto(b"x" * 70000, ("10.0.0.2", 1)), errno.EMSGSIZE),
        (lambda: u.sendto(b"x", ("255.255.255.255", 1)), errno.EACCES),
        (lambda: u.sendto(b"x", ("8.8.8.8", 1)), errno.ENETUNREACH),
        (lambda: u.connect(("8.8.8.8", 1)), errno.ENETUNREACH),
        (lambda: u.bind(("10.9.9.9", 1)), errno.EADDRNOTAVAIL),
        (lambda: u.bind(("10.0.0.1", 70000)), errno.EINVAL),
        (lambda: u.bind("nonsense"), errno.EINVAL),
        (lambda: u.setsockopt(0, 2, 0), errno.EINVAL),   # IP_TTL 0
        (lambda: u.getsockopt(99, 1), errno.ENOPROTOOPT),
    ]
    for fn, err in cases:
        with pytest.raises(NetError) as e:
            fn()
        assert e.value.errno == err, fn
    u.bind(("0.0.0.0", 4000))
    v = UDPSocket(net.a)
    with pytest.raises(NetError) as e:
        v.bind(("10.0.0.1", 4000))
    assert e.value.errno == errno.EADDRINUSE
    with pytest.raises(NetError) as e:
        u.bind(("0.0.0.0", 4001))
    assert e.value.errno == errno.EINVAL


def test_udp_receive_buffer_bounded():
    net = Network()
    c, s = udp_pair(net)
    s.setsockopt(1, 8, 4096)  # SO_RCVBUF -> 8192 after doubling
    assert s.getsockopt(1, 8) == 8192
    net.a.ping("10.0.0.2")  # resolve ARP first: its queue holds only 16
    net.run_for(0.1)
    for _ in range(20):
        c.sendto(b"x" * 1000, ("10.0.0.2", 5353))
    net.run_for(0.1)
    assert s.queued <= 8192 and net.b.drops["udp_rcvbuf_full"] == 12


def test_loopback_interface_delivers_to_self():
    st = Stack(FakeClock())
    st.add_loopback()
    a = UDPSocket(st)
    a.bind(("127.0.0.1", 1000))
    b = UDPSocket(st)
    b.sendto(b"self", ("127.0.0.1", 1000))
    st.poll()
    assert a.recvfrom(10) == (b"self", ("127.0.0.1", b.lport))
