"""Unix domain sockets through the syscall handlers, on the VFS test
harness (a FakeTask over a real VFS): every error path of syscalls/net.py
and the semantics of socket/unix.py that do not need a second process.
Blocking cases use a second Python thread as the peer task."""

import errno
import struct
import threading
import time

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls import fs, net
from pyvisor.sentry.socket import sockfs, unix
from pyvisor.sentry.vfs.testing import FakeTask, make_env
from pyvisor.sentry.vfs.waitq import POLLHUP, POLLIN, POLLOUT, POLLRDHUP

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
STREAM, DGRAM, SEQ = unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET
SOL = net.SOL_SOCKET
NONBLOCK, CLOEXEC = net.SOCK_NONBLOCK, net.SOCK_CLOEXEC


@pytest.fixture
def t():
    return make_env()[2]


def err(fn, *a):
    with pytest.raises(SyscallError) as e:
        fn(*a)
    return e.value.errno


def pair(t, kind=STREAM, flags=0):
    sv = t.alloc(8)
    assert net.sys_socketpair(t, AF_UNIX, kind | flags, 0, sv) == 0
    return struct.unpack("<ii", t.copy_in(sv, 8))


def sun(path):
    return struct.pack("<H", AF_UNIX) + path


def bind(t, fd, path):
    a = sun(path)
    return net.sys_bind(t, fd, t.put(a), len(a))


def connect(t, fd, path):
    a = sun(path)
    return net.sys_connect(t, fd, t.put(a), len(a))


def send(t, fd, data, flags=0, to=None):
    buf = t.put(data) if data else t.alloc(1)
    if to is None:
        return net.sys_sendto(t, fd, buf, len(data), flags, 0, 0)
    a = sun(to)
    return net.sys_sendto(t, fd, buf, len(data), flags, t.put(a), len(a))


def recv(t, fd, n=4096, flags=0):
    buf = t.alloc(max(n, 1))
    got = net.sys_recvfrom(t, fd, buf, n, flags, 0, 0)
    return t.copy_in(buf, min(got, n))


def getname(t, fn, fd, ulen=110):
    lp = t.put(struct.pack("<i", ulen))
    ap = t.alloc(128)
    fn(t, fd, ap, lp)
    n = struct.unpack("<i", t.copy_in(lp, 4))[0]
    return n, t.copy_in(ap, min(n, ulen))


def sockopt(t, fd, opt, size=4):
    lp = t.put(struct.pack("<i", size))
    vp = t.alloc(max(size, 1))
    net.sys_getsockopt(t, fd, SOL, opt, vp, lp)
    n = struct.unpack("<i", t.copy_in(lp, 4))[0]
    return t.copy_in(vp, n)


def setopt(t, fd, opt, value):
    v = struct.pack("<i", value) if isinstance(value, int) else value
    return net.sys_setsockopt(t, fd, SOL, opt, t.put(v), len(v))


def int_opt(t, fd, opt):
    return struct.unpack("<i", sockopt(t, fd, opt))[0]


# --- socket(2), socketpair(2) ---------------------------------------------------

@pytest.mark.parametrize("domain,stype,proto,expect", [
    (AF_INET6, DGRAM, 0, errno.EAFNOSUPPORT),
    (AF_NETLINK, 3, 0, errno.EAFNOSUPPORT),
    (99, STREAM, 0, errno.EAFNOSUPPORT),
    (-1 & 0xFFFFFFFF, STREAM, 0, errno.EAFNOSUPPORT),
    (AF_UNIX, 11, 0, errno.EINVAL),
    (AF_UNIX, STREAM | 0x100, 0, errno.EINVAL),
    (AF_UNIX, 4, 0, errno.ESOCKTNOSUPPORT),
    (AF_UNIX, 0, 0, errno.ESOCKTNOSUPPORT),
    (AF_UNIX, STREAM, 6, errno.EPROTONOSUPPORT),
])
def test_socket_bad_arguments(t, domain, stype, proto, expect):
    assert err(net.sys_socket, t, domain, stype, proto) == expect
    assert err(net.sys_socketpair, t, domain, stype, proto, t.alloc(8)) == expect


def test_socket_types_and_flags(t):
    fd = net.sys_socket(t, AF_UNIX, STREAM | NONBLOCK | CLOEXEC, 0)
    f = t.fdtable.get(fd)
    assert f.nonblocking and t.fdtable.get_cloexec(fd)
    assert fs.sys_fcntl(t, fd, fs.F_GETFL, 0) == 0o2 | 0o4000
    raw = net.sys_socket(t, AF_UNIX, 3, 1)                    # SOCK_RAW is dgram
    assert int_opt(t, raw, net.SO_TYPE) == DGRAM
    assert int_opt(t, fd, net.SO_DOMAIN) == AF_UNIX
    assert int_opt(t, fd, net.SO_PROTOCOL) == 0


def test_socketpair_bad_pointer_closes_both(t):
    assert err(net.sys_socketpair, t, AF_UNIX, STREAM, 0, 8) == errno.EFAULT
    assert len(t.fdtable) == 0


def test_socketpair_emfile_leaves_no_fd(t):
    t.fdtable.limit = 1
    assert err(net.sys_socketpair, t, AF_UNIX, STREAM, 0, t.alloc(8)) == errno.EMFILE
    assert len(t.fdtable) == 0


def test_fstat_and_proc_path(t):
    a, _ = pair(t)
    f = t.fdtable.get(a)
    st = f.stat()
    assert st.st_mode == 0o140777
    assert f.path() == b"socket:[%d]" % st.st_ino
    assert err(f.reopen, t, 0) == errno.ENXIO


def test_not_a_socket_and_bad_fd(t):
    r, w = fs.sys_pipe(t, t.alloc(8)) or struct.unpack("<ii", t.copy_in(t._brk - 16, 8))
    for fn, args in ((net.sys_bind, (0, 0)), (net.sys_listen, (1,)), (net.sys_connect, (0, 0)),
                     (net.sys_accept, (0, 0)), (net.sys_shutdown, (0,)),
                     (net.sys_getsockname, (0, 0)), (net.sys_getpeername, (0, 0)),
                     (net.sys_sendto, (0, 0, 0, 0, 0)), (net.sys_recvfrom, (0, 0, 0, 0, 0)),
                     (net.sys_sendmsg, (0, 0)), (net.sys_recvmsg, (0, 0)),
                     (net.sys_getsockopt, (1, 3, 0, 0)), (net.sys_setsockopt, (1, 2, 0, 4))):
        assert err(fn, t, 0, *args) == errno.ENOTSOCK, fn.__name__
        assert err(fn, t, 77, *args) == errno.EBADF, fn.__name__


# --- addresses ----------------------------------------------------------------------

def test_bind_address_errors(t):
    fd = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert err(net.sys_bind, t, fd, t.alloc(8), 129) == errno.EINVAL
    assert err(net.sys_bind, t, fd, t.alloc(8), -1 & 0xFFFFFFFF) == errno.EINVAL
    assert err(net.sys_bind, t, fd, 8, 10) == errno.EFAULT
    long = sun(b"x" * 109)
    assert err(net.sys_bind, t, fd, t.put(long), len(long)) == errno.EINVAL
    other = struct.pack("<H", AF_INET) + b"/tmp/x\0"
    assert err(net.sys_bind, t, fd, t.put(other), len(other)) == errno.EINVAL
    assert err(net.sys_bind, t, fd, t.put(b"\1"), 1) == errno.EINVAL
    assert err(bind, t, fd, b"/nonexistent/dir/s") == errno.ENOENT


def test_bind_path_creates_socket_node(t):
    fd = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert bind(t, fd, b"/tmp/s\0garbage") == 0
    st = t.kernel.vfs.stat(t, b"/tmp/s")
    assert st.st_mode == 0o140755                       # 0777 & ~umask 022
    assert getname(t, net.sys_getsockname, fd) == (9, sun(b"/tmp/s\0"))
    assert err(bind, t, fd, b"/tmp/other") == errno.EINVAL       # already bound
    fd2 = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert err(bind, t, fd2, b"/tmp/s") == errno.EADDRINUSE
    assert err(t.kernel.vfs.open, t, b"/tmp/s", 0) == errno.ENXIO
    t.fdtable.close(fd)                                 # the node stays, unbound
    assert err(bind, t, fd2, b"/tmp/s") == errno.EADDRINUSE
    assert err(connect, t, fd2, b"/tmp/s") == errno.ECONNREFUSED


def test_getsockname_length_semantics(t):
    fd = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert getname(t, net.sys_getsockname, fd) == (2, sun(b""))
    bind(t, fd, b"/tmp/abcdef")
    n, data = getname(t, net.sys_getsockname, fd, ulen=5)
    assert (n, data) == (14, sun(b"/tm"))                # truncated copy, full length
    assert getname(t, net.sys_getsockname, fd, ulen=0) == (14, b"")
    assert err(getname, t, net.sys_getsockname, fd, -1) == errno.EINVAL
    assert err(net.sys_getsockname, t, fd, t.alloc(8), 8) == errno.EFAULT


def test_abstract_and_autobind(t):
    a = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    b = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    assert bind(t, a, b"\0name\0with nul") == 0
    assert getname(t, net.sys_getsockname, a) == (16, sun(b"\0name\0with nul"))
    assert err(bind, t, b, b"\0name\0with nul") == errno.EADDRINUSE
    assert bind(t, b, b"\0name") == 0                   # all bytes count: a different name
    c = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    assert net.sys_bind(t, c, t.put(sun(b"")), 2) == 0
    n, name = getname(t, net.sys_getsockname, c)
    assert n == 8 and name[2:3] == b"\0" and int(name[3:], 16) >= 0
    assert err(bind, t, c, b"\0other") == errno.EINVAL           # already (auto)bound


def test_abstract_name_is_freed_on_close(t):
    a = net.sys_socket(t, AF_UNIX, STREAM, 0)
    bind(t, a, b"\0free-me")
    t.fdtable.close(a)
    b = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert bind(t, b, b"\0free-me") == 0


# --- connections -------------------------------------------------------------------

def listener(t, path=b"/tmp/l", backlog=4, kind=STREAM):
    fd = net.sys_socket(t, AF_UNIX, kind, 0)
    bind(t, fd, path)
    assert net.sys_listen(t, fd, backlog) == 0
    return fd


def test_listen_errors(t):
    fd = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert err(net.sys_listen, t, fd, 1) == errno.EINVAL          # unbound
    d = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    assert err(net.sys_listen, t, d, 1) == errno.EOPNOTSUPP
    a, _ = pair(t)
    assert err(net.sys_listen, t, a, 1) == errno.EINVAL           # connected
    assert err(net.sys_accept, t, a, 0, 0) == errno.EINVAL
    assert err(net.sys_accept, t, d, 0, 0) == errno.EOPNOTSUPP


def test_connect_errors(t):
    c = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert err(connect, t, c, b"/tmp/none") == errno.ENOENT
    t.kernel.vfs.open(t, b"/tmp/plain", 0o100 | 1, 0o644).decref()
    assert err(connect, t, c, b"/tmp/plain") == errno.ECONNREFUSED
    assert err(connect, t, c, b"\0nobody") == errno.ECONNREFUSED
    d = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    bind(t, d, b"/tmp/d")
    assert err(connect, t, c, b"/tmp/d") == errno.EPROTOTYPE
    s = net.sys_socket(t, AF_UNIX, STREAM, 0)
    bind(t, s, b"/tmp/notlistening")
    assert err(connect, t, c, b"/tmp/notlistening") == errno.ECONNREFUSED
    unspec = struct.pack("<H", 0) + b"x"
    assert err(net.sys_connect, t, c, t.put(unspec), 3) == errno.EINVAL
    assert err(net.sys_connect, t, c, t.put(sun(b"")), 2) == errno.EINVAL


def test_connect_accept_names_and_peercred(t):
    lfd = listener(t)
    c = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert connect(t, c, b"/tmp/l") == 0
    assert err(connect, t, c, b"/tmp/l") == errno.EISCONN
    assert err(connect, t, lfd, b"/tmp/l") == errno.EINVAL
    assert int_opt(t, lfd, net.SO_ACCEPTCONN) == 1
    assert send(t, c, b"early") == 5
    lp, ap = t.put(struct.pack("<i", 110)), t.alloc(110)
    s = net.sys_accept4(t, lfd, ap, lp, CLOEXEC | NONBLOCK)
    assert struct.unpack("<i", t.copy_in(lp, 4))[0] == 2
    assert t.fdtable.get_cloexec(s) and t.fdtable.get(s).nonblocking
    assert getname(t, net.sys_getsockname, s) == (9, sun(b"/tmp/l\0"))
    assert getname(t, net.sys_getpeername, c) == (9, sun(b"/tmp/l\0"))
    assert getname(t, net.sys_getpeername, s) == (2, sun(b""))
    assert recv(t, s) == b"early"
    assert struct.unpack("<iII", sockopt(t, s, net.SO_PEERCRED, 12)) == (1, 0, 0)
    assert struct.unpack("<iII", sockopt(t, c, net.SO_PEERCRED, 12)) == (1, 0, 0)
    assert err(net.sys_getpeername, t, lfd, t.alloc(8), t.put(struct.pack("<i", 8))) \
        == errno.ENOTCONN
    assert err(net.sys_accept4, t, lfd, 0, 0, 0x1) == errno.EINVAL


def test_accept_bad_address_drops_connection(t):
    lfd = listener(t)
    c = net.sys_socket(t, AF_UNIX, STREAM, 0)
    connect(t, c, b"/tmp/l")
    assert err(net.sys_accept, t, lfd, t.alloc(8), 8) == errno.EFAULT
    assert err(send, t, c, b"x", unix.MSG_NOSIGNAL) == errno.EPIPE


def test_backlog_nonblocking_and_listener_close(t):
    lfd = listener(t, backlog=1)
    results, clients = [], []
    for _ in range(3):
        c = net.sys_socket(t, AF_UNIX, STREAM | NONBLOCK, 0)
        clients.append(c)
        try:
            results.append(connect(t, c, b"/tmp/l"))
        except SyscallError as e:
            results.append(e.errno)
    assert results == [0, 0, errno.EAGAIN]                     # backlog + 1 fit
    t.fdtable.close(lfd)
    assert err(recv, t, clients[0]) == errno.ECONNRESET
    assert recv(t, clients[0]) == b""
    assert err(connect, t, clients[2], b"/tmp/l") == errno.ECONNREFUSED


def test_blocking_connect_waits_for_backlog_room(t):
    lfd = listener(t, backlog=0)
    c1 = net.sys_socket(t, AF_UNIX, STREAM, 0)
    connect(t, c1, b"/tmp/l")
    c2 = net.sys_socket(t, AF_UNIX, STREAM, 0)
    done = []
    th = threading.Thread(target=lambda: done.append(connect(t, c2, b"/tmp/l")))
    th.start()
    time.sleep(0.1)
    assert not done
    net.sys_accept(t, lfd, 0, 0)
    th.join(5)
    assert done == [0]


def test_connect_sndtimeo_gives_eagain(t):
    lfd = listener(t, backlog=0)
    connect(t, net.sys_socket(t, AF_UNIX, STREAM, 0), b"/tmp/l")
    c = net.sys_socket(t, AF_UNIX, STREAM, 0)
    setopt(t, c, net.SO_SNDTIMEO, struct.pack("<qq", 0, 50000))
    t0 = time.monotonic()
    assert err(connect, t, c, b"/tmp/l") == errno.EAGAIN
    assert time.monotonic() - t0 >= 0.045
    assert lfd >= 0


def test_accept_blocks_until_connect(t):
    lfd = listener(t)
    got = []
    th = threading.Thread(target=lambda: got.append(net.sys_accept(t, lfd, 0, 0)))
    th.start()
    time.sleep(0.05)
    connect(t, net.sys_socket(t, AF_UNIX, STREAM, 0), b"/tmp/l")
    th.join(5)
    assert len(got) == 1 and isinstance(t.fdtable.get(got[0]), unix.UnixSocket)


def test_connect_needs_write_permission(t):
    listener(t, b"/tmp/private")
    t.kernel.vfs.setattr(t, b"/tmp/private", mode=0o500)
    from types import SimpleNamespace
    other = FakeTask(t.kernel, t.kernel.vfs, tid=2, creds=SimpleNamespace(
        uid=1000, gid=1000, euid=1000, egid=1000, suid=1000, sgid=1000, fsuid=1000, fsgid=1000,
        groups=(), cap_effective=0, cap_permitted=0))
    c = net.sys_socket(other, AF_UNIX, STREAM, 0)
    assert err(connect, other, c, b"/tmp/private") == errno.EACCES


# --- stream data ----------------------------------------------------------------------

def test_stream_send_recv_peek_waitall(t):
    a, b = pair(t)
    assert send(t, a, b"abc") == 3 and send(t, a, b"def") == 3
    assert recv(t, b, 100, unix.MSG_PEEK) == b"abcdef"
    assert recv(t, b, 2) == b"ab"
    assert t.fdtable.get(b).nread() == 4
    assert recv(t, b, 100) == b"cdef"
    assert err(recv, t, b, 10, unix.MSG_DONTWAIT) == errno.EAGAIN
    assert err(recv, t, b, 10, unix.MSG_OOB) == errno.EOPNOTSUPP
    assert err(send, t, a, b"x", unix.MSG_OOB) == errno.EOPNOTSUPP
    out = []
    th = threading.Thread(target=lambda: out.append(recv(t, b, 6, unix.MSG_WAITALL)))
    th.start()
    for piece in (b"12", b"34", b"56"):
        time.sleep(0.02)
        send(t, a, piece)
    th.join(5)
    assert out == [b"123456"]


def test_stream_errors(t):
    s = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert err(recv, t, s) == errno.EINVAL
    assert err(send, t, s, b"x") == errno.ENOTCONN
    a, b = pair(t)
    assert err(send, t, a, b"x", 0, b"/tmp/x") == errno.EISCONN
    assert err(send, t, s, b"x", 0, b"/tmp/x") == errno.EOPNOTSUPP
    assert send(t, a, b"") == 0
    assert err(net.sys_shutdown, t, a, 3) == errno.EINVAL


def test_shutdown_mirrors_to_peer(t):
    a, b = pair(t)
    net.sys_shutdown(t, a, unix.SHUT_WR)
    assert recv(t, b) == b""
    assert err(send, t, a, b"x", unix.MSG_NOSIGNAL) == errno.EPIPE
    assert send(t, b, b"back") == 4 and recv(t, a) == b"back"
    assert t.fdtable.get(b).poll_events() & (POLLIN | POLLRDHUP) == POLLIN | POLLRDHUP
    net.sys_shutdown(t, b, unix.SHUT_RD)
    assert err(send, t, a, b"x", unix.MSG_NOSIGNAL) == errno.EPIPE


def test_close_with_unread_data_resets_peer(t):
    a, b = pair(t)
    send(t, a, b"unread")
    t.fdtable.close(b)
    assert t.fdtable.get(a).poll_events() & POLLHUP
    assert err(recv, t, a) == errno.ECONNRESET
    assert recv(t, a) == b""
    assert err(send, t, a, b"x", unix.MSG_NOSIGNAL) == errno.EPIPE


def test_stream_flow_control(t):
    a, b = pair(t, flags=NONBLOCK)
    setopt(t, a, net.SO_SNDBUF, 4096)
    assert int_opt(t, a, net.SO_SNDBUF) == 8192
    total = 0
    while True:
        try:
            total += send(t, a, b"z" * 3000)
        except SyscallError as e:
            assert e.errno == errno.EAGAIN
            break
    assert total == 8192
    assert not t.fdtable.get(a).poll_events() & POLLOUT
    recv(t, b, 8192)
    assert t.fdtable.get(a).poll_events() & POLLOUT


def test_blocking_write_waits_for_reader(t):
    a, b = pair(t)
    setopt(t, a, net.SO_SNDBUF, 2048)
    data = bytes(range(256)) * 64
    got = bytearray()

    def reader():
        while len(got) < len(data):
            got.extend(recv(t, b, 1000))
            time.sleep(0.001)
    th = threading.Thread(target=reader)
    th.start()
    assert send(t, a, data) == len(data)
    th.join(5)
    assert bytes(got) == data


def test_rcvtimeo_is_honoured(t):
    a, b = pair(t)
    setopt(t, b, net.SO_RCVTIMEO, struct.pack("<qq", 0, 30000))
    assert sockopt(t, b, net.SO_RCVTIMEO, 16) == struct.pack("<qq", 0, 30000)
    t0 = time.monotonic()
    assert err(recv, t, b) == errno.EAGAIN
    assert time.monotonic() - t0 >= 0.025


def test_read_write_through_fs_calls(t):
    a, b = pair(t)
    buf = t.put(b"via write")
    assert fs.sys_write(t, a, buf, 9) == 9
    out = t.alloc(16)
    assert fs.sys_read(t, b, out, 16) == 9 and t.copy_in(out, 9) == b"via write"
    assert fs.sys_read(t, b, out, 0) == 0
    assert err(fs.sys_lseek, t, a, 0, 0) == errno.ESPIPE
    assert err(fs.sys_pread64, t, a, out, 1, 0) == errno.ESPIPE
    fs.sys_write(t, a, buf, 3)
    ip = t.alloc(4)
    assert fs.sys_ioctl(t, b, fs.FIONREAD, ip) == 0
    assert struct.unpack("<i", t.copy_in(ip, 4))[0] == 3
    assert fs.sys_ioctl(t, a, sockfs.SIOCOUTQ, ip) == 0
    assert struct.unpack("<i", t.copy_in(ip, 4))[0] == 3
    assert err(fs.sys_ioctl, t, a, 0x1234, ip) == errno.ENOTTY


def test_recv_into_bad_buffer_is_efault(t):
    a, b = pair(t, SEQ)
    send(t, a, b"")
    assert net.sys_recvfrom(t, b, 0, 0, 0, 0, 0) == 0          # empty record, NULL buffer
    send(t, a, b"x")
    assert err(net.sys_recvfrom, t, b, 8, 1, 0, 0, 0) == errno.EFAULT
    assert err(net.sys_sendto, t, a, 8, 1, 0, 0, 0) == errno.EFAULT


# --- records ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [SEQ, DGRAM])
def test_record_boundaries_and_truncation(t, kind):
    a, b = pair(t, kind)
    send(t, a, b"one")
    send(t, a, b"longer record")
    send(t, a, b"")
    assert recv(t, b, 100) == b"one"
    buf = t.alloc(4)
    assert net.sys_recvfrom(t, b, buf, 4, unix.MSG_TRUNC, 0, 0) == 13
    assert t.copy_in(buf, 4) == b"long"
    assert recv(t, b, 100) == b""
    assert t.fdtable.get(b).nread() == 0
    send(t, a, b"peekme")
    assert t.fdtable.get(b).nread() == 6
    assert recv(t, b, 100, unix.MSG_PEEK) == b"peekme"
    assert recv(t, b, 100) == b"peekme"
    assert err(send, t, a, b"x" * 300000) == errno.EMSGSIZE


def test_seqpacket_unconnected_and_peer_close(t):
    s = net.sys_socket(t, AF_UNIX, SEQ, 0)
    assert err(recv, t, s) == errno.ENOTCONN
    assert err(send, t, s, b"x") == errno.ENOTCONN
    a, b = pair(t, SEQ)
    t.fdtable.close(a)
    assert recv(t, b) == b""
    assert err(send, t, b, b"x") == errno.EPIPE


def test_dgram_addressing(t):
    d1 = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    bind(t, d1, b"/tmp/d1")
    d2 = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    bind(t, d2, b"\0d2")
    anon = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    assert err(send, t, anon, b"x") == errno.ENOTCONN
    assert err(send, t, anon, b"x", 0, b"/tmp/none") == errno.ENOENT
    bad = struct.pack("<H", AF_INET) + b"xx"
    assert err(net.sys_sendto, t, anon, t.put(b"x"), 1, 0, t.put(bad), 4) == errno.EINVAL
    send(t, anon, b"hi", 0, b"/tmp/d1")
    send(t, d2, b"named", 0, b"/tmp/d1")
    buf, ap, lp = t.alloc(16), t.alloc(110), t.put(struct.pack("<i", 110))
    assert net.sys_recvfrom(t, d1, buf, 16, 0, ap, lp) == 2
    assert struct.unpack("<i", t.copy_in(lp, 4))[0] == 0        # unnamed sender
    t.copy_out(lp, struct.pack("<i", 110))
    assert net.sys_recvfrom(t, d1, buf, 16, 0, ap, lp) == 5
    assert struct.unpack("<i", t.copy_in(lp, 4))[0] == 5
    assert t.copy_in(ap, 5) == sun(b"\0d2")
    connect(t, d1, b"\0d2")
    assert getname(t, net.sys_getpeername, d1) == (5, sun(b"\0d2"))
    assert send(t, anon, b"x", 0, b"\0d2") == 1               # d2 is connected to nobody
    connect(t, d2, b"/tmp/d1")
    assert err(send, t, anon, b"x", 0, b"\0d2") == errno.EPERM   # d2 only hears from d1
    unspec = struct.pack("<H", 0)
    assert net.sys_connect(t, d1, t.put(unspec), 2) == 0
    assert err(net.sys_getpeername, t, d1, ap, lp) == errno.ENOTCONN
    s = net.sys_socket(t, AF_UNIX, STREAM, 0)
    bind(t, s, b"/tmp/stream")
    assert err(send, t, anon, b"x", 0, b"/tmp/stream") == errno.EPROTOTYPE
    assert err(connect, t, anon, b"/tmp/stream") == errno.EPROTOTYPE


def test_dgram_peer_gone_and_queue_limit(t):
    r = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    bind(t, r, b"/tmp/r")
    s = net.sys_socket(t, AF_UNIX, DGRAM | NONBLOCK, 0)
    sent = 0
    with pytest.raises(SyscallError) as e:
        for _ in range(20):
            send(t, s, b"q", 0, b"/tmp/r")
            sent += 1
    assert e.value.errno == errno.EAGAIN and sent == unix.MAX_DGRAM_QLEN + 1
    assert recv(t, r) == b"q"
    send(t, s, b"q", 0, b"/tmp/r")
    c = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    connect(t, c, b"/tmp/r")
    t.fdtable.close(r)
    assert err(send, t, c, b"x") == errno.ECONNREFUSED
    assert err(send, t, c, b"x") == errno.ENOTCONN


def test_dgram_passcred_autobinds_sender(t):
    r = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    bind(t, r, b"\0r")
    s = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    setopt(t, s, net.SO_PASSCRED, 1)
    send(t, s, b"x", 0, b"\0r")
    n, name = getname(t, net.sys_getsockname, s)
    assert n == 8


# --- sendmsg / recvmsg and control messages ---------------------------------------------

def msghdr(t, iov, name=b"", control=b"", controllen=None, namelen=None):
    vecs = b"".join(struct.pack("<QQ", t.put(d) if d else t.alloc(1), len(d)) for d in iov)
    ctl = t.put(control) if control else (t.alloc(controllen) if controllen else 0)
    nm = t.put(name) if name else 0
    return t.put(struct.pack("<Qi4xQQQQi4x", nm, len(name) if namelen is None else namelen,
                             t.put(vecs) if vecs else 0, len(iov), ctl,
                             len(control) if controllen is None else controllen, 0))


def recv_msghdr(t, size, controllen=0, namelen=0):
    buf = t.alloc(size)
    ctl = t.alloc(controllen) if controllen else 0
    nm = t.alloc(max(namelen, 1)) if namelen else 0
    vec = t.put(struct.pack("<QQ", buf, size))
    return t.put(struct.pack("<Qi4xQQQQi4x", nm, namelen, vec, 1, ctl, controllen, 0)), buf


def parse_msghdr(t, mp):
    nm, namelen, iov, iovlen, ctl, ctllen, flags = struct.unpack(
        "<Qi4xQQQQi4x", t.copy_in(mp, 56))
    cmsgs, off = [], 0
    raw = t.copy_in(ctl, ctllen) if ctllen else b""
    while off + 16 <= len(raw):
        ln, lvl, typ = struct.unpack_from("<Qii", raw, off)
        cmsgs.append((lvl, typ, raw[off + 16:off + ln]))
        off += (ln + 7) & ~7
    return namelen, ctllen, flags, cmsgs


def rights(fds):
    data = struct.pack("<%di" % len(fds), *fds)
    return struct.pack("<Qii", 16 + len(data), SOL, net.SCM_RIGHTS) + data.ljust(
        (len(data) + 7) & ~7, b"\0")


def test_scm_rights_roundtrip(t):
    a, b = pair(t)
    r, w = struct.unpack("<ii", (fs.sys_pipe(t, t.alloc(8)), t.copy_in(t._brk - 16, 8))[1])
    assert net.sys_sendmsg(t, a, msghdr(t, [b"F", b"G"], control=rights([r, w])), 0) == 2
    t.fdtable.close(w)
    mp, buf = recv_msghdr(t, 16, controllen=64)
    assert net.sys_recvmsg(t, b, mp, unix.MSG_CMSG_CLOEXEC) == 2
    namelen, ctllen, flags, cmsgs = parse_msghdr(t, mp)
    assert ctllen == 24 and flags == 0
    ((lvl, typ, data),) = cmsgs
    nr, nw = struct.unpack("<ii", data)
    assert (lvl, typ) == (SOL, net.SCM_RIGHTS)
    assert t.fdtable.get_cloexec(nr) and t.fdtable.get_cloexec(nw)
    assert t.fdtable.get(nr) is t.fdtable.get(r)
    fs.sys_write(t, nw, t.put(b"passed"), 6)
    out = t.alloc(8)
    assert fs.sys_read(t, r, out, 8) == 6


def test_scm_rights_truncation_and_drop(t):
    a, b = pair(t)
    r = fs.sys_open(t, t.cstr(b"/dev/null"), 0, 0)
    before = len(t.fdtable)
    net.sys_sendmsg(t, a, msghdr(t, [b"x"], control=rights([r, r, r])), 0)
    mp, _ = recv_msghdr(t, 4, controllen=24)              # room for two fds
    net.sys_recvmsg(t, b, mp, 0)
    _, ctllen, flags, cmsgs = parse_msghdr(t, mp)
    assert flags & unix.MSG_CTRUNC and ctllen == 24 and len(cmsgs[0][2]) == 8
    assert len(t.fdtable) == before + 2
    net.sys_sendmsg(t, a, msghdr(t, [b"y"], control=rights([r])), 0)
    mp, _ = recv_msghdr(t, 4)                              # no control buffer at all
    net.sys_recvmsg(t, b, mp, 0)
    assert parse_msghdr(t, mp)[2] == unix.MSG_CTRUNC
    net.sys_sendmsg(t, a, msghdr(t, [b"z"], control=rights([r])), 0)
    assert recv(t, b) == b"z"                              # recv drops the fds
    assert len(t.fdtable) == before + 2


def test_sendmsg_control_errors(t):
    a, b = pair(t)
    assert err(net.sys_sendmsg, t, a, msghdr(t, [b"x"], control=rights([99])), 0) == errno.EBADF
    bad_len = struct.pack("<Qii", 8, SOL, net.SCM_RIGHTS) + b"\0" * 8
    assert err(net.sys_sendmsg, t, a, msghdr(t, [b"x"], control=bad_len), 0) == errno.EINVAL
    too_long = struct.pack("<Qii", 64, SOL, net.SCM_RIGHTS) + b"\0" * 8
    assert err(net.sys_sendmsg, t, a, msghdr(t, [b"x"], control=too_long), 0) == errno.EINVAL
    bad_type = struct.pack("<Qii", 20, SOL, 77) + b"\0" * 4 + b"\0" * 4
    assert err(net.sys_sendmsg, t, a, msghdr(t, [b"x"], control=bad_type), 0) == errno.EINVAL
    creds_len = struct.pack("<Qii", 20, SOL, net.SCM_CREDENTIALS) + b"\0" * 8
    assert err(net.sys_sendmsg, t, a, msghdr(t, [b"x"], control=creds_len), 0) == errno.EINVAL
    many = rights([0] * 254)
    fd0 = fs.sys_open(t, t.cstr(b"/dev/null"), 0, 0)
    assert fd0 == 2
    many = rights([2] * 254)
    assert err(net.sys_sendmsg, t, a, msghdr(t, [b"x"], control=many), 0) == errno.EINVAL
    other_level = struct.pack("<Qii", 20, 6, 1) + b"\0" * 4 + b"\0" * 4
    assert net.sys_sendmsg(t, a, msghdr(t, [b"x"], control=other_level), 0) == 1
    assert err(net.sys_sendmsg, t, a, 8, 0) == errno.EFAULT
    huge = t.put(struct.pack("<Qi4xQQQQi4x", 0, 0, t.alloc(16), 1025, 0, 0, 0))
    assert err(net.sys_sendmsg, t, a, huge, 0) == errno.EMSGSIZE
    # An iov_len with the sign bit is EINVAL; one reaching past the user
    # address space EFAULT (access_ok), as tests/c/iovec.c shows natively.
    badvec = t.put(struct.pack("<Qi4xQQQQi4x", 0, 0, t.put(struct.pack("<QQ", 0, 1 << 63)),
                               1, 0, 0, 0))
    assert err(net.sys_sendmsg, t, a, badvec, 0) == errno.EINVAL
    farvec = t.put(struct.pack("<Qi4xQQQQi4x", 0, 0, t.put(struct.pack("<QQ", 0, 1 << 62)),
                               1, 0, 0, 0))
    assert err(net.sys_sendmsg, t, a, farvec, 0) == errno.EFAULT
    vec = t.put(struct.pack("<QQ", t.alloc(4), 4))
    mp = t.put(struct.pack("<Qi4xQQQQi4x", t.alloc(8), -1, vec, 1, 0, 0, 0))
    send(t, a, b"q")
    assert err(net.sys_recvmsg, t, b, mp, 0) == errno.EINVAL


def test_scm_credentials(t):
    a, b = pair(t, DGRAM)
    setopt(t, b, net.SO_PASSCRED, 1)
    assert int_opt(t, b, net.SO_PASSCRED) == 1
    send(t, a, b"c")
    mp, _ = recv_msghdr(t, 4, controllen=32)
    net.sys_recvmsg(t, b, mp, 0)
    _, ctllen, flags, cmsgs = parse_msghdr(t, mp)
    assert cmsgs == [(SOL, net.SCM_CREDENTIALS, struct.pack("<iII", 1, 0, 0))] and ctllen == 32
    claimed = struct.pack("<Qii", 28, SOL, net.SCM_CREDENTIALS) + struct.pack("<iII", 1, 5, 6)
    net.sys_sendmsg(t, a, msghdr(t, [b"d"], control=claimed + b"\0" * 4), 0)
    mp, _ = recv_msghdr(t, 4, controllen=20)               # too small: truncated cmsg
    net.sys_recvmsg(t, b, mp, 0)
    _, ctllen, flags, cmsgs = parse_msghdr(t, mp)
    assert flags & unix.MSG_CTRUNC and ctllen == 20
    assert cmsgs[0][2] == struct.pack("<i", 1)


def test_scm_credentials_permission(t):
    from types import SimpleNamespace
    user = FakeTask(t.kernel, t.kernel.vfs, tid=7, creds=SimpleNamespace(
        uid=1000, gid=1000, euid=1000, egid=1000, suid=1000, sgid=1000, fsuid=1000, fsgid=1000,
        groups=(), cap_effective=0, cap_permitted=0))
    a, _ = pair(user)
    forged = struct.pack("<Qii", 28, SOL, net.SCM_CREDENTIALS) + struct.pack("<iII", 7, 0, 1000)
    assert err(net.sys_sendmsg, user, a, msghdr(user, [b"x"], control=forged + b"\0" * 4),
               0) == errno.EPERM
    other_pid = struct.pack("<Qii", 28, SOL, net.SCM_CREDENTIALS) + struct.pack("<iII", 1, 1000, 1000)
    assert err(net.sys_sendmsg, user, a, msghdr(user, [b"x"], control=other_pid + b"\0" * 4),
               0) == errno.EPERM


def test_recvmsg_name_and_trunc_flag(t):
    r = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    bind(t, r, b"/tmp/rn")
    s = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    bind(t, s, b"/tmp/sn")
    net.sys_sendmsg(t, s, msghdr(t, [b"abc", b"def"], name=sun(b"/tmp/rn\0")), 0)
    mp, buf = recv_msghdr(t, 4, namelen=5)
    assert net.sys_recvmsg(t, r, mp, 0) == 4
    namelen, _, flags, _ = parse_msghdr(t, mp)
    assert namelen == 10 and flags == unix.MSG_TRUNC
    assert t.copy_in(buf, 4) == b"abcd"


def test_sendmmsg_recvmmsg(t):
    a, b = pair(t, DGRAM)
    vec = bytearray()
    for word in (b"one", b"two", b"three"):
        m = msghdr(t, [word])
        vec += t.copy_in(m, 56) + b"\0" * 8
    vp = t.put(bytes(vec))
    assert net.sys_sendmmsg(t, a, vp, 3, 0) == 3
    assert [struct.unpack("<I", t.copy_in(vp + i * 64 + 56, 4))[0] for i in range(3)] == [3, 3, 5]
    rvec = bytearray()
    bufs = []
    for _ in range(4):
        mp, buf = recv_msghdr(t, 8)
        rvec += t.copy_in(mp, 56) + b"\0" * 8
        bufs.append(buf)
    rp = t.put(bytes(rvec))
    assert net.sys_recvmmsg(t, b, rp, 4, net.MSG_WAITFORONE, 0) == 3
    assert t.copy_in(bufs[2], 5) == b"three"
    assert err(net.sys_recvmmsg, t, b, rp, 1, unix.MSG_DONTWAIT, 0) == errno.EAGAIN
    bad_ts = t.put(struct.pack("<qq", 0, 2000000000))
    assert err(net.sys_recvmmsg, t, b, rp, 1, 0, bad_ts) == errno.EINVAL
    assert err(net.sys_sendmmsg, t, a, 8, 1, 0) == errno.EFAULT


# --- options -------------------------------------------------------------------------------

def test_sockopt_defaults_and_errors(t):
    a, _ = pair(t)
    assert int_opt(t, a, net.SO_SNDBUF) == unix.DEFAULT_BUF
    assert int_opt(t, a, net.SO_RCVBUF) == unix.DEFAULT_BUF
    assert int_opt(t, a, net.SO_ERROR) == 0
    assert int_opt(t, a, net.SO_ACCEPTCONN) == 0
    assert sockopt(t, a, net.SO_TYPE, 2) == b"\1\0"
    assert sockopt(t, a, net.SO_LINGER, 8) == struct.pack("<ii", 0, 0)
    assert sockopt(t, a, net.SO_SNDTIMEO, 16) == bytes(16)
    lp = t.put(struct.pack("<i", -1))
    assert err(net.sys_getsockopt, t, a, SOL, net.SO_TYPE, t.alloc(4), lp) == errno.EINVAL
    assert err(net.sys_getsockopt, t, a, SOL, 9999, t.alloc(4), t.put(b"\4\0\0\0")) \
        == errno.ENOPROTOOPT
    assert err(net.sys_getsockopt, t, a, 6, 1, t.alloc(4), t.put(b"\4\0\0\0")) == errno.EOPNOTSUPP
    assert err(net.sys_getsockopt, t, a, SOL, net.SO_TYPE, 8, t.put(b"\4\0\0\0")) == errno.EFAULT
    assert err(net.sys_setsockopt, t, a, 6, 1, t.put(b"\1\0\0\0"), 4) == errno.EOPNOTSUPP
    assert err(setopt, t, a, 9999, 1) == errno.ENOPROTOOPT
    assert err(net.sys_setsockopt, t, a, SOL, net.SO_SNDBUF, t.put(b"\1\0"), 2) == errno.EINVAL
    assert err(net.sys_setsockopt, t, a, SOL, net.SO_SNDBUF, 8, 4) == errno.EFAULT
    assert err(setopt, t, a, net.SO_RCVTIMEO, struct.pack("<qq", 1, 1000000)) == errno.EDOM
    assert err(net.sys_setsockopt, t, a, SOL, net.SO_RCVTIMEO, t.alloc(16), 8) == errno.EINVAL
    assert err(net.sys_setsockopt, t, a, SOL, net.SO_LINGER, t.alloc(8), 4) == errno.EINVAL


def test_sockopt_set_and_get(t):
    a, _ = pair(t)
    setopt(t, a, net.SO_RCVBUF, 1)
    assert int_opt(t, a, net.SO_RCVBUF) == unix.MIN_RCVBUF
    setopt(t, a, net.SO_SNDBUF, 1 << 30)
    assert int_opt(t, a, net.SO_SNDBUF) == 2 * unix.MAX_BUF
    for opt in (net.SO_REUSEADDR, net.SO_KEEPALIVE):
        setopt(t, a, opt, 5)
        assert int_opt(t, a, opt) == 1
    setopt(t, a, net.SO_LINGER, struct.pack("<ii", 1, 7))
    assert sockopt(t, a, net.SO_LINGER, 8) == struct.pack("<ii", 1, 7)
    setopt(t, a, net.SO_SNDTIMEO, struct.pack("<qq", 2, 500))
    assert sockopt(t, a, net.SO_SNDTIMEO, 16) == struct.pack("<qq", 2, 500)
    setopt(t, a, net.SO_SNDTIMEO, struct.pack("<qq", 0, 0))
    assert sockopt(t, a, net.SO_SNDTIMEO, 16) == bytes(16)
    assert struct.unpack("<iII", sockopt(t, net.sys_socket(t, AF_UNIX, STREAM, 0),
                                         net.SO_PEERCRED, 12)) == (0, 0xFFFFFFFF, 0xFFFFFFFF)


# --- readiness -----------------------------------------------------------------------------

def test_poll_events_and_notifications(t):
    a, b = pair(t)
    fa, fb = t.fdtable.get(a), t.fdtable.get(b)
    seen = []
    fb.waitq.register(seen.append)
    assert fb.poll_events() & (POLLIN | POLLOUT) == POLLOUT
    send(t, a, b"x")
    assert seen and fb.poll_events() & POLLIN
    seen.clear()
    t.fdtable.close(a)
    assert seen and fb.poll_events() & POLLHUP
    s = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert t.fdtable.get(s).poll_events() & POLLHUP          # unconnected stream
    lfd = listener(t, b"/tmp/pl")
    fl = t.fdtable.get(lfd)
    assert fl.poll_events() == 0
    connect(t, net.sys_socket(t, AF_UNIX, STREAM, 0), b"/tmp/pl")
    assert fl.poll_events() & POLLIN
    assert fa.poll_events() & POLLHUP


def test_passed_socket_keeps_peer_alive(t):
    a, b = pair(t)
    c, d = pair(t)
    net.sys_sendmsg(t, a, msghdr(t, [b"s"], control=rights([c])), 0)
    t.fdtable.close(c)                                     # the message holds it
    send(t, d, b"still here")
    mp, _ = recv_msghdr(t, 4, controllen=24)
    net.sys_recvmsg(t, b, mp, 0)
    (fd,) = struct.unpack("<i", parse_msghdr(t, mp)[3][0][2])
    assert recv(t, fd) == b"still here"


def test_dgram_sender_waits_for_queue_room(t):
    r = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    bind(t, r, b"/tmp/slow")
    s = net.sys_socket(t, AF_UNIX, DGRAM, 0)
    for _ in range(unix.MAX_DGRAM_QLEN + 1):
        send(t, s, b"m", 0, b"/tmp/slow")
    done = []
    th = threading.Thread(target=lambda: done.append(send(t, s, b"last", 0, b"/tmp/slow")))
    th.start()
    time.sleep(0.05)
    assert not done
    assert recv(t, r) == b"m"
    th.join(5)
    assert done == [4]


def test_stream_sndtimeo_returns_partial_then_eagain(t):
    a, b = pair(t)
    setopt(t, a, net.SO_SNDBUF, 2048)
    setopt(t, a, net.SO_SNDTIMEO, struct.pack("<qq", 0, 20000))
    assert int_opt(t, a, net.SO_SNDBUF) == unix.MIN_SNDBUF
    assert send(t, a, b"x" * 10000) == unix.MIN_SNDBUF       # what fit before the timeout
    assert err(send, t, a, b"y") == errno.EAGAIN
    assert len(recv(t, b, 10000)) == unix.MIN_SNDBUF


def test_seqpacket_listen_accept_keeps_records(t):
    lfd = listener(t, b"/tmp/seq", kind=SEQ)
    c = net.sys_socket(t, AF_UNIX, SEQ, 0)
    connect(t, c, b"/tmp/seq")
    s = net.sys_accept(t, lfd, 0, 0)
    send(t, c, b"rec1")
    send(t, c, b"rec2")
    assert (recv(t, s), recv(t, s)) == (b"rec1", b"rec2")
    s2 = net.sys_socket(t, AF_UNIX, STREAM, 0)
    assert err(connect, t, s2, b"/tmp/seq") == errno.EPROTOTYPE
