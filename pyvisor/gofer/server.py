"""The Gofer: serves host directory trees over 9P2000.L, read-only or read-write.

The Gofer is its own process (``python -m pyvisor.gofer``). It knows
nothing of the Sentry: it answers 9P2000.L requests on a Unix stream
socket until the socket closes.

Exports
-------
One Gofer serves several trees: the root (attached with aname "" or "/")
and each volume (attached with its name). Every tree is opened (an O_PATH
fd) before the Gofer chroots into the root, and everything in a tree is
named relative to that fd, so a chrooted Gofer still reaches each volume
and nothing beside it. Each tree is read-only or read-write; every
mutation on a read-only tree is EROFS.

Confinement
-----------
The tree is the only thing the Gofer will name. Every fid holds an
``O_PATH`` fd, and a walk moves one component at a time with
``openat(parent, name, O_PATH|O_NOFOLLOW)``, so:

* a name that is empty, holds ``/`` or NUL is EINVAL: one component only;
* a symlink is never followed. Walking onto one gives the link itself (its
  qid says QTSYMLINK); walking *through* one fails with ENOTDIR, because the
  link's O_PATH fd is not a directory; Treadlink returns its target, and
  the Sentry resolves links itself, inside its own mount table;
* ``..`` is not asked of the host. Each fid remembers its path from the
  root as a tuple of names, and ``..`` re-walks the parent's path from the
  root, so ``..`` at the root stays at the root and a directory that the
  host renames out of the tree cannot lead a walk out with it. (N.B. after
  such a rename ``..`` follows the path the fid was walked by.)
* Tlopen never opens by name: it re-opens the fid's own inode through
  ``/proc/self/fd/N`` after checking (race-free: an inode's type never
  changes) that it is a regular file or a directory. Symlinks give ELOOP
  (as open(2) with O_NOFOLLOW does); device nodes, FIFOs and sockets give
  EACCES, as on a ``nodev`` mount, so the Gofer can never block on a FIFO
  or touch a device.
* On a read-only tree an open for writing or with O_TRUNC gives EROFS,
  as do the 9P2000.L mutations (Tmkdir, Tsetattr, ...).
* A name that a mutation creates or removes (Tlcreate, Tmkdir, Tmknod,
  Tsymlink, Tlink, Trenameat, Tunlinkat) is one component, never "." or
  "..", taken relative to the directory fid's O_PATH fd: the host's
  *at() calls never follow a symlink in the final component (mkdirat,
  mknodat, symlinkat, unlinkat, renameat do not; linkat is called without
  AT_SYMLINK_FOLLOW; Tlcreate opens with O_CREAT|O_EXCL|O_NOFOLLOW).
  Attribute changes (Tsetattr) act on the fid's own inode through
  /proc/self/fd, as Tlopen does, and refuse symlinks for size.
* Tmknod makes regular files, FIFOs and sockets, as mknod(2) does;
  device nodes are EPERM (the Gofer holds no CAP_MKNOD, and would refuse
  them anyway).
* Ownership: the Gofer creates files as itself (its fsuid, the invoking
  user on the host, or root when pyvisor runs as root); the uid and gid
  a request asks for are not applied at creation, and Tsetattr's chown is
  the host's fchownat, which the Gofer's missing CAP_CHOWN bounds.

Extension: fd donation
----------------------
When Tlopen or Tlcreate opens a *regular file*, the reply
bytes go out in one ``sendmsg`` together with the opened host fd as
``SCM_RIGHTS`` ancillary data. The client can then ``pread`` or ``mmap``
the file with no further RPC; Tread on the fid keeps working too. A peer
that does not expect the fd loses nothing: a plain ``recv`` discards the
ancillary data and the kernel closes the fd. Directories are never donated.

Other choices
-------------
* Qid paths are inode numbers; a file on another device than the root gets
  its inode folded with a small per-device index and the top bit set, so
  qid paths stay unique across mount points inside the tree.
* Treaddir returns ``.`` and ``..`` first, as QEMU and diod do. A listing is
  snapshotted when read at offset 0, and an entry's offset is its index + 1,
  so offsets stay stable while the client pages through it.
* Errors from the host are returned as Rlerror with the host errno; an
  unexpected exception in a handler is a bug: it is logged to stderr and
  answered with Rlerror(EIO). A malformed frame (RemoteProtocolError)
  closes the connection.
"""

import ctypes
import errno
import fcntl
import os
import socket
import stat
import struct
import sys
import traceback

from . import p9

_O_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_RECV_SIZE = 1 << 16
_MASK64 = (1 << 64) - 1
_MAX_OFF = (1 << 63) - 1
_RREAD_OVERHEAD = p9.HEADER_SIZE + 4      # Rread: header + count[4]
_DT_UNKNOWN, _DT_DIR, _DT_REG, _DT_LNK = 0, 4, 8, 10
# Open flags a Tlopen/Tlcreate may pass on to the host: the access mode,
# O_TRUNC, and flags that change no semantics here. O_APPEND is dropped: the
# client computes the end itself (a host O_APPEND fd would make pwrite(2)
# ignore the offset); O_CREAT/O_EXCL come from Tlcreate only.
_OPEN_PASS = os.O_ACCMODE | os.O_TRUNC | os.O_DIRECTORY | os.O_NOATIME | os.O_DSYNC | os.O_SYNC
_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2
_XATTR_SIZE_MAX = 65536
_F_OFD_GETLK, _F_OFD_SETLK = 36, 37        # fcntl(2), Linux 3.15
_FLOCK = struct.Struct("hhqqi4x")          # struct flock on x86-64
_LOCK_TYPES = {p9.LOCK_RDLCK: fcntl.F_RDLCK, p9.LOCK_WRLCK: fcntl.F_WRLCK,
               p9.LOCK_UNLCK: fcntl.F_UNLCK}
_XATTR_OTHER = (b"trusted", b"security", b"system")

# The 9P2000.L requests we do not model, by what they would do (p9.py).
_UNSUPPORTED_ERRNO = {
    52: errno.EOPNOTSUPP,   # Tlock
    54: errno.EOPNOTSUPP,   # Tgetlock
}


class _Statfs(ctypes.Structure):
    """struct statfs on x86-64 (man statfs(2))."""
    _fields_ = [
        ("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long),
        ("f_blocks", ctypes.c_ulong), ("f_bfree", ctypes.c_ulong),
        ("f_bavail", ctypes.c_ulong), ("f_files", ctypes.c_ulong),
        ("f_ffree", ctypes.c_ulong), ("f_fsid", ctypes.c_int * 2),
        ("f_namelen", ctypes.c_long), ("f_frsize", ctypes.c_long),
        ("f_flags", ctypes.c_long), ("f_spare", ctypes.c_long * 4),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_fstatfs = _libc.fstatfs
_fstatfs.argtypes = (ctypes.c_int, ctypes.POINTER(_Statfs))


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_utimensat = _libc.utimensat
_utimensat.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec), ctypes.c_int)


def _fail(err: int):
    raise OSError(err, os.strerror(err))


def _check_name(name: bytes) -> None:
    """A walk name is one path component: non-empty, no '/', no NUL."""
    if not name or b"/" in name or b"\0" in name:
        _fail(errno.EINVAL)


def _check_new_name(name: bytes) -> None:
    """A name to create or remove: one component, and not "." or ".."."""
    _check_name(name)
    if name in (b".", b".."):
        _fail(errno.EINVAL)


def _writable_fd(fd: int) -> bool:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY


def _dtype(mode: int) -> int:
    # DT_* values are the S_IFMT bits shifted down (dirent.h).
    return stat.S_IFMT(mode) >> 12


class _Export:
    """One served tree: its root's O_PATH fd, device, and whether it is read-only."""

    __slots__ = ("fd", "dev", "read_only")

    def __init__(self, path, read_only: bool):
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.dev = os.fstat(self.fd).st_dev
        self.read_only = read_only


class _Fid:
    """One client fid: an O_PATH fd plus, once opened, an open fd.

    `export` is the tree it belongs to; `path` is the tuple of names from
    that tree's root (what `..` re-walks); `dirents` is the Treaddir
    snapshot of an open directory.
    """

    __slots__ = ("fd", "export", "path", "open_fd", "is_dir", "dirents", "xattr", "xattr_set")

    def __init__(self, fd: int, export: _Export, path: tuple):
        self.fd = fd
        self.export = export
        self.path = path
        self.xattr = None            # Txattrwalk: the value (or name list) Tread reads
        self.xattr_set = None        # Txattrcreate: [name, size, flags, bytearray] set at Tclunk
        self.open_fd = None
        self.is_dir = False
        self.dirents = None

    def close(self) -> None:
        os.close(self.fd)
        if self.open_fd is not None:
            os.close(self.open_fd)
            self.open_fd = None


class GoferServer:
    """Answers 9P2000.L requests against directory trees; does no socket I/O.

    `root` is attached with aname "" or "/" (read-only unless
    `root_read_only` is False); `mounts` maps further anames (bytes) to
    (host directory, read_only). `handle(msg)` returns the encoded reply
    and the host fd to donate with it (or None). `msize` is the
    negotiated message size.
    """

    def __init__(self, root, max_msize: int = p9.DEFAULT_MSIZE, mounts=None,
                 root_read_only: bool = True):
        self._exports = {}
        try:
            self._root = _Export(root, root_read_only)
            self._exports[b""] = self._exports[b"/"] = self._root
            for name, (path, read_only) in (mounts or {}).items():
                self._exports[name] = _Export(path, read_only)
            # Opened now: the Gofer chroots into `root`, where /proc need not be.
            self._fd_dir = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            for fd in {id(e): e.fd for e in self._exports.values()}.values():
                os.close(fd)
            raise
        self._root_dev = self._root.dev
        self._devs = {}
        self._fids = {}
        self.max_msize = max_msize
        self.msize = max_msize
        self._versioned = False
        self._handlers = {
            p9.Tversion: self._version, p9.Tauth: self._auth,
            p9.Tattach: self._attach, p9.Tflush: self._flush,
            p9.Twalk: self._walk, p9.Tgetattr: self._getattr,
            p9.Tlopen: self._lopen, p9.Tread: self._read,
            p9.Twrite: self._write, p9.Treaddir: self._readdir,
            p9.Treadlink: self._readlink, p9.Tstatfs: self._statfs,
            p9.Tclunk: self._clunk, p9.Tunsupported: self._unsupported,
            p9.Tlcreate: self._lcreate, p9.Tmkdir: self._mkdir, p9.Tmknod: self._mknod,
            p9.Tsymlink: self._symlink, p9.Tlink: self._link, p9.Trenameat: self._renameat,
            p9.Tunlinkat: self._unlinkat, p9.Tsetattr: self._setattr, p9.Tfsync: self._fsync,
            # The older forms, by fid: a client uses Trenameat and Tunlinkat
            # (Linux's does, and falls back only on EOPNOTSUPP).
            p9.Trename: self._old_form, p9.Tremove: self._old_form,
            p9.Txattrwalk: self._xattrwalk, p9.Txattrcreate: self._xattrcreate,
            p9.Tlock: self._lock, p9.Tgetlock: self._getlock,
        }

    @property
    def nfids(self) -> int:
        """Fids currently live (for leak checks in tests)."""
        return len(self._fids)

    def close(self) -> None:
        """Closes every fid and the root."""
        self._clunk_all()
        for fd in {e.fd for e in self._exports.values()}:
            os.close(fd)
        os.close(self._fd_dir)

    def handle(self, msg):
        """Serves one request; returns (reply bytes, fd to donate or None).

        Never raises for a request: host errors become Rlerror(errno), a
        bug in a handler becomes Rlerror(EIO) and a report on stderr.
        """
        try:
            if not self._versioned and type(msg) is not p9.Tversion:
                _fail(errno.EPROTO)
            reply, fd = self._handlers[type(msg)](msg)
            return p9.encode(reply, self.msize), fd
        except OSError as exc:
            return p9.encode(p9.Rlerror(msg.tag, exc.errno or errno.EIO)), None
        except Exception:
            print("pyvisor-gofer: bug while serving %r:\n%s" % (msg, traceback.format_exc()),
                  file=sys.stderr, flush=True)
            return p9.encode(p9.Rlerror(msg.tag, errno.EIO)), None

    # -- helpers -------------------------------------------------------------

    def _get(self, fid: int) -> _Fid:
        f = self._fids.get(fid)
        if f is None:
            _fail(errno.EBADF)
        return f

    def _clunk_all(self) -> None:
        fids, self._fids = self._fids, {}
        for f in fids.values():
            f.close()

    def _qid(self, st) -> p9.Qid:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            qtype = p9.QTDIR
        elif stat.S_ISLNK(mode):
            qtype = p9.QTSYMLINK
        else:
            qtype = p9.QTFILE
        return p9.Qid(qtype, 0, self._qpath(st.st_dev, st.st_ino))

    def _qpath(self, dev: int, ino: int) -> int:
        if dev == self._root_dev:
            return ino & _MASK64
        index = self._devs.setdefault(dev, len(self._devs) + 1) & 0x7FFF
        return (1 << 63) | (index << 48) | (ino & ((1 << 48) - 1))

    def _open_path(self, export: _Export, path: tuple) -> int:
        """Returns an O_PATH fd for `path` walked from the export's root, links unfollowed."""
        fd = os.dup(export.fd)
        for name in path:
            try:
                nfd = os.open(name, _O_PATH, dir_fd=fd)
            finally:
                os.close(fd)
            fd = nfd
        return fd

    def _step(self, export: _Export, fd: int, path: tuple, name: bytes):
        """Walks one name from the directory `fd`; returns (new fd, new path)."""
        _check_name(name)
        if name == b"." or name == b"..":
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                _fail(errno.ENOTDIR)
            if name == b".":
                return os.dup(fd), path
            return self._open_path(export, path[:-1]), path[:-1]
        # openat fails with ENOTDIR by itself if fd is a file or a symlink.
        return os.open(name, _O_PATH, dir_fd=fd), path + (name,)

    # -- handlers: each returns (reply message, donated fd or None) ----------

    def _version(self, m):
        """Tversion: negotiates msize and resets the session (all fids go)."""
        if m.msize < p9.MIN_MSIZE:
            _fail(errno.EINVAL)
        self._clunk_all()
        self.msize = min(m.msize, self.max_msize)
        if m.version != p9.VERSION:
            self._versioned = False
            return p9.Rversion(m.tag, self.msize, b"unknown"), None
        self._versioned = True
        return p9.Rversion(m.tag, self.msize, p9.VERSION), None

    def _auth(self, m):
        _fail(errno.EOPNOTSUPP)      # no authentication: attach with NOFID

    def _attach(self, m):
        if m.afid != p9.NOFID:
            _fail(errno.EINVAL)
        export = self._exports.get(m.aname)
        if export is None:
            _fail(errno.ENOENT)      # not a tree we serve
        if m.fid in self._fids:
            _fail(errno.EINVAL)
        fd = os.dup(export.fd)
        self._fids[m.fid] = _Fid(fd, export, ())
        return p9.Rattach(m.tag, self._qid(os.fstat(fd))), None

    def _flush(self, m):
        # Requests are answered in order before the next is read, so by
        # the time a Tflush arrives the old request has been answered.
        return p9.Rflush(m.tag), None

    def _walk(self, m):
        """Twalk: walks names one by one; a partial walk returns the qids so far."""
        src = self._get(m.fid)
        if src.open_fd is not None:
            _fail(errno.EBADF)       # walk(5): the fid must not be open
        if m.newfid != m.fid and m.newfid in self._fids:
            _fail(errno.EINVAL)
        # The walk starts from the source's own fd, which it never closes.
        fd, path, qids = src.fd, src.path, []
        try:
            for i, name in enumerate(m.wnames):
                try:
                    nfd, path = self._step(src.export, fd, path, name)
                except OSError:
                    if i == 0:
                        raise
                    os.close(fd)     # partial walk: newfid is not created
                    return p9.Rwalk(m.tag, tuple(qids)), None
                if fd != src.fd:
                    os.close(fd)
                fd = nfd
                qids.append(self._qid(os.fstat(fd)))
        except BaseException:
            if fd != src.fd:
                os.close(fd)
            raise
        if fd == src.fd:
            fd = os.dup(fd)          # no names: a clone, with its own fd
        if m.newfid == m.fid:
            src.close()
        self._fids[m.newfid] = _Fid(fd, src.export, path)
        return p9.Rwalk(m.tag, tuple(qids)), None

    def _getattr(self, m):
        """Tgetattr: lstat(2) of the fid (O_PATH fds fstat fine)."""
        f = self._get(m.fid)
        st = os.fstat(f.fd)
        atime, mtime, ctime = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return p9.Rgetattr(
            m.tag, p9.GETATTR_BASIC, self._qid(st), st.st_mode, st.st_uid, st.st_gid,
            st.st_nlink, st.st_rdev, st.st_size, st.st_blksize, st.st_blocks,
            # Times before 1970 go as two's complement, as Linux's client reads them.
            (atime // 1_000_000_000) & _MASK64, atime % 1_000_000_000,
            (mtime // 1_000_000_000) & _MASK64, mtime % 1_000_000_000,
            (ctime // 1_000_000_000) & _MASK64, ctime % 1_000_000_000,
        ), None

    def _lopen(self, m):
        """Tlopen: opens the fid's own inode; donates regular files."""
        f = self._get(m.fid)
        if f.open_fd is not None:
            _fail(errno.EBADF)
        writes = m.flags & os.O_ACCMODE != os.O_RDONLY or m.flags & os.O_TRUNC
        if writes and f.export.read_only:
            _fail(errno.EROFS)
        st = os.fstat(f.fd)
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            _fail(errno.ELOOP)
        if stat.S_ISDIR(mode):
            if writes:
                _fail(errno.EISDIR)
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        elif stat.S_ISREG(mode):
            if m.flags & os.O_DIRECTORY:
                _fail(errno.ENOTDIR)
            flags = (m.flags & _OPEN_PASS) | os.O_CLOEXEC
        else:
            _fail(errno.EACCES)      # devices, FIFOs, sockets: as on a nodev mount
        # The magic link reopens this very inode; no name is looked up.
        f.open_fd = os.open(str(f.fd), flags, dir_fd=self._fd_dir)
        f.is_dir = stat.S_ISDIR(mode)
        reply = p9.Rlopen(m.tag, self._qid(st), self.msize - p9.IOHDRSZ)
        return reply, (None if f.is_dir else f.open_fd)

    def _read(self, m):
        f = self._get(m.fid)
        if f.xattr is not None:
            return p9.Rread(m.tag, f.xattr[m.offset:m.offset + min(m.count, self.msize
                                                                    - _RREAD_OVERHEAD)]), None
        if f.open_fd is None:
            _fail(errno.EBADF)
        if m.offset > _MAX_OFF:
            _fail(errno.EINVAL)
        count = min(m.count, self.msize - _RREAD_OVERHEAD)
        return p9.Rread(m.tag, os.pread(f.open_fd, count, m.offset)), None

    def _write(self, m):
        f = self._get(m.fid)
        if f.xattr_set is not None:
            _name, size, _flags, buf = f.xattr_set
            if m.offset > len(buf) or m.offset + len(m.data) > size:
                _fail(errno.EINVAL)
            buf[m.offset:m.offset + len(m.data)] = m.data
            return p9.Rwrite(m.tag, len(m.data)), None
        if f.open_fd is None or f.is_dir:
            _fail(errno.EBADF)
        if m.offset > _MAX_OFF:
            _fail(errno.EINVAL)
        return p9.Rwrite(m.tag, os.pwrite(f.open_fd, m.data, m.offset)), None

    def _readdir(self, m):
        """Treaddir: entries from a snapshot taken at offset 0."""
        f = self._get(m.fid)
        if f.open_fd is None:
            _fail(errno.EBADF)
        if not f.is_dir:
            _fail(errno.ENOTDIR)
        if m.offset == 0 or f.dirents is None:
            f.dirents = self._list_dir(f)
        room = min(m.count, self.msize - _RREAD_OVERHEAD)
        out, used = [], 0
        for index in range(min(m.offset, len(f.dirents)), len(f.dirents)):
            qid, dtype, name = f.dirents[index]
            size = p9.dirent_size(name)
            if used + size > room:
                break
            out.append(p9.pack_dirent(qid, index + 1, dtype, name))
            used += size
        if not out and m.offset < len(f.dirents):
            _fail(errno.EINVAL)      # as getdents(2): buffer too small for one entry
        return p9.Rreaddir(m.tag, b"".join(out)), None

    def _list_dir(self, f: _Fid) -> list:
        """Returns [(qid, dtype, name)] for ".", ".." and every entry."""
        st = os.fstat(f.fd)
        parent_fd = self._open_path(f.export, f.path[:-1])
        try:
            parent = os.fstat(parent_fd)
        finally:
            os.close(parent_fd)
        out = [(self._qid(st), _DT_DIR, b"."), (self._qid(parent), _DT_DIR, b"..")]
        with os.scandir(f.open_fd) as it:
            for entry in it:
                dtype = self._entry_dtype(entry)
                qtype = p9.QTDIR if dtype == _DT_DIR else p9.QTSYMLINK if dtype == _DT_LNK else p9.QTFILE
                qid = p9.Qid(qtype, 0, self._qpath(st.st_dev, entry.inode()))
                out.append((qid, dtype, os.fsencode(entry.name)))
        return out

    @staticmethod
    def _entry_dtype(entry) -> int:
        try:
            if entry.is_symlink():
                return _DT_LNK
            if entry.is_dir(follow_symlinks=False):
                return _DT_DIR
            if entry.is_file(follow_symlinks=False):
                return _DT_REG
            return _dtype(entry.stat(follow_symlinks=False).st_mode)
        except OSError:
            return _DT_UNKNOWN       # vanished while listing

    def _readlink(self, m):
        f = self._get(m.fid)
        if not stat.S_ISLNK(os.fstat(f.fd).st_mode):
            _fail(errno.EINVAL)      # as readlink(2) on a non-link
        # readlinkat(fd, "") reads the link an O_PATH|O_NOFOLLOW fd refers to.
        return p9.Rreadlink(m.tag, os.readlink(b"", dir_fd=f.fd)), None

    def _statfs(self, m):
        f = self._get(m.fid)
        buf = _Statfs()
        if _fstatfs(f.fd, ctypes.byref(buf)) != 0:
            _fail(ctypes.get_errno() or errno.EIO)
        fsid = (buf.f_fsid[0] & 0xFFFFFFFF) | ((buf.f_fsid[1] & 0xFFFFFFFF) << 32)
        return p9.Rstatfs(
            m.tag, buf.f_type & 0xFFFFFFFF, buf.f_bsize & 0xFFFFFFFF, buf.f_blocks,
            buf.f_bfree, buf.f_bavail, buf.f_files, buf.f_ffree, fsid,
            buf.f_namelen & 0xFFFFFFFF), None

    def _clunk(self, m):
        f = self._fids.pop(m.fid, None)
        if f is None:
            _fail(errno.EBADF)
        try:
            if f.xattr_set is not None:
                self._commit_xattr(f)
        finally:
            f.close()                # clunk(5): the fid goes even if the commit fails
        return p9.Rclunk(m.tag), None

    # -- extended attributes (user.* only) -------------------------------------
    #
    # Linux's xattr calls want a path or an open fd, and an O_PATH fd is
    # neither: the fid's inode is opened read-only (non-blocking) through
    # /proc/self/fd for the call. Only regular files and directories carry
    # user.* attributes (xattr(7)); only the user namespace is served: the
    # others would mean trusted.*/security.* on the host.

    def _on_inode(self, f: _Fid, fn):
        st = os.fstat(f.fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return None
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
        if stat.S_ISDIR(st.st_mode):
            flags |= os.O_DIRECTORY
        fd = os.open(str(f.fd), flags, dir_fd=self._fd_dir)
        try:
            return (fn(fd),)
        finally:
            os.close(fd)

    def _xattrwalk(self, m):
        """Txattrwalk: newfid reads the value of m.name, or the names (empty name)."""
        f = self._get(m.fid)
        if m.newfid != m.fid and m.newfid in self._fids:
            _fail(errno.EINVAL)
        if m.name:
            if not m.name.startswith(b"user."):
                _fail(errno.ENODATA if m.name.split(b".")[0] in _XATTR_OTHER else errno.EOPNOTSUPP)
            got = self._on_inode(f, lambda fd: os.getxattr(fd, m.name))
            if got is None:
                _fail(errno.ENODATA)
            value = got[0]
        else:
            got = self._on_inode(f, os.listxattr)
            names = [os.fsencode(n) for n in (got[0] if got else ()) if n.startswith("user.")]
            value = b"".join(n + b"\0" for n in names)
        nf = _Fid(os.dup(f.fd), f.export, f.path)
        nf.xattr = value
        if m.newfid == m.fid:
            f.close()
        self._fids[m.newfid] = nf
        return p9.Rxattrwalk(m.tag, len(value)), None

    def _xattrcreate(self, m):
        """Txattrcreate: the fid takes the value by Twrite; Tclunk sets it."""
        f = self._get(m.fid)
        if f.open_fd is not None or f.xattr is not None:
            _fail(errno.EBADF)
        if f.export.read_only:
            _fail(errno.EROFS)
        if not m.name.startswith(b"user.") or len(m.name) > 255:
            _fail(errno.EOPNOTSUPP if not m.name.startswith(b"user.") else errno.ERANGE)
        if m.size > _XATTR_SIZE_MAX:
            _fail(errno.E2BIG)
        if m.flags & ~(os.XATTR_CREATE | os.XATTR_REPLACE):
            _fail(errno.EINVAL)
        f.xattr_set = [m.name, m.size, m.flags, bytearray()]
        return p9.Rxattrcreate(m.tag), None

    def _commit_xattr(self, f: _Fid) -> None:
        """setxattr(2) of what the fid was given; a size of 0 removes the
        attribute (as QEMU's server reads Linux's client removexattr)."""
        name, size, flags, buf = f.xattr_set
        f.xattr_set = None
        if size == 0:
            done = self._on_inode(f, lambda fd: os.removexattr(fd, name))
        else:
            if len(buf) != size:
                _fail(errno.EINVAL)
            done = self._on_inode(f, lambda fd: os.setxattr(fd, name, bytes(buf), flags))
        if done is None:
            _fail(errno.EPERM)       # xattr(7): no user.* on links and special files

    # -- the write path ------------------------------------------------------

    def _writable_dir(self, fid: int) -> _Fid:
        """The directory fid a mutation names its entry in (EROFS on a read-only tree)."""
        d = self._get(fid)
        if d.open_fd is not None:
            _fail(errno.EBADF)
        if d.export.read_only:
            _fail(errno.EROFS)
        if not stat.S_ISDIR(os.fstat(d.fd).st_mode):
            _fail(errno.ENOTDIR)
        return d

    def _new_entry_qid(self, d: _Fid, name: bytes) -> p9.Qid:
        return self._qid(os.stat(name, dir_fd=d.fd, follow_symlinks=False))

    def _lcreate(self, m):
        """Tlcreate: creates and opens a regular file; the fid becomes it."""
        d = self._writable_dir(m.fid)
        _check_new_name(m.name)
        flags = (m.flags & _OPEN_PASS & ~os.O_DIRECTORY) | os.O_CREAT | os.O_EXCL | \
            os.O_NOFOLLOW | os.O_CLOEXEC
        open_fd = os.open(m.name, flags, m.mode & 0o7777, dir_fd=d.fd)
        try:
            path_fd = os.open(m.name, _O_PATH, dir_fd=d.fd)
        except BaseException:
            os.close(open_fd)
            raise
        st = os.fstat(open_fd)
        os.close(d.fd)
        d.fd, d.path, d.open_fd, d.is_dir = path_fd, d.path + (m.name,), open_fd, False
        reply = p9.Rlcreate(m.tag, self._qid(st), self.msize - p9.IOHDRSZ)
        return reply, open_fd

    def _mkdir(self, m):
        d = self._writable_dir(m.dfid)
        _check_new_name(m.name)
        os.mkdir(m.name, m.mode & 0o7777, dir_fd=d.fd)
        return p9.Rmkdir(m.tag, self._new_entry_qid(d, m.name)), None

    def _mknod(self, m):
        """Tmknod: regular files, FIFOs and sockets; devices are EPERM."""
        d = self._writable_dir(m.dfid)
        _check_new_name(m.name)
        kind = stat.S_IFMT(m.mode)
        if kind in (stat.S_IFCHR, stat.S_IFBLK):
            _fail(errno.EPERM)
        if kind not in (0, stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK):
            _fail(errno.EINVAL)      # as mknod(2) for a directory or an unknown type
        os.mknod(m.name, (kind or stat.S_IFREG) | (m.mode & 0o7777), 0, dir_fd=d.fd)
        return p9.Rmknod(m.tag, self._new_entry_qid(d, m.name)), None

    def _symlink(self, m):
        d = self._writable_dir(m.fid)
        _check_new_name(m.name)
        if not m.target or b"\0" in m.target:
            _fail(errno.ENOENT if not m.target else errno.EINVAL)
        os.symlink(m.target, m.name, dir_fd=d.fd)
        return p9.Rsymlink(m.tag, self._new_entry_qid(d, m.name)), None

    def _link(self, m):
        """Tlink: a new name for the fid's inode (never a directory)."""
        d = self._writable_dir(m.dfid)
        src = self._get(m.fid)
        _check_new_name(m.name)
        if src.export is not d.export:
            _fail(errno.EXDEV)
        if stat.S_ISDIR(os.fstat(src.fd).st_mode):
            _fail(errno.EPERM)
        # linkat(2) through the magic link names this very inode, symlinks
        # included (AT_SYMLINK_FOLLOW follows /proc's link, not the file's).
        os.link(str(src.fd), m.name, src_dir_fd=self._fd_dir, dst_dir_fd=d.fd,
                follow_symlinks=True)
        return p9.Rlink(m.tag), None

    def _renameat(self, m):
        old = self._writable_dir(m.olddirfid)
        new = self._writable_dir(m.newdirfid)
        _check_new_name(m.oldname)
        _check_new_name(m.newname)
        if old.export is not new.export:
            _fail(errno.EXDEV)
        os.rename(m.oldname, m.newname, src_dir_fd=old.fd, dst_dir_fd=new.fd)
        return p9.Rrenameat(m.tag), None

    def _unlinkat(self, m):
        d = self._writable_dir(m.dirfid)
        _check_new_name(m.name)
        if m.flags & ~p9.AT_REMOVEDIR:
            _fail(errno.EINVAL)
        if m.flags & p9.AT_REMOVEDIR:
            os.rmdir(m.name, dir_fd=d.fd)
        else:
            os.unlink(m.name, dir_fd=d.fd)
        return p9.Runlinkat(m.tag), None

    def _setattr(self, m):
        """Tsetattr: chmod, chown, truncate and utimes of the fid's inode."""
        f = self._get(m.fid)
        if f.export.read_only:
            _fail(errno.EROFS)
        v = m.valid
        st = os.fstat(f.fd)
        link = stat.S_ISLNK(st.st_mode)
        magic = str(f.fd)
        if v & p9.SETATTR_SIZE:
            if stat.S_ISDIR(st.st_mode):
                _fail(errno.EISDIR)
            if not stat.S_ISREG(st.st_mode):
                _fail(errno.EINVAL)
            if m.size > _MAX_OFF:
                _fail(errno.EINVAL)
            if f.open_fd is not None and _writable_fd(f.open_fd):
                os.ftruncate(f.open_fd, m.size)
            else:
                fd = os.open(magic, os.O_WRONLY | os.O_CLOEXEC, dir_fd=self._fd_dir)
                try:
                    os.ftruncate(fd, m.size)
                finally:
                    os.close(fd)
        if v & p9.SETATTR_MODE:
            if link:
                _fail(errno.EOPNOTSUPP)     # as fchmodat(AT_SYMLINK_NOFOLLOW) on a link
            os.chmod(magic, m.mode & 0o7777, dir_fd=self._fd_dir)
        if v & (p9.SETATTR_UID | p9.SETATTR_GID):
            uid = m.uid if v & p9.SETATTR_UID else -1
            gid = m.gid if v & p9.SETATTR_GID else -1
            os.chown(magic, uid, gid, dir_fd=self._fd_dir)
        if v & (p9.SETATTR_ATIME | p9.SETATTR_MTIME):
            times = (_Timespec * 2)()
            for i, (on, given, sec, nsec) in enumerate((
                    (p9.SETATTR_ATIME, p9.SETATTR_ATIME_SET, m.atime_sec, m.atime_nsec),
                    (p9.SETATTR_MTIME, p9.SETATTR_MTIME_SET, m.mtime_sec, m.mtime_nsec))):
                if not v & on:
                    times[i].tv_sec, times[i].tv_nsec = 0, _UTIME_OMIT
                elif not v & given:
                    times[i].tv_sec, times[i].tv_nsec = 0, _UTIME_NOW
                else:
                    if nsec >= 1_000_000_000:
                        _fail(errno.EINVAL)
                    times[i].tv_sec = sec - (1 << 64) if sec >= 1 << 63 else sec
                    times[i].tv_nsec = nsec
            if _utimensat(self._fd_dir, magic.encode(), times, 0) != 0:
                _fail(ctypes.get_errno() or errno.EIO)
        return p9.Rsetattr(m.tag), None

    def _fsync(self, m):
        f = self._get(m.fid)
        if f.open_fd is None:
            _fail(errno.EBADF)
        if m.datasync:
            os.fdatasync(f.open_fd)
        else:
            os.fsync(f.open_fd)
        return p9.Rfsync(m.tag), None

    def _old_form(self, m):
        if type(m) is p9.Tremove:
            f = self._fids.pop(m.fid, None)     # remove(5): the fid is clunked even on failure
            if f is not None:
                f.close()
        _fail(errno.EOPNOTSUPP)

    # -- record locks -----------------------------------------------------------
    #
    # A 9P lock is taken as an open file description lock (F_OFD_SETLK,
    # fcntl(2)) on the fid's open fd: it belongs to that fid, so it conflicts
    # with every other holder on the host (another fid, another sandbox's
    # Gofer, a host process's POSIX lock), and the Gofer never waits: a lock
    # that cannot be had now is answered LOCK_BLOCKED, and a client that wants
    # to wait asks again, as Linux's client does.

    def _flock_args(self, f: _Fid, type_: int, start: int, length: int) -> bytes:
        if f.open_fd is None or f.is_dir:
            _fail(errno.EBADF)
        kind = _LOCK_TYPES.get(type_)
        if kind is None or start > _MAX_OFF or length > _MAX_OFF:
            _fail(errno.EINVAL)
        return _FLOCK.pack(kind, os.SEEK_SET, start, length, 0)

    def _lock(self, m):
        f = self._get(m.fid)
        arg = self._flock_args(f, m.type, m.start, m.length)
        try:
            fcntl.fcntl(f.open_fd, _F_OFD_SETLK, arg)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return p9.Rlock(m.tag, p9.LOCK_BLOCKED), None
            raise
        return p9.Rlock(m.tag, p9.LOCK_SUCCESS), None

    def _getlock(self, m):
        f = self._get(m.fid)
        if m.type == p9.LOCK_UNLCK:
            _fail(errno.EINVAL)
        got = fcntl.fcntl(f.open_fd, _F_OFD_GETLK, self._flock_args(f, m.type, m.start, m.length))
        kind, _whence, start, length, pid = _FLOCK.unpack(got)
        if kind == fcntl.F_UNLCK:
            return p9.Rgetlock(m.tag, p9.LOCK_UNLCK, m.start, m.length, m.proc_id,
                               m.client_id), None
        back = {v: k for k, v in _LOCK_TYPES.items()}[kind]
        # The holder is elsewhere on the host: no proc_id of this client's.
        return p9.Rgetlock(m.tag, back, start, length, pid & 0xFFFFFFFF, b""), None

    def _unsupported(self, m):
        _fail(_UNSUPPORTED_ERRNO.get(m.type, errno.EROFS))


def _send(sock: socket.socket, data: bytes, fd) -> None:
    if fd is None:
        if data:
            sock.sendall(data)
        return
    sent = socket.send_fds(sock, [data], [fd])
    if sent < len(data):
        sock.sendall(data[sent:])


def _hang_up(sock: socket.socket) -> None:
    """Ends the connection for the peer too (the owner still closes the fd)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def serve(sock: socket.socket, root, confine=None, mounts=None) -> None:
    """Serves the tree `root` (read-only) and `mounts` (aname -> (dir,
    read_only)) on a connected Unix stream socket until EOF.

    ``confine()``, if given, runs once the trees are open and before the
    first request (the Gofer's chroot, capabilities and seccomp filter).
    """
    server = GoferServer(root, mounts=mounts)
    if confine is not None:
        confine()
    run(sock, server)


def run(sock: socket.socket, server: GoferServer) -> None:
    """Serves requests from sock with server until EOF; closes the server and
    shuts the connection down (the caller still owns and closes the fd).

    Returns on EOF, on a connection error, or after a malformed frame
    (logged to stderr). Never raises for anything the peer sends.
    """
    decoder = p9.Decoder(p9.REQUESTS, server.max_msize)
    try:
        while True:
            data = sock.recv(_RECV_SIZE)
            if not data:
                return
            try:
                messages = decoder.feed(data)
            except p9.RemoteProtocolError:
                messages = ()
            # Replies to requests that came in together go out together (one
            # write, one wake-up of the client); a donated fd goes with its own.
            batch = []
            for msg in messages:
                reply, fd = server.handle(msg)
                if fd is not None:
                    _send(sock, b"".join(batch), None)
                    batch = []
                    _send(sock, reply, fd)
                else:
                    batch.append(reply)
                decoder.msize = server.msize
            if batch:
                _send(sock, b"".join(batch), None)
            if decoder.error is not None:
                print("pyvisor-gofer: closing connection: %s" % decoder.error,
                      file=sys.stderr, flush=True)
                return
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        _hang_up(sock)
        server.close()
