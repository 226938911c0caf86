"""TCP (RFC 9293) as a sans-I/O state machine: one :class:`TCPConnection`.

The connection never touches a socket or a clock.  Its inputs are
``receive(segment, now)`` for a segment addressed to it and the application
calls (``send``, ``recv``, ``shutdown_write``, ``close``, ``abort``); its
outputs are ``output(now) -> [Segment]``, which also runs any timer that is
due, and ``next_event()``.  ``next_deadline()`` says when ``output`` must be
called again even if nothing else happens.

Sequence numbers are kept internally as unbounded ints that only grow
("unwrapped"); the wire's 32-bit values are unwrapped against ``rcv_nxt``
(for SEG.SEQ) and ``snd_una`` (for SEG.ACK).  So comparisons are plain
``<`` and there is no modular arithmetic outside :func:`_unwrap`.

Implemented: all states with simultaneous open and close, TIME-WAIT; RST
rules with RFC 5961 challenge ACKs; MSS; window scaling, timestamps with RTT
measurement and PAWS (RFC 7323); SACK on both sides (RFC 2018) with
SACK-based loss recovery (a simplified RFC 6675); retransmission timer
(RFC 6298) with backoff; fast retransmit and NewReno recovery (RFC 6582,
with Linux's "reno SACK" accounting when SACK is off); Reno or CUBIC;
undo of spurious fast recovery by timestamps (Eifel, RFC 3522/4015) with an
adaptive duplicate threshold (Linux's tp->reordering); rate-limited ACKs for
unacceptable segments (Linux tcp_oow_rate_limited); send-buffer
autotuning; delayed ACKs; Nagle; zero-window probing; keepalive.
"""

import copy
import errno
import os
from ..fields import FrozenFields

from . import congestion
from .tcp_segment import ACK, FIN, MAX_WSCALE, PSH, RST, SYN, Segment
from .tcp_state import (ON_APP_CLOSE, ON_FIN_ACKED, ON_FIN_RECEIVED,
                        RECEIVES_DATA, SENDS_DATA, SYNCHRONIZED, State)

MASK32 = 0xFFFFFFFF
DEFAULT_MSS = 536            # RFC 9293 3.7.1, when the peer sends none
MAX_SACK_BLOCKS = 3          # what fits beside timestamps
MSL = 30.0                   # TIME-WAIT lasts 2*MSL = 60 s, as Linux
FIN_WAIT_2_TIMEOUT = 60.0    # Linux tcp_fin_timeout for orphaned sockets
MAX_DUPTHRESH = 300          # Linux tcp_max_reordering


def _unwrap(ref, wire):
    """The unbounded sequence number nearest ref whose low 32 bits are wire."""
    d = (wire - ref) & MASK32
    if d >= 0x80000000:
        d -= 0x100000000
    return ref + d


def _ts_before(a, b):
    """RFC 7323 timestamp comparison: a < b in 32-bit modular order."""
    return ((a - b) & MASK32) >= 0x80000000


class TCPConfig:
    """Per-connection settings (socket options map onto these).

    The defaults are the class attributes; ``TCPConfig(name=value, ...)``
    overrides some, and ``copy()`` gives an independent instance."""

    mss = 1460              # what we can receive: the MSS we advertise
    rcvbuf = 262144
    sndbuf = 262144
    nodelay = False
    cc = "cubic"
    sack = True
    timestamps = True
    window_scaling = True
    keepalive = False
    keepidle = 7200.0
    keepintvl = 75.0
    keepcnt = 9
    delack = 0.04           # Linux TCP_DELACK_MIN
    rto_initial = 1.0       # RFC 6298 2.1
    rto_min = 0.2           # Linux TCP_RTO_MIN (RFC 6298 says 1 s)
    rto_max = 120.0         # Linux TCP_RTO_MAX
    syn_retries = 6
    retries = 15            # Linux tcp_retries2
    user_mss = 0            # TCP_MAXSEG clamp, 0 = none
    ttl = 64
    invalid_ratelimit = 0.5  # Linux tcp_invalid_ratelimit (500 ms)
    sndbuf_locked = False   # SO_SNDBUF was set: no autotuning
    sndbuf_max = 4 << 20    # Linux tcp_wmem[2]

    def __init__(self, **settings):
        for name, value in settings.items():
            if name.startswith("_") or not hasattr(TCPConfig, name) or callable(getattr(TCPConfig, name)):
                raise TypeError("TCPConfig has no setting %r" % name)
            setattr(self, name, value)

    def copy(self):
        new = TCPConfig()
        new.__dict__.update(self.__dict__)
        return new

    def __eq__(self, other):
        if not isinstance(other, TCPConfig):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None

    def __repr__(self):
        return "TCPConfig(%s)" % ", ".join("%s=%r" % kv for kv in sorted(self.__dict__.items()))


# ------------------------------------------------------------------ events
# (Plain classes, not dataclasses: netstack is imported by the Sentry, whose
# start-up should not pay for importing dataclasses.)

class _Event(FrozenFields):
    __slots__ = ()

    def __init__(self):
        self._set()


class Connected(_Event):
    """The handshake completed (ESTABLISHED)."""

    __slots__ = ()


class DataReceived(_Event):
    """New in-order bytes are readable."""

    __slots__ = ()


class EndOfStream(_Event):
    """The peer's FIN arrived: after the buffered bytes, recv gives b""."""

    __slots__ = ()


class SendSpace(_Event):
    """Acknowledged data freed room in the send buffer."""

    __slots__ = ()


class ConnectionError_(FrozenFields):
    """The connection failed: errno is ECONNRESET, ECONNREFUSED, ETIMEDOUT…"""

    __slots__ = ("errno",)

    def __init__(self, errno):
        self._set(errno=errno)


class Closed(_Event):
    """The connection reached CLOSED; its demux entry can go."""

    __slots__ = ()


class TCPConnection:
    """One TCP connection's state (the TCB) and its algorithms."""

    def __init__(self, config=None, iss=None, now=0.0):
        self.config = config or TCPConfig()
        self.state = State.CLOSED
        self.iss = (int.from_bytes(os.urandom(4), "big") if iss is None else iss)
        # Send sequence space (unwrapped).
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.snd_max = self.iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_buf = bytearray()
        self.snd_buf_seq = self.iss + 1   # sequence number of snd_buf[0]
        self.fin_queued = False
        # Receive sequence space (unwrapped).
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0                  # right edge we advertised
        self.rcv_buf = bytearray()
        self.ooo = {}                     # seq -> bytes, out of order
        self.ooo_fin = None               # seq of an out-of-order FIN
        self.fin_received = False
        self.read_shutdown = False
        self.app_closed = False
        self.last_ack_sent = 0
        # Options negotiated.
        self.snd_mss = DEFAULT_MSS
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.sack_ok = False
        self.ts_ok = False
        self.ts_recent = 0
        # Per-connection timestamp offset (RFC 7323 7.1), derived from the
        # ISS so a seeded stack is deterministic.
        self.ts_offset = (self.iss * 2654435761 + 0x5BD1E995) & MASK32
        # Loss recovery.
        self.sacked = []                  # sorted, merged [start, end) above snd_una
        self.dupacks = 0
        self.reno_sacked = 0
        self.in_recovery = False
        self.recover = self.iss
        self.retx_hi = self.iss
        self.retx_marks = {}              # retransmitted seq -> snd_nxt at the time
        self.dupthresh = 3                # raised when reordering is seen
        self.undo_state = None            # (cc before reduction, recover, degree, tsval)
        self.cc = congestion.ALGORITHMS[self.config.cc](self.eff_mss)
        # RTT (RFC 6298) and timers.
        self.srtt = None
        self.rttvar = 0.0
        self.rto = self.config.rto_initial
        self.rtt_seq = None               # Karn timing when no timestamps
        self.rtt_time = 0.0
        self.retries = 0
        self.rto_deadline = None
        self.delack_deadline = None
        self.persist_deadline = None
        self.keepalive_deadline = None
        self.keepalive_probes = 0
        self.last_probe_at = now
        self.timewait_deadline = None
        self._closed_emitted = False
        self.finwait2_deadline = None
        self.last_heard = now
        self.last_rto_at = now
        self.ack_now = False
        self.unacked_segs = 0
        self.gso_max = 0                  # link segmentation offload: bytes, 0 = none
        # Outputs.
        self.error = 0                    # SO_ERROR, cleared when read
        self.events = []
        self._out = []
        self.counters = {"retransmits": 0, "fast_retransmits": 0, "rtos": 0,
                         "dropped": 0, "challenge_acks": 0, "lost_retransmits": 0,
                         "oow_rate_limited": 0, "undos": 0}
        self.last_oow_ack = float("-inf")

    # ================================================================ opens

    def connect(self, now):
        """Active open: send SYN, enter SYN-SENT."""
        if self.state is not State.CLOSED:
            raise ValueError("connect on a connection in " + self.state.value)
        self.state = State.SYN_SENT
        self.rcv_wscale = self._choose_wscale() if self.config.window_scaling else 0
        self._send_syn(now)

    @classmethod
    def from_syn(cls, syn, config, now, iss=None):
        """Passive open: a SYN arrived at a listener.  Returns a connection
        in SYN-RECEIVED with its SYN,ACK queued."""
        conn = cls(config, iss, now)
        conn.state = State.SYN_RECEIVED
        conn._take_syn_options(syn, now)
        conn.irs = syn.seq
        conn.rcv_nxt = syn.seq + 1
        conn.snd_wnd = syn.window  # never scaled in a SYN
        conn.snd_wl1 = syn.seq
        conn.snd_wl2 = conn.iss
        conn.max_snd_wnd = conn.snd_wnd
        conn._send_syn(now)
        return conn

    def _choose_wscale(self):
        """Enough shift for a 4 MB window, as Linux's default of 7 allows."""
        ws = 0
        while (65535 << ws) < max(self.config.rcvbuf, 4 << 20) and ws < MAX_WSCALE:
            ws += 1
        return ws

    def _take_syn_options(self, syn, now):
        cfg = self.config
        self.snd_mss = syn.mss if syn.mss else DEFAULT_MSS
        if cfg.user_mss:
            self.snd_mss = min(self.snd_mss, cfg.user_mss)
        self.snd_mss = max(self.snd_mss, 64)
        if cfg.window_scaling and syn.wscale is not None:
            self.snd_wscale = syn.wscale
            if self.state is State.SYN_RECEIVED or not self.rcv_wscale:
                self.rcv_wscale = self.rcv_wscale or self._choose_wscale()
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.sack_ok = cfg.sack and syn.sack_ok
        if cfg.timestamps and syn.ts is not None:
            self.ts_ok = True
            self.ts_recent = syn.ts[0]
        else:
            self.ts_ok = False
        self.cc = congestion.ALGORITHMS[cfg.cc](self.eff_mss)

    def _send_syn(self, now):
        cfg = self.config
        syn_ack = self.state is State.SYN_RECEIVED
        seg = Segment(self.iss & MASK32, self.rcv_nxt & MASK32 if syn_ack else 0,
                      SYN | (ACK if syn_ack else 0), min(self._free_space(), 65535),
                      mss=min(cfg.mss, cfg.user_mss) if cfg.user_mss else cfg.mss)
        active = not syn_ack
        if cfg.window_scaling and (active or self.rcv_wscale or self.snd_wscale):
            seg.wscale = self.rcv_wscale
        if cfg.sack and (active or self.sack_ok):
            seg.sack_ok = True
        if cfg.timestamps and (active or self.ts_ok):
            seg.ts = (self._ts_now(now), self.ts_recent if syn_ack else 0)
        self.snd_nxt = self.iss + 1
        self.snd_max = max(self.snd_max, self.snd_nxt)
        self.rcv_adv = self.rcv_nxt + seg.window
        self._out.append(seg)
        if self.rto_deadline is None:
            self.rto_deadline = now + self.rto
        if self.rtt_seq is None and self.retries == 0:
            self.rtt_seq, self.rtt_time = self.iss, now

    # ================================================================ app side

    @property
    def eff_mss(self):
        """Payload bytes per segment: peer MSS less our option overhead."""
        return max(self.snd_mss - (12 if self.ts_ok else 0), 32)

    def _free_space(self):
        return max(self.config.rcvbuf - len(self.rcv_buf), 0)

    @property
    def send_space(self):
        """Bytes send() would accept now."""
        if self.state not in SENDS_DATA or self.fin_queued:
            return 0
        return max(self.config.sndbuf - len(self.snd_buf), 0)

    @property
    def readable(self):
        return len(self.rcv_buf)

    @property
    def eof(self):
        """The peer finished and every byte has been read (or reads are shut)."""
        return (self.fin_received and not self.rcv_buf) or self.read_shutdown

    def send(self, data):
        """Queue data; returns how many bytes fit (0 when the buffer is full).

        Precondition: the state allows sending (the socket layer maps other
        states to EPIPE/ENOTCONN).
        """
        n = min(len(data), self.send_space)
        if n:
            self.snd_buf += data[:n]
        return n

    def recv(self, maxlen):
        """Take up to maxlen in-order bytes; may queue a window update."""
        n = min(maxlen, len(self.rcv_buf))
        data = bytes(self.rcv_buf[:n])
        del self.rcv_buf[:n]
        if n and self.state in RECEIVES_DATA:
            # Send a window update when the window opened by a useful amount
            # (receiver SWS avoidance, RFC 9293 3.8.6.2.2).
            opened = self._free_space() - (self.rcv_adv - self.rcv_nxt)
            if opened >= min(self.config.rcvbuf // 2, 2 * self.config.mss):
                self.ack_now = True
        return data

    def shutdown_read(self):
        self.read_shutdown = True
        self.rcv_buf.clear()

    def shutdown_write(self):
        """SHUT_WR: send a FIN after the queued data."""
        nxt = ON_APP_CLOSE.get(self.state)
        if nxt is None or self.fin_queued:
            return
        self.fin_queued = True
        self.state = nxt

    def close(self, now):
        """close(2) of the last reference.  Unread data means RST (as Linux,
        RFC 2525 2.17); otherwise a graceful FIN.  Returns True when the
        connection is already finished."""
        self.app_closed = True
        if self.state in (State.SYN_SENT, State.CLOSED, State.LISTEN):
            self._enter_closed()
            return True
        if self.rcv_buf:
            self.abort(now)
            return True
        self.shutdown_write()
        if self.state is State.FIN_WAIT_2:
            self.finwait2_deadline = now + FIN_WAIT_2_TIMEOUT
        return self.state is State.CLOSED

    def abort(self, now, err=0):
        """Send RST (if synchronized) and go to CLOSED (SO_LINGER 0, ABORT)."""
        if self.state in SYNCHRONIZED and self.state is not State.TIME_WAIT:
            self._out.append(Segment(self.snd_nxt & MASK32, self.rcv_nxt & MASK32,
                                     RST | ACK, 0))
        if err:
            self._fail(err)
        self._enter_closed()

    def next_event(self):
        """The oldest pending event, or None."""
        return self.events.pop(0) if self.events else None

    # ================================================================ input

    def receive(self, seg, now):
        """SEGMENT ARRIVES (RFC 9293 3.10.7) for this connection."""
        st = self.state
        if st is State.CLOSED or st is State.LISTEN:
            return
        if st is State.SYN_SENT:
            self._receive_syn_sent(seg, now)
            return
        seq = _unwrap(self.rcv_nxt, seg.seq)
        flags = seg.flags
        # Simultaneous open: our SYN,ACK crossed theirs (Linux passes it too).
        if (st is State.SYN_RECEIVED and flags & SYN and flags & ACK
                and seq == self.irs and _unwrap(self.snd_una, seg.ack) == self.snd_nxt):
            seq += 1
            flags &= ~SYN
            seg.payload = b""
        # RFC 7323 5.3: PAWS.
        if self.ts_ok and seg.ts is not None and not flags & RST:
            if _ts_before(seg.ts[0], self.ts_recent):
                self.counters["dropped"] += 1
                self._oow_ack(seg, now)
                return
        seg_len = len(seg.payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        # First: sequence acceptability.
        if not self._acceptable(seq, seg_len):
            self.counters["dropped"] += 1
            if not flags & RST:
                self._oow_ack(seg, now)
            return
        self.last_heard = now
        self.keepalive_probes = 0
        # Second: RST (RFC 5961 3.2: exact match resets, else challenge).
        if flags & RST:
            if seq == self.rcv_nxt:
                self._on_rst()
            else:
                self._challenge_ack(seg, now)
            return
        # Fourth: SYN in a synchronized state (RFC 5961 4.2).
        if flags & SYN:
            self._challenge_ack(seg, now)
            return
        # Timestamps: remember the peer's clock for our echoes (RFC 7323 4.3).
        if self.ts_ok and seg.ts is not None and seq <= self.last_ack_sent:
            self.ts_recent = seg.ts[0]
        # Fifth: ACK.
        if not flags & ACK:
            return
        if not self._process_ack(seg, seq, now):
            return
        if self.state is State.CLOSED:
            return
        # Seventh: text.  Eighth: FIN.
        self._process_text(seg, seq, flags, now)

    def _acceptable(self, seq, seg_len):
        """RFC 9293 3.10.7.4 first check, with a zero window admitting the
        in-sequence segment so its ACK and window are processed."""
        wnd = self.rcv_adv - self.rcv_nxt
        if seg_len == 0:
            if wnd <= 0:
                return seq == self.rcv_nxt
            return self.rcv_nxt <= seq < self.rcv_nxt + wnd
        if wnd <= 0:
            return seq == self.rcv_nxt
        end = seq + seg_len - 1
        return (self.rcv_nxt <= seq < self.rcv_nxt + wnd
                or self.rcv_nxt <= end < self.rcv_nxt + wnd)

    def _receive_syn_sent(self, seg, now):
        """RFC 9293 3.10.7.3."""
        flags = seg.flags
        if flags & ACK:
            ack = _unwrap(self.snd_una, seg.ack)
            if ack <= self.iss or ack > self.snd_max:
                if not flags & RST:
                    self._out.append(Segment(seg.ack, 0, RST, 0))
                return
            if flags & RST:
                self._fail(errno.ECONNREFUSED)
                self._enter_closed()
                return
        elif flags & RST:
            return
        if not flags & SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = seg.seq + 1
        self._take_syn_options(seg, now)
        if flags & ACK:
            self._rtt_sample_syn(seg, now)
            self.snd_una = self.snd_buf_seq = self.iss + 1
            self.snd_wnd = seg.window  # a SYN's window is never scaled
            self.snd_wl1, self.snd_wl2 = self.irs, self.snd_una
            self.max_snd_wnd = self.snd_wnd
            self.rto_deadline = None
            self.retries = 0
            self.state = State.ESTABLISHED
            self.events.append(Connected())
            self._send_ack(now)
        else:
            # Simultaneous open: SYN-SENT -> SYN-RECEIVED, resend SYN,ACK.
            self.state = State.SYN_RECEIVED
            self.snd_wnd = seg.window
            self.snd_wl1, self.snd_wl2 = self.irs, self.iss
            self._send_syn(now)

    def _rtt_sample_syn(self, seg, now):
        if self.retries == 0 and self.rtt_seq is not None:
            self._rtt_update(now - self.rtt_time)
        self.rtt_seq = None

    def _on_rst(self):
        st = self.state
        if st is State.SYN_RECEIVED:
            # Passive opens go quietly; an active one (simultaneous open) is refused.
            self._fail(errno.ECONNREFUSED)
        elif st in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                    State.CLOSE_WAIT):
            self._fail(errno.ECONNRESET)
        elif (st is State.CLOSING or st is State.LAST_ACK) and not self.app_closed:
            self._fail(errno.ECONNRESET)
        self._enter_closed()

    def _challenge_ack(self, seg, now):
        if self._oow_ack(seg, now):
            self.counters["challenge_acks"] += 1

    def _oow_ack(self, seg, now):
        """ACK a segment that is not acceptable (out of window, PAWS, ACK
        of unsent data, RFC 5961 challenges): at once when it carries data,
        else at most once per ``invalid_ratelimit`` (Linux
        tcp_oow_rate_limited).  Two ends that disagree about the sequence
        space, e.g. after a forged segment was accepted, would otherwise
        answer each other's pure ACKs forever (an ACK storm).  Returns True
        when the ACK is sent."""
        if seg.payload and not seg.flags & SYN:
            self._send_ack(now)
            return True
        if now - self.last_oow_ack < self.config.invalid_ratelimit:
            self.counters["oow_rate_limited"] += 1
            return False
        self.last_oow_ack = now
        self._send_ack(now)
        return True

    # ---------------------------------------------------------------- ACK

    def _process_ack(self, seg, seq, now):
        """Step five.  Returns False when the segment is to be dropped."""
        ack = _unwrap(self.snd_una, seg.ack)
        if self.state is State.SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_max:
                self._out.append(Segment(seg.ack, 0, RST, 0))
                return False
            self.snd_una = self.snd_buf_seq = self.iss + 1
            self._rtt_sample_syn(seg, now)
            self.retries = 0
            self.rto_deadline = None
            self.snd_wnd = seg.window << self.snd_wscale
            self.snd_wl1, self.snd_wl2 = seq, ack
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.state = State.ESTABLISHED if not self.fin_queued else State.FIN_WAIT_1
            self.events.append(Connected())
        if ack > self.snd_max:
            self._oow_ack(seg, now)     # acks something not yet sent
            return False
        if ack < self.snd_una - max(self.max_snd_wnd, 65535):
            self._challenge_ack(seg, now)  # RFC 5961 5.2: too old
            return False
        window = seg.window << self.snd_wscale
        if seg.sack and self.sack_ok:
            self._update_sack(seg.sack)
        if ack > self.snd_una:
            self._on_new_ack(seg, ack, now)
        elif (ack == self.snd_una and not seg.payload and not seg.flags & FIN
              and window == self.snd_wnd and self.snd_max > self.snd_una):
            self._on_dupack(now)
        # Window update (RFC 9293 3.10.7.4, SND.WL1/WL2 rule).
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            if window > self.snd_wnd and self.snd_wnd == 0:
                self.persist_deadline = None
            self.snd_wnd = window
            self.snd_wl1, self.snd_wl2 = seq, ack
            self.max_snd_wnd = max(self.max_snd_wnd, window)
        if not self.in_recovery and self._loss_detected():
            self._enter_recovery(now)
        if self.fin_queued and self.snd_una > self._fin_seq():
            nxt = ON_FIN_ACKED.get(self.state)
            if nxt is not None:
                self._enter(nxt, now)
        return True

    def _fin_seq(self):
        return self.snd_buf_seq + len(self.snd_buf)

    def _on_new_ack(self, seg, ack, now):
        acked = ack - self.snd_una
        # RTT: timestamps echo, else Karn's single timed segment.
        if self.ts_ok and seg.ts is not None and seg.ts[1]:
            self._rtt_update(((self._ts_now(now) - seg.ts[1]) & MASK32) / 1000.0)
        elif self.rtt_seq is not None and ack > self.rtt_seq:
            self._rtt_update(now - self.rtt_time)
            self.rtt_seq = None
        data_acked = min(ack, self._fin_seq()) - self.snd_buf_seq
        if data_acked > 0:
            del self.snd_buf[:data_acked]
            self.snd_buf_seq += data_acked
            self._expand_sndbuf()
            self.events.append(SendSpace())
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        self.sacked = [[s, e] for s, e in self.sacked if e > ack]
        if self.sacked and self.sacked[0][0] < ack:
            self.sacked[0][0] = ack
        self.retries = 0
        self.rto = self._rto_from_rtt()
        if self.in_recovery and self._recovery_was_spurious(seg):
            self._undo_recovery()
        elif self.in_recovery:
            if ack >= self.recover:
                self.in_recovery = False
                self.undo_state = None
                self.retx_marks.clear()
                self.reno_sacked = 0
                self.cc.on_recovery_end()
            else:
                # Partial ACK (RFC 6582 3.2 step 3): the next hole is lost too.
                self.reno_sacked = max(0, self.reno_sacked - acked)
                self.retx_hi = max(self.retx_hi, ack)
        else:
            self.reno_sacked = 0
            self.cc.on_ack(acked, now, self.srtt)
        self.dupacks = 0
        self.rto_deadline = now + self.rto if self.snd_max > self.snd_una else None

    def _expand_sndbuf(self):
        """Send-buffer autotuning (Linux tcp_sndbuf_expand): room for two
        congestion windows, so the window is never starved by the buffer
        while the previous one is being acknowledged; up to sndbuf_max,
        and never once the application set SO_SNDBUF.  N.B. Linux counts
        buffer truesize, we count payload bytes; and Linux grows only
        while cwnd-limited, ours follows cwnd (bounded by sndbuf_max)."""
        cfg = self.config
        if cfg.sndbuf_locked:
            return
        want = min(2 * self.cc.cwnd, cfg.sndbuf_max)
        if want > cfg.sndbuf:
            cfg.sndbuf = want

    def _on_dupack(self, now):
        self.dupacks += 1
        if not self.sack_ok:
            flight = self.snd_max - self.snd_una
            self.reno_sacked = min(self.dupacks * self.eff_mss, max(flight - self.eff_mss, 0))

    def _loss_detected(self):
        if self.snd_una < self.recover or self.snd_max <= self.snd_una:
            # RFC 6582 4.1: one reduction per window of data (recover is
            # also set by an RTO).
            return False
        mss = self.eff_mss
        thresh = self.dupthresh
        oseg = -(-(self.snd_nxt - self.snd_una) // mss)
        if oseg < 4 and self._fin_seq() <= self.snd_nxt:
            # Early retransmit (RFC 5827): with fewer than four segments out
            # and nothing new to send, three duplicate ACKs never come.
            thresh = max(oseg - 1, 1)
        if self.dupacks >= thresh:
            return True
        return self.sack_ok and self._sacked_bytes() >= thresh * mss

    def _enter_recovery(self, now):
        flight = self.snd_max - self.snd_una
        if self.ts_ok:
            degree = -(-self._sacked_bytes() // self.eff_mss)
            self.undo_state = (copy.copy(self.cc), self.recover, degree, self._ts_now(now))
        self.cc.on_loss(flight, now)
        self.in_recovery = True
        self.recover = self.snd_max
        self.retx_hi = self.snd_una
        self.counters["fast_retransmits"] += 1
        # RFC 6675 5 (4.2): retransmit the first lost segment regardless of pipe.
        holes = self._holes()
        if holes:
            start, end = holes[0]
            n = min(end - start, self.eff_mss)
            self._emit(start, n, now, retransmit=True)
            self.retx_marks[start] = self.snd_nxt
            self.retx_hi = start + n

    def _recovery_was_spurious(self, seg):
        """Eifel detection (RFC 3522) as Linux's tcp_packet_delayed: a new
        ACK during recovery that echoes a timestamp older than our first
        retransmission was caused by an original segment, so the "loss"
        was reordering."""
        if self.undo_state is None or seg.ts is None:
            return False
        return _ts_before(seg.ts[1], self.undo_state[3])

    def _undo_recovery(self):
        """Undo a spurious fast recovery (RFC 4015 response, Linux
        tcp_undo_cwnd_reduction): restore the congestion state from before
        the reduction, and raise the duplicate threshold past the
        reordering just seen (Linux tp->reordering, capped likewise)."""
        cc, recover, degree, _ts = self.undo_state
        self.undo_state = None
        self.cc = cc
        self.in_recovery = False
        self.retx_marks.clear()
        self.reno_sacked = 0
        self.recover = recover
        self.dupthresh = min(max(self.dupthresh, degree + 1), MAX_DUPTHRESH)
        self.counters["undos"] += 1

    def _update_sack(self, blocks):
        """Merge SACK blocks (RFC 2018) into the scoreboard, ignoring any not
        within (snd_una, snd_max]."""
        for left, right in blocks:
            s = _unwrap(self.snd_una, left)
            e = _unwrap(self.snd_una, right)
            if not (self.snd_una <= s < e <= self.snd_max):
                continue
            merged = []
            for a, b in self.sacked:
                if b < s or a > e:
                    merged.append([a, b])
                else:
                    s, e = min(a, s), max(b, e)
            merged.append([s, e])
            merged.sort()
            self.sacked = merged

    def _sacked_bytes(self):
        if not self.sack_ok:
            return self.reno_sacked
        return sum(e - s for s, e in self.sacked)

    def _holes(self):
        """Unsacked ranges presumed lost: below the highest SACKed byte, or
        the first segment when SACK is off."""
        if not self.sack_ok:
            if self.snd_una >= self.snd_max:
                return []
            return [(self.snd_una, min(self.snd_una + self.eff_mss, self.snd_max))]
        holes = []
        pos = self.snd_una
        for s, e in self.sacked:
            if s > pos:
                holes.append((pos, s))
            pos = max(pos, e)
        return holes

    def _pipe(self):
        """Bytes presumed in the network (RFC 6675 "pipe")."""
        flight = self.snd_nxt - self.snd_una
        if not self.in_recovery:
            if self.sack_ok:
                return flight - sum(min(e, self.snd_nxt) - s for s, e in self.sacked
                                    if s < self.snd_nxt)
            return flight
        lost = retx = 0
        for s, e in self._holes():
            lost += e - s
            if self.retx_hi > s:
                retx += min(e, self.retx_hi) - s
        return flight - self._sacked_bytes() - lost + retx

    # ---------------------------------------------------------------- RTT

    def _rtt_update(self, r):
        """RFC 6298 2.2 and 2.3."""
        r = max(r, 0.0)
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self.rto = self._rto_from_rtt()

    def _rto_from_rtt(self):
        if self.srtt is None:
            return self.config.rto_initial
        rto = self.srtt + max(0.001, 4 * self.rttvar)
        return min(max(rto, self.config.rto_min), self.config.rto_max)

    def _ts_now(self, now):
        return (int(now * 1000) + self.ts_offset) & MASK32

    # ---------------------------------------------------------------- text

    def _process_text(self, seg, seq, flags, now):
        payload = seg.payload
        fin = bool(flags & FIN)
        if self.state not in RECEIVES_DATA:
            # CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the peer already sent
            # its FIN, so text or FIN again is a retransmission (RFC 9293).
            if payload or fin:
                self.ack_now = True
                if self.state is State.TIME_WAIT:
                    self.timewait_deadline = now + 2 * MSL
            return
        if payload and self.app_closed and self.state in (State.FIN_WAIT_1, State.FIN_WAIT_2):
            # Nobody will read it: reset, as Linux does for orphans.
            self.abort(now)
            return
        if payload:
            # Trim what is before rcv_nxt or beyond the advertised window.
            if seq < self.rcv_nxt:
                cut = self.rcv_nxt - seq
                payload = payload[cut:]
                seq = self.rcv_nxt
            room = self.rcv_adv - seq
            if len(payload) > room:
                payload = payload[:max(room, 0)]
                fin = False
            if payload:
                self._accept_data(seq, payload, now)
        if fin and not self.fin_received:
            fin_seq = seq + len(payload)
            if fin_seq == self.rcv_nxt:
                self._on_fin(now)
            elif fin_seq > self.rcv_nxt:
                self.ooo_fin = fin_seq
                self.ack_now = True
            else:
                self.ack_now = True  # duplicate FIN: ack it again

    def _accept_data(self, seq, payload, now):
        if seq == self.rcv_nxt:
            if not self.read_shutdown:
                self.rcv_buf += payload
            self.rcv_nxt += len(payload)
            filled = self._drain_ooo()
            self.events.append(DataReceived())
            self.unacked_segs += 1
            if filled or self.unacked_segs >= 2 or self.ooo:
                # At least every second segment, and at once when a hole
                # closes (RFC 5681 4.2): even inside a batch of frames, so
                # one lost ACK does not stall the sender until its RTO.
                self.ack_now = True
            elif self.delack_deadline is None:
                self.delack_deadline = now + self.config.delack
            if self.ooo_fin is not None and self.ooo_fin == self.rcv_nxt:
                self.ooo_fin = None
                self._on_fin(now)
        else:
            # Out of order: keep it (bounded by the window), ack at once so the
            # sender sees duplicate ACKs and SACK blocks.
            old = self.ooo.get(seq)
            if old is None or len(old) < len(payload):
                self.ooo[seq] = bytes(payload)
            # One ACK per out-of-order segment, even when segments arrive in
            # a batch: the sender counts them as duplicate ACKs.
            self._send_ack(now)

    def _drain_ooo(self):
        filled = False
        while self.ooo:
            progressed = False
            for s in sorted(self.ooo):
                data = self.ooo[s]
                if s > self.rcv_nxt:
                    break
                del self.ooo[s]
                end = s + len(data)
                if end > self.rcv_nxt:
                    if not self.read_shutdown:
                        self.rcv_buf += data[self.rcv_nxt - s:]
                    self.rcv_nxt = end
                    filled = progressed = True
            if not progressed:
                break
        return filled

    def _on_fin(self, now):
        if self.fin_received:
            return
        self.fin_received = True
        self.rcv_nxt += 1
        self.ack_now = True
        self.events.append(EndOfStream())
        nxt = ON_FIN_RECEIVED.get(self.state)
        if nxt is not None:
            self._enter(nxt, now)

    def _sack_blocks(self):
        """Up to three SACK blocks for our out-of-order data, most recent
        first as RFC 2018 4 asks (here: highest first)."""
        if not self.sack_ok or not self.ooo:
            return ()
        blocks = []
        for s in sorted(self.ooo):
            e = s + len(self.ooo[s])
            if blocks and s <= blocks[-1][1]:
                blocks[-1][1] = max(blocks[-1][1], e)
            else:
                blocks.append([s, e])
        blocks.reverse()
        return tuple((s & MASK32, e & MASK32) for s, e in blocks[:MAX_SACK_BLOCKS])

    # ================================================================ states

    def _enter(self, state, now):
        self.state = state
        if state is State.TIME_WAIT:
            self.timewait_deadline = now + 2 * MSL
            self.rto_deadline = self.persist_deadline = None
            self.keepalive_deadline = self.finwait2_deadline = None
        elif state is State.FIN_WAIT_2 and self.app_closed:
            self.finwait2_deadline = now + FIN_WAIT_2_TIMEOUT
        elif state is State.CLOSED:
            self._enter_closed()

    def _enter_closed(self):
        if self._closed_emitted:
            return
        self._closed_emitted = True
        self.state = State.CLOSED
        self.rto_deadline = self.delack_deadline = self.persist_deadline = None
        self.keepalive_deadline = self.timewait_deadline = None
        self.finwait2_deadline = None
        self.ooo.clear()
        self.events.append(Closed())

    def _fail(self, err):
        self.error = err
        self.events.append(ConnectionError_(err))

    # ================================================================ output

    def output(self, now):
        """Run due timers, then return the segments to send now."""
        self._run_timers(now)
        st = self.state
        if st in SYNCHRONIZED and st is not State.SYN_RECEIVED and st is not State.TIME_WAIT:
            self._send_pending(now)
        if self.ack_now and st in SYNCHRONIZED and st is not State.SYN_RECEIVED:
            self._send_ack(now)
        out, self._out = self._out, []
        return out

    def _send_pending(self, now):
        mss = self.eff_mss
        # With segmentation offload one segment may carry many MSS.
        seg_max = max(mss, self.gso_max // mss * mss) if self.gso_max else mss
        if self.in_recovery:
            self._retransmit_holes(now)
        while True:
            end_data = self._fin_seq()
            wnd_edge = self.snd_una + self.snd_wnd
            # Limited transmit (RFC 3042): the first two duplicate ACKs each
            # let one new segment out beyond cwnd, to keep ACKs coming.
            extra = min(self.dupacks, 2) * mss if not self.in_recovery else 0
            room = self.cc.cwnd + extra - self._pipe()
            nxt = self._skip_sacked(self.snd_nxt)
            avail = min(end_data, wnd_edge) - nxt
            if avail <= 0 or room <= 0:
                break
            n = min(avail, seg_max, room)
            if mss < n < avail:
                n -= n % mss  # a super-segment carries whole segments only
            if n < mss and n < end_data - nxt:
                # Sender SWS avoidance (RFC 9293 3.8.6.2.1).
                if n < self.max_snd_wnd // 2 and self.snd_nxt > self.snd_una:
                    break
            elif n < mss and self.snd_nxt > self.snd_una and not self.config.nodelay \
                    and not self.fin_queued:
                break  # Nagle: one small segment in flight at most
            self.snd_nxt = nxt
            self._emit(nxt, n, now)
        self._maybe_send_fin(now)
        if (self.snd_wnd == 0 and self._fin_seq() > self.snd_nxt
                and self.snd_nxt == self.snd_una and self.persist_deadline is None):
            self.persist_deadline = now + self.rto

    def _skip_sacked(self, seq):
        for s, e in self.sacked:
            if s <= seq < e:
                seq = e
        return seq

    def _maybe_send_fin(self, now):
        fin_seq = self._fin_seq()
        if self.fin_queued and self.snd_nxt == fin_seq:
            self._emit(fin_seq, 0, now, fin=True)

    def _retransmit_holes(self, now):
        if self.sack_ok and self.retx_marks:
            self._resend_lost_retransmits(now)
        for start, end in self._holes():
            s = max(start, self.retx_hi)
            while s < end and self._pipe() < self.cc.cwnd:
                n = min(end - s, self.eff_mss)
                self._emit(s, n, now, retransmit=True)
                self.retx_marks[s] = self.snd_nxt
                s += n
                self.retx_hi = s

    def _resend_lost_retransmits(self, now):
        """A retransmission is lost when data first sent after it has been
        SACKed while it is still a hole (Linux tcp_mark_lost_retrans)."""
        high_sack = self.sacked[-1][1] if self.sacked else self.snd_una
        for start, end in self._holes():
            for s in [s for s in self.retx_marks if start <= s < end]:
                if self.retx_marks[s] < high_sack and self.retx_marks[s] < self.snd_nxt:
                    if self._pipe() >= self.cc.cwnd:
                        return
                    n = min(end - s, self.eff_mss)
                    self._emit(s, n, now, retransmit=True)
                    self.retx_marks[s] = self.snd_nxt
                    self.counters["lost_retransmits"] += 1

    def _emit(self, seq, n, now, retransmit=False, fin=False):
        """Queue a data (or FIN) segment covering [seq, seq + n)."""
        off = seq - self.snd_buf_seq
        payload = bytes(self.snd_buf[off:off + n])
        flags = ACK | (PSH if payload else 0)
        if self.fin_queued and seq + n == self._fin_seq():
            flags |= FIN
        seg = self._make_ack_segment(seq, flags, now, payload)
        if n > self.eff_mss:
            seg.gso_size = self.eff_mss
            seg.sack = ()
        elif seg.sack and n + 4 + 8 * len(seg.sack) > self.eff_mss:
            seg.sack = ()  # a full segment has no room for SACK blocks
        self._out.append(seg)
        end = seq + n + (1 if flags & FIN else 0)
        if retransmit or end <= self.snd_max:
            self.counters["retransmits"] += 1
            if self.rtt_seq is not None and seq <= self.rtt_seq:
                self.rtt_seq = None  # Karn: no sample from retransmitted data
        elif self.rtt_seq is None and not self.ts_ok:
            self.rtt_seq, self.rtt_time = seq, now
        if not retransmit:
            self.snd_nxt = max(self.snd_nxt, end)
        self.snd_max = max(self.snd_max, end)
        if self.rto_deadline is None:
            self.rto_deadline = now + self.rto

    def _send_ack(self, now):
        self._out.append(self._make_ack_segment(self.snd_nxt, ACK, now, b""))

    def _make_ack_segment(self, seq, flags, now, payload):
        window = self._window_to_advertise()
        seg = Segment(seq & MASK32, self.rcv_nxt & MASK32, flags,
                      window >> self.rcv_wscale, payload)
        if self.ts_ok:
            seg.ts = (self._ts_now(now), self.ts_recent)
        seg.sack = self._sack_blocks()
        self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + window)
        self.last_ack_sent = self.rcv_nxt
        self.ack_now = False
        self.unacked_segs = 0
        self.delack_deadline = None
        return seg

    def _window_to_advertise(self):
        """Free receive space, never shrinking the right edge already
        advertised (RFC 9293 3.8.6.2.2), rounded up to the scale unit."""
        free = self._free_space()
        current = max(self.rcv_adv - self.rcv_nxt, 0)
        if free - current < min(self.config.rcvbuf // 2, self.config.mss):
            window = current
        else:
            window = free
        window = min(window, 65535 << self.rcv_wscale)
        unit = (1 << self.rcv_wscale) - 1
        return min((window + unit) & ~unit, 65535 << self.rcv_wscale)

    # ================================================================ timers

    def next_deadline(self):
        """The earliest time output() has work to do, or None."""
        ds = [d for d in (self.rto_deadline, self.delack_deadline,
                          self.persist_deadline, self.keepalive_deadline,
                          self.timewait_deadline, self.finwait2_deadline)
              if d is not None]
        if self.ack_now or self._out:
            return 0.0
        return min(ds) if ds else None

    def _run_timers(self, now):
        if self.timewait_deadline is not None and now >= self.timewait_deadline:
            self._enter_closed()
            return
        if self.finwait2_deadline is not None and now >= self.finwait2_deadline:
            if self.state is State.FIN_WAIT_2:
                self._enter_closed()  # orphan gave up waiting, as Linux
                return
            self.finwait2_deadline = None
        if self.rto_deadline is not None and now >= self.rto_deadline:
            self.rto_deadline = None
            self._on_rto(now)
        if self.delack_deadline is not None and now >= self.delack_deadline:
            self.delack_deadline = None
            self.ack_now = True
        if self.persist_deadline is not None and now >= self.persist_deadline:
            self.persist_deadline = None
            self._on_persist(now)
        self._keepalive(now)

    def _on_rto(self, now):
        """RFC 6298 5.4-5.7, with the connection-failure limits of Linux."""
        if self.state is State.CLOSED or self.snd_max <= self.snd_una:
            return
        syn_phase = self.state in (State.SYN_SENT, State.SYN_RECEIVED)
        limit = self.config.syn_retries if syn_phase else self.config.retries
        zero_window_ok = self.snd_wnd == 0 and self.last_heard > self.last_rto_at
        if not zero_window_ok:
            self.retries += 1
        self.last_rto_at = now
        if self.retries > limit:
            if self.state is State.SYN_RECEIVED and not self.app_closed:
                self._enter_closed()
            else:
                self.abort(now, errno.ETIMEDOUT)
            return
        self.counters["rtos"] += 1
        self.rto = min(self.rto * 2, self.config.rto_max)
        self.rtt_seq = None
        if syn_phase:
            self._send_syn(now)
            self.counters["retransmits"] += 1
            self.rto_deadline = now + self.rto
            return
        if self.retries <= 1:
            self.cc.on_rto(self.snd_max - self.snd_una, now)
        else:
            # RFC 5681 3.1 (eq. 4 note): a segment already retransmitted by
            # the timer holds ssthresh constant; only cwnd drops again.
            self.cc.cwnd = self.eff_mss
        self.in_recovery = False
        self.undo_state = None
        self.retx_marks.clear()
        self.recover = self.snd_max
        self.sacked = []          # RFC 6675 5.1: forget SACK after RTO
        self.reno_sacked = 0
        self.dupacks = 0
        self.snd_nxt = self.snd_una
        self.rto_deadline = now + self.rto
        if self.snd_wnd == 0 and self._fin_seq() > self.snd_una:
            # The lost segment was a zero-window probe: probe again.
            self._emit(self.snd_una, 1, now, retransmit=True)
            self.snd_nxt = self.snd_una + 1
        # Otherwise output() resends from snd_una within the new cwnd.

    def _on_persist(self, now):
        """Zero-window probe: one byte beyond the window (RFC 9293 3.8.6.1)."""
        if self.snd_wnd != 0 or self._fin_seq() <= self.snd_nxt:
            return
        self._emit(self.snd_nxt, 1, now)
        self.persist_deadline = None

    def _keepalive(self, now):
        cfg = self.config
        if not cfg.keepalive or self.state not in (State.ESTABLISHED, State.CLOSE_WAIT) \
                or self.snd_max > self.snd_una:
            self.keepalive_deadline = None
            return
        idle_until = self.last_heard + cfg.keepidle
        if self.keepalive_probes:
            due = self.last_probe_at + cfg.keepintvl
        else:
            due = idle_until
        if now < due:
            self.keepalive_deadline = due
            return
        if self.keepalive_probes >= cfg.keepcnt:
            self.abort(now, errno.ETIMEDOUT)
            return
        self.keepalive_probes += 1
        self.last_probe_at = now
        # SEG.SEQ = SND.NXT-1, no data: the peer must answer with an ACK.
        seg = self._make_ack_segment(self.snd_nxt - 1, ACK, now, b"")
        self._out.append(seg)
        self.keepalive_deadline = now + cfg.keepintvl
