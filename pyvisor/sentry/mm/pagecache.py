"""A page cache for files mapped into address spaces.

Linux background: mapping a file does not copy it. The file's pages sit in
the page cache once, and every process that maps the file (every program
that links libc) points its page tables at those same pages; a private
mapping copies a page only when it is written.

Here the cache holds a file's contents in one range of the memory file,
read from the file (through the Gofer) once, in chunks, as mappings first
need them. A read-only private mapping then points its VMA straight at the
cached pages and holds a reference on the entry (``Vma.cow``); a writable
one starts as a copy made inside the memory file. An exec of a
dynamically linked program therefore reads libc from the Gofer only the
first time, and fork does not copy text it can share.

Identity: a cached file is keyed by (dev, ino, size, mtime, ctime). Writes
inside the sandbox change mtime and ctime, and ctime cannot be set back by
the application, so changed contents never match an old entry; a stale
entry is dropped when a newer version of the same file (dev, ino) is
cached: a file the host changed (shared file access, sentry/vfs/goferfs.py)
is read again, and its old pages go once unmapped. Least recently used entries leave the cache beyond
``limit`` bytes; their pages are freed when the last mapping of them goes.
"""

import collections
import threading

PAGE = 4096
CHUNK = 64 << 10          # fill granularity
MAX_FILE = 1 << 30        # bigger files are mapped by copying, uncached
S_IFMT, S_IFREG = 0o170000, 0o100000


def _key(st):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class SharedPages:
    """[off, off+size) of the memory file, mapped read-only by ``refs`` VMAs (``Vma.cow``).

    Whoever writes first gets a copy; the pages go back to the allocator
    when the last VMA lets go. Anonymous memory after a copy-on-write fork
    is one; a page-cache entry is another, which also outlives its VMAs
    while it stays cached.
    """

    __slots__ = ("alloc", "off", "size", "refs", "_lock")
    charged = True      # application memory (mm/account.py); the page cache's is not

    def __init__(self, alloc, off, size, refs=0):
        self.alloc = alloc
        self.off = off
        self.size = size
        self.refs = refs
        self._lock = threading.Lock()

    def ref(self):
        with self._lock:
            self.refs += 1

    def unref(self):
        with self._lock:
            self.refs -= 1
            if self.refs or not self._unowned():
                return
        self.alloc.free(self.off, self.size, charged=self.charged)

    def _unowned(self):
        return True

    def adopt(self, off, size):
        """Take the pages over, uncopied, when the caller's VMA is their only user and spans them all."""
        with self._lock:
            if self.refs != 1 or off != self.off or size != self.size or not self._unowned():
                return False
            self.refs = 0
            return True


class Entry(SharedPages):
    """One cached file: its pages at memory-file offset ``off``."""

    __slots__ = ("filled", "evicted")
    charged = False

    def __init__(self, cache, off, size):
        super().__init__(cache.alloc, off, size)
        self.filled = bytearray((size + CHUNK - 1) // CHUNK)
        self.evicted = False

    def _unowned(self):
        return self.evicted


class PageCache:
    """File contents held once in the memory file, shared by every mapping of them."""

    def __init__(self, allocator, limit=256 << 20):
        self.alloc = allocator
        self.file = allocator.file
        self.limit = limit
        self.cached = 0
        self._entries = collections.OrderedDict()
        self._latest = {}         # (dev, ino) -> the key of its newest cached version
        self._lock = threading.Lock()

    def cacheable(self, st):
        return st.st_mode & S_IFMT == S_IFREG and 0 < st.st_size <= MAX_FILE

    def lookup(self, f, st, offset, nbytes):
        """(entry, memory-file offset of the file's byte ``offset``), with one reference taken.

        [offset, offset+nbytes) is filled. Precondition: ``cacheable(st)``,
        ``offset`` page-aligned and below the size. Short reads (the file
        shrank behind our back) leave zeros, as a mapping past EOF reads.
        The caller drops the reference with ``entry.unref()``.
        """
        key = _key(st)
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                old = self._entries.pop(self._latest.get(key[:2]), None)
                if old is not None:
                    self._drop(old)
                e = Entry(self, self.alloc.alloc(st.st_size, charge=False), st.st_size)
                self._entries[key] = e
                self._latest[key[:2]] = key
                self.cached += (e.size + PAGE - 1) & ~(PAGE - 1)
                self._evict(keep=key)
            else:
                self._entries.move_to_end(key)
            end = min(offset + nbytes, e.size)
            for c in range(offset // CHUNK, (end + CHUNK - 1) // CHUNK):
                if not e.filled[c]:
                    self._fill(e, f, c)
            e.ref()
            return e, e.off + offset

    def _fill(self, e, f, c):
        lo = c * CHUNK
        n = min(CHUNK, e.size - lo)
        view = self.file.view(e.off + lo, n)
        got = 0
        while got < n:
            r = f.preadinto(view[got:], lo + got)
            if r <= 0:
                break
            got += r
        e.filled[c] = 1

    def _evict(self, keep):
        while self.cached > self.limit and len(self._entries) > 1:
            key, e = next(iter(self._entries.items()))
            if key == keep:
                self._entries.move_to_end(key)
                continue
            del self._entries[key]
            if self._latest.get(key[:2]) == key:
                del self._latest[key[:2]]
            self._drop(e)

    def _drop(self, e):
        """Out of the cache; the pages go once no mapping uses them. Precondition: lock held."""
        self.cached -= (e.size + PAGE - 1) & ~(PAGE - 1)
        with e._lock:
            e.evicted = True
            free = not e.refs
        if free:
            self.alloc.free(e.off, e.size, charged=False)

    def clear(self):
        """Drop every entry (the sandbox is stopping, or memory is short)."""
        with self._lock:
            self._latest.clear()
            while self._entries:
                _, e = self._entries.popitem()
                self._drop(e)
