"""The socket-like API: Linux errnos, options, readiness, listen queues,
and transfers between two stacks over an impaired in-memory link."""

import errno
import hashlib
import random
import socket as pysocket

import pytest

from pyvisor.netstack.socket import (EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT,
                                     EPOLLRDHUP, MAX_SYN_BACKLOG, TCPSocket, UDPSocket)
from pyvisor.netstack.tcp_state import State
from pyvisor.netstack.tcp import TCPConfig
from pyvisor.netstack.testing import Network, tcp_pair, transfer
from pyvisor.netstack.errors import NetError

SOL, TCP, IP = pysocket.SOL_SOCKET, pysocket.IPPROTO_TCP, pysocket.IPPROTO_IP


def err(fn, *args):
    with pytest.raises(NetError) as e:
        fn(*args)
    return e.value.errno


# ------------------------------------------------------------------ errnos
# Each expectation below was checked against the host kernel with Python's
# socket module on non-blocking sockets.

def test_fresh_socket_errnos():
    net = Network()
    s = TCPSocket(net.a)
    assert err(s.send, b"x") == errno.EPIPE
    assert err(s.recv, 1) == errno.ENOTCONN
    assert err(s.getpeername) == errno.ENOTCONN
    assert s.getsockname() == ("0.0.0.0", 0)
    assert err(s.shutdown, pysocket.SHUT_WR) == errno.ENOTCONN
    assert err(s.accept) == errno.EINVAL
    assert err(s.shutdown, 7) == errno.EINVAL
    assert err(s.recv, -1) == errno.EINVAL
    assert s.poll() == EPOLLOUT | EPOLLHUP


def test_listener_errnos():
    net = Network()
    s = TCPSocket(net.b)
    s.bind(("10.0.0.2", 80))
    s.listen(5)
    s.listen(10)  # again: allowed, changes the backlog
    assert err(s.accept) == errno.EAGAIN
    assert err(s.send, b"x") == errno.EPIPE
    assert err(s.recv, 1) == errno.ENOTCONN
    assert err(s.connect, ("10.0.0.1", 1)) == errno.EISCONN
    assert err(s.bind, ("10.0.0.2", 81)) == errno.EINVAL
    t = TCPSocket(net.b)
    assert err(t.bind, ("10.0.0.2", 80)) == errno.EADDRINUSE
    t.setsockopt(SOL, pysocket.SO_REUSEADDR, 1)
    assert err(t.bind, ("0.0.0.0", 80)) == errno.EADDRINUSE  # a listener holds it
    assert err(t.bind, ("10.0.0.9", 80)) == errno.EADDRNOTAVAIL
    assert err(t.bind, ("10.0.0.2", 65536)) == errno.EINVAL
    assert s.getsockopt(SOL, pysocket.SO_ACCEPTCONN) == 1


def test_connect_errnos_and_states():
    net = Network()
    srv = TCPSocket(net.b)
    srv.bind(("0.0.0.0", 80))
    srv.listen(5)
    c = TCPSocket(net.a)
    assert err(c.connect, ("10.0.0.2", 80)) == errno.EINPROGRESS
    assert err(c.connect, ("10.0.0.2", 80)) == errno.EALREADY
    assert not c.poll() & EPOLLOUT
    assert err(c.send, b"x") == errno.EAGAIN
    net.run_until(lambda: c.poll() & EPOLLOUT)
    assert c.getsockopt(SOL, pysocket.SO_ERROR) == 0
    assert err(c.connect, ("10.0.0.2", 80)) == errno.EISCONN
    assert err(c.listen, 1) == errno.EINVAL
    assert err(c.bind, ("10.0.0.1", 0)) == errno.EINVAL
    assert c.getpeername() == ("10.0.0.2", 80)
    assert c.getsockname()[0] == "10.0.0.1"
    assert err(c.recv, 10) == errno.EAGAIN
    assert err(TCPSocket(net.a).connect, ("8.8.8.8", 80)) == errno.ENETUNREACH


def test_connection_refused_by_rst():
    net = Network()
    c = TCPSocket(net.a)
    assert err(c.connect, ("10.0.0.2", 81)) == errno.EINPROGRESS
    net.run_until(lambda: c.poll() & EPOLLERR)
    assert c.poll() & EPOLLHUP
    assert c.getsockopt(SOL, pysocket.SO_ERROR) == errno.ECONNREFUSED
    assert c.getsockopt(SOL, pysocket.SO_ERROR) == 0
    assert err(c.connect, ("10.0.0.2", 81)) == errno.ECONNABORTED
    assert net.b.drops["tcp_no_socket"] == 1
    d = TCPSocket(net.a)
    err(d.connect, ("10.0.0.2", 81))
    net.run_until(lambda: d.poll() & EPOLLERR)
    assert err(d.connect, ("10.0.0.2", 81)) == errno.ECONNREFUSED


def test_connect_timeout_when_nobody_answers():
    net = Network()
    c = TCPSocket(net.a)
    err(c.connect, ("10.0.0.77", 80))  # on-link, no such host: ARP fails
    net.run_until(lambda: c.poll() & EPOLLERR, timeout=400)
    assert c.getsockopt(SOL, pysocket.SO_ERROR) == errno.ETIMEDOUT


def test_icmp_port_unreachable_aborts_connect():
    net = Network()
    c = TCPSocket(net.a)
    err(c.connect, ("10.0.0.2", 80))
    from pyvisor.netstack import icmp
    pkt_sent = []
    # Answer the SYN with an ICMP port unreachable instead of letting b reply.
    orig = net.b.tcp_input
    net.b.tcp_input = lambda pkt: (pkt_sent.append(pkt),
                                   net.b.send_icmp_unreachable(pkt, icmp.CODE_PORT_UNREACH))
    net.run_until(lambda: c.poll() & EPOLLERR)
    net.b.tcp_input = orig
    assert c.getsockopt(SOL, pysocket.SO_ERROR) == errno.ECONNREFUSED


def test_peer_reset_gives_econnreset_then_eof():
    net = Network()
    c, a, _ = tcp_pair(net)
    a.setsockopt(SOL, pysocket.SO_LINGER, (1, 0))
    a.close()
    net.run_until(lambda: c.poll() & EPOLLERR)
    assert err(c.recv, 10) == errno.ECONNRESET
    assert c.recv(10) == b""
    assert err(c.send, b"x") == errno.EPIPE


def test_send_after_shutdown_is_epipe_and_peer_sees_eof():
    net = Network()
    c, a, _ = tcp_pair(net)
    c.send(b"bye")
    c.shutdown(pysocket.SHUT_WR)
    assert err(c.send, b"x") == errno.EPIPE
    net.run_until(lambda: a.poll() & EPOLLRDHUP)
    assert a.recv(10) == b"bye" and a.recv(10) == b""
    a.send(b"still open")
    net.run_until(lambda: c.poll() & EPOLLIN)
    assert c.recv(100) == b"still open"
    a.close()
    net.run_until(lambda: c.poll() & EPOLLHUP)
    assert c.recv(10) == b""


def test_shutdown_read_discards():
    net = Network()
    c, a, _ = tcp_pair(net)
    c.shutdown(pysocket.SHUT_RD)
    a.send(b"ignored")
    net.run_for(1)
    assert c.recv(10) == b""


# ------------------------------------------------------------------ options

def test_socket_options_round_trip_and_validation():
    net = Network()
    s = TCPSocket(net.a)
    assert s.getsockopt(TCP, pysocket.TCP_MAXSEG) == 536
    s.setsockopt(SOL, pysocket.SO_RCVBUF, 10000)
    assert s.getsockopt(SOL, pysocket.SO_RCVBUF) == 20000
    s.setsockopt(SOL, pysocket.SO_SNDBUF, 1)
    assert s.getsockopt(SOL, pysocket.SO_SNDBUF) == 4608
    for opt, val in ((pysocket.TCP_NODELAY, 1), (pysocket.TCP_KEEPIDLE, 30),
                     (pysocket.TCP_KEEPINTVL, 5), (pysocket.TCP_KEEPCNT, 4),
                     (pysocket.TCP_MAXSEG, 1000)):
        s.setsockopt(TCP, opt, val)
        assert s.getsockopt(TCP, opt) == val
    s.setsockopt(SOL, pysocket.SO_KEEPALIVE, 1)
    assert s.getsockopt(SOL, pysocket.SO_KEEPALIVE) == 1
    s.setsockopt(SOL, pysocket.SO_LINGER, (1, 5))
    assert s.getsockopt(SOL, pysocket.SO_LINGER) == (1, 5)
    s.setsockopt(IP, pysocket.IP_TTL, 9)
    assert s.getsockopt(IP, pysocket.IP_TTL) == 9
    s.setsockopt(TCP, pysocket.TCP_CONGESTION, b"reno")
    assert s.getsockopt(TCP, pysocket.TCP_CONGESTION) == b"reno"
    assert s.getsockopt(SOL, pysocket.SO_TYPE) == pysocket.SOCK_STREAM
    bad = [((IP, pysocket.IP_TTL, 0), errno.EINVAL), ((IP, pysocket.IP_TTL, 256), errno.EINVAL),
           ((TCP, pysocket.TCP_KEEPIDLE, 0), errno.EINVAL),
           ((TCP, pysocket.TCP_KEEPCNT, 128), errno.EINVAL),
           ((TCP, pysocket.TCP_MAXSEG, 10), errno.EINVAL),
           ((TCP, pysocket.TCP_CONGESTION, b"bbr9"), errno.ENOENT),
           ((TCP, 9999, 1), errno.ENOPROTOOPT), ((SOL, 9999, 1), errno.ENOPROTOOPT)]
    for args, e in bad:
        assert err(s.setsockopt, *args) == e, args
    assert err(s.getsockopt, TCP, 9999) == errno.ENOPROTOOPT


def test_ttl_and_maxseg_reach_the_wire():
    net = Network()
    seen = []
    orig = net.b.ip_input
    net.b.ip_input = lambda nic, data, *rest: (seen.append(bytes(data)), orig(nic, data, *rest))
    srv = TCPSocket(net.b)
    srv.bind(("0.0.0.0", 80))
    srv.listen(1)
    c = TCPSocket(net.a)
    c.setsockopt(IP, pysocket.IP_TTL, 17)
    c.setsockopt(TCP, pysocket.TCP_MAXSEG, 700)
    err(c.connect, ("10.0.0.2", 80))
    net.run_until(lambda: srv.poll())
    a, _ = srv.accept()
    assert seen[0][8] == 17
    assert a.getsockopt(TCP, pysocket.TCP_MAXSEG) == 700 - 12
    c.send(b"m" * 5000)
    net.run_for(1)
    assert max(len(p) for p in seen) <= 20 + 32 + 688


# ------------------------------------------------------------------ readiness

def test_readiness_and_waiters():
    net = Network()
    c, a, srv = tcp_pair(net)
    masks = []
    a.add_waiter(masks.append)
    assert a.poll() == EPOLLOUT
    c.send(b"hi")
    net.run_until(lambda: masks and masks[-1] & EPOLLIN)
    assert a.poll() == EPOLLIN | EPOLLOUT
    a.recv(10)
    assert a.poll() == EPOLLOUT
    a.remove_waiter(masks.append)
    a.remove_waiter(masks.append)  # absent: ignored
    c.close()
    net.run_until(lambda: a.poll() & EPOLLRDHUP)
    assert a.poll() & EPOLLIN
    assert srv.poll() == 0


def test_send_buffer_full_then_writable_again():
    net = Network()
    c, a, _ = tcp_pair(net)
    c.setsockopt(SOL, pysocket.SO_SNDBUF, 8192)
    total = 0
    while True:
        try:
            total += c.send(b"f" * 4096)
        except NetError as e:
            assert e.errno == errno.EAGAIN
            break
    assert total >= 16384 and not c.poll() & EPOLLOUT
    got = bytearray()

    def drain():
        try:
            got.extend(a.recv(1 << 20))
        except NetError:
            pass
        return c.poll() & EPOLLOUT

    net.run_until(drain)
    assert got and set(got) == {ord("f")}


# ------------------------------------------------------------------ listen queue

def test_backlog_and_accept_order():
    net = Network()
    srv = TCPSocket(net.b)
    srv.bind(("0.0.0.0", 80))
    srv.listen(2)
    clients = [TCPSocket(net.a) for _ in range(5)]
    for c in clients:
        err(c.connect, ("10.0.0.2", 80))
    net.run_for(0.5)
    assert len(srv.accept_queue) == 3  # Linux allows backlog + 1
    assert len(srv.syn_queue) == 2  # handshakes done, waiting for room
    ports = [srv.accept()[1][1] for _ in range(5)]
    assert ports == [c.lport for c in clients]
    assert err(srv.accept) == errno.EAGAIN


def test_syn_flood_is_bounded_and_listener_still_serves():
    net = Network()
    srv = TCPSocket(net.b)
    srv.bind(("0.0.0.0", 80))
    srv.listen(4096)
    from pyvisor.netstack.tcp_segment import SYN, Segment
    rng = random.Random(5)
    net.a.ping("10.0.0.2")
    net.run_for(0.1)
    for i in range(3000):
        seg = Segment(rng.randrange(1 << 32), 0, SYN, 1000, mss=1460)
        # Spoofed sources on the link that do not exist: nobody will ever ACK.
        net.a.send_tcp(0x0A000032 + i % 100, 10000 + i, 0x0A000002, 80, seg)
    net.run_for(0.1)
    assert len(srv.syn_queue) == MAX_SYN_BACKLOG
    assert net.b.drops["tcp_syn_queue_full"] == 3000 - MAX_SYN_BACKLOG
    # Embryonic connections time out and free their slots.
    net.run_for(200)
    assert len(srv.syn_queue) == 0 and len(net.b.tcp_conns) == 0
    c = TCPSocket(net.a)
    err(c.connect, ("10.0.0.2", 80))
    net.run_until(lambda: srv.poll())
    assert srv.accept()


def test_listener_close_resets_unaccepted_connections():
    net = Network()
    srv = TCPSocket(net.b)
    srv.bind(("0.0.0.0", 80))
    srv.listen(5)
    c = TCPSocket(net.a)
    err(c.connect, ("10.0.0.2", 80))
    net.run_until(lambda: srv.poll())
    srv.close()
    net.run_until(lambda: c.poll() & EPOLLERR)
    assert err(c.recv, 1) == errno.ECONNRESET
    again = TCPSocket(net.b)
    again.bind(("0.0.0.0", 80))  # the port is free again


def test_ports_released_after_time_wait():
    net = Network()
    c, a, srv = tcp_pair(net)
    port = c.lport
    c.close()
    net.run_for(0.5)
    a.close()
    net.run_for(0.5)
    assert c.state is State.TIME_WAIT
    d = TCPSocket(net.a)
    assert err(d.bind, ("10.0.0.1", port)) == errno.EADDRINUSE
    net.run_for(61)
    d.bind(("10.0.0.1", port))
    assert not net.a.tcp_conns and not net.b.tcp_conns


def test_reuseaddr_allows_bind_during_time_wait():
    net = Network()
    c, a, srv = tcp_pair(net)
    port = c.lport
    c.setsockopt(SOL, pysocket.SO_REUSEADDR, 1)
    c.close()
    net.run_for(0.5)
    a.close()
    net.run_for(0.5)
    d = TCPSocket(net.a)
    d.setsockopt(SOL, pysocket.SO_REUSEADDR, 1)
    d.bind(("10.0.0.1", port))


# ------------------------------------------------------------------ transfers

def _roundtrip(net, nbytes, seed):
    c, a, _ = tcp_pair(net)
    data = random.Random(seed).randbytes(nbytes)
    got = transfer(net, c, a, data)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    back = transfer(net, a, c, data[::-1])
    assert back == data[::-1]
    c.close()
    a.close()
    net.run_for(70)
    assert not net.a.tcp_conns and not net.b.tcp_conns
    return c, a


def test_transfer_clean_link():
    _roundtrip(Network(), 1 << 20, 1)


@pytest.mark.parametrize("impair", [
    dict(loss=0.03, delay=0.02),
    dict(duplicate=0.05, delay=0.005),
    dict(reorder=0.1, reorder_delay=0.003, delay=0.002),
    dict(loss=0.02, duplicate=0.02, reorder=0.05, delay=0.01, jitter=0.002),
])
def test_transfer_impaired_link(impair):
    _roundtrip(Network(seed=7, **impair), 300_000, 2)


def test_transfer_without_sack_timestamps_or_scaling():
    plain = TCPConfig(sack=False, timestamps=False, window_scaling=False, cc="reno")
    _roundtrip(Network(seed=3, tcp_config=plain, loss=0.03, delay=0.01), 300_000, 3)


def test_transfer_small_mtu():
    _roundtrip(Network(mtu=576, loss=0.01, delay=0.001), 200_000, 4)


def test_10mb_under_10_percent_loss():
    """10 MB one way with 10% loss each way, checked by sha256 (about 2 s of
    wall time for 60 simulated seconds)."""
    net = Network(seed=3, loss=0.1, delay=0.005)
    c, a, _ = tcp_pair(net)
    data = random.Random(10).randbytes(10 << 20)
    got = transfer(net, c, a, data, timeout=36000)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert c.conn.counters["retransmits"] > 0


def test_new_syn_takes_over_time_wait_tuple():
    net = Network()
    srv = TCPSocket(net.b)
    srv.bind(("0.0.0.0", 80))
    srv.listen(4)
    c = TCPSocket(net.a)
    c.setsockopt(SOL, pysocket.SO_REUSEADDR, 1)
    c.bind(("10.0.0.1", 4444))
    err(c.connect, ("10.0.0.2", 80))
    net.run_until(lambda: srv.poll())
    a, _ = srv.accept()
    a.close()  # the server closes first: it holds TIME-WAIT
    net.run_for(0.5)
    c.close()
    net.run_for(0.5)
    assert a.state is State.TIME_WAIT
    d = TCPSocket(net.a)
    d.setsockopt(SOL, pysocket.SO_REUSEADDR, 1)
    d.bind(("10.0.0.1", 4444))
    err(d.connect, ("10.0.0.2", 80))
    # The ISS clock moved on (RFC 6528), so the SYN is above the old
    # connection's sequence space and takes over at once.
    net.run_until(lambda: srv.poll(), timeout=5)
    b, peer = srv.accept()
    assert peer == ("10.0.0.1", 4444)


def test_icmp_fragmentation_needed_lowers_mss():
    net = Network()
    c, a, _ = tcp_pair(net)
    from pyvisor.netstack import icmp
    from pyvisor.netstack.tcp_segment import encode
    conn = c.conn
    assert conn.snd_mss == 1460
    # Quote a segment we sent: IPv4 header + first 8 bytes of TCP.
    from pyvisor.netstack import _checksum as ck
    seg_buf, n = encode(conn._make_ack_segment(conn.snd_una, 0x10, net.clock.now(), b""),
                        c.lport, 80, 0x0A000001, 0x0A000002)
    ip_hdr = bytearray(20)
    ck.build_ipv4(ip_hdr, 0, 20 + n, 1, 0x4000, 64, 6, 0x0A000001, 0x0A000002)
    msg = icmp.build(icmp.TYPE_DEST_UNREACH, icmp.CODE_FRAG_NEEDED, 1000,
                     bytes(ip_hdr) + bytes(seg_buf[:8]))
    net.b._send_icmp(0x0A000002, 0x0A000001, msg)
    net.run_for(0.1)
    assert conn.snd_mss == 960
    # A forged one quoting a sequence number outside the window is ignored.
    bad = bytearray(seg_buf[:8])
    ck.put32(bad, 4, (conn.snd_una + 10_000_000) & 0xFFFFFFFF)
    net.b._send_icmp(0x0A000002, 0x0A000001, icmp.build(
        icmp.TYPE_DEST_UNREACH, icmp.CODE_FRAG_NEEDED, 600, bytes(ip_hdr) + bytes(bad)))
    net.run_for(0.1)
    assert conn.snd_mss == 960 and net.a.drops["icmp_out_of_window"] == 1


def test_send_buffer_autotunes_unless_so_sndbuf_was_set():
    """Linux grows sk_sndbuf with cwnd (tcp_sndbuf_expand) up to
    tcp_wmem[2]; setting SO_SNDBUF locks it."""
    from pyvisor.netstack.testing import Network, tcp_pair, transfer
    net = Network()
    c, a, _ = tcp_pair(net)
    start = c.getsockopt(SOL, pysocket.SO_SNDBUF)
    transfer(net, c, a, bytes(8 << 20))
    grown = c.getsockopt(SOL, pysocket.SO_SNDBUF)
    assert start < grown <= 4 << 20
    locked, a2, _ = tcp_pair(net, port=81)
    locked.setsockopt(SOL, pysocket.SO_SNDBUF, 32768)
    transfer(net, locked, a2, bytes(2 << 20))
    assert locked.getsockopt(SOL, pysocket.SO_SNDBUF) == 65536


def _sim_transfer(**impair):
    from pyvisor.netstack.testing import Network, tcp_pair, transfer
    net = Network(seed=1, delay=0.02, **impair)
    c, a, _ = tcp_pair(net)
    t0 = net.clock.now()
    data = random.Random(1).randbytes(2 << 20)
    assert transfer(net, c, a, data) == data
    return net.clock.now() - t0, c.conn


def test_reordering_is_undone_not_treated_as_loss():
    """5% of frames 5 ms late at a 40 ms RTT: each looks like a loss to
    three-duplicate-ACK detection.  Eifel detection (timestamps) finds the
    retransmission was spurious and undoes the reduction, and the duplicate
    threshold rises past the reordering seen, so the transfer runs at nearly
    the speed it has without reordering (it ran 15 times slower before)."""
    clean, _ = _sim_transfer()
    reordered, conn = _sim_transfer(reorder=0.05)
    assert conn.counters["undos"] > 0 and conn.dupthresh > 3
    assert reordered < 2 * clean


def test_real_losses_are_not_undone():
    _t, conn = _sim_transfer(loss=0.03)
    assert conn.counters["fast_retransmits"] > 10 and conn.counters["undos"] == 0
