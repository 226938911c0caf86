"""ICMPv4 (RFC 792): echo reply, destination unreachable, errors for TCP/UDP.

Pure functions over bytes; the stack decides what to do with the results.
"""

import struct

from . import _checksum as ck

TYPE_ECHO_REPLY = 0
TYPE_DEST_UNREACH = 3
TYPE_ECHO_REQUEST = 8
TYPE_TIME_EXCEEDED = 11

CODE_NET_UNREACH = 0
CODE_HOST_UNREACH = 1
CODE_PROTO_UNREACH = 2
CODE_PORT_UNREACH = 3
CODE_FRAG_NEEDED = 4

ICMP_HLEN = 8
_HDR = struct.Struct("!BBHI")

# RFC 1122 4.2.3.9 / Linux icmp_err_convert: which unreachable codes are
# hard errors for a connecting TCP socket or a connected UDP socket.
UNREACH_ERRNO = {
    CODE_NET_UNREACH: "ENETUNREACH",
    CODE_HOST_UNREACH: "EHOSTUNREACH",
    CODE_PROTO_UNREACH: "ENOPROTOOPT",
    CODE_PORT_UNREACH: "ECONNREFUSED",
    CODE_FRAG_NEEDED: "EMSGSIZE",
}


def parse(payload, drops):
    """(type, code, rest_of_header_u32, body) or None if bad (counted)."""
    if len(payload) < ICMP_HLEN:
        drops["icmp_truncated"] += 1
        return None
    if ck.checksum(payload) != 0:
        drops["icmp_bad_checksum"] += 1
        return None
    typ, code, _sum, rest = _HDR.unpack_from(payload, 0)
    return typ, code, rest, payload[ICMP_HLEN:]


def build(typ, code, rest, body):
    """An ICMP message with its checksum."""
    msg = bytearray(ICMP_HLEN + len(body))
    _HDR.pack_into(msg, 0, typ, code, 0, rest)
    msg[ICMP_HLEN:] = body
    ck.put16(msg, 2, ck.checksum(msg))
    return msg


def echo_reply(rest, body):
    """The reply to an echo request: same identifier, sequence and data."""
    return build(TYPE_ECHO_REPLY, 0, rest, body)


def unreachable(code, ip_header, ip_payload, next_mtu=0):
    """Destination unreachable quoting the offending header and 8 bytes of
    its payload (RFC 792), as Linux does for small packets."""
    return build(TYPE_DEST_UNREACH, code, next_mtu & 0xFFFF,
                 bytes(ip_header) + bytes(ip_payload[:8]))


def quoted(body):
    """From an ICMP error body, (proto, src, dst, l4_first_8_bytes) of the
    packet we sent, or None if the quote is too short to be useful."""
    if len(body) < 20:
        return None
    ihl = (body[0] & 0xF) * 4
    if ihl < 20 or len(body) < ihl + 8:
        return None
    proto = body[9]
    src = ck.get32(body, 12)
    dst = ck.get32(body, 16)
    return proto, src, dst, bytes(body[ihl:ihl + 8])


class RateLimiter:
    """Token bucket for ICMP errors we send (Linux icmp_ratelimit)."""

    def __init__(self, rate=1000.0, burst=50):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = None

    def allow(self, now):
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
