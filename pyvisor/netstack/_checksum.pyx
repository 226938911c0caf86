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

from libc.stdint cimport uint8_t, uint32_t, uint64_t

from pyvisor.netstack._wire cimport csum_add, csum_fold
from pyvisor.netstack._wire cimport get16 as _get16, get32 as _get32, put16 as _put16, put32 as _put32


cdef inline uint64_t _sum(const uint8_t[::1] buf, Py_ssize_t start, Py_ssize_t end,
                          uint64_t acc) noexcept nogil:
    """csum_add over buf[start:end] (0 <= start <= end <= len(buf))."""
    return csum_add(&buf[0] + start, end - start, acc)


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
    return csum_fold(_sum(buf, start, end, initial))


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
    return csum_fold(acc)


def transport_checksum(uint32_t src, uint32_t dst, uint32_t proto,
                       const uint8_t[::1] buf, Py_ssize_t start=0,
                       Py_ssize_t end=-1):
    """Checksum of a TCP/UDP segment buf[start:end] under its pseudo-header."""
    if end < 0 or end > buf.shape[0]:
        end = buf.shape[0]
    cdef uint32_t ps = pseudo_sum(src, dst, proto, <uint32_t>(end - start))
    return (~csum_fold(_sum(buf, start, end, ps))) & 0xffff


# ---------------------------------------------------------------- integers

def get16(const uint8_t[::1] b, Py_ssize_t off):
    """Big-endian u16 at off.  Precondition: off + 2 <= len(b)."""
    return _get16(&b[off])


def get32(const uint8_t[::1] b, Py_ssize_t off):
    """Big-endian u32 at off.  Precondition: off + 4 <= len(b)."""
    return _get32(&b[off])


def put16(uint8_t[::1] b, Py_ssize_t off, uint32_t v):
    """Store v as a big-endian u16 at off."""
    _put16(&b[off], v & 0xffff)


def put32(uint8_t[::1] b, Py_ssize_t off, uint32_t v):
    """Store v as a big-endian u32 at off."""
    _put32(&b[off], v)


# ---------------------------------------------------------------- IPv4

def parse_ipv4(const uint8_t[::1] b, Py_ssize_t off=0):
    """Parse the fixed IPv4 header at off (RFC 791 3.1).

    Precondition: off + 20 <= len(b).  Returns (version, ihl_bytes, tos,
    total_length, ident, flags_fragoff, ttl, proto, src, dst, header_sum_ok)
    where header_sum_ok is computed over ihl_bytes when they fit, else False.
    """
    cdef const uint8_t *h = &b[off]
    cdef uint32_t vihl = b[off]
    cdef Py_ssize_t ihl = (vihl & 0xf) * 4
    cdef bint ok = False
    if ihl >= 20 and off + ihl <= b.shape[0]:
        ok = csum_fold(_sum(b, off, off + ihl, 0)) == 0xffff
    return (vihl >> 4, ihl, b[off + 1], _get16(h + 2), _get16(h + 4),
            _get16(h + 6), b[off + 8], b[off + 9], _get32(h + 12),
            _get32(h + 16), ok)


def build_ipv4(uint8_t[::1] b, Py_ssize_t off, uint32_t total_length,
               uint32_t ident, uint32_t flags_fragoff, uint32_t ttl,
               uint32_t proto, uint32_t src, uint32_t dst, uint32_t tos=0):
    """Write a 20-byte IPv4 header (no options) at off, checksum included."""
    cdef uint8_t *h = &b[off]
    b[off] = 0x45
    b[off + 1] = tos & 0xff
    _put16(h + 2, total_length)
    _put16(h + 4, ident & 0xffff)
    _put16(h + 6, flags_fragoff)
    b[off + 8] = ttl & 0xff
    b[off + 9] = proto & 0xff
    _put16(h + 10, 0)
    _put32(h + 12, src)
    _put32(h + 16, dst)
    _put16(h + 10, (~csum_fold(_sum(b, off, off + 20, 0))) & 0xffff)


# ---------------------------------------------------------------- TCP

def parse_tcp(const uint8_t[::1] b, Py_ssize_t off=0):
    """Parse the fixed TCP header at off (RFC 9293 3.1).

    Precondition: off + 20 <= len(b).  Returns (sport, dport, seq, ack,
    data_offset_bytes, flags, window, urgent).  flags holds the low 9 bits
    (NS..FIN); data_offset is not validated here.
    """
    cdef const uint8_t *h = &b[off]
    return (_get16(h), _get16(h + 2), _get32(h + 4),
            _get32(h + 8), (b[off + 12] >> 4) * 4,
            ((<uint32_t>b[off + 12] & 1) << 8) | b[off + 13],
            _get16(h + 14), _get16(h + 18))


def build_tcp(uint8_t[::1] b, Py_ssize_t off, uint32_t sport, uint32_t dport,
              uint32_t seq, uint32_t ack, uint32_t flags, uint32_t window,
              const uint8_t[::1] options, const uint8_t[::1] payload,
              uint32_t src, uint32_t dst):
    """Write a TCP segment at off: header, options (padded to 4 bytes by the
    caller), payload; then the checksum under the pseudo-header.

    Returns the segment length.  Precondition: the buffer is large enough.
    """
    cdef uint8_t *h = &b[off]
    cdef Py_ssize_t olen = options.shape[0]
    cdef Py_ssize_t plen = payload.shape[0]
    cdef Py_ssize_t hlen = 20 + olen
    cdef Py_ssize_t i
    _put16(h, sport)
    _put16(h + 2, dport)
    _put32(h + 4, seq)
    _put32(h + 8, ack)
    b[off + 12] = ((hlen // 4) << 4) | ((flags >> 8) & 1)
    b[off + 13] = flags & 0xff
    _put16(h + 14, window)
    _put16(h + 16, 0)
    _put16(h + 18, 0)
    for i in range(olen):
        b[off + 20 + i] = options[i]
    if plen:
        b[off + hlen:off + hlen + plen] = payload
    cdef uint32_t ps = pseudo_sum(src, dst, 6, <uint32_t>(hlen + plen))
    _put16(h + 16, (~csum_fold(_sum(b, off, off + hlen + plen, ps))) & 0xffff)
    return hlen + plen


# ---------------------------------------------------------------- UDP

def build_udp(uint8_t[::1] b, Py_ssize_t off, uint32_t sport, uint32_t dport,
              const uint8_t[::1] payload, uint32_t src, uint32_t dst):
    """Write a UDP datagram at off with its checksum (RFC 768).

    A computed checksum of 0 is sent as 0xffff.  Returns the datagram length.
    """
    cdef uint8_t *h = &b[off]
    cdef Py_ssize_t plen = payload.shape[0]
    cdef uint32_t length = <uint32_t>(8 + plen)
    _put16(h, sport)
    _put16(h + 2, dport)
    _put16(h + 4, length)
    _put16(h + 6, 0)
    if plen:
        b[off + 8:off + 8 + plen] = payload
    cdef uint32_t ps = pseudo_sum(src, dst, 17, length)
    cdef uint32_t c = (~csum_fold(_sum(b, off, off + length, ps))) & 0xffff
    _put16(h + 6, c if c else 0xffff)
    return length
