"""AF_INET sockets through the syscall handlers (syscalls/net.py ->
socket/inet.py -> netstack), on the VFS test harness: a FakeTask over a real
VFS and a real per-kernel stack with its loopback and driver thread.
Every bad-input path of the AF_INET decoding is here; blocking cases use a
second Python thread as the peer. Real programs: test_inet_programs.py."""

import errno
import os
import textwrap
import socket
import struct
import threading
import time

import pytest

from pyvisor.sentry.socket import netstack as sentry_net
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls import fs, net
from pyvisor.sentry.vfs.testing import make_env
from pyvisor.sentry.vfs.waitq import POLLERR, POLLHUP, POLLIN, POLLOUT

AF_UNSPEC, AF_UNIX, AF_INET, AF_INET6 = 0, 1, 2, 10
STREAM, DGRAM, RAW, SEQ = 1, 2, 3, 5
SOL, TCP, IP, UDP = net.SOL_SOCKET, 6, 0, 17
NONBLOCK = net.SOCK_NONBLOCK
MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_WAITALL, MSG_NOSIGNAL = 2, 0x20, 0x40, 0x100, 0x4000


@pytest.fixture
def t():
    kernel, _vfs, task = make_env()
    yield task
    sentry_net.shutdown(kernel)


def err(fn, *a):
    with pytest.raises(SyscallError) as e:
        fn(*a)
    return e.value.errno


def sin(host="127.0.0.1", port=0, family=AF_INET):
    return struct.pack("<H", family) + struct.pack(">H", port) + socket.inet_aton(host) + bytes(8)


def sock(t, kind=STREAM, proto=0):
    return net.sys_socket(t, AF_INET, kind, proto)


def bind(t, fd, addr):
    return net.sys_bind(t, fd, t.put(addr), len(addr))


def connect(t, fd, addr):
    return net.sys_connect(t, fd, t.put(addr), len(addr))


def name(t, fd, fn=net.sys_getsockname):
    buf, ln = t.alloc(128), t.put(struct.pack("<i", 128))
    fn(t, fd, buf, ln)
    n = struct.unpack("<i", t.copy_in(ln, 4))[0]
    return t.copy_in(buf, n)


def port_of(t, fd):
    return struct.unpack(">H", name(t, fd)[2:4])[0]


def send(t, fd, data, flags=0, to=None):
    buf = t.put(data) if data else t.alloc(1)
    if to is None:
        return net.sys_sendto(t, fd, buf, len(data), flags, 0, 0)
    return net.sys_sendto(t, fd, buf, len(data), flags, t.put(to), len(to))


def recv(t, fd, n=4096, flags=0):
    buf = t.alloc(max(n, 1))
    got = net.sys_recvfrom(t, fd, buf, n, flags, 0, 0)
    return t.copy_in(buf, min(got, n)) if got else b""


def recvfrom(t, fd, n=4096, flags=0):
    buf, a, ln = t.alloc(max(n, 1)), t.alloc(128), t.put(struct.pack("<i", 128))
    got = net.sys_recvfrom(t, fd, buf, n, flags, a, ln)
    alen = struct.unpack("<i", t.copy_in(ln, 4))[0]
    return got, t.copy_in(buf, min(got, n)), t.copy_in(a, alen) if alen else b""


def setopt(t, fd, level, opt, value):
    raw = struct.pack("<i", value) if isinstance(value, int) else value
    return net.sys_setsockopt(t, fd, level, opt, t.put(raw), len(raw))


def getopt(t, fd, level, opt, size=4):
    buf, ln = t.alloc(size), t.put(struct.pack("<i", size))
    net.sys_getsockopt(t, fd, level, opt, buf, ln)
    n = struct.unpack("<i", t.copy_in(ln, 4))[0]
    return t.copy_in(buf, n)


def int_opt(t, fd, level, opt):
    return struct.unpack("<i", getopt(t, fd, level, opt))[0]


def server(t, kind=STREAM):
    fd = sock(t, kind)
    assert bind(t, fd, sin()) == 0
    if kind == STREAM:
        assert net.sys_listen(t, fd, 8) == 0
    return fd, port_of(t, fd)


def tcp_pair(t):
    """(listener, client, accepted) connected over loopback."""
    lfd, port = server(t)
    c = sock(t)
    assert connect(t, c, sin(port=port)) == 0
    a = net.sys_accept4(t, lfd, 0, 0, 0)
    return lfd, c, a


# --- socket(2) --------------------------------------------------------------------

@pytest.mark.parametrize("stype,proto,expect", [
    (STREAM, 0, None), (STREAM, TCP, None), (DGRAM, 0, None), (DGRAM, UDP, None),
    (STREAM | NONBLOCK | net.SOCK_CLOEXEC, 0, None),
    (STREAM, UDP, errno.EPROTONOSUPPORT), (DGRAM, TCP, errno.EPROTONOSUPPORT),
    (RAW, 1, errno.EPROTONOSUPPORT), (SEQ, 0, errno.ESOCKTNOSUPPORT),
    (STREAM, 300, errno.EINVAL), (STREAM, -1 & 0xFFFFFFFF, errno.EINVAL),
    (20, 0, errno.EINVAL),
])
def test_socket_types(t, stype, proto, expect):
    if expect is None:
        fd = net.sys_socket(t, AF_INET, stype, proto)
        assert int_opt(t, fd, SOL, net.SO_DOMAIN) == AF_INET
        assert int_opt(t, fd, SOL, net.SO_TYPE) == stype & 0xF
        assert int_opt(t, fd, SOL, net.SO_PROTOCOL) == (TCP if stype & 0xF == STREAM else UDP)
        assert bool(t.fdtable.get(fd).flags & NONBLOCK) == bool(stype & NONBLOCK)
    else:
        assert err(net.sys_socket, t, AF_INET, stype, proto) == expect


def test_inet6_and_socketpair_refused(t):
    assert err(net.sys_socket, t, AF_INET6, STREAM, 0) == errno.EAFNOSUPPORT
    assert err(net.sys_socketpair, t, AF_INET, STREAM, 0, t.alloc(8)) == errno.EOPNOTSUPP


def test_stat_and_enotsock(t):
    fd = sock(t)
    f = t.fdtable.get(fd)
    assert f.path().startswith(b"socket:[")
    assert f.stat().st_mode & 0o170000 == 0o140000
    fds = t.alloc(8)
    fs.sys_pipe2(t, fds, 0)
    r, _w = struct.unpack("<ii", t.copy_in(fds, 8))
    assert err(net.sys_listen, t, r, 1) == errno.ENOTSOCK
    assert err(net.sys_listen, t, 999, 1) == errno.EBADF


# --- bind(2), names ----------------------------------------------------------------

def test_bind_errors(t):
    fd = sock(t)
    a = sin()
    assert err(net.sys_bind, t, fd, t.put(a), 15) == errno.EINVAL
    assert err(net.sys_bind, t, fd, t.put(a), 129) == errno.EINVAL
    assert err(net.sys_bind, t, fd, t.put(a), -1 & 0xFFFFFFFF) == errno.EINVAL
    assert err(net.sys_bind, t, fd, 0, 16) == errno.EFAULT
    assert err(bind, t, fd, sin(family=AF_UNIX)) == errno.EAFNOSUPPORT
    assert err(bind, t, fd, sin("127.0.0.1", family=AF_UNSPEC)) == errno.EAFNOSUPPORT
    assert err(bind, t, fd, sin("10.1.2.3")) == errno.EADDRNOTAVAIL
    assert bind(t, fd, sin("0.0.0.0", family=AF_UNSPEC)) == 0      # compat: INADDR_ANY
    assert err(bind, t, fd, sin()) == errno.EINVAL                    # bound already


def test_bind_in_use_and_reuseaddr(t):
    a, port = server(t)
    b = sock(t)
    assert err(bind, t, b, sin(port=port)) == errno.EADDRINUSE
    u1, uport = server(t, DGRAM)
    u2 = sock(t, DGRAM)
    assert err(bind, t, u2, sin(port=uport)) == errno.EADDRINUSE
    c, d = sock(t), sock(t)
    for fd in (c, d):
        setopt(t, fd, SOL, net.SO_REUSEADDR, 1)
    assert int_opt(t, c, SOL, net.SO_REUSEADDR) == 1
    assert bind(t, c, sin(port=40001)) == 0
    assert bind(t, d, sin(port=40001)) == 0


def test_names(t):
    fd = sock(t)
    assert name(t, fd) == sin("0.0.0.0", 0)
    assert err(name, t, fd, net.sys_getpeername) == errno.ENOTCONN
    lfd, c, a = tcp_pair(t)
    port = port_of(t, lfd)
    assert name(t, c, net.sys_getpeername) == sin(port=port)
    assert name(t, a) == sin(port=port)
    assert name(t, a, net.sys_getpeername) == name(t, c)
    # move_addr_to_user: a short buffer gets a prefix, the length is the real one
    buf, ln = t.alloc(16), t.put(struct.pack("<i", 4))
    net.sys_getsockname(t, c, buf, ln)
    assert struct.unpack("<i", t.copy_in(ln, 4))[0] == 16
    assert t.copy_in(buf, 4) == name(t, c)[:4]
    assert err(net.sys_getsockname, t, c, buf, t.put(struct.pack("<i", -1))) == errno.EINVAL


# --- TCP ----------------------------------------------------------------------------

def test_listen_and_accept_errors(t):
    u = sock(t, DGRAM)
    assert err(net.sys_listen, t, u, 5) == errno.EOPNOTSUPP
    assert err(net.sys_accept4, t, u, 0, 0, 0) == errno.EOPNOTSUPP
    fd = sock(t)
    assert err(net.sys_accept4, t, fd, 0, 0, 0) == errno.EINVAL          # not listening
    lfd, _port = server(t)
    assert err(net.sys_accept4, t, lfd, 0, 0, 0x1) == errno.EINVAL       # bad flags
    assert fs.sys_ioctl(t, lfd, 0x5421, t.put(struct.pack("<i", 1)), 0) == 0   # FIONBIO
    assert err(net.sys_accept4, t, lfd, 0, 0, 0) == errno.EAGAIN
    assert int_opt(t, lfd, SOL, net.SO_ACCEPTCONN) == 1
    assert int_opt(t, fd, SOL, net.SO_ACCEPTCONN) == 0


def test_accept_reports_peer(t):
    lfd, port = server(t)
    c = sock(t)
    connect(t, c, sin(port=port))
    a_buf, ln = t.alloc(32), t.put(struct.pack("<i", 32))
    a = net.sys_accept4(t, lfd, a_buf, ln, net.SOCK_CLOEXEC | NONBLOCK)
    assert t.copy_in(a_buf, 16) == name(t, c)
    assert t.fdtable.get(a).flags & NONBLOCK


def test_connect_refused_blocking_and_nonblocking(t):
    c = sock(t)
    assert err(connect, t, c, sin(port=1)) == errno.ECONNREFUSED
    n = sock(t, STREAM | NONBLOCK)
    assert err(connect, t, n, sin(port=1)) == errno.EINPROGRESS
    f = t.fdtable.get(n)
    deadline = time.monotonic() + 5
    while not f.poll_events() & POLLERR and time.monotonic() < deadline:
        time.sleep(0.001)
    assert f.poll_events() & (POLLERR | POLLHUP) == POLLERR | POLLHUP
    assert int_opt(t, n, SOL, net.SO_ERROR) == errno.ECONNREFUSED
    assert int_opt(t, n, SOL, net.SO_ERROR) == 0


def test_connect_bad_input(t):
    c = sock(t)
    a = sin(port=80)
    assert err(net.sys_connect, t, c, t.put(a), 15) == errno.EINVAL
    assert err(net.sys_connect, t, c, t.put(a), 1) == errno.EINVAL
    assert err(connect, t, c, sin(port=80, family=AF_INET6)) == errno.EAFNOSUPPORT


def test_socket_ioctls(t):
    """tcp_ioctl/udp_ioctl: SIOCOUTQ and FIONREAD are EINVAL on a listener,
    0 on an idle socket; any other request on a socket is ENOTTY."""
    SIOCOUTQ, FIONREAD = 0x5411, 0x541B
    lfd, _port = server(t)
    ip = t.alloc(4)
    assert err(fs.sys_ioctl, t, lfd, SIOCOUTQ, ip) == errno.EINVAL
    assert err(fs.sys_ioctl, t, lfd, FIONREAD, ip) == errno.EINVAL
    for fd in (sock(t), sock(t, DGRAM)):
        for request in (SIOCOUTQ, FIONREAD):
            t.copy_out(ip, b"\xff" * 4)
            assert fs.sys_ioctl(t, fd, request, ip) == 0
            assert t.copy_in(ip, 4) == bytes(4)
        assert err(fs.sys_ioctl, t, fd, 0x1234, ip) == errno.ENOTTY


def test_nonblocking_connect_then_poll(t):
    lfd, port = server(t)
    n = sock(t, STREAM | NONBLOCK)
    assert err(connect, t, n, sin(port=port)) == errno.EINPROGRESS
    f = t.fdtable.get(n)
    assert f.poll_events() & POLLOUT
    assert int_opt(t, n, SOL, net.SO_ERROR) == 0
    assert connect(t, n, sin(port=port)) == 0              # the first time after: 0
    assert err(connect, t, n, sin(port=port)) == errno.EISCONN


def test_stream_data(t):
    _l, c, a = tcp_pair(t)
    assert send(t, c, b"hello world") == 11
    assert recv(t, a, 5, MSG_PEEK) == b"hello"
    buf = t.alloc(4)
    assert fs.sys_ioctl(t, a, 0x541B, buf, 0) == 0                   # FIONREAD
    assert struct.unpack("<i", t.copy_in(buf, 4))[0] == 11
    assert recv(t, a, 5) == b"hello"
    assert recv(t, a, 100) == b" world"
    assert err(recv, t, a, 10, MSG_DONTWAIT) == errno.EAGAIN
    assert send(t, c, b"x") == 1
    assert recvfrom(t, a) == (1, b"x", b"")                             # TCP: no address
    # write(2)/read(2) on the fd
    assert fs.sys_write(t, c, t.put(b"abc"), 3) == 3
    rb = t.alloc(8)
    assert fs.sys_read(t, a, rb, 8) == 3 and t.copy_in(rb, 3) == b"abc"
    # shutdown: EOF for the peer, EPIPE for us
    assert net.sys_shutdown(t, c, 1) == 0
    assert recv(t, a) == b""
    assert err(send, t, c, b"z", MSG_NOSIGNAL) == errno.EPIPE
    assert err(net.sys_shutdown, t, c, 3) == errno.EINVAL


def test_stream_errors(t):
    fd = sock(t)
    assert err(recv, t, fd) == errno.ENOTCONN
    assert err(send, t, fd, b"x", MSG_NOSIGNAL) == errno.EPIPE
    assert err(net.sys_shutdown, t, fd, 2) == errno.ENOTCONN
    _l, c, _a = tcp_pair(t)
    assert send(t, c, b"x", MSG_NOSIGNAL, b"\0") == 1                    # TCP ignores the address
    assert err(recv, t, c, 1, 1) == errno.EINVAL                         # MSG_OOB: none


def test_blocking_recv_waits_for_peer(t):
    _l, c, a = tcp_pair(t)
    out = []
    th = threading.Thread(target=lambda: out.append(recv(t, a, 10, MSG_WAITALL)))
    th.start()
    time.sleep(0.05)
    send(t, c, b"12345")
    time.sleep(0.05)
    assert not out                                                      # MSG_WAITALL: not yet
    send(t, c, b"67890xyz")
    th.join(5)
    assert out == [b"1234567890"]


def test_large_transfer_blocking_send(t):
    _l, c, a = tcp_pair(t)
    data = bytes(range(256)) * 1600                                     # 400 KB (FakeTask has 1 MB)
    got = []

    def reader():
        n = 0
        while n < len(data):
            chunk = recv(t, a, 65536)
            if not chunk:
                break
            got.append(chunk)
            n += len(chunk)
    th = threading.Thread(target=reader)
    th.start()
    assert send(t, c, data) == len(data)
    th.join(20)
    assert b"".join(got) == data


def test_rcvtimeo(t):
    _l, c, a = tcp_pair(t)
    tv = struct.pack("<qq", 0, 50000)
    assert setopt(t, a, SOL, net.SO_RCVTIMEO, tv) == 0
    assert getopt(t, a, SOL, net.SO_RCVTIMEO, 16) == tv
    t0 = time.monotonic()
    assert err(recv, t, a) == errno.EAGAIN
    assert 0.04 < time.monotonic() - t0 < 2
    assert err(setopt, t, a, SOL, net.SO_RCVTIMEO, struct.pack("<qq", 0, 2000000)) == errno.EDOM
    assert err(setopt, t, a, SOL, net.SO_RCVTIMEO, b"\0" * 8) == errno.EINVAL


def test_peer_close_gives_eof_then_epipe(t):
    _l, c, a = tcp_pair(t)
    fs.sys_close(t, a)
    assert recv(t, c) == b""
    # the first send may be accepted (the RST comes back for it), then EPIPE
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            send(t, c, b"x", MSG_NOSIGNAL)
        except SyscallError as e:
            assert e.errno in (errno.EPIPE, errno.ECONNRESET)
            break
        time.sleep(0.01)
    else:
        pytest.fail("send never failed after the peer closed")


# --- UDP ----------------------------------------------------------------------------

def test_udp_roundtrip_and_trunc(t):
    s, port = server(t, DGRAM)
    c = sock(t, DGRAM)
    assert send(t, c, b"0123456789", 0, sin(port=port)) == 10
    got, data, frm = recvfrom(t, s, 4, MSG_PEEK | MSG_TRUNC)
    assert (got, data) == (10, b"0123")
    assert frm == sin(port=port_of(t, c))                               # autobound port, 127.0.0.1
    got, data, _ = recvfrom(t, s, 4)
    assert (got, data) == (4, b"0123")                                  # tail dropped
    assert err(recv, t, s, 10, MSG_DONTWAIT) == errno.EAGAIN
    assert err(send, t, c, b"x") == errno.EDESTADDRREQ
    assert err(send, t, c, b"x", 0, sin(port=0)) == errno.EINVAL
    assert err(send, t, c, b"x", 0, sin(port=9, family=AF_UNIX)) == errno.EAFNOSUPPORT
    assert err(send, t, c, b"x", 0, sin(port=9)[:8]) == errno.EINVAL
    assert err(send, t, c, bytes(65508), 0, sin(port=port)) == errno.EMSGSIZE


def test_udp_msg_trunc_in_recvmsg_flags(t):
    s, port = server(t, DGRAM)
    c = sock(t, DGRAM)
    send(t, c, b"abcdef", 0, sin(port=port))
    iov = t.put(struct.pack("<QQ", t.alloc(3), 3))
    msg = t.put(struct.pack("<Qi4xQQQQi4x", 0, 0, iov, 1, 0, 0, 0))
    assert net.sys_recvmsg(t, s, msg, 0) == 3
    assert struct.unpack("<i", t.copy_in(msg + 48, 4))[0] & MSG_TRUNC


def test_udp_connect_shutdown(t):
    s, port = server(t, DGRAM)
    c = sock(t, DGRAM)
    assert err(net.sys_shutdown, t, c, 0) == errno.ENOTCONN
    assert recv(t, c) == b""                                            # SHUT_RD stuck anyway
    d = sock(t, DGRAM)
    assert connect(t, d, sin(port=port)) == 0
    assert send(t, d, b"hi") == 2
    assert recv(t, s) == b"hi"
    assert name(t, d, net.sys_getpeername) == sin(port=port)
    assert connect(t, d, struct.pack("<H", AF_UNSPEC) + bytes(14)) == 0
    assert err(name, t, d, net.sys_getpeername) == errno.ENOTCONN
    assert err(net.sys_shutdown, t, s, 1) == errno.ENOTCONN
    assert err(send, t, s, b"x", 0, sin(port=port)) == errno.EPIPE
    assert t.fdtable.get(s).poll_events() & POLLOUT


def test_udp_port_unreachable_on_connected_socket(t):
    d = sock(t, DGRAM)
    connect(t, d, sin(port=9))
    send(t, d, b"x")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            recv(t, d, 10, MSG_DONTWAIT)
        except SyscallError as e:
            if e.errno == errno.ECONNREFUSED:
                break
            assert e.errno == errno.EAGAIN
        time.sleep(0.005)
    else:
        pytest.fail("no ECONNREFUSED")


# --- options --------------------------------------------------------------------------

def test_options(t):
    fd = sock(t)
    u = sock(t, DGRAM)
    setopt(t, fd, TCP, 1, 1)
    assert int_opt(t, fd, TCP, 1) == 1                                  # TCP_NODELAY
    setopt(t, fd, SOL, net.SO_RCVBUF, 4096)
    assert int_opt(t, fd, SOL, net.SO_RCVBUF) == 8192
    setopt(t, fd, SOL, net.SO_KEEPALIVE, 5)
    assert int_opt(t, fd, SOL, net.SO_KEEPALIVE) == 1
    setopt(t, fd, SOL, net.SO_REUSEPORT, 1)
    assert int_opt(t, fd, SOL, net.SO_REUSEPORT) == 1
    setopt(t, fd, TCP, 4, 30)
    assert int_opt(t, fd, TCP, 4) == 30                                 # TCP_KEEPIDLE
    setopt(t, fd, IP, 2, 7)
    assert int_opt(t, fd, IP, 2) == 7                                   # IP_TTL
    setopt(t, fd, SOL, net.SO_LINGER, struct.pack("<ii", 1, 3))
    assert getopt(t, fd, SOL, net.SO_LINGER, 8) == struct.pack("<ii", 1, 3)
    setopt(t, fd, TCP, 13, b"reno\0")
    assert getopt(t, fd, TCP, 13, 16).rstrip(b"\0") == b"reno"
    setopt(t, u, SOL, net.SO_SNDBUF, 10000)
    assert int_opt(t, u, SOL, net.SO_SNDBUF) == 20000
    setopt(t, u, SOL, net.SO_BROADCAST, 1)
    assert int_opt(t, u, SOL, net.SO_BROADCAST) == 1
    assert getopt(t, fd, SOL, net.SO_TYPE, 2) == b"\x01\x00"           # short: prefix


def test_option_errors(t):
    fd = sock(t)
    u = sock(t, DGRAM)
    assert err(setopt, t, fd, SOL, net.SO_KEEPALIVE, b"\1\0") == errno.EINVAL
    assert err(setopt, t, fd, SOL, 999, 1) == errno.ENOPROTOOPT
    assert err(setopt, t, fd, TCP, 999, 1) == errno.ENOPROTOOPT
    assert err(setopt, t, u, TCP, 1, 1) == errno.ENOPROTOOPT
    assert err(getopt, t, u, TCP, 1) == errno.ENOPROTOOPT
    assert err(setopt, t, fd, 41, 1, 1) == errno.ENOPROTOOPT            # IPv6 level
    assert err(setopt, t, fd, TCP, 2, 10) == errno.EINVAL               # TCP_MAXSEG too small
    assert err(setopt, t, fd, IP, 2, 300) == errno.EINVAL               # IP_TTL
    assert err(setopt, t, fd, TCP, 13, b"bogus") == errno.ENOENT
    assert err(getopt, t, fd, SOL, 999) == errno.ENOPROTOOPT
    assert err(net.sys_setsockopt, t, fd, SOL, 2, t.put(b"\0" * 4), -1 & 0xFFFFFFFF) == errno.EINVAL
    buf = t.alloc(4)
    assert err(net.sys_getsockopt, t, fd, SOL, 3, buf, t.put(struct.pack("<i", -1))) == errno.EINVAL


# --- readiness --------------------------------------------------------------------------

def test_waitq_announces_readiness(t):
    lfd, port = server(t)
    lf = t.fdtable.get(lfd)
    assert lf.poll_events() == 0
    seen = threading.Event()
    lf.waitq.register(lambda ev: seen.set())
    c = sock(t)
    connect(t, c, sin(port=port))
    assert seen.wait(5)
    assert lf.poll_events() & POLLIN
    a = net.sys_accept4(t, lfd, 0, 0, 0)
    af = t.fdtable.get(a)
    assert af.poll_events() & (POLLIN | POLLOUT) == POLLOUT
    send(t, c, b"x")
    assert af.poll_events() & POLLIN
    fresh = t.fdtable.get(sock(t))
    assert fresh.poll_events() & (POLLOUT | POLLHUP) == POLLOUT | POLLHUP


# --- strace -----------------------------------------------------------------------------

def test_strace_shows_sockaddr_in(t):
    from pyvisor.sentry import strace
    from pyvisor.abi import numbers as nr
    a = t.put(sin("127.0.0.1", 8080))
    line = strace.format_call(t, nr.NR_connect, (3, a, 16, 0, 0, 0), 0)
    assert line.startswith('connect(3, {sa_family=AF_INET, sin_port=htons(8080), '
                           'sin_addr=inet_addr("127.0.0.1")}, 16)')
    assert strace.format_call(t, nr.NR_bind, (3, a, 8, 0, 0, 0), 0).startswith(
        "bind(3, %#x, 8)" % a)                                           # too short: a pointer
    assert strace.format_call(t, nr.NR_bind, (3, 0, 16, 0, 0, 0), 0).startswith("bind(3, NULL, 16)")


def test_connect_to_any_goes_to_loopback(t):
    lfd, port = server(t)
    c = sock(t)
    assert connect(t, c, sin("0.0.0.0", port)) == 0                     # as Linux: to 127.0.0.1
    assert name(t, c, net.sys_getpeername) == sin(port=port)
    u, uport = server(t, DGRAM)
    d = sock(t, DGRAM)
    assert send(t, d, b"any", 0, sin("0.0.0.0", uport)) == 3
    assert recv(t, u) == b"any"


# --- the per-kernel stack -----------------------------------------------------------------

def test_stack_is_made_on_first_inet_socket_and_stopped():
    kernel, _vfs, t = make_env()
    assert getattr(kernel, "netstack", None) is None
    net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert getattr(kernel, "netstack", None) is None            # unix sockets need no stack
    sock(t)
    ns = kernel.netstack
    assert ns.stack.is_local(0x7F000001)
    assert ns._thread.is_alive()
    sentry_net.shutdown(kernel)
    assert not ns._thread.is_alive()


def test_netstack_errors_become_syscall_errors_on_leaving_the_transaction():
    """netstack raises its own NetError; leaving ``with net:`` is the one
    place it becomes SyscallError with the same errno. A Sentry error
    passes unchanged, and the stack is settled and unlocked either way."""
    from pyvisor.netstack.errors import NetError
    from pyvisor.netstack.socket import TCPSocket
    kernel, _vfs, _t = make_env()
    ns = sentry_net.net_of(kernel)
    try:
        with ns:
            a = TCPSocket(ns.stack)
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            a.listen(1)
        with pytest.raises(SyscallError) as e:
            with ns:
                TCPSocket(ns.stack).bind(("127.0.0.1", port))
        assert e.value.errno == errno.EADDRINUSE and type(e.value.__cause__) is NetError
        with pytest.raises(SyscallError) as e:
            with ns:
                raise SyscallError(errno.EINTR)
        assert e.value.errno == errno.EINTR and e.value.__cause__ is None
        assert not ns.lock.locked()
    finally:
        sentry_net.shutdown(kernel)


def test_driver_runs_timers(t):
    """Nagle holds the second small write until the first is acked, and
    netstack delays that ACK (40 ms): only the driver thread's timer gets
    the second write out while nobody makes a call."""
    _l, c, a = tcp_pair(t)
    assert send(t, c, b"one") == 3
    assert send(t, c, b"two") == 3
    t0 = time.monotonic()
    assert recv(t, a, 6, MSG_WAITALL) == b"onetwo"
    assert time.monotonic() - t0 < 5


def test_shutdown_of_listener_ends_blocked_accept(t):
    lfd, _port = server(t)
    out = []

    def acceptor():
        try:
            net.sys_accept4(t, lfd, 0, 0, 0)
        except SyscallError as e:
            out.append(e.errno)
    th = threading.Thread(target=acceptor)
    th.start()
    time.sleep(0.05)
    assert net.sys_shutdown(t, lfd, 2) == 0
    th.join(5)
    assert out == [errno.EINVAL]


def test_staged_netstack_imports_under_the_sentry_filter():
    """Confined, the Sentry cannot open files: netstack must come from what
    Kernel.start staged (socket/netstack.py's stage) before the filter went on."""
    import subprocess
    import sys
    code = textwrap.dedent("""
        import os, types
        from pyvisor import seccomp
        from pyvisor.sentry.socket import netstack as sentry_net
        sentry_net.preload_start()
        seccomp.preimport()
        sentry_net.preload_join()
        seccomp.install_sentry_filter()
        try:
            open(os.devnull).close()
            print("open allowed?")
        except PermissionError:
            pass
        k = types.SimpleNamespace()
        net = sentry_net.net_of(k)
        from pyvisor.netstack.socket import TCPSocket
        with net:
            l = TCPSocket(net.stack); l.bind(("127.0.0.1", 7)); l.listen(1)
            c = TCPSocket(net.stack)
            try:
                c.connect(("127.0.0.1", 7))
            except Exception as e:
                print("connect", e)
        with net:
            a, addr = l.accept()
        print("accepted", addr[0])
        sentry_net.shutdown(k)
    """)
    import pyvisor
    top = os.path.dirname(os.path.dirname(os.path.abspath(pyvisor.__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                       env={"PYTHONPATH": top, "PATH": "/usr/bin:/bin"})
    assert r.stdout.decode().splitlines() == [
        "connect EINPROGRESS (Operation now in progress)", "accepted 127.0.0.1"], r.stderr.decode()


def test_mmsg_and_vectors(t):
    s, port = server(t, DGRAM)
    c = sock(t, DGRAM)
    connect(t, c, sin(port=port))
    hdrs = b""
    for word in (b"first", b"second"):
        iov = t.put(struct.pack("<QQ", t.put(word), len(word)))
        hdrs += struct.pack("<Qi4xQQQQi4x", 0, 0, iov, 1, 0, 0, 0) + bytes(8)
    vec = t.put(hdrs)
    assert net.sys_sendmmsg(t, c, vec, 2, 0) == 2
    assert struct.unpack("<I", t.copy_in(vec + 56, 4))[0] == 5
    bufs = [t.alloc(16), t.alloc(16)]
    rh = b""
    for b in bufs:
        iov = t.put(struct.pack("<QQ", b, 16))
        rh += struct.pack("<Qi4xQQQQi4x", t.alloc(16), 16, iov, 1, 0, 0, 0) + bytes(8)
    rvec = t.put(rh)
    assert net.sys_recvmmsg(t, s, rvec, 2, 0, 0) == 2
    assert t.copy_in(bufs[0], 5) == b"first" and t.copy_in(bufs[1], 6) == b"second"
    assert struct.unpack("<I", t.copy_in(rvec + 64 + 56, 4))[0] == 6
    assert struct.unpack("<i", t.copy_in(rvec + 8, 4))[0] == 16      # msg_namelen: sockaddr_in
    # writev/readv on a TCP pair
    _l, a, b = tcp_pair(t)
    iov = t.put(struct.pack("<QQQQ", t.put(b"ab"), 2, t.put(b"cde"), 3))
    assert fs.sys_writev(t, a, iov, 2) == 5
    r1, r2 = t.alloc(4), t.alloc(4)
    assert fs.sys_readv(t, b, t.put(struct.pack("<QQQQ", r1, 1, r2, 4)), 2) == 5
    assert t.copy_in(r1, 1) + t.copy_in(r2, 4) == b"abcde"


def test_scm_rights_refused_on_inet(t):
    _l, a, _b = tcp_pair(t)
    fds = t.alloc(8)
    fs.sys_pipe2(t, fds, 0)
    r, _w = struct.unpack("<ii", t.copy_in(fds, 8))
    cmsg = struct.pack("<Qii", 20, SOL, 1) + struct.pack("<i", r) + bytes(4)
    iov = t.put(struct.pack("<QQ", t.put(b"x"), 1))
    msg = t.put(struct.pack("<Qi4xQQQQi4x", 0, 0, iov, 1, t.put(cmsg), len(cmsg), 0))
    assert err(net.sys_sendmsg, t, a, msg, 0) == errno.EINVAL


def test_epoll_wait_with_pending_readiness_does_not_deadlock(t):
    """epoll_wait asks each socket for its events with the epoll's lock
    held; announcing readiness there (whose waiters take that lock) would
    deadlock. Regression: asyncio hung in the sandbox."""
    from pyvisor.sentry.syscalls import poll
    _l, c, a = tcp_pair(t)
    ep = poll.sys_epoll_create1(t, 0)
    for fd in (c, a):
        ev = t.put(struct.pack("<IQ", 0x1 | 0x4 | (1 << 31), fd))      # IN|OUT|ET
        assert poll.sys_epoll_ctl(t, ep, 1, fd, ev) == 0
    net_ = t.fdtable.get(c).net
    with net_.lock:
        net_.changed_locked(t.fdtable.get(a))                           # readiness not yet announced
    out = []
    th = threading.Thread(target=lambda: out.append(
        poll.sys_epoll_wait(t, ep, t.alloc(12 * 4), 4, 0)), daemon=True)
    th.start()
    th.join(5)
    assert out == [2]
    send(t, c, b"x")
    assert poll.sys_epoll_wait(t, ep, t.alloc(12 * 4), 4, 1000) >= 1    # edge: a is readable now
