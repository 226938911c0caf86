"""Path resolution and the path-based file operations.

Linux's rules, as path_resolution(7) and namei.c give them:

- A path starting with "/" starts at the process's root; otherwise at the
  cwd, or at the directory `dirfd` names for the *at() calls.
- Every component but the last must be a directory we may search (ENOTDIR,
  EACCES); symlinks there are always followed. The last one is followed
  unless the call says not to (lstat, O_NOFOLLOW, AT_SYMLINK_NOFOLLOW).
- At most 40 symlinks are followed in one resolution (ELOOP).
- ".." at the process root stays there; at a mount's root it goes to the
  mount point's parent. A mount point is crossed into its mounted fs.
- A component longer than 255 bytes or a path of 4096 bytes or more gives
  ENAMETOOLONG; an empty path gives ENOENT.
- A trailing slash demands a directory: ENOTDIR on lookups of a
  non-directory, EISDIR for O_CREAT of a new name.

Mutations (mkdir, unlink, rename, ...) check existence, types, emptiness
and mount points here, then call the directory inode's mechanics, then keep
the dentry cache in step.
"""

import errno

from ..errors import SyscallError
from ..mm.shmfile import truncate as shm_truncate
from pyvisor.abi.flags import AT_FDCWD
from .file import (FileDescription, O_ACCMODE, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL,
                   O_NOFOLLOW, O_PATH, O_RDONLY, O_TMPFILE, O_TRUNC, O_WRONLY, O_RDWR)
from .fsnotify import (ACTIVE, file_event, link_dropped, new_cookie, notify, notify_name,
                       notify_self)
from pyvisor.abi.flags import (IN_ATTRIB, IN_CREATE, IN_DELETE, IN_MODIFY, IN_MOVE_SELF,
                               IN_MOVED_FROM, IN_MOVED_TO, IN_OPEN)
from .lock import LockTable
from .mount import Mount, MountTable, VDentry, vd_path
from .perm import R_OK, W_OK, X_OK, check_access, creds_of, fs_ids, is_owner
from .stat import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG

MAXSYMLINKS = 40
PATH_MAX = 4096
NAME_MAX = 255
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4


class _Walk:
    """Per-resolution state: the symlink budget, and the (dentry, name)
    pairs a shared-mode file system has revalidated in this walk."""

    __slots__ = ("links", "fresh")

    def __init__(self):
        self.links = 0
        self.fresh = set()


def _revalidate(vd, parts, i, walk):
    """Shared file access (goferfs.py): before the walk uses parts[i] in
    directory `vd`, its file system checks it and the names after it
    against the host, unless this walk already did."""
    dentry = vd.dentry
    fs = dentry.inode.fs
    if fs.shared and (dentry, parts[i]) not in walk.fresh:
        fs.revalidate(dentry, parts[i:], walk.fresh)


class PathFile(FileDescription):
    """An O_PATH descriptor: names a location, allows no I/O."""

    def read(self, count):
        raise SyscallError(errno.EBADF)

    def write(self, data):
        raise SyscallError(errno.EBADF)

    def pread(self, count, offset):
        raise SyscallError(errno.EBADF)

    def pwrite(self, data, offset):
        raise SyscallError(errno.EBADF)

    def lseek(self, offset, whence):
        raise SyscallError(errno.EBADF)

    def getdents(self, size, pack=None):
        raise SyscallError(errno.EBADF)

    def ioctl(self, t, request, arg):
        raise SyscallError(errno.EBADF)


def _umask(t):
    fs = getattr(t, "fs", None)
    return fs.umask if fs is not None else 0o022


_O_TMPFILE_BIT = 0o20000000      # __O_TMPFILE; O_TMPFILE adds O_DIRECTORY
_WATCHED = ACTIVE       # non-zero once an inotify watch exists (vfs/fsnotify.py)


def _created(parent, name):
    """IN_CREATE in `parent` (a VDentry) for the new `name`."""
    child = parent.dentry.lookup(name)
    notify_name(parent.dentry, name, IN_CREATE, child.inode.is_dir())


class VirtualFilesystem:
    """The mount tree plus every path-based operation."""

    def __init__(self, root_fs, root_inode, source=b"none"):
        from .inode import Dentry
        self.mounts = MountTable(Mount(root_fs, Dentry(b"/", None, root_inode), source=source))
        self.locks = LockTable()      # advisory locks of every file (vfs/lock.py)

    @property
    def root(self):
        return self.mounts.root.root_vd

    def mount(self, fs, root_inode, at, source=b"none", options=b"rw"):
        """Mount `fs` on the directory VDentry `at` (or an absolute path)."""
        from .inode import Dentry
        if isinstance(at, bytes):
            at = self.resolve(None, at)
        if not at.inode.is_dir():
            raise SyscallError(errno.ENOTDIR)
        return self.mounts.mount(fs, Dentry(b"/", None, root_inode), at, source, options)

    # --- resolution -------------------------------------------------------

    def _root_of(self, t):
        fs = getattr(t, "fs", None)
        return fs.root if fs is not None else self.root

    def _start(self, t, path, dirfd):
        if path.startswith(b"/"):
            return self._root_of(t)
        if dirfd == AT_FDCWD:
            fs = getattr(t, "fs", None)
            return fs.cwd if fs is not None else self.root
        f = t.fdtable.get(dirfd)
        if f.vd is None or not f.vd.inode.is_dir():
            raise SyscallError(errno.ENOTDIR)
        return f.vd

    def _step(self, t, vd, name):
        """One component from directory `vd` (no symlink following)."""
        parent = vd.dentry
        mode = parent.inode.mode
        if mode & S_IFMT != S_IFDIR:
            raise SyscallError(errno.ENOTDIR)
        if mode & 0o111 != 0o111:         # searchable by all: no need to ask
            check_access(parent.inode, creds_of(t), X_OK)
        # The dentry cache first: it never holds ".", ".." or an over-long name.
        dentry = parent.children.get(name)
        if dentry is None:
            if name == b".":
                return vd
            if name == b"..":
                return self._dotdot(t, vd)
            if len(name) > NAME_MAX:
                raise SyscallError(errno.ENAMETOOLONG)
            dentry = parent.lookup(name)
        child = VDentry(vd.mount, dentry)
        while dentry.mounted:
            m = self.mounts.child_at(child)
            if m is None:
                break
            child = m.root_vd
            dentry = child.dentry
        return child

    def _dotdot(self, t, vd):
        root = self._root_of(t)
        while True:
            if vd == root:
                return vd
            if vd.dentry is vd.mount.root:
                if vd.mount.parent is None:
                    return vd
                vd = VDentry(vd.mount.parent, vd.mount.mountpoint)
                continue
            return VDentry(vd.mount, vd.dentry.parent)

    def _follow(self, t, parent, link, walk):
        """Where symlink `link` (found in `parent`) leads: a VDentry, or a
        FileDescription for a procfs magic link to a pathless file."""
        walk.links += 1
        if walk.links > MAXSYMLINKS:
            raise SyscallError(errno.ELOOP)
        target = link.inode.get_link(t)
        if not isinstance(target, bytes):
            return target
        if not target:
            raise SyscallError(errno.ENOENT)
        return self._resolve(t, parent, target, True, walk)

    def _walk_parent(self, t, start, path, walk):
        """Resolve all but the last component: (parent VDentry, last name or
        None when the path names only "/", trailing-slash flag)."""
        if not path:
            raise SyscallError(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        vd = self._root_of(t) if path.startswith(b"/") else start
        parts = [p for p in path.split(b"/") if p]
        if len(path) > NAME_MAX and max(map(len, parts), default=0) > NAME_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        if not parts:
            return vd, None, True
        for i, name in enumerate(parts):
            _revalidate(vd, parts, i, walk)
            if i == len(parts) - 1:
                break
            child = self._step(t, vd, name)
            ftype = child.dentry.inode.mode & S_IFMT
            if ftype == S_IFLNK:
                # Intermediate links are always followed, and must reach a directory.
                child = self._follow(t, vd, child, walk)
                if not isinstance(child, VDentry):
                    raise SyscallError(errno.ENOTDIR)
                ftype = child.dentry.inode.mode & S_IFMT
            if ftype != S_IFDIR:
                raise SyscallError(errno.ENOTDIR)
            vd = child
        return vd, parts[-1], path.endswith(b"/")

    def _resolve(self, t, start, path, follow, walk):
        parent, name, slash = self._walk_parent(t, start, path, walk)
        if name is None:
            return parent
        vd = self._step(t, parent, name)
        if vd.dentry.inode.mode & S_IFMT == S_IFLNK and (follow or slash):
            res = self._follow(t, parent, vd, walk)
            if not isinstance(res, VDentry):
                if slash:
                    raise SyscallError(errno.ENOTDIR)
                return res
            vd = res
        if slash and not vd.inode.is_dir():
            raise SyscallError(errno.ENOTDIR)
        return vd

    def resolve(self, t, path, dirfd=AT_FDCWD, follow=True):
        """The VDentry `path` names (or a FileDescription, for a procfs magic
        link to a pathless file such as a pipe)."""
        start = self._start(t, path, dirfd) if path else None
        return self._resolve(t, start, path, follow, _Walk())

    def resolve_vd(self, t, path, dirfd=AT_FDCWD, follow=True):
        """Like resolve(), but a pathless file gives ENOENT."""
        res = self.resolve(t, path, dirfd, follow)
        if not isinstance(res, VDentry):
            raise SyscallError(errno.ENOENT)
        return res

    def resolve_parent(self, t, path, dirfd=AT_FDCWD):
        """(parent VDentry, last name or None, trailing slash) for creations."""
        start = self._start(t, path, dirfd) if path else None
        return self._walk_parent(t, start, path, _Walk())

    def lookup_child(self, t, parent, name):
        """The child VDentry or None if it does not exist."""
        try:
            return self._step(t, parent, name)
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                return None
            raise

    # --- open -------------------------------------------------------------

    def open(self, t, path, flags, mode=0, dirfd=AT_FDCWD):
        """Implements open(2)'s path walk, creation and checks; returns a
        FileDescription with one reference owned by the caller."""
        if flags & _O_TMPFILE_BIT and not flags & O_PATH:     # O_PATH drops it
            return self._open_tmpfile(t, path, flags, mode, dirfd)
        start = self._start(t, path, dirfd) if path else None
        return self._open(t, start, path, flags, mode, _Walk())

    def _open_tmpfile(self, t, path, flags, mode, dirfd):
        """open(2) O_TMPFILE: an unnamed regular file in the directory
        `path`, which linkat(2) may name later unless O_EXCL was given.
        EINVAL without O_DIRECTORY, with O_CREAT, or without write
        access (fs/open.c build_open_flags); then ENOTDIR, EROFS, EACCES
        and EOPNOTSUPP (a file system without unnamed files) in Linux's order."""
        if flags & (O_TMPFILE | O_CREAT) != O_TMPFILE \
                or flags & O_ACCMODE not in (O_WRONLY, O_RDWR):
            raise SyscallError(errno.EINVAL)
        at = self.resolve_vd(t, path, dirfd, not flags & O_NOFOLLOW)
        if not at.inode.is_dir():
            raise SyscallError(errno.ENOTDIR)
        if at.inode.fs.read_only:
            raise SyscallError(errno.EROFS)
        creds = creds_of(t)
        check_access(at.inode, creds, W_OK | X_OK)
        inode = at.inode.tmpfile(mode & ~_umask(t) & 0o7777, *fs_ids(creds))
        inode.linkable = not flags & O_EXCL
        from .inode import Dentry
        dentry = Dentry(b"#%d" % inode.ino, at.dentry, inode)
        dentry.deleted = True
        return inode.open(t, VDentry(at.mount, dentry),
                          flags & ~(O_TMPFILE | O_CREAT | O_EXCL | O_TRUNC))

    def _open(self, t, start, path, flags, mode, walk):
        if flags & O_PATH:
            flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        if not flags & O_CREAT:
            res = self._resolve(t, start, path, not flags & O_NOFOLLOW, walk)
            if not isinstance(res, VDentry):
                return res.reopen(t, flags)
            return self.open_vd(t, res, flags)
        parent, name, slash = self._walk_parent(t, start, path, walk)
        if name is None or name in (b".", b".."):
            raise SyscallError(errno.EISDIR)
        vd = self.lookup_child(t, parent, name)
        if vd is None:
            if slash:
                raise SyscallError(errno.EISDIR)
            return self._create(t, parent, name, flags, mode)
        if flags & O_EXCL:
            raise SyscallError(errno.EEXIST)
        if vd.inode.is_symlink():
            if flags & O_NOFOLLOW:
                raise SyscallError(errno.ELOOP)
            walk.links += 1
            if walk.links > MAXSYMLINKS:
                raise SyscallError(errno.ELOOP)
            target = vd.inode.get_link(t)
            if not isinstance(target, bytes):
                if isinstance(target, VDentry):
                    return self.open_vd(t, target, flags)
                return target.reopen(t, flags)
            # open(O_CREAT) through a dangling symlink creates its target.
            return self._open(t, parent, target, flags, mode, walk)
        if vd.inode.is_dir() or slash:
            raise SyscallError(errno.EISDIR)
        return self.open_vd(t, vd, flags)

    def _create(self, t, parent, name, flags, mode):
        creds = creds_of(t)
        check_access(parent.inode, creds, W_OK | X_OK)
        inode = parent.inode.create(name, mode & ~_umask(t) & 0o7777, *fs_ids(creds))
        vd = VDentry(parent.mount, parent.dentry.lookup(name))
        if _WATCHED[0]:
            notify_name(parent.dentry, name, IN_CREATE, False)
        f = inode.open(t, vd, flags & ~(O_TRUNC | O_CREAT | O_EXCL))
        if _WATCHED[0]:
            file_event(f, IN_OPEN)
        return f

    def open_vd(self, t, vd, flags):
        """Open an existing location: type and permission checks, O_TRUNC."""
        inode = vd.dentry.inode
        ftype = inode.mode & S_IFMT
        if flags & O_DIRECTORY and ftype != S_IFDIR:
            raise SyscallError(errno.ENOTDIR)     # O_PATH too (path lookup's LOOKUP_DIRECTORY)
        if flags & O_PATH:
            return PathFile(vd, flags)
        if ftype == S_IFLNK:
            raise SyscallError(errno.ELOOP)
        acc = flags & O_ACCMODE
        is_reg = ftype == S_IFREG
        wants_write = acc in (O_WRONLY, O_RDWR) or (flags & O_TRUNC and is_reg)
        if ftype == S_IFDIR and (acc in (O_WRONLY, O_RDWR) or flags & O_CREAT):
            raise SyscallError(errno.EISDIR)
        mask = (R_OK if acc in (O_RDONLY, O_RDWR) else 0) | (W_OK if wants_write else 0)
        check_access(inode, creds_of(t), mask)
        if wants_write and is_reg and inode.fs.read_only:
            raise SyscallError(errno.EROFS)
        f = inode.open(t, vd, flags)
        if _WATCHED[0]:
            file_event(f, IN_OPEN)
        if flags & O_TRUNC and is_reg:
            try:
                shm_truncate(f.vd.inode, 0)
            except SyscallError:
                f.decref()
                raise
            if _WATCHED[0]:
                file_event(f, IN_MODIFY)
        return f

    # --- creation and removal ---------------------------------------------

    def _new_name(self, t, path, dirfd, exists_errno=errno.EEXIST):
        parent, name, slash = self.resolve_parent(t, path, dirfd)
        if name is None or name in (b".", b".."):
            raise SyscallError(exists_errno)
        if self.lookup_child(t, parent, name) is not None:
            raise SyscallError(errno.EEXIST)
        check_access(parent.inode, creds_of(t), W_OK | X_OK)
        return parent, name, slash

    def mkdir(self, t, path, mode, dirfd=AT_FDCWD):
        """Implements mkdir(2)."""
        parent, name, _ = self._new_name(t, path, dirfd)
        creds = creds_of(t)
        parent.inode.mkdir(name, mode & ~_umask(t) & 0o1777, *fs_ids(creds))
        if _WATCHED[0]:
            _created(parent, name)

    def mknod(self, t, path, mode, rdev, dirfd=AT_FDCWD):
        """Implements mknod(2)."""
        parent, name, slash = self._new_name(t, path, dirfd)
        if slash:
            raise SyscallError(errno.ENOENT)
        creds = creds_of(t)
        ftype = mode & S_IFMT
        perm = mode & ~_umask(t) & 0o7777
        parent.inode.mknod(name, (ftype or S_IFREG) | perm, rdev, *fs_ids(creds))
        if _WATCHED[0]:
            _created(parent, name)

    def symlink(self, t, target, path, dirfd=AT_FDCWD):
        """Implements symlink(2)."""
        if not target:
            raise SyscallError(errno.ENOENT)
        parent, name, slash = self._new_name(t, path, dirfd)
        if slash:
            raise SyscallError(errno.ENOENT)
        creds = creds_of(t)
        parent.inode.symlink(name, target, *fs_ids(creds))
        if _WATCHED[0]:
            _created(parent, name)

    def link(self, t, oldpath, newpath, olddirfd=AT_FDCWD, newdirfd=AT_FDCWD, follow=False):
        """Implements linkat(2)."""
        self.link_vd(t, self.resolve_vd(t, oldpath, olddirfd, follow), newpath, newdirfd)

    def link_vd(self, t, old, newpath, newdirfd=AT_FDCWD):
        """linkat(2) of the file at `old` (a path's or an fd's with
        AT_EMPTY_PATH). A file with no name left is ENOENT unless it is an
        O_TMPFILE file opened without O_EXCL, which may be named once."""
        if old.inode.is_dir():
            raise SyscallError(errno.EPERM)
        parent, name, slash = self._new_name(t, newpath, newdirfd)
        if slash:
            raise SyscallError(errno.ENOENT)
        if parent.mount is not old.mount:
            raise SyscallError(errno.EXDEV)
        inode = old.inode
        if inode.nlink == 0 and not getattr(inode, "linkable", False):
            raise SyscallError(errno.ENOENT)
        parent.inode.link(name, inode)
        inode.linkable = False
        if _WATCHED[0]:
            notify_self(inode, IN_ATTRIB)      # fsnotify_link: the link count, then the name
            notify_name(parent.dentry, name, IN_CREATE, False)

    def _existing_child(self, t, path, dirfd):
        parent, name, slash = self.resolve_parent(t, path, dirfd)
        if name is None:
            return parent, None, None, slash
        if name in (b".", b".."):
            return parent, name, None, slash
        child = self._step(t, parent, name)
        return parent, name, child, slash

    def unlink(self, t, path, dirfd=AT_FDCWD):
        """Implements unlink(2)."""
        parent, name, child, slash = self._existing_child(t, path, dirfd)
        if child is None:
            raise SyscallError(errno.EISDIR)
        if child.inode.is_dir():
            raise SyscallError(errno.EISDIR)
        if slash:
            raise SyscallError(errno.ENOTDIR)
        self._check_busy(child, parent)
        self._may_delete(t, parent, child)
        parent.inode.unlink(name, child.inode)
        parent.dentry.forget(name)
        if _WATCHED[0]:
            self._notify_removed(parent, name, child.inode, True)

    def rmdir(self, t, path, dirfd=AT_FDCWD):
        """Implements rmdir(2)."""
        parent, name, child, _ = self._existing_child(t, path, dirfd)
        if name is None:
            raise SyscallError(errno.EBUSY)
        if name == b".":
            raise SyscallError(errno.EINVAL)
        if name == b"..":
            raise SyscallError(errno.ENOTEMPTY)
        if not child.inode.is_dir():
            raise SyscallError(errno.ENOTDIR)
        self._check_busy(child, parent)
        if not child.inode.is_empty_dir():
            raise SyscallError(errno.ENOTEMPTY)
        self._may_delete(t, parent, child)
        parent.inode.rmdir(name, child.inode)
        parent.dentry.forget(name)
        if _WATCHED[0]:
            self._notify_removed(parent, name, child.inode, False)

    @staticmethod
    def _notify_removed(parent, name, inode, counted):
        """vfs_unlink/vfs_rmdir's events: IN_ATTRIB for the link count (unlink
        only), IN_DELETE_SELF and IN_IGNORED when no link is left, then
        IN_DELETE in the directory."""
        if counted:
            notify_self(inode, IN_ATTRIB)
        link_dropped(inode)
        notify_name(parent.dentry, name, IN_DELETE, inode.is_dir())

    @staticmethod
    def _may_delete(t, parent, child):
        """Write+search on the directory, and the sticky-bit rule: in a
        sticky directory (/tmp) only root or the owner of the file or of
        the directory may remove or replace a name."""
        creds = creds_of(t)
        check_access(parent.inode, creds, W_OK | X_OK)
        if (parent.inode.mode & 0o1000 and not is_owner(child.inode, creds)
                and fs_ids(creds)[0] != parent.inode.uid):
            raise SyscallError(errno.EPERM)

    def _check_busy(self, child, parent):
        # A mount root, or a name whose dentry something is mounted on.
        if child.dentry is child.mount.root or child.mount is not parent.mount:
            raise SyscallError(errno.EBUSY)
        if self.mounts.is_mountpoint(child):
            raise SyscallError(errno.EBUSY)

    def rename(self, t, oldpath, newpath, olddirfd=AT_FDCWD, newdirfd=AT_FDCWD, flags=0):
        """Implements renameat2(2) (RENAME_NOREPLACE; no EXCHANGE/WHITEOUT)."""
        if flags & ~RENAME_NOREPLACE:
            raise SyscallError(errno.EINVAL)
        oparent, oname, oslash = self.resolve_parent(t, oldpath, olddirfd)
        nparent, nname, nslash = self.resolve_parent(t, newpath, newdirfd)
        if oname in (None, b".", b"..") or nname in (None, b".", b".."):
            raise SyscallError(errno.EBUSY)
        child = self._step(t, oparent, oname)
        if oparent.mount is not nparent.mount:
            raise SyscallError(errno.EXDEV)
        victim = self.lookup_child(t, nparent, nname)
        if victim is not None and flags & RENAME_NOREPLACE:
            raise SyscallError(errno.EEXIST)
        is_dir = child.inode.is_dir()
        if not is_dir and (oslash or nslash):
            raise SyscallError(errno.ENOTDIR)
        self._check_busy(child, oparent)
        if victim is not None:
            if victim.inode is child.inode:
                return
            self._check_busy(victim, nparent)
            if is_dir:
                if not victim.inode.is_dir():
                    raise SyscallError(errno.ENOTDIR)
                if not victim.inode.is_empty_dir():
                    raise SyscallError(errno.ENOTEMPTY)
            elif victim.inode.is_dir():
                raise SyscallError(errno.EISDIR)
        if is_dir and self._is_ancestor(child.dentry, nparent.dentry):
            raise SyscallError(errno.EINVAL)
        self._may_delete(t, oparent, child)
        if victim is not None:
            self._may_delete(t, nparent, victim)
        else:
            check_access(nparent.inode, creds_of(t), W_OK | X_OK)
        oparent.inode.rename(oname, child.inode, nparent.inode, nname,
                             victim.inode if victim is not None else None)
        self._move_dentry(oparent.dentry, oname, nparent.dentry, nname)
        if _WATCHED[0]:
            cookie = new_cookie()
            notify_name(oparent.dentry, oname, IN_MOVED_FROM, is_dir, cookie)
            notify_name(nparent.dentry, nname, IN_MOVED_TO, is_dir, cookie)
            if victim is not None:
                notify_self(victim.inode, IN_ATTRIB)
            notify_self(child.inode, IN_MOVE_SELF)
            if victim is not None:
                link_dropped(victim.inode)

    @staticmethod
    def _is_ancestor(a, d):
        while d is not None:
            if d is a:
                return True
            d = d.parent
        return False

    @staticmethod
    def _move_dentry(oldp, oname, newp, nname):
        d = oldp.children.pop(oname, None)
        newp.forget(nname)
        if d is not None:
            d.name, d.parent = nname, newp
            if newp.inode.fs.cache_dentries:
                newp.children[nname] = d

    # --- attributes -------------------------------------------------------

    def readlink(self, t, path, dirfd=AT_FDCWD):
        """Implements readlink(2): the link's own contents."""
        vd = self.resolve_vd(t, path, dirfd, follow=False)
        if not vd.inode.is_symlink():
            raise SyscallError(errno.EINVAL)
        return vd.inode.readlink(t)

    def stat(self, t, path, dirfd=AT_FDCWD, follow=True):
        """Implements stat(2)/lstat(2): a Stat."""
        res = self.resolve(t, path, dirfd, follow)
        if isinstance(res, VDentry):
            st = res.inode.stat()
            st.mnt_id = res.mount.id
            return st
        return res.stat()

    def access(self, t, path, mode, dirfd=AT_FDCWD, follow=True, effective=False):
        """Implements faccessat2(2); real ids unless AT_EACCESS."""
        res = self.resolve(t, path, dirfd, follow)
        if not isinstance(res, VDentry):
            return
        creds = creds_of(t)
        check_access(res.inode, creds, mode & 7, real=not effective)
        if mode & W_OK and res.inode.fs.read_only and not res.inode.is_symlink():
            raise SyscallError(errno.EROFS)

    def setattr(self, t, path, dirfd=AT_FDCWD, follow=True, **attrs):
        """chmod/chown/utimes on a path."""
        vd = self.resolve_vd(t, path, dirfd, follow)
        vd.inode.setattr(**attrs)
        if _WATCHED[0]:
            notify(vd.inode, vd.dentry.parent, vd.dentry.name, IN_ATTRIB)

    def truncate(self, t, path, length):
        """Implements truncate(2)."""
        if length < 0:
            raise SyscallError(errno.EINVAL)
        vd = self.resolve_vd(t, path)
        if vd.inode.is_dir():
            raise SyscallError(errno.EISDIR)
        if not vd.inode.is_reg():
            raise SyscallError(errno.EINVAL)
        check_access(vd.inode, creds_of(t), W_OK)
        shm_truncate(vd.inode, length)
        if _WATCHED[0]:
            notify(vd.inode, vd.dentry.parent, vd.dentry.name, IN_MODIFY)

    def statfs(self, t, path):
        return self.resolve_vd(t, path).inode.fs.statfs()

    def path_of(self, t, vd):
        """Path of `vd` as the task sees it (relative to its root)."""
        return vd_path(vd, self._root_of(t))
