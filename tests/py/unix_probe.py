"""Unix socket semantics probe (a script, not a test module): run as
`python3 unix_probe.py DIR`, it prints one line per check. The output
must be the same natively and in the sandbox, so nothing host-specific
(inode numbers, pids, buffer overheads) is printed.
test_unix_programs.py runs it both ways and compares."""
import errno
import os
import signal
import socket
import struct
import sys
import time

out = []
SOL, AF = socket.SOL_SOCKET, socket.AF_UNIX


def rec(label, fn, *a):
    try:
        r = fn(*a) if callable(fn) else fn
    except OSError as e:
        r = "E" + errno.errorcode[e.errno]
    out.append("%s: %r" % (label, r))
    if os.environ.get("PROBE_TRACE"):
        sys.stderr.write(out[-1] + "\n")


def pair(kind=socket.SOCK_STREAM):
    return socket.socketpair(AF, kind)


def main(base):
    os.makedirs(base)
    os.chdir(base)
    # --- creation -------------------------------------------------------------
    rec("inet", lambda: socket.socket(socket.AF_INET6 + 100, socket.SOCK_STREAM))
    rec("badtype", lambda: socket.socket(AF, 77))
    rec("rdm", lambda: socket.socket(AF, socket.SOCK_RDM))
    rec("badproto", lambda: socket.socket(AF, socket.SOCK_STREAM, 7))
    raw = socket.socket(AF, socket.SOCK_RAW)
    rec("raw-is-dgram", raw.getsockopt, SOL, socket.SO_TYPE)
    raw.close()
    s = socket.socket(AF, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    rec("nonblock", lambda: os.get_blocking(s.fileno()))
    rec("cloexec", lambda: os.get_inheritable(s.fileno()))
    rec("fstat", lambda: oct(os.fstat(s.fileno()).st_mode))
    rec("procfd", lambda: os.readlink("/proc/self/fd/%d" % s.fileno()).startswith("socket:["))
    for name in ("SO_TYPE", "SO_DOMAIN", "SO_PROTOCOL", "SO_ERROR", "SO_SNDBUF", "SO_RCVBUF",
                 "SO_PASSCRED", "SO_ACCEPTCONN", "SO_REUSEADDR", "SO_KEEPALIVE"):
        rec("opt-" + name, s.getsockopt, SOL, getattr(socket, name))
    rec("opt-linger", lambda: struct.unpack("ii", s.getsockopt(SOL, socket.SO_LINGER, 8)))
    rec("opt-rcvtimeo", lambda: struct.unpack("qq", s.getsockopt(SOL, socket.SO_RCVTIMEO, 16)))
    rec("opt-peercred-unconn", lambda: struct.unpack("iII", s.getsockopt(SOL, socket.SO_PEERCRED, 12)))
    rec("opt-short", lambda: s.getsockopt(SOL, socket.SO_TYPE, 2))
    rec("opt-unknown", s.getsockopt, SOL, 9999)
    rec("opt-otherlevel", s.getsockopt, socket.IPPROTO_TCP, 1)
    rec("setopt-otherlevel", s.setsockopt, socket.IPPROTO_TCP, 1, 1)
    rec("setopt-unknown", s.setsockopt, SOL, 9999, 1)
    rec("setopt-short", s.setsockopt, SOL, socket.SO_SNDBUF, b"\1\0")
    s.setsockopt(SOL, socket.SO_SNDBUF, 10000)
    rec("sndbuf-set", s.getsockopt, SOL, socket.SO_SNDBUF)
    s.setsockopt(SOL, socket.SO_RCVBUF, 1)
    rec("rcvbuf-min", s.getsockopt, SOL, socket.SO_RCVBUF)
    s.setsockopt(SOL, socket.SO_SNDBUF, 1 << 30)
    s.setsockopt(SOL, socket.SO_LINGER, struct.pack("ii", 1, 5))
    rec("linger-set", lambda: struct.unpack("ii", s.getsockopt(SOL, socket.SO_LINGER, 8)))
    rec("rcvtimeo-bad", s.setsockopt, SOL, socket.SO_RCVTIMEO, struct.pack("qq", 1, 2000000))
    s.setsockopt(SOL, socket.SO_RCVTIMEO, struct.pack("qq", 1, 500000))
    rec("rcvtimeo-set", lambda: struct.unpack("qq", s.getsockopt(SOL, socket.SO_RCVTIMEO, 16)))
    rec("getsockname-unbound", s.getsockname)
    rec("getpeername-unconn", s.getpeername)
    rec("listen-unbound", s.listen, 1)
    rec("accept-unlistened", s.accept)
    rec("recv-unconn", s.recv, 1)
    rec("send-unconn", s.send, b"x")
    rec("shutdown-unconn", s.shutdown, socket.SHUT_RDWR)
    rec("shutdown-bad", s.shutdown, 7)
    s.close()

    # --- names ----------------------------------------------------------------
    srv = socket.socket(AF, socket.SOCK_STREAM)
    rec("bind-path", srv.bind, "sock")
    rec("bind-again", srv.bind, "sock2")
    rec("sockname", srv.getsockname)
    rec("sockname-len", lambda: len(srv.getsockname()))
    rec("stat-node", lambda: oct(os.stat("sock").st_mode & 0o170000))
    rec("open-node", os.open, "sock", os.O_RDONLY)
    rec("bind-inuse", socket.socket(AF).bind, "sock")
    rec("bind-noent", socket.socket(AF).bind, "nodir/sock")
    rec("connect-noent", socket.socket(AF).connect, "nosuch")
    with open("plain", "w"):
        pass
    rec("connect-notsock", socket.socket(AF).connect, "plain")
    rec("connect-nolisten", socket.socket(AF).connect, "sock")
    rec("connect-dgram-to-stream", socket.socket(AF, socket.SOCK_DGRAM).connect, "sock")
    rec("listen", srv.listen, 2)
    rec("acceptconn", srv.getsockopt, SOL, socket.SO_ACCEPTCONN)
    rec("poll-listen-empty", lambda: __import__("select").select([srv], [srv], [], 0)[0:2] == ([], []))
    cli = socket.socket(AF, socket.SOCK_STREAM)
    rec("connect", cli.connect, "sock")
    rec("connect-again", cli.connect, "sock")
    rec("cli-peername", cli.getpeername)
    rec("cli-sockname", cli.getsockname)
    rec("send-before-accept", cli.send, b"early")
    conn, peer = srv.accept()
    rec("accept-peer", peer)
    rec("conn-sockname", conn.getsockname)
    rec("conn-peername", conn.getpeername)
    rec("recv-early", conn.recv, 100)
    cred = struct.unpack("iII", conn.getsockopt(SOL, socket.SO_PEERCRED, 12))
    rec("peercred", cred == (os.getpid(), os.geteuid(), os.getegid()))
    cred = struct.unpack("iII", cli.getsockopt(SOL, socket.SO_PEERCRED, 12))
    rec("peercred-cli", cred == (os.getpid(), os.geteuid(), os.getegid()))
    rec("listen-connected", cli.listen, 1)
    rec("sendto-connected-stream", cli.sendto, b"x", "sock")
    rec("connect-listener", srv.connect, "sock")
    srv.setblocking(False)
    rec("accept-eagain", srv.accept)
    # backlog: 2 means 3 queued connections, then EAGAIN for a nonblocking connect
    pend = []
    for i in range(5):
        c = socket.socket(AF, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect("sock")
            pend.append("ok")
        except OSError as e:
            pend.append(errno.errorcode[e.errno])
    rec("backlog", pend)
    srv.close()
    rec("connect-closed-listener", socket.socket(AF).connect, "sock")
    os.unlink("sock")
    srv2 = socket.socket(AF)
    rec("rebind-after-unlink", srv2.bind, "sock")
    srv2.close()
    # abstract names
    ab = socket.socket(AF, socket.SOCK_STREAM)
    rec("bind-abstract", ab.bind, "\0pyvisor-test-%d" % os.getpid())
    rec("abstract-name", lambda: ab.getsockname() == b"\0pyvisor-test-%d" % os.getpid())
    rec("abstract-inuse", socket.socket(AF).bind, "\0pyvisor-test-%d" % os.getpid())
    ab.listen(1)
    ac = socket.socket(AF)
    rec("connect-abstract", ac.connect, "\0pyvisor-test-%d" % os.getpid())
    rec("connect-abstract-missing", socket.socket(AF).connect, "\0pyvisor-none-%d" % os.getpid())
    ab.close()
    rec("abstract-free-after-close", socket.socket(AF).bind, "\0pyvisor-test-%d" % os.getpid())
    auto = socket.socket(AF)
    auto.bind("")
    name = auto.getsockname()
    rec("autobind", (len(name), name[:1], all(c in b"0123456789abcdef" for c in name[1:])))

    # --- stream data ----------------------------------------------------------
    a, b = pair()
    rec("sendall", a.sendall, b"x" * 100000)
    got = b""
    while len(got) < 100000:
        got += b.recv(65536)
    rec("stream-bytes", len(got))
    a.send(b"abc")
    a.send(b"def")
    rec("stream-merge", b.recv(100))
    a.send(b"peek")
    rec("peek", b.recv(100, socket.MSG_PEEK))
    rec("after-peek", b.recv(2))
    rec("rest", b.recv(100))
    rec("dontwait", b.recv, 10, socket.MSG_DONTWAIT)
    b.settimeout(None)
    a.send(b"12")
    rec("fionread", lambda: struct.unpack("i", __import__("fcntl").ioctl(b, 0x541B, b"\0" * 4))[0])
    b.recv(2)
    b.setsockopt(SOL, socket.SO_RCVTIMEO, struct.pack("qq", 0, 100000))
    t0 = time.monotonic()
    rec("rcvtimeo", b.recv, 1)
    rec("rcvtimeo-waited", time.monotonic() - t0 >= 0.09)
    a.shutdown(socket.SHUT_WR)
    rec("eof-after-shutwr", b.recv(10))
    rec("send-after-shutwr", a.send, b"x")
    rec("b-can-still-send", b.send(b"back"))
    rec("a-reads", a.recv(10))
    b.shutdown(socket.SHUT_RD)
    rec("a-send-peer-shutrd", a.send, b"x")
    a.close()
    rec("send-to-closed", b.send, b"x")
    rec("recv-after-close", b.recv(10))
    b.close()
    a, b = pair()
    a.send(b"unread")
    b.close()
    rec("unread-reset", a.recv, 10)
    rec("after-reset", a.recv, 10)
    a.close()
    # SIGPIPE
    hits = []
    signal.signal(signal.SIGPIPE, lambda *x: hits.append(1))
    a, b = pair()
    b.close()
    rec("epipe", a.send, b"x")
    rec("sigpipe", len(hits))
    rec("epipe-nosignal", a.send, b"x", socket.MSG_NOSIGNAL)
    rec("sigpipe-nosignal", len(hits))
    a, b = pair(socket.SOCK_SEQPACKET)
    b.close()
    rec("seq-epipe", a.send, b"x")
    rec("seq-sigpipe", len(hits))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    a, b = pair()
    a.setblocking(False)
    total = 0
    try:
        while True:
            total += a.send(b"z" * 4096)
    except BlockingIOError:
        pass
    rec("stream-fills", total > 100000)
    rec("poll-full", __import__("select").select([], [a], [], 0)[1] == [])
    a.close()
    b.close()

    # --- records ---------------------------------------------------------------
    for kind in ("SOCK_SEQPACKET", "SOCK_DGRAM"):
        a, b = pair(getattr(socket, kind))
        a.send(b"one")
        a.send(b"two!")
        a.send(b"")
        rec(kind + "-1", b.recv(100))
        rec(kind + "-trunc", b.recvmsg(2))
        rec(kind + "-empty", b.recv(100))
        a.send(b"longrecord")
        rec(kind + "-MSG_TRUNC", b.recv_into(bytearray(4), 4, socket.MSG_TRUNC))
        a.send(b"abc")
        rec(kind + "-peek", b.recv(100, socket.MSG_PEEK))
        rec(kind + "-then", b.recv(100))
        rec(kind + "-toolong", a.send, b"x" * 300000)
        a.close()
        rec(kind + "-after-close", b.recv, 10, socket.MSG_DONTWAIT)
        b.close()
    s = socket.socket(AF, socket.SOCK_SEQPACKET)
    rec("seq-recv-unconn", s.recv, 1)
    rec("seq-send-unconn", s.send, b"x")
    rec("seq-listen-unbound", s.listen, 1)
    s.bind("seq")
    s.listen(1)
    c = socket.socket(AF, socket.SOCK_SEQPACKET)
    c.connect("seq")
    conn, _ = s.accept()
    c.send(b"rec1")
    c.send(b"rec2")
    rec("seq-accepted", (conn.recv(100), conn.recv(100)))
    rec("connect-stream-to-seq", socket.socket(AF).connect, "seq")

    # datagram addressing
    d1 = socket.socket(AF, socket.SOCK_DGRAM)
    d1.bind("d1")
    d2 = socket.socket(AF, socket.SOCK_DGRAM)
    d2.bind("d2")
    d3 = socket.socket(AF, socket.SOCK_DGRAM)
    rec("dgram-listen", d1.listen, 1)
    rec("dgram-accept", d1.accept)
    rec("dgram-send-unconn", d3.send, b"x")
    rec("sendto", d3.sendto(b"hi", "d1"))
    rec("recvfrom-unnamed", d1.recvfrom(10))
    d2.sendto(b"hello", "d1")
    rec("recvfrom-named", d1.recvfrom(10))
    d2.connect("d1")
    rec("dgram-peername", d2.getpeername())
    d2.send(b"c")
    rec("dgram-connected", d1.recvfrom(10))
    rec("sendto-missing", d3.sendto, b"x", "nothere")
    d1.connect("d2")
    rec("dgram-eperm", d3.sendto, b"x", "d1")
    d1.connect(("",) and b"\0\0" and "d2")
    d4 = socket.socket(AF, socket.SOCK_DGRAM)
    d4.bind("d4")
    d5 = socket.socket(AF, socket.SOCK_DGRAM)
    d5.connect("d4")
    d4.close()
    rec("dgram-peer-gone", d5.send, b"x")
    rec("dgram-peer-gone-again", d5.send, b"x")
    d6 = socket.socket(AF, socket.SOCK_DGRAM)
    d6.bind("d6")
    d6.setblocking(False)
    sender = socket.socket(AF, socket.SOCK_DGRAM)
    sender.setblocking(False)
    n = 0
    try:
        for n in range(100):
            sender.sendto(b"q", "d6")
    except BlockingIOError:
        rec("dgram-qlen", n)
    sender.close()
    d6.close()

    # --- control messages --------------------------------------------------------
    a, b = pair()
    r, w = os.pipe()
    rec("sendfds", socket.send_fds(a, [b"F"], [r, w]))
    msg, fds, flags, addr = socket.recv_fds(b, 10, 4)
    rec("recvfds", (msg, len(fds), flags))
    os.write(fds[1], b"through")
    rec("pipe-via-fds", os.read(fds[0], 100))
    rec("fds-cloexec-default", os.get_inheritable(fds[0]))
    for f in fds:
        os.close(f)
    socket.send_fds(a, [b"G"], [r])
    msg, anc, flags, addr = b.recvmsg(10, 0)
    rec("rights-no-control", (msg, anc, flags & socket.MSG_CTRUNC))
    socket.send_fds(a, [b"H"], [r, w, r])
    msg, anc, flags, addr = b.recvmsg(10, socket.CMSG_SPACE(4))
    rec("rights-ctrunc", (msg, len(anc[0][2]) // 4, bool(flags & socket.MSG_CTRUNC)))
    os.close(struct.unpack("i", anc[0][2][:4])[0])
    socket.send_fds(a, [b"I"], [r])
    msg, anc, flags, addr = b.recvmsg(10, socket.CMSG_SPACE(4), socket.MSG_CMSG_CLOEXEC)
    fd = struct.unpack("i", anc[0][2][:4])[0]
    rec("rights-cloexec", __import__("fcntl").fcntl(fd, __import__("fcntl").F_GETFD))
    os.close(fd)
    rec("rights-ebadf", socket.send_fds, a, [b"J"], [999])
    rec("cmsg-bad-type", a.sendmsg, [b"K"], [(SOL, 77, b"1234")])
    rec("cmsg-other-level", a.sendmsg, [b"L"], [(socket.IPPROTO_TCP, 1, b"1234")])
    rec("recv-L", b.recv(10))
    a.send(b"ab")
    socket.send_fds(a, [b"cd"], [r])
    a.send(b"ef")
    rec("glue-into-fds", b.recv(100))
    rec("rest-ef", b.recv(100))
    socket.send_fds(a, [b"gh"], [r])
    a.send(b"ij")
    msg, anc, flags, addr = b.recvmsg(100, socket.CMSG_SPACE(4))
    rec("stop-after-fds", (msg, len(anc)))
    os.close(struct.unpack("i", anc[0][2][:4])[0])
    rec("rest-ij", b.recv(100))
    # credentials
    b.setsockopt(SOL, socket.SO_PASSCRED, 1)
    a.send(b"cred")
    msg, anc, flags, addr = b.recvmsg(10, socket.CMSG_SPACE(12))
    lvl, typ, data = anc[0]
    rec("scm-creds", (msg, lvl, typ, struct.unpack("iII", data) == (os.getpid(), os.getuid(), os.getgid())))
    rec("scm-creds-explicit", a.sendmsg, [b"x"], [(SOL, socket.SCM_CREDENTIALS, struct.pack("iII", os.getpid(), os.getuid(), os.getgid()))])
    b.recvmsg(10, 64)
    rec("scm-creds-badlen", a.sendmsg, [b"x"], [(SOL, socket.SCM_CREDENTIALS, b"1234")])
    a.send(b"c2")
    msg, anc, flags, addr = b.recvmsg(10, 10)
    rec("creds-ctrunc", (msg, bool(flags & socket.MSG_CTRUNC), [len(x[2]) for x in anc]))
    a.close()
    b.close()
    os.close(r)
    os.close(w)

    # --- fork: a child connects, sends, gets an fd back ---------------------------
    srv = socket.socket(AF, socket.SOCK_STREAM)
    srv.bind("forksock")
    srv.listen(1)
    pid = os.fork()
    if pid == 0:
        c = socket.socket(AF)
        c.connect("forksock")
        c.sendall(b"from child %d" % (os.getpid() == os.getpid()))
        msg, fds, _, _ = socket.recv_fds(c, 10, 1)
        os.write(fds[0], b"child wrote via passed fd")
        os._exit(0)
    conn, _ = srv.accept()
    cred = struct.unpack("iII", conn.getsockopt(SOL, socket.SO_PEERCRED, 12))
    rec("fork-peercred-is-child", cred[0] == pid)
    rec("fork-recv", conn.recv(100))
    r, w = os.pipe()
    socket.send_fds(conn, [b"P"], [w])
    os.close(w)
    rec("fork-wait", os.waitpid(pid, 0)[1])
    rec("fork-pipe", os.read(r, 100))
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
