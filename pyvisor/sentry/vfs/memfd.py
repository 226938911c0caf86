"""memfd_create(2) files and their seals.

Linux background (memfd_create(2), fcntl(2) "File sealing"): a memfd is
an anonymous tmpfs file ("/memfd:NAME (deleted)" in /proc/self/fd) that
behaves as a regular file: read, write, ftruncate, and mmap, where every
MAP_SHARED mapping and the file itself are the same pages. Seals restrict
what may happen to it from then on: F_SEAL_SHRINK, F_SEAL_GROW (size),
F_SEAL_WRITE (no write and no writable shared mapping; refused with EBUSY
while one exists), F_SEAL_FUTURE_WRITE (the same for new writers only),
F_SEAL_SEAL (no more seals); MFD_NOEXEC_SEAL sets F_SEAL_EXEC.

Here a memfd's bytes live in the Sentry's memory file itself (one
contiguous extent, charged to the sandbox's memory account), so a
MAP_SHARED mapping maps the very pages read(2) and write(2) use: two
mappings, a fork's mapping and the file agree with no copying.
N.B. the extent is moved when a write or a mapping needs more of it; a
mapping made before keeps the old pages (Linux keeps one page cache). The
common order (ftruncate, then mmap of the whole file) never moves it.
Bytes past the extent are a hole (ftruncate reserves nothing); a shared
mapping is charged to the memory account when made.
"""

import errno
import threading

from ..errors import SyscallError
from .file import RegularFile
from .inode import Dentry, now_ns
from .mount import Mount, VDentry
from .stat import S_IFREG
from .tmpfs import MAX_FILE_SIZE, TmpFS, TmpfsInode, check_file_size

PAGE = 4096
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE = 0x1, 0x2, 0x4, 0x8
F_SEAL_FUTURE_WRITE, F_SEAL_EXEC = 0x10, 0x20
ALL_SEALS = 0x3F


def _page_up(n):
    return (n + PAGE - 1) & ~(PAGE - 1)


class MemfdInode(TmpfsInode):
    """A memfd's inode: size, seals and an extent of the memory file."""

    def __init__(self, fs, alloc, mode, uid, gid, seals):
        super().__init__(fs, S_IFREG | (mode & 0o7777), uid, gid)
        self.nlink = 0
        self.alloc = alloc          # the memory file's allocator (mm/memfile.py)
        self.lock = threading.Lock()
        self.base = None            # offset of the extent in the memory file
        self.cap = 0                # its length
        self.length = 0
        self.seals = seals

    def size(self):
        return self.length

    def __del__(self):
        if self.base is not None:
            self.alloc.free(self.base, self.cap)

    def _reserve_locked(self, need):
        """Make the extent hold at least `need` bytes (moving the data)."""
        if need <= self.cap:
            return
        cap = _page_up(max(need, self.cap * 2))
        base = self.alloc.alloc(cap)       # ENOMEM past --memory
        if self.base is not None:
            self.alloc.file.copy(base, self.base, min(self.length, self.cap))
            self.alloc.free(self.base, self.cap)
        self.base, self.cap = base, cap

    def extent_for_map(self, offset, length):
        """The memory-file offset of [offset, offset+length) for a shared
        mapping, growing the extent to cover it (mm shares its pages)."""
        with self.lock:
            self._reserve_locked(offset + length)
            return self.base + offset

    def read_at(self, offset, n):
        with self.lock:
            n = max(0, min(n, self.length - offset))
            self.atime_ns = now_ns()
            # Past the extent (a file grown by ftruncate, never written) is a hole.
            held = max(0, min(n, self.cap - offset))
            data = self.alloc.file.read(self.base + offset, held) if held else b""
            return data + bytes(n - held)

    def read_into(self, buf, offset):
        data = self.read_at(offset, len(buf))
        buf[:len(data)] = data
        return len(data)

    def write_at(self, offset, data):
        end = offset + len(data)
        if end > MAX_FILE_SIZE:
            raise SyscallError(errno.EFBIG)
        with self.lock:
            # memfd_create(2): F_SEAL_WRITE / F_SEAL_FUTURE_WRITE refuse
            # write(2); F_SEAL_GROW refuses growing the file.
            if self.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
                raise SyscallError(errno.EPERM)
            if end > self.length and self.seals & F_SEAL_GROW:
                raise SyscallError(errno.EPERM)
            if not data:
                return 0
            self._reserve_locked(end)
            self.alloc.file.write(self.base + offset, data)
            self.length = max(self.length, end)
            self.mtime_ns = self.ctime_ns = now_ns()
            return len(data)

    def truncate(self, size):
        check_file_size(size)
        with self.lock:
            if size < self.length and self.seals & F_SEAL_SHRINK \
                    or size > self.length and self.seals & F_SEAL_GROW:
                raise SyscallError(errno.EPERM)
            kept = min(self.length, self.cap)
            if size < kept:
                # The cut-off bytes read as zero if the file grows again.
                self.alloc.file.zero(self.base + size, kept - size)
            # Growing reserves nothing: the new part is a hole until written
            # or mapped (ftruncate to 1 GiB costs no memory, as on tmpfs).
            self.length = size
            self.mtime_ns = self.ctime_ns = now_ns()

    def setattr(self, mode=None, **kw):
        """chmod under F_SEAL_EXEC may not change an exec bit (EPERM, mm/shmem.c)."""
        if mode is not None and self.seals & F_SEAL_EXEC and (self.mode ^ mode) & 0o111:
            raise SyscallError(errno.EPERM)
        super().setattr(mode=mode, **kw)

    def open(self, t, vd, flags):
        """Opening /proc/PID/fd/N of a memfd: a new description of it."""
        return MemfdFile(vd, flags)

    def add_seals(self, seals, writable_mapped):
        """F_ADD_SEALS (fcntl(2)). `writable_mapped()`: is there a writable
        shared mapping of the file (F_SEAL_WRITE is EBUSY then)?"""
        if seals & ~ALL_SEALS:
            raise SyscallError(errno.EINVAL)
        with self.lock:
            if self.seals & F_SEAL_SEAL:
                raise SyscallError(errno.EPERM)
            if seals & F_SEAL_WRITE and not self.seals & F_SEAL_WRITE and writable_mapped():
                raise SyscallError(errno.EBUSY)
            self.seals |= seals


class MemfdFile(RegularFile):
    """An open memfd: a regular file whose path is "/memfd:NAME (deleted)"."""


class MemfdMaker:
    """Makes memfds: one hidden tmpfs (for st_dev and statfs) per VFS."""

    def __init__(self):
        self.fs = TmpFS(mode=0o1777)
        self.mount = Mount(self.fs, Dentry(b"/", None, self.fs.root), source=b"tmpfs")

    def create(self, alloc, name, flags, mode, uid, gid, seals):
        """A new memfd's open description (O_RDWR|O_LARGEFILE, as Linux)."""
        inode = MemfdInode(self.fs, alloc, mode, uid, gid, seals)
        dentry = Dentry(b"memfd:" + name, self.mount.root, inode)
        dentry.deleted = True      # never in its directory: "/memfd:NAME (deleted)"
        return MemfdFile(VDentry(self.mount, dentry), flags)
