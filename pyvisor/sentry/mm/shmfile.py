"""The pages of a regular file mapped MAP_SHARED.

Linux background (mmap(2), msync(2)): every MAP_SHARED mapping of a file,
in any process, maps the file's page-cache pages, so stores through one
mapping are seen by every other and by read(2), and write(2) is seen by
every mapping. The kernel writes the dirty pages back to the file's
storage on msync(MS_SYNC), fsync(2) and in its own time; munmap does not
lose them.

Here, while a file (tmpfs, overlay, gofer-backed: any inode with
``read_into``/``write_at``/``size``) is mapped shared, its bytes
[0, ``cap``) live in one extent of the memory file: a SharedFile. The
file's holes (``data_extents``: a tmpfs file's) are not copied in and
writeback reads only the extent's pages that hold data (SEEK_DATA), so
mapping a little of a big sparse file costs a little. Every
shared VMA of the file maps that extent (``Vma.shm``); the file's
descriptions read the extent for the bytes it covers and write(2) goes
both to the file and to the extent (vfs/file.py RegularFile), so the
extent is always the file's current contents. Pages the mappings changed
go back to the file (``writeback``: the runs that differ from what the file
holds) on msync, fsync, munmap of a VMA and when the last mapping goes
(exit included); after that the extent is freed. The registry is keyed by
(st_dev, st_ino), so hard links and every process meet on one SharedFile.

N.B. the extent is reserved with room to grow (``_room``); a mapping that
reaches past it moves the extent, and mappings made before keep the old
pages (as a memfd's). The reservation is sparse and not charged to
``--memory``: the file's own storage already is.
"""

import os
import threading
import weakref

from pyvisor.sentry.errors import SyscallError

PAGE = 4096
MIN_ROOM = 8 << 20


def _page_up(n):
    return (n + PAGE - 1) & ~(PAGE - 1)


def _room(need):
    return max(MIN_ROOM, _page_up(need) * 2)


def data_runs(fd, lo, hi):
    """(start, end) runs of [lo, hi) of host file ``fd`` that hold pages
    (SEEK_DATA/SEEK_HOLE): the rest reads as zero and holds no memory."""
    pos = lo
    while pos < hi:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:          # ENXIO: no data after pos
            return
        if data >= hi:
            return
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), hi)
        yield data, hole
        pos = hole


class SharedFile:
    """A file's bytes [0, cap) at memory-file offset ``base``, shared by ``refs`` VMAs."""

    def __init__(self, registry, alloc, key, inode, base, cap):
        self.registry = registry
        self.key = key
        self.inode = inode
        self.alloc = alloc
        self.file = alloc.file
        self.base = base
        self.cap = cap
        self.refs = 0
        self.lock = threading.RLock()     # serialises write(2), truncate and writeback
        self.mms = weakref.WeakSet()      # address spaces that map it (MemoryManager)

    # -- filling and writing back ------------------------------------------

    def _fill(self, lo, hi):
        """Copy the file's bytes [lo, hi) into the extent, which reads as
        zero there: its holes and the bytes past EOF are left so."""
        for lo, hi in self.inode.data_extents(lo, hi):
            pos = lo
            while pos < hi:
                view = self.file.view(self.base + pos, min(hi - pos, 1 << 20))
                got = self.inode.read_into(view, pos)
                if got <= 0:
                    break
                pos += got

    def _clear(self, lo, hi):
        """Extent bytes [lo, hi) read as zero; whole pages are given back."""
        a, b = self.base + lo, self.base + hi
        pa, pb = _page_up(a), b & ~(PAGE - 1)
        if pa >= pb:
            self.file.zero(a, b - a)
            return
        self.file.zero(a, pa - a)
        self.file.punch(pa, pb - pa)
        self.file.zero(pb, b - pb)

    def writeback(self, lo=0, hi=None):
        """Write the pages of [lo, hi) that differ from the file back to it
        (only up to EOF: a mapping does not extend its file). Pages of the
        extent never touched are the file's holes: they are skipped."""
        with self.lock:
            hi = min(self.cap if hi is None else hi, self.cap, self.inode.size())
            for a, b in list(data_runs(self.file.fd, self.base + lo, self.base + hi)):
                pos, end = a - self.base, b - self.base
                while pos < end:
                    n = min(end - pos, 1 << 20)
                    mine = self.file.read(self.base + pos, n)
                    theirs = self.inode.read_at(pos, n)
                    if mine != theirs:
                        self._write_runs(pos, mine, theirs)
                    pos += n

    def _write_runs(self, at, mine, theirs):
        """Write back the page runs where ``mine`` differs from ``theirs``."""
        n = len(mine)
        p = 0
        while p < n:
            q = min(p + PAGE, n)
            if mine[p:q] == theirs[p:q]:
                p = q
                continue
            start = p
            while q < n and mine[q:q + PAGE] != theirs[q:q + PAGE]:
                q = min(q + PAGE, n)
            self.inode.write_at(at + start, mine[start:q])
            p = q

    # -- the file's I/O while mapped -----------------------------------------

    def read(self, offset, n):
        """read(2): the extent for the bytes it covers, the file after."""
        with self.lock:
            n = max(0, min(n, self.inode.size() - offset))
            if n <= 0:
                return b""
            if offset >= self.cap:
                return self.inode.read_at(offset, n)
            head = min(n, self.cap - offset)
            data = self.file.read(self.base + offset, head)
            if head < n:
                data += self.inode.read_at(offset + head, n - head)
            return data

    def _resized(self, old):
        """Pages past EOF fault with SIGBUS (mm.py ``_eof_at``): tell every
        address space mapping the file when EOF moved to another page.
        Precondition: ``self.lock`` not held (each mm's lock is taken)."""
        if _page_up(old) != _page_up(self.inode.size()):
            for mm in list(self.mms):
                mm.refresh_shared(self)

    def write(self, offset, data):
        """write(2): to the file, then into the extent, so mappings see it."""
        old = self.inode.size()
        n = self._write(offset, data)
        self._resized(old)
        return n

    def _write(self, offset, data):
        with self.lock:
            old = self.inode.size()
            n = self.inode.write_at(offset, data)
            if offset > old and old < self.cap:
                # A hole between the old EOF and the write reads as zero.
                self._clear(old, min(offset, self.cap))
            if n and offset < self.cap:
                k = min(n, self.cap - offset)
                self.file.write(self.base + offset, memoryview(data)[:k])
            return n

    def truncate(self, size):
        """ftruncate(2): bytes past the new EOF read as zero if it grows
        again; pages wholly past it give SIGBUS in every mapping."""
        with self.lock:
            old = self.inode.size()
            self.inode.truncate(size)
            cut = min(old, size)
            if cut < self.cap:
                self._clear(cut, self.cap)
        self._resized(old)

    def fsync(self):
        self.writeback()
        return self.inode.fsync()

    # -- mappings --------------------------------------------------------------

    def ref(self):
        with self.registry.lock:
            self.refs += 1

    def unmapped(self, offset, length):
        """A VMA over file bytes [offset, offset+length) went: write its pages
        back; the last one also frees the extent."""
        with self.registry.lock:
            self.refs -= 1
            last = self.refs == 0
            if last and self.registry.files.get(self.key) is self:
                del self.registry.files[self.key]
            try:
                if last:
                    self.writeback()
                else:
                    self.writeback(offset, offset + length)
            except (SyscallError, OSError):
                # munmap and exit do not fail: as Linux's background
                # writeback, a lost page is reported to no one here (N.B.
                # Linux reports it at the next fsync).
                pass
            finally:
                if last:
                    self.alloc.free(self.base, self.cap, charged=False)


class SharedFiles:
    """Every SharedFile, by (st_dev, st_ino): st_dev is unique in the
    process (vfs/inode.py Filesystem), so one registry serves every kernel."""

    def __init__(self):
        self.files = {}
        self.lock = threading.RLock()

    def get(self, inode):
        """The SharedFile of ``inode`` if it is mapped shared, else None."""
        if not self.files:
            return None
        return self.files.get((inode.fs.dev, inode.ino))

    def for_map(self, alloc, inode, offset, length):
        """(SharedFile, memory-file offset of file byte ``offset``) for a new
        shared mapping of [offset, offset+length), one reference taken."""
        key = (inode.fs.dev, inode.ino)
        need = offset + length
        with self.lock:
            sf = self.files.get(key)
            if sf is not None and need > sf.cap:
                with sf.lock:
                    # Move to a bigger extent (see the module's N.B.); the old
                    # one stays with the mappings that have it.
                    cap = _room(need)
                    moved = SharedFile(self, alloc, key, inode, alloc.alloc(cap, charge=False), cap)
                    for a, b in list(data_runs(alloc.fd, sf.base, sf.base + sf.cap)):
                        alloc.file.copy(moved.base + (a - sf.base), a, b - a)
                    moved._fill(sf.cap, cap)
                    sf.key = None
                    sf = moved
                    self.files[key] = sf
            if sf is None:
                # The extent spans the whole file (a reservation: only the
                # pages written hold memory), so a later mapping of any part
                # of it shares these pages; the file's holes are not copied.
                cap = _room(max(need, inode.size()))
                sf = SharedFile(self, alloc, key, inode, alloc.alloc(cap, charge=False), cap)
                sf._fill(0, cap)
                self.files[key] = sf
            sf.refs += 1
            return sf, sf.base + offset


SHARED = SharedFiles()


def truncate(inode, size):
    """truncate(2)/O_TRUNC by path: through the SharedFile if the file is mapped shared."""
    shm = SHARED.get(inode)
    if shm is not None:
        shm.truncate(size)
    else:
        inode.truncate(size)
