"""IPv4 and MAC address helpers.

Inside netstack an IPv4 address is an ``int`` (host order) and a MAC address
is 6 ``bytes``; text forms exist only at the edges (API, CLI, logs).
"""

import ipaddress

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
INADDR_ANY = 0
INADDR_BROADCAST = 0xFFFFFFFF


def ip(text):
    """Parse dotted-quad text (or pass an int through) to an int address."""
    if isinstance(text, int):
        return text
    return int(ipaddress.IPv4Address(text))


def ip_str(value):
    """Format an int address as dotted-quad text."""
    return str(ipaddress.IPv4Address(value))


def mac(text):
    """Parse ``aa:bb:cc:dd:ee:ff`` (or pass 6 bytes through) to bytes."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) != 6:
            raise ValueError("a MAC address has 6 bytes")
        return bytes(text)
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError("bad MAC address %r" % text)
    return bytes(int(p, 16) for p in parts)


def mac_str(value):
    return ":".join("%02x" % b for b in value)


def prefix_mask(prefix_len):
    """Netmask int for a prefix length 0..32."""
    if not 0 <= prefix_len <= 32:
        raise ValueError("prefix length must be 0..32")
    return (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF


def is_multicast(addr):
    return (addr >> 28) == 0xE
