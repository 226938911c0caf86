"""overlay: a writable tmpfs upper layer over a read-only lower layer.

The model is Linux overlayfs (Documentation/filesystems/overlayfs.rst):

- Lookup prefers the upper layer. A directory present in both merges; a
  non-directory in the upper hides anything below it.
- Deletion of a name the lower layer has leaves a *whiteout* in the upper
  directory (a 0:0 char device, see tmpfs.is_whiteout), which hides it.
  A directory created where a whiteout was is *opaque*: the lower
  directory of that name is not merged into it.
- Any change to a lower file first *copies it up*: its parent directories
  (recursively), then the file with its data, mode, owner and times.
  Copy-up happens on open for writing, O_TRUNC/truncate, chmod/chown/utimes,
  link, and rename.
- Renaming a directory that has lower content gives EXDEV, as Linux does
  without redirect_dir; mv(1) then copies.

Nothing ever reaches the host: the lower layer is only read.
With --read-only the overlay is read-only (`read_only` set once the mount
points are made): every change is EROFS, and the upper layer holds only
the directories that volumes and --tmpfs mounts are mounted on.
Lock order: OverlayFS.lock, then the upper tmpfs lock.
"""

import errno
import threading
from operator import attrgetter

from ..errors import SyscallError
from .file import DirectoryFile, O_ACCMODE, O_RDONLY, O_TRUNC, RegularFile
from .inode import Filesystem, Inode
from .stat import OVERLAYFS_SUPER_MAGIC
from .tmpfs import is_whiteout

COPY_CHUNK = 1 << 20
UPPER_INO_BASE = 1 << 48      # keeps upper-only inode numbers apart from host ones


class OverlayFS(Filesystem):
    name = b"overlay"
    magic = OVERLAYFS_SUPER_MAGIC

    def __init__(self, upper_fs, lower_root):
        super().__init__()
        self.upper_fs = upper_fs
        self.lock = threading.RLock()
        # The upper root stands for the lower one: same mode, owner, times.
        st = lower_root.stat()
        up = upper_fs.root
        up.mode, up.uid, up.gid = st.st_mode, st.st_uid, st.st_gid
        up.atime_ns, up.mtime_ns, up.ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        self.root = OverlayInode(self, up, lower_root, None, b"/")

    def statfs(self):
        st = self.upper_fs.statfs()
        st.f_type = self.magic
        st.f_fsid = (self.dev, 0)
        return st


def _lookup_or_none(inode, name):
    try:
        return inode.lookup(name)
    except SyscallError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


class OverlayInode(Inode):
    """A merged inode; attributes come from the upper layer if present."""

    def __init__(self, fs, upper, lower, parent, name):
        # Attributes are delegated (properties below), so Inode.__init__ is skipped.
        self.fs = fs
        self.upper = upper
        self.lower = lower
        self.real = upper if upper is not None else lower   # the layer attributes come from
        self.parent = parent
        self.name = name
        self._children = {}

    # attrgetter: read on every step of every path walk, so no Python frame.
    mode = property(attrgetter("real.mode"))
    uid = property(attrgetter("real.uid"))
    gid = property(attrgetter("real.gid"))
    rdev = property(attrgetter("real.rdev"))
    nlink = property(attrgetter("real.nlink"))

    @property
    def ino(self):
        if self.lower is not None:
            return self.lower.ino
        return UPPER_INO_BASE + self.upper.ino

    def size(self):
        return self.real.size()

    def stat(self):
        st = self.real.stat()
        st.st_ino = self.ino
        st.st_dev = self.fs.dev
        if self.upper is not None and self.lower is not None and self.is_dir():
            # Linux's ovl_getattr: counting merged subdirs is not worth it,
            # and nlink 1 tells find(1) not to rely on the count.
            st.st_nlink = 1
        return st

    # --- lookup and listing -------------------------------------------------

    def _lower_visible(self):
        return self.lower is not None and not (self.upper is not None and self.upper.opaque)

    def lookup(self, name):
        if not self.is_dir():
            raise SyscallError(errno.ENOTDIR)
        with self.fs.lock:
            child = self._children.get(name)
            if child is not None:
                return child
            up = _lookup_or_none(self.upper, name) if self.upper is not None else None
            if up is not None and is_whiteout(up):
                raise SyscallError(errno.ENOENT)
            lo = None
            if self._lower_visible() and (up is None or up.is_dir()):
                lo = _lookup_or_none(self.lower, name)
                if up is not None and lo is not None and not lo.is_dir():
                    lo = None
            if up is None and lo is None:
                raise SyscallError(errno.ENOENT)
            child = self._children[name] = OverlayInode(self.fs, up, lo, self, name)
            return child

    def readdir(self):
        with self.fs.lock:
            entries, hidden = {}, set()
            if self.upper is not None:
                for name, ino, dtype in self.upper.readdir():
                    if is_whiteout(self.upper.lookup(name)):
                        hidden.add(name)
                    else:
                        entries[name] = (name, UPPER_INO_BASE + ino, dtype)
            if self._lower_visible():
                for name, ino, dtype in self.lower.readdir():
                    if name in hidden:
                        continue
                    if name in entries and entries[name][2] == 4 and dtype == 4:
                        entries[name] = (name, ino, dtype)
                    elif name not in entries:
                        entries[name] = (name, ino, dtype)
            for name, c in self._children.items():
                if name in entries:
                    entries[name] = (name, c.ino, entries[name][2])
            return list(entries.values())

    def is_empty_dir(self):
        return not self.readdir()

    # --- copy-up ------------------------------------------------------------

    def copy_up(self):
        """Give this inode an upper copy (parents first). Idempotent.
        Every change goes through here first: a read-only overlay refuses it."""
        if self.fs.read_only:
            raise SyscallError(errno.EROFS)
        with self.fs.lock:
            if self.upper is not None:
                return
            self.parent.copy_up()
            lo, pu = self.lower, self.parent.upper
            st = lo.stat()
            if lo.is_dir():
                up = pu.mkdir(self.name, st.st_mode, st.st_uid, st.st_gid)
            elif lo.is_reg():
                up = pu.create(self.name, st.st_mode, st.st_uid, st.st_gid)
                self._copy_data(lo, up)
            elif lo.is_symlink():
                up = pu.symlink(self.name, lo.readlink(None), st.st_uid, st.st_gid)
            else:
                up = pu.mknod(self.name, st.st_mode, st.st_rdev, st.st_uid, st.st_gid)
            if not lo.is_symlink():
                up.setattr(mode=st.st_mode & 0o7777)
            up.atime_ns, up.mtime_ns = st.st_atime_ns, st.st_mtime_ns
            self.upper = self.real = up

    @staticmethod
    def _copy_data(lo, up):
        """Copy the lower file's bytes up; runs of zeros stay holes (as
        Linux's overlayfs copies a sparse file up sparse), the size is kept."""
        off = 0
        while True:
            data = lo.read_at(off, COPY_CHUNK)
            if not data:
                break
            if data.count(0) != len(data):
                up.write_at(off, data)
            off += len(data)
        if up.size() < off:
            up.truncate(off)

    # --- data and attributes ------------------------------------------------

    def read_at(self, offset, n):
        return self.real.read_at(offset, n)

    def read_into(self, buf, offset):
        return self.real.read_into(buf, offset)

    def data_extents(self, lo, hi):
        return self.real.data_extents(lo, hi)

    def write_at(self, offset, data):
        self.copy_up()
        return self.upper.write_at(offset, data)

    def truncate(self, size):
        if self.is_dir():
            raise SyscallError(errno.EISDIR)
        self.copy_up()
        self.upper.truncate(size)

    def setattr(self, **attrs):
        self.copy_up()
        self.upper.setattr(**attrs)

    def readlink(self, t):
        return self.real.readlink(t)

    def get_link(self, t):
        return self.real.get_link(t)

    def open(self, t, vd, flags):
        if self.is_dir():
            return DirectoryFile(vd, flags)
        if self.is_reg():
            if flags & O_ACCMODE != O_RDONLY or flags & O_TRUNC:
                self.copy_up()
            return RegularFile(vd, flags)
        return self.real.open(t, vd, flags)

    # --- directory mutations ------------------------------------------------

    def _prepare_new(self, name):
        """Copy this dir up and clear a whiteout at `name`; True if there was one."""
        self.copy_up()
        old = _lookup_or_none(self.upper, name)
        if old is not None and is_whiteout(old):
            self.upper.unlink(name, old)
            return True
        return False

    def _adopt(self, name, up, opaque=False):
        if opaque:
            up.opaque = True
        child = self._children[name] = OverlayInode(self.fs, up, None, self, name)
        return child

    def create(self, name, mode, uid, gid):
        with self.fs.lock:
            self._prepare_new(name)
            return self._adopt(name, self.upper.create(name, mode, uid, gid))

    def tmpfile(self, mode, uid, gid):
        """O_TMPFILE: an unnamed file of the upper layer (the directory is
        copied up first, as overlayfs makes it in its work directory)."""
        with self.fs.lock:
            self.copy_up()
            up = self.upper.tmpfile(mode, uid, gid)
            return OverlayInode(self.fs, up, None, self, b"#%d" % up.ino)

    def mkdir(self, name, mode, uid, gid):
        with self.fs.lock:
            had_whiteout = self._prepare_new(name)
            return self._adopt(name, self.upper.mkdir(name, mode, uid, gid), had_whiteout)

    def symlink(self, name, target, uid, gid):
        with self.fs.lock:
            self._prepare_new(name)
            return self._adopt(name, self.upper.symlink(name, target, uid, gid))

    def mknod(self, name, mode, rdev, uid, gid):
        with self.fs.lock:
            self._prepare_new(name)
            return self._adopt(name, self.upper.mknod(name, mode, rdev, uid, gid))

    def link(self, name, inode):
        if not isinstance(inode, OverlayInode) or inode.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        with self.fs.lock:
            inode.copy_up()
            self._prepare_new(name)
            self.upper.link(name, inode.upper)
            self._adopt(name, inode.upper)

    def _lower_has(self, name):
        return self._lower_visible() and _lookup_or_none(self.lower, name) is not None

    def _remove(self, name, child):
        self.copy_up()
        if child.upper is not None and child.upper.is_dir():
            child.upper.children.clear()        # only whiteouts can be left in it
        if self._lower_has(name):
            self.upper.make_whiteout(name)
        elif child.upper is not None:
            self.upper.unlink(name, child.upper)
        self._children.pop(name, None)

    def unlink(self, name, child):
        with self.fs.lock:
            self._remove(name, child)

    def rmdir(self, name, child):
        with self.fs.lock:
            self._remove(name, child)

    def rename(self, oldname, child, newdir, newname, victim):
        if not isinstance(newdir, OverlayInode) or newdir.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        with self.fs.lock:
            if child.is_dir() and child.lower is not None:
                raise SyscallError(errno.EXDEV)
            child.copy_up()
            newdir.copy_up()
            target = _lookup_or_none(newdir.upper, newname)
            opaque = victim is not None and victim.is_dir() and newdir._lower_has(newname)
            if target is not None and target.is_dir():
                target.children.clear()         # an empty merged dir: whiteouts only
            self.upper.rename(oldname, child.upper, newdir.upper, newname, target)
            if opaque:
                child.upper.opaque = True
            if self._lower_has(oldname):
                self.upper.make_whiteout(oldname)
            self._children.pop(oldname, None)
            newdir._children[newname] = child
            child.parent, child.name = newdir, newname
