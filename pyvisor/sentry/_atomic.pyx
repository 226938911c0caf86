# cython: language_level=3, boundscheck=False, wraparound=False
"""Atomic operations on 32-bit words of application memory, for futexes.

The application's threads change a futex word with `lock cmpxchg` while the
Sentry serves a futex call on it (PI futexes: the owner TID, FUTEX_WAITERS,
FUTEX_OWNER_DIED). A read followed by a write from Python could undo a
change made in between; these are the same atomic instructions the
application uses, on the Sentry's own mapping of the memory file.

Each function takes a writable memoryview of at least 4 bytes whose start
is 4-byte aligned (the futex word, from MemoryFile.view).
"""

cdef extern from *:
    """
    static inline unsigned int pv_cas32(unsigned int *p, unsigned int expected,
                                        unsigned int desired) {
        __atomic_compare_exchange_n(p, &expected, desired, 0,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        return expected;
    }
    static inline unsigned int pv_load32(unsigned int *p) {
        return __atomic_load_n(p, __ATOMIC_SEQ_CST);
    }
    """
    unsigned int pv_cas32(unsigned int *p, unsigned int expected, unsigned int desired) nogil
    unsigned int pv_load32(unsigned int *p) nogil


cdef unsigned int *_word(unsigned char[::1] view) except NULL:
    if view.shape[0] < 4:
        raise ValueError("a futex word needs 4 bytes")
    cdef unsigned int *p = <unsigned int *>&view[0]
    if <size_t>p & 3:
        raise ValueError("a futex word must be 4-byte aligned")
    return p


def cas32(unsigned char[::1] view, unsigned int expected, unsigned int desired):
    """Atomically: if the word is `expected`, make it `desired`. Returns the
    value found (== expected when the swap happened)."""
    return pv_cas32(_word(view), expected, desired)


def load32(unsigned char[::1] view):
    """The word's current value (an atomic load)."""
    return pv_load32(_word(view))
