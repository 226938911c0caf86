"""Inodes and dentries.

An `Inode` is a filesystem's object: attributes, and the operations that
its type allows. The base class answers every operation with the errno
Linux gives when a file of the wrong kind is asked (ENOTDIR for lookups in
a non-directory, EINVAL for readlink of a non-symlink, EROFS for changes to
a read-only filesystem); filesystems override what they support.

A `Dentry` is one name of an inode in its parent directory. Dentries are
cached in their parent (`children`) so that the same path gives the same
dentry: the mount table keys mount points by dentry, and an open file's
path() walks the parent chain. Filesystems whose directories change behind
the VFS's back (procfs) set `Filesystem.cache_dentries = False`.
N.B. the cache is never pruned; Linux evicts unused dentries.

Directory operations here are *mechanics only*: the VFS (`vfs.py`) has
already checked existence, types, emptiness and mount points.
"""

import errno
import threading
import time

from ..errors import SyscallError
from .file import DirectoryFile, RegularFile
from .stat import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, Stat, StatFs, dtype_of


def now_ns():
    return time.time_ns()


class Filesystem:
    """One mounted filesystem instance."""

    name = b"none"
    magic = 0
    read_only = False
    cache_dentries = True
    shared = False                # revalidate names on every walk (goferfs.py's shared mode)
    _next_dev = 0x20
    _dev_lock = threading.Lock()

    def __init__(self):
        with Filesystem._dev_lock:
            self.dev = Filesystem._next_dev
            Filesystem._next_dev += 1

    def statfs(self):
        return StatFs(f_type=self.magic, f_fsid=(self.dev, 0))


class Inode:
    """Base inode: attributes plus type-checked default operations.

    Attributes are plain fields; filesystems that fetch them lazily (the
    gofer-backed fs) override `stat()`.
    """

    nopen = 0                 # open descriptions of this inode object (vfs/file.py)
    delete_pending = False    # unlinked while open: IN_DELETE_SELF waits for the last close

    def __init__(self, fs, ino, mode, uid=0, gid=0, nlink=1, rdev=0):
        self.fs = fs
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.nlink = nlink
        self.rdev = rdev
        t = now_ns()
        self.atime_ns = self.mtime_ns = self.ctime_ns = t

    # --- attributes -------------------------------------------------------

    @property
    def ftype(self):
        return self.mode & S_IFMT

    def is_dir(self):
        return self.mode & S_IFMT == S_IFDIR

    def is_symlink(self):
        return self.mode & S_IFMT == S_IFLNK

    def is_reg(self):
        return self.mode & S_IFMT == S_IFREG

    def size(self):
        return 0

    def blocks(self, size):
        """st_blocks of a regular file of ``size`` bytes: its pages, in 512-byte units."""
        return (size + 4095) // 4096 * 8

    def data_extents(self, lo, hi):
        """(start, end) runs of the file's [lo, hi) that may hold data (for
        SEEK_DATA/SEEK_HOLE and MAP_SHARED); the rest reads as zero. By
        default all of it up to EOF, as lseek(2) allows."""
        hi = min(hi, self.size())
        return [(lo, hi)] if lo < hi else []

    def stat(self):
        size = self.size()
        return Stat(st_mode=self.mode, st_ino=self.ino, st_dev=self.fs.dev, st_nlink=self.nlink,
                    st_uid=self.uid, st_gid=self.gid, st_rdev=self.rdev, st_size=size,
                    st_blocks=self.blocks(size) if self.is_reg() else 0,
                    st_atime_ns=self.atime_ns, st_mtime_ns=self.mtime_ns,
                    st_ctime_ns=self.ctime_ns)

    def dtype(self):
        return dtype_of(self.mode)

    def setattr(self, mode=None, uid=None, gid=None, atime_ns=None, mtime_ns=None):
        """chmod/chown/utimes. `mode` holds permission bits only."""
        if self.fs.read_only:
            raise SyscallError(errno.EROFS)
        if mode is not None:
            self.mode = (self.mode & S_IFMT) | (mode & 0o7777)
        if uid is not None:
            self.uid = uid
        if gid is not None:
            self.gid = gid
        if atime_ns is not None:
            self.atime_ns = atime_ns
        if mtime_ns is not None:
            self.mtime_ns = mtime_ns
        self.ctime_ns = now_ns()

    # --- directories ------------------------------------------------------

    def _need_dir(self):
        if not self.is_dir():
            raise SyscallError(errno.ENOTDIR)
        if self.fs.read_only:
            raise SyscallError(errno.EROFS)

    def lookup(self, name):
        """The child inode called `name` (not "." or ".."); ENOENT if absent."""
        raise SyscallError(errno.ENOTDIR if not self.is_dir() else errno.ENOENT)

    def readdir(self):
        """[(name, ino, d_type)] of the children, without "." and ".."."""
        raise SyscallError(errno.ENOTDIR)

    def create(self, name, mode, uid, gid):
        self._need_dir()
        raise SyscallError(errno.EPERM)

    def tmpfile(self, mode, uid, gid):
        """open(2) O_TMPFILE: a new regular file with no name (nlink 0) in
        this directory's file system; EOPNOTSUPP where it offers none."""
        self._need_dir()
        raise SyscallError(errno.EOPNOTSUPP)

    def mkdir(self, name, mode, uid, gid):
        self._need_dir()
        raise SyscallError(errno.EPERM)

    def symlink(self, name, target, uid, gid):
        self._need_dir()
        raise SyscallError(errno.EPERM)

    def mknod(self, name, mode, rdev, uid, gid):
        self._need_dir()
        raise SyscallError(errno.EPERM)

    def link(self, name, inode):
        self._need_dir()
        raise SyscallError(errno.EPERM)

    def unlink(self, name, child):
        self._need_dir()
        raise SyscallError(errno.EPERM)

    def rmdir(self, name, child):
        self._need_dir()
        raise SyscallError(errno.EPERM)

    def rename(self, oldname, child, newdir, newname, victim):
        """Move `child` to newdir/newname, replacing `victim` (or None)."""
        self._need_dir()
        raise SyscallError(errno.EPERM)

    def is_empty_dir(self):
        return not self.readdir()

    # --- symlinks ---------------------------------------------------------

    def readlink(self, t):
        raise SyscallError(errno.EINVAL)

    def get_link(self, t):
        """What following this symlink reaches: bytes (a path to resolve),
        or a VDentry / FileDescription for procfs's magic links."""
        return self.readlink(t)

    # --- data -------------------------------------------------------------

    def read_at(self, offset, n):
        raise SyscallError(errno.EINVAL)

    def read_into(self, buf, offset):
        """Fill the writable memoryview `buf` from `offset`; bytes copied.
        Filesystems override this to skip the intermediate bytes object."""
        data = self.read_at(offset, len(buf))
        buf[:len(data)] = data
        return len(data)

    def write_at(self, offset, data):
        raise SyscallError(errno.EINVAL)

    def truncate(self, size):
        if self.is_dir():
            raise SyscallError(errno.EISDIR)
        raise SyscallError(errno.EINVAL)

    def fsync(self):
        """Flush written data to where the file lives (nothing for memory)."""
        return 0

    # --- extended attributes (xattr(7)): none, unless a filesystem keeps them

    def getxattr(self, name):
        raise SyscallError(errno.ENODATA)

    def listxattr(self):
        """The attribute names (bytes, without their NULs)."""
        return []

    def setxattr(self, name, value, flags):
        raise SyscallError(errno.EOPNOTSUPP)

    def removexattr(self, name):
        raise SyscallError(errno.ENODATA)

    def host_locker(self):
        """Where this file's advisory locks are also taken outside the
        Sentry (a `HostLocker` of goferfs.py), or None: only here."""
        return None

    def open(self, t, vd, flags):
        """A FileDescription for this inode reached through `vd`."""
        if self.is_dir():
            return DirectoryFile(vd, flags)
        if self.is_reg():
            return RegularFile(vd, flags)
        raise SyscallError(errno.ENXIO)


class Dentry:
    """One name of an inode; cached in the parent's `children`."""

    __slots__ = ("name", "parent", "inode", "children", "deleted", "mounted", "__weakref__")

    def __init__(self, name, parent, inode):
        self.name = name
        self.parent = parent          # None for a filesystem's root
        self.inode = inode
        self.children = {}
        self.deleted = False
        self.mounted = False          # something is mounted here (in some mount)

    def lookup(self, name):
        """Child dentry `name` (a plain name, not "." or "..")."""
        child = self.children.get(name)
        if child is not None:
            return child
        child = Dentry(name, self, self.inode.lookup(name))
        if self.inode.fs.cache_dentries:
            # setdefault: if another task raced us here, both get one dentry.
            child = self.children.setdefault(name, child)
        return child

    def forget(self, name):
        """Drop the cached child `name` after it left the directory."""
        child = self.children.pop(name, None)
        if child is not None:
            child.deleted = True

    def __repr__(self):
        return "Dentry(%r)" % (self.name,)


__all__ = ["Filesystem", "Inode", "Dentry", "StatFs", "now_ns"]
