# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Whole-frame operations on the per-segment path, in one C call each.

Without link offloads a Python stack pays its per-call overhead once per
1500-byte frame.  Linux's answer is GSO: TCP works on large segments and
they are cut into MTU-sized frames at the last moment, by the device when it
can (TSO) or in software just before it (``skb_gso_segment``).  This module
is that last step for us, plus its two neighbours:

- :func:`split_tcp`: cut an Ethernet+IPv4+TCP super-segment into frames of
  ``gso_size`` payload bytes, each with its own IP length, ident and header
  checksum, sequence number and full TCP checksum (what
  ``tcp_gso_segment``/``inet_gso_segment`` do).  FIN and PSH stay on the
  last frame only; CWR on the first only.
- :func:`write_frames`: write a batch of frames to a TAP fd, one write(2)
  per frame (the TAP gives no way to pass several), without the GIL.
- :func:`parse_tcp_frame`: decode an Ethernet+IPv4+TCP frame of the common
  shape (no IP options, not fragmented) in one call, or say it is not of
  that shape so the general path handles (and counts) it.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.errno cimport errno, EAGAIN, ENOBUFS, EIO, EINVAL
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from pyvisor.netstack._wire cimport csum_add, csum_fold, get16, get32, put16, put32

cdef extern from "unistd.h" nogil:
    ssize_t write(int fd, const void *buf, size_t count)

cdef enum:
    ETH_HLEN = 14
    IP_HLEN = 20
    TCP_FIN = 0x01
    TCP_PSH = 0x08
    TCP_CWR = 0x80
    MAX_BATCH = 1024


def split_tcp(const uint8_t[::1] frame, Py_ssize_t hdr_len, Py_ssize_t gso_size,
              uint32_t ident):
    """Cut a TCP super-segment into frames; returns a list of bytes.

    ``frame`` holds a 14-byte Ethernet header, a 20-byte IPv4 header (any
    checksum and length: both are rewritten) and a TCP header with options
    ending at ``hdr_len``, then the payload.  Frame i gets IP ident
    ``ident + i`` and payload bytes [i*gso_size, (i+1)*gso_size).
    Precondition: gso_size > 0 and hdr_len >= 54 (the caller built the
    frame); raises ValueError otherwise.
    """
    cdef Py_ssize_t total = frame.shape[0]
    if gso_size <= 0 or hdr_len < ETH_HLEN + IP_HLEN + 20 or hdr_len > total:
        raise ValueError("bad super-segment geometry")
    cdef const uint8_t *src = &frame[0]
    cdef Py_ssize_t payload = total - hdr_len
    cdef Py_ssize_t count = (payload + gso_size - 1) // gso_size if payload else 1
    cdef Py_ssize_t tcp_off = ETH_HLEN + IP_HLEN
    cdef Py_ssize_t tcp_hlen = hdr_len - tcp_off
    cdef uint32_t seq = get32(src + tcp_off + 4)
    cdef uint32_t flags = src[tcp_off + 13]
    cdef uint64_t addr_sum = csum_add(src + ETH_HLEN + 12, 8, 6)  # addresses + proto
    cdef list out = []
    cdef Py_ssize_t i, off, n, flen
    cdef uint32_t f, c
    cdef bytes b
    cdef uint8_t *d
    for i in range(count):
        off = i * gso_size
        n = payload - off
        if n > gso_size:
            n = gso_size
        flen = hdr_len + n
        b = PyBytes_FromStringAndSize(NULL, flen)
        d = <uint8_t *>PyBytes_AS_STRING(b)
        memcpy(d, src, hdr_len)
        memcpy(d + hdr_len, src + hdr_len + off, n)
        # IPv4: length, ident, checksum.
        put16(d + ETH_HLEN + 2, <uint32_t>(flen - ETH_HLEN))
        put16(d + ETH_HLEN + 4, (ident + <uint32_t>i) & 0xffff)
        put16(d + ETH_HLEN + 10, 0)
        put16(d + ETH_HLEN + 10, (~csum_fold(csum_add(d + ETH_HLEN, IP_HLEN, 0))) & 0xffff)
        # TCP: sequence, flags, checksum over the pseudo-header.
        put32(d + tcp_off + 4, seq + <uint32_t>off)
        f = flags
        if i != count - 1:
            f &= ~(TCP_FIN | TCP_PSH)
        if i != 0:
            f &= ~TCP_CWR
        d[tcp_off + 13] = f
        put16(d + tcp_off + 16, 0)
        c = csum_fold(csum_add(d + tcp_off, tcp_hlen + n, addr_sum + <uint64_t>(tcp_hlen + n)))
        put16(d + tcp_off + 16, (~c) & 0xffff)
        out.append(b)
    return out


def write_frames(int fd, list frames, Py_ssize_t skip=0):
    """write(2) each frame (bytes) to fd, from byte ``skip`` on, without
    the GIL.  Returns (written, dropped): a frame the device refuses with
    EAGAIN/ENOBUFS/EIO/EINVAL is dropped, as a full wire drops it.  Other
    errors raise OSError after the frames before it were written.
    """
    cdef Py_ssize_t n = len(frames)
    cdef const char *ptrs[MAX_BATCH]
    cdef Py_ssize_t lens[MAX_BATCH]
    cdef Py_ssize_t i, j, k, start = 0, written = 0, dropped = 0
    cdef ssize_t r
    cdef int err = 0
    cdef bytes b
    while start < n:
        k = n - start
        if k > MAX_BATCH:
            k = MAX_BATCH
        for j in range(k):
            b = frames[start + j]
            if len(b) < skip:
                raise ValueError("frame shorter than skip")
            ptrs[j] = PyBytes_AS_STRING(b) + skip
            lens[j] = len(b) - skip
        # The list holds references to every frame, so the pointers stay
        # valid while the GIL is released.
        with nogil:
            for j in range(k):
                r = write(fd, ptrs[j], lens[j])
                if r < 0:
                    if errno == EAGAIN or errno == ENOBUFS or errno == EIO or errno == EINVAL:
                        dropped += 1
                    else:
                        err = errno
                        break
                else:
                    written += 1
        if err:
            raise OSError(err, "write to link")
        start += k
    return written, dropped


def parse_tcp_frame(const uint8_t[::1] f, const uint8_t[::1] mac, bint verify_csum=True):
    """Decode an Ethernet+IPv4+TCP frame of the common shape in one call.

    Returns None unless: destination MAC ``mac``, EtherType IPv4, version 4
    with a 20-byte header, total length within the frame, correct header
    checksum, not a fragment, reserved flag clear, TTL > 0, protocol TCP,
    ports not zero, data offset within the segment, and (when
    ``verify_csum``) a correct TCP checksum.  None means "take the general
    path", which finds and counts whatever is unusual or wrong.

    Otherwise returns (src, dst, sport, dport, seq, ack, flags, window,
    doff, end, ts) where the TCP segment is f[34:end], its header ends at
    34 + doff, and ``ts`` is (tsval, tsecr) when the options are exactly
    NOP, NOP, timestamps (Linux's layout on established connections), None
    when there are no options, and False for any other options (the caller
    parses them).
    """
    cdef Py_ssize_t n = f.shape[0]
    if n < ETH_HLEN + IP_HLEN + 20 or mac.shape[0] != 6:
        return None
    cdef const uint8_t *p = &f[0]
    cdef Py_ssize_t i
    for i in range(6):
        if p[i] != mac[i]:
            return None
    if p[12] != 0x08 or p[13] != 0x00:
        return None
    cdef const uint8_t *ip = p + ETH_HLEN
    if ip[0] != 0x45 or ip[9] != 6 or ip[8] == 0:
        return None
    cdef uint32_t total = get16(ip + 2)
    if total < IP_HLEN + 20 or total > n - ETH_HLEN:
        return None
    if get16(ip + 6) & 0xBFFF:      # reserved bit, MF or an offset
        return None
    if csum_fold(csum_add(ip, IP_HLEN, 0)) != 0xffff:
        return None
    cdef const uint8_t *t = ip + IP_HLEN
    cdef uint32_t tlen = total - IP_HLEN
    cdef uint32_t doff = (t[12] >> 4) * 4
    if doff < 20 or doff > tlen:
        return None
    cdef uint32_t sport = get16(t), dport = get16(t + 2)
    if sport == 0 or dport == 0:
        return None
    if verify_csum:
        if csum_fold(csum_add(t, tlen, csum_add(ip + 12, 8, 6 + <uint64_t>tlen))) != 0xffff:
            return None
    cdef object ts
    if doff == 20:
        ts = None
    elif doff == 32 and t[20] == 1 and t[21] == 1 and t[22] == 8 and t[23] == 10:
        ts = (get32(t + 24), get32(t + 28))
    else:
        ts = False
    return (get32(ip + 12), get32(ip + 16), sport, dport, get32(t + 4),
            get32(t + 8), t[13] & 0x3F, get16(t + 14), doff, ETH_HLEN + total, ts)
