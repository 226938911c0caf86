"""Socket-like endpoints over a :class:`~pyvisor.netstack.stack.Stack`.

These are what the Sentry's socket syscalls call.  Addresses are
``(dotted_quad, port)`` tuples as in Python's ``socket`` module; option
constants are Linux's (``socket.SOL_SOCKET``, ``socket.TCP_NODELAY``…);
errors are ``NetError(errno)`` with the errno Linux gives for the same
call on the same state (checked against the host kernel).

N.B. every call here is non-blocking: where Linux would sleep, these raise
``EAGAIN`` (``EINPROGRESS`` for connect).  The Sentry implements blocking
sockets by waiting on readiness: ``poll()`` returns the epoll mask Linux's
``tcp_poll``/``udp_poll`` would, and each waiter registered with
``add_waiter(cb)`` is called as ``cb(mask)`` whenever readiness may have
changed (level-triggered consumers simply re-check).  Waiters run inside
stack processing and must not call back into the stack.
"""

import errno
import select
import socket as _pysocket
from collections import deque

from . import icmp
from .addr import INADDR_ANY, INADDR_BROADCAST, ip, ip_str
from .errors import NetError
from .stack import HEADROOM, Endpoint
from .tcp import Closed, ConnectionError_, Connected, TCPConnection, _unwrap
from .tcp_segment import ACK, RST, SYN
from .tcp_state import SENDS_DATA, State

EPOLLIN = select.EPOLLIN | select.EPOLLRDNORM
EPOLLOUT = select.EPOLLOUT | select.EPOLLWRNORM
EPOLLERR = select.EPOLLERR
EPOLLHUP = select.EPOLLHUP
EPOLLRDHUP = select.EPOLLRDHUP

SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
SOMAXCONN = 4096
MAX_SYN_BACKLOG = 256     # embryonic connections per listener (SYN flood bound)
SOCK_MIN_RCVBUF = 2304    # Linux SOCK_MIN_RCVBUF (after doubling rules)
SOCK_MIN_SNDBUF = 4608
BUF_MAX = 4 << 20
UDP_MAX_PAYLOAD = 65507

SOL_SOCKET = _pysocket.SOL_SOCKET
IPPROTO_TCP = _pysocket.IPPROTO_TCP
IPPROTO_IP = _pysocket.IPPROTO_IP

_ICMP_ERRNO = {code: getattr(errno, name) for code, name in icmp.UNREACH_ERRNO.items()}


def _parse_addr(addr):
    try:
        host, port = addr
        return ip(host), int(port)
    except (TypeError, ValueError):
        raise NetError(errno.EINVAL) from None


def _check_port(port):
    if not 0 <= port <= 0xFFFF:
        raise NetError(errno.EINVAL)



def _mss_for(mtu):
    """The MSS a link allows: its MTU less the IP and TCP headers, and never
    past IPv4's 65535-byte total length (loopback's MTU is 65536)."""
    return min(mtu, 0xFFFF) - 40


class _Endpoint(Endpoint):
    """Readiness plumbing shared by TCP and UDP sockets."""

    def __init__(self, stack):
        self.stack = stack
        self.waiters = []
        self.error = 0              # pending SO_ERROR
        self.laddr = INADDR_ANY
        self.lport = 0
        self.ttl = 64
        self.reuseaddr = False
        self.timer_at = None

    def add_waiter(self, cb):
        """Call cb(mask) whenever readiness may have changed."""
        self.waiters.append(cb)

    def remove_waiter(self, cb):
        try:
            self.waiters.remove(cb)
        except ValueError:
            pass

    def _notify(self):
        if self.waiters:
            mask = self.poll()
            for cb in list(self.waiters):
                cb(mask)

    def _take_error(self):
        err, self.error = self.error, 0
        return err

    def _raise_pending(self):
        err = self._take_error()
        if err:
            raise NetError(err)

    def getsockname(self):
        return ip_str(self.laddr), self.lport

    def _sockopt_common_get(self, level, opt):
        if level == SOL_SOCKET and opt == _pysocket.SO_ERROR:
            return self._take_error()
        if level == SOL_SOCKET and opt == _pysocket.SO_REUSEADDR:
            return int(self.reuseaddr)
        if level == IPPROTO_IP and opt == _pysocket.IP_TTL:
            return self.ttl
        raise NetError(errno.ENOPROTOOPT)

    def _sockopt_common_set(self, level, opt, value):
        if level == SOL_SOCKET and opt == _pysocket.SO_REUSEADDR:
            self.reuseaddr = bool(value)
        elif level == IPPROTO_IP and opt == _pysocket.IP_TTL:
            if value == -1:
                value = 64
            if not 1 <= value <= 255:
                raise NetError(errno.EINVAL)
            self.ttl = value
        else:
            raise NetError(errno.ENOPROTOOPT)


# ====================================================================== TCP

class TCPSocket(_Endpoint):
    """A SOCK_STREAM socket.  Roles: new, listening, or with a connection."""

    def __init__(self, stack):
        super().__init__(stack)
        self.config = stack.tcp_defaults.copy()
        self.conn = None
        self.raddr = None
        self.rport = None
        self.listening = False
        self.backlog = 0
        self.syn_queue = {}
        self.accept_queue = deque()
        self.listener = None
        self.bound = False
        self.linger = None          # None, or seconds (0 = abort on close)
        self.closed = False
        self._ready = False         # handshake done, waiting for accept room

    # ---------------------------------------------------------- addresses

    def bind(self, addr):
        """Implements bind(2) for TCP."""
        laddr, port = _parse_addr(addr)
        _check_port(port)
        if self.bound or self.conn is not None or self.closed:
            raise NetError(errno.EINVAL)
        if laddr != INADDR_ANY and not self.stack.is_local(laddr):
            raise NetError(errno.EADDRNOTAVAIL)
        self._bind(laddr, port)

    def _bind(self, laddr, port):
        table = self.stack.tcp_bound
        if port == 0:
            port = self.stack.ephemeral_port(table, laddr)
            if port is None:
                raise NetError(errno.EADDRINUSE)
        elif self._conflicts(laddr, port):
            raise NetError(errno.EADDRINUSE)
        self.laddr, self.lport, self.bound = laddr, port, True
        table.setdefault((laddr, port), set()).add(self)

    def _conflicts(self, laddr, port):
        for (a, p), socks in self.stack.tcp_bound.items():
            if p != port or not (a == laddr or a == INADDR_ANY or laddr == INADDR_ANY):
                continue
            for other in socks:
                if not (self.reuseaddr and other.reuseaddr and not other.listening):
                    return True
        return False

    def _unbind(self):
        if not self.bound:
            return
        self.bound = False
        socks = self.stack.tcp_bound.get((self.laddr, self.lport))
        if socks is not None:
            socks.discard(self)
            if not socks:
                del self.stack.tcp_bound[(self.laddr, self.lport)]

    def getpeername(self):
        """Implements getpeername(2): ENOTCONN unless synchronized."""
        c = self.conn
        if c is None or c.state in (State.CLOSED, State.SYN_SENT):
            raise NetError(errno.ENOTCONN)
        return ip_str(self.raddr), self.rport

    # ---------------------------------------------------------- passive

    def listen(self, backlog=128):
        """Implements listen(2)."""
        if self.conn is not None or self.closed:
            raise NetError(errno.EINVAL)
        self.backlog = min(max(int(backlog), 0), SOMAXCONN)
        if self.listening:
            return
        if not self.bound:
            self._bind(INADDR_ANY, 0)
        for other in self.stack.tcp_bound.get((self.laddr, self.lport), ()):
            if other is not self and other.listening:
                raise NetError(errno.EADDRINUSE)
        self.listening = True
        self.stack.tcp_listeners[(self.laddr, self.lport)] = self

    def accept(self):
        """Implements accept(2): (socket, (host, port)) or EAGAIN."""
        if not self.listening:
            raise NetError(errno.EINVAL)
        if self.accept_queue:
            child = self.accept_queue.popleft()
            child.listener = None
            self._promote()
            return child, (ip_str(child.raddr), child.rport)
        raise NetError(errno.EAGAIN)

    def on_syn(self, pkt, sport, dport, seg, now):
        """A SYN for this listener.  Bounded: a flood cannot grow memory."""
        stack = self.stack
        if len(self.accept_queue) > self.backlog:
            stack.drops["tcp_accept_queue_full"] += 1
            return
        if len(self.syn_queue) >= min(MAX_SYN_BACKLOG, max(self.backlog, 8) * 2):
            stack.drops["tcp_syn_queue_full"] += 1
            return
        child = TCPSocket(stack)
        child.config = self.config.copy()
        nic = stack.nic_for(pkt.dst)
        if nic is not None:
            child.config.mss = min(child.config.mss, _mss_for(nic.mtu))
        child.laddr, child.lport = pkt.dst, dport
        child.raddr, child.rport = pkt.src, sport
        child.ttl = self.ttl
        child.listener = self
        iss = stack.isn(pkt.dst, dport, pkt.src, sport)
        child.conn = TCPConnection.from_syn(seg, child.config, now, iss)
        if nic is not None:
            child.conn.gso_max = stack.gso_max_for(nic)
        key = (pkt.dst, dport, pkt.src, sport)
        stack.tcp_conns[key] = child
        self.syn_queue[key] = child
        stack.mark(child)

    def _child_established(self, child):
        """A handshake completed.  With the accept queue full the child
        waits in the SYN queue (still counted against its bound) and moves
        up when accept() makes room.  N.B. Linux instead drops the final
        ACK and lets the peer retry; either way the peer is not refused."""
        child._ready = True
        self._promote()

    def _promote(self):
        moved = False
        for key, child in list(self.syn_queue.items()):
            if len(self.accept_queue) > self.backlog:
                break
            if child._ready:
                del self.syn_queue[key]
                self.accept_queue.append(child)
                moved = True
        if moved:
            self._notify()

    def _child_gone(self, child):
        key = child._key()
        self.syn_queue.pop(key, None)
        try:
            self.accept_queue.remove(child)
        except ValueError:
            pass

    # ---------------------------------------------------------- active

    def connect(self, addr):
        """Implements connect(2), non-blocking: EINPROGRESS, then EALREADY
        while the handshake runs; the result arrives as POLLOUT and SO_ERROR."""
        raddr, rport = _parse_addr(addr)
        _check_port(rport)
        if self.listening:
            raise NetError(errno.EISCONN)
        c = self.conn
        if c is not None:
            if c.state is State.SYN_SENT or c.state is State.SYN_RECEIVED:
                raise NetError(errno.EALREADY)
            if c.state is not State.CLOSED:
                raise NetError(errno.EISCONN)
            err = self._take_error()
            raise NetError(err or errno.ECONNABORTED)
        if rport == 0 or raddr == INADDR_BROADCAST:
            raise NetError(errno.ECONNREFUSED if rport == 0 else errno.ENETUNREACH)
        stack = self.stack
        route = stack.route(raddr)
        if route is None:
            raise NetError(errno.ENETUNREACH)
        nic = route[0]
        if self.laddr == INADDR_ANY:
            src = stack.source_for(raddr)
            if self.bound:
                self._unbind()
                self._bind(src, self.lport)
            self.laddr = src
        if not self.bound:
            self._bind(self.laddr, 0)
        key = (self.laddr, self.lport, raddr, rport)
        if key in stack.tcp_conns:
            raise NetError(errno.EADDRNOTAVAIL)
        self.raddr, self.rport = raddr, rport
        self.config.mss = min(self.config.mss, _mss_for(nic.mtu))
        now = stack.clock.now()
        self.conn = TCPConnection(self.config, stack.isn(*key), now)
        self.conn.gso_max = stack.gso_max_for(nic)
        stack.tcp_conns[key] = self
        self.conn.connect(now)
        stack.mark(self)
        stack.flush(now)
        if self.conn.state is State.ESTABLISHED:
            return
        raise NetError(errno.EINPROGRESS)

    def _key(self):
        return (self.laddr, self.lport, self.raddr, self.rport)

    # ---------------------------------------------------------- data

    def send(self, data, flags=0):
        """Implements send(2) on a stream socket: bytes queued, or an error."""
        c = self.conn
        if self.error:
            self._raise_pending()
        if c is None or self.listening:
            raise NetError(errno.EPIPE)
        if c.state in (State.SYN_SENT, State.SYN_RECEIVED):
            raise NetError(errno.EAGAIN)
        if c.state not in SENDS_DATA or c.fin_queued:
            raise NetError(errno.EPIPE)
        if not len(data):
            return 0
        n = c.send(data)
        if n == 0:
            raise NetError(errno.EAGAIN)
        self.stack.mark(self)
        self.stack.flush()
        return n

    def recv(self, maxlen, flags=0):
        """Implements recv(2): data, b"" at end of stream, or an error."""
        if maxlen < 0:
            raise NetError(errno.EINVAL)
        c = self.conn
        if c is None or self.listening:
            raise NetError(errno.ENOTCONN)
        if c.readable:
            if flags & _pysocket.MSG_PEEK:
                return bytes(c.rcv_buf[:maxlen])
            data = c.recv(maxlen)
            if c.ack_now:
                self.stack.mark(self)
                self.stack.flush()
            return data
        if c.eof:
            return b""
        if self.error:
            self._raise_pending()
        if c.state is State.CLOSED:
            return b""
        raise NetError(errno.EAGAIN)

    def shutdown(self, how):
        """Implements shutdown(2)."""
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise NetError(errno.EINVAL)
        if self.listening:
            if how != SHUT_WR:
                self._stop_listening()
            return
        c = self.conn
        if c is None or c.state in (State.CLOSED, State.SYN_SENT):
            raise NetError(errno.ENOTCONN)
        if how != SHUT_WR:
            c.shutdown_read()
        if how != SHUT_RD:
            c.shutdown_write()
        self.stack.mark(self)
        self.stack.flush()
        self._notify()

    def close(self):
        """close(2) of the last reference.  The connection lives on in the
        stack (FIN-WAIT, TIME-WAIT) until it reaches CLOSED."""
        if self.closed:
            return
        self.closed = True
        self.waiters.clear()
        if self.listening:
            self._stop_listening()
            self._unbind()
            return
        c = self.conn
        if c is None:
            self._unbind()
            return
        now = self.stack.clock.now()
        if self.linger == 0:
            c.abort(now)
        else:
            c.close(now)
        self.stack.mark(self)
        self.stack.flush(now)
        if c.state is State.CLOSED:
            self._unbind()

    def _stop_listening(self):
        stack = self.stack
        self.listening = False
        if stack.tcp_listeners.get((self.laddr, self.lport)) is self:
            del stack.tcp_listeners[(self.laddr, self.lport)]
        now = stack.clock.now()
        for child in list(self.syn_queue.values()) + list(self.accept_queue):
            child.listener = None
            child.closed = True
            child.conn.abort(now)
            stack.mark(child)
        self.syn_queue.clear()
        self.accept_queue.clear()

    # ---------------------------------------------------------- stack side (stack.Endpoint)

    def on_segment(self, seg, now):
        self.conn.receive(seg, now)
        self._events()
        self.stack.mark(self)

    def transmit(self, now):
        c = self.conn
        if c is None:
            return
        segs = c.output(now)
        if segs:
            send = self.stack.send_tcp
            for seg in segs:
                send(self.laddr, self.lport, self.raddr, self.rport, seg, self.ttl)
        self._events()

    def next_deadline(self):
        return None if self.conn is None else self.conn.next_deadline()

    def _events(self):
        c = self.conn
        if not c.events:
            return
        changed = False
        while c.events:
            ev = c.events.pop(0)
            changed = True
            if isinstance(ev, Connected):
                if self.listener is not None:
                    self.listener._child_established(self)
            elif isinstance(ev, ConnectionError_):
                self.error = ev.errno
            elif isinstance(ev, Closed):
                self._on_closed()
        if changed:
            self._notify()

    def _on_closed(self):
        stack = self.stack
        key = self._key()
        if stack.tcp_conns.get(key) is self:
            del stack.tcp_conns[key]
        if self.listener is not None:
            self.listener._child_gone(self)
            self.listener = None
        if self.closed:
            self._unbind()

    def time_wait_yields_to(self, seg):
        """A new SYN may take over a 4-tuple in TIME-WAIT when its sequence
        number is above the old connection's (RFC 9293 3.6.1, RFC 6191;
        Linux tcp_timewait_state_process)."""
        c = self.conn
        if c is None or c.state is not State.TIME_WAIT or seg.flags & (SYN | ACK | RST) != SYN:
            return False
        return _unwrap(c.rcv_nxt, seg.seq) > c.rcv_nxt

    def time_wait_kill(self):
        self.conn._enter_closed()
        self._events()

    def on_icmp_error(self, code, next_mtu, quoted_seq):
        c = self.conn
        if c is None:
            return
        seq = quoted_seq
        if not (c.snd_una & 0xFFFFFFFF) == seq and not (
                ((seq - c.snd_una) & 0xFFFFFFFF) < (c.snd_max - c.snd_una)):
            self.stack.drops["icmp_out_of_window"] += 1  # RFC 5927 4.1
            return
        if code == icmp.CODE_FRAG_NEEDED:
            if next_mtu >= 68:
                c.snd_mss = min(c.snd_mss, _mss_for(next_mtu))
            return
        err = _ICMP_ERRNO.get(code, errno.EHOSTUNREACH)
        if c.state is State.SYN_SENT:
            c.abort(self.stack.clock.now(), err)
            self._events()

    # ---------------------------------------------------------- readiness

    def poll(self):
        """The epoll mask, as Linux's tcp_poll computes it."""
        if self.listening:
            return EPOLLIN if self.accept_queue else 0
        c = self.conn
        if c is None:
            return EPOLLOUT | EPOLLHUP
        mask = 0
        st = c.state
        rd_shut = c.fin_received or c.read_shutdown
        wr_shut = c.fin_queued
        if st is State.CLOSED or (rd_shut and wr_shut):
            mask |= EPOLLHUP
        if rd_shut:
            mask |= EPOLLIN | EPOLLRDHUP
        if st not in (State.SYN_SENT, State.SYN_RECEIVED):
            if c.readable:
                mask |= EPOLLIN
            if not wr_shut:
                space = c.send_space
                if space > 0 and space >= len(c.snd_buf) // 2:
                    mask |= EPOLLOUT
            else:
                mask |= EPOLLOUT
        if self.error:
            mask |= EPOLLERR
        return mask

    @property
    def state(self):
        return State.LISTEN if self.listening else (
            self.conn.state if self.conn else State.CLOSED)

    # ---------------------------------------------------------- options

    def setsockopt(self, level, opt, value):
        """Implements setsockopt(2) for the common options."""
        cfg = self.config
        if level == SOL_SOCKET:
            if opt == _pysocket.SO_RCVBUF:
                cfg.rcvbuf = min(max(int(value) * 2, SOCK_MIN_RCVBUF), BUF_MAX)
            elif opt == _pysocket.SO_SNDBUF:
                cfg.sndbuf = min(max(int(value) * 2, SOCK_MIN_SNDBUF), BUF_MAX)
                cfg.sndbuf_locked = True  # no autotuning, as SOCK_SNDBUF_LOCK
            elif opt == _pysocket.SO_KEEPALIVE:
                cfg.keepalive = bool(value)
                self._touch()
            elif opt == _pysocket.SO_LINGER:
                onoff, secs = value
                self.linger = max(int(secs), 0) if onoff else None
            else:
                self._sockopt_common_set(level, opt, value)
        elif level == IPPROTO_TCP:
            if opt == _pysocket.TCP_NODELAY:
                cfg.nodelay = bool(value)
                self._touch()
            elif opt == _pysocket.TCP_MAXSEG:
                if not 88 <= value <= 32767:
                    raise NetError(errno.EINVAL)
                cfg.user_mss = int(value)
            elif opt == _pysocket.TCP_KEEPIDLE:
                cfg.keepidle = self._range(value, 1, 32767)
            elif opt == _pysocket.TCP_KEEPINTVL:
                cfg.keepintvl = self._range(value, 1, 32767)
            elif opt == _pysocket.TCP_KEEPCNT:
                cfg.keepcnt = self._range(value, 1, 127)
            elif opt == _pysocket.TCP_CONGESTION:
                name = value.decode() if isinstance(value, bytes) else value
                if name not in ("reno", "cubic"):
                    raise NetError(errno.ENOENT)
                cfg.cc = name
            else:
                raise NetError(errno.ENOPROTOOPT)
        else:
            self._sockopt_common_set(level, opt, value)
        if self.conn is not None:
            self.conn.config = cfg

    @staticmethod
    def _range(value, lo, hi):
        if not lo <= int(value) <= hi:
            raise NetError(errno.EINVAL)
        return int(value)

    def _touch(self):
        if self.conn is not None:
            self.stack.mark(self)
            self.stack.flush()

    def getsockopt(self, level, opt):
        """Implements getsockopt(2) for the common options."""
        cfg = self.config
        if level == SOL_SOCKET:
            simple = {_pysocket.SO_RCVBUF: cfg.rcvbuf, _pysocket.SO_SNDBUF: cfg.sndbuf,
                      _pysocket.SO_KEEPALIVE: int(cfg.keepalive),
                      _pysocket.SO_TYPE: _pysocket.SOCK_STREAM,
                      _pysocket.SO_ACCEPTCONN: int(self.listening)}
            if opt in simple:
                return simple[opt]
            if opt == _pysocket.SO_LINGER:
                return (0, 0) if self.linger is None else (1, self.linger)
        elif level == IPPROTO_TCP:
            if opt == _pysocket.TCP_NODELAY:
                return int(cfg.nodelay)
            if opt == _pysocket.TCP_MAXSEG:
                c = self.conn
                if c is not None and c.state not in (State.CLOSED, State.SYN_SENT):
                    return c.eff_mss
                return cfg.user_mss or 536
            if opt == _pysocket.TCP_KEEPIDLE:
                return int(cfg.keepidle)
            if opt == _pysocket.TCP_KEEPINTVL:
                return int(cfg.keepintvl)
            if opt == _pysocket.TCP_KEEPCNT:
                return cfg.keepcnt
            if opt == _pysocket.TCP_CONGESTION:
                return cfg.cc.encode()
            raise NetError(errno.ENOPROTOOPT)
        return self._sockopt_common_get(level, opt)


# ====================================================================== UDP

class UDPSocket(_Endpoint):
    """A SOCK_DGRAM socket."""

    def __init__(self, stack):
        super().__init__(stack)
        self.raddr = None
        self.rport = None
        self.rcvbuf = 212992       # Linux default rmem
        self.queued = 0
        self.queue = deque()
        self.broadcast = False
        self.closed = False

    def bind(self, addr):
        """Implements bind(2) for UDP."""
        laddr, port = _parse_addr(addr)
        _check_port(port)
        if self.lport or self.closed:
            raise NetError(errno.EINVAL)
        if laddr != INADDR_ANY and not self.stack.is_local(laddr):
            raise NetError(errno.EADDRNOTAVAIL)
        self._bind(laddr, port)

    def _bind(self, laddr, port):
        table = self.stack.udp_socks
        if port == 0:
            port = self.stack.ephemeral_port(table, laddr)
            if port is None:
                raise NetError(errno.EAGAIN)
        elif self.stack.port_in_use(table, laddr, port):
            raise NetError(errno.EADDRINUSE)
        self.laddr, self.lport = laddr, port
        table[(laddr, port)] = self

    def connect(self, addr):
        """Implements connect(2) for UDP: fixes the default peer and filter."""
        raddr, rport = _parse_addr(addr)
        if rport == 0:
            raise NetError(errno.EINVAL)
        if self.stack.route(raddr) is None:
            raise NetError(errno.ENETUNREACH)
        if not self.lport:
            self._bind(INADDR_ANY, 0)
        self.raddr, self.rport = raddr, rport

    def getpeername(self):
        if self.raddr is None:
            raise NetError(errno.ENOTCONN)
        return ip_str(self.raddr), self.rport

    def sendto(self, data, addr=None):
        """Implements sendto(2); addr None means the connected peer."""
        if addr is None:
            if self.raddr is None:
                raise NetError(errno.EDESTADDRREQ)
            raddr, rport = self.raddr, self.rport
        else:
            raddr, rport = _parse_addr(addr)
            if rport == 0:
                raise NetError(errno.EINVAL)
        if self.error:
            self._raise_pending()
        if len(data) > UDP_MAX_PAYLOAD:
            raise NetError(errno.EMSGSIZE)
        if raddr == INADDR_BROADCAST and not self.broadcast:
            raise NetError(errno.EACCES)
        stack = self.stack
        src = self.laddr if self.laddr != INADDR_ANY else stack.source_for(raddr)
        if src is None:
            raise NetError(errno.ENETUNREACH)
        if not self.lport:
            self._bind(INADDR_ANY, 0)
        buf = bytearray(HEADROOM + 8 + len(data))
        from . import udp
        udp.build(buf, HEADROOM, self.lport, rport, data, src, raddr)
        if not stack.send_ip(src, raddr, 17, buf, self.ttl, df=False):
            raise NetError(errno.ENETUNREACH)
        stack.flush()
        return len(data)

    def send(self, data, flags=0):
        return self.sendto(data, None)

    def recvfrom(self, maxlen, flags=0):
        """Implements recvfrom(2): (data, (host, port)); a longer datagram
        is truncated and its tail lost, as Linux does without MSG_TRUNC."""
        if self.queue:
            data, src, sport = self.queue[0]
            if not flags & _pysocket.MSG_PEEK:
                self.queue.popleft()
                self.queued -= len(data)
            return data[:maxlen], (ip_str(src), sport)
        if self.error:
            self._raise_pending()
        raise NetError(errno.EAGAIN)

    def recv(self, maxlen, flags=0):
        return self.recvfrom(maxlen, flags)[0]

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.waiters.clear()
        if self.lport and self.stack.udp_socks.get((self.laddr, self.lport)) is self:
            del self.stack.udp_socks[(self.laddr, self.lport)]
        self.queue.clear()

    def poll(self):
        mask = EPOLLOUT
        if self.queue:
            mask |= EPOLLIN
        if self.error:
            mask |= EPOLLERR
        return mask

    def setsockopt(self, level, opt, value):
        if level == SOL_SOCKET and opt == _pysocket.SO_RCVBUF:
            self.rcvbuf = min(max(int(value) * 2, SOCK_MIN_RCVBUF), BUF_MAX)
        elif level == SOL_SOCKET and opt == _pysocket.SO_BROADCAST:
            self.broadcast = bool(value)
        else:
            self._sockopt_common_set(level, opt, value)

    def getsockopt(self, level, opt):
        if level == SOL_SOCKET and opt == _pysocket.SO_RCVBUF:
            return self.rcvbuf
        if level == SOL_SOCKET and opt == _pysocket.SO_BROADCAST:
            return int(self.broadcast)
        if level == SOL_SOCKET and opt == _pysocket.SO_TYPE:
            return _pysocket.SOCK_DGRAM
        return self._sockopt_common_get(level, opt)

    # ---------------------------------------------------------- stack side (stack.Endpoint)

    def accepts(self, src, sport):
        return self.raddr is None or (src == self.raddr and sport == self.rport)

    def on_datagram(self, data, src, sport):
        if self.queued + len(data) > self.rcvbuf:
            self.stack.drops["udp_rcvbuf_full"] += 1
            return
        self.queue.append((data, src, sport))
        self.queued += len(data)
        self._notify()

    def on_icmp_error(self, code, dst, dport):
        # Linux reports ICMP errors only to connected sockets (no IP_RECVERR).
        if self.raddr is None or dst != self.raddr or dport != self.rport:
            self.stack.drops["icmp_unconnected_udp"] += 1
            return
        self.error = _ICMP_ERRNO.get(code, errno.EHOSTUNREACH)
        self._notify()
