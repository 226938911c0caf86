"""The Gofer: serves one host directory tree, read-only, over 9P2000.L.

The Gofer is its own process (``python -m pyvisor.gofer``). It knows
nothing of the Sentry: it answers 9P2000.L requests on a Unix stream
socket until the socket closes.

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
* Everything is read-only: an open for writing or with O_TRUNC gives
  EROFS, as do the 9P2000.L mutations (Tmkdir, Tsetattr, ...).

Extension: fd donation
----------------------
When Tlopen opens a *regular file* (always read-only here), the Rlopen
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
import os
import socket
import stat
import sys
import traceback

from . import p9

_O_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_RECV_SIZE = 1 << 16
_MASK64 = (1 << 64) - 1
_MAX_OFF = (1 << 63) - 1
_RREAD_OVERHEAD = p9.HEADER_SIZE + 4      # Rread: header + count[4]
_DT_UNKNOWN, _DT_DIR, _DT_REG, _DT_LNK = 0, 4, 8, 10

# The 9P2000.L requests we do not model, by what they would do (p9.py).
_UNSUPPORTED_ERRNO = {
    30: errno.EOPNOTSUPP,   # Txattrwalk
    50: errno.EBADF,        # Tfsync: no fid is ever open for writing
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


def _fail(err: int):
    raise OSError(err, os.strerror(err))


def _check_name(name: bytes) -> None:
    """A walk name is one path component: non-empty, no '/', no NUL."""
    if not name or b"/" in name or b"\0" in name:
        _fail(errno.EINVAL)


def _dtype(mode: int) -> int:
    # DT_* values are the S_IFMT bits shifted down (dirent.h).
    return stat.S_IFMT(mode) >> 12


class _Fid:
    """One client fid: an O_PATH fd plus, once opened, an open fd.

    `path` is the tuple of names from the root (what `..` re-walks);
    `dirents` is the Treaddir snapshot of an open directory.
    """

    __slots__ = ("fd", "path", "open_fd", "is_dir", "dirents")

    def __init__(self, fd: int, path: tuple):
        self.fd = fd
        self.path = path
        self.open_fd = None
        self.is_dir = False
        self.dirents = None

    def close(self) -> None:
        os.close(self.fd)
        if self.open_fd is not None:
            os.close(self.open_fd)
            self.open_fd = None


class GoferServer:
    """Answers 9P2000.L requests against one directory tree; does no socket I/O.

    `handle(msg)` returns the encoded reply and the host fd to donate with
    it (or None). `msize` is the negotiated message size.
    """

    def __init__(self, root, max_msize: int = p9.DEFAULT_MSIZE):
        self._root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        # Opened now: the Gofer chroots into `root`, where /proc need not be.
        self._fd_dir = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._root_dev = os.fstat(self._root_fd).st_dev
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
        }

    @property
    def nfids(self) -> int:
        """Fids currently live (for leak checks in tests)."""
        return len(self._fids)

    def close(self) -> None:
        """Closes every fid and the root."""
        self._clunk_all()
        os.close(self._root_fd)
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

    def _open_path(self, path: tuple) -> int:
        """Returns an O_PATH fd for `path` walked from the root, links unfollowed."""
        fd = os.dup(self._root_fd)
        for name in path:
            try:
                nfd = os.open(name, _O_PATH, dir_fd=fd)
            finally:
                os.close(fd)
            fd = nfd
        return fd

    def _step(self, fd: int, path: tuple, name: bytes):
        """Walks one name from the directory `fd`; returns (new fd, new path)."""
        _check_name(name)
        if name == b"." or name == b"..":
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                _fail(errno.ENOTDIR)
            if name == b".":
                return os.dup(fd), path
            return self._open_path(path[:-1]), path[:-1]
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
        if m.aname not in (b"", b"/"):
            _fail(errno.ENOENT)      # one tree is served, at the root
        if m.fid in self._fids:
            _fail(errno.EINVAL)
        fd = os.dup(self._root_fd)
        self._fids[m.fid] = _Fid(fd, ())
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
                    nfd, path = self._step(fd, path, name)
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
        self._fids[m.newfid] = _Fid(fd, path)
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
        """Tlopen: opens the fid's own inode read-only; donates regular files."""
        f = self._get(m.fid)
        if f.open_fd is not None:
            _fail(errno.EBADF)
        if m.flags & os.O_ACCMODE != os.O_RDONLY or m.flags & os.O_TRUNC:
            _fail(errno.EROFS)
        st = os.fstat(f.fd)
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            _fail(errno.ELOOP)
        if stat.S_ISDIR(mode):
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        elif stat.S_ISREG(mode):
            if m.flags & os.O_DIRECTORY:
                _fail(errno.ENOTDIR)
            flags = os.O_RDONLY | os.O_CLOEXEC
        else:
            _fail(errno.EACCES)      # devices, FIFOs, sockets: as on a nodev mount
        # The magic link reopens this very inode; no name is looked up.
        f.open_fd = os.open(str(f.fd), flags, dir_fd=self._fd_dir)
        f.is_dir = stat.S_ISDIR(mode)
        reply = p9.Rlopen(m.tag, self._qid(st), self.msize - p9.IOHDRSZ)
        return reply, (None if f.is_dir else f.open_fd)

    def _read(self, m):
        f = self._get(m.fid)
        if f.open_fd is None:
            _fail(errno.EBADF)
        if m.offset > _MAX_OFF:
            _fail(errno.EINVAL)
        count = min(m.count, self.msize - _RREAD_OVERHEAD)
        return p9.Rread(m.tag, os.pread(f.open_fd, count, m.offset)), None

    def _write(self, m):
        self._get(m.fid)
        _fail(errno.EBADF)           # nothing is ever open for writing

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
        parent_fd = self._open_path(f.path[:-1])
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
        f.close()
        return p9.Rclunk(m.tag), None

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


def serve(sock: socket.socket, root, confine=None) -> None:
    """Serves the tree `root` on a connected Unix stream socket until EOF.

    ``confine()``, if given, runs once the tree is open and before the
    first request (the Gofer's chroot, capabilities and seccomp filter).
    """
    server = GoferServer(root)
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
