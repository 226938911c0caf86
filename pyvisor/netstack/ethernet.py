"""Ethernet II framing (IEEE 802.3 with an EtherType)."""

import struct

from .addr import BROADCAST_MAC

ETH_HLEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806

_HDR = struct.Struct("!6s6sH")


def parse(frame):
    """Split a frame into (dst, src, ethertype, payload memoryview).

    Returns None for a frame shorter than the header; the caller counts it.
    Trailing padding stays in the payload: the network layer trims it by its
    own length field.
    """
    if len(frame) < ETH_HLEN:
        return None
    dst, src, ethertype = _HDR.unpack_from(frame, 0)
    return dst, src, ethertype, memoryview(frame)[ETH_HLEN:]


def header(dst, src, ethertype):
    """The 14 header bytes."""
    return _HDR.pack(dst, src, ethertype)


def write_header(buf, dst, src, ethertype):
    """Write the header into the first 14 bytes of a preallocated buffer."""
    _HDR.pack_into(buf, 0, dst, src, ethertype)


def accepts(dst, my_mac):
    """True if a frame to dst is for an interface with my_mac."""
    return dst == my_mac or dst == BROADCAST_MAC or (dst[0] & 1) == 1
