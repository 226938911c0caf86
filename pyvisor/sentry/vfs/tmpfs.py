"""tmpfs: a filesystem in Sentry memory (or, for its files' data, on the host's disk).

Regular files keep their data in sparse chunks of Sentry memory (HeapData), or, for the
overlay's upper layer under ``--overlay file``, in blocks of an unlinked
host file (mm/filestore.py, StoredData); directories a dict of children,
symlinks their target. Link counts follow Linux: a directory has
2 + (number of subdirectories), a file one per name. st_blocks counts whole
4 KiB pages in 512-byte units, as tmpfs does.

Character-device inodes (mknod, and devfs's nodes) open through the device
registry in `devices.py`. Overlay whiteouts are char devices 0:0 here, the
same convention as Linux overlayfs; `opaque` marks an overlay-opaque dir.
"""

import errno
import itertools
import threading

from ..errors import SyscallError
from ..mm.account import MemoryAccount, half_of_ram
from ..mm.filestore import StoredData
from .inode import Filesystem, Inode, now_ns
from .stat import S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, StatFs, TMPFS_MAGIC

MAX_FILE_SIZE = 1 << 40
PAGE = 4096


def check_file_size(size):
    """truncate(2)'s size rules for a memory file: EINVAL below 0, EFBIG
    past the largest file."""
    if size < 0:
        raise SyscallError(errno.EINVAL)
    if size > MAX_FILE_SIZE:
        raise SyscallError(errno.EFBIG)


class TmpFS(Filesystem):
    name = b"tmpfs"
    magic = TMPFS_MAGIC

    def __init__(self, mode=0o1777, uid=0, gid=0, size=None, account=None, store=None):
        """``size``: bytes its files' data may hold (ENOSPC past it; default
        half of RAM, as Linux's tmpfs, or the host's free space with a
        store); ``account``: the sandbox's memory account (mm/account.py),
        charged too; ``store``: a FileStore (mm/filestore.py) that holds the
        files' data instead of the Sentry's memory, and then ``account`` is
        not charged: the data is on the host's disk."""
        super().__init__()
        self.store = store
        if store is not None:
            account = None
            if size is None:
                size = store.available()
        self.space = MemoryAccount(half_of_ram() if size is None else size, errno.ENOSPC,
                                   parent=account)
        self._inos = itertools.count(1)
        self.lock = threading.RLock()     # guards every inode's structure in this fs
        self.root = TmpfsDir(self, mode, uid, gid)
        self.root.nlink = 2

    def new_data(self):
        return HeapData() if self.store is None else StoredData(self.store)

    def next_ino(self):
        return next(self._inos)

    def statfs(self):
        blocks = self.space.limit // PAGE
        free = self.space.free() // PAGE
        return StatFs(f_type=self.magic, f_blocks=blocks, f_bfree=free, f_bavail=free,
                      f_files=1 << 20, f_ffree=1 << 20, f_fsid=(self.dev, 0))


class TmpfsInode(Inode):
    def __init__(self, fs, mode, uid=0, gid=0, rdev=0):
        super().__init__(fs, fs.next_ino(), mode, uid, gid, 1, rdev)

    def touch_ctime(self):
        self.ctime_ns = now_ns()


CHUNK = 64 << 10


class HeapData:
    """A file's bytes in the Sentry's memory, sparse as Linux's tmpfs: chunks
    of CHUNK bytes, each a bytearray allocated by the first write into it and
    only as long as the highest byte written there; a chunk not held (a hole)
    and the bytes past a chunk's end read as zero. ``used`` is the bytes
    the chunks hold (what the file system's space is charged), ``len`` the
    size held (the end of the furthest write). The contract of
    mm/filestore.py's StoredData; callers hold the tmpfs lock.
    """

    __slots__ = ("chunks", "held", "used")

    def __init__(self):
        self.chunks = {}          # chunk index -> bytearray of at most CHUNK bytes
        self.held = 0
        self.used = 0

    def __len__(self):
        return self.held

    def cost(self, offset, n):
        """The bytes write(offset, n bytes) would newly allocate."""
        end = offset + n
        if end <= CHUNK:                    # a small file
            c = self.chunks.get(0)
            return max(0, end - (0 if c is None else len(c)))
        grow = 0
        while offset < end:
            i, within = divmod(offset, CHUNK)
            take = min(CHUNK - within, end - offset)
            c = self.chunks.get(i)
            grow += max(0, within + take - (0 if c is None else len(c)))
            offset += take
        return grow

    def read(self, offset, n):
        """The held bytes [offset, offset+n). Precondition: offset+n <= held."""
        if offset + n <= CHUNK:             # a small file: one copy
            c = self.chunks.get(0)
            if c is not None and offset + n <= len(c):
                return bytes(c[offset:offset + n])
        i, within = divmod(offset, CHUNK)
        if within + n <= CHUNK:             # one chunk: one copy
            c = self.chunks.get(i)
            if c is None:
                return bytes(n)
            data = bytes(c[within:within + n])
            return data if len(data) == n else data + bytes(n - len(data))
        buf = bytearray(n)
        self.read_into(buf, offset, n)
        return bytes(buf)

    def read_into(self, buf, offset, n):
        """Copy the held bytes [offset, offset+n) into buf[:n]."""
        if offset + n <= CHUNK:             # a small file
            c = self.chunks.get(0)
            if c is not None and offset + n <= len(c):
                with memoryview(c) as mc:
                    buf[:n] = mc[offset:offset + n]
                return
        with memoryview(buf) as mv:
            pos = 0
            while pos < n:
                i, within = divmod(offset + pos, CHUNK)
                take = min(CHUNK - within, n - pos)
                c = self.chunks.get(i)
                have = 0 if c is None else max(0, min(take, len(c) - within))
                if have:
                    mv[pos:pos + have] = memoryview(c)[within:within + have]
                if have < take:
                    mv[pos + have:pos + take] = bytes(take - have)
                pos += take

    def write(self, offset, data):
        """Put ``data`` at ``offset``; the held size grows to its end if it was below."""
        n = len(data)
        end = offset + n
        c = self.chunks.get(0)
        if end <= CHUNK and c is not None and offset <= len(c):    # a small file
            before = len(c)
            c[offset:end] = data
            self.used += len(c) - before
        elif c is None and offset == 0 and end <= CHUNK:            # its first write
            self.chunks[0] = bytearray(data)
            self.used += n
        elif offset // CHUNK == (end - 1) // CHUNK:                 # one chunk
            self._put(offset // CHUNK, offset % CHUNK, data)
        else:
            with memoryview(data) as mv:
                pos = 0
                while pos < n:
                    i, within = divmod(offset + pos, CHUNK)
                    take = min(CHUNK - within, n - pos)
                    self._put(i, within, mv[pos:pos + take])
                    pos += take
        if end > self.held:
            self.held = end

    def _put(self, i, within, data):
        c = self.chunks.get(i)
        if c is None and not within:        # a new chunk from its start: one copy
            self.chunks[i] = bytearray(data)
            self.used += len(data)
            return
        if c is None:
            c = self.chunks[i] = bytearray(within) if within else bytearray()
            self.used += within
        elif within > len(c):
            self.used += within - len(c)
            c.extend(bytes(within - len(c)))
        before = len(c)
        c[within:within + len(data)] = data
        self.used += len(c) - before

    def shrink(self, size):
        """Hold only [0, size): later chunks are freed."""
        if size >= self.held:
            return
        last, within = divmod(size, CHUNK)
        for i in [i for i in self.chunks if i > last or (i == last and not within)]:
            self.used -= len(self.chunks.pop(i))
        c = self.chunks.get(last) if within else None
        if c is not None and len(c) > within:
            self.used -= len(c) - within
            del c[within:]
        self.held = size

    def release(self):
        self.chunks.clear()
        self.held = self.used = 0

    def pages(self):
        """The 4 KiB pages the chunks hold."""
        if self.used == len(self.chunks) * CHUNK:        # every chunk full
            return self.used // PAGE
        return sum((len(c) + PAGE - 1) // PAGE for c in self.chunks.values())

    def extents(self, lo, hi):
        """(start, end) runs of [lo, hi) that hold data, in order (holes skipped)."""
        runs = []
        for i in sorted(i for i in self.chunks if i * CHUNK < hi and (i + 1) * CHUNK > lo):
            s = max(lo, i * CHUNK)
            e = min(hi, i * CHUNK + len(self.chunks[i]))
            if e <= s:
                continue
            if runs and runs[-1][1] == s:
                runs[-1][1] = e
            else:
                runs.append([s, e])
        return [tuple(r) for r in runs]


class TmpfsFile(TmpfsInode):
    """A regular file: bytes [0, len(data)) are held; from there to
    ``length`` (a truncate(2) that grew the file) they read as zero and
    hold no memory, as a hole in Linux's tmpfs; so do the holes a write
    past EOF leaves (HeapData). Only the bytes the data holds (``used``)
    are charged to the file system's space (TmpFS.space)."""

    def __init__(self, fs, mode, uid=0, gid=0):
        super().__init__(fs, S_IFREG | (mode & 0o7777), uid, gid)
        self.data = fs.new_data()
        self.length = 0

    def size(self):
        return self.length

    def __del__(self):
        # The last name and the last open file are gone: the data goes too.
        self.fs.space.uncharge(self.data.used)
        self.data.release()

    def read_at(self, offset, n):
        with self.fs.lock:
            self.atime_ns = now_ns()
            n = max(0, min(n, self.length - offset))
            held = max(0, min(n, len(self.data) - offset))
            data = self.data.read(offset, held) if held else b""
            return data + bytes(n - held) if held < n else data

    def read_into(self, buf, offset):
        with self.fs.lock:
            n = max(0, min(len(buf), self.length - offset))
            held = max(0, min(n, len(self.data) - offset))
            if held:
                self.data.read_into(buf, offset, held)
            if n > held:
                buf[held:n] = bytes(n - held)
            self.atime_ns = now_ns()
            return n

    def write_at(self, offset, data):
        if offset + len(data) > MAX_FILE_SIZE:
            raise SyscallError(errno.EFBIG)
        with self.fs.lock:
            end = offset + len(data)
            grow = self.data.cost(offset, len(data))
            self.fs.space.charge(grow)     # ENOSPC/ENOMEM: nothing written
            try:
                self.data.write(offset, data)
            except SyscallError:           # the host's disk (a FileStore) is full
                self.fs.space.uncharge(grow)
                raise
            self.length = max(self.length, end)
            self.mtime_ns = self.ctime_ns = now_ns()
            return len(data)

    def blocks(self, size):
        """The pages the data holds (not its holes), in 512-byte units."""
        with self.fs.lock:
            return self.data.pages() * 8

    def data_extents(self, lo, hi):
        """(start, end) runs of [lo, hi) that hold chunks; the rest is holes."""
        with self.fs.lock:
            return self.data.extents(lo, min(hi, len(self.data)))

    def truncate(self, size):
        check_file_size(size)
        with self.fs.lock:
            if size < len(self.data):
                used = self.data.used
                self.data.shrink(size)
                self.fs.space.uncharge(used - self.data.used)
            self.length = size
            self.mtime_ns = self.ctime_ns = now_ns()


class TmpfsSymlink(TmpfsInode):
    def __init__(self, fs, target, uid=0, gid=0):
        super().__init__(fs, S_IFLNK | 0o777, uid, gid)
        self.target = target

    def size(self):
        return len(self.target)

    def readlink(self, t):
        return self.target


class TmpfsDevice(TmpfsInode):
    """A char/block device or fifo node; opening goes to the device registry."""

    def open(self, t, vd, flags):
        from .devices import open_device
        return open_device(t, self, vd, flags)


class TmpfsDir(TmpfsInode):
    def __init__(self, fs, mode, uid=0, gid=0):
        super().__init__(fs, S_IFDIR | (mode & 0o7777), uid, gid)
        self.nlink = 2
        self.children = {}
        self.opaque = False               # overlay: hide the lower dir

    def size(self):
        return 40 + 20 * len(self.children)     # shmem's BOGO_DIRENT_SIZE

    def lookup(self, name):
        with self.fs.lock:
            child = self.children.get(name)
        if child is None:
            raise SyscallError(errno.ENOENT)
        return child

    def readdir(self):
        with self.fs.lock:
            return [(name, c.ino, c.dtype()) for name, c in self.children.items()]

    def is_empty_dir(self):
        return not self.children

    def _add_locked(self, name, inode):
        if name in self.children:
            raise SyscallError(errno.EEXIST)
        self.children[name] = inode
        if inode.is_dir():
            self.nlink += 1
        self.mtime_ns = self.ctime_ns = now_ns()
        return inode

    def _add(self, name, inode):
        with self.fs.lock:
            return self._add_locked(name, inode)

    def create(self, name, mode, uid, gid):
        return self._add(name, TmpfsFile(self.fs, mode, uid, gid))

    def tmpfile(self, mode, uid, gid):
        f = TmpfsFile(self.fs, mode, uid, gid)
        f.nlink = 0
        return f

    def mkdir(self, name, mode, uid, gid):
        return self._add(name, TmpfsDir(self.fs, mode, uid, gid))

    def symlink(self, name, target, uid, gid):
        return self._add(name, TmpfsSymlink(self.fs, target, uid, gid))

    def mknod(self, name, mode, rdev, uid, gid):
        ftype = mode & S_IFMT
        if ftype == S_IFREG or ftype == 0:
            return self.create(name, mode, uid, gid)
        if ftype == S_IFDIR:
            raise SyscallError(errno.EPERM)
        return self._add(name, TmpfsDevice(self.fs, mode, uid, gid, rdev))

    def link(self, name, inode):
        if inode.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        with self.fs.lock:
            self._add_locked(name, inode)
            inode.nlink += 1
            inode.touch_ctime()

    def _remove_locked(self, name):
        inode = self.children.pop(name)
        if inode.is_dir():
            self.nlink -= 1
            inode.nlink = 0
        else:
            inode.nlink -= 1
        inode.touch_ctime()
        self.mtime_ns = self.ctime_ns = now_ns()
        return inode

    def unlink(self, name, child=None):
        with self.fs.lock:
            if name not in self.children:
                raise SyscallError(errno.ENOENT)
            self._remove_locked(name)

    def rmdir(self, name, child=None):
        with self.fs.lock:
            if name not in self.children:
                raise SyscallError(errno.ENOENT)
            self._remove_locked(name)

    def rename(self, oldname, child, newdir, newname, victim):
        if not isinstance(newdir, TmpfsDir) or newdir.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        with self.fs.lock:
            inode = self.children[oldname]
            if newname in newdir.children:
                newdir._remove_locked(newname)
            del self.children[oldname]
            if inode.is_dir():
                self.nlink -= 1
            newdir._add_locked(newname, inode)
            self.mtime_ns = self.ctime_ns = now_ns()
            inode.touch_ctime()

    def make_whiteout(self, name):
        """Overlay: record that lower's `name` is deleted (a 0:0 char device)."""
        with self.fs.lock:
            if name in self.children:
                self._remove_locked(name)
            self.children[name] = TmpfsDevice(self.fs, S_IFCHR, 0, 0, 0)


def is_whiteout(inode):
    return isinstance(inode, TmpfsDevice) and inode.mode & S_IFMT == S_IFCHR and inode.rdev == 0
