"""UDP (RFC 768): datagram validation and assembly."""

from . import _checksum as ck

UDP_HLEN = 8


def parse(pkt, drops):
    """(sport, dport, payload bytes) for a valid datagram, else None (counted).

    A zero checksum means the sender did not compute one (RFC 768).
    """
    data = pkt.payload
    n = len(data)
    if n < UDP_HLEN:
        drops["udp_truncated"] += 1
        return None
    length = ck.get16(data, 4)
    if length < UDP_HLEN or length > n:
        drops["udp_bad_length"] += 1
        return None
    if not pkt.csum_ok and ck.get16(data, 6) != 0 and ck.transport_checksum(pkt.src, pkt.dst, 17, data, 0, length) != 0:
        drops["udp_bad_checksum"] += 1
        return None
    sport = ck.get16(data, 0)
    dport = ck.get16(data, 2)
    if dport == 0:
        drops["udp_bad_port"] += 1
        return None
    return sport, dport, bytes(data[UDP_HLEN:length])


def build(buf, off, sport, dport, payload, src, dst):
    """Write a datagram into buf at off; returns its length."""
    return ck.build_udp(buf, off, sport, dport, payload, src, dst)
