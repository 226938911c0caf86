"""The filesystems the Gofer serves: the root (read-only, the overlay's
lower layer, or the root itself with --read-only) and each volume
(read-write or read-only, mounted at its sandbox path, not overlaid).

Each inode holds a walked 9P fid and the attributes fetched once with it
(Twalk and Tgetattr sent together on lookup): the attribute cache. When
lookups in a listed directory follow the listing's order, a lookup also
fetches the next names of the listing (`LOOKAHEAD`), all in one round
trip. Absent names are remembered too, since programs probe a lot of them
(ld.so's library search, $PATH lookups). Directory listings
are fetched once (Treaddir until empty) and cached. File data is read
through the host fd the Gofer donated with Rlopen (os.pread, no RPC), or
with Tread when there is none; `GoferClient.read` chooses.

Opened files are kept in a small LRU (`MAX_OPEN`): each holds a donated
host fd in the Sentry, and the Sentry's fd budget is finite. Reads run
under the fs lock so that eviction never closes an fd in use.

Walked fids are kept in an LRU too (`MAX_FIDS`): each is an O_PATH fd in
the Gofer, and a `find /usr` must not exhaust its fd limit. An inode whose
fid was evicted keeps its cached attributes and walks again from its
parent (by name) when it next needs one.

The write path (volumes): every change is an RPC, made first, and the
caches follow what the Gofer answered: a created or removed name drops the
directory's listing and its negative entry, and the attributes of every
inode the change touched are fetched again (Tgetattr). Data goes through
a second host fd the Gofer donates for writing (`_wopen`, O_RDWR, or
O_WRONLY for a file the user may not read), with pwrite, or Twrite where
the server donates none; the cached size and mtime follow each write.
Tlcreate's open file becomes the new inode's write handle, so a file
created with mode 0444 is writable through the fd that created it, as on
Linux.

File access modes (runsc's --file-access / --file-access-mounts):

- exclusive (`shared` False): the caches above are never invalidated from
  outside; the host tree is assumed not to change under a running sandbox
  except through it.
- shared: the host (or another sandbox on the same directory) may change
  the tree at any time. A path walk revalidates every name it uses in
  this file system: `revalidate` walks them again from the first
  directory it enters, in one round trip (`walk_getattr_each`: one Twalk
  of them all, and a Tgetattr of its end and of each cached directory on
  the way by its own fid). A name now
  naming another file (another inode number or type) gets a new inode and
  dentry, a vanished one is forgotten (ENOENT), a new one is found; a
  file still there takes the fresh attributes, so the page cache, keyed
  by size, mtime and ctime (mm/pagecache.py), drops what it held of an
  older version. stat() of an inode the last walk did not just validate
  (fstat, an open file's size for O_APPEND or SEEK_END) asks for its
  attributes again, and directory listings are fetched on every
  readdir, never cached. Open files keep their donated host fds, so
  their reads always see the host's current data.
"""

import errno
import os
import threading
import time
from collections import OrderedDict

from ..errors import SyscallError
from .inode import Filesystem, Inode
from .pipe import open_fifo
from .stat import S_IFDIR, S_IFIFO, S_IFMT, V9FS_MAGIC, Stat, StatFs

O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
READDIR_CHUNK = 1 << 16
MAX_OPEN = 64
MAX_FIDS = 4096
LOOKAHEAD = 31


def _err(e):
    return SyscallError(e.errno)


class GoferFS(Filesystem):
    name = b"9p"
    magic = V9FS_MAGIC
    read_only = True

    def __init__(self, client, aname=b"", read_only=True, shared=False, host_locks=False):
        from pyvisor.gofer import p9
        from pyvisor.gofer.client import GoferError
        super().__init__()
        self.client = client
        self.read_only = read_only
        self.shared = shared              # file access mode (module doc)
        self.fresh = None                 # the inode the last revalidation ended on
        self.p9 = p9
        self.GoferError = GoferError
        self.lock = threading.RLock()
        self.open_lru = OrderedDict()     # GoferInode -> None, most recent last
        self.fid_lru = OrderedDict()      # GoferInode with a walked fid (not the root)
        # Volumes take their locks on the host too (HostLocker); the root's
        # stay in the Sentry, as does everything once the server refuses Tlock.
        self.no_host_locks = not host_locks
        try:
            node = client.attach(aname)
            self.root = GoferInode(self, node, client.getattr(node))
        except GoferError as e:
            raise _err(e) from e

    def revalidate(self, dentry, names, fresh):
        """Shared mode: revalidates `names` walked one after another from
        directory `dentry` (up to ".", "..", a non-directory or a mount
        point), in one round trip: one Twalk of them all from `dentry`'s
        fid (its qids say which inode each name names now) and a Tgetattr
        of where it ends; a Tgetattr of each cached directory on the way,
        by its own fid; a Twalk+Tgetattr of the names up to each directory
        not cached. The cached dentries and inodes then say what the host
        holds. Adds (dentry, name) to `fresh` for each name it settled. A
        cached directory found replaced is forgotten, and the names after
        it are left to the walk (its own lookup, then another call): what
        was asked of it was asked of the old one."""
        client = self.client
        with self.lock:
            chain, olds, d = [], [], dentry
            for n in names:
                if n in (b".", b"..") or len(n) > 255 or len(chain) == self.p9.MAXWELEM:
                    break
                chain.append(n)
                d = d.children.get(n) if d is not None else None
                old = d.inode if d is not None else None
                olds.append(old if isinstance(old, GoferInode) and old.fs is self else None)
                if d is not None and (d.mounted or not d.inode.is_dir()):
                    break
            if not chain:
                return
            try:
                base = dentry.inode.node_locked()
                walks, nodes = [(base, tuple(chain))], []
                for i, old in enumerate(olds[:-1]):
                    if old is not None and old._node is not None:
                        nodes.append(old._node)
                    else:
                        walks.append((base, tuple(chain[:i + 1])))
                walked, got = client.walk_getattr_each(walks, nodes)
            except (self.GoferError, SyscallError):
                return                    # the walk itself says what is wrong
            whole, prefixes, gets = walked[0], iter(walked[1:]), iter(got)
            qids = whole.qids if isinstance(whole, self.GoferError) else whole[2]
            d, last = dentry, len(chain) - 1
            for i, n in enumerate(chain):
                if d is None:
                    break
                if i >= len(qids):         # the names walked end before this one
                    d, self.fresh = self._settle_locked(d, n, whole, fresh)
                    break
                if i == last:
                    node, attr, _ = whole
                    whole = None           # taken
                    d, self.fresh = self._settle_locked(d, n, (node, attr), fresh)
                    break
                old = olds[i]
                if old is None or old._node is None:
                    res = next(prefixes)
                    d, self.fresh = self._settle_locked(d, n, res[:2] if type(res) is tuple
                                                        else res, fresh)
                    continue
                attr = next(gets)
                if isinstance(attr, self.GoferError) or d.inode._children.get(n) is not old or not (
                        old.ino == qids[i].path == attr.ino and attr.mode & S_IFMT == S_IFDIR):
                    self._forget_locked(d, n)      # another directory now: looked up afresh
                    break
                d, self.fresh = self._settle_locked(d, n, (None, attr), fresh)
            for res in (whole, *prefixes):         # what the walk did not get to
                if type(res) is tuple:
                    client.clunk_later(res[0])

    def _forget_locked(self, d, name):
        """Directory dentry `d`'s child `name` names something else now:
        dropped from the caches, to be looked up again."""
        old = d.inode._children.pop(name, None)
        if old is not None:
            old._stale = True
        cached = d.children.get(name)
        if cached is not None and not cached.mounted:
            d.forget(name)

    def _settle_locked(self, d, name, res, fresh):
        """Applies one revalidation result to directory dentry `d`'s child
        `name`: (that child's dentry to go on from, or None to stop there;
        its inode, or None)."""
        parent = d.inode
        cached = d.children.get(name)
        if isinstance(res, self.GoferError):
            if res.errno != errno.ENOENT:
                return None, None
            old = parent._children.pop(name, None)
            if old is not None:
                old._stale = True
            parent._missing.add(name)
            if cached is not None and not cached.mounted:
                d.forget(name)
            fresh.add((d, name))
            return None, None
        node, attr = res
        old = parent._children.get(name)
        same = old is not None and old.ino == attr.ino and old.mode & S_IFMT == attr.mode & S_IFMT
        if same:
            old._apply(attr)
            old._stale = False
            if node is not None:
                self.client.clunk_later(node)
        else:
            if cached is not None and not cached.mounted:
                d.forget(name)
                cached = None
            new = parent._children[name] = GoferInode(self, node, attr, parent, name)
            new._track_locked()
            if cached is not None:        # a mount point keeps its dentry
                cached.inode = new
        parent._missing.discard(name)
        fresh.add((d, name))
        child = d.lookup(name)
        if child.mounted or not child.inode.is_dir():
            return None, child.inode
        return child, child.inode

    def statfs(self):
        try:
            with self.lock:
                s = self.client.statfs(self.root.node_locked())
        except self.GoferError as e:
            raise _err(e) from e
        return StatFs(f_type=self.magic, f_bsize=s.bsize, f_blocks=s.blocks, f_bfree=s.bfree,
                      f_bavail=s.bavail, f_files=s.files, f_ffree=s.ffree,
                      f_fsid=(self.dev, 0), f_namelen=s.namelen, f_frsize=s.bsize,
                      f_flags=1 if self.read_only else 0)     # ST_RDONLY


def _ns(ts):
    return ts[0] * 1_000_000_000 + ts[1]


def _set_ns(fields, key):
    """The time a Tsetattr's fields set, in ns (seconds as two's complement)."""
    sec = fields[key + "_sec"]
    return (sec - (1 << 64) if sec >= 1 << 63 else sec) * 1_000_000_000 + fields[key + "_nsec"]


class GoferInode(Inode):
    """A file on the Gofer's tree, with its attributes cached."""

    def __init__(self, fs, node, attr, parent=None, name=b""):
        super().__init__(fs, attr.ino, attr.mode, attr.uid, attr.gid, attr.nlink, attr.rdev)
        self._node = node
        self.parent = parent              # GoferInode, None for the root
        self.name = name
        self.attr = attr
        self.atime_ns, self.mtime_ns, self.ctime_ns = _ns(attr.atime), _ns(attr.mtime), _ns(attr.ctime)
        self._wopen = None                # the write handle (volumes)
        self._children = {}
        self._missing = set()
        self._listing = None
        self._position = None             # name -> index in _listing, built on demand
        self._last_index = -2             # listing index of the last lookup (see _lookahead_locked)
        self._open = None
        self._target = None
        self._stale = False               # a change here left attributes to fetch (stat does)

    def size(self):
        if self._stale:
            with self.fs.lock:
                if self._stale:
                    self._refresh_locked()
        return self.attr.size

    def stat(self):
        fs = self.fs
        if fs.shared:
            if fs.fresh is self:
                fs.fresh = None           # just revalidated by the walk that found it
            else:
                self._stale = True
        if self._stale:
            with fs.lock:
                if self._stale:
                    self._refresh_locked()
        a = self.attr
        return Stat(st_mode=a.mode, st_ino=a.ino, st_dev=self.fs.dev, st_nlink=a.nlink,
                    st_uid=a.uid, st_gid=a.gid, st_rdev=a.rdev, st_size=a.size,
                    st_blksize=a.blksize or 4096, st_blocks=a.blocks,
                    st_atime_ns=self.atime_ns, st_mtime_ns=self.mtime_ns,
                    st_ctime_ns=self.ctime_ns)

    def lookup(self, name):
        if not self.is_dir():
            raise SyscallError(errno.ENOTDIR)
        fs = self.fs
        with fs.lock:
            child = self._children.get(name)
            if child is not None:
                return child
            if name in self._missing:
                raise SyscallError(errno.ENOENT)
            names = self._lookahead_locked(name)
            try:
                results = fs.client.walk_getattr_many(self.node_locked(), names)
            except fs.GoferError as e:
                raise _err(e) from e
            for n, res in zip(names, results):
                if isinstance(res, fs.GoferError):
                    if res.errno == errno.ENOENT:
                        self._missing.add(n)
                    continue
                child = self._children[n] = GoferInode(fs, res[0], res[1], self, n)
                child._track_locked()
            child = self._children.get(name)
            if child is None:
                raise _err(results[0])
            return child

    def _lookahead_locked(self, name):
        """`name`, and when lookups here follow this directory's listing in
        order, the names after it not looked up yet (at most LOOKAHEAD): a
        program that lists a directory and stats what it listed, in order
        (ls -l, find, tar, du), then needs one round trip for many names.
        Lookups in another order (Python's imports, after it lists a
        directory to cache it) fetch their own name only, as readahead
        waits for sequential reads."""
        if self._listing is None:
            return [name]
        if self._position is None:
            self._position = {n: i for i, (n, _ino, _dt) in enumerate(self._listing)}
        i = self._position.get(name)
        if i is None:
            return [name]
        sequential = i == self._last_index + 1
        self._last_index = i
        if not sequential:
            return [name]
        # Whatever the window held (cached or not) counts as read: the next
        # miss after it is still in order.
        self._last_index = i + LOOKAHEAD
        ahead = [n for n, _ino, _dt in self._listing[i + 1:i + 1 + LOOKAHEAD]
                 if n not in self._children and n not in self._missing]
        return [name] + ahead

    def node_locked(self):
        """This inode's fid, walking again from the parent if it was evicted.
        Precondition: fs.lock held."""
        if self.parent is None:
            return self._node
        if self._node is None:
            try:
                self._node = self.fs.client.walk(self.parent.node_locked(), [self.name])
            except self.fs.GoferError as e:
                raise _err(e) from e
        self._track_locked()
        return self._node

    def _track_locked(self):
        lru = self.fs.fid_lru
        lru[self] = None
        lru.move_to_end(self)
        while len(lru) > MAX_FIDS:
            old, _ = lru.popitem(last=False)
            node, old._node = old._node, None
            if node is not None:
                try:
                    self.fs.client.clunk_later(node)
                except self.fs.GoferError:
                    pass

    def readdir(self):
        if not self.is_dir():
            raise SyscallError(errno.ENOTDIR)
        fs = self.fs
        with fs.lock:
            if fs.shared:
                return self._fetch_listing()      # never cached: the host may change it
            if self._listing is None:
                self._listing = self._fetch_listing()
            return list(self._listing)

    def _fetch_listing(self):
        fs = self.fs
        try:
            o = fs.client.lopen(self.node_locked(), O_RDONLY)
        except fs.GoferError as e:
            raise _err(e) from e
        out, offset = [], 0
        try:
            while True:
                ents = fs.client.readdir(o, offset, READDIR_CHUNK)
                if not ents:
                    break
                for qid, next_off, dtype, name in ents:
                    if name not in (b".", b".."):
                        out.append((name, qid.path, dtype))
                    offset = next_off
        except fs.GoferError as e:
            raise _err(e) from e
        finally:
            fs.client.clunk_later(o)
        return out

    def _opened_locked(self):
        fs = self.fs
        if self._open is None:
            try:
                self._open = fs.client.lopen(self.node_locked(), O_RDONLY)
            except fs.GoferError as e:
                raise _err(e) from e
        self._track_open_locked()
        return self._open

    def _track_open_locked(self):
        """Marks this inode's open handles most recently used, closing the
        least recently used inode's (never this one's) past MAX_OPEN."""
        lru = self.fs.open_lru
        lru.pop(self, None)
        while len(lru) >= MAX_OPEN:
            old, _ = lru.popitem(last=False)
            old._close_locked()
        lru[self] = None

    def _close_locked(self):
        for o in (self._open, self._wopen):
            if o is not None:
                try:
                    self.fs.client.clunk_later(o)
                except self.fs.GoferError:
                    pass
        self._open = self._wopen = None

    def read_at(self, offset, n):
        if self.is_dir():
            raise SyscallError(errno.EISDIR)
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        fs = self.fs
        with fs.lock:
            o = self._opened_locked()
            try:
                return fs.client.read(o, offset, n)
            except fs.GoferError as e:
                raise _err(e) from e

    def read_into(self, buf, offset):
        """Straight into `buf` with preadv on the donated fd, when there is one."""
        if self.is_dir():
            raise SyscallError(errno.EISDIR)
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        fs = self.fs
        with fs.lock:
            o = self._opened_locked()
            if o.hostfd is None:
                return super().read_into(buf, offset)
            try:
                return os.preadv(o.hostfd, [buf], offset)
            except OSError as e:
                raise SyscallError(e.errno or errno.EIO) from e

    def readlink(self, t):
        if not self.is_symlink():
            raise SyscallError(errno.EINVAL)
        with self.fs.lock:
            if self._target is None:
                try:
                    self._target = self.fs.client.readlink(self.node_locked())
                except self.fs.GoferError as e:
                    raise _err(e) from e
            return self._target

    def open(self, t, vd, flags):
        """A FIFO is a pipe kept on the inode, as on tmpfs. N.B. it joins the
        sandbox's own readers and writers, not a host process's."""
        if self.mode & S_IFMT == S_IFIFO:
            return open_fifo(t, self, vd, flags)
        return super().open(t, vd, flags)

    # -- the write path (volumes) ---------------------------------------------

    def _apply(self, attr):
        """Takes fresh attributes from the Gofer."""
        self.attr = attr
        self.mode, self.uid, self.gid, self.nlink, self.rdev = (
            attr.mode, attr.uid, attr.gid, attr.nlink, attr.rdev)
        self.atime_ns, self.mtime_ns, self.ctime_ns = _ns(attr.atime), _ns(attr.mtime), _ns(attr.ctime)

    def _refresh_locked(self):
        """Fetches this inode's attributes again; a vanished file keeps its old ones."""
        self._stale = False
        try:
            self._apply(self.fs.client.getattr(self.node_locked()))
        except (self.fs.GoferError, SyscallError):
            pass

    def _changed_locked(self, name):
        """A name in this directory was created or removed: drop what the
        caches said about it; its attributes (mtime, nlink) are fetched
        when next asked for."""
        self._missing.discard(name)
        self._listing = self._position = None
        self._last_index = -2
        self._stale = True

    def _mutate(self, fn, *args):
        """Runs one write RPC on this directory; a read-only fs is EROFS."""
        fs = self.fs
        if not self.is_dir():
            raise SyscallError(errno.ENOTDIR)
        if fs.read_only:
            raise SyscallError(errno.EROFS)
        try:
            return fn(self.node_locked(), *args)
        except fs.GoferError as e:
            raise _err(e) from e

    def create(self, name, mode, uid, gid):
        """Tlcreate (O_RDWR|O_CREAT|O_EXCL), then Twalk+Tgetattr of the new name.
        N.B. the file is owned on the host by the Gofer's user (uid/gid unused)."""
        fs = self.fs
        with fs.lock:
            o = self._mutate(fs.client.lcreate, name, O_RDWR | os.O_CREAT | os.O_EXCL, mode, gid)
            self._changed_locked(name)
            try:
                child = self.lookup(name)
            except SyscallError:
                fs.client.clunk_later(o)
                raise
            child._close_locked()
            child._wopen = o
            child._track_open_locked()
            return child

    def mkdir(self, name, mode, uid, gid):
        with self.fs.lock:
            self._mutate(self.fs.client.mkdir, name, mode, gid)
            self._changed_locked(name)

    def symlink(self, name, target, uid, gid):
        with self.fs.lock:
            self._mutate(self.fs.client.symlink, name, target, gid)
            self._changed_locked(name)

    def mknod(self, name, mode, rdev, uid, gid):
        """Tmknod: regular files, FIFOs and sockets; the Gofer refuses devices (EPERM)."""
        with self.fs.lock:
            self._mutate(self.fs.client.mknod, name, mode, os.major(rdev), os.minor(rdev), gid)
            self._changed_locked(name)

    def link(self, name, inode):
        fs = self.fs
        if not isinstance(inode, GoferInode) or inode.fs is not fs:
            raise SyscallError(errno.EXDEV)
        with fs.lock:
            self._mutate(lambda d: fs.client.link(d, inode.node_locked(), name))
            self._changed_locked(name)
            inode._stale = True

    def _remove(self, name, child, flags):
        fs = self.fs
        with fs.lock:
            self._mutate(fs.client.unlinkat, name, flags)
            gone = self._children.pop(name, None)
            self._changed_locked(name)
            for inode in (gone, child):
                if isinstance(inode, GoferInode):
                    inode._stale = True

    def unlink(self, name, child=None):
        self._remove(name, child, 0)

    def rmdir(self, name, child=None):
        self._remove(name, child, self.fs.p9.AT_REMOVEDIR)

    def rename(self, oldname, child, newdir, newname, victim):
        fs = self.fs
        if not isinstance(newdir, GoferInode) or newdir.fs is not fs:
            raise SyscallError(errno.EXDEV)
        with fs.lock:
            self._mutate(lambda d: fs.client.renameat(d, oldname, newdir.node_locked(), newname))
            moved = self._children.pop(oldname, None)
            newdir._children.pop(newname, None)
            if moved is not None:
                moved.parent, moved.name = newdir, newname
                newdir._children[newname] = moved
            self._changed_locked(oldname)
            if newdir is not self:
                newdir._changed_locked(newname)
            else:
                self._missing.discard(newname)
            if isinstance(victim, GoferInode):
                victim._stale = True
            if moved is not None:
                moved._stale = True

    def setattr(self, mode=None, uid=None, gid=None, atime_ns=None, mtime_ns=None):
        """chmod/chown/utimes as one Tsetattr. What it set is applied here at
        once (permission checks read it); the rest (ctime) is fetched when
        next asked for."""
        fs = self.fs
        if fs.read_only:
            raise SyscallError(errno.EROFS)
        p9 = fs.p9
        valid, fields = 0, {}
        if mode is not None:
            valid |= p9.SETATTR_MODE
            fields["mode"] = mode & 0o7777
        if uid is not None and uid != 0xFFFFFFFF:
            valid |= p9.SETATTR_UID
            fields["uid"] = uid
        if gid is not None and gid != 0xFFFFFFFF:
            valid |= p9.SETATTR_GID
            fields["gid"] = gid
        for ns, on, given, key in ((atime_ns, p9.SETATTR_ATIME, p9.SETATTR_ATIME_SET, "atime"),
                                   (mtime_ns, p9.SETATTR_MTIME, p9.SETATTR_MTIME_SET, "mtime")):
            if ns is not None:
                valid |= on | given
                sec, nsec = divmod(ns, 1_000_000_000)
                fields[key + "_sec"], fields[key + "_nsec"] = sec & ((1 << 64) - 1), nsec
        self._setattr(valid, fields)

    def _setattr(self, valid, fields):
        fs = self.fs
        p9 = fs.p9
        with fs.lock:
            try:
                fs.client.setattr(self.node_locked(), valid, **fields)
            except fs.GoferError as e:
                raise _err(e) from e
            a = self.attr
            if valid & p9.SETATTR_MODE:
                a = a._replace(mode=(a.mode & S_IFMT) | fields["mode"])
            if valid & p9.SETATTR_UID:
                a = a._replace(uid=fields["uid"])
            if valid & p9.SETATTR_GID:
                a = a._replace(gid=fields["gid"])
            if valid & p9.SETATTR_SIZE:
                a = a._replace(size=fields["size"])
            atime, mtime = self.atime_ns, self.mtime_ns
            self._apply(a)
            self.atime_ns = _set_ns(fields, "atime") if valid & p9.SETATTR_ATIME_SET else atime
            self.mtime_ns = _set_ns(fields, "mtime") if valid & p9.SETATTR_MTIME_SET else mtime
            self.ctime_ns = time.time_ns()
            self._stale = True

    def truncate(self, size):
        if self.is_dir():
            raise SyscallError(errno.EISDIR)
        if self.fs.read_only:
            raise SyscallError(errno.EROFS)
        if size < 0:
            raise SyscallError(errno.EINVAL)
        self._setattr(self.fs.p9.SETATTR_SIZE, {"size": size})

    def _writable_locked(self):
        """The write handle, opened on first use (O_RDWR, else O_WRONLY)."""
        fs = self.fs
        if self._wopen is None:
            node = self.node_locked()
            try:
                try:
                    self._wopen = fs.client.lopen(node, O_RDWR)
                except fs.GoferError as e:
                    if e.errno != errno.EACCES:
                        raise
                    self._wopen = fs.client.lopen(node, O_WRONLY)
            except fs.GoferError as e:
                raise _err(e) from e
        self._track_open_locked()
        return self._wopen

    def write_at(self, offset, data):
        if self.is_dir():
            raise SyscallError(errno.EISDIR)
        fs = self.fs
        if fs.read_only:
            raise SyscallError(errno.EROFS)
        with fs.lock:
            o = self._writable_locked()
            try:
                n = fs.client.write(o, offset, data)
            except fs.GoferError as e:
                raise _err(e) from e
            if n:
                # What the host now holds: size grows, mtime and ctime move.
                t = time.time_ns()
                self.attr = self.attr._replace(size=max(self.attr.size, offset + n))
                self.mtime_ns = self.ctime_ns = t
            return n

    # -- extended attributes: user.* on the host, through the Gofer -----------

    def _xattr_rpc(self, fn, *args):
        fs = self.fs
        with fs.lock:
            try:
                return fn(self.node_locked(), *args)
            except fs.GoferError as e:
                raise _err(e) from e

    def getxattr(self, name):
        return self._xattr_rpc(self.fs.client.getxattr, name)

    def listxattr(self):
        return [n for n in self._xattr_rpc(self.fs.client.getxattr, b"").split(b"\0") if n]

    def setxattr(self, name, value, flags):
        if self.fs.read_only:
            raise SyscallError(errno.EROFS)
        self._xattr_rpc(self.fs.client.setxattr, name, value, flags)

    def removexattr(self, name):
        if self.fs.read_only:
            raise SyscallError(errno.EROFS)
        self.getxattr(name)               # ENODATA if absent, as removexattr(2)
        self._xattr_rpc(self.fs.client.removexattr, name)

    def host_locker(self):
        if not self.is_reg() or self.fs.no_host_locks:
            return None
        return HostLocker(self)

    def fsync(self):
        """Tfsync of the write handle (data written through it is the host's)."""
        fs = self.fs
        with fs.lock:
            if self._wopen is not None:
                try:
                    fs.client.fsync(self._wopen)
                except fs.GoferError as e:
                    raise _err(e) from e
        return 0


class HostLocker:
    """One file's locks on the host: the Sentry's LockTable grants a lock
    first, then holds the union of what the sandbox holds on the file
    through one fid of its own (the Gofer takes Tlock as an OFD lock on
    that fid, so it conflicts with host processes and other sandboxes, never
    with the sandbox itself). Linux's 9p client sends each lock as Tlock in
    the same way (fs/9p/vfs_file.c v9fs_file_do_lock), flock(2) as a lock
    of the whole file. The fid is opened on the first lock and clunked when
    the sandbox holds none (`close`)."""

    def __init__(self, inode):
        self.inode = inode
        self._open = None

    def _call(self, fn, *args):
        """fn(open handle, *args) under the fs lock; None if the server
        has no locks (EOPNOTSUPP: then they stay in the Sentry)."""
        fs = self.inode.fs
        with fs.lock:
            try:
                if self._open is None:
                    node = self.inode.node_locked()
                    try:
                        self._open = fs.client.lopen(node, O_RDWR)
                    except fs.GoferError as e:
                        if e.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                            raise
                        self._open = fs.client.lopen(node, O_RDONLY)
                return fn(self._open, *args)
            except fs.GoferError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.ENOSYS):
                    fs.no_host_locks = True
                    return None
                raise _err(e) from e

    def set(self, type_, start, length):
        """Tlock: False if a holder on the host has it. EBADF for a write
        lock when the host file is not writable (as an exclusive flock(2)
        over NFS)."""
        p9 = self.inode.fs.p9
        status = self._call(self.inode.fs.client.lock, type_, start, length)
        if status not in (None, p9.LOCK_SUCCESS, p9.LOCK_BLOCKED):
            raise SyscallError(errno.ENOLCK)      # LOCK_ERROR / LOCK_GRACE (diod)
        if status == p9.LOCK_SUCCESS and type_ != p9.LOCK_UNLCK:
            # What the last holder wrote is to be seen: the size and times
            # are fetched again on next use (NFS revalidates its caches when
            # it takes a lock in the same way, nfs(5) "File locking").
            self.inode._stale = True
        return status != p9.LOCK_BLOCKED

    def test(self, type_, start, length):
        """Tgetlock: None, or the host holder's (type, start, length, pid)."""
        r = self._call(self.inode.fs.client.getlock, type_, start, length)
        if r is None or r.type == self.inode.fs.p9.LOCK_UNLCK:
            return None
        return (r.type, r.start, r.length, r.proc_id)

    def close(self):
        fs = self.inode.fs
        with fs.lock:
            if self._open is not None:
                try:
                    fs.client.clunk(self._open)
                except fs.GoferError:
                    pass
                self._open = None
