"""Allocation of ranges of the memory file.

Every page of application memory is a page of one memfd (see
docs/architecture.md, "Memory"). This module only hands out and takes back
page-aligned ranges of its offsets; the pages themselves are read and written
through ``_fastpath.MemoryFile``.
"""

import bisect
import errno
import threading

from pyvisor._fastpath import MemoryFile
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.account import MemoryAccount
from pyvisor.sentry.mm.pagecache import PageCache

PAGE = 4096
# Sparse: a page costs host memory only once the application touches it.
DEFAULT_SIZE = 64 << 30
COW_MIN = 64 << 10


class MemoryFileAllocator:
    """First-fit allocator over the memory file's offsets.

    Free ranges are kept sorted and merged; freeing punches a hole so the
    host gets the memory back and the range reads as zero when reused.
    Application pages are charged to ``account`` (mm/account.py) when
    handed out and uncharged when freed; the page cache's are not.
    Lock order: taken last, after any MemoryManager lock.
    """

    def __init__(self, size=DEFAULT_SIZE, account=None):
        self.file = MemoryFile(size)
        self.size = size
        self._lock = threading.Lock()
        self._free_starts = []   # sorted offsets of free ranges
        self._free_len = {}      # offset -> length
        self._bump = 0           # everything from here up is free and untouched
        self._extra_refs = {}    # page index -> owners beyond the first (shared across fork)
        self.allocated = 0
        self.account = MemoryAccount() if account is None else account
        self.page_cache = PageCache(self)
        # fork(2) shares private VMAs this big copy-on-write; None copies all.
        self.cow_min = COW_MIN

    @property
    def fd(self):
        return self.file.fd

    def alloc(self, length, charge=True):
        """A page-aligned range of ``length`` bytes that reads as zero.

        ``charge``: count it against the account (application memory; not
        for the page cache). Raises SyscallError(ENOMEM) when the account or
        the file is full.
        """
        length = (length + PAGE - 1) & ~(PAGE - 1)
        if charge:
            self.account.charge(length)
        try:
            return self._alloc(length)
        except SyscallError:
            if charge:
                self.account.uncharge(length)
            raise

    def _alloc(self, length):
        with self._lock:
            for i, off in enumerate(self._free_starts):
                n = self._free_len[off]
                if n >= length:
                    del self._free_starts[i]
                    del self._free_len[off]
                    if n > length:
                        self._insert_free(off + length, n - length)
                    self.allocated += length
                    return off
            if self._bump + length > self.size:
                raise SyscallError(errno.ENOMEM)
            off = self._bump
            self._bump += length
            self.allocated += length
            return off

    def share(self, off, length):
        """One more owner of [off, off+length) (MAP_SHARED memory across fork)."""
        with self._lock:
            for p in range(off // PAGE, (off + length + PAGE - 1) // PAGE):
                self._extra_refs[p] = self._extra_refs.get(p, 0) + 1

    def free(self, off, length, charged=True):
        """Give back [off, off+length); pages still owned by another mapping
        stay. ``charged``: as the range was allocated."""
        length = (length + PAGE - 1) & ~(PAGE - 1)
        if not length:
            return
        if self._extra_refs:
            runs = self._drop_shared(off, length)
        else:
            runs = [(off, length)]
        for o, n in runs:
            self.file.punch(o, n)
            with self._lock:
                self.allocated -= n
                self._insert_free(o, n)
            if charged:
                self.account.uncharge(n)

    def _drop_shared(self, off, length):
        """The runs of [off, off+length) no one else owns; one reference less on the others."""
        runs = []
        first, last = off // PAGE, (off + length) // PAGE
        with self._lock:
            if last - first > len(self._extra_refs):
                # Walk only the shared pages in range: a big private free stays cheap.
                pages = sorted(p for p in self._extra_refs if first <= p < last)
            else:
                pages = [p for p in range(first, last) if p in self._extra_refs]
            prev = first
            for p in pages:
                refs = self._extra_refs[p]
                if refs == 1:
                    del self._extra_refs[p]
                else:
                    self._extra_refs[p] = refs - 1
                if p > prev:
                    runs.append((prev * PAGE, (p - prev) * PAGE))
                prev = p + 1
            if prev < last:
                runs.append((prev * PAGE, (last - prev) * PAGE))
        return runs

    def _insert_free(self, off, length):
        i = bisect.bisect_left(self._free_starts, off)
        # Merge with the following range.
        if i < len(self._free_starts) and self._free_starts[i] == off + length:
            nxt = self._free_starts.pop(i)
            length += self._free_len.pop(nxt)
        # Merge with the preceding range.
        if i > 0:
            prev = self._free_starts[i - 1]
            if prev + self._free_len[prev] == off:
                self._free_len[prev] += length
                return
        self._free_starts.insert(i, off)
        self._free_len[off] = length
