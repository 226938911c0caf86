"""Unix domain sockets (unix(7)), served entirely by the Sentry.

Linux background, as net/unix/af_unix.c implements it:

- Three types. SOCK_STREAM is a byte stream; SOCK_SEQPACKET is a connected
  stream of records; SOCK_DGRAM carries records to whoever an address
  names. A record is never merged with another; a stream read may gather
  several writes, but never past a write that carried file descriptors, and
  (with SO_PASSCRED) never across writers with different credentials.
- Names. A socket is unnamed, bound to a file-system path (bind creates an
  S_IFSOCK node; connect finds the socket through that inode), or bound to
  an *abstract* name (sun_path[0] == NUL, a kernel-wide table, no file).
  bind with only sun_family, or a send/connect with SO_PASSCRED on an
  unnamed socket, "autobinds" an abstract name of five hex digits.
- Connections. connect() on a listener makes the server-side socket at
  once and queues it on the listener; the client is connected before
  accept() runs, and may already send. The queue holds backlog+1 sockets;
  beyond that a blocking connect waits and a nonblocking one gets EAGAIN.
- Flow control. What a socket has sent and its peer has not yet read counts
  against the sender's SO_SNDBUF (Linux's sk_wmem_alloc): a writer blocks,
  or gets EAGAIN, while it is over. A datagram larger than SO_SNDBUF - 32
  gets EMSGSIZE. A datagram receiver that is not connected back to the
  sender also refuses more than max_dgram_qlen (10) queued records.
- Shutdown mirrors: our SHUT_WR is the peer's RCV_SHUTDOWN (EOF after the
  queue drains), our SHUT_RD its SEND_SHUTDOWN (EPIPE). Closing a stream or
  seqpacket socket shuts its peer down both ways, and gives it ECONNRESET if
  we left data unread.
- Control messages ride with the data: SCM_RIGHTS file descriptions (held
  by reference while queued) and SCM_CREDENTIALS (always recorded; shown
  to a receiver with SO_PASSCRED).

Here one ``UnixSocket`` is both the file description and the endpoint (a
socket has exactly one description; dup and fork share it). All unix
sockets share one lock, ``_LOCK``; each socket has two Conditions on it:
``cond`` (its own state changed: data, room in its send budget, a pending
connection) and ``peer_wait`` (room in its queue or backlog, or its death,
for senders and connectors waiting on it). One lock makes every
multi-socket change (connect, close, datagram send) atomic without a lock
order. Readiness (waitq.py) is announced after the lock is released, by a
``_Txn`` that collects the sockets whose state changed.

N.B. Linux garbage-collects sockets that are reachable only through
SCM_RIGHTS messages queued on each other (a cycle); we do not, so such a
cycle keeps its sockets alive until the sandbox ends.
"""

import errno
import itertools
import struct
import threading
from collections import deque

from pyvisor.abi.signals import SIGPIPE, siginfo_bytes

from .. import waiting
from ..once import made_once
from ..errors import SyscallError, partial
from ..vfs.file import O_NONBLOCK, O_RDWR
from ..vfs.perm import W_OK, check_access, creds_of
from ..vfs.stat import S_IFSOCK
from ..vfs.waitq import (POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP, POLLRDNORM, POLLWRBAND,
                         POLLWRNORM, WaitQueue)
from .sockfs import SocketFile, deadline as _deadline

AF_UNIX = 1
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET = 1, 2, 3, 5
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
SHUTDOWN_MASK = RCV_SHUTDOWN | SEND_SHUTDOWN

MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT = 0x1, 0x2, 0x20, 0x40
MSG_CTRUNC, MSG_EOR, MSG_WAITALL, MSG_NOSIGNAL = 0x8, 0x80, 0x100, 0x4000
MSG_CMSG_CLOEXEC = 0x40000000


# Linux defaults (net.core.wmem_default / rmem_default, net.unix.max_dgram_qlen).
DEFAULT_BUF = 212992
MAX_BUF = 212992                 # net.core.wmem_max / rmem_max
MIN_SNDBUF, MIN_RCVBUF = 4608, 2304
MAX_DGRAM_QLEN = 10
SOMAXCONN = 4096
SUN_PATH_OFFSET = 2
SUN_PATH_MAX = 108
SOCKADDR_UN_SIZE = SUN_PATH_OFFSET + SUN_PATH_MAX

UNCONNECTED, LISTENING, CONNECTED = "unconnected", "listening", "connected"
_NOBODY = 65534

_LOCK = threading.Lock()


class Creds:
    """struct ucred: what SO_PEERCRED and SCM_CREDENTIALS carry."""

    __slots__ = ("pid", "uid", "gid")

    def __init__(self, pid, uid, gid):
        self.pid, self.uid, self.gid = pid, uid, gid

    @classmethod
    def of(cls, t, effective=False):
        """The task's credentials: real ids (what SCM_CREDENTIALS carries by
        default), or effective ones (what SO_PEERCRED records)."""
        c = getattr(t, "creds", None)
        if c is None:
            return cls(0, _NOBODY, _NOBODY)
        if effective:
            return cls(t.pid, c.euid, c.egid)
        return cls(t.pid, c.uid, c.gid)

    def pack(self):
        return struct.pack("<iII", self.pid, self.uid & 0xFFFFFFFF, self.gid & 0xFFFFFFFF)

    def __eq__(self, other):
        return (isinstance(other, Creds)
                and (self.pid, self.uid, self.gid) == (other.pid, other.uid, other.gid))

    def __repr__(self):
        return "Creds(%d, %d, %d)" % (self.pid, self.uid, self.gid)


NO_CREDS = Creds(0, 0xFFFFFFFF, 0xFFFFFFFF)      # SO_PEERCRED of an unconnected socket


class UnixNamespace:
    """Who is bound where: abstract names, and path-bound inodes keyed by
    (st_dev, st_ino). Guarded by _LOCK. One per kernel (`namespace_of`)."""

    def __init__(self):
        self.abstract = {}       # sun_path bytes (leading NUL) -> UnixSocket
        self.paths = {}          # (st_dev, st_ino) -> UnixSocket
        self._auto = itertools.count(0)

    def autobind_name_locked(self):
        """An unused abstract name, "\\0" + five hex digits, as Linux picks."""
        for _ in range(0x100000):
            name = b"\0%05x" % (next(self._auto) & 0xFFFFF)
            if name not in self.abstract:
                return name
        raise SyscallError(errno.ENOSPC)


def namespace_of(kernel):
    """The kernel-wide unix name space (created on first use)."""
    return made_once(kernel, "unix_namespace", UnixNamespace)


class Message:
    """One queued write: bytes plus what rode with it."""

    __slots__ = ("data", "off", "rights", "creds", "sender", "addr")

    def __init__(self, data, rights, creds, sender, addr):
        self.data = data
        self.off = 0                 # stream: bytes of `data` already read
        self.rights = rights         # list of FileDescription references, or None
        self.creds = creds
        self.sender = sender         # the UnixSocket whose send budget this uses
        self.addr = addr             # the sender's sun_path at send time (b"" unnamed)

    def left(self):
        return len(self.data) - self.off


class Received:
    """What one receive returns to the syscall layer. The caller owns
    `rights` (install them, or decref them)."""

    __slots__ = ("data", "flags", "addr", "creds", "rights", "length")

    def __init__(self, data, flags=0, addr=b"", creds=None, rights=None, length=None):
        self.data = data
        self.flags = flags           # MSG_TRUNC for a cut record
        self.addr = addr
        self.creds = creds
        self.rights = rights or []
        self.length = len(data) if length is None else length   # the record's full length


class _Txn:
    """Hold _LOCK; on exit release it, notify the collected sockets' wait
    queues (after the lock, as waitq.py requires) and drop references
    collected in `drop` (release() of those may need _LOCK)."""

    def __init__(self):
        self.wake = []
        self.drop = []

    def __enter__(self):
        _LOCK.acquire()
        return self

    def __exit__(self, *exc):
        _LOCK.release()
        self.flush_unlocked()
        return False

    def flush_unlocked(self):
        wake, self.wake = self.wake, []
        drop, self.drop = self.drop, []
        seen = set()
        for s in wake:
            if id(s) not in seen:
                seen.add(id(s))
                s.waitq.notify()
        for f in drop:
            f.decref()

    def changed(self, *socks):
        """`socks` changed state: wake their waiters now, their pollers at exit."""
        for s in socks:
            if s is not None:
                s.cond.notify_all()
                s.peer_wait.notify_all()
                self.wake.append(s)

    def block(self, cond, deadline, timed_eintr):
        """Wait on `cond` (lock held). Pending notifications are flushed
        first (the caller loops and re-checks). Returns False on timeout.
        Raises Interrupted, or SyscallError(EINTR) when the wait had a socket
        timeout (signal(7): such calls are never restarted)."""
        if self.wake or self.drop:
            _LOCK.release()
            try:
                self.flush_unlocked()
            finally:
                _LOCK.acquire()
            return True
        return waiting.wait_until(cond, deadline, timed_eintr)


def send_sigpipe(t):
    """SIGPIPE to the writing thread, as Linux does on EPIPE without MSG_NOSIGNAL."""
    k = getattr(t, "kernel", None) if t is not None else None
    if k is None or not hasattr(k, "send_signal"):
        return
    k.send_signal(t, SIGPIPE, siginfo_bytes(SIGPIPE, 0, pid=t.pid), group=False)


# --- addresses ----------------------------------------------------------------

def parse_sockaddr(raw):
    """unix_validate_addr + unix_mkname: sockaddr_un bytes -> sun_path key.

    A path name is cut at its first NUL; an abstract one (leading NUL) keeps
    every byte. EINVAL for a short/long address or another family."""
    if len(raw) <= SUN_PATH_OFFSET or len(raw) > SOCKADDR_UN_SIZE:
        raise SyscallError(errno.EINVAL)
    if struct.unpack_from("<H", raw)[0] != AF_UNIX:
        raise SyscallError(errno.EINVAL)
    path = raw[SUN_PATH_OFFSET:]
    if path[0] == 0:
        return path
    nul = path.find(b"\0")
    return path if nul < 0 else path[:nul]


def is_abstract(name):
    return name[:1] == b"\0"


def pack_sockaddr(name):
    """The sockaddr_un a name reads back as (getsockname, accept, recvfrom):
    family only when unnamed; a path gets its terminating NUL counted."""
    head = struct.pack("<H", AF_UNIX)
    if not name:
        return head
    if is_abstract(name):
        return head + name
    return head + name + b"\0"


# --- the socket -----------------------------------------------------------------

class UnixSocket(SocketFile):
    """A unix socket: file description and endpoint. Fields below `type`
    are guarded by _LOCK."""

    def __init__(self, kernel, stype, flags=0, creds=None):
        super().__init__(O_RDWR | (flags & O_NONBLOCK))
        self.kernel = kernel
        self.type = stype
        self.waitq = WaitQueue()
        self.cond = threading.Condition(_LOCK)
        self.peer_wait = threading.Condition(_LOCK)
        self.state = UNCONNECTED
        self.dead = False
        self.name = b""               # sun_path as bound (b"" unnamed)
        self.bound_key = None         # ("abstract", name) or ("path", (dev, ino))
        self.peer = None
        self.queue = deque()          # Messages for us (a listener: accepted-to-be sockets)
        self.queued = 0               # bytes in `queue`
        self.backlog = 0
        self.wmem = 0                 # bytes we sent that are not read yet
        self.shutdown = 0             # RCV_SHUTDOWN | SEND_SHUTDOWN
        self.err = 0                  # SO_ERROR, cleared when reported
        self.peercred = NO_CREDS      # SO_PEERCRED
        self.creds = creds or NO_CREDS  # ours: given to the peer at connect/listen
        self.sndbuf = DEFAULT_BUF
        self.rcvbuf = DEFAULT_BUF
        self.passcred = False
        self.opts = {}                # options only stored: SO_REUSEADDR, SO_KEEPALIVE, ...
        self.linger = (0, 0)
        self.rcvtimeo = None          # seconds, None = forever
        self.sndtimeo = None

    # --- identity ------------------------------------------------------------

    # --- names -----------------------------------------------------------------

    def _ns(self):
        return namespace_of(self.kernel)

    def _autobind_locked(self):
        ns = self._ns()
        name = ns.autobind_name_locked()
        ns.abstract[name] = self
        self.name = name
        self.bound_key = ("abstract", name)

    def bind(self, t, name, autobind=False):
        """Implements bind(2) for a parsed name (`autobind`: addrlen was 2)."""
        with _Txn():
            if self.name:
                raise SyscallError(errno.EINVAL)
            if autobind:
                self._autobind_locked()
                return
            if is_abstract(name):
                ns = self._ns()
                if name in ns.abstract:
                    raise SyscallError(errno.EADDRINUSE)
                ns.abstract[name] = self
                self.name = name
                self.bound_key = ("abstract", name)
                return
        self._bind_path(t, name)

    def _bind_path(self, t, name):
        vfs = self.kernel.vfs
        umask = t.fs.umask if getattr(t, "fs", None) is not None else 0o022
        try:
            vfs.mknod(t, name, S_IFSOCK | (0o777 & ~umask), 0)
        except SyscallError as e:
            raise SyscallError(errno.EADDRINUSE if e.errno == errno.EEXIST else e.errno) from None
        st = vfs.stat(t, name, follow=False)
        key = (st.st_dev, st.st_ino)
        with _Txn():
            if self.name:                 # another thread bound us meanwhile
                raise SyscallError(errno.EINVAL)
            self._ns().paths[key] = self
            self.name = name
            self.bound_key = ("path", key)

    def _unbind_locked(self):
        if self.bound_key is None:
            return
        kind, key = self.bound_key
        table = self._ns().abstract if kind == "abstract" else self._ns().paths
        if table.get(key) is self:
            del table[key]
        self.bound_key = None

    def lookup(self, t, name):
        """The socket bound at `name`: ECONNREFUSED if none (or a file that
        is not a socket), ENOENT/EACCES/... from the path walk."""
        if is_abstract(name):
            with _Txn():
                other = self._ns().abstract.get(name)
            if other is None:
                raise SyscallError(errno.ECONNREFUSED)
            return other
        vd = self.kernel.vfs.resolve_vd(t, name)
        st = vd.inode.stat()
        if st.st_mode & 0o170000 != S_IFSOCK:
            raise SyscallError(errno.ECONNREFUSED)
        check_access(vd.inode, creds_of(t), W_OK)
        with _Txn():
            other = self._ns().paths.get((st.st_dev, st.st_ino))
        if other is None:
            raise SyscallError(errno.ECONNREFUSED)
        return other

    def sockname(self):
        with _Txn():
            return pack_sockaddr(self.name)

    def peername(self):
        with _Txn():
            if self.peer is None or self.state == LISTENING:
                raise SyscallError(errno.ENOTCONN)
            return pack_sockaddr(self.peer.name)

    # --- connections ----------------------------------------------------------

    def listen(self, t, backlog):
        """Implements listen(2)."""
        if self.type == SOCK_DGRAM:
            raise SyscallError(errno.EOPNOTSUPP)
        if backlog < 0 or backlog > SOMAXCONN:
            backlog = SOMAXCONN
        with _Txn() as tx:
            if not self.name or self.state == CONNECTED:
                raise SyscallError(errno.EINVAL)
            if self.state != LISTENING:
                self.creds = Creds.of(t, effective=True)
                self.peercred = self.creds
            self.state = LISTENING
            self.backlog = backlog
            tx.changed(self)

    def connect(self, t, name):
        """Implements connect(2) with a parsed name."""
        other = self.lookup(t, name)
        if self.type == SOCK_DGRAM:
            self._connect_dgram(other)
        else:
            self._connect_stream(t, other)

    def disconnect(self):
        """connect(AF_UNSPEC) on a datagram socket: forget the peer."""
        with _Txn():
            if self.type == SOCK_DGRAM:
                self.peer = None
                self.state = UNCONNECTED

    def _connect_dgram(self, other):
        with _Txn() as tx:
            if other.type != self.type:
                raise SyscallError(errno.EPROTOTYPE)
            if other.dead:
                raise SyscallError(errno.ECONNREFUSED)
            if self.passcred and not self.name:
                self._autobind_locked()
            self.peer = other
            self.state = CONNECTED
            tx.changed(self)

    def _connect_stream(self, t, other):
        deadline = _deadline(self.sndtimeo, self.nonblocking)
        with _Txn() as tx:
            while True:
                if self.state == CONNECTED:
                    raise SyscallError(errno.EISCONN)
                if self.state == LISTENING:
                    raise SyscallError(errno.EINVAL)
                if other.type != self.type:
                    raise SyscallError(errno.EPROTOTYPE)
                if other.dead or other.state != LISTENING:
                    raise SyscallError(errno.ECONNREFUSED)
                if len(other.queue) <= other.backlog:
                    break
                if not tx.block(other.peer_wait, deadline, self.sndtimeo is not None):
                    raise SyscallError(errno.EAGAIN)
            if self.passcred and not self.name:
                self._autobind_locked()
            server = UnixSocket(self.kernel, self.type, creds=other.creds)
            server.name = other.name
            server.state = CONNECTED
            server.peer = self
            server.peercred = Creds.of(t, effective=True)
            self.creds = server.peercred
            self.peer = server
            self.peercred = other.creds
            self.state = CONNECTED
            other.queue.append(server)
            tx.changed(other, self)

    def accept(self, nonblock):
        """Implements accept(2): the next queued connection (a new reference)."""
        if self.type == SOCK_DGRAM:
            raise SyscallError(errno.EOPNOTSUPP)
        deadline = _deadline(self.rcvtimeo, nonblock or self.nonblocking)
        with _Txn() as tx:
            while True:
                if self.state != LISTENING:
                    raise SyscallError(errno.EINVAL)
                if self.queue:
                    break
                if not tx.block(self.cond, deadline, self.rcvtimeo is not None):
                    raise SyscallError(errno.EAGAIN)
            server = self.queue.popleft()
            server.passcred = self.passcred
            tx.changed(self)
            return server

    def shut(self, how):
        """Implements shutdown(2)."""
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise SyscallError(errno.EINVAL)
        mode = (how + 1) & SHUTDOWN_MASK          # SHUT_RD->RCV, SHUT_WR->SEND, RDWR->both
        with _Txn() as tx:
            self.shutdown |= mode
            tx.changed(self)
            peer = self.peer
            if peer is not None and self.type != SOCK_DGRAM:
                peer_mode = (SEND_SHUTDOWN if mode & RCV_SHUTDOWN else 0) | \
                            (RCV_SHUTDOWN if mode & SEND_SHUTDOWN else 0)
                peer.shutdown |= peer_mode
                tx.changed(peer)

    # --- lifetime -------------------------------------------------------------

    def release(self):
        """Last close: unbind, shut the peer down, drop what is queued."""
        with _Txn() as tx:
            self.dead = True
            self._unbind_locked()
            self.shutdown = SHUTDOWN_MASK
            peer, self.peer = self.peer, None
            unread = bool(self.queue)
            if self.state == LISTENING:
                for embryo in self.queue:              # never accepted: reset their clients
                    client = embryo.peer
                    if client is not None and not client.dead:
                        client.shutdown = SHUTDOWN_MASK
                        client.err = errno.ECONNRESET
                        tx.changed(client)
                    embryo.peer = None
                tx.drop.extend(self.queue)
            else:
                for m in self.queue:
                    self._consumed_locked(tx, m, m.left())
                    if m.rights:
                        tx.drop.extend(m.rights)
            self.queue.clear()
            self.queued = 0
            if peer is not None and self.type != SOCK_DGRAM:
                peer.shutdown = SHUTDOWN_MASK
                if unread:
                    peer.err = errno.ECONNRESET
                tx.changed(peer)
            tx.changed(self)

    # --- sending ----------------------------------------------------------------

    def _consumed_locked(self, tx, m, n):
        """`n` bytes of `m` were read or dropped: give the sender its budget back."""
        s = m.sender
        if s is not None and n:
            s.wmem -= n
            tx.changed(s)

    def _queue_locked(self, tx, target, data, box, creds):
        """Queue one Message on `target`; it takes the rights in `box`."""
        m = Message(data, box[0], creds, self, self.name)
        box[0] = None
        target.queue.append(m)
        target.queued += len(data)
        self.wmem += len(data)
        tx.changed(target)

    def send(self, t, data, flags=0, name=None, rights=None, creds=None):
        """Implements the send side of sendmsg(2) (and write(2)); returns
        bytes sent. Takes over the references in `rights`, even on error."""
        creds = creds or Creds.of(t)
        box = [rights or None]                 # a queued message takes box[0] and clears it
        try:
            if self.type == SOCK_STREAM:
                return self._send_stream(data, flags, name, box, creds)
            return self._send_record(t, data, flags, name, box, creds)
        except SyscallError as e:
            if e.errno == errno.EPIPE and not flags & MSG_NOSIGNAL and self.type == SOCK_STREAM:
                send_sigpipe(t)
            raise
        finally:
            for f in box[0] or ():
                f.decref()

    def _send_stream(self, data, flags, name, box, creds):
        if flags & MSG_OOB:
            raise SyscallError(errno.EOPNOTSUPP)
        nonblock = bool(flags & MSG_DONTWAIT) or self.nonblocking
        deadline = _deadline(self.sndtimeo, nonblock)
        timed = self.sndtimeo is not None
        sent = 0
        # Linux cuts a stream write into skbs of at most sndbuf/2 - 64 bytes.
        with _Txn() as tx:
            if name is not None:
                raise SyscallError(errno.EISCONN if self.state == CONNECTED else errno.EOPNOTSUPP)
            if self.state != CONNECTED or self.peer is None:
                raise SyscallError(errno.ENOTCONN)
            if self.shutdown & SEND_SHUTDOWN:
                raise SyscallError(errno.EPIPE)
            if not data:
                return 0                         # Linux sends nothing (and no fds)
            while True:
                peer = self.peer
                if self.shutdown & SEND_SHUTDOWN or peer.dead or peer.shutdown & RCV_SHUTDOWN:
                    return partial(sent, SyscallError(errno.EPIPE))
                room = self.sndbuf - self.wmem
                if room > 0:
                    n = min(len(data) - sent, room, max(self.sndbuf // 2 - 64, 1))
                    # Only the first chunk carries the rights.
                    self._queue_locked(tx, peer, data[sent:sent + n], box, creds)
                    sent += n
                    if sent == len(data):
                        return sent
                    continue
                if not waiting.wait_more(sent, tx.block, self.cond, deadline, timed):
                    return sent

    def _send_record(self, t, data, flags, name, box, creds):
        """Datagram and seqpacket: one record, all or nothing."""
        if flags & MSG_OOB:
            raise SyscallError(errno.EOPNOTSUPP)
        if self.type == SOCK_SEQPACKET:
            name = None                          # Linux ignores the address here
        if len(data) > self.sndbuf - 32:
            raise SyscallError(errno.EMSGSIZE)
        other = self.lookup(t, name) if name is not None else None
        nonblock = bool(flags & MSG_DONTWAIT) or self.nonblocking
        deadline = _deadline(self.sndtimeo, nonblock)
        timed = self.sndtimeo is not None
        with _Txn() as tx:
            if self.type == SOCK_SEQPACKET:
                if self.state != CONNECTED:
                    raise SyscallError(errno.ENOTCONN)
            elif self.passcred and not self.name:
                self._autobind_locked()
            while True:
                target = other if other is not None else self.peer
                if target is None:
                    raise SyscallError(errno.ENOTCONN)
                if self.type == SOCK_SEQPACKET:
                    if self.shutdown & SEND_SHUTDOWN or target.dead or \
                            target.shutdown & RCV_SHUTDOWN:
                        raise SyscallError(errno.EPIPE)
                else:
                    if target.type != self.type:
                        raise SyscallError(errno.EPROTOTYPE)
                    if target.dead:
                        if target is self.peer:
                            self.peer = None
                            self.state = UNCONNECTED
                        raise SyscallError(errno.ECONNREFUSED)
                    if self.shutdown & SEND_SHUTDOWN or target.shutdown & RCV_SHUTDOWN:
                        raise SyscallError(errno.EPIPE)
                    if target.peer is not None and target.peer is not self:
                        raise SyscallError(errno.EPERM)
                qfull = target.peer is not self and len(target.queue) > MAX_DGRAM_QLEN
                if not qfull and self.wmem < self.sndbuf:
                    self._queue_locked(tx, target, data, box, creds)
                    return len(data)
                waiton = target.peer_wait if qfull else self.cond
                if not tx.block(waiton, deadline, timed):
                    raise SyscallError(errno.EAGAIN)

    # --- receiving ----------------------------------------------------------------

    def recv(self, size, flags=0):
        """Implements the receive side of recvmsg(2) (and read(2))."""
        if flags & MSG_OOB:
            raise SyscallError(errno.EOPNOTSUPP)
        nonblock = bool(flags & MSG_DONTWAIT) or self.nonblocking
        deadline = _deadline(self.rcvtimeo, nonblock)
        if self.type == SOCK_STREAM:
            return self._recv_stream(size, flags, deadline)
        return self._recv_record(size, flags, deadline)

    def _recv_record(self, size, flags, deadline):
        timed = self.rcvtimeo is not None
        with _Txn() as tx:
            if self.type == SOCK_SEQPACKET and self.state != CONNECTED:
                raise SyscallError(errno.ENOTCONN)
            while not self.queue:
                if self.err:
                    err, self.err = self.err, 0
                    raise SyscallError(err)
                if self.shutdown & RCV_SHUTDOWN:
                    return Received(b"")
                if not tx.block(self.cond, deadline, timed):
                    raise SyscallError(errno.EAGAIN)
            m = self.queue[0]
            rights = m.rights
            if flags & MSG_PEEK:
                rights = [f.incref() for f in rights] if rights else None
            else:
                self.queue.popleft()
                self.queued -= len(m.data)
                self._consumed_locked(tx, m, len(m.data))
                m.rights = None
                tx.changed(self)
            out = m.data[:size]
            trunc = MSG_TRUNC if len(m.data) > size else 0
            return Received(out, trunc, m.addr, m.creds, rights, len(m.data))

    def _recv_stream(self, size, flags, deadline):
        timed = self.rcvtimeo is not None
        target = size if flags & MSG_WAITALL else 1
        parts, got, rights, creds, addr = [], 0, [], None, b""
        peek = flags & MSG_PEEK
        with _Txn() as tx:
            if self.state != CONNECTED:
                raise SyscallError(errno.EINVAL)
            idx = 0                                  # peek walks the queue without consuming
            while True:
                m = self.queue[idx] if idx < len(self.queue) else None
                if m is None:
                    if got >= target or (got and size == got):
                        break
                    if self.err:
                        if got:
                            break
                        err, self.err = self.err, 0
                        raise SyscallError(err)
                    if self.shutdown & RCV_SHUTDOWN:
                        break
                    if not waiting.wait_more(got, tx.block, self.cond, deadline, timed):
                        break
                    continue
                if got and self.passcred and m.creds != creds:
                    break                            # never glue writers' bytes together
                if creds is None:
                    creds, addr = m.creds, m.addr
                n = min(size - got, m.left())
                parts.append(m.data[m.off:m.off + n])
                got += n
                had_rights = bool(m.rights)
                if m.rights:
                    rights = [f.incref() for f in m.rights] if peek else m.rights
                    if not peek:
                        m.rights = None
                if peek:
                    idx += 1
                else:
                    m.off += n
                    self.queued -= n
                    self._consumed_locked(tx, m, n)
                    if not m.left():
                        self.queue.popleft()
                    tx.changed(self)
                if had_rights or got >= size:
                    break
        return Received(b"".join(parts), 0, addr, creds, rights)

    # --- read(2)/write(2) -------------------------------------------------------

    def read(self, count):
        """read(2) on a socket: recv with no flags; passed fds are dropped."""
        if count == 0:
            return b""                           # sock_read_iter: "match SYS5 behaviour"
        r = self.recv(count)
        for f in r.rights:
            f.decref()
        return r.data

    def nread(self):
        """FIONREAD: unread bytes (stream) or the next record's size."""
        with _Txn():
            if self.state == LISTENING:
                raise SyscallError(errno.EINVAL)
            if self.type == SOCK_STREAM:
                return self.queued
            return len(self.queue[0].data) if self.queue else 0

    def outq(self):
        """SIOCOUTQ: bytes sent and not yet read by the peer (wmem)."""
        with _Txn():
            if self.state == LISTENING:
                raise SyscallError(errno.EINVAL)
            return self.wmem

    # --- readiness ------------------------------------------------------------------

    def _writable_locked(self):
        return self.state != LISTENING and self.wmem << 2 <= self.sndbuf

    def poll_events(self):
        """unix_poll / unix_dgram_poll."""
        with _Txn():
            ev = 0
            if self.err:
                ev |= POLLERR
            if self.shutdown == SHUTDOWN_MASK:
                ev |= POLLHUP
            if self.shutdown & RCV_SHUTDOWN:
                ev |= POLLRDHUP | POLLIN | POLLRDNORM
            if self.queue:
                ev |= POLLIN | POLLRDNORM
            if self.type != SOCK_DGRAM and self.state == UNCONNECTED:
                ev |= POLLHUP
            writable = self._writable_locked()
            if self.type == SOCK_DGRAM and self.peer is not None:
                p = self.peer
                if p.peer is not self and len(p.queue) > MAX_DGRAM_QLEN:
                    writable = False
            if writable:
                ev |= POLLOUT | POLLWRNORM | POLLWRBAND
            return ev


def new_socket(t, stype, flags=0):
    """A fresh unix socket of `stype` (SOCK_STREAM/DGRAM/SEQPACKET)."""
    return UnixSocket(t.kernel, stype, flags, Creds.of(t, effective=True))


def socket_pair(t, stype, flags=0):
    """socketpair(2): two sockets connected to each other."""
    a = new_socket(t, stype, flags)
    b = new_socket(t, stype, flags)
    with _Txn():
        a.peer, b.peer = b, a
        a.state = b.state = CONNECTED
        a.peercred = b.peercred = Creds.of(t, effective=True)
    return a, b
