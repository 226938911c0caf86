"""AF_INET sockets (ip(7), tcp(7), udp(7)), served by netstack.

Linux background:

- ``struct sockaddr_in`` is 16 bytes: u16 family, u16 port (network
  order), u32 address (network order), 8 bytes of zero padding. An address
  shorter than 16 bytes is EINVAL; another family is EAFNOSUPPORT, except
  that bind(2) takes AF_UNSPEC with INADDR_ANY for old programs and
  sendto(2) on UDP takes AF_UNSPEC as AF_INET. connect(2) with AF_UNSPEC
  dissolves a UDP association.
- A blocking TCP connect(2) sleeps until the handshake ends; a non-blocking
  one returns EINPROGRESS, and the result arrives as POLLOUT plus SO_ERROR.
  connect(2) again while it runs gives EALREADY, and once it has finished,
  0 the first time (the socket becomes SS_CONNECTED) and EISCONN after.
- A blocking send(2) on a stream waits until all of it is queued (or a
  signal or SO_SNDTIMEO cuts it short: then the partial count); recv(2)
  returns what is there, or waits for something (all of it with
  MSG_WAITALL). EPIPE raises SIGPIPE unless MSG_NOSIGNAL.
- UDP shutdown(2) only sets the flags (and gives ENOTCONN if the socket is
  not connected): SHUT_RD makes an empty receive return 0, SHUT_WR makes a
  send fail with EPIPE.

Here one ``InetSocket`` is the file description; it holds a netstack
socket (``TCPSocket``/``UDPSocket``, whose calls never block) and blocks
the task on its readiness (``NetStack.block``). All state of the netstack
socket and the fields marked "lock" are guarded by ``NetStack.lock``.
netstack raises ``NetError``; leaving ``with self.net:`` makes it a
``SyscallError`` (``socket/netstack.py``), so the code below catches
``NetError`` only where it acts on a netstack errno inside a transaction.
"""

import errno
import struct
import threading

from ...netstack.errors import NetError
from .. import waiting
from ..errors import SyscallError, partial
from ..vfs.file import O_NONBLOCK, O_RDWR
from ..vfs.waitq import (POLLHUP, POLLIN, POLLOUT, POLLRDHUP, POLLRDNORM, POLLWRNORM,
                         WaitQueue)
from .netstack import net_of
from .sockfs import SocketFile, deadline as _deadline
from .unix import (MSG_DONTWAIT, MSG_NOSIGNAL, MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_WAITALL,
                   Received, send_sigpipe)

AF_UNSPEC, AF_INET = 0, 2
SOCK_STREAM, SOCK_DGRAM = 1, 2
IPPROTO_TCP, IPPROTO_UDP = 6, 17
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
SOCKADDR_IN_SIZE = 16
INADDR_ANY = "0.0.0.0"
_SOCKADDR_IN = struct.Struct("<H2s4s8x")
SEND_CHUNK = 1 << 20           # a stream send offers netstack at most this much at once

_CLOSED_EVENTS = POLLIN | POLLRDNORM | POLLRDHUP | POLLOUT | POLLWRNORM | POLLHUP


# --- addresses ------------------------------------------------------------------

def parse_sockaddr_in(raw, unspec_ok=False):
    """sockaddr_in bytes -> ("a.b.c.d", port). EINVAL if short, EAFNOSUPPORT
    for another family (AF_UNSPEC passes when `unspec_ok`)."""
    if len(raw) < SOCKADDR_IN_SIZE:
        raise SyscallError(errno.EINVAL)
    family, port, addr = _SOCKADDR_IN.unpack_from(raw)
    if family != AF_INET and not (unspec_ok and family == AF_UNSPEC):
        raise SyscallError(errno.EAFNOSUPPORT)
    return "%d.%d.%d.%d" % tuple(addr), int.from_bytes(port, "big")


def destination(addr):
    """Where a connect/sendto to `addr` goes: Linux's ip_route_output
    sends INADDR_ANY to the loopback address."""
    host, port = addr
    return ("127.0.0.1" if host == INADDR_ANY else host), port


def pack_sockaddr_in(host, port):
    """("a.b.c.d", port) -> the 16 bytes of a sockaddr_in."""
    addr = bytes(int(x) for x in host.split("."))
    return _SOCKADDR_IN.pack(AF_INET, port.to_bytes(2, "big"), addr)


def _ip_port(addr, port):
    """netstack's int address and port as ("a.b.c.d", port)."""
    addr = addr or 0
    return "%d.%d.%d.%d" % tuple(addr.to_bytes(4, "big")), port or 0


def sockaddr_family(raw):
    """The sa_family of a raw address; EINVAL when too short to hold one."""
    if len(raw) < 2:
        raise SyscallError(errno.EINVAL)
    return struct.unpack_from("<H", raw)[0]


# --- the socket -----------------------------------------------------------------

class InetSocket(SocketFile):
    """An AF_INET socket file over a netstack socket."""

    is_socket = True
    family = AF_INET
    passcred = False               # SO_PASSCRED means nothing here; recvmsg reads it

    def __init__(self, net, stype, protocol, sock, flags=0):
        super().__init__(O_RDWR | (flags & O_NONBLOCK))
        self.net = net
        self.type = stype
        self.protocol = protocol
        self.sock = sock                   # lock
        self.waitq = WaitQueue()
        self.cond = threading.Condition(net.lock)
        self.connecting = False            # lock: connect returned EINPROGRESS, not yet settled
        self.shut_flags = 0                # lock: UDP only (1 = SHUT_RD seen, 2 = SHUT_WR seen)
        self.rcvtimeo = None               # seconds, None = forever
        self.sndtimeo = None
        self.opts = {}                     # options only stored (SO_REUSEPORT, ...)
        sock.add_waiter(self._ready)

    def _ready(self, _mask):
        """netstack's waiter: runs inside stack processing, lock held."""
        self.cond.notify_all()
        self.net.changed_locked(self)

    @property
    def stream(self):
        return self.type == SOCK_STREAM

    # --- names --------------------------------------------------------------------

    def bind(self, t, raw):
        """Implements bind(2) (inet_bind)."""
        host, port = parse_sockaddr_in(raw, unspec_ok=True)
        if sockaddr_family(raw) == AF_UNSPEC and host != INADDR_ANY:
            raise SyscallError(errno.EAFNOSUPPORT)
        with self.net:
            self.sock.bind((host, port))

    def sockname(self):
        with self.net:
            return pack_sockaddr_in(*self.sock.getsockname())

    def peername(self):
        with self.net:
            return pack_sockaddr_in(*self.sock.getpeername())

    def remote_name(self):
        """The peer's address as accept(2) reports it, even if the
        connection has already been reset."""
        with self.net:
            return pack_sockaddr_in(*_ip_port(self.sock.raddr, self.sock.rport))

    # --- connections -------------------------------------------------------------

    def listen(self, t, backlog):
        """Implements listen(2): a negative or huge backlog means SOMAXCONN."""
        if not self.stream:
            raise SyscallError(errno.EOPNOTSUPP)
        if backlog < 0 or backlog > 4096:
            backlog = 4096
        with self.net:
            if self.connecting:
                raise SyscallError(errno.EINVAL)
            self.sock.listen(backlog)

    def connect(self, t, raw):
        """Implements connect(2)."""
        if self.stream:
            return self._connect_stream(raw)
        if sockaddr_family(raw) == AF_UNSPEC:
            with self.net:
                # N.B. netstack has no disconnect: forget the peer by hand.
                self.sock.raddr = self.sock.rport = None
            return
        addr = destination(parse_sockaddr_in(raw))
        with self.net:
            self.sock.connect(addr)

    def _connect_stream(self, raw):
        if sockaddr_family(raw) == AF_UNSPEC:
            with self.net:
                if self.sock.conn is None and not self.sock.listening:
                    return                 # tcp_disconnect of a closed socket: nothing to do
            raise SyscallError(errno.EOPNOTSUPP)
        addr = destination(parse_sockaddr_in(raw))
        nonblock = self.nonblocking
        deadline = _deadline(self.sndtimeo, nonblock)
        with self.net as net:
            if not self.connecting:
                try:
                    self.sock.connect(addr)
                    return
                except NetError as e:
                    if e.errno != errno.EINPROGRESS:
                        raise
                self.connecting = True
                if nonblock:
                    raise SyscallError(errno.EINPROGRESS)
            elif nonblock and self._handshaking_locked():
                raise SyscallError(errno.EALREADY)
            while self._handshaking_locked():
                if not net.block(self.cond, deadline, self.sndtimeo is not None):
                    raise SyscallError(errno.EINPROGRESS)
            return self._finish_connect_locked()

    def _handshaking_locked(self):
        from ...netstack.tcp_state import State
        c = self.sock.conn
        return c is not None and c.state in (State.SYN_SENT, State.SYN_RECEIVED)

    def _finish_connect_locked(self):
        """The handshake is over: success once, or its error (SO_ERROR)."""
        from ...netstack.tcp_state import State
        self.connecting = False
        c = self.sock.conn
        if c is not None and c.state is not State.CLOSED:
            return
        err = self.sock.getsockopt(1, 4)          # SOL_SOCKET, SO_ERROR: takes it
        raise SyscallError(err or errno.ECONNABORTED)

    def accept(self, nonblock):
        """Implements accept(2): a new InetSocket for the next connection."""
        if not self.stream:
            raise SyscallError(errno.EOPNOTSUPP)
        deadline = _deadline(self.rcvtimeo, nonblock or self.nonblocking)
        with self.net as net:
            while True:
                try:
                    child, _addr = self.sock.accept()
                    break
                except NetError as e:
                    if e.errno != errno.EAGAIN:
                        raise
                if not net.block(self.cond, deadline, self.rcvtimeo is not None):
                    raise SyscallError(errno.EAGAIN)
            return InetSocket(self.net, self.type, self.protocol, child)

    def shut(self, how):
        """Implements shutdown(2)."""
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise SyscallError(errno.EINVAL)
        with self.net:
            # Waiters re-check: netstack does not announce a listener's
            # shutdown, which must end a blocked accept (EINVAL).
            self.cond.notify_all()
            self.net.changed_locked(self)
            if self.stream:
                self.sock.shutdown(how)
                return
            self.shut_flags |= how + 1                # SHUT_RD->1, SHUT_WR->2, RDWR->3
            if self.sock.raddr is None:
                raise SyscallError(errno.ENOTCONN)    # inet_shutdown: flags set anyway

    # --- sending --------------------------------------------------------------------

    def send(self, t, data, flags=0, name=None, rights=None, creds=None):
        """Implements the send side of sendmsg(2) (and write(2)): bytes sent.
        `name` is the raw destination address or None. Takes over `rights`."""
        if rights:
            for f in rights:
                f.decref()
            raise SyscallError(errno.EINVAL)       # SCM_RIGHTS is AF_UNIX's only
        try:
            if self.stream:
                return self._send_stream(data, flags)
            return self._send_dgram(data, flags, name)
        except SyscallError as e:
            if e.errno == errno.EPIPE and self.stream and not flags & MSG_NOSIGNAL:
                send_sigpipe(t)
            raise

    def send_room(self, flags, length):
        """How many of `length` bytes a send could take now without
        blocking: a non-blocking stream send copies in no more than that
        (asyncio offers its whole buffer at every try). At least 1, so the
        send itself reports EAGAIN or an error."""
        if not self.stream or not (flags & MSG_DONTWAIT or self.nonblocking):
            return length
        with self.net:
            c = self.sock.conn
            room = c.send_space if c is not None else length
        return min(length, max(room, 1))

    def _send_stream(self, data, flags):
        if flags & MSG_OOB:
            raise SyscallError(errno.EOPNOTSUPP)
        nonblock = bool(flags & MSG_DONTWAIT) or self.nonblocking
        deadline = _deadline(self.sndtimeo, nonblock)
        timed = self.sndtimeo is not None
        view = memoryview(data)
        sent = 0
        with self.net as net:
            while True:
                try:
                    n = self.sock.send(view[sent:sent + SEND_CHUNK])
                except NetError as e:
                    if e.errno != errno.EAGAIN:
                        return partial(sent, e)      # the error waits for the next call
                    n = 0
                sent += n
                if sent >= len(data):
                    return sent
                if n:
                    continue
                if not waiting.wait_more(sent, net.block, self.cond, deadline, timed):
                    return sent

    def _send_dgram(self, data, flags, name):
        addr = None
        if name:
            addr = destination(parse_sockaddr_in(name, unspec_ok=True))
        with self.net:
            if self.shut_flags & 2:
                raise SyscallError(errno.EPIPE)
            return self.sock.sendto(bytes(data), addr)

    # --- receiving ------------------------------------------------------------------

    def recv(self, size, flags=0):
        """Implements the receive side of recvmsg(2) (and read(2))."""
        nonblock = bool(flags & MSG_DONTWAIT) or self.nonblocking
        deadline = _deadline(self.rcvtimeo, nonblock)
        if self.stream:
            return self._recv_stream(size, flags, deadline)
        return self._recv_dgram(size, flags, deadline)

    def _recv_stream(self, size, flags, deadline):
        if flags & MSG_OOB:
            raise SyscallError(errno.EINVAL)        # no urgent data is ever queued
        timed = self.rcvtimeo is not None
        peek = flags & MSG_PEEK
        want = size if flags & MSG_WAITALL and not peek else 1
        parts, got = [], 0
        with self.net as net:
            while True:
                try:
                    data = self.sock.recv(size - got, MSG_PEEK if peek else 0)
                except NetError as e:
                    if e.errno != errno.EAGAIN:
                        partial(got, e)              # raises unless bytes came; else the
                        break                        # error waits for the next call
                    data = None
                if data is not None:
                    if not data:
                        break                        # end of stream
                    parts.append(data)
                    got += len(data)
                    if got >= want or got >= size:
                        break
                if not waiting.wait_more(got, net.block, self.cond, deadline, timed):
                    break
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return Received(bytes(data))

    def _recv_dgram(self, size, flags, deadline):
        timed = self.rcvtimeo is not None
        with self.net as net:
            while True:
                q = self.sock.queue
                # N.B. netstack's recvfrom hides a datagram's full length,
                # which MSG_TRUNC reports: read it from the queue first.
                full = len(q[0][0]) if q else 0
                try:
                    data, (host, port) = self.sock.recvfrom(size, flags & MSG_PEEK)
                    trunc = MSG_TRUNC if full > size else 0
                    return Received(bytes(data), trunc, pack_sockaddr_in(host, port),
                                    length=full)
                except NetError as e:
                    if e.errno != errno.EAGAIN:
                        raise
                if self.shut_flags & 1:
                    return Received(b"")
                if not net.block(self.cond, deadline, timed):
                    raise SyscallError(errno.EAGAIN)

    # --- read(2)/write(2) -----------------------------------------------------------

    def read(self, count):
        """read(2) on a socket: recv with no flags."""
        if count == 0:
            return b""
        return self.recv(count).data

    def nread(self):
        """FIONREAD/SIOCINQ: unread stream bytes, or the next datagram's size.
        N.B. read from netstack's queues (it has no call for this)."""
        with self.net:
            s = self.sock
            if self.stream:
                if s.listening:
                    raise SyscallError(errno.EINVAL)
                return len(s.conn.rcv_buf) if s.conn is not None else 0
            return len(s.queue[0][0]) if s.queue else 0

    def outq(self):
        """SIOCOUTQ: bytes in the send buffer (sent or not, not yet acked)."""
        with self.net:
            s = self.sock
            if self.stream and s.listening:
                raise SyscallError(errno.EINVAL)
            c = getattr(s, "conn", None)
            return len(c.snd_buf) if c is not None else 0

    # --- options (values decoded by syscalls/net.py) ------------------------------

    def setopt(self, level, opt, value):
        """netstack's setsockopt under the lock."""
        with self.net:
            self.sock.setsockopt(level, opt, value)

    def getopt(self, level, opt):
        with self.net:
            return self.sock.getsockopt(level, opt)

    def listening(self):
        with self.net:
            return bool(self.stream and self.sock.listening)

    # --- readiness and lifetime ---------------------------------------------------

    def poll_events(self):
        """tcp_poll / udp_poll (netstack computes them; UDP shutdown here).

        N.B. the lock alone, not a transaction: poll and epoll call this
        with their own locks held, and leaving a transaction notifies
        WaitQueues, whose waiters take those locks (epoll's)."""
        with self.net.lock:
            ev = self.sock.poll()
            if self.stream and self._closed_connection_locked():
                # N.B. netstack leaves these out after a reset; Linux's
                # tcp_done shuts both ways, so tcp_poll reports them all.
                ev |= _CLOSED_EVENTS
            if not self.stream and self.shut_flags:
                if self.shut_flags & 1:
                    ev |= POLLIN | POLLRDNORM | POLLRDHUP
                if self.shut_flags == 3:
                    ev |= POLLHUP
            return ev

    def _closed_connection_locked(self):
        from ...netstack.tcp_state import State
        c = getattr(self.sock, "conn", None)
        return c is not None and c.state is State.CLOSED and not self.sock.listening

    def release(self):
        """Last close: netstack closes (a TCP connection lingers in the stack
        through FIN-WAIT and TIME-WAIT, as in Linux)."""
        with self.net:
            self.sock.remove_waiter(self._ready)
            self.sock.close()
            self.net.forget_locked(self)
        self.waitq.notify()


def new_socket(kernel, stype, protocol, flags=0):
    """A fresh AF_INET socket on the kernel's stack (made on first use)."""
    from ...netstack.socket import TCPSocket, UDPSocket
    net = net_of(kernel)
    with net:
        sock = TCPSocket(net.stack) if stype == SOCK_STREAM else UDPSocket(net.stack)
    return InetSocket(net, stype, protocol, sock, flags)
