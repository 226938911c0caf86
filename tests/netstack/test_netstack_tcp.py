"""The sans-I/O TCP state machine, two connections on a fake wire."""

import errno

import pytest

from pyvisor.netstack.tcp import (MSL, TCPConfig, TCPConnection, Closed, Connected,
                                  ConnectionError_, _unwrap)
from pyvisor.netstack.tcp_segment import ACK, FIN, RST, SYN, Segment
from pyvisor.netstack.tcp_state import State
from pyvisor.netstack.testing import ConnPair

E = State.ESTABLISHED


def established(**kw):
    p = ConnPair(**kw).open()
    assert p.a.state is E and p.b.state is E
    return p


def events(conn):
    out = []
    while True:
        ev = conn.next_event()
        if ev is None:
            return out
        out.append(ev)


def kinds(p, direction=None):
    return [s for d, s in p.log if direction in (None, d)]


# ------------------------------------------------------------------ helpers

def test_unwrap_across_the_32_bit_edge():
    assert _unwrap(0xFFFFFFF0, 0x10) == 0x100000010
    assert _unwrap(0x100000010, 0xFFFFFFF0) == 0xFFFFFFF0
    assert _unwrap(5, 5) == 5


# ------------------------------------------------------------------ handshake

def test_three_way_handshake_and_options():
    p = established()
    syn, synack, ack = [s for _d, s in p.log[:3]]
    assert syn.flags == SYN and syn.mss == 1460 and syn.sack_ok and syn.ts and syn.wscale == 7
    assert synack.flags == SYN | ACK and synack.ack == 1001 and synack.seq == 5000
    assert ack.flags == ACK and ack.ack == 5001
    assert p.a.snd_mss == 1460 and p.a.eff_mss == 1448  # 12 bytes of timestamps
    assert p.a.snd_wscale == p.b.snd_wscale == 7
    assert p.a.sack_ok and p.b.sack_ok and p.a.ts_ok and p.b.ts_ok
    assert isinstance(events(p.a)[0], Connected) and isinstance(events(p.b)[0], Connected)


def test_options_off_when_the_peer_does_not_offer_them():
    plain = TCPConfig(sack=False, timestamps=False, window_scaling=False, mss=1000)
    p = established(config_b=plain)
    assert not p.a.sack_ok and not p.a.ts_ok and p.a.snd_wscale == p.a.rcv_wscale == 0
    assert p.a.snd_mss == 1000 and p.b.snd_mss == 1460
    assert p.a.eff_mss == 1000


def test_missing_mss_option_means_536():
    c = TCPConnection.from_syn(Segment(1, 0, SYN, 1000), TCPConfig(), 0.0, iss=1)
    assert c.snd_mss == 536


def test_user_mss_clamps_both_directions():
    p = established(config_a=TCPConfig(user_mss=600))
    assert p.log[0][1].mss == 600 and p.a.snd_mss == 600


def test_simultaneous_open():
    a = TCPConnection(TCPConfig(), iss=100, now=0.0)
    b = TCPConnection(TCPConfig(), iss=900, now=0.0)
    a.connect(0.0)
    b.connect(0.0)
    sa, sb = a.output(0.0), b.output(0.0)
    for s in sb:
        a.receive(s, 0.0)
    for s in sa:
        b.receive(s, 0.0)
    assert a.state is State.SYN_RECEIVED and b.state is State.SYN_RECEIVED
    for _ in range(4):
        sa, sb = a.output(0.0), b.output(0.0)
        for s in sb:
            a.receive(s, 0.0)
        for s in sa:
            b.receive(s, 0.0)
    assert a.state is E and b.state is E
    assert a.snd_una == 101 and b.snd_una == 901


def test_syn_retries_then_etimedout():
    p = ConnPair(wire=lambda s, d: [])
    p.open()
    p.advance(1000)
    syns = [s for d, s in p.log if s.flags & SYN]
    assert len(syns) == 1 + TCPConfig().syn_retries
    assert p.a.state is State.CLOSED and p.a.error == errno.ETIMEDOUT
    assert any(isinstance(e, ConnectionError_) and e.errno == errno.ETIMEDOUT
               for e in events(p.a))


def test_syn_retransmission_backoff_doubles():
    p = ConnPair(wire=lambda s, d: [])
    p.open()
    times = []
    for _ in range(4):
        p.advance(p.a.next_deadline() - p.now)
        times.append(p.now)
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
    assert gaps == [2.0, 4.0, 8.0]


def test_syn_sent_rst_with_good_ack_is_refused():
    a = TCPConnection(TCPConfig(), iss=100, now=0.0)
    a.connect(0.0)
    a.output(0.0)
    a.receive(Segment(0, 200, RST | ACK, 0), 0.0)  # ack outside: ignored
    assert a.state is State.SYN_SENT
    a.receive(Segment(0, 101, RST | ACK, 0), 0.0)
    assert a.state is State.CLOSED and a.error == errno.ECONNREFUSED


def test_syn_sent_bad_ack_gets_rst():
    a = TCPConnection(TCPConfig(), iss=100, now=0.0)
    a.connect(0.0)
    a.output(0.0)
    a.receive(Segment(7, 5000, SYN | ACK, 1000), 0.0)
    out = a.output(0.0)
    assert a.state is State.SYN_SENT
    assert len(out) == 1 and out[0].flags == RST and out[0].seq == 5000


def test_syn_received_bad_ack_gets_rst():
    c = TCPConnection.from_syn(Segment(1, 0, SYN, 1000), TCPConfig(), 0.0, iss=50)
    c.output(0.0)
    c.receive(Segment(2, 999, ACK, 1000), 0.0)
    out = c.output(0.0)
    assert c.state is State.SYN_RECEIVED and out[0].flags == RST and out[0].seq == 999


# ------------------------------------------------------------------ data

def test_data_both_ways_and_delayed_ack():
    p = established()
    p.a.send(b"x" * 100)
    p.pump()
    assert p.b.recv(1000) == b"x" * 100
    # One small segment: the ACK is delayed until the timer.
    assert not [s for d, s in p.log[3:] if d == "ba"]
    p.advance(0.05)
    acks = [s for d, s in p.log[3:] if d == "ba"]
    assert len(acks) == 1 and acks[0].ack == 1101
    p.b.send(b"reply")
    p.pump()
    assert p.a.recv(10) == b"reply"


def test_every_second_full_segment_acked_at_once():
    p = established()
    p.a.send(b"y" * (1448 * 4))
    p.pump()  # no time passes: the ACK is not delayed
    acks = [s for d, s in p.log[3:] if d == "ba"]
    assert acks and acks[-1].ack == 1001 + 4 * 1448


def test_nagle_holds_small_segments_and_nodelay_does_not():
    p = established()
    p.a.send(b"a")
    p.pump()
    p.a.send(b"b")
    p.pump()  # "b" waits for the ACK of "a", which is delayed
    data = [s for d, s in p.log if d == "ab" and s.payload]
    assert [bytes(s.payload) for s in data] == [b"a"]
    p.advance(0.05)
    data = [s for d, s in p.log if d == "ab" and s.payload]
    assert [bytes(s.payload) for s in data] == [b"a", b"b"]
    q = established(config_a=TCPConfig(nodelay=True))
    q.a.send(b"a")
    q.pump()
    q.a.send(b"b")
    q.pump()
    assert len([s for d, s in q.log if d == "ab" and s.payload]) == 2


def test_segments_respect_mss():
    p = established(config_b=TCPConfig(mss=500))
    p.a.send(b"z" * 5000)
    p.pump()
    sizes = [len(s.payload) for d, s in p.log if d == "ab" and s.payload]
    assert max(sizes) == 488 and sum(sizes) == 5000  # 500 less 12 of timestamps


def test_send_buffer_limit():
    p = established(config_a=TCPConfig(sndbuf=10000))
    assert p.a.send(b"q" * 50000) == 10000
    assert p.a.send_space == 0


def test_window_full_then_reopened_by_reading():
    p = established(config_b=TCPConfig(rcvbuf=8192))
    p.a.send(b"w" * 30000)
    p.pump()
    p.advance(0.1)  # the delayed ACK closes the window
    # Rounding up to the window-scale unit (never shrinking the right edge)
    # may admit a little over SO_RCVBUF, as in Linux; a bounded amount.
    assert p.b.readable <= 8192 + 8192 // 16 and p.a.snd_wnd == 0
    total = bytearray()
    for _ in range(50):
        total += p.b.recv(100000)
        p.pump()
        p.advance(0.3)
        if len(total) == 30000:
            break
    assert bytes(total) == b"w" * 30000


def test_zero_window_probe_and_recovery():
    p = established(config_b=TCPConfig(rcvbuf=4096, window_scaling=False))
    p.a.send(b"p" * 20000)
    p.pump()
    p.advance(0.1)  # the delayed ACK carries the zero window
    assert p.a.snd_wnd == 0
    before = len(p.log)
    p.advance(10)
    probes = [s for d, s in p.log[before:] if d == "ab" and len(s.payload) == 1]
    assert probes, "no zero-window probe"
    assert p.a.state is E  # probes answered: no timeout
    got = bytearray()
    for _ in range(200):
        got += p.b.recv(100000)
        p.advance(0.5)
        if len(got) == 20000:
            break
    assert bytes(got) == b"p" * 20000


# ------------------------------------------------------------------ close

def test_active_close_through_time_wait():
    p = established()
    p.a.close(p.now)
    p.pump()
    assert p.a.state is State.FIN_WAIT_2 and p.b.state is State.CLOSE_WAIT
    assert p.b.eof
    p.b.close(p.now)
    p.pump()
    assert p.a.state is State.TIME_WAIT and p.b.state is State.CLOSED
    p.advance(2 * MSL - 1)
    assert p.a.state is State.TIME_WAIT
    p.advance(2)
    assert p.a.state is State.CLOSED
    assert isinstance(events(p.a)[-1], Closed)


def test_simultaneous_close():
    p = established()
    p.a.shutdown_write()
    p.b.shutdown_write()
    fa, fb = p.a.output(p.now), p.b.output(p.now)
    for s in fb:
        p.a.receive(s, p.now)
    for s in fa:
        p.b.receive(s, p.now)
    assert p.a.state is State.CLOSING and p.b.state is State.CLOSING
    p.pump()
    assert p.a.state is State.TIME_WAIT and p.b.state is State.TIME_WAIT


def test_fin_with_data_and_ack_in_one_segment_goes_to_time_wait():
    p = established()
    p.b.send(b"last")
    p.b.shutdown_write()
    p.a.shutdown_write()
    fa = p.a.output(p.now)
    for s in fa:
        p.b.receive(s, p.now)  # b: FIN-WAIT-1 -> CLOSING
    p.pump()
    assert p.a.recv(10) == b"last"
    assert p.a.state is State.TIME_WAIT


def test_retransmitted_fin_in_time_wait_is_acked_and_restarts_timer():
    p = established()
    p.a.close(p.now)
    p.pump()
    p.b.close(p.now)
    p.pump()
    p.advance(30)
    fin = Segment(p.b.snd_max - 1 & 0xFFFFFFFF, p.b.rcv_nxt & 0xFFFFFFFF, FIN | ACK, 100)
    fin.ts = (p.b._ts_now(p.now), 0)
    p.a.receive(fin, p.now)
    out = p.a.output(p.now)
    assert out and out[0].flags == ACK
    assert p.a.timewait_deadline >= p.now + 2 * MSL - 1e-6 or p.a.state is State.TIME_WAIT


def test_close_with_unread_data_sends_rst():
    p = established()
    p.b.send(b"unread")
    p.pump()
    p.a.close(p.now)
    p.pump()
    assert p.a.state is State.CLOSED
    assert p.b.state is State.CLOSED and p.b.error == errno.ECONNRESET


def test_data_to_closed_orphan_resets():
    p = established()
    p.a.close(p.now)
    p.pump()
    assert p.a.state is State.FIN_WAIT_2
    p.b.send(b"late")
    p.pump()
    assert p.a.state is State.CLOSED and p.b.error == errno.ECONNRESET


def test_fin_wait_2_orphan_times_out():
    p = established()
    p.a.close(p.now)
    p.pump()
    p.advance(61)
    assert p.a.state is State.CLOSED and p.b.state is State.CLOSE_WAIT


def test_abort_sends_rst():
    p = established()
    p.a.abort(p.now)
    p.pump()
    assert p.b.state is State.CLOSED and p.b.error == errno.ECONNRESET


# ------------------------------------------------------------------ RST rules

def _rst(conn, offset):
    return Segment((conn.rcv_nxt + offset) & 0xFFFFFFFF, 0, RST, 0)


def test_rst_exact_sequence_resets():
    p = established()
    p.a.receive(_rst(p.a, 0), p.now)
    assert p.a.state is State.CLOSED and p.a.error == errno.ECONNRESET


def test_rst_in_window_but_not_exact_gets_challenge_ack():
    p = established()
    p.a.receive(_rst(p.a, 100), p.now)
    out = p.a.output(p.now)
    assert p.a.state is E and out[0].flags == ACK
    assert p.a.counters["challenge_acks"] == 1


def test_rst_outside_window_ignored():
    p = established()
    p.a.receive(_rst(p.a, 10_000_000), p.now)
    assert p.a.state is E and p.a.output(p.now) == []


def test_syn_on_established_gets_challenge_ack():
    p = established()
    seg = Segment(p.a.rcv_nxt & 0xFFFFFFFF, 0, SYN, 1000)
    p.a.receive(seg, p.now)
    assert p.a.state is E and p.a.counters["challenge_acks"] == 1


def test_out_of_window_data_is_acked_not_accepted():
    p = established()
    seg = Segment((p.a.rcv_nxt + 10_000_000) & 0xFFFFFFFF, p.a.snd_nxt & 0xFFFFFFFF,
                  ACK, 100, b"junk")
    p.a.receive(seg, p.now)
    assert p.a.readable == 0 and p.a.counters["dropped"] == 1
    assert p.a.output(p.now)[0].flags == ACK


def test_ack_for_unsent_data_is_dropped():
    p = established()
    seg = Segment(p.a.rcv_nxt & 0xFFFFFFFF, (p.a.snd_nxt + 5000) & 0xFFFFFFFF, ACK, 100, b"d")
    p.a.receive(seg, p.now)
    assert p.a.readable == 0 and p.a.snd_una == 1001


def test_paws_drops_old_timestamp():
    p = established()
    seg = Segment(p.a.rcv_nxt & 0xFFFFFFFF, p.a.snd_nxt & 0xFFFFFFFF, ACK, 100, b"old")
    seg.ts = ((p.a.ts_recent - 10) & 0xFFFFFFFF, 0)
    p.a.receive(seg, p.now)
    assert p.a.readable == 0 and p.a.counters["dropped"] == 1


# ------------------------------------------------------------------ loss

class Dropper:
    """Drops the listed data segments (by order of first transmission)."""

    def __init__(self, drop):
        self.drop = set(drop)
        self.seen = {}

    def __call__(self, seg, d):
        if d != "ab" or not seg.payload:
            return [seg]
        n = self.seen.setdefault(seg.seq, len(self.seen))
        if n in self.drop:
            self.drop.discard(n)
            return []
        return [seg]


def test_rto_retransmits_and_backs_off_then_times_out():
    p = established(config_a=TCPConfig(retries=3))
    p.wire = lambda s, d: []
    p.a.send(b"lost")
    p.pump()
    p.advance(200)
    data = [s for d, s in p.log if d == "ab" and s.payload]
    assert len(data) == 4  # original + 3 retries
    assert p.a.state is State.CLOSED and p.a.error == errno.ETIMEDOUT


def test_rto_follows_rfc6298_bounds():
    p = established()
    assert p.a.srtt is not None
    assert p.a.rto == pytest.approx(max(0.2, p.a.srtt + 4 * p.a.rttvar))
    c = TCPConnection(TCPConfig(), iss=1, now=0.0)
    c._rtt_update(0.5)
    assert (c.srtt, c.rttvar) == (0.5, 0.25) and c.rto == pytest.approx(1.5)
    c._rtt_update(0.5)
    assert c.rttvar == pytest.approx(0.1875)


def test_sack_recovery_retransmits_only_the_hole():
    p = established()
    p.wire = Dropper({2})
    p.a.send(b"s" * (1448 * 10))
    p.pump()
    assert p.a.counters["fast_retransmits"] == 1 and p.a.counters["rtos"] == 0
    assert p.a.counters["retransmits"] == 1
    assert p.b.recv(100000) == b"s" * (1448 * 10)
    sacks = [s for d, s in p.log if d == "ba" and s.sack]
    assert sacks and sacks[0].sack[0][0] == (1001 + 3 * 1448) & 0xFFFFFFFF


def test_sack_recovery_with_two_holes():
    p = established()
    p.wire = Dropper({1, 4})
    p.a.send(b"h" * (1448 * 10))
    p.pump()
    assert p.a.counters["rtos"] == 0 and p.a.counters["retransmits"] == 2
    assert p.b.recv(100000) == b"h" * (1448 * 10)


def test_newreno_without_sack_recovers_with_partial_acks():
    plain = TCPConfig(sack=False)
    p = established(config_a=plain, config_b=plain)
    p.wire = Dropper({1, 4})
    p.a.send(b"n" * (1448 * 10))
    p.pump()
    assert p.a.counters["fast_retransmits"] == 1 and p.a.counters["rtos"] == 0
    assert p.b.recv(100000) == b"n" * (1448 * 10)
    assert not p.a.in_recovery


def test_cwnd_reduced_on_fast_retransmit():
    for cc, factor in (("reno", 0.5), ("cubic", 0.7)):
        p = established(config_a=TCPConfig(cc=cc))
        cwnd0 = p.a.cc.cwnd
        p.wire = Dropper({0})
        p.a.send(b"c" * (1448 * 10))
        p.pump()
        assert p.a.cc.ssthresh <= int(cwnd0 * factor) + 1, cc


def test_lost_tail_recovered_by_rto():
    p = established()
    p.wire = Dropper({0})
    p.a.send(b"t" * 100)
    p.pump()
    assert p.b.readable == 0
    p.advance(2)
    assert p.a.counters["rtos"] == 1 and p.b.recv(1000) == b"t" * 100


def test_duplicates_and_reordering_are_harmless():
    held = []

    def wire(seg, d):
        if d == "ab" and seg.payload and not held:
            held.append(seg)
            return []
        if d == "ab" and seg.payload and held:
            return [seg, seg, held.pop()]
        return [seg]

    p = established()
    p.wire = wire
    p.a.send(b"r" * 5000)
    p.pump()
    p.advance(1)
    assert p.b.recv(100000) == b"r" * 5000


def test_out_of_order_data_acked_at_once_with_sack():
    p = established()
    seg = Segment((p.b.rcv_nxt + 1000) & 0xFFFFFFFF, p.b.snd_nxt & 0xFFFFFFFF, ACK, 1000,
                  b"later")
    p.b.receive(seg, p.now)
    out = p.b.output(p.now)
    assert out[0].ack == p.b.rcv_nxt & 0xFFFFFFFF and out[0].sack


# ------------------------------------------------------------------ keepalive

def test_keepalive_probes_then_timeout():
    cfg = TCPConfig(keepalive=True, keepidle=10, keepintvl=2, keepcnt=3)
    p = established(config_a=cfg)
    p.wire = lambda s, d: []
    p.advance(10 + 3 * 2 + 1)
    probes = [s for d, s in p.log[3:] if d == "ab" and s.seq == (p.a.snd_nxt - 1) & 0xFFFFFFFF]
    assert len(probes) == 3
    assert p.a.state is State.CLOSED and p.a.error == errno.ETIMEDOUT


def test_keepalive_answered_keeps_connection():
    cfg = TCPConfig(keepalive=True, keepidle=10, keepintvl=2, keepcnt=3)
    p = established(config_a=cfg)
    p.advance(100)
    assert p.a.state is E
    probes = [s for d, s in p.log[3:] if d == "ab" and s.seq == (p.a.snd_nxt - 1) & 0xFFFFFFFF]
    assert len(probes) >= 5


# ------------------------------------------------------------------ congestion

def test_reno_congestion_avoidance_adds_one_mss_per_window():
    from pyvisor.netstack.congestion import NewReno
    cc = NewReno(1000)
    cc.on_loss(20000, 0.0)
    assert cc.cwnd == cc.ssthresh == 10000
    for _ in range(10):
        cc.on_ack(1000, 0.0, 0.1)
    assert cc.cwnd == 11000
    cc.on_rto(11000, 0.0)
    assert cc.cwnd == 1000 and cc.ssthresh == 5500


def test_cubic_reduces_by_beta_and_regrows_concave_then_convex():
    from pyvisor.netstack.congestion import Cubic
    cc = Cubic(1000)
    cc.cwnd = 100_000
    cc.ssthresh = 1  # congestion avoidance
    cc.on_loss(100_000, 0.0)
    assert cc.cwnd == 70_000 and cc.w_max == 100.0
    # A long RTT keeps the Reno-friendly estimate (RFC 9438 4.3) below the
    # cubic curve, so the curve itself is what we see.
    rtt, t, sizes = 0.5, 0.0, []
    while t < 12:
        for _ in range(max(1, cc.cwnd // 1000)):
            cc.on_ack(1000, t, rtt)
        sizes.append((t, cc.cwnd))
        t += rtt
    k = ((100 - 70) / 0.4) ** (1 / 3)  # RFC 9438 eq. 2: K ~ 4.2 s
    near_k = [w for tt, w in sizes if abs(tt - k) < 0.6]
    assert near_k
    assert all(95_000 <= w <= 105_000 for w in near_k), near_k  # plateau at W_max
    growth_early = sizes[4][1] - sizes[0][1]
    growth_late = sizes[-1][1] - sizes[-5][1]
    assert growth_early > 0 and growth_late > growth_early  # convex after K
    assert sizes[-1][1] > 100_000


def test_early_retransmit_with_two_segments_out():
    p = established()
    p.wire = Dropper({0})
    p.a.send(b"e" * (1448 * 2))
    p.pump()
    assert p.a.counters["fast_retransmits"] == 1 and p.a.counters["rtos"] == 0
    assert p.b.recv(10000) == b"e" * (1448 * 2)


def test_limited_transmit_sends_new_data_on_first_dupacks():
    p = established(config_a=TCPConfig(sack=False))
    p.a.cc.cwnd = 3 * p.a.eff_mss  # small window, more data queued
    p.wire = Dropper({0})
    p.a.send(b"l" * (1448 * 8))
    p.pump()
    firsts = [s for d, s in p.log if d == "ab" and s.payload]
    # Three in the window, then one more for each of the first two dupacks.
    assert len({s.seq for s in firsts}) >= 5
    assert p.a.counters["rtos"] == 0
    p.advance(1)
    assert p.b.recv(100000) == b"l" * (1448 * 8)


def test_ack_storm_after_a_forged_segment_is_rate_limited():
    """A forged in-window segment makes b acknowledge bytes a never sent;
    a answers b's ACK of unsent data, b answers a's now-old ACK, and so on.
    Pure ACKs answering unacceptable segments go out at most once per
    invalid_ratelimit (Linux tcp_oow_rate_limited), so the exchange dies out
    (unlimited, it ran until the ConnPair's round limit)."""
    p = established()
    forged = Segment(p.b.rcv_nxt & 0xFFFFFFFF, p.b.snd_nxt & 0xFFFFFFFF, ACK, 1000, b"x" * 100)
    p.b.receive(forged, p.now)
    p.log.clear()
    p.pump()
    p.advance(10.0)
    assert 2 <= len(p.log) <= 6
    assert p.a.counters["oow_rate_limited"] + p.b.counters["oow_rate_limited"] > 0


def test_data_below_the_window_is_acked_every_time():
    """Not rate limited: a retransmission of data already received must be
    acknowledged at once, or the sender's recovery stalls."""
    p = established()
    old = Segment((p.a.rcv_nxt - 10) & 0xFFFFFFFF, p.a.snd_nxt & 0xFFFFFFFF, ACK, 1000, b"y" * 10)
    for _ in range(5):
        p.a.receive(old, p.now)
        assert [s.flags for s in p.a.output(p.now)] == [ACK]
    pure = Segment((p.a.rcv_nxt + 10_000_000) & 0xFFFFFFFF, p.a.snd_nxt & 0xFFFFFFFF, ACK, 1000)
    sent = 0
    for _ in range(5):
        p.a.receive(pure, p.now)
        sent += len(p.a.output(p.now))
    assert sent == 1 and p.a.counters["oow_rate_limited"] == 4
