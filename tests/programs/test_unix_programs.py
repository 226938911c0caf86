"""Unix domain sockets in real programs: each runs natively and in the
sandbox, and the outputs must match (docs: "a program run on Linux and in
the sandbox is the best test").

- py/unix_probe.py: a Python script of ~165 checks (errors, names,
  backlog, shutdown, SIGPIPE, records, SCM_RIGHTS/SCM_CREDENTIALS, fork).
- A C program: socketpair + fork + SCM_RIGHTS of a pipe, a path server
  with a forked client, SEQPACKET boundaries, an abstract name, SO_PEERCRED.
- python3 socket.socketpair() echo between two processes; signals that
  interrupt (EINTR) or restart blocked socket calls; multiprocessing.Pipe.

N.B. multiprocessing.Pool(2).map is not here: it hangs in the sandbox with
or without this area (its workers read corrupt pickles from the shared task
pipe; Pool uses pipes and a shared-memory semaphore, no sockets).
"""

import os
import subprocess
import sys

import pytest

from conftest import BASE_ENV, PYVISOR, TESTS_DIR

HERE = TESTS_DIR
PYTHON3 = "/usr/bin/python3"
ENV = BASE_ENV


def _sandbox_cmd(argv):
    return [*PYVISOR, "run", "--", *argv]


def _run(argv, sandboxed, timeout=120):
    cmd = _sandbox_cmd(argv) if sandboxed else argv
    return subprocess.run(cmd, cwd="/", env=ENV, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def sandbox_ok():
    if not os.path.exists(PYTHON3):
        pytest.skip("no /usr/bin/python3 on this host")
    try:
        r = _run(["/bin/true"], True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip("sandbox unavailable: %s" % e)
    if r.returncode != 0:
        pytest.skip("sandbox unavailable: %s" % r.stderr.decode(errors="replace")[-300:])


def _same(argv_native, argv_sandbox):
    native = _run(argv_native, False)
    assert native.returncode == 0, native.stderr.decode(errors="replace")
    ours = _run(argv_sandbox, True)
    assert ours.returncode == 0, ours.stderr.decode(errors="replace")[-2000:]
    assert ours.stdout.decode().splitlines() == native.stdout.decode().splitlines()
    return native.stdout.decode()


@pytest.mark.slow
def test_python_probe_same_native_and_sandboxed(tmp_path, sandbox_ok):
    probe = os.path.join(HERE, "py", "unix_probe.py")
    inside = "/tmp/pyvisor-unix-probe-%d" % os.getpid()
    out = _same([PYTHON3, probe, str(tmp_path / "probe")], [PYTHON3, probe, inside])
    assert len(out.splitlines()) > 150
    assert "fork-pipe: b'child wrote via passed fd'" in out
    assert not os.path.exists(inside), "the sandbox wrote to the host"


C_SOURCE = r'''/* Unix sockets from C: socketpair + fork + SCM_RIGHTS of a pipe, a path
 * server with a forked client, SEQPACKET boundaries, an abstract name,
 * SO_PEERCRED and SIGPIPE. Prints only what is the same on any Linux. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int send_fd(int s, int fd) {
    char c = 'F';
    struct iovec iov = {&c, 1};
    char ctl[CMSG_SPACE(sizeof(int))];
    struct msghdr m = {0};
    m.msg_iov = &iov; m.msg_iovlen = 1; m.msg_control = ctl; m.msg_controllen = sizeof ctl;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    return sendmsg(s, &m, 0);
}

static int recv_fd(int s) {
    char c;
    struct iovec iov = {&c, 1};
    char ctl[CMSG_SPACE(sizeof(int))];
    struct msghdr m = {0};
    m.msg_iov = &iov; m.msg_iovlen = 1; m.msg_control = ctl; m.msg_controllen = sizeof ctl;
    if (recvmsg(s, &m, 0) != 1) return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int))) return -2;
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    return fd;
}

static void rights(void) {
    int sv[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pipe(p);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        int fd = recv_fd(sv[1]);
        const char msg[] = "hello through a passed pipe";
        write(fd, msg, sizeof msg - 1);
        _exit(fd >= 0 ? 0 : 3);
    }
    close(sv[1]);
    printf("sendmsg rights: %d\n", send_fd(sv[0], p[1]));
    close(p[1]);
    int st;
    waitpid(pid, &st, 0);
    char buf[64] = {0};
    printf("child exit %d, pipe: %s\n", WEXITSTATUS(st), read(p[0], buf, sizeof buf) > 0 ? buf : "?");
    close(p[0]);
    close(sv[0]);
}

static void path_server(void) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "/tmp/unixc-%d.sock", getpid());
    unlink(a.sun_path);
    int srv = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int b = bind(srv, (void *)&a, sizeof a);
    printf("bind %d listen %d\n", b, listen(srv, 4));
    pid_t pid = fork();
    if (pid == 0) {
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(c, (void *)&a, sizeof a) < 0) _exit(2);
        char buf[32];
        for (int i = 0; i < 3; i++) {
            int n = snprintf(buf, sizeof buf, "line %d\n", i);
            write(c, buf, n);
        }
        shutdown(c, SHUT_WR);
        int n = read(c, buf, sizeof buf);
        _exit(n == 3 && memcmp(buf, "bye", 3) == 0 ? 0 : 4);
    }
    struct sockaddr_un peer;
    socklen_t plen = sizeof peer;
    int c = accept4(srv, (void *)&peer, &plen, SOCK_CLOEXEC);
    printf("accept ok %d, peer addrlen %d\n", c >= 0, (int)plen);
    struct ucred cr;
    socklen_t clen = sizeof cr;
    getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &clen);
    printf("peercred pid is child: %d, len %d\n", cr.pid == pid, (int)clen);
    char all[128];
    int got = 0, n;
    while ((n = read(c, all + got, sizeof all - got)) > 0) got += n;
    printf("server got %d bytes: %.*s", got, got, all);
    write(c, "bye", 3);
    int st;
    waitpid(pid, &st, 0);
    printf("client exit %d\n", WEXITSTATUS(st));
    close(c);
    close(srv);
    unlink(a.sun_path);
}

static void seqpacket(void) {
    int sv[2];
    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
    write(sv[0], "first", 5);
    write(sv[0], "second!", 7);
    send(sv[0], "", 0, 0);      /* N.B. an empty record; write(2) of 0 bytes also sends one */
    char buf[16];
    printf("seq %zd", read(sv[1], buf, sizeof buf));
    printf(" %zd", read(sv[1], buf, 3));
    printf(" %zd\n", read(sv[1], buf, sizeof buf));
    struct msghdr m = {0};
    struct iovec iov = {buf, 2};
    m.msg_iov = &iov; m.msg_iovlen = 1;
    write(sv[0], "abcdef", 6);
    ssize_t r = recvmsg(sv[1], &m, 0);
    printf("recvmsg %zd flags %#x\n", r, m.msg_flags);
    close(sv[0]);
    printf("eof %zd\n", read(sv[1], buf, sizeof buf));
    close(sv[1]);
}

static int sigpipes;
static void on_pipe(int s) { (void)s; sigpipes++; }

static void abstract_and_sigpipe(void) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int len = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "unixc-%d", getpid()) + 1;
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + len;
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    printf("abstract bind %d\n", bind(d, (void *)&a, alen));
    int e = socket(AF_UNIX, SOCK_DGRAM, 0);
    printf("sendto %zd\n", sendto(e, "dg", 2, 0, (void *)&a, alen));
    struct sockaddr_un got;
    socklen_t glen = sizeof got;
    getsockname(d, (void *)&got, &glen);
    printf("getsockname len ok %d, same %d\n", glen == alen, memcmp(&got, &a, alen) == 0);
    char buf[8];
    printf("recv %zd\n", recv(d, buf, sizeof buf, 0));
    signal(SIGPIPE, on_pipe);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    close(sv[1]);
    errno = 0;
    ssize_t r = write(sv[0], "x", 1);
    printf("write to closed: %zd %s, sigpipe %d\n", r, strerror(errno), sigpipes);
    r = send(sv[0], "x", 1, MSG_NOSIGNAL);
    printf("send nosignal: %zd %s, sigpipe %d\n", r, strerror(errno), sigpipes);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    rights();
    path_server();
    seqpacket();
    abstract_and_sigpipe();
    return 0;
}
'''


@pytest.mark.slow
def test_c_program_same_native_and_sandboxed(build_c, sandbox_ok, tmp_path):
    src = tmp_path / "unixc.c"
    src.write_text(C_SOURCE)
    prog = build_c(str(src))
    out = _same([prog], [prog])
    assert "child exit 0, pipe: hello through a passed pipe" in out
    assert "peercred pid is child: 1" in out
    assert "write to closed: -1 Broken pipe, sigpipe 1" in out


ECHO = """
import os, socket
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:
    a.close()
    while True:
        data = b.recv(4096)
        if not data:
            break
        b.sendall(data.upper())
    os._exit(0)
b.close()
for word in (b"ping", b"x" * 100000, b"done"):
    a.sendall(word)
    got = b""
    while len(got) < len(word):
        got += a.recv(65536)
    print(len(got), got[:8])
a.shutdown(socket.SHUT_WR)
print(a.recv(10), os.waitpid(pid, 0)[1])
"""


@pytest.mark.slow
def test_socketpair_echo_between_processes(sandbox_ok):
    out = _same([PYTHON3, "-c", ECHO], [PYTHON3, "-c", ECHO])
    assert out.splitlines() == ["4 b'PING'", "100000 b'XXXXXXXX'", "4 b'DONE'", "b'' 0"]


INTERRUPT = """
import signal, socket, os, time
a, b = socket.socketpair()
def h(*x): raise TimeoutError("alarm")
signal.signal(signal.SIGALRM, h)
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    b.recv(1)
except TimeoutError as e:
    print("recv interrupted", e)
signal.signal(signal.SIGALRM, lambda *x: None)      # returns: recv restarts
pid = os.fork()
if pid == 0:
    time.sleep(0.5)
    a.send(b"z")
    os._exit(0)
signal.setitimer(signal.ITIMER_REAL, 0.1)
print("recv after signal", b.recv(1))
os.waitpid(pid, 0)
s = socket.socket(socket.AF_UNIX)
s.bind("\\0intr-%d" % os.getpid())
s.listen(1)
signal.signal(signal.SIGALRM, h)
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    s.accept()
except TimeoutError as e:
    print("accept interrupted", e)
"""


@pytest.mark.slow
def test_signals_interrupt_and_restart_socket_waits(sandbox_ok):
    out = _same([PYTHON3, "-c", INTERRUPT], [PYTHON3, "-c", INTERRUPT])
    assert out.splitlines() == ["recv interrupted alarm", "recv after signal b'z'",
                                "accept interrupted alarm"]


MP_PIPE = """
import multiprocessing as mp
def worker(conn):
    while True:
        x = conn.recv()
        if x is None:
            break
        conn.send(x * x)
if __name__ == "__main__":
    parent, child = mp.Pipe()          # duplex: a unix socketpair
    p = mp.Process(target=worker, args=(child,))
    p.start()
    out = []
    for i in range(5):
        parent.send(i)
        out.append(parent.recv())
    parent.send(None)
    p.join()
    print(out, p.exitcode)
"""


@pytest.mark.slow
def test_multiprocessing_duplex_pipe(sandbox_ok):
    out = _same([PYTHON3, "-c", MP_PIPE], [PYTHON3, "-c", MP_PIPE])
    assert out.strip() == "[0, 1, 4, 9, 16] 0"
