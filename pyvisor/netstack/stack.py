"""The Stack: link endpoints, Ethernet/ARP, IPv4, ICMP, UDP and TCP joined.

A stack is driven from outside, by two calls:

- frames arrive through the ``deliver`` callable each link was attached to
  (a driver reading a TAP fd, or ``pump`` of a simulated link);
- ``poll(now)`` pumps simulated links, runs timers and sends what is due.
  ``next_deadline()`` says when it must be called again.

Every path that takes a frame from outside catches nothing on purpose and
raises nothing: bad input is counted in ``drops`` by reason and dropped.
(An exception there is a netstack bug, and tests feed random frames to
prove there is none.)

Demultiplexing keys: TCP connections by (local ip, local port, remote ip,
remote port); TCP listeners and UDP sockets by (local ip or 0, port).

The stack knows its transport endpoints only through :class:`Endpoint`,
the interface below; ``socket.py`` implements it (``TCPSocket``,
``UDPSocket``) and registers its sockets in the stack's tables.  The stack
imports nothing from ``socket.py``: sockets are made as ``TCPSocket(stack)``.
"""

import hashlib
import heapq
import os
import random
from collections import Counter, deque

from . import _checksum as ck
from . import _frames
from . import arp, ethernet, icmp, ipv4
from .addr import (BROADCAST_MAC, INADDR_ANY, INADDR_BROADCAST, ip, is_multicast,
                   prefix_mask)
from .clock import MonotonicClock
from .ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Route, RoutingTable
from .link.loopback import LoopbackLink
from .tcp_segment import ACK, RST, SYN, Segment
from . import tcp_segment

EPHEMERAL_LOW = 32768     # Linux ip_local_port_range
EPHEMERAL_HIGH = 60999
HEADROOM = ethernet.ETH_HLEN + ipv4.IP_HLEN
SOFT_GSO_MAX = 62000      # payload bytes per software-GSO super-segment


class NIC:
    """One interface: a link endpoint with an IPv4 address."""

    def __init__(self, stack, link, addr, prefix_len, name):
        self.stack = stack
        self.link = link
        self.name = name
        self.addr = addr
        self.prefix_len = prefix_len
        self.mac = link.mac
        self.loopback = isinstance(link, LoopbackLink)
        self.arp = None if self.loopback else arp.ArpResolver(
            self.mac, addr, self._transmit, stack.drops)
        link.attach(self.receive)

    @property
    def mtu(self):
        return self.link.mtu

    @property
    def broadcast(self):
        return self.addr | (~prefix_mask(self.prefix_len) & 0xFFFFFFFF)

    def _transmit(self, dst_mac, ethertype, payload):
        self.link.write(ethernet.header(dst_mac, self.mac, ethertype) + bytes(payload))

    def receive(self, frame, csum_ok=False):
        """The link's deliver callable: one inbound Ethernet frame.
        ``csum_ok``: the link vouches for the transport checksum."""
        stack = self.stack
        if not self.loopback:
            # Fast path: a well-formed segment for an existing connection,
            # decoded in one C call.  Anything else (SYNs, fragments, IP
            # options, bad checksums, no socket) takes the general path
            # below, which finds and counts it.
            p = _frames.parse_tcp_frame(frame, self.mac, not csum_ok)
            if p is not None and p[1] == self.addr and not p[6] & SYN:
                sock = stack.tcp_conns.get((p[1], p[3], p[0], p[2]))
                if sock is not None:
                    stack.tcp_fast_input(sock, frame, p)
                    return
        parsed = ethernet.parse(frame)
        if parsed is None:
            stack.drops["eth_truncated"] += 1
            return
        dst, _src, ethertype, payload = parsed
        if not self.loopback and not ethernet.accepts(dst, self.mac):
            stack.drops["eth_not_for_us"] += 1
            return
        if ethertype == ethernet.ETHERTYPE_IPV4:
            stack.ip_input(self, payload, csum_ok)
        elif ethertype == ethernet.ETHERTYPE_ARP and self.arp is not None:
            self.arp.input(payload, stack.clock.now())
        else:
            stack.drops["eth_unknown_type"] += 1

    def send_ip(self, buf, next_hop, now, gso=None):
        """Send an IPv4 packet held in buf[14:], buf[:14] free for the header.
        ``gso``: (hdr_len, gso_size) for a TCP super-segment."""
        if self.loopback:
            ethernet.write_header(buf, self.mac, self.mac, ethernet.ETHERTYPE_IPV4)
            self.link.write(buf)
            return
        if next_hop == INADDR_BROADCAST or next_hop == self.broadcast:
            hw = BROADCAST_MAC
        else:
            hw = self.arp.lookup(next_hop, now)
        if hw is None:
            if gso is not None and not self.link.gso_max_size:
                # Queue the frames the super-segment will be, not the whole.
                for frame in _frames.split_tcp(buf, gso[0], gso[1], ck.get16(buf, 18)):
                    self.arp.resolve(next_hop, memoryview(frame)[ethernet.ETH_HLEN:], now)
                return
            self.arp.resolve(next_hop, memoryview(buf)[ethernet.ETH_HLEN:], now)
            return
        ethernet.write_header(buf, hw, self.mac, ethernet.ETHERTYPE_IPV4)
        if gso is None:
            self.link.write(buf)
        elif self.link.gso_max_size:
            self.link.write_gso(buf, *gso)
        else:
            self._write_soft_gso(buf, gso)

    def _write_soft_gso(self, buf, gso):
        """Software GSO: cut the super-segment into frames here, just before
        the link (Linux's skb_gso_segment when the device has no TSO)."""
        hdr_len, gso_size = gso
        stack = self.stack
        frames = _frames.split_tcp(buf, hdr_len, gso_size, ck.get16(buf, 18))
        # Frame i took ident + i: keep the stack's counter past them.
        stack.ident = (stack.ident + len(frames) - 1) & 0xFFFF
        stack.stats["ipv4_out"] += len(frames) - 1
        self.link.write_many(frames)


class Endpoint:
    """What the stack calls on a transport endpoint it finds in its tables.

    The stack delivers inbound segments, datagrams and ICMP errors, and
    drives output and timers, through these methods only; every one runs
    inside stack processing and must not raise.  Defaults do nothing, so an
    endpoint implements what its protocol receives.

    ``timer_at`` belongs to the stack: the deadline of the timer it has
    armed for this endpoint (None: none).  An endpoint asks for
    ``transmit`` and a re-arm with ``stack.mark(self)``.
    """

    timer_at = None

    # --- TCP (tcp_conns, tcp_listeners) ---

    def on_segment(self, seg, now):
        """A segment for this connection (its 4-tuple)."""

    def on_syn(self, pkt, sport, dport, seg, now):
        """A SYN for this listener (``pkt`` its IPv4 packet)."""

    def time_wait_yields_to(self, seg):
        """True if this connection, in TIME-WAIT, gives its 4-tuple up to
        the new SYN ``seg`` (a listener on the port takes it)."""
        return False

    def time_wait_kill(self):
        """Give the 4-tuple up now (after ``time_wait_yields_to``)."""

    def transmit(self, now):
        """Send what is due (the stack calls this for marked endpoints)."""

    def next_deadline(self):
        """When this endpoint's timers next need ``transmit``; None: never."""
        return None

    # --- UDP (udp_socks) ---

    def accepts(self, src, sport):
        """True if a datagram from (src, sport) is for this socket."""
        return False

    def on_datagram(self, data, src, sport):
        """A datagram this socket accepts."""

    # --- both ---

    def on_icmp_error(self, code, a, b):
        """An ICMP destination-unreachable quoting our packet.  TCP gets
        (code, next-hop MTU, quoted sequence number); UDP gets (code,
        quoted destination address, quoted destination port)."""


class Stack:
    """One network stack.  ``clock`` has ``now()``; default: monotonic."""

    def __init__(self, clock=None, tcp_config=None, secret=None):
        from .tcp import TCPConfig
        self.clock = clock or MonotonicClock()
        self.secret = secret if secret is not None else os.urandom(16)
        self.tcp_defaults = tcp_config or TCPConfig()
        self.drops = Counter()
        self.stats = Counter()
        self.nics = []
        self.routes = RoutingTable()
        self.reassembler = ipv4.Reassembler(self.drops)
        self.icmp_limit = icmp.RateLimiter()
        self.ident = random.Random(os.urandom(8)).randrange(1 << 16)
        # The endpoint tables (Endpoint, implemented by socket.py's sockets):
        self.tcp_conns = {}      # (laddr, lport, raddr, rport) -> TCP endpoint
        self.tcp_listeners = {}  # (laddr, lport) -> listening TCP endpoint
        self.tcp_bound = {}      # (laddr, lport) -> set of TCP endpoints
        self.udp_socks = {}      # (laddr, lport) -> UDP endpoint
        self.echo_replies = deque(maxlen=64)
        self._timers = []        # heap of (deadline, n, endpoint)
        self._timer_n = 0
        self._dirty = {}         # insertion-ordered set: deterministic output order
        self._flushing = False
        # TCP hands links without TSO super-segments too, cut into frames
        # in one C call just before the link (see _frames.split_tcp).
        self.soft_gso = True

    # ------------------------------------------------------------- config

    def add_interface(self, link, addr, prefix_len=24, name=None):
        """Attach a link with an address; adds the on-link route."""
        nic = NIC(self, link, ip(addr), prefix_len, name or "eth%d" % len(self.nics))
        self.nics.append(nic)
        self.routes.add(Route(nic.addr & prefix_mask(prefix_len), prefix_len, 0, nic))
        return nic

    def add_loopback(self):
        return self.add_interface(LoopbackLink(), "127.0.0.1", 8, "lo")

    def add_route(self, dest, prefix_len, gateway, nic):
        self.routes.add(Route(ip(dest), prefix_len, ip(gateway), nic))

    def set_default_gateway(self, gateway, nic):
        self.add_route("0.0.0.0", 0, gateway, nic)

    def is_local(self, addr):
        return any(n.addr == addr for n in self.nics)

    def nic_for(self, addr):
        for n in self.nics:
            if n.addr == addr:
                return n
        return None

    def route(self, dst):
        """(nic, next_hop) or None.  Our own addresses go via loopback."""
        if self.is_local(dst):
            lo = next((n for n in self.nics if n.loopback), None)
            if lo is not None:
                return lo, dst
        return self.routes.lookup(dst)

    def source_for(self, dst):
        r = self.route(dst)
        if r is None:
            return None
        nic = r[0]
        if nic.loopback and self.is_local(dst):
            return dst
        return nic.addr

    # ------------------------------------------------------------- driving

    def poll(self, now=None):
        """Pump simulated links, run due timers, flush output.  Returns the
        number of frames delivered."""
        if now is None:
            now = self.clock.now()
        n = 0
        for nic in self.nics:
            n += nic.link.pump(now)
            if nic.arp is not None and nic.arp.pending:
                nic.arp.tick(now)
        if self.reassembler.datagrams:
            self.reassembler.tick(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, sock = heapq.heappop(timers)
            if sock.timer_at is not None and sock.timer_at <= now:
                sock.timer_at = None
                self._dirty[sock] = None
        self.flush(now)
        return n

    def next_deadline(self):
        ds = []
        for nic in self.nics:
            d = nic.link.next_deadline()
            if d is not None:
                ds.append(d)
            if nic.arp is not None:
                d = nic.arp.next_deadline()
                if d is not None:
                    ds.append(d)
        d = self.reassembler.next_deadline()
        if d is not None:
            ds.append(d)
        while self._timers and self._timers[0][2].timer_at != self._timers[0][0]:
            heapq.heappop(self._timers)
        if self._timers:
            ds.append(self._timers[0][0])
        if self._dirty:
            ds.append(0.0)
        return min(ds) if ds else None

    def mark(self, sock):
        """A socket has output or timers to look at."""
        self._dirty[sock] = None

    def flush(self, now=None):
        """Send what dirty sockets have to send; re-arm their timers."""
        if self._flushing:
            return
        if now is None:
            now = self.clock.now()
        self._flushing = True
        try:
            dirty = self._dirty
            while dirty:
                sock = next(iter(dirty))
                del dirty[sock]
                sock.transmit(now)
                self._arm(sock)
        finally:
            self._flushing = False

    def _arm(self, sock):
        d = sock.next_deadline()
        if d is None:
            sock.timer_at = None
            return
        if sock.timer_at is not None and sock.timer_at <= d:
            return
        sock.timer_at = d
        self._timer_n += 1
        heapq.heappush(self._timers, (d, self._timer_n, sock))

    # ------------------------------------------------------------- IPv4

    def ip_input(self, nic, data, csum_ok=False):
        pkt = ipv4.validate(data, self.drops)
        if pkt is None:
            return
        pkt.csum_ok = csum_ok
        dst = pkt.dst
        if not (dst == nic.addr or nic.loopback or dst == INADDR_BROADCAST
                or dst == nic.broadcast or self.is_local(dst)):
            self.drops["ipv4_not_for_us"] += 1
            return
        if pkt.flags_frag & (ipv4.FLAG_MF | ipv4.OFFSET_MASK):
            pkt = self.reassembler.add(pkt, self.clock.now())
            if pkt is None:
                return
        self.stats["ipv4_in"] += 1
        proto = pkt.proto
        if proto == PROTO_TCP:
            self.tcp_input(pkt)
        elif proto == PROTO_UDP:
            self.udp_input(pkt)
        elif proto == PROTO_ICMP:
            self.icmp_input(pkt)
        else:
            self.drops["ipv4_unknown_proto"] += 1
            self.send_icmp_unreachable(pkt, icmp.CODE_PROTO_UNREACH)
        # No flush here: poll() flushes once per batch of frames, so a burst
        # of segments is answered by one ACK (as GRO does in Linux).

    def send_ip(self, src, dst, proto, payload_buf, ttl=ipv4.DEFAULT_TTL, df=True, gso=None):
        """Send an IPv4 packet whose payload is payload_buf[HEADROOM:].

        Fragments when the packet exceeds the MTU and DF is off.  Returns
        False when there is no route (the caller maps it to ENETUNREACH).
        """
        r = self.route(dst)
        if r is None:
            self.drops["ipv4_no_route"] += 1
            return False
        nic, next_hop = r
        now = self.clock.now()
        total = len(payload_buf) - ethernet.ETH_HLEN
        self.ident = (self.ident + 1) & 0xFFFF
        if total <= nic.mtu or gso is not None:
            ck.build_ipv4(payload_buf, ethernet.ETH_HLEN, total, self.ident,
                          ipv4.FLAG_DF if df else 0, ttl, proto, src, dst)
            nic.send_ip(payload_buf, next_hop, now, gso if total > nic.mtu else None)
            self.stats["ipv4_out"] += 1
            return True
        if df:
            self.drops["ipv4_too_big"] += 1
            return True
        self._fragment(nic, next_hop, src, dst, proto, payload_buf, ttl, now)
        return True

    def _fragment(self, nic, next_hop, src, dst, proto, buf, ttl, now):
        payload = memoryview(buf)[HEADROOM:]
        step = (nic.mtu - ipv4.IP_HLEN) // 8 * 8
        for off in range(0, len(payload), step):
            chunk = payload[off:off + step]
            more = off + step < len(payload)
            frag = bytearray(HEADROOM + len(chunk))
            frag[HEADROOM:] = chunk
            ck.build_ipv4(frag, ethernet.ETH_HLEN, ipv4.IP_HLEN + len(chunk), self.ident,
                          (ipv4.FLAG_MF if more else 0) | (off // 8), ttl, proto, src, dst)
            nic.send_ip(frag, next_hop, now)
            self.stats["ipv4_frags_out"] += 1

    # ------------------------------------------------------------- ICMP

    def icmp_input(self, pkt):
        parsed = icmp.parse(pkt.payload, self.drops)
        if parsed is None:
            return
        typ, code, rest, body = parsed
        if typ == icmp.TYPE_ECHO_REQUEST:
            if pkt.dst == INADDR_BROADCAST or not self.is_local(pkt.dst):
                self.drops["icmp_broadcast_echo"] += 1
                return
            self.stats["icmp_echo"] += 1
            self._send_icmp(pkt.dst, pkt.src, icmp.echo_reply(rest, body))
        elif typ == icmp.TYPE_DEST_UNREACH:
            self._icmp_error(code, rest, body)
        elif typ == icmp.TYPE_ECHO_REPLY:
            self.stats["icmp_echo_reply_in"] += 1
            self.echo_replies.append((pkt.src, rest >> 16, rest & 0xFFFF, bytes(body)))
        else:
            self.drops["icmp_ignored_type"] += 1

    def _icmp_error(self, code, rest, body):
        q = icmp.quoted(body)
        if q is None:
            self.drops["icmp_short_quote"] += 1
            return
        proto, src, dst, l4 = q
        sport, dport = ck.get16(l4, 0), ck.get16(l4, 2)
        if proto == PROTO_TCP:
            sock = self.tcp_conns.get((src, sport, dst, dport))
            if sock is not None:
                sock.on_icmp_error(code, rest & 0xFFFF, ck.get32(l4, 4))
                return
        elif proto == PROTO_UDP:
            sock = self.udp_socks.get((src, sport)) or self.udp_socks.get((0, sport))
            if sock is not None:
                sock.on_icmp_error(code, dst, dport)
                return
        self.drops["icmp_no_socket"] += 1

    def ping(self, dst, ident=1, seq=1, data=b"pyvisor"):
        """Send an ICMP echo request; replies land in ``echo_replies`` as
        (src, ident, seq, data).  False when there is no route."""
        dst = ip(dst)
        src = self.source_for(dst)
        if src is None:
            return False
        msg = icmp.build(icmp.TYPE_ECHO_REQUEST, 0, (ident << 16) | seq, data)
        self._send_icmp(src, dst, msg)
        self.flush()
        return True

    def _send_icmp(self, src, dst, msg):
        buf = bytearray(HEADROOM) + msg
        self.send_ip(src, dst, PROTO_ICMP, buf, df=False)

    def send_icmp_unreachable(self, pkt, code):
        """Tell the sender (RFC 1122 3.2.2: never about broadcasts, never
        about ICMP errors), rate limited."""
        if pkt.dst == INADDR_BROADCAST or pkt.src == 0 or (pkt.src >> 28) == 0xE:
            return
        if any(pkt.dst == n.broadcast for n in self.nics):
            return
        if not self.icmp_limit.allow(self.clock.now()):
            self.drops["icmp_rate_limited"] += 1
            return
        self._send_icmp(pkt.dst, pkt.src, icmp.unreachable(code, pkt.header, pkt.payload))

    # ------------------------------------------------------------- UDP

    def udp_input(self, pkt):
        from . import udp
        parsed = udp.parse(pkt, self.drops)
        if parsed is None:
            return
        sport, dport, data = parsed
        sock = self.udp_socks.get((pkt.dst, dport)) or self.udp_socks.get((0, dport))
        if sock is None or not sock.accepts(pkt.src, sport):
            self.drops["udp_no_socket"] += 1
            self.send_icmp_unreachable(pkt, icmp.CODE_PORT_UNREACH)
            return
        sock.on_datagram(data, pkt.src, sport)

    # ------------------------------------------------------------- TCP

    def tcp_input(self, pkt):
        parsed = tcp_segment.parse(pkt.payload, pkt.src, pkt.dst, self.drops, pkt.csum_ok)
        if parsed is None:
            return
        sport, dport, seg = parsed
        if pkt.dst == INADDR_BROADCAST or is_multicast(pkt.dst):
            self.drops["tcp_broadcast"] += 1  # RFC 1122 4.2.3.10
            return
        key = (pkt.dst, dport, pkt.src, sport)
        sock = self.tcp_conns.get(key)
        lst = self.tcp_listeners.get((pkt.dst, dport)) or self.tcp_listeners.get((0, dport))
        if sock is not None:
            if lst is None or not sock.time_wait_yields_to(seg):
                sock.on_segment(seg, self.clock.now())
                return
            sock.time_wait_kill()
        if lst is not None and seg.flags & (SYN | ACK | RST) == SYN:
            lst.on_syn(pkt, sport, dport, seg, self.clock.now())
            return
        self.drops["tcp_no_socket"] += 1
        self.send_rst_for(pkt.dst, dport, pkt.src, sport, seg)

    def tcp_fast_input(self, sock, frame, parsed):
        """A segment NIC.receive decoded with _frames.parse_tcp_frame, for
        the existing connection ``sock``; the same outcome as ip_input and
        tcp_input would reach for it."""
        _src, _dst, _sport, _dport, seq, ack, flags, window, doff, end, ts = parsed
        self.stats["ipv4_in"] += 1
        mv = memoryview(frame)
        tcp = HEADROOM
        seg = Segment(seq, ack, flags, window, mv[tcp + doff:end])
        if ts is False:
            if not tcp_segment.parse_options(mv[tcp + tcp_segment.TCP_HLEN:tcp + doff], seg):
                self.drops["tcp_bad_option"] += 1
        elif ts is not None:
            seg.ts = ts
        sock.on_segment(seg, self.clock.now())

    def send_rst_for(self, laddr, lport, raddr, rport, seg):
        """RFC 9293 3.10.7.1: the reset for a segment with no connection."""
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            rst = Segment(seg.ack, 0, RST, 0)
        else:
            rst = Segment(0, (seg.seq + seg.seg_len) & 0xFFFFFFFF, RST | ACK, 0)
        self.stats["tcp_rst_out"] += 1
        self.send_tcp(laddr, lport, raddr, rport, rst)

    def send_tcp(self, laddr, lport, raddr, rport, seg, ttl=ipv4.DEFAULT_TTL):
        buf, n = tcp_segment.encode(seg, lport, rport, laddr, raddr, HEADROOM)
        gso = None
        if seg.gso_size:
            # Partial checksum: the link (kernel) sums each segment it cuts.
            ck.put16(buf, HEADROOM + 16, ck.pseudo_sum(laddr, raddr, PROTO_TCP, n))
            gso = (HEADROOM + n - len(seg.payload), seg.gso_size)
        return self.send_ip(laddr, raddr, PROTO_TCP, buf, ttl, gso=gso)

    def isn(self, laddr, lport, raddr, rport):
        """Initial sequence number, RFC 6528: a 4-microsecond clock plus a
        keyed hash of the 4-tuple.  A later incarnation of a 4-tuple starts
        above the earlier one, which is what TIME-WAIT takeover relies on."""
        h = hashlib.blake2s(b"%d:%d:%d:%d" % (laddr, lport, raddr, rport),
                            key=self.secret, digest_size=4).digest()
        return (int(self.clock.now() * 250_000) + int.from_bytes(h, "big")) & 0xFFFFFFFF

    # ------------------------------------------------------------- ports

    def port_in_use(self, table, laddr, port):
        if laddr == INADDR_ANY:
            return any(p == port for (_a, p) in table)
        return (laddr, port) in table or (INADDR_ANY, port) in table

    def ephemeral_port(self, table, laddr):
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        start = random.randrange(span)
        for i in range(span):
            port = EPHEMERAL_LOW + (start + i) % span
            if not self.port_in_use(table, laddr, port):
                return port
        return None

    # ------------------------------------------------------------- sockets

    def gso_max_for(self, nic):
        """Payload bytes one TCP segment may carry on nic: the link's TSO
        limit, else software GSO's (``soft_gso``), else 0 (one MSS)."""
        if nic.link.gso_max_size:
            return nic.link.gso_max_size
        if self.soft_gso and not nic.loopback and nic.mtu < SOFT_GSO_MAX:
            return SOFT_GSO_MAX
        return 0

