"""Link endpoints: memory pair, loopback, the seeded impairment wrapper,
and a stack on loopback end to end."""

import pytest

from pyvisor.netstack.clock import FakeClock, MonotonicClock
from pyvisor.netstack.link import Impairment, ImpairedLink, LoopbackLink, memory_pair
from pyvisor.netstack.socket import TCPSocket
from pyvisor.netstack.stack import Stack
from pyvisor.netstack.testing import Network, NetworkIdle, tcp_pair, transfer
from pyvisor.netstack.errors import NetError


def test_memory_pair_queues_until_pumped():
    a, b = memory_pair()
    got = []
    b.attach(got.append)
    a.write(b"frame1")
    a.write(bytearray(b"frame2"))
    assert got == [] and b.next_deadline() == 0.0
    assert b.pump(0.0) == 2 and got == [b"frame1", b"frame2"]
    assert b.next_deadline() is None


def test_memory_link_queue_limit_drops():
    a, b = memory_pair()
    b.queue_limit = 2
    for _ in range(5):
        a.write(b"x")
    assert len(b.inbox) == 2 and a.dropped == 3


def test_impairment_is_seeded_and_reproducible():
    def schedule(seed):
        imp = Impairment(loss=0.2, duplicate=0.1, reorder=0.1, delay=0.01, jitter=0.005, seed=seed)
        return [imp.schedule(float(i)) for i in range(200)]

    assert schedule(1) == schedule(1)
    assert schedule(1) != schedule(2)
    s = schedule(1)
    assert any(x == [] for x in s) and any(len(x) == 2 for x in s)
    assert all(t >= i + 0.01 for i, x in enumerate(s) for t in x)


@pytest.mark.parametrize("field", ["loss", "duplicate", "reorder"])
def test_impairment_rejects_bad_probabilities(field):
    with pytest.raises(ValueError):
        Impairment(**{field: 1.5})


def test_impaired_link_delays_both_directions():
    clock = FakeClock(0.0)
    a, b = memory_pair()
    ia = ImpairedLink(a, clock, tx=Impairment(delay=0.5), rx=Impairment(delay=0.25))
    got_b, got_a = [], []
    b.attach(got_b.append)
    ia.attach(lambda f, ok=False: got_a.append(f))
    ia.write(b"out")
    b.pump(0.0)
    assert got_b == [] and ia.next_deadline() == 0.5
    clock.set(0.5)
    ia.pump(0.5)
    b.pump(0.5)
    assert got_b == [b"out"]
    b.write(b"in")
    ia.pump(0.5)
    assert got_a == [] and ia.next_deadline() == 0.75
    ia.pump(0.75)
    assert got_a == [b"in"]


def test_total_loss_makes_connect_time_out():
    net = Network(loss=1.0)
    c = TCPSocket(net.a)
    try:
        c.connect(("10.0.0.2", 80))
    except Exception:
        pass
    with pytest.raises(NetworkIdle):
        net.run_until(lambda: False, timeout=1000)
    assert c.getsockopt(1, 4) == 110  # ETIMEDOUT
    assert net.link_a.lost > 0


def test_tcp_over_loopback():
    st = Stack(FakeClock())
    st.add_loopback()
    srv = TCPSocket(st)
    srv.bind(("127.0.0.1", 9))
    srv.listen(1)
    c = TCPSocket(st)
    try:
        c.connect(("127.0.0.1", 9))
    except Exception:
        pass
    for _ in range(10):
        st.poll()
    a, peer = srv.accept()
    assert peer == ("127.0.0.1", c.lport) and c.getpeername() == ("127.0.0.1", 9)
    c.send(b"over lo")
    for _ in range(5):
        st.poll()
    assert a.recv(100) == b"over lo"


def test_full_size_segments_over_loopback_fit_an_ipv4_packet():
    """lo's MTU is 65536: the MSS must keep a segment with timestamps within
    IPv4's 65535-byte total length, or every full segment is dropped."""
    from pyvisor.netstack.tcp import TCPConfig
    st = Stack(FakeClock(), tcp_config=TCPConfig(mss=65535, rcvbuf=4 << 20, sndbuf=4 << 20))
    st.add_loopback()
    srv = TCPSocket(st)
    srv.bind(("127.0.0.1", 9))
    srv.listen(1)
    c = TCPSocket(st)
    try:
        c.connect(("127.0.0.1", 9))
    except Exception:
        pass
    for _ in range(10):
        st.poll()
    a, _peer = srv.accept()
    data = bytes(range(256)) * 4096          # 1 MiB: many full-size segments
    sent, got = 0, bytearray()
    for _ in range(2000):
        if sent < len(data):
            try:
                sent += c.send(data[sent:sent + (256 << 10)])
            except NetError:     # EAGAIN
                pass
        st.poll()
        try:
            got += a.recv(1 << 20)
        except NetError:         # EAGAIN
            pass
        if len(got) == len(data):
            break
    assert bytes(got) == data
    assert a.getsockopt(6, 2) <= 65495 and c.getsockopt(6, 2) <= 65495   # TCP_MAXSEG


def test_loopback_link_and_monotonic_clock():
    lo = LoopbackLink()
    got = []
    lo.attach(got.append)
    lo.write(b"f")
    assert lo.next_deadline() == 0.0 and lo.pump(0) == 1 and got == [b"f"]
    c = MonotonicClock()
    assert c.now() <= c.now()
    fc = FakeClock(5)
    with pytest.raises(ValueError):
        fc.advance(-1)
    fc.set(1)  # never backwards
    assert fc.now() == 5


def test_impaired_in_memory_exchange_with_duplicates_only():
    net = Network(seed=4, duplicate=0.5)
    c, a, _ = tcp_pair(net)
    data = bytes(range(256)) * 400
    assert transfer(net, c, a, data) == data


def test_capture_link_records_both_directions(tmp_path):
    from pyvisor.netstack.link.capture import CaptureLink, read_pcap
    a, b = memory_pair()
    path = tmp_path / "c.pcap"
    cap = CaptureLink(a, str(path))
    seen = []
    cap.attach(lambda f, ok=False: seen.append(bytes(f)))
    cap.write(b"out-frame")
    b.write(b"in-frame")
    cap.pump(0.0)
    cap.close()
    assert seen == [b"in-frame"]
    assert read_pcap(str(path)) == [b"out-frame", b"in-frame"]
    (tmp_path / "bad").write_bytes(b"nope" * 10)
    with pytest.raises(ValueError):
        read_pcap(str(tmp_path / "bad"))
