"""Socket system calls: socket(2), bind(2), connect(2), sendmsg(2), ...

AF_UNIX is served by `socket/unix.py`, AF_INET (TCP and UDP) by netstack
through `socket/inet.py` (made on first use: `socket/netstack.py`); every other
family gives EAFNOSUPPORT (N.B. AF_INET6 too: netstack has no IPv6). This
module decodes the user's structures, exactly as x86-64 Linux lays them
out, and leaves semantics to the socket:

- ``struct sockaddr_un``: u16 family, char sun_path[108];
  ``struct sockaddr_in``: u16 family, be16 port, be32 address, 8 bytes pad.
  Lengths in and out follow move_addr_to_kernel/move_addr_to_user: at most
  128 bytes in; out, copy min(user length, real length) and store the real
  length.
- ``struct msghdr`` (56 bytes): name u64, namelen i32 (+4), iov u64,
  iovlen u64, control u64, controllen u64, flags i32 (+4).
- ``struct cmsghdr``: len u64, level i32, type i32, then data; each is
  aligned to 8 bytes (CMSG_ALIGN).
- ``struct mmsghdr`` (64 bytes): a msghdr then msg_len u32 (+4).
"""

import errno
import struct
import time

from pyvisor.abi.ints import s32
from pyvisor.abi.structs import TIMEVAL, UIO_MAXIOV
from ..errors import SyscallError, partial
from ..socket import inet
from ..socket.unix import (AF_UNIX, LISTENING, MAX_BUF, MIN_RCVBUF, MIN_SNDBUF,
                           MSG_CMSG_CLOEXEC, MSG_CTRUNC, MSG_DONTWAIT, MSG_TRUNC, SOCK_DGRAM,
                           SOCK_RAW, SOCK_SEQPACKET, SOCK_STREAM, SUN_PATH_OFFSET, Creds,
                           UnixSocket, new_socket, pack_sockaddr, parse_sockaddr, socket_pair)
from ..vfs.file import O_CLOEXEC, O_NONBLOCK, O_PATH
from ..vfs.perm import has_cap
from ._util import (check_stream_room, gather, install_pair, read_deadline, read_iovecs,
                    scatter)

AF_UNSPEC = 0
AF_INET = 2
IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_MAX = 0, 6, 17, 256
NPROTO = 46
SOCK_MAX = 11
SOCK_NONBLOCK, SOCK_CLOEXEC = O_NONBLOCK, O_CLOEXEC
SOCKADDR_STORAGE = 128
INT_MAX = 0x7FFFFFFF
SCM_MAX_FD = 253
MSG_WAITFORONE = 0x10000

SOL_SOCKET = 1
SCM_RIGHTS, SCM_CREDENTIALS = 1, 2
CAP_SETUID, CAP_SETGID, CAP_SYS_ADMIN = 7, 6, 21

SO_DEBUG, SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_DONTROUTE, SO_BROADCAST = 1, 2, 3, 4, 5, 6
SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, SO_OOBINLINE, SO_NO_CHECK, SO_PRIORITY = 7, 8, 9, 10, 11, 12
SO_LINGER, SO_REUSEPORT, SO_PASSCRED, SO_PEERCRED = 13, 15, 16, 17
SO_RCVLOWAT, SO_SNDLOWAT, SO_RCVTIMEO, SO_SNDTIMEO = 18, 19, 20, 21
SO_ACCEPTCONN, SO_SNDBUFFORCE, SO_RCVBUFFORCE = 30, 32, 33
SO_PROTOCOL, SO_DOMAIN = 38, 39
SO_RCVTIMEO_NEW, SO_SNDTIMEO_NEW = 66, 67
# Options kept and read back as an int, without further effect here.
_STORED_INT_OPTS = {SO_REUSEADDR, SO_KEEPALIVE, SO_BROADCAST, SO_DONTROUTE, SO_OOBINLINE,
                    SO_PRIORITY, SO_REUSEPORT, SO_NO_CHECK, SO_DEBUG}

_INT = struct.Struct("<i")
_MSGHDR = struct.Struct("<Qi4xQQQQi4x")
_CMSGHDR = struct.Struct("<Qii")
# sock_set_timeout: from MAX_SCHEDULE_TIMEOUT / HZ - 1 seconds on (HZ 1000
# here) a timeout is "forever", read back as {0, 0}.
_TIMEO_FOREVER_SEC = ((1 << 63) - 1) // 1000 - 1
_LINGER = struct.Struct("<ii")
MMSGHDR_SIZE = 64


def _align(n):
    return (n + 7) & ~7


# --- helpers ------------------------------------------------------------------

def _sock(t, fd):
    """The socket at `fd`: EBADF if none, ENOTSOCK if not a socket."""
    f = t.fdtable.get(s32(fd))
    if not isinstance(f, UnixSocket) and not getattr(f, "is_socket", False):
        raise SyscallError(errno.ENOTSOCK)
    return f


def _is_inet(s):
    return getattr(s, "family", AF_UNIX) == AF_INET


def _addr_in(t, addr, addrlen):
    """move_addr_to_kernel: the raw sockaddr bytes."""
    addrlen = s32(addrlen)
    if addrlen < 0 or addrlen > SOCKADDR_STORAGE:
        raise SyscallError(errno.EINVAL)
    if addrlen == 0:
        return b""
    return t.copy_in(addr, addrlen)


def _addr_out(t, addr, len_ptr, data):
    """move_addr_to_user: copy what fits, store the full length."""
    ulen = _INT.unpack(t.copy_in(len_ptr, 4))[0]
    n = min(ulen, len(data))
    if n < 0:
        raise SyscallError(errno.EINVAL)
    if n:
        t.copy_out(addr, data[:n])
    t.copy_out(len_ptr, _INT.pack(len(data)))


def _install(t, f, flags):
    """Put a new socket in the fd table with SOCK_NONBLOCK/SOCK_CLOEXEC."""
    if flags & SOCK_NONBLOCK:
        f.flags |= O_NONBLOCK
    return t.fdtable.install(f, cloexec=bool(flags & SOCK_CLOEXEC))


def _socket_type(domain, stype, protocol):
    """__sock_create and unix_create's checks: (base type, flags); for
    AF_INET, inet_create's: ((base type, protocol), flags)."""
    domain, stype, protocol = s32(domain), s32(stype), s32(protocol)
    flags = stype & (SOCK_NONBLOCK | SOCK_CLOEXEC)
    base = stype & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
    if domain < 0 or domain >= NPROTO:
        raise SyscallError(errno.EAFNOSUPPORT)
    if base < 0 or base >= SOCK_MAX:
        raise SyscallError(errno.EINVAL)
    if domain == AF_INET:
        return _inet_type(base, protocol), flags
    if domain != AF_UNIX:
        # N.B. AF_INET6 waits for IPv6 in netstack; AF_NETLINK is not served.
        raise SyscallError(errno.EAFNOSUPPORT)
    if protocol not in (0, AF_UNIX):
        raise SyscallError(errno.EPROTONOSUPPORT)
    if base == SOCK_RAW:
        base = SOCK_DGRAM                      # unix_create: raw is dgram
    if base not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
        raise SyscallError(errno.ESOCKTNOSUPPORT)
    return base, flags


def _inet_type(base, protocol):
    """inet_create's checks: (base type, protocol) for TCP or UDP.
    N.B. SOCK_RAW and ping sockets (SOCK_DGRAM, IPPROTO_ICMP) are not
    served: EPROTONOSUPPORT, as for a protocol Linux does not know."""
    if protocol < 0 or protocol >= IPPROTO_MAX:
        raise SyscallError(errno.EINVAL)
    if base == SOCK_STREAM and protocol in (IPPROTO_IP, IPPROTO_TCP):
        return base, IPPROTO_TCP
    if base == SOCK_DGRAM and protocol in (IPPROTO_IP, IPPROTO_UDP):
        return base, IPPROTO_UDP
    if base in (SOCK_STREAM, SOCK_DGRAM, SOCK_RAW):
        raise SyscallError(errno.EPROTONOSUPPORT)
    raise SyscallError(errno.ESOCKTNOSUPPORT)


# --- creation, names, connections --------------------------------------------

def sys_socket(t, domain, stype, protocol, *_):
    """Implements Linux syscall socket(2)."""
    kind, flags = _socket_type(domain, stype, protocol)
    if isinstance(kind, tuple):                 # AF_INET: (type, protocol)
        return _install(t, inet.new_socket(t.kernel, *kind), flags)
    return _install(t, new_socket(t, kind), flags)


def sys_socketpair(t, domain, stype, protocol, sv, *_):
    """Implements Linux syscall socketpair(2)."""
    base, flags = _socket_type(domain, stype, protocol)
    if isinstance(base, tuple):
        raise SyscallError(errno.EOPNOTSUPP)       # inet has no socketpair
    a, b = socket_pair(t, base)
    return install_pair(t, a, b, sv, lambda f: _install(t, f, flags))


def sys_bind(t, fd, addr, addrlen, *_):
    """Implements Linux syscall bind(2)."""
    s = _sock(t, fd)
    raw = _addr_in(t, addr, addrlen)
    if _is_inet(s):
        s.bind(t, raw)
        return 0
    if len(raw) == SUN_PATH_OFFSET and struct.unpack("<H", raw)[0] == AF_UNIX:
        s.bind(t, b"", autobind=True)
    else:
        s.bind(t, parse_sockaddr(raw))
    return 0


def sys_listen(t, fd, backlog, *_):
    """Implements Linux syscall listen(2)."""
    _sock(t, fd).listen(t, s32(backlog))
    return 0


def sys_connect(t, fd, addr, addrlen, *_):
    """Implements Linux syscall connect(2)."""
    s = _sock(t, fd)
    raw = _addr_in(t, addr, addrlen)
    if _is_inet(s):
        s.connect(t, raw)
        return 0
    if s.type == SOCK_DGRAM:
        if len(raw) < 2:
            raise SyscallError(errno.EINVAL)
        if struct.unpack_from("<H", raw)[0] == AF_UNSPEC:
            s.disconnect()
            return 0
    s.connect(t, parse_sockaddr(raw))
    return 0


def _accept(t, fd, addr, len_ptr, flags):
    flags = s32(flags)
    if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise SyscallError(errno.EINVAL)
    s = _sock(t, fd)
    new = s.accept(False)
    try:
        if _is_inet(s):
            peer = new.remote_name()
        else:
            peer = new.peername() if new.peer is not None else struct.pack("<H", AF_UNIX)
        if addr:
            _addr_out(t, addr, len_ptr, peer)
    except SyscallError:
        new.decref()                            # Linux drops the connection too
        raise
    return _install(t, new, flags)


def sys_accept(t, fd, addr, addrlen, *_):
    """Implements Linux syscall accept(2)."""
    return _accept(t, fd, addr, addrlen, 0)


def sys_accept4(t, fd, addr, addrlen, flags, *_):
    """Implements Linux syscall accept4(2)."""
    return _accept(t, fd, addr, addrlen, flags)


def sys_getsockname(t, fd, addr, addrlen, *_):
    """Implements Linux syscall getsockname(2)."""
    _addr_out(t, addr, addrlen, _sock(t, fd).sockname())
    return 0


def sys_getpeername(t, fd, addr, addrlen, *_):
    """Implements Linux syscall getpeername(2)."""
    _addr_out(t, addr, addrlen, _sock(t, fd).peername())
    return 0


def sys_shutdown(t, fd, how, *_):
    """Implements Linux syscall shutdown(2)."""
    _sock(t, fd).shut(s32(how))
    return 0


# --- data ------------------------------------------------------------------------

def _dest(s, raw):
    """The destination a send names: None for none; stream sockets only
    need to know one was given (they refuse it)."""
    if not raw:
        return None
    return raw if s.type == SOCK_STREAM or _is_inet(s) else parse_sockaddr(raw)


def sys_sendto(t, fd, buf, length, flags, addr, addrlen, *_):
    """Implements Linux syscall sendto(2) (and send(2))."""
    s = _sock(t, fd)
    length = min(length, INT_MAX)
    raw = _addr_in(t, addr, addrlen) if addr else b""
    if length and _is_inet(s):
        length = s.send_room(s32(flags), length)
    data = t.copy_in(buf, length) if length else b""
    return s.send(t, data, s32(flags), _dest(s, raw))


def _recv_result(s, r, flags):
    """recv's return value: the record's full length under MSG_TRUNC."""
    if flags & MSG_TRUNC and s.type != SOCK_STREAM:
        return r.length
    return len(r.data)


def _sender_name(s, r):
    """The sender's address as recvfrom/recvmsg report it (b"": none)."""
    if _is_inet(s):
        return r.addr                       # packed already; b"" on TCP
    return pack_sockaddr(r.addr) if r.addr else b""


def sys_recvfrom(t, fd, buf, length, flags, addr, addrlen, *_):
    """Implements Linux syscall recvfrom(2) (and recv(2)). Passed fds are dropped."""
    s = _sock(t, fd)
    flags = s32(flags)
    length = min(length, INT_MAX)
    r = s.recv(length, flags)
    for f in r.rights:
        f.decref()
    if r.data:
        t.copy_out(buf, r.data)
    if addr:
        _addr_out(t, addr, addrlen, _sender_name(s, r))
    return _recv_result(s, r, flags)


def _read_msghdr(t, msg):
    name, namelen, iov, iovlen, control, controllen, _flags = _MSGHDR.unpack(t.copy_in(msg, 56))
    vecs, total = read_iovecs(t, iov, iovlen, too_many=errno.EMSGSIZE)
    return name, namelen, vecs, total, control, controllen


def _check_creds(t, c):
    """scm_check_creds: a sender may only claim ids it holds (or caps)."""
    cr = t.creds
    ok_pid = c.pid == t.pid or has_cap(cr, CAP_SYS_ADMIN)
    ok_uid = c.uid in (cr.uid, cr.euid, cr.suid) or has_cap(cr, CAP_SETUID)
    ok_gid = c.gid in (cr.gid, cr.egid, cr.sgid) or has_cap(cr, CAP_SETGID)
    if not (ok_pid and ok_uid and ok_gid):
        raise SyscallError(errno.EPERM)


def _parse_control(t, control, controllen):
    """__scm_send: (rights [new references], creds or None)."""
    if controllen > INT_MAX:
        raise SyscallError(errno.ENOBUFS)
    if controllen < _CMSGHDR.size:
        return [], None
    buf = t.copy_in(control, controllen)
    rights, creds, off = [], None, 0
    try:
        while off + _CMSGHDR.size <= controllen:
            clen, level, ctype = _CMSGHDR.unpack_from(buf, off)
            if clen < _CMSGHDR.size or clen > controllen - off:
                raise SyscallError(errno.EINVAL)
            data = buf[off + _CMSGHDR.size:off + clen]
            off += _align(clen)
            if level != SOL_SOCKET:
                continue
            if ctype == SCM_RIGHTS:
                _take_rights(t, data, rights)
            elif ctype == SCM_CREDENTIALS:
                if clen != _CMSGHDR.size + 12:
                    raise SyscallError(errno.EINVAL)
                creds = Creds(*struct.unpack("<iII", data))
                _check_creds(t, creds)
            else:
                raise SyscallError(errno.EINVAL)
    except SyscallError:
        for f in rights:
            f.decref()
        raise
    return rights, creds


def _take_rights(t, data, rights):
    """scm_fp_copy: a reference to each fd's description (EBADF, EINVAL)."""
    n = len(data) // 4
    if n <= 0:
        return
    if len(rights) + n > SCM_MAX_FD:
        raise SyscallError(errno.EINVAL)
    for (fd,) in struct.iter_unpack("<i", data[:n * 4]):
        f = t.fdtable.get(fd)
        if f.flags & O_PATH:
            raise SyscallError(errno.EBADF)
        rights.append(f.incref())


def _sendmsg(t, s, msg, flags):
    name, namelen, vecs, total, control, controllen = _read_msghdr(t, msg)
    raw = b""
    if name and namelen:
        raw = _addr_in(t, name, namelen)
    if total and _is_inet(s):
        total = s.send_room(flags, total)
    data = gather(t, vecs, total, allow_partial=False)
    rights, creds = _parse_control(t, control, controllen)
    return s.send(t, data, flags, _dest(s, raw), rights, creds)


def sys_sendmsg(t, fd, msg, flags, *_):
    """Implements Linux syscall sendmsg(2)."""
    return _sendmsg(t, _sock(t, fd), msg, s32(flags))


class _Control:
    """put_cmsg / scm_detach_fds: fill the user's control buffer."""

    def __init__(self, room):
        self.room = room
        self.out = bytearray()
        self.flags = 0

    def put(self, level, ctype, data):
        if self.room < _CMSGHDR.size:
            self.flags |= MSG_CTRUNC
            return
        cmlen = _CMSGHDR.size + len(data)
        if self.room < cmlen:
            self.flags |= MSG_CTRUNC
            cmlen = self.room
        rec = (_CMSGHDR.pack(cmlen, level, ctype) + data)[:cmlen]
        space = min(_align(_CMSGHDR.size + len(data)), self.room)
        self.out += rec.ljust(space, b"\0")
        self.room -= space

    def rights(self, t, files, cloexec):
        """Install what fits; the rest are dropped and MSG_CTRUNC is set."""
        fdmax = (self.room - _CMSGHDR.size) // 4 if self.room > _CMSGHDR.size else 0
        fds = []
        for f in files:
            if len(fds) >= fdmax:
                f.decref()
                continue
            try:
                fds.append(t.fdtable.install(f, cloexec=cloexec))
            except SyscallError:
                fdmax = len(fds)            # EMFILE: install() dropped f
        if fds:
            self.put(SOL_SOCKET, SCM_RIGHTS, struct.pack("<%di" % len(fds), *fds))
        if len(fds) < len(files):
            self.flags |= MSG_CTRUNC


def _recvmsg(t, s, msg, flags):
    name, namelen, vecs, total, control, controllen = _read_msghdr(t, msg)
    if namelen < 0:
        raise SyscallError(errno.EINVAL)
    if s.type == SOCK_STREAM:
        check_stream_room(t, s, vecs, total, flags)
    r = s.recv(total, flags & ~MSG_CMSG_CLOEXEC)
    try:
        scatter(t, vecs, r.data, allow_partial=False)
    except SyscallError:
        for f in r.rights:
            f.decref()
        raise
    out_flags = r.flags
    ctl = _Control(min(controllen, INT_MAX) if control else 0)
    if not control:
        if s.passcred or r.rights:
            out_flags |= MSG_CTRUNC
        for f in r.rights:
            f.decref()
    else:
        if s.passcred:
            ctl.put(SOL_SOCKET, SCM_CREDENTIALS, (r.creds or Creds(0, 65534, 65534)).pack())
        if r.rights:
            ctl.rights(t, r.rights, bool(flags & MSG_CMSG_CLOEXEC))
        out_flags |= ctl.flags
        if ctl.out:
            t.copy_out(control, bytes(ctl.out))
    if name:
        sender = _sender_name(s, r)
        n = min(namelen, SOCKADDR_STORAGE, len(sender))
        if n:
            t.copy_out(name, sender[:n])
        t.copy_out(msg + 8, _INT.pack(len(sender)))
    t.copy_out(msg + 40, struct.pack("<Q", len(ctl.out)))
    t.copy_out(msg + 48, _INT.pack(out_flags))
    return _recv_result(s, r, flags)


def sys_recvmsg(t, fd, msg, flags, *_):
    """Implements Linux syscall recvmsg(2)."""
    return _recvmsg(t, _sock(t, fd), msg, s32(flags))


def sys_sendmmsg(t, fd, msgvec, vlen, flags, *_):
    """Implements Linux syscall sendmmsg(2): stops at the first error after
    a success (and reports the successes)."""
    s = _sock(t, fd)
    flags, vlen = s32(flags), min(vlen & 0xFFFFFFFF, UIO_MAXIOV)
    done = 0
    while done < vlen:
        entry = msgvec + done * MMSGHDR_SIZE
        try:
            n = _sendmsg(t, s, entry, flags)
            t.copy_out(entry + 56, struct.pack("<I", n))
        except SyscallError as e:
            return partial(done, e)
        done += 1
    return done


def sys_recvmmsg(t, fd, msgvec, vlen, flags, timeout, *_):
    """Implements Linux syscall recvmmsg(2): MSG_WAITFORONE turns on
    MSG_DONTWAIT after the first record; the timeout is checked between
    records, as Linux does."""
    s = _sock(t, fd)
    flags, vlen = s32(flags), min(vlen & 0xFFFFFFFF, UIO_MAXIOV)
    deadline = read_deadline(t, timeout)
    done = 0
    while done < vlen:
        entry = msgvec + done * MMSGHDR_SIZE
        try:
            n = _recvmsg(t, s, entry, flags)
            t.copy_out(entry + 56, struct.pack("<I", n))
        except SyscallError as e:
            partial(done, e)                # raises unless some records came
            break
        done += 1
        if flags & MSG_WAITFORONE:
            flags |= MSG_DONTWAIT
        if deadline is not None and time.monotonic() >= deadline:
            break
    return done


# --- options ------------------------------------------------------------------------

def _timeval_in(t, optval, optlen):
    """sock_set_timeout: seconds, or None for "forever" ({0, 0})."""
    if optlen < TIMEVAL.size:
        raise SyscallError(errno.EINVAL)
    sec, usec = TIMEVAL.unpack(t.copy_in(optval, TIMEVAL.size))
    if usec < 0 or usec >= 1000000:
        raise SyscallError(errno.EDOM)
    if sec < 0:
        return 0.0
    if (sec == 0 and usec == 0) or sec >= _TIMEO_FOREVER_SEC:
        return None
    return sec + usec / 1e6


def _linger_in(t, optval, optlen):
    """A struct linger from the user: (l_onoff, l_linger); EINVAL if too short."""
    if optlen < _LINGER.size:
        raise SyscallError(errno.EINVAL)
    return _LINGER.unpack(t.copy_in(optval, _LINGER.size))


def _set_timeout(t, s, optname, optval, optlen):
    """SO_RCVTIMEO/SO_SNDTIMEO, the same for every family: True if optname was one."""
    if optname in (SO_RCVTIMEO, SO_RCVTIMEO_NEW):
        s.rcvtimeo = _timeval_in(t, optval, optlen)
    elif optname in (SO_SNDTIMEO, SO_SNDTIMEO_NEW):
        s.sndtimeo = _timeval_in(t, optval, optlen)
    else:
        return False
    return True


def _timeval_out(v):
    if v is None:
        return TIMEVAL.pack(0, 0)
    sec = int(v)
    return TIMEVAL.pack(sec, int(round((v - sec) * 1e6)))


def _set_buf(v, minimum):
    """SO_SNDBUF/SO_RCVBUF: capped at the sysctl maximum, doubled for overhead."""
    v = min(v & 0xFFFFFFFF, MAX_BUF)
    return max(v * 2, minimum)


def sys_setsockopt(t, fd, level, optname, optval, optlen, *_):
    """Implements Linux syscall setsockopt(2) for SOL_SOCKET."""
    s = _sock(t, fd)
    level, optname, optlen = s32(level), s32(optname), s32(optlen)
    if _is_inet(s):
        return _inet_setsockopt(t, s, level, optname, optval, optlen)
    if level != SOL_SOCKET:
        raise SyscallError(errno.EOPNOTSUPP)
    if optlen < 0:
        raise SyscallError(errno.EINVAL)
    if _set_timeout(t, s, optname, optval, optlen):
        return 0
    if optname == SO_LINGER:
        onoff, secs = _linger_in(t, optval, optlen)
        s.linger = (1 if onoff else 0, secs if onoff else s.linger[1])
        return 0
    if optlen < 4:
        raise SyscallError(errno.EINVAL)
    v = _INT.unpack(t.copy_in(optval, 4))[0]
    if optname in (SO_SNDBUF, SO_SNDBUFFORCE):
        s.sndbuf = _set_buf(v, MIN_SNDBUF)
    elif optname in (SO_RCVBUF, SO_RCVBUFFORCE):
        s.rcvbuf = _set_buf(v, MIN_RCVBUF)
    elif optname == SO_PASSCRED:
        s.passcred = bool(v)
    elif optname in _STORED_INT_OPTS:
        s.opts[optname] = 1 if v and optname != SO_PRIORITY else v
    elif optname in (SO_RCVLOWAT,):
        s.opts[optname] = max(v, 1)
    else:
        raise SyscallError(errno.ENOPROTOOPT)
    return 0


def _getopt_value(s, optname):
    """The bytes getsockopt(SOL_SOCKET, optname) reports."""
    if optname == SO_TYPE:
        return _INT.pack(s.type)
    if optname == SO_DOMAIN:
        return _INT.pack(AF_UNIX)
    if optname == SO_PROTOCOL:
        return _INT.pack(0)
    if optname == SO_ERROR:
        err, s.err = s.err, 0
        return _INT.pack(err)
    if optname == SO_PEERCRED:
        return s.peercred.pack()
    if optname == SO_SNDBUF:
        return _INT.pack(s.sndbuf)
    if optname == SO_RCVBUF:
        return _INT.pack(s.rcvbuf)
    if optname == SO_PASSCRED:
        return _INT.pack(int(s.passcred))
    if optname == SO_ACCEPTCONN:
        return _INT.pack(int(s.state == LISTENING))
    if optname == SO_LINGER:
        return _LINGER.pack(*s.linger)
    if optname in (SO_RCVTIMEO, SO_RCVTIMEO_NEW):
        return _timeval_out(s.rcvtimeo)
    if optname in (SO_SNDTIMEO, SO_SNDTIMEO_NEW):
        return _timeval_out(s.sndtimeo)
    if optname in _STORED_INT_OPTS:
        return _INT.pack(s.opts.get(optname, 0))
    if optname == SO_RCVLOWAT:
        return _INT.pack(s.opts.get(optname, 1))
    if optname == SO_SNDLOWAT:
        return _INT.pack(1)
    raise SyscallError(errno.ENOPROTOOPT)


def sys_getsockopt(t, fd, level, optname, optval, optlen, *_):
    """Implements Linux syscall getsockopt(2) for SOL_SOCKET: copies at most
    the user's length and stores the length copied."""
    s = _sock(t, fd)
    level, optname = s32(level), s32(optname)
    if level != SOL_SOCKET and not _is_inet(s):
        raise SyscallError(errno.EOPNOTSUPP)
    ulen = _INT.unpack(t.copy_in(optlen, 4))[0]
    if ulen < 0:
        raise SyscallError(errno.EINVAL)
    if _is_inet(s):
        value = _inet_getopt_value(s, level, optname)
    else:
        value = _getopt_value(s, optname)
    n = min(ulen, len(value))
    if n:
        t.copy_out(optval, value[:n])
    t.copy_out(optlen, _INT.pack(n))
    return 0


# --- AF_INET options ---------------------------------------------------------------
#
# SOL_SOCKET options common to every family are decoded here; those that
# change the protocol (buffers, keepalive, linger, TCP_*, IP_TTL) go to the
# netstack socket, the rest are stored on the file and read back.

SOL_IP, SOL_TCP, SOL_UDP = IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP
IP_TOS, IP_TTL = 1, 2
TCP_NODELAY, TCP_MAXSEG, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 1, 2, 4, 5, 6
TCP_CONGESTION = 13
TCP_CA_NAME_MAX = 16
# Passed to netstack as ints (and reported by it).
_NETSTACK_TCP_OPTS = {TCP_NODELAY, TCP_MAXSEG, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT}
# Kept and read back as ints, without further effect here (N.B.).
_INET_STORED = {
    SOL_SOCKET: _STORED_INT_OPTS | {SO_PASSCRED},
    # TCP_CORK, TCP_SYNCNT, TCP_LINGER2, TCP_DEFER_ACCEPT, TCP_WINDOW_CLAMP,
    # TCP_QUICKACK, TCP_USER_TIMEOUT, TCP_FASTOPEN, TCP_NOTSENT_LOWAT
    SOL_TCP: {3, 7, 8, 9, 10, 12, 18, 23, 25},
    # IP_TOS, IP_PKTINFO, IP_MTU_DISCOVER, IP_RECVERR, IP_RECVTOS, IP_FREEBIND,
    # IP_BIND_ADDRESS_NO_PORT, IP_MULTICAST_TTL, IP_MULTICAST_LOOP
    SOL_IP: {IP_TOS, 8, 10, 11, 13, 15, 24, 33, 34},
    # UDP_CORK, UDP_SEGMENT, UDP_GRO
    SOL_UDP: {1, 103, 104},
}
_UDP_DEFAULT_SNDBUF = 212992
_NOBODY_CREDS = struct.pack("<iII", 0, 65534, 65534)   # SO_PEERCRED without a unix peer


def _inet_level_ok(s, level):
    """Which levels a socket answers: ip_setsockopt refuses the others."""
    if level in (SOL_SOCKET, SOL_IP):
        return True
    return level == (SOL_TCP if s.stream else SOL_UDP)


def _inet_setsockopt(t, s, level, optname, optval, optlen):
    """setsockopt(2) on an AF_INET socket."""
    if optlen < 0:
        raise SyscallError(errno.EINVAL)
    if not _inet_level_ok(s, level):
        raise SyscallError(errno.ENOPROTOOPT)
    if level == SOL_SOCKET:
        if _set_timeout(t, s, optname, optval, optlen):
            return 0
        if optname == SO_LINGER:
            onoff, secs = _linger_in(t, optval, optlen)
            if s.stream:
                s.setopt(SOL_SOCKET, SO_LINGER, (onoff, secs))
            else:
                s.opts[SO_LINGER] = (1 if onoff else 0, secs if onoff else 0)
            return 0
    if level == SOL_TCP and optname == TCP_CONGESTION:
        name = t.copy_in(optval, min(optlen, TCP_CA_NAME_MAX - 1)) if optlen else b""
        s.setopt(SOL_TCP, TCP_CONGESTION, name.split(b"\0", 1)[0])
        return 0
    if optlen < 4:
        raise SyscallError(errno.EINVAL)
    v = _INT.unpack(t.copy_in(optval, 4))[0]
    _inet_set_int(s, level, optname, v)
    return 0


def _inet_set_int(s, level, optname, v):
    if level == SOL_SOCKET:
        if optname in (SO_RCVBUF, SO_RCVBUFFORCE):
            s.setopt(SOL_SOCKET, SO_RCVBUF, min(v & 0xFFFFFFFF, MAX_BUF))
        elif optname in (SO_SNDBUF, SO_SNDBUFFORCE):
            if s.stream:
                s.setopt(SOL_SOCKET, SO_SNDBUF, min(v & 0xFFFFFFFF, MAX_BUF))
            else:
                s.opts[SO_SNDBUF] = _set_buf(v, MIN_SNDBUF)
        elif optname == SO_REUSEADDR or (optname == SO_KEEPALIVE and s.stream) or \
                (optname == SO_BROADCAST and not s.stream):
            s.setopt(SOL_SOCKET, optname, 1 if v else 0)
        elif optname == SO_RCVLOWAT:
            s.opts[optname] = max(v, 1)
        elif optname in _INET_STORED[SOL_SOCKET] or optname in (SO_KEEPALIVE, SO_BROADCAST):
            s.opts[optname] = 1 if v and optname != SO_PRIORITY else v
        else:
            raise SyscallError(errno.ENOPROTOOPT)
    elif level == SOL_TCP and optname in _NETSTACK_TCP_OPTS:
        s.setopt(level, optname, v)
    elif level == SOL_IP and optname == IP_TTL:
        s.setopt(level, optname, v)
    elif optname in _INET_STORED.get(level, ()):
        s.opts[(level, optname)] = v
    else:
        raise SyscallError(errno.ENOPROTOOPT)


def _inet_getopt_value(s, level, optname):
    """The bytes getsockopt(2) reports for an AF_INET socket."""
    if not _inet_level_ok(s, level):
        raise SyscallError(errno.ENOPROTOOPT)
    if level == SOL_SOCKET:
        v = _inet_sol_socket(s, optname)
        return v if isinstance(v, bytes) else _INT.pack(v)
    if level == SOL_TCP and optname == TCP_CONGESTION:
        return s.getopt(level, optname).ljust(TCP_CA_NAME_MAX, b"\0")
    if (level == SOL_TCP and optname in _NETSTACK_TCP_OPTS) or (
            level == SOL_IP and optname == IP_TTL):
        return _INT.pack(s.getopt(level, optname))
    if optname in _INET_STORED.get(level, ()):
        return _INT.pack(s.opts.get((level, optname), 0))
    raise SyscallError(errno.ENOPROTOOPT)


def _inet_sol_socket(s, optname):
    """getsockopt(SOL_SOCKET, optname): an int, or bytes for structures."""
    if optname == SO_TYPE:
        return s.type
    if optname == SO_DOMAIN:
        return AF_INET
    if optname == SO_PROTOCOL:
        return s.protocol
    if optname == SO_ACCEPTCONN:
        return int(s.listening())
    if optname in (SO_ERROR, SO_REUSEADDR, SO_RCVBUF) or \
            (s.stream and optname in (SO_SNDBUF, SO_KEEPALIVE)) or \
            (not s.stream and optname == SO_BROADCAST):
        return s.getopt(SOL_SOCKET, optname)
    if optname == SO_SNDBUF:
        return s.opts.get(SO_SNDBUF, _UDP_DEFAULT_SNDBUF)
    if optname == SO_LINGER:
        v = s.getopt(SOL_SOCKET, SO_LINGER) if s.stream else s.opts.get(SO_LINGER, (0, 0))
        return _LINGER.pack(*v)
    if optname in (SO_RCVTIMEO, SO_RCVTIMEO_NEW):
        return _timeval_out(s.rcvtimeo)
    if optname in (SO_SNDTIMEO, SO_SNDTIMEO_NEW):
        return _timeval_out(s.sndtimeo)
    if optname == SO_PEERCRED:
        return _NOBODY_CREDS
    if optname == SO_RCVLOWAT:
        return s.opts.get(optname, 1)
    if optname == SO_SNDLOWAT:
        return 1
    if optname in _INET_STORED[SOL_SOCKET] or optname in (SO_KEEPALIVE, SO_BROADCAST):
        return s.opts.get(optname, 0)
    raise SyscallError(errno.ENOPROTOOPT)
