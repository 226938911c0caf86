"""TCP segments: the value the state machine consumes and produces, and its
wire form (RFC 9293 3.1; options from RFC 7323 and RFC 2018).

Sequence numbers inside :class:`Segment` are the 32-bit wire values; the
connection unwraps them against its own 64-bit counters.
"""

from . import _checksum as ck

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20

TCP_HLEN = 20
MAX_OPTIONS = 40

OPT_END = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERM = 4
OPT_SACK = 5
OPT_TS = 8

MAX_WSCALE = 14  # RFC 7323 2.3


class Segment:
    """One TCP segment as the state machine sees it."""

    __slots__ = ("seq", "ack", "flags", "window", "payload", "mss", "wscale",
                 "sack_ok", "ts", "sack", "gso_size")

    def __init__(self, seq, ack, flags, window=0, payload=b"", mss=None,
                 wscale=None, sack_ok=False, ts=None, sack=()):
        self.seq = seq          # u32
        self.ack = ack          # u32 (meaningful when ACK is set)
        self.flags = flags
        self.window = window    # the 16-bit field, unscaled
        self.payload = payload  # bytes-like
        self.mss = mss          # option values, None when absent
        self.wscale = wscale
        self.sack_ok = sack_ok
        self.ts = ts            # (tsval, tsecr) or None
        self.sack = sack        # ((left, right), ...) u32 edges
        self.gso_size = 0       # >0: payload to be cut in segments of this size

    @property
    def seg_len(self):
        """SEG.LEN: payload bytes plus one for SYN and one for FIN."""
        return len(self.payload) + (self.flags & SYN and 1) + (self.flags & FIN and 1)

    def __repr__(self):
        names = "".join(n for b, n in ((SYN, "S"), (FIN, "F"), (RST, "R"),
                                       (PSH, "P"), (ACK, "."))
                        if self.flags & b)
        return "<Segment %s seq=%d ack=%d win=%d len=%d>" % (
            names, self.seq, self.ack, self.window, len(self.payload))


def parse(data, src, dst, drops, csum_ok=False):
    """Validate and decode a TCP segment from an IPv4 payload.

    ``csum_ok``: the link vouched for the checksum (offload from the host
    kernel), so it is not verified.  Returns (sport, dport, Segment) or None
    after counting a drop reason.
    """
    n = len(data)
    if n < TCP_HLEN:
        drops["tcp_truncated"] += 1
        return None
    if not csum_ok and ck.transport_checksum(src, dst, 6, data) != 0:
        drops["tcp_bad_checksum"] += 1
        return None
    sport, dport, seq, ack, doff, flags, window, _urg = ck.parse_tcp(data, 0)
    if doff < TCP_HLEN or doff > n:
        drops["tcp_bad_offset"] += 1
        return None
    if sport == 0 or dport == 0:
        drops["tcp_bad_port"] += 1
        return None
    seg = Segment(seq, ack, flags & 0x3F, window, data[doff:])
    if doff > TCP_HLEN and not parse_options(data[TCP_HLEN:doff], seg):
        drops["tcp_bad_option"] += 1
    return sport, dport, seg


def parse_options(opts, seg):
    """Fill seg's option fields; False if an option is malformed (parsing
    stops there, as in Linux's tcp_parse_options; earlier options stay)."""
    i, n = 0, len(opts)
    syn = seg.flags & SYN
    while i < n:
        kind = opts[i]
        if kind == OPT_END:
            return True
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            return False
        size = opts[i + 1]
        if size < 2 or i + size > n:
            return False
        if kind == OPT_MSS and size == 4 and syn:
            seg.mss = ck.get16(opts, i + 2)
        elif kind == OPT_WSCALE and size == 3 and syn:
            seg.wscale = min(opts[i + 2], MAX_WSCALE)
        elif kind == OPT_SACK_PERM and size == 2 and syn:
            seg.sack_ok = True
        elif kind == OPT_TS and size == 10:
            seg.ts = (ck.get32(opts, i + 2), ck.get32(opts, i + 6))
        elif kind == OPT_SACK and size >= 10 and (size - 2) % 8 == 0 and not syn:
            seg.sack = tuple((ck.get32(opts, j), ck.get32(opts, j + 4))
                             for j in range(i + 2, i + size, 8))
        i += size
    return True


def encode_options(seg):
    """The option bytes for seg, padded to a multiple of 4 (Linux layout)."""
    out = bytearray()
    if seg.mss is not None:
        out += bytes((OPT_MSS, 4, seg.mss >> 8, seg.mss & 0xFF))
    if seg.ts is not None:
        if seg.sack_ok:
            out += bytes((OPT_SACK_PERM, 2))
        else:
            out += bytes((OPT_NOP, OPT_NOP))
        out += bytes((OPT_TS, 10))
        out += seg.ts[0].to_bytes(4, "big") + seg.ts[1].to_bytes(4, "big")
    elif seg.sack_ok:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2))
    if seg.wscale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, seg.wscale))
    if seg.sack:
        room = (MAX_OPTIONS - len(out) - 4) // 8
        blocks = seg.sack[:room]
        if blocks:
            out += bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks)))
            for left, right in blocks:
                out += left.to_bytes(4, "big") + right.to_bytes(4, "big")
    while len(out) % 4:
        out.append(OPT_NOP)
    return bytes(out)


def encode(seg, sport, dport, src, dst, head=0):
    """The wire form of seg in a new bytearray with ``head`` free bytes in
    front (for IPv4 and link headers).  Returns (buffer, tcp_length)."""
    opts = encode_options(seg)
    payload = seg.payload
    length = TCP_HLEN + len(opts) + len(payload)
    buf = bytearray(head + length)
    ck.build_tcp(buf, head, sport, dport, seg.seq, seg.ack, seg.flags,
                 seg.window, opts, payload, src, dst)
    return buf, length
