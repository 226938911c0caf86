"""IPv4 (RFC 791): header validation, routing, fragment reassembly.

``validate(data, drops)`` checks one packet as Linux's ``ip_rcv`` does:
length, version, IHL, total length, header checksum, TTL.  A bad packet is
counted under a reason in ``drops`` and ``None`` is returned; nothing raises.
"""

from ..fields import Fields, FrozenFields

from . import _checksum as ck
from .addr import prefix_mask

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

IP_HLEN = 20
FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF
DEFAULT_TTL = 64


class Packet(Fields):
    """A validated IPv4 packet.  ``payload`` is a memoryview, trimmed to the
    total length; ``header`` holds the header bytes (for ICMP errors);
    ``csum_ok``: the transport checksum was vouched for by the link."""

    __slots__ = ("src", "dst", "proto", "ttl", "ident", "flags_frag", "header", "payload",
                 "csum_ok")

    def __init__(self, src, dst, proto, ttl, ident, flags_frag, header, payload, csum_ok=False):
        self.src = src
        self.dst = dst
        self.proto = proto
        self.ttl = ttl
        self.ident = ident
        self.flags_frag = flags_frag
        self.header = header
        self.payload = payload
        self.csum_ok = csum_ok


def validate(data, drops):
    """Parse and check one IPv4 packet; a Packet, or None (counted)."""
    n = len(data)
    if n < IP_HLEN:
        drops["ipv4_truncated"] += 1
        return None
    (version, ihl, _tos, total, ident, ff, ttl, proto, src, dst,
     sum_ok) = ck.parse_ipv4(data, 0)
    if version != 4:
        drops["ipv4_bad_version"] += 1
        return None
    if ihl < IP_HLEN or ihl > n:
        drops["ipv4_bad_ihl"] += 1
        return None
    if total < ihl or total > n:
        drops["ipv4_bad_length"] += 1
        return None
    if not sum_ok:
        drops["ipv4_bad_checksum"] += 1
        return None
    if ttl == 0:
        drops["ipv4_ttl_zero"] += 1
        return None
    if ff & 0x8000:  # the reserved ("evil") bit must be zero
        drops["ipv4_reserved_flag"] += 1
        return None
    mv = data if isinstance(data, memoryview) else memoryview(data)
    return Packet(src, dst, proto, ttl, ident, ff, mv[:ihl], mv[ihl:total])


def build(src, dst, proto, payload, ident, ttl=DEFAULT_TTL, df=True, head=0):
    """A packet in a new bytearray, leaving ``head`` bytes free in front (for
    the link header).  Returns the bytearray."""
    total = IP_HLEN + len(payload)
    buf = bytearray(head + total)
    ck.build_ipv4(buf, head, total, ident, FLAG_DF if df else 0, ttl, proto, src, dst)
    buf[head + IP_HLEN:] = payload
    return buf


# ------------------------------------------------------------------ routing

class Route(FrozenFields):
    """``dest/prefix_len`` reached through ``gateway`` (0: on-link) on ``nic``."""

    __slots__ = ("dest", "prefix_len", "gateway", "nic")

    def __init__(self, dest, prefix_len, gateway, nic):
        self._set(dest=dest, prefix_len=prefix_len, gateway=gateway, nic=nic)

    def matches(self, addr):
        mask = prefix_mask(self.prefix_len)
        return (addr & mask) == (self.dest & mask)


class RoutingTable:
    """Longest-prefix match over a short list of routes."""

    def __init__(self):
        self.routes = []

    def add(self, route):
        self.routes.append(route)
        self.routes.sort(key=lambda r: -r.prefix_len)

    def remove_nic(self, nic):
        self.routes = [r for r in self.routes if r.nic is not nic]

    def lookup(self, addr):
        """(nic, next_hop) for addr, or None if no route (ENETUNREACH)."""
        for r in self.routes:
            if r.matches(addr):
                return r.nic, (r.gateway or addr)
        return None


# ------------------------------------------------------------------ reassembly

REASM_TIMEOUT = 30.0          # Linux ipfrag_time
REASM_MAX_BYTES = 4 << 20     # Linux ipfrag_high_thresh
REASM_MAX_DATAGRAMS = 256
MAX_DATAGRAM = 65535


class _Datagram:
    __slots__ = ("parts", "size", "total", "expires", "header")

    def __init__(self, expires):
        self.parts = {}      # offset -> bytes
        self.size = 0        # bytes held
        self.total = None    # known once the last fragment arrives
        self.expires = expires
        self.header = None


class Reassembler:
    """Fragment reassembly with memory and time limits (RFC 791 3.2, RFC 815).

    Overlapping fragments drop the whole datagram (as RFC 5722 requires for
    IPv6; for IPv4 it removes the classic overlap attacks at no cost to real
    peers).  When the byte budget is exceeded the oldest datagrams go first.
    """

    def __init__(self, drops, max_bytes=REASM_MAX_BYTES, timeout=REASM_TIMEOUT):
        self.drops = drops
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.bytes = 0
        self.datagrams = {}  # (src, dst, proto, ident) -> _Datagram

    def add(self, pkt, now):
        """Add a fragment; returns the reassembled Packet or None."""
        ff = pkt.flags_frag
        offset = (ff & OFFSET_MASK) * 8
        data = bytes(pkt.payload)
        more = bool(ff & FLAG_MF)
        end = offset + len(data)
        if end + IP_HLEN > MAX_DATAGRAM or (more and (len(data) == 0 or len(data) % 8)):
            self.drops["frag_malformed"] += 1
            return None
        key = (pkt.src, pkt.dst, pkt.proto, pkt.ident)
        dg = self.datagrams.get(key)
        if dg is None:
            if len(self.datagrams) >= REASM_MAX_DATAGRAMS:
                self.drops["frag_too_many"] += 1
                self._evict_oldest()
            dg = self.datagrams[key] = _Datagram(now + self.timeout)
        if not self._insert(dg, offset, end, data, more):
            self._discard(key)
            self.drops["frag_overlap"] += 1
            return None
        if offset == 0:
            dg.header = bytes(pkt.header)
        self.bytes += len(data)
        while self.bytes > self.max_bytes and self.datagrams:
            self.drops["frag_memory"] += 1
            self._evict_oldest()
        if key not in self.datagrams:
            return None
        return self._complete(key, dg, pkt)

    def _insert(self, dg, offset, end, data, more):
        if not more:
            if dg.total is not None and dg.total != end:
                return False
            dg.total = end
        if dg.total is not None and end > dg.total:
            return False
        for o, d in dg.parts.items():
            if o < end and offset < o + len(d):
                return False
        dg.parts[offset] = data
        dg.size += len(data)
        return True

    def _complete(self, key, dg, pkt):
        if dg.total is None or dg.size != dg.total or dg.header is None:
            return None
        self._discard(key)
        payload = b"".join(dg.parts[o] for o in sorted(dg.parts))
        header = memoryview(dg.header)
        return Packet(pkt.src, pkt.dst, pkt.proto, pkt.ttl, pkt.ident, 0,
                      header, memoryview(payload))

    def _discard(self, key):
        dg = self.datagrams.pop(key)
        self.bytes -= dg.size

    def _evict_oldest(self):
        key = min(self.datagrams, key=lambda k: self.datagrams[k].expires)
        self._discard(key)

    def tick(self, now):
        for key in [k for k, d in self.datagrams.items() if d.expires <= now]:
            self._discard(key)
            self.drops["frag_timeout"] += 1

    def next_deadline(self):
        if not self.datagrams:
            return None
        return min(d.expires for d in self.datagrams.values())
