"""poll, select, epoll, eventfd, signalfd and SIGPIPE: real programs in the
sandbox, compared with the same programs run natively.

The C probe below prints one line per fact (return value and errno name);
each mode must print the same lines, and end the same way, in the sandbox
as natively.
"""

import os
import signal
import sys

import pytest

PROBE_C = r"""
/* Probe for poll/select/epoll/eventfd/signalfd/SIGPIPE: prints one line per
   fact, so a native run and a sandboxed run can be compared. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define RES(name, expr) do { errno = 0; long r_ = (long)(expr); \
    SAY("%s = %ld%s%s", name, r_, r_ < 0 ? " " : "", r_ < 0 ? strerrorname_np(errno) : ""); } while (0)

static void msleep(int ms) { struct timespec ts = {0, ms * 1000000L}; nanosleep(&ts, 0); }

static int do_poll(void) {
    int p[2]; pipe(p);
    pid_t c = fork();
    if (c == 0) { close(p[0]); msleep(50); write(p[1], "x", 1); msleep(50); _exit(0); }
    close(p[1]);
    struct pollfd fds[3] = {{p[0], POLLIN, 0}, {-1, POLLIN, 7}, {999, POLLIN, 0}};
    RES("poll(block)", poll(fds, 3, -1));
    SAY("revents %#x %#x %#x", fds[0].revents, fds[1].revents, fds[2].revents);
    char b; read(p[0], &b, 1);
    RES("poll(after read, 0)", poll(fds, 1, 0));
    RES("poll(until hup)", poll(fds, 1, 5000));
    SAY("revents %#x", fds[0].revents);
    waitpid(c, 0, 0);
    struct pollfd w = {p[0], POLLOUT, 0};
    RES("poll(POLLOUT on read end)", poll(&w, 1, 0));
    RES("poll(nfds huge)", syscall(SYS_poll, fds, 1 << 20, 0));
    RES("poll(EFAULT)", syscall(SYS_poll, (void *)16, 1, 0));
    return 0;
}

static int do_select(void) {
    int p[2]; pipe(p);
    fd_set r; FD_ZERO(&r); FD_SET(p[0], &r);
    struct timeval tv = {0, 100000};
    RES("select(timeout)", select(p[0] + 1, &r, 0, 0, &tv));
    SAY("tv %ld %ld isset %d", (long)tv.tv_sec, (long)tv.tv_usec, FD_ISSET(p[0], &r));
    write(p[1], "ab", 2);
    FD_ZERO(&r); FD_SET(p[0], &r);
    fd_set w; FD_ZERO(&w); FD_SET(p[1], &w); FD_SET(p[0], &w);
    tv.tv_sec = 1; tv.tv_usec = 0;
    RES("select(ready)", select(p[1] + 1, &r, &w, 0, &tv));
    SAY("r %d w %d %d", FD_ISSET(p[0], &r), FD_ISSET(p[1], &w), FD_ISSET(p[0], &w));
    FD_ZERO(&r); FD_SET(50, &r);
    RES("select(EBADF)", select(51, &r, 0, 0, 0));
    tv.tv_sec = 0; tv.tv_usec = 1000001;     /* Linux normalises big usec */
    RES("select(big usec)", select(1, 0, 0, 0, &tv));
    tv.tv_sec = 0; tv.tv_usec = -1;
    RES("select(negative usec)", select(1, 0, 0, 0, &tv));
    RES("select(nfds<0)", select(-1, 0, 0, 0, 0));
    struct timespec ts = {0, 30000000};
    FD_ZERO(&r); FD_SET(p[0], &r);
    read(p[0], (char[2]){0}, 2);
    RES("pselect(timeout)", pselect(p[0] + 1, &r, 0, 0, &ts, 0));
    close(p[0]);
    FD_ZERO(&w); FD_SET(p[1], &w);
    tv.tv_sec = 0; tv.tv_usec = 0;
    RES("select(write end, no reader)", select(p[1] + 1, 0, &w, 0, &tv));
    return 0;
}

static void show(struct epoll_event *ev, int n) {
    for (int i = 0; i < n; i++) SAY("  ev %#x data %lu", ev[i].events, (unsigned long)ev[i].data.u64);
}

static int do_epoll(void) {
    int p[2]; pipe(p);
    struct epoll_event ev = {EPOLLIN, {.u64 = 7}}, out[4];
    int lt = epoll_create1(EPOLL_CLOEXEC);
    RES("ctl add", epoll_ctl(lt, EPOLL_CTL_ADD, p[0], &ev));
    RES("ctl add again", epoll_ctl(lt, EPOLL_CTL_ADD, p[0], &ev));
    RES("ctl del absent", epoll_ctl(lt, EPOLL_CTL_DEL, p[1], &ev));
    RES("ctl mod absent", epoll_ctl(lt, EPOLL_CTL_MOD, p[1], &ev));
    RES("ctl self", epoll_ctl(lt, EPOLL_CTL_ADD, lt, &ev));
    RES("ctl bad op", epoll_ctl(lt, 99, p[1], &ev));
    RES("ctl bad fd", epoll_ctl(lt, EPOLL_CTL_ADD, 77, &ev));
    RES("ctl not epoll", epoll_ctl(p[0], EPOLL_CTL_ADD, p[1], &ev));
    int reg = open("/etc/passwd", O_RDONLY);
    RES("ctl regular file", epoll_ctl(lt, EPOLL_CTL_ADD, reg, &ev));
    struct epoll_event exev = {EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT, {0}};
    RES("ctl exclusive+oneshot", epoll_ctl(lt, EPOLL_CTL_ADD, p[1], &exev));
    RES("wait maxevents 0", epoll_wait(lt, out, 0, 0));
    RES("wait empty", epoll_wait(lt, out, 4, 20));
    write(p[1], "ab", 2);
    RES("wait LT 1", epoll_wait(lt, out, 4, 0)); show(out, 1);
    RES("wait LT 2", epoll_wait(lt, out, 4, 0));
    int et = epoll_create(1);
    struct epoll_event eev = {EPOLLIN | EPOLLET, {.u64 = 8}};
    epoll_ctl(et, EPOLL_CTL_ADD, p[0], &eev);
    RES("wait ET 1", epoll_wait(et, out, 4, 0));
    RES("wait ET 2", epoll_wait(et, out, 4, 0));
    write(p[1], "c", 1);
    RES("wait ET after write", epoll_wait(et, out, 4, 0));
    int os = epoll_create1(0);
    struct epoll_event oev = {EPOLLIN | EPOLLONESHOT, {.u64 = 9}};
    epoll_ctl(os, EPOLL_CTL_ADD, p[0], &oev);
    RES("wait ONESHOT 1", epoll_wait(os, out, 4, 0));
    RES("wait ONESHOT 2", epoll_wait(os, out, 4, 0));
    RES("ctl mod rearm", epoll_ctl(os, EPOLL_CTL_MOD, p[0], &oev));
    RES("wait ONESHOT rearmed", epoll_wait(os, out, 4, 0)); show(out, 1);
    /* the write end's events, and nested epoll */
    struct epoll_event wev = {EPOLLOUT, {.u64 = 10}};
    RES("ctl add write end", epoll_ctl(lt, EPOLL_CTL_ADD, p[1], &wev));
    RES("wait both", epoll_wait(lt, out, 4, 0));
    RES("wait maxevents 1", epoll_wait(lt, out, 1, 0));
    int outer = epoll_create1(0);
    struct epoll_event nev = {EPOLLIN, {.u64 = 11}};
    RES("ctl nest", epoll_ctl(outer, EPOLL_CTL_ADD, lt, &nev));
    RES("ctl loop", epoll_ctl(lt, EPOLL_CTL_ADD, outer, &nev));
    RES("wait outer", epoll_wait(outer, out, 4, 0)); show(out, 1);
    /* blocking wait woken by a child's write; then HUP when writers go */
    int q[2]; pipe(q);
    int e2 = epoll_create1(0);
    struct epoll_event qev = {EPOLLIN | EPOLLRDHUP, {.u64 = 12}};
    epoll_ctl(e2, EPOLL_CTL_ADD, q[0], &qev);
    pid_t c = fork();
    if (c == 0) { msleep(50); write(q[1], "z", 1); _exit(0); }
    close(q[1]);
    RES("wait blocking", epoll_wait(e2, out, 4, 5000));
    SAY("  data %lu in %d", (unsigned long)out[0].data.u64, !!(out[0].events & EPOLLIN));
    waitpid(c, 0, 0);
    RES("wait hup", epoll_wait(e2, out, 4, 0)); show(out, 1);
    /* close of the last fd removes the item; a dup keeps it */
    int d = dup(q[0]);
    close(q[0]);
    RES("wait after close with dup", epoll_wait(e2, out, 4, 0));
    RES("ctl del closed fd", epoll_ctl(e2, EPOLL_CTL_DEL, q[0], &qev));
    close(d);
    RES("wait after last close", epoll_wait(e2, out, 4, 0));
    RES("wait EFAULT", syscall(SYS_epoll_wait, lt, (void *)16, 4, 0));
    return 0;
}

static int efd;
static void *ev_writer(void *arg) {
    for (int i = 0; i < 3; i++) { uint64_t v = 1; msleep(20); write(efd, &v, 8); }
    return arg;
}

static int do_eventfd(void) {
    efd = eventfd(0, 0);
    pthread_t th; pthread_create(&th, 0, ev_writer, 0);
    uint64_t total = 0, v;
    while (total < 3) { if (read(efd, &v, 8) != 8) return 1; total += v; }
    pthread_join(th, 0);
    SAY("thread total %lu", (unsigned long)total);
    int s = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    RES("sem read", read(s, &v, 8)); SAY("v %lu", (unsigned long)v);
    RES("sem read", read(s, &v, 8)); SAY("v %lu", (unsigned long)v);
    RES("sem read empty", read(s, &v, 8));
    RES("short read", read(s, &v, 4));
    RES("short write", write(s, &v, 4));
    v = 0xffffffffffffffffULL;
    RES("write max", write(s, &v, 8));
    v = 0xfffffffffffffffeULL;
    RES("write to limit", write(s, &v, 8));
    v = 1;
    RES("write overflow", write(s, &v, 8));
    struct pollfd pf = {s, POLLIN | POLLOUT, 0};
    RES("poll full", poll(&pf, 1, 0)); SAY("revents %#x", pf.revents);
    RES("bad flags", eventfd(0, 0x10));
    RES("cloexec", fcntl(eventfd(0, EFD_CLOEXEC), F_GETFD));
    RES("nonblock", fcntl(eventfd(0, EFD_NONBLOCK), F_GETFL) & O_NONBLOCK);
    return 0;
}

static int do_signalfd(void) {
    sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1);
    sigprocmask(SIG_BLOCK, &m, 0);
    int fd = signalfd(-1, &m, SFD_NONBLOCK);
    struct signalfd_siginfo si;
    RES("read empty", read(fd, &si, sizeof si));
    RES("read short", read(fd, &si, 10));
    struct pollfd pf = {fd, POLLIN, 0};
    RES("poll before", poll(&pf, 1, 0));
    kill(getpid(), SIGUSR1);
    RES("poll after", poll(&pf, 1, 0));
    RES("read", read(fd, &si, sizeof si));
    SAY("signo %u code %d pid_ok %d", si.ssi_signo, si.ssi_code, (int)si.ssi_pid == getpid());
    RES("bad sizemask", syscall(SYS_signalfd4, -1, &m, 4, 0));
    RES("bad flags", syscall(SYS_signalfd4, -1, &m, 8, 1));
    RES("not a signalfd", signalfd(0, &m, 0));
    /* blocking read woken by another process */
    int b = signalfd(-1, &m, 0);
    pid_t c = fork();
    if (c == 0) { msleep(50); kill(getppid(), SIGUSR1); _exit(0); }
    RES("read blocking", read(b, &si, sizeof si));
    SAY("signo %u", si.ssi_signo);
    waitpid(c, 0, 0);
    return 0;
}

static int do_sigpipe(int ignore) {
    if (ignore) signal(SIGPIPE, SIG_IGN);
    int p[2]; pipe(p); close(p[0]);
    RES("write", write(p[1], "x", 1));
    return 0;
}

static void on_usr1(int s) { (void)s; }
static pid_t main_tid;
/* Thread-directed, so the main thread (blocked) is the one to take it. */
static void *kicker(void *arg) { msleep(80); syscall(SYS_tgkill, getpid(), main_tid, SIGUSR1); return arg; }

static int do_eintr(void) {
    struct sigaction sa = {0}; sa.sa_handler = on_usr1; sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, 0);
    main_tid = gettid();
    int p[2]; pipe(p);
    pthread_t th;
    struct pollfd pf = {p[0], POLLIN, 0};
    pthread_create(&th, 0, kicker, 0);
    RES("poll interrupted", poll(&pf, 1, -1));
    pthread_join(th, 0);
    struct epoll_event ev = {EPOLLIN, {0}}, out;
    int ep = epoll_create1(0);
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    pthread_create(&th, 0, kicker, 0);
    RES("epoll_wait interrupted", epoll_wait(ep, &out, 1, -1));
    pthread_join(th, 0);
    /* ppoll: USR1 blocked, pending; the call's mask unblocks it: EINTR, and
       afterwards the old mask (USR1 blocked) is back. */
    sigset_t m, empty, now; sigemptyset(&m); sigaddset(&m, SIGUSR1); sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &m, 0);
    kill(getpid(), SIGUSR1);
    struct timespec ts = {1, 0};
    RES("ppoll with mask", ppoll(&pf, 1, &ts, &empty));
    sigprocmask(SIG_BLOCK, 0, &now);
    SAY("usr1 blocked after %d", sigismember(&now, SIGUSR1));
    RES("ppoll bad sigsetsize", syscall(SYS_ppoll, &pf, 1, &ts, &empty, 4));
    /* a blocked pipe read is interrupted too; SA_RESTART restarts it */
    sa.sa_flags = 0; sigaction(SIGUSR1, &sa, 0);
    sigprocmask(SIG_UNBLOCK, &m, 0);
    pthread_create(&th, 0, kicker, 0);
    char b;
    RES("read interrupted", read(p[0], &b, 1));
    pthread_join(th, 0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *c = argv[1];
    if (!strcmp(c, "poll")) return do_poll();
    if (!strcmp(c, "select")) return do_select();
    if (!strcmp(c, "epoll")) return do_epoll();
    if (!strcmp(c, "eventfd")) return do_eventfd();
    if (!strcmp(c, "signalfd")) return do_signalfd();
    if (!strcmp(c, "sigpipe")) return do_sigpipe(0);
    if (!strcmp(c, "sigpipe-ign")) return do_sigpipe(1);
    if (!strcmp(c, "eintr")) return do_eintr();
    return 2;
}

"""

MODES = ["poll", "select", "epoll", "eventfd", "signalfd", "sigpipe", "sigpipe-ign", "eintr"]
EPOLL_SCRIPT = """
import selectors, subprocess
sel = selectors.EpollSelector()
p = subprocess.Popen(["sh", "-c", "echo one; sleep 0.05; echo two"], stdout=subprocess.PIPE)
sel.register(p.stdout, selectors.EVENT_READ)
out = b""
while True:
    if not sel.select(5):
        break
    chunk = p.stdout.read1(100)
    if not chunk:
        break
    out += chunk
print(out, p.wait())
"""


@pytest.fixture(scope="module")
def probe(build_c, tmp_path_factory):
    d = tmp_path_factory.mktemp("poll")
    src = d / "poll_probe.c"
    src.write_text(PROBE_C)
    return build_c(str(src), extra=("-pthread", "-Wno-stringop-overflow"))


def _same(sandbox, argv, **kw):
    native = sandbox.native(argv, **kw)
    boxed = sandbox.run(argv, **kw)
    assert boxed.stderr == native.stderr
    assert boxed.stdout.decode() == native.stdout.decode()
    return native, boxed


@pytest.mark.parametrize("mode", MODES)
def test_probe_matches_native(sandbox, probe, mode):
    native, boxed = _same(sandbox, [probe, mode])
    if mode == "sigpipe":                     # killed before it prints
        assert native.stdout == b""
        assert native.returncode == -signal.SIGPIPE
        assert boxed.returncode == 128 + signal.SIGPIPE      # 141, as a shell reports it
    else:
        assert native.stdout                  # the probe really ran
        assert native.returncode == 0
        assert boxed.returncode == 0


def test_python_subprocess_uses_poll(sandbox):
    argv = [sys.executable, "-c",
            "import subprocess; print(subprocess.run(['ls','/'],capture_output=True).stdout)"]
    native, boxed = _same(sandbox, argv)
    assert boxed.returncode == 0 and b"bin" in boxed.stdout


def test_python_epoll_selector_on_pipe(sandbox):
    native, boxed = _same(sandbox, [sys.executable, "-c", EPOLL_SCRIPT])
    assert boxed.stdout == b"b'one\\ntwo\\n' 0\n"


def test_make_jobserver(sandbox, workdir):
    if not os.access("/usr/bin/make", os.X_OK):
        pytest.skip("make not installed")
    with open(os.path.join(workdir, "Makefile"), "w") as f:
        f.write("all: a b c d\na b c d:\n\t@sleep 0.05; echo $@\n")
    native = sandbox.native(["make", "-j2"], cwd=workdir)
    boxed = sandbox.run(["make", "-j2"], cwd=workdir)
    assert boxed.returncode == native.returncode == 0
    assert sorted(boxed.stdout.split()) == sorted(native.stdout.split()) == [b"a", b"b", b"c", b"d"]
