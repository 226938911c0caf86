# cython: language_level=3
"""Wire-format helpers shared by netstack's C modules (_checksum.pyx,
_frames.pyx): the internet checksum's sum (RFC 1071) and big-endian
integers, on raw pointers. Callers check bounds; nothing here does.

The checksum of p[0:n] (the rule: _checksum.pyx's docstring) is
``(~csum_fold(csum_add(p, n, 0))) & 0xffff``; data that carries a correct
checksum folds to 0xffff.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef inline uint64_t csum_add(const uint8_t *p, Py_ssize_t n, uint64_t acc) noexcept nogil:
    """acc plus the 16-bit big-endian words of p[0:n], unfolded."""
    cdef Py_ssize_t i = 0
    # Four 16-bit words per step; the 64-bit accumulator cannot overflow for
    # any buffer smaller than 2**47 bytes.
    while i + 8 <= n:
        acc += ((<uint64_t>p[i] << 8) | p[i + 1]) + \
               ((<uint64_t>p[i + 2] << 8) | p[i + 3]) + \
               ((<uint64_t>p[i + 4] << 8) | p[i + 5]) + \
               ((<uint64_t>p[i + 6] << 8) | p[i + 7])
        i += 8
    while i + 2 <= n:
        acc += (<uint64_t>p[i] << 8) | p[i + 1]
        i += 2
    if i < n:
        acc += <uint64_t>p[i] << 8
    return acc


cdef inline uint32_t csum_fold(uint64_t acc) noexcept nogil:
    """acc folded to 16 bits (end-around carry), not complemented."""
    while acc >> 16:
        acc = (acc & 0xffff) + (acc >> 16)
    return <uint32_t>acc


cdef inline void put16(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 8) & 0xff
    p[1] = v & 0xff


cdef inline void put32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xff
    p[1] = (v >> 16) & 0xff
    p[2] = (v >> 8) & 0xff
    p[3] = v & 0xff


cdef inline uint32_t get16(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef inline uint32_t get32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
