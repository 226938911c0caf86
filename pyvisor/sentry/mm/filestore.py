"""A host file that holds in-sandbox file data: ``--overlay file``.

gVisor's overlay2 can keep its upper layer's file data in a host file
(the "self" / "dir=" filestore) instead of the Sentry's memory; so can we.
The file is opened before the Sentry confines itself (it cannot open a host
path afterwards, invariant 4) with O_TMPFILE, so it never has a name:
nothing is left on the host when the sandbox ends, however it ends (even
SIGKILL). Where O_TMPFILE is not supported (some file systems) it is
created with a random name and unlinked at once.

Its offsets are handed out in blocks of BLOCK bytes, one at a time, to the
data of tmpfs files (vfs/tmpfs.py, ``StoredData``); the data is moved with
pread/pwrite (allowed by the Sentry's seccomp filter on an fd it holds), so
it sits in the host's page cache, which the host can write back and reclaim,
and never in the Sentry's resident memory. A freed block is punched out of
the file (the disk space goes back) and reads as zero when reused.

Why not mmap it like the memory file: pages of a shared file mapping count
in the Sentry's RSS as they are touched and are reclaimed only under host
memory pressure; pread/pwrite copy through a bounded buffer. A mapping of
such a file by the application goes through the page cache (pagecache.py),
as every file mapping does. docs/architecture.md, "Overlay", has the
measurements.
"""

import collections
import ctypes
import errno
import os
import threading

from pyvisor.sentry.errors import SyscallError

BLOCK = 256 << 10
# Freed blocks wait, unpunched, until this many are freed; then they are
# punched in as few fallocate(2) calls as their offsets allow (a program that
# creates and deletes small files, as sqlite does its journal, frees one block
# per file). At most this much disk is held by freed data.
PENDING_MAX = 64
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long)


def open_unlinked(path):
    """A new file in directory ``path`` that has no name.

    O_TMPFILE; else made with a random name and unlinked at once.
    """
    try:
        return os.open(path, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
    for _ in range(100):
        name = os.path.join(path, ".pyvisor-overlay-%s" % os.urandom(8).hex())
        try:
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        os.unlink(name)
        return fd
    raise OSError(errno.EEXIST, "no free name", path)


class FileStore:
    """Blocks of one unlinked host file; the host's free space is its bound.

    ``fd``: the file, opened by ``open_store`` (or a test). Lock order:
    taken last, inside a tmpfs's lock. ``free`` takes no lock that can be
    held already: a file's last reference may go (and free its blocks) in a
    finalizer, in whatever thread the collector runs, even one inside
    ``alloc``; freed blocks queue in a deque and whoever holds the lock next
    punches them.
    """

    def __init__(self, fd, path=None):
        self.fd = fd
        self.path = path
        self._lock = threading.Lock()
        self._free = []          # offsets of freed blocks (punched: they read as zero)
        self._pending = collections.deque()     # freed, not yet punched: not reusable yet
        self._bump = 0
        self._handed = 0         # blocks handed out ...
        self._returned = 0       # ... and given back (approximate under races: statistics)

    @property
    def blocks(self):
        """Blocks in use."""
        return self._handed - self._returned

    def available(self):
        """Bytes the host file system can still give (the default bound of the upper layer)."""
        st = os.fstatvfs(self.fd)
        return st.f_bavail * st.f_frsize

    def alloc(self):
        with self._lock:
            self._handed += 1
            if self._free:
                return self._free.pop()
            off = self._bump
            self._bump += BLOCK
            return off

    def free(self, offs):
        self._returned += len(offs)
        self._pending.extend(offs)
        if len(self._pending) >= PENDING_MAX and self._lock.acquire(blocking=False):
            try:
                self._flush_locked()
            finally:
                self._lock.release()

    def flush(self):
        """Punch every freed block now (the disk goes back; they become reusable)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self):
        offs = []
        while True:
            try:
                offs.append(self._pending.popleft())
            except IndexError:
                break
        offs.sort()
        i = 0
        while i < len(offs):
            j = i + 1
            while j < len(offs) and offs[j] == offs[j - 1] + BLOCK:
                j += 1
            self.punch(offs[i], (j - i) * BLOCK)
            i = j
        self._free.extend(reversed(offs))

    def punch(self, off, n):
        """[off, off+n) reads as zero and holds no disk."""
        if n > 0 and _libc.fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE,
                                     off, n) != 0:
            self.pwrite(bytes(n), off, give_back=False)     # called with the lock held

    def preadinto(self, buf, off):
        """Fill ``buf`` from ``off``; past the host file's end reads as zero."""
        n = len(buf)
        got = 0
        while got < n:
            try:
                r = os.preadv(self.fd, [buf[got:]], off + got)
            except OSError as e:
                raise SyscallError(e.errno) from None
            if r <= 0:
                buf[got:] = bytes(n - got)
                break
            got += r

    def pwrite(self, data, off, give_back=True):
        """Write all of ``data`` at ``off``; on a full host disk, punch the freed
        blocks first (``give_back``) and try again, then raise ENOSPC."""
        n = len(data)
        done = 0
        while done < n:
            try:
                done += os.pwrite(self.fd, data if not done else memoryview(data)[done:],
                                  off + done)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT) and give_back and self._pending:
                    self.flush()        # the host disk is full: give back what is freed
                    continue
                raise SyscallError(e.errno) from None


def open_store(path):
    """A FileStore in directory ``path``.

    Raises OSError (before confinement: the caller reports it).
    """
    return FileStore(open_unlinked(path), path)


class StoredData:
    """The bytes of one file, in blocks of a FileStore (the tmpfs ``data`` of ``--overlay file``).

    Same contract as HeapData (vfs/tmpfs.py): ``len`` is the bytes held;
    a block not yet written reads as zero. Callers hold the tmpfs lock.
    """

    __slots__ = ("store", "blocks", "held")

    def __init__(self, store):
        self.store = store
        self.blocks = {}         # block index in the file -> offset in the store
        self.held = 0

    def __len__(self):
        return self.held

    @property
    def used(self):
        """The bytes charged to the file system's space: the size held."""
        return self.held

    def cost(self, offset, n):
        """The bytes write(offset, n bytes) adds to ``used``."""
        return max(0, offset + n - self.held)

    def pages(self):
        """The 4 KiB pages of the size held (st_blocks, as before holes were kept)."""
        return (self.held + 4095) // 4096

    def extents(self, lo, hi):
        """(start, end) runs of [lo, hi) in blocks of the store (others read as zero)."""
        runs = []
        for i in sorted(i for i in self.blocks if i * BLOCK < hi and (i + 1) * BLOCK > lo):
            s, e = max(lo, i * BLOCK), min(hi, (i + 1) * BLOCK)
            if runs and runs[-1][1] == s:
                runs[-1][1] = e
            else:
                runs.append([s, e])
        return [tuple(r) for r in runs]

    def _runs(self, offset, n, create):
        """(store offset or None, start in [0, n), length) covering [offset, offset+n),
        contiguous store ranges merged."""
        runs = []
        pos = offset
        end = offset + n
        while pos < end:
            i, within = divmod(pos, BLOCK)
            take = min(BLOCK - within, end - pos)
            off = self.blocks.get(i)
            if off is None and create:
                off = self.blocks[i] = self.store.alloc()
            at = None if off is None else off + within
            if runs and runs[-1][0] is not None and at is not None and \
                    runs[-1][0] + runs[-1][2] == at:
                runs[-1][2] += take
            elif runs and runs[-1][0] is None and at is None:
                runs[-1][2] += take
            else:
                runs.append([at, pos - offset, take])
            pos += take
        return runs

    def read(self, offset, n):
        """The held bytes [offset, offset+n) as bytes. Precondition: offset+n <= held."""
        i, within = divmod(offset, BLOCK)
        if within + n <= BLOCK:             # one block: one pread, one copy
            off = self.blocks.get(i)
            if off is None:
                return bytes(n)
            try:
                data = os.pread(self.store.fd, n, off + within)
            except OSError as e:
                raise SyscallError(e.errno) from None
            return data if len(data) == n else data + bytes(n - len(data))
        buf = bytearray(n)
        self.read_into(buf, offset, n)
        return bytes(buf)

    def read_into(self, buf, offset, n):
        """Copy the held bytes [offset, offset+n) into buf[:n]. Precondition: offset+n <= held."""
        with memoryview(buf) as mv:
            for at, start, length in self._runs(offset, n, False):
                part = mv[start:start + length]
                if at is None:
                    part[:] = bytes(length)
                else:
                    self.store.preadinto(part, at)

    def write(self, offset, data):
        """Put ``data`` at ``offset``; the held size grows to its end if it was below."""
        held = self.held
        try:
            self._write(offset, data)
        except SyscallError:
            # The host's disk is full (ENOSPC) or failing: past the held
            # size nothing may stay written, so that it reads as zero later.
            self.held = max(held, offset + len(data))
            self.shrink(held)
            raise
        self.held = max(held, offset + len(data))

    def _write(self, offset, data):
        i, within = divmod(offset, BLOCK)
        if within + len(data) <= BLOCK:     # one block: no run list
            off = self.blocks.get(i)
            if off is None:
                off = self.blocks[i] = self.store.alloc()
            self.store.pwrite(data, off + within)
            return
        with memoryview(data) as mv:
            for at, start, length in self._runs(offset, len(mv), True):
                self.store.pwrite(mv[start:start + length], at)

    def shrink(self, size):
        """Hold only [0, size): later blocks go back to the store, the kept tail reads as zero."""
        if size >= self.held:
            return
        first_gone = (size + BLOCK - 1) // BLOCK
        gone = [self.blocks.pop(i) for i in [i for i in self.blocks if i >= first_gone]]
        if gone:
            self.store.free(gone)
        within = size % BLOCK
        if within:
            off = self.blocks.get(size // BLOCK)
            if off is not None:
                self.store.punch(off + within, min(BLOCK, self.held - size + within) - within)
        self.held = size

    def release(self):
        """The file is gone: every block goes back."""
        if self.blocks:
            self.store.free(list(self.blocks.values()))
            self.blocks.clear()
        self.held = 0
