"""The Sentry's client for the Gofer: 9P2000.L over a connected Unix stream socket.

Calls are synchronous: one at a time, under `GoferClient._lock`, and a tag
is a simple counter. Most send one request and read its reply; the two
below send several, and every reply is matched to its request by tag. The
server is not trusted: a reply that is malformed, too
big for msize, carries the wrong tag, or is cut short by EOF raises
`GoferError(EIO)`; after a framing error the stream can no longer be
trusted, so the client is marked broken and every later call raises
EIO. (A server that stalls mid-reply blocks the caller; give the socket a
timeout to bound that, and a timeout becomes EIO too.)

Extension (see server.py): an Rlopen or Rlcreate may come with a donated
host fd in SCM_RIGHTS. The client takes it as `OpenFile.hostfd`
(close-on-exec), `read()` preads and `write()` pwrites it directly, and
`clunk()` closes it. Without one (diod), reads and writes are Tread and
Twrite.

These calls do not wait for each reply before the next request (9P lets a
client have many requests outstanding, told apart by tag):

- `clunk_later()` queues a Tclunk that goes out in front of the next
  request; its reply is read, and the fid freed, whenever it arrives.
- `lopen()` and `lcreate()` send the Twalk that clones the fid and the
  Tlopen (Tlcreate) of the clone together.
- `walk_getattr_many()` sends a Twalk and a Tgetattr of the new fid for
  each of several names together: one round trip for all a first lookup
  needs, and for the names a directory listing says will be asked next. A
  server that runs requests out of order may answer a Tgetattr before its
  fid exists; the client then asks again.

Lock order: `_lock` only; donated-fd reads take no lock.
"""

import errno
import os
import socket
import struct
import threading
from typing import NamedTuple

from . import p9

_U32 = struct.Struct("<I")
_RREAD_OVERHEAD = p9.HEADER_SIZE + 4
_ANC_SPACE = socket.CMSG_SPACE(4 * 8)    # room for a few fds; more is a protocol error
_MAX_DEFERRED = 32     # clunks queued before the client waits for their replies
_TWO63 = 1 << 63
_TWO64 = 1 << 64


class GoferError(Exception):
    """An RPC to the Gofer failed; `.errno` is the Linux errno.

    For a failed walk, `.qids` holds the qids of the names that were walked
    before the failure (so the caller can see it stopped on a symlink).
    """

    def __init__(self, err: int, qids: tuple = ()):
        super().__init__(err, os.strerror(err))
        self.errno = err
        self.qids = qids


class Node:
    """A walked fid: `.fid` on the server, `.qid` of the file."""

    __slots__ = ("fid", "qid")

    def __init__(self, fid: int, qid: p9.Qid):
        self.fid = fid
        self.qid = qid

    def __repr__(self):
        return "Node(fid=%d, qid=%r)" % (self.fid, self.qid)


class OpenFile:
    """An opened clone of a Node: its own `node`, the server's `iounit`, and
    the donated host fd (`hostfd`, or None)."""

    __slots__ = ("node", "iounit", "hostfd")

    def __init__(self, node: Node, iounit: int, hostfd):
        self.node = node
        self.iounit = iounit
        self.hostfd = hostfd

    def __repr__(self):
        return "OpenFile(node=%r, iounit=%d, hostfd=%r)" % (self.node, self.iounit, self.hostfd)


class Attr(NamedTuple):
    """A file's attributes as Rgetattr gives them; times are (sec, nsec).

    `ino` is the qid path. N.B. 9P2000.L carries no st_dev: `dev` is 0 and
    the VFS gives the mount its own device number.
    """

    mode: int
    uid: int
    gid: int
    nlink: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime: tuple
    mtime: tuple
    ctime: tuple
    ino: int
    dev: int


class StatFs(NamedTuple):
    """Rstatfs: the fields of statfs(2)."""

    type: int
    bsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    fsid: int
    namelen: int


def _s64(value: int) -> int:
    return value - _TWO64 if value >= _TWO63 else value


def _attr(valid, ino, mode, uid, gid, nlink, rdev, size, blksize, blocks,
          asec, ansec, msec, mnsec, csec, cnsec) -> Attr:
    return Attr(mode, uid, gid, nlink, rdev, size, blksize, blocks, (_s64(asec), ansec),
                (_s64(msec), mnsec), (_s64(csec), cnsec), ino, 0)


def _error(reply) -> GoferError:
    """The error a reply of the wrong type stands for: an Rlerror's errno, else EIO."""
    if type(reply) is p9.Rlerror and 0 < reply.ecode < 4096:
        return GoferError(reply.ecode)
    return GoferError(errno.EIO)


def _release_host_fd(obj) -> Node:
    """The Node of a Node or OpenFile, closing an OpenFile's donated fd."""
    if isinstance(obj, OpenFile):
        fd, obj.hostfd = obj.hostfd, None
        if fd is not None:
            os.close(fd)
        return obj.node
    return obj


def _on_host_fd(fn, *args):
    """os.pread/os.pwrite on a donated fd, its errors as GoferError."""
    try:
        return fn(*args)
    except OSError as exc:
        raise GoferError(exc.errno or errno.EIO) from None
    except OverflowError:
        raise GoferError(errno.EINVAL) from None


def _close_all(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class GoferClient:
    """A 9P2000.L client; negotiates msize with Tversion on creation.

    `accept_fds=False` refuses donated fds (they are closed on arrival), so
    that every read is a Tread: for tests and for peers that never donate.
    """

    def __init__(self, sock: socket.socket, *, msize: int = p9.DEFAULT_MSIZE,
                 accept_fds: bool = True):
        self._sock = sock
        self._lock = threading.Lock()
        self._tag = 0
        self._next_fid = 0
        self._free_fids = []
        self._broken = False
        self._accept_fds = accept_fds
        self.msize = msize
        self._view = memoryview(bytearray(msize))
        self._read = self._frame = 0   # bytes in _view, and the size of the frame at its start
        self._unanswered = 0           # requests sent whose replies are not read yet
        self._outbox = []              # encoded requests that go out with the next one
        self._deferred = {}            # tag -> fid of a Tclunk whose reply is not read yet
        self._no_renameat = self._no_unlinkat = False   # the server lacks them (diod)
        with self._lock:
            r = self._rpc(p9.Tversion(p9.NOTAG, msize, p9.VERSION), p9.Rversion)
        if r.version != p9.VERSION or not p9.MIN_MSIZE <= r.msize <= msize:
            self._broken = True
            raise GoferError(errno.EPROTONOSUPPORT)
        self.msize = r.msize

    # -- public API -------------------------------------------------------------

    def attach(self, aname=b"") -> Node:
        """Attaches to the served tree's root; returns its Node. ``aname``
        names the tree where a server exports several (diod: its path)."""
        with self._lock:
            fid = self._alloc_fid()
            try:
                r = self._rpc(p9.Tattach(self._next_tag(), fid, p9.NOFID, b"", aname, 0), p9.Rattach)
            except GoferError:
                self._free_fids.append(fid)
                raise
            return Node(fid, r.qid)

    def walk(self, node: Node, names) -> Node:
        """Walks `names` (bytes components) from node to a new Node.

        An empty list clones the fid. If a name is missing the walk fails
        with GoferError(ENOENT) (ENOTDIR if it stopped on a non-directory
        that is not a symlink) whose `.qids` are those of the names walked;
        no fid is left behind. The server does not say why a later name
        failed, so N.B. EACCES there also reads as ENOENT.
        """
        with self._lock:
            return self._walk_locked(node, tuple(names))

    def getattr(self, node: Node) -> Attr:
        """Returns the node's attributes (lstat semantics: links not followed)."""
        with self._lock:
            return self._getattr_locked(node.fid)

    def walk_getattr_many(self, node: Node, names) -> list:
        """walk(node, [name]) and getattr of the result for each of `names`,
        all in one round trip: a list with, for each name, (Node, Attr) or
        the GoferError that walk would raise."""
        return self._walk_getattr_batch([(node, (name,)) for name in names])

    def walk_getattr_each(self, walks, nodes=()) -> tuple:
        """walk(node, names) and getattr of the result for each (node,
        names) of `walks` (at most MAXWELEM names each), and getattr of
        each of `nodes`, all in one round trip: what a path walk that
        revalidates each component it passes needs (shared file access).
        Returns (walk results, getattr results): a walk's (Node, Attr, the
        qids of every name walked) or the GoferError walk would raise (one
        stopped short of its last name is ENOENT, its `.qids` those of the
        names walked); a getattr's an Attr or its GoferError."""
        with self._lock:
            gets = []
            for node in nodes:
                get = p9.Tgetattr(self._next_tag(), node.fid, p9.GETATTR_BASIC)
                self._outbox.append(self._encode(get))
                gets.append(get.tag)
            walked, replies = self._walk_getattr_batch_locked(walks, set(gets))
            return walked, [self._getattr_reply(replies[tag]) for tag in gets]

    @staticmethod
    def _getattr_reply(g):
        if type(g) is not p9.Rgetattr:
            return _error(g)
        return _attr(g.valid, g.qid.path, g.mode, g.uid, g.gid, g.nlink, g.rdev,
                     g.size, g.blksize, g.blocks, g.atime_sec, g.atime_nsec,
                     g.mtime_sec, g.mtime_nsec, g.ctime_sec, g.ctime_nsec)

    def _walk_getattr_batch(self, walks) -> list:
        with self._lock:
            return self._walk_getattr_batch_locked(walks, None)[0]

    def _walk_getattr_batch_locked(self, walks, extra_tags) -> tuple:
        """(the walks' results, every reply by tag); `extra_tags` are
        requests the caller already put in the outbox; with None, the
        results are (Node, Attr) without the walks' qids."""
        sent = []        # per walk: (newfid, Twalk tag, Tgetattr tag, length), or its GoferError
        for node, wnames in walks:
            newfid = self._alloc_fid()
            walk = p9.Twalk(self._next_tag(), node.fid, newfid, wnames)
            get = p9.Tgetattr(self._next_tag(), newfid, p9.GETATTR_BASIC)
            try:
                frames = [self._encode(walk), self._encode(get)]
            except GoferError as e:      # a name too long to send: nothing goes out
                self._free_fids.append(newfid)
                sent.append(e)
                continue
            self._outbox += frames
            sent.append((newfid, walk.tag, get.tag, len(wnames)))
        tags = {tag for s in sent if type(s) is tuple for tag in s[1:3]} | (extra_tags or set())
        if tags:
            self._send(None)
        replies = self._replies_locked(tags)
        out = []
        for s in sent:
            try:
                if type(s) is not tuple:
                    raise s
                newfid, wtag, gtag, n = s
                node, attr = self._walked_one_locked(newfid, replies[wtag], replies[gtag], n)
                out.append((node, attr, replies[wtag].qids) if extra_tags is not None
                           else (node, attr))
            except GoferError as e:
                out.append(e)
        return out, replies

    def _walked_one_locked(self, newfid: int, r, g, n=1):
        """(Node, Attr) from one pipelined Rwalk of `n` names and its
        Rgetattr; raises what walk would."""
        if type(r) is p9.Rwalk and len(r.qids) > n:
            self._clunk_quietly_locked(newfid)     # the server is confused
            raise GoferError(errno.EIO)
        if type(r) is not p9.Rwalk or len(r.qids) < n:
            self._free_fids.append(newfid)         # not all was walked: no fid exists
            raise GoferError(errno.ENOENT, tuple(r.qids)) if type(r) is p9.Rwalk else _error(r)
        new = Node(newfid, r.qids[-1])
        try:
            if type(g) is p9.Rgetattr:
                return new, _attr(g.valid, g.qid.path, g.mode, g.uid, g.gid, g.nlink, g.rdev,
                                  g.size, g.blksize, g.blocks, g.atime_sec, g.atime_nsec,
                                  g.mtime_sec, g.mtime_nsec, g.ctime_sec, g.ctime_nsec)
            return new, self._getattr_locked(newfid)   # it ran before the walk: again
        except GoferError:
            self._clunk_quietly_locked(newfid)
            raise

    def lopen(self, node: Node, flags: int) -> OpenFile:
        """Opens a clone of node with Linux open flags; node stays usable."""
        return self._clone_and_open(
            node, lambda fid: p9.Tlopen(self._next_tag(), fid, flags), p9.Rlopen)

    def _clone_and_open(self, node: Node, make, rtype) -> OpenFile:
        """A clone of node opened by the request make(fid) (Tlopen or
        Tlcreate), whose reply is rtype: one round trip."""
        with self._lock:
            clone, r, fds = self._clone_and_open_locked(node, make, rtype)
            if len(fds) > 1:
                _close_all(fds)
                self._clunk_quietly_locked(clone.fid)
                raise GoferError(errno.EIO)
            if fds and not self._accept_fds:
                _close_all(fds)
                fds = []
        return self._open_file(clone, r, fds)

    def _open_file(self, clone: Node, r, fds) -> OpenFile:
        """The OpenFile an Rlopen or Rlcreate (and its donated fd) make of `clone`."""
        clone.qid = r.qid
        limit = self.msize - p9.IOHDRSZ
        iounit = min(r.iounit, limit) if r.iounit else limit
        return OpenFile(clone, iounit, fds[0] if fds else None)

    def _clone_and_open_locked(self, node: Node, make, rtype):
        """Twalk to a clone and make(clone fid), sent together: (clone, reply, fds)."""
        fid = self._alloc_fid()
        walk = p9.Twalk(self._next_tag(), node.fid, fid, ())
        op = make(fid)
        try:
            frames = [self._encode(walk), self._encode(op)]
        except GoferError:
            self._free_fids.append(fid)
            raise
        self._outbox += frames
        self._send(None)
        fds = []
        replies = self._replies_locked({walk.tag, op.tag}, fds)
        w, r = replies[walk.tag], replies[op.tag]
        if type(w) is not p9.Rwalk or w.qids:
            _close_all(fds)
            if type(w) is p9.Rwalk:           # qids for a clone: the server is confused
                self._clunk_quietly_locked(fid)
                raise GoferError(errno.EIO)
            self._free_fids.append(fid)       # no clone was made
            raise _error(w)
        clone = Node(fid, node.qid)
        try:
            if type(r) is not rtype:
                _close_all(fds)
                # An error may only mean the open ran before the walk: ask
                # again (a real error, EEXIST say, comes again).
                r, fds = self._rpc_fds(make(fid), rtype)
        except GoferError:
            self._clunk_quietly_locked(fid)
            raise
        return clone, r, fds

    def read(self, f: OpenFile, offset: int, count: int) -> bytes:
        """Reads up to count bytes at offset; short only at end of file."""
        if offset < 0 or count < 0:
            raise GoferError(errno.EINVAL)
        if f.hostfd is not None:
            return _on_host_fd(os.pread, f.hostfd, count, offset)
        chunks = []
        with self._lock:
            while count > 0:
                want = min(count, f.iounit)
                r = self._rpc(p9.Tread(self._next_tag(), f.node.fid, offset, want), p9.Rread)
                got = len(r.data)
                if got > want:
                    raise GoferError(errno.EIO)
                chunks.append(r.data)
                if got < want:
                    break
                offset += got
                count -= got
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def readdir(self, f: OpenFile, offset: int, count: int) -> list:
        """One Treaddir: [(qid, next_offset, dtype, name)] (p9.Dirent); [] at the end."""
        # IOHDRSZ, as Linux's client: diod refuses a count past msize - 24.
        count = min(count, self.msize - p9.IOHDRSZ)
        with self._lock:
            r = self._rpc(p9.Treaddir(self._next_tag(), f.node.fid, offset, count), p9.Rreaddir)
        if len(r.data) > count:
            raise GoferError(errno.EIO)
        try:
            return p9.unpack_dirents(r.data)
        except p9.RemoteProtocolError:
            raise GoferError(errno.EIO) from None

    def readlink(self, node: Node) -> bytes:
        """Returns a symlink's target (EINVAL if node is not a symlink)."""
        with self._lock:
            return self._rpc(p9.Treadlink(self._next_tag(), node.fid), p9.Rreadlink).target

    def statfs(self, node: Node) -> StatFs:
        """Returns statfs(2) of the file system holding node."""
        with self._lock:
            r = self._rpc(p9.Tstatfs(self._next_tag(), node.fid), p9.Rstatfs)
        return StatFs(r.type, r.bsize, r.blocks, r.bfree, r.bavail, r.files, r.ffree,
                      r.fsid, r.namelen)

    # -- the write path ----------------------------------------------------------

    def write(self, f: OpenFile, offset: int, data) -> int:
        """Writes data at offset: pwrite on the donated fd, else Twrite in
        iounit chunks; returns the bytes written (short on a short write)."""
        if offset < 0:
            raise GoferError(errno.EINVAL)
        if f.hostfd is not None:
            return _on_host_fd(os.pwrite, f.hostfd, data, offset)
        view, done = memoryview(data), 0
        with self._lock:
            while done < len(view) or not view:
                chunk = bytes(view[done:done + f.iounit])
                r = self._rpc(p9.Twrite(self._next_tag(), f.node.fid, offset + done, chunk),
                              p9.Rwrite)
                if r.count > len(chunk):
                    raise GoferError(errno.EIO)
                done += r.count
                if r.count < len(chunk) or not view:
                    break
        return done

    def lcreate(self, directory: Node, name: bytes, flags: int, mode: int, gid: int = 0) -> OpenFile:
        """Creates and opens directory/name (flags as open(2); our Gofer adds
        O_EXCL); `directory` stays usable (a clone of it becomes the file).
        One round trip: the clone's Twalk goes with the Tlcreate."""
        return self._clone_and_open(
            directory, lambda fid: p9.Tlcreate(self._next_tag(), fid, name, flags, mode, gid),
            p9.Rlcreate)

    def mkdir(self, directory: Node, name: bytes, mode: int, gid: int = 0) -> p9.Qid:
        """Tmkdir: returns the new directory's qid."""
        with self._lock:
            return self._rpc(p9.Tmkdir(self._next_tag(), directory.fid, name, mode, gid),
                             p9.Rmkdir).qid

    def mknod(self, directory: Node, name: bytes, mode: int, major: int = 0, minor: int = 0,
              gid: int = 0) -> p9.Qid:
        """Tmknod (mode holds the file type): returns the new file's qid."""
        with self._lock:
            return self._rpc(p9.Tmknod(self._next_tag(), directory.fid, name, mode, major,
                                       minor, gid), p9.Rmknod).qid

    def symlink(self, directory: Node, name: bytes, target: bytes, gid: int = 0) -> p9.Qid:
        """Tsymlink: directory/name -> target; returns the link's qid."""
        with self._lock:
            return self._rpc(p9.Tsymlink(self._next_tag(), directory.fid, name, target, gid),
                             p9.Rsymlink).qid

    def link(self, directory: Node, node: Node, name: bytes) -> None:
        """Tlink: directory/name becomes another name of node's file."""
        with self._lock:
            self._rpc(p9.Tlink(self._next_tag(), directory.fid, node.fid, name), p9.Rlink)

    def renameat(self, olddir: Node, oldname: bytes, newdir: Node, newname: bytes) -> None:
        """Trenameat; where the server has none (EOPNOTSUPP: diod), Trename
        of a fid walked to the old name, as Linux's client falls back."""
        with self._lock:
            if not self._no_renameat:
                try:
                    self._rpc(p9.Trenameat(self._next_tag(), olddir.fid, oldname, newdir.fid,
                                           newname), p9.Rrenameat)
                    return
                except GoferError as e:
                    if e.errno != errno.EOPNOTSUPP:
                        raise
                    self._no_renameat = True
            node = self._walk_locked(olddir, (oldname,))
            try:
                self._rpc(p9.Trename(self._next_tag(), node.fid, newdir.fid, newname), p9.Rrename)
            finally:
                self._clunk_quietly_locked(node.fid)

    def unlinkat(self, directory: Node, name: bytes, flags: int = 0) -> None:
        """Tunlinkat: flags 0 removes a non-directory, p9.AT_REMOVEDIR an empty
        directory. Where the server has none (EOPNOTSUPP), Tremove of a fid
        walked to the name, after checking its type as unlinkat(2) would."""
        with self._lock:
            if not self._no_unlinkat:
                try:
                    self._rpc(p9.Tunlinkat(self._next_tag(), directory.fid, name, flags),
                              p9.Runlinkat)
                    return
                except GoferError as e:
                    if e.errno != errno.EOPNOTSUPP:
                        raise
                    self._no_unlinkat = True
            node = self._walk_locked(directory, (name,))
            is_dir = bool(node.qid.type & p9.QTDIR)
            if is_dir != bool(flags & p9.AT_REMOVEDIR):
                self._clunk_quietly_locked(node.fid)
                raise GoferError(errno.ENOTDIR if not is_dir else errno.EISDIR)
            try:
                self._rpc(p9.Tremove(self._next_tag(), node.fid), p9.Rremove)
            finally:
                self._free_fids.append(node.fid)     # remove(5): the fid is clunked either way

    def setattr(self, node: Node, valid: int, **fields) -> None:
        """Tsetattr with the p9.SETATTR_* bits in `valid` and the matching
        fields (mode, uid, gid, size, atime_sec, atime_nsec, mtime_sec,
        mtime_nsec); ATIME/MTIME without their *_SET bit mean "now"."""
        with self._lock:
            try:
                msg = p9.Tsetattr(self._next_tag(), node.fid, valid, **fields)
            except TypeError:
                raise GoferError(errno.EINVAL) from None
            self._rpc(msg, p9.Rsetattr)

    def fsync(self, f: OpenFile, datasync: bool = False) -> None:
        with self._lock:
            self._rpc(p9.Tfsync(self._next_tag(), f.node.fid, int(datasync)), p9.Rfsync)

    # -- extended attributes --------------------------------------------------

    def getxattr(self, node: Node, name: bytes) -> bytes:
        """The value of attribute `name` (Txattrwalk, Tread, Tclunk);
        with an empty name, the NUL-terminated list of names."""
        with self._lock:
            fid = self._alloc_fid()
            try:
                r = self._rpc(p9.Txattrwalk(self._next_tag(), node.fid, fid, name), p9.Rxattrwalk)
            except GoferError:
                self._free_fids.append(fid)
                raise
            try:
                out, limit = bytearray(), self.msize - p9.IOHDRSZ
                while len(out) < r.size:
                    got = self._rpc(p9.Tread(self._next_tag(), fid, len(out),
                                             min(limit, r.size - len(out))), p9.Rread).data
                    if not got:
                        break
                    out += got
                if len(out) != r.size:
                    raise GoferError(errno.EIO)
                return bytes(out)
            finally:
                self._clunk_quietly_locked(fid)

    def setxattr(self, node: Node, name: bytes, value: bytes, flags: int = 0) -> None:
        """Sets attribute `name` (flags as setxattr(2)): Txattrcreate on a
        clone of node, Twrite of the value, and the Tclunk that commits it.
        An empty value removes the attribute (9P2000.L has no other way)."""
        with self._lock:
            clone = self._walk_locked(node, ())
            try:
                self._rpc(p9.Txattrcreate(self._next_tag(), clone.fid, name, len(value), flags),
                          p9.Rxattrcreate)
                done, limit = 0, self.msize - p9.IOHDRSZ
                while done < len(value):
                    chunk = value[done:done + limit]
                    r = self._rpc(p9.Twrite(self._next_tag(), clone.fid, done, chunk), p9.Rwrite)
                    if not 0 < r.count <= len(chunk):
                        raise GoferError(errno.EIO)
                    done += r.count
            except GoferError:
                self._clunk_quietly_locked(clone.fid)
                raise
            try:
                self._rpc(p9.Tclunk(self._next_tag(), clone.fid), p9.Rclunk)
            finally:
                self._free_fids.append(clone.fid)

    def removexattr(self, node: Node, name: bytes) -> None:
        self.setxattr(node, name, b"", 0)

    # -- record locks -----------------------------------------------------------

    def lock(self, f: OpenFile, type_: int, start: int, length: int, flags: int = 0,
             proc_id: int = 0, client_id: bytes = b"") -> int:
        """Tlock on an open file (p9.LOCK_RDLCK/WRLCK/UNLCK; length 0: to
        the end); returns p9.LOCK_SUCCESS or p9.LOCK_BLOCKED (ask again to wait)."""
        with self._lock:
            return self._rpc(p9.Tlock(self._next_tag(), f.node.fid, type_, flags, start, length,
                                      proc_id, client_id), p9.Rlock).status

    def getlock(self, f: OpenFile, type_: int, start: int, length: int, proc_id: int = 0,
                client_id: bytes = b"") -> p9.Rgetlock:
        """Tgetlock: the first lock that would conflict (type LOCK_UNLCK if none)."""
        with self._lock:
            return self._rpc(p9.Tgetlock(self._next_tag(), f.node.fid, type_, start, length,
                                         proc_id, client_id), p9.Rgetlock)

    def clunk(self, obj) -> None:
        """Releases a Node or OpenFile (closing a donated fd).

        The fid is released even if the server answers with an error
        (clunk(5)), which is then raised.
        """
        node = _release_host_fd(obj)
        with self._lock:
            try:
                self._rpc(p9.Tclunk(self._next_tag(), node.fid), p9.Rclunk)
            finally:
                self._free_fids.append(node.fid)

    def clunk_later(self, obj) -> None:
        """clunk() without waiting: the Tclunk goes out with the next request.

        For fids nothing refers to any more (an evicted cache entry); an
        error from the server is not reported."""
        node = _release_host_fd(obj)
        with self._lock:
            msg = p9.Tclunk(self._next_tag(), node.fid)
            self._outbox.append(self._encode(msg))
            self._deferred[msg.tag] = node.fid
            if len(self._deferred) >= _MAX_DEFERRED:
                self._settle_locked()

    def close(self) -> None:
        """Closes the connection; the Gofer exits when it sees EOF."""
        with self._lock:
            self._broken = True
            self._sock.close()

    @property
    def nfids(self) -> int:
        """Fids allocated and not yet clunked (for leak checks); waits for
        queued clunks first, so that the server's count agrees."""
        with self._lock:
            self._settle_locked()
            return self._next_fid - len(self._free_fids)

    # -- internals (all *_locked and _rpc* need _lock held) --------------------

    def _next_tag(self) -> int:
        tag = self._tag
        self._tag = tag + 1 if tag < p9.NOTAG - 1 else 0
        return tag

    def _alloc_fid(self) -> int:
        if self._free_fids:
            return self._free_fids.pop()
        fid = self._next_fid
        if fid >= p9.NOFID:
            raise GoferError(errno.ENFILE)
        self._next_fid = fid + 1
        return fid

    def _getattr_locked(self, fid: int) -> Attr:
        # Hot path: unpack the fixed Rgetattr body in place, no message object.
        f = self._rpc_fixed(p9.Tgetattr(self._next_tag(), fid, p9.GETATTR_BASIC),
                            p9.Rgetattr, p9.RGETATTR_BODY)
        # valid qid.type qid.version qid.path mode uid gid nlink rdev size
        # blksize blocks atime(2) mtime(2) ctime(2) ...
        return _attr(f[0], f[3], *f[4:18])

    def _walk_locked(self, node: Node, names: tuple) -> Node:
        newfid = self._alloc_fid()
        src, qid, live, done, walked = node.fid, node.qid, False, 0, []
        try:
            while done < len(names) or not live:
                chunk = names[done:done + p9.MAXWELEM]
                r = self._rpc(p9.Twalk(self._next_tag(), src, newfid, chunk), p9.Rwalk)
                if len(r.qids) > len(chunk):
                    live = True          # the server is confused: clunk to be safe
                    raise GoferError(errno.EIO)
                walked.extend(r.qids)
                if walked:
                    qid = walked[-1]
                if len(r.qids) < len(chunk):
                    on_file = walked and qid.type & (p9.QTDIR | p9.QTSYMLINK) == 0
                    raise GoferError(errno.ENOTDIR if on_file else errno.ENOENT, tuple(walked))
                live, src, done = True, newfid, done + len(chunk)
        except GoferError:
            if live:
                self._clunk_quietly_locked(newfid)
            else:
                self._free_fids.append(newfid)
            raise
        return Node(newfid, qid)

    def _clunk_quietly_locked(self, fid: int) -> None:
        try:
            self._rpc(p9.Tclunk(self._next_tag(), fid), p9.Rclunk)
        except GoferError:
            pass
        self._free_fids.append(fid)

    def _replies_locked(self, tags: set, fds=None) -> dict:
        """tag -> decoded reply for each of `tags`, in whatever order they
        come; any other tag is a broken stream. Fds that came are in `fds`
        (closed on failure)."""
        replies = {}
        try:
            while tags:
                reply = self._decode(self._recv_frame(fds))
                if reply.tag not in tags:
                    self._broken = True
                    raise GoferError(errno.EIO)
                tags.discard(reply.tag)
                replies[reply.tag] = reply
        except BaseException:
            _close_all(fds or ())
            raise
        return replies

    def _settle_locked(self) -> None:
        """Sends queued requests and reads the replies to queued clunks."""
        if self._outbox:
            self._send(None)
        while self._deferred:
            try:
                self._recv_frame_unchecked(None)
            except (OSError, p9.RemoteProtocolError):
                self._broken = True
                raise GoferError(errno.EIO) from None
            if not self._took_deferred():
                self._broken = True    # a reply nobody asked for
                raise GoferError(errno.EIO)

    def _took_deferred(self) -> bool:
        """Whether the frame just read answers a deferred clunk (its fid is then free)."""
        fid = self._deferred.pop(p9.HEADER.unpack_from(self._view, 0)[2], None)
        if fid is None:
            return False
        self._free_fids.append(fid)    # clunk(5): freed even on Rlerror
        return True

    def _encode(self, msg) -> bytes:
        try:
            return p9.encode(msg, self.msize)
        except p9.LocalProtocolError:
            raise GoferError(errno.ENAMETOOLONG if type(msg) is p9.Twalk else errno.EINVAL) from None

    def _send(self, msg) -> None:
        """Sends the queued requests, then msg (if any), in one write."""
        if self._broken:
            raise GoferError(errno.EIO)
        data = self._encode(msg) if msg is not None else b""
        self._unanswered += msg is not None
        if self._outbox:
            data = b"".join(self._outbox) + data
            self._unanswered += len(self._outbox)
            self._outbox.clear()
        try:
            self._sock.sendall(data)
        except OSError:
            self._broken = True
            raise GoferError(errno.EIO) from None

    def _rpc(self, msg, rtype):
        """Sends msg and returns its reply of type rtype; Rlerror raises GoferError."""
        self._send(msg)
        return self._check(msg, self._decode(self._recv_frame(None)), rtype)

    def _rpc_fixed(self, msg, rtype, body: struct.Struct) -> tuple:
        """As _rpc for a reply with a fixed body: returns the unpacked body fields."""
        self._send(msg)
        size = self._recv_frame(None)
        _, type_, tag = p9.HEADER.unpack_from(self._view, 0)
        if type_ == rtype.TYPE and tag == msg.tag and size == p9.HEADER_SIZE + body.size:
            return body.unpack_from(self._view, p9.HEADER_SIZE)
        # Anything else (Rlerror, a bad reply) takes the general path, which raises.
        self._check(msg, self._decode(size), rtype)
        raise GoferError(errno.EIO)

    def _rpc_fds(self, msg, rtype=p9.Rlopen):
        """As _rpc for Tlopen/Tlcreate, also returning any fds that came with the reply."""
        self._send(msg)
        fds = []
        try:
            return self._check(msg, self._decode(self._recv_frame(fds)), rtype), fds
        except BaseException:
            _close_all(fds)
            raise

    def _check(self, msg, reply, rtype):
        if reply.tag != msg.tag:
            self._broken = True
            raise GoferError(errno.EIO)
        if type(reply) is rtype:
            return reply
        raise _error(reply)

    def _decode(self, size: int):
        """Decodes the reply of `size` bytes at the start of the receive buffer."""
        try:
            return p9.decode_frame(self._view, 0, size, p9.REPLIES)
        except p9.RemoteProtocolError:
            self._broken = True
            raise GoferError(errno.EIO) from None

    def _recv_frame(self, fds) -> int:
        """Reads one reply into the start of the receive buffer; returns its size.

        Replies to deferred clunks are consumed on the way (their fids freed).
        Collects SCM_RIGHTS fds into `fds` if given (else the kernel drops them).
        """
        try:
            while True:
                size = self._recv_frame_unchecked(fds)
                if not (self._deferred and self._took_deferred()):
                    return size
        except (OSError, p9.RemoteProtocolError):
            self._broken = True
            raise GoferError(errno.EIO) from None

    def _recv_frame_unchecked(self, fds) -> int:
        view = self._view
        if self._frame:
            # Requests were pipelined: the last read may have taken the
            # start of the next reply too. Move it to the front.
            rest = self._read - self._frame
            view[:rest] = view[self._frame:self._read]
            self._read, self._frame = rest, 0
        have, size = self._read, 0
        while True:
            if not size and have >= 4:
                (size,) = _U32.unpack_from(view, 0)
                if not p9.HEADER_SIZE <= size <= self.msize:
                    raise p9.RemoteProtocolError("reply size %d out of range" % size)
            if size and have >= size:
                break
            # With fds expected, every read takes ancillary data: the fds
            # come with their reply's first byte, which may not be first here.
            got = self._recvmsg(view[have:], fds) if fds is not None else \
                self._sock.recv_into(view[have:])
            if got == 0:
                raise p9.RemoteProtocolError("EOF from the Gofer")
            have += got
        self._unanswered -= 1
        if have > size and self._unanswered <= 0:
            raise p9.RemoteProtocolError("unsolicited bytes after a reply")
        self._read, self._frame = have, size
        return size

    def _recvmsg(self, view, fds) -> int:
        got, ancdata, flags, _ = self._sock.recvmsg_into([view], _ANC_SPACE, socket.MSG_CMSG_CLOEXEC)
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                n = len(data) // 4
                fds.extend(struct.unpack("%di" % n, data[:4 * n]))
        if flags & socket.MSG_CTRUNC:
            raise p9.RemoteProtocolError("too many fds with a reply")
        return got
