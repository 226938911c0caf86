"""Open file descriptions (Linux's `struct file`).

A FileDescription is what an fd refers to: the file, the offset, the status
flags (O_APPEND, O_NONBLOCK, the access mode). dup'd fds and fork share one
description, so the offset is shared; `offset_lock` serialises read/write/
lseek on it as Linux's f_pos_lock does.

Lifetime: descriptions are reference counted by fd-table entries
(`incref`/`decref`); when the last reference goes `release()` runs, which
is how a pipe learns that its last writer closed.
"""

import errno
import os
import threading

from ..errors import SyscallError
from ..mm.shmfile import SHARED
from pyvisor.abi.flags import IN_ACCESS, IN_CLOSE_NOWRITE, IN_CLOSE_WRITE, IN_MODIFY
from .fsnotify import ACTIVE as WATCHED, file_event, inode_gone
from .mount import vd_path
from .stat import DT_DIR, Stat, StatFs, pack_dirent64

O_ACCMODE = 3
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC = os.O_CREAT, os.O_EXCL, os.O_NOCTTY, os.O_TRUNC
O_APPEND, O_NONBLOCK, O_DIRECTORY, O_NOFOLLOW = os.O_APPEND, os.O_NONBLOCK, os.O_DIRECTORY, os.O_NOFOLLOW
O_CLOEXEC, O_PATH, O_TMPFILE = os.O_CLOEXEC, os.O_PATH, 0o20200000
O_LARGEFILE, O_NOATIME, O_DSYNC, O_SYNC, O_DIRECT, O_ASYNC = (
    0o100000, os.O_NOATIME, os.O_DSYNC, os.O_SYNC, os.O_DIRECT, os.O_ASYNC)

# Flags open(2) keeps in the description (what F_GETFL may report).
STATUS_KEEP = (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC | O_DIRECT | O_ASYNC
               | O_NOATIME | O_LARGEFILE | O_PATH | O_DIRECTORY | O_NOFOLLOW)
# Flags F_SETFL may change (fs/fcntl.c SETFL_MASK).
SETFL_MASK = O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME

SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4
MAX_OFFSET = (1 << 63) - 1
PAGE = 4096

FIONREAD = 0x541B
ANON_INODE_FS_MAGIC = 0x09041934
_ANON_DEV = 0x0E


class FileDescription:
    """Base open file: flags, offset, refcount; operations default to the
    errno Linux gives for a file that lacks them."""

    seekable = True
    reads_empty = False   # a 0-byte read(2) reaches the file (else it returns 0 at once)
    lock_table = None     # the LockTable holding a flock or OFD lock of ours, if any

    def __init__(self, vd, flags):
        self.vd = vd                      # VDentry, or None for anonymous files
        if vd is not None:
            vd.dentry.inode.nopen += 1
        self.flags = flags & STATUS_KEEP
        self.offset = 0
        self.offset_lock = threading.RLock()
        self._refs = 1
        self._ref_lock = threading.Lock()

    # --- lifetime ---------------------------------------------------------

    def incref(self):
        with self._ref_lock:
            self._refs += 1
        return self

    def decref(self):
        with self._ref_lock:
            self._refs -= 1
            last = self._refs == 0
        if last:
            if self.lock_table is not None:
                self.lock_table.release_description(self)
            if self.vd is not None:
                inode = self.vd.dentry.inode
                inode.nopen -= 1
                if WATCHED[0]:
                    if not self.flags & O_PATH:
                        file_event(self, IN_CLOSE_WRITE if self.writable else IN_CLOSE_NOWRITE)
                    if inode.delete_pending and not inode.nopen:
                        inode_gone(inode)
            self.release()

    def release(self):
        """Called once, when the last reference is dropped."""

    # --- flags ------------------------------------------------------------

    @property
    def readable(self):
        return not self.flags & O_PATH and self.flags & O_ACCMODE in (O_RDONLY, O_RDWR)

    @property
    def writable(self):
        return not self.flags & O_PATH and self.flags & O_ACCMODE in (O_WRONLY, O_RDWR)

    @property
    def nonblocking(self):
        return bool(self.flags & O_NONBLOCK)

    def set_status_flags(self, flags):
        """F_SETFL: only SETFL_MASK bits change."""
        self.flags = (self.flags & ~SETFL_MASK) | (flags & SETFL_MASK)

    def check_readable(self):
        if not self.readable:
            raise SyscallError(errno.EBADF)

    def check_writable(self):
        if not self.writable:
            raise SyscallError(errno.EBADF)

    # --- I/O (offset-based files override pread/pwrite only) --------------

    def read(self, count):
        """Read at the file offset and advance it. Implements read(2)."""
        self.check_readable()
        if not self.seekable:
            return self.pread(count, -1)
        with self.offset_lock:
            data = self.pread(count, self.offset)
            self.offset += len(data)
            return data

    def write(self, data):
        """Write at the file offset (or the end, with O_APPEND). Implements write(2)."""
        self.check_writable()
        if not self.seekable:
            return self.pwrite(data, -1)
        with self.offset_lock:
            if self.flags & O_APPEND:
                self.offset = self.stat().st_size
            n = self.pwrite(data, self.offset)
            self.offset += n
            return n

    def pread(self, count, offset):
        """Read up to `count` bytes at `offset` without touching the file offset."""
        raise SyscallError(errno.EINVAL)

    def pwrite(self, data, offset):
        raise SyscallError(errno.EINVAL)

    def preadinto(self, buf, offset):
        """Fill `buf` (a writable memoryview) from `offset`; bytes copied."""
        data = self.pread(len(buf), offset)
        buf[:len(data)] = data
        return len(data)

    def lseek(self, offset, whence):
        """Implements lseek(2)."""
        if not self.seekable:
            raise SyscallError(errno.ESPIPE)
        with self.offset_lock:
            if whence == SEEK_SET:
                new = offset
            elif whence == SEEK_CUR:
                new = self.offset + offset
            elif whence == SEEK_END:
                new = self.stat().st_size + offset
            elif whence in (SEEK_DATA, SEEK_HOLE):
                size = self.stat().st_size
                if offset < 0 or offset >= size:
                    raise SyscallError(errno.ENXIO)
                new = self._seek_data(offset, whence, size)
            else:
                raise SyscallError(errno.EINVAL)
            if new < 0 or new > MAX_OFFSET:
                raise SyscallError(errno.EINVAL)
            self.offset = new
            return new

    def _seek_data(self, offset, whence, size):
        """lseek(2) SEEK_DATA/SEEK_HOLE: the whole file is data, as the man
        page allows a file system that does not track holes."""
        return offset if whence == SEEK_DATA else size

    def getdents(self, size, pack=None):
        raise SyscallError(errno.ENOTDIR)

    def truncate(self, size):
        raise SyscallError(errno.EINVAL)

    def fsync(self):
        return 0

    def ioctl(self, t, request, arg):
        """File-specific ioctl; the syscall layer handled the generic ones."""
        raise SyscallError(errno.ENOTTY)

    def nread(self):
        """Bytes readable without blocking, for FIONREAD."""
        raise SyscallError(errno.ENOTTY)

    # --- identity ---------------------------------------------------------

    # Files without a path (sockets, epoll, eventfd, ...) are Linux
    # "anonymous inodes": subclasses set `anon_name`, and get a plausible
    # stat/statfs/path from these defaults until they say more.
    anon_name = b"[pyvisor]"

    def stat(self):
        if self.vd is None:
            return Stat(st_mode=0o600, st_ino=id(self) & 0xFFFFFFFF, st_dev=_ANON_DEV,
                        st_blksize=4096)
        return self.vd.inode.stat()

    def statfs(self):
        if self.vd is None:
            return StatFs(f_type=ANON_INODE_FS_MAGIC)
        return self.vd.inode.fs.statfs()

    def path(self):
        """Absolute path, as /proc/self/fd shows it ("anon_inode:[name]"
        for a file without one)."""
        if self.vd is None:
            return b"anon_inode:" + self.anon_name
        return vd_path(self.vd)

    def reopen(self, t, flags):
        """A new description of the same object, for opening /proc/self/fd/N
        on a file that has no path (pipes, host stdio)."""
        raise SyscallError(errno.ENXIO)


class InodeFile(FileDescription):
    """A description whose data lives in an inode (read_at/write_at)."""

    @property
    def inode(self):
        return self.vd.inode

    def stat(self):
        return self.inode.stat()


class RegularFile(InodeFile):
    """A regular file on tmpfs, overlay or the gofer fs. While it is mapped
    MAP_SHARED its I/O goes through its SharedFile (mm/shmfile.py), whose
    pages the mappings share."""

    def pread(self, count, offset):
        self.check_readable()
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        shm = SHARED.get(self.inode)
        data = shm.read(offset, count) if shm is not None else self.inode.read_at(offset, count)
        if data and WATCHED[0]:
            file_event(self, IN_ACCESS)
        return data

    def pwrite(self, data, offset):
        self.check_writable()
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        if offset + len(data) > MAX_OFFSET:
            raise SyscallError(errno.EFBIG)
        shm = SHARED.get(self.inode)
        n = shm.write(offset, data) if shm is not None else self.inode.write_at(offset, data)
        if n and WATCHED[0]:
            file_event(self, IN_MODIFY)
        return n

    def _seek_data(self, offset, whence, size):
        """lseek(2): SEEK_DATA is the next byte at or after ``offset`` in
        data, ENXIO if none; SEEK_HOLE the next hole (EOF is one). As
        Linux's tmpfs, data is counted in whole pages."""
        if SHARED.get(self.inode) is not None:
            return offset if whence == SEEK_DATA else size   # mapped: all data
        for start, end in self.inode.data_extents(offset & ~(PAGE - 1), size):
            start &= ~(PAGE - 1)
            end = min(size, (end + PAGE - 1) & ~(PAGE - 1))
            if end <= offset:
                continue
            if whence == SEEK_DATA:
                return max(start, offset)
            if start > offset:
                return offset
            offset = end
        if whence == SEEK_DATA:
            raise SyscallError(errno.ENXIO)
        return offset

    def preadinto(self, buf, offset):
        self.check_readable()
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        shm = SHARED.get(self.inode)
        if shm is not None:
            data = shm.read(offset, len(buf))
            buf[:len(data)] = data
            n = len(data)
        else:
            n = self.inode.read_into(buf, offset)
        if n and WATCHED[0]:
            file_event(self, IN_ACCESS)
        return n

    def truncate(self, size):
        self.check_writable()
        shm = SHARED.get(self.inode)
        if shm is not None:
            shm.truncate(size)
        else:
            self.inode.truncate(size)
        if WATCHED[0]:
            file_event(self, IN_MODIFY)

    def fsync(self):
        shm = SHARED.get(self.inode)
        if shm is not None:
            return shm.fsync()
        return self.inode.fsync()

    def nread(self):
        return max(0, self.inode.stat().st_size - self.offset)


class DirectoryFile(InodeFile):
    """An open directory: getdents64 walks a snapshot taken at offset 0."""

    def __init__(self, vd, flags):
        super().__init__(vd, flags)
        self._entries = None

    def pread(self, count, offset):
        raise SyscallError(errno.EISDIR)

    def pwrite(self, data, offset):
        raise SyscallError(errno.EISDIR)

    def read(self, count):
        raise SyscallError(errno.EISDIR)

    def write(self, data):
        raise SyscallError(errno.EBADF)

    def _snapshot(self):
        dentry = self.vd.dentry
        parent = dentry.parent or dentry
        entries = [(b".", self.inode.ino, DT_DIR), (b"..", parent.inode.ino, DT_DIR)]
        entries.extend(self.inode.readdir())
        return entries

    def lseek(self, offset, whence):
        if whence not in (SEEK_SET, SEEK_CUR):
            raise SyscallError(errno.EINVAL)
        return super().lseek(offset, whence)

    def getdents(self, size, pack=pack_dirent64):
        """Directory records (`pack`: linux_dirent64 by default) that fit in
        `size` bytes; EINVAL if not even one fits."""
        if self.flags & O_PATH:
            raise SyscallError(errno.EBADF)
        with self.offset_lock:
            if self._entries is None or self.offset == 0:
                self._entries = self._snapshot()
            out = bytearray()
            while self.offset < len(self._entries):
                name, ino, dtype = self._entries[self.offset]
                rec = pack(ino, self.offset + 1, dtype, name)
                if len(out) + len(rec) > size:
                    if not out:
                        raise SyscallError(errno.EINVAL)
                    break
                out += rec
                self.offset += 1
        if WATCHED[0]:
            file_event(self, IN_ACCESS)      # iterate_dir's fsnotify_access
        return bytes(out)
