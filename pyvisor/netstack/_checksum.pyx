# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Internet checksum and header pack/parse helpers for netstack.

The internet checksum (RFC 1071) is the ones' complement of the ones'
complement sum of the data taken as big-endian 16-bit words; an odd trailing
byte is padded with a zero.  TCP and UDP add a pseudo-header (RFC 9293 3.1,
RFC 768): source and destination address, zero, protocol, and the transport
length.  A received header or segment is valid when the sum over it,
checksum field included, folds to 0xffff (i.e. ``checksum(...) == 0``).

Everything here works on typed memoryviews over ``bytes``, ``bytearray`` or
``memoryview`` objects, without copying.  Parsers never raise on short input:
they are called only after the caller checked lengths, and they return
tuples of ints.  Builders write into a caller-provided, preallocated buffer.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef inline uint64_t _sum(const uint8_t[::1] buf, Py_ssize_t start,
                          Py_ssize_t end, uint64_t acc) noexcept nogil:
    cdef Py_ssize_t i = start
    # Four 16-bit words per step; the 64-bit accumulator cannot overflow for
    # any buffer smaller than 2**47 bytes.
    while i + 8 <= end:
        acc += ((<uint64_t>buf[i] << 8) | buf[i + 1]) + \
               ((<uint64_t>buf[i + 2] << 8) | buf[i + 3]) + \
               ((<uint64_t>buf[i + 4] << 8) | buf[i + 5]) + \
               ((<uint64_t>buf[i + 6] << 8) | buf[i + 7])
        i += 8
    while i + 2 <= end:
        acc += (<uint64_t>buf[i] << 8) | buf[i + 1]
        i += 2
    if i < end:
        acc += <uint64_t>buf[i] << 8
    return acc


cdef inline uint32_t _fold(uint64_t acc) noexcept nogil:
    while acc >> 16:
        acc = (acc & 0xffff) + (acc >> 16)
    return <uint32_t>acc


cdef inline void _put16(uint8_t[::1] b, Py_ssize_t o, uint32_t v) noexcept nogil:
    b[o] = (v >> 8) & 0xff
    b[o + 1] = v & 0xff


cdef inline void _put32(uint8_t[::1] b, Py_ssize_t o, uint32_t v) noexcept nogil:
    b[o] = (v >> 24) & 0xff
    b[o + 1] = (v >> 16) & 0xff
    b[o + 2] = (v >> 8) & 0xff
    b[o + 3] = v & 0xff


cdef inline uint32_t _get16(const uint8_t[::1] b, Py_ssize_t o) noexcept nogil:
    return (<uint32_t>b[o] << 8) | b[o + 1]


cdef inline uint32_t _get32(const uint8_t[::1] b, Py_ssize_t o) noexcept nogil:
    return ((<uint32_t>b[o] << 24) | (<uint32_t>b[o + 1] << 16) |
            (<uint32_t>b[o + 2] << 8) | b[o + 3])


def sum16(const uint8_t[::1] buf, Py_ssize_t start=0, Py_ssize_t end=-1,
          uint32_t initial=0):
    """Folded 16-bit ones' complement sum of buf[start:end], plus initial.

    Not complemented: partial sums add (and fold) to the sum of the whole.
    An odd-length range is padded with a zero byte at its end.
    """
    if end < 0 or end > buf.shape[0]:
        end = buf.shape[0]
    if start < 0:
        start = 0
    if start > end:
        start = end
    return _fold(_sum(buf, start, end, initial))


def checksum(const uint8_t[::1] buf, Py_ssize_t start=0, Py_ssize_t end=-1,
             uint32_t initial=0):
    """Internet checksum (RFC 1071) of buf[start:end] with initial partial sum.

    Returns 0 for data that already carries a correct checksum.
    """
    return (~sum16(buf, start, end, initial)) & 0xffff


def pseudo_sum(uint32_t src, uint32_t dst, uint32_t proto, uint32_t length):
    """Folded sum of the IPv4 pseudo-header (RFC 9293 3.1, RFC 768)."""
    cdef uint64_t acc = (src >> 16) + (src & 0xffff) + (dst >> 16) + \
        (dst & 0xffff) + proto + length
    return _fold(acc)


def transport_checksum(uint32_t src, uint32_t dst, uint32_t proto,
                       const uint8_t[::1] buf, Py_ssize_t start=0,
                       Py_ssize_t end=-1):
    """Checksum of a TCP/UDP segment buf[start:end] under its pseudo-header."""
    if end < 0 or end > buf.shape[0]:
        end = buf.shape[0]
    cdef uint32_t ps = pseudo_sum(src, dst, proto, <uint32_t>(end - start))
    return (~_fold(_sum(buf, start, end, ps))) & 0xffff


# ---------------------------------------------------------------- integers

def get16(const uint8_t[::1] b, Py_ssize_t off):
    """Big-endian u16 at off.  Precondition: off + 2 <= len(b)."""
    return _get16(b, off)


def get32(const uint8_t[::1] b, Py_ssize_t off):
    """Big-endian u32 at off.  Precondition: off + 4 <= len(b)."""
    return _get32(b, off)


def put16(uint8_t[::1] b, Py_ssize_t off, uint32_t v):
    """Store v as a big-endian u16 at off."""
    _put16(b, off, v & 0xffff)


def put32(uint8_t[::1] b, Py_ssize_t off, uint32_t v):
    """Store v as a big-endian u32 at off."""
    _put32(b, off, v)


# ---------------------------------------------------------------- IPv4

def parse_ipv4(const uint8_t[::1] b, Py_ssize_t off=0):
    """Parse the fixed IPv4 header at off (RFC 791 3.1).

    Precondition: off + 20 <= len(b).  Returns (version, ihl_bytes, tos,
    total_length, ident, flags_fragoff, ttl, proto, src, dst, header_sum_ok)
    where header_sum_ok is computed over ihl_bytes when they fit, else False.
    """
    cdef uint32_t vihl = b[off]
    cdef Py_ssize_t ihl = (vihl & 0xf) * 4
    cdef bint ok = False
    if ihl >= 20 and off + ihl <= b.shape[0]:
        ok = _fold(_sum(b, off, off + ihl, 0)) == 0xffff
    return (vihl >> 4, ihl, b[off + 1], _get16(b, off + 2), _get16(b, off + 4),
            _get16(b, off + 6), b[off + 8], b[off + 9], _get32(b, off + 12),
            _get32(b, off + 16), ok)


def build_ipv4(uint8_t[::1] b, Py_ssize_t off, uint32_t total_length,
               uint32_t ident, uint32_t flags_fragoff, uint32_t ttl,
               uint32_t proto, uint32_t src, uint32_t dst, uint32_t tos=0):
    """Write a 20-byte IPv4 header (no options) at off, checksum included."""
    b[off] = 0x45
    b[off + 1] = tos & 0xff
    _put16(b, off + 2, total_length)
    _put16(b, off + 4, ident & 0xffff)
    _put16(b, off + 6, flags_fragoff)
    b[off + 8] = ttl & 0xff
    b[off + 9] = proto & 0xff
    _put16(b, off + 10, 0)
    _put32(b, off + 12, src)
    _put32(b, off + 16, dst)
    _put16(b, off + 10, (~_fold(_sum(b, off, off + 20, 0))) & 0xffff)


# ---------------------------------------------------------------- TCP

def parse_tcp(const uint8_t[::1] b, Py_ssize_t off=0):
    """Parse the fixed TCP header at off (RFC 9293 3.1).

    Precondition: off + 20 <= len(b).  Returns (sport, dport, seq, ack,
    data_offset_bytes, flags, window, urgent).  flags holds the low 9 bits
    (NS..FIN); data_offset is not validated here.
    """
    return (_get16(b, off), _get16(b, off + 2), _get32(b, off + 4),
            _get32(b, off + 8), (b[off + 12] >> 4) * 4,
            ((<uint32_t>b[off + 12] & 1) << 8) | b[off + 13],
            _get16(b, off + 14), _get16(b, off + 18))


def build_tcp(uint8_t[::1] b, Py_ssize_t off, uint32_t sport, uint32_t dport,
              uint32_t seq, uint32_t ack, uint32_t flags, uint32_t window,
              const uint8_t[::1] options, const uint8_t[::1] payload,
              uint32_t src, uint32_t dst):
    """Write a TCP segment at off: header, options (padded to 4 bytes by the
    caller), payload; then the checksum under the pseudo-header.

    Returns the segment length.  Precondition: the buffer is large enough.
    """
    cdef Py_ssize_t olen = options.shape[0]
    cdef Py_ssize_t plen = payload.shape[0]
    cdef Py_ssize_t hlen = 20 + olen
    cdef Py_ssize_t i
    _put16(b, off, sport)
    _put16(b, off + 2, dport)
    _put32(b, off + 4, seq)
    _put32(b, off + 8, ack)
    b[off + 12] = ((hlen // 4) << 4) | ((flags >> 8) & 1)
    b[off + 13] = flags & 0xff
    _put16(b, off + 14, window)
    _put16(b, off + 16, 0)
    _put16(b, off + 18, 0)
    for i in range(olen):
        b[off + 20 + i] = options[i]
    if plen:
        b[off + hlen:off + hlen + plen] = payload
    cdef uint32_t ps = pseudo_sum(src, dst, 6, <uint32_t>(hlen + plen))
    _put16(b, off + 16, (~_fold(_sum(b, off, off + hlen + plen, ps))) & 0xffff)
    return hlen + plen


# ---------------------------------------------------------------- UDP

def build_udp(uint8_t[::1] b, Py_ssize_t off, uint32_t sport, uint32_t dport,
              const uint8_t[::1] payload, uint32_t src, uint32_t dst):
    """Write a UDP datagram at off with its checksum (RFC 768).

    A computed checksum of 0 is sent as 0xffff.  Returns the datagram length.
    """
    cdef Py_ssize_t plen = payload.shape[0]
    cdef uint32_t length = <uint32_t>(8 + plen)
    _put16(b, off, sport)
    _put16(b, off + 2, dport)
    _put16(b, off + 4, length)
    _put16(b, off + 6, 0)
    if plen:
        b[off + 8:off + 8 + plen] = payload
    cdef uint32_t ps = pseudo_sum(src, dst, 17, length)
    cdef uint32_t c = (~_fold(_sum(b, off, off + length, ps))) & 0xffff
    _put16(b, off + 6, c if c else 0xffff)
    return length
