"""alarm, setitimer, POSIX timers and timerfd: real programs in the sandbox,
compared with the same programs run natively.

The C probe prints one line per fact (results, errno names, signal counts,
siginfo fields); times are printed only at a coarse grain, so a run under
load still prints the same lines. Each mode must print the same lines in
the sandbox as natively.
"""

import os
import sys

import pytest

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define RES(name, expr) do { errno = 0; long r_ = (long)(expr); \
    SAY("%s = %ld%s%s", name, r_, r_ < 0 ? " " : "", r_ < 0 ? strerrorname_np(errno) : ""); } while (0)

static volatile sig_atomic_t hits, last_code, last_tid, last_overrun, last_value, last_thread;
static void on_sig(int s, siginfo_t *si, void *uc) {
    (void)s; (void)uc;
    hits++; last_code = si->si_code; last_tid = si->si_timerid;
    last_overrun = si->si_overrun; last_value = si->si_value.sival_int;
    last_thread = (int)syscall(SYS_gettid);
}
static void handle(int sig) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sig; sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(sig, &sa, 0);
}
static void msleep(int ms) { struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L}; nanosleep(&ts, 0); }

static int do_alarm(void) {
    handle(SIGALRM);
    RES("alarm(5)", alarm(5));
    RES("alarm(1)", alarm(1));          /* 5 left: returns 5 */
    RES("pause", pause());
    SAY("hits %d code %d", hits, last_code);
    RES("alarm(0) after", alarm(0));
    RES("alarm(3)", alarm(3));
    RES("alarm(0)", alarm(0));
    struct itimerval v; getitimer(ITIMER_REAL, &v);
    SAY("disarmed %ld %ld", (long)v.it_value.tv_sec, (long)v.it_value.tv_usec);
    return 0;
}

static int do_itimer(void) {
    handle(SIGALRM);
    struct itimerval v = {{0, 30000}, {0, 30000}}, o;
    RES("setitimer", setitimer(ITIMER_REAL, &v, 0));
    while (hits < 5) pause();
    RES("setitimer(stop)", setitimer(ITIMER_REAL, &(struct itimerval){{0, 0}, {0, 0}}, &o));
    SAY("hits %d old interval %ld %ld armed %d", hits, (long)o.it_interval.tv_sec,
        (long)o.it_interval.tv_usec, o.it_value.tv_sec || o.it_value.tv_usec);
    v.it_interval.tv_sec = 7; v.it_value.tv_sec = 100; v.it_value.tv_usec = 0;
    setitimer(ITIMER_REAL, &v, 0);
    getitimer(ITIMER_REAL, &o);
    SAY("get interval %ld value ~%ld", (long)o.it_interval.tv_sec, (long)(o.it_value.tv_sec + 1));
    RES("alarm(0) with itimer", alarm(0));
    getitimer(ITIMER_REAL, &o);
    SAY("after alarm(0) %ld %ld", (long)o.it_interval.tv_sec, (long)o.it_value.tv_sec);
    struct itimerval bad = {{0, 0}, {0, 1000000}};
    RES("setitimer(usec 1e6)", setitimer(ITIMER_REAL, &bad, 0));
    bad.it_value.tv_usec = -1;
    RES("setitimer(usec -1)", setitimer(ITIMER_REAL, &bad, 0));
    bad.it_value.tv_usec = 0; bad.it_interval.tv_sec = -1;
    RES("setitimer(interval sec -1)", setitimer(ITIMER_REAL, &bad, 0));
    RES("setitimer(which 3)", setitimer(3, &v, 0));
    RES("getitimer(which -1)", getitimer(-1, &o));
    RES("setitimer(EFAULT new)", syscall(SYS_setitimer, ITIMER_REAL, (void *)8, 0));
    RES("getitimer(EFAULT)", syscall(SYS_getitimer, ITIMER_REAL, (void *)8));
    RES("setitimer(NULL new)", syscall(SYS_setitimer, ITIMER_REAL, 0, 0));
    return 0;
}

static int do_posix(void) {
    handle(SIGALRM); handle(SIGRTMIN + 1);
    timer_t a, b;
    RES("timer_create(NULL sevp)", timer_create(CLOCK_MONOTONIC, 0, &a));
    struct itimerspec its = {{0, 0}, {0, 20000000}}, old;
    RES("timer_settime(a)", timer_settime(a, 0, &its, 0));
    while (hits < 1) pause();
    SAY("a: hits %d code %d tid==id %d value==id %d", hits, last_code,
        last_tid == (int)(intptr_t)a, last_value == (int)(intptr_t)a);
    struct sigevent ev; memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL; ev.sigev_signo = SIGRTMIN + 1; ev.sigev_value.sival_int = 4242;
    RES("timer_create(SIGEV_SIGNAL)", timer_create(CLOCK_REALTIME, &ev, &b));
    struct timespec now; clock_gettime(CLOCK_REALTIME, &now);
    its.it_value.tv_sec = now.tv_sec; its.it_value.tv_nsec = now.tv_nsec + 30000000;
    if (its.it_value.tv_nsec >= 1000000000) { its.it_value.tv_sec++; its.it_value.tv_nsec -= 1000000000; }
    its.it_interval.tv_nsec = 10000000;
    hits = 0;
    RES("timer_settime(b, ABSTIME)", timer_settime(b, TIMER_ABSTIME, &its, 0));
    while (hits < 3) pause();
    SAY("b: code %d value %d", last_code, last_value);
    RES("timer_gettime(b)", timer_gettime(b, &old));
    SAY("b interval %ld armed %d", old.it_interval.tv_nsec, old.it_value.tv_sec || old.it_value.tv_nsec);
    /* Overruns: block the signal while the timer runs. */
    sigset_t set; sigemptyset(&set); sigaddset(&set, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &set, 0);
    hits = 0;
    msleep(120);
    sigprocmask(SIG_UNBLOCK, &set, 0);
    SAY("after block: hits %d overrun>=5 %d getoverrun>=5 %d", hits, last_overrun >= 5,
        timer_getoverrun(b) >= 5);
    memset(&its, 0, sizeof its);
    RES("timer_settime(b, disarm)", timer_settime(b, 0, &its, &old));
    SAY("old interval %ld", old.it_interval.tv_nsec);
    RES("timer_gettime(b) disarmed", timer_gettime(b, &old));
    SAY("now %ld %ld", old.it_value.tv_nsec, old.it_interval.tv_nsec);
    RES("timer_delete(b)", timer_delete(b));
    RES("timer_delete(b) again", timer_delete(b));
    RES("timer_gettime(deleted)", timer_gettime(b, &old));
    RES("timer_getoverrun(deleted)", timer_getoverrun(b));
    /* SIGEV_NONE: no signal, but the time runs. */
    timer_t c; ev.sigev_notify = SIGEV_NONE;
    RES("timer_create(SIGEV_NONE)", timer_create(CLOCK_MONOTONIC, &ev, &c));
    its.it_value.tv_sec = 50;
    hits = 0;
    timer_settime(c, 0, &its, 0);
    timer_gettime(c, &old);
    SAY("none: left ~%ld", (long)old.it_value.tv_sec + 1);
    its.it_value.tv_sec = 0; its.it_value.tv_nsec = 1000000;
    timer_settime(c, 0, &its, 0);
    msleep(20);
    timer_gettime(c, &old);
    SAY("none expired: %ld %ld hits %d", (long)old.it_value.tv_sec, old.it_value.tv_nsec, hits);
    /* Bad input. */
    RES("timer_create(bad clock)", syscall(SYS_timer_create, 99, 0, &c));
    RES("timer_create(MONOTONIC_RAW)", syscall(SYS_timer_create, CLOCK_MONOTONIC_RAW, 0, &c));
    ev.sigev_notify = 77;
    RES("timer_create(bad notify)", syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &c));
    ev.sigev_notify = SIGEV_SIGNAL; ev.sigev_signo = 65;
    RES("timer_create(signo 65)", syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &c));
    ev.sigev_signo = 0;
    RES("timer_create(signo 0)", syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &c));
    ev.sigev_notify = SIGEV_THREAD_ID; ev.sigev_signo = SIGALRM; ev._sigev_un._tid = 99999;
    RES("timer_create(bad thread)", syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &c));
    RES("timer_create(EFAULT sevp)", syscall(SYS_timer_create, CLOCK_MONOTONIC, (void *)8, &c));
    RES("timer_create(EFAULT id)", syscall(SYS_timer_create, CLOCK_MONOTONIC, 0, (void *)8));
    its.it_value.tv_nsec = 1000000000;
    RES("timer_settime(nsec 1e9)", syscall(SYS_timer_settime, (long)(intptr_t)a, 0, &its, 0));
    its.it_value.tv_nsec = -1;
    RES("timer_settime(nsec -1)", syscall(SYS_timer_settime, (long)(intptr_t)a, 0, &its, 0));
    RES("timer_settime(NULL)", syscall(SYS_timer_settime, (long)(intptr_t)a, 0, 0, 0));
    RES("timer_settime(EFAULT)", syscall(SYS_timer_settime, (long)(intptr_t)a, 0, (void *)8, 0));
    RES("timer_settime(bad id)", syscall(SYS_timer_settime, 12345, 0, &its, 0));
    RES("timer_gettime(EFAULT)", syscall(SYS_timer_gettime, (long)(intptr_t)a, (void *)8));
    RES("timer_delete(-1)", syscall(SYS_timer_delete, -1));
    return 0;
}

static volatile pid_t thread_tid;
static void *thread_main(void *arg) {
    (void)arg;
    sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, 0);
    thread_tid = (pid_t)syscall(SYS_gettid);
    while (hits < 1) msleep(5);
    return 0;
}

static int do_thread(void) {
    handle(SIGUSR1);
    sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, 0);     /* only the thread takes it */
    pthread_t th; pthread_create(&th, 0, thread_main, 0);
    while (!thread_tid) msleep(1);
    pid_t tid = thread_tid;
    struct sigevent ev; memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID; ev.sigev_signo = SIGUSR1; ev._sigev_un._tid = tid;
    ev.sigev_value.sival_int = 77;
    timer_t t;
    RES("timer_create(THREAD_ID)", timer_create(CLOCK_MONOTONIC, &ev, &t));
    struct itimerspec its = {{0, 0}, {0, 20000000}};
    timer_settime(t, 0, &its, 0);
    pthread_join(th, 0);
    SAY("thread: hits %d in thread %d code %d value %d", hits, last_thread == tid, last_code, last_value);
    return 0;
}

static int do_timerfd(void) {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    SAY("timerfd_create ok %d", fd >= 0);
    uint64_t n;
    RES("read(unarmed, nonblock)", read(fd, &n, 8));
    struct itimerspec its = {{0, 20000000}, {0, 20000000}}, old;
    RES("timerfd_settime", timerfd_settime(fd, 0, &its, 0));
    uint64_t total = 0; int loops = 0;
    while (total < 5 && loops < 100) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, 2000);
        if (r != 1 || !(p.revents & POLLIN)) { SAY("poll %d revents %#x", r, p.revents); break; }
        if (read(fd, &n, 8) != 8) { SAY("read failed"); break; }
        total += n; loops++;
    }
    SAY("timerfd total>=5 %d", total >= 5);
    RES("read(short)", read(fd, &n, 4));
    RES("write", write(fd, &n, 8));
    RES("timerfd_gettime", timerfd_gettime(fd, &old));
    SAY("interval %ld armed %d", old.it_interval.tv_nsec, old.it_value.tv_nsec > 0);
    struct timespec now; clock_gettime(CLOCK_MONOTONIC, &now);
    its.it_interval.tv_nsec = 0; its.it_value = now; its.it_value.tv_nsec = 0;   /* in the past */
    RES("timerfd_settime(ABSTIME past)", timerfd_settime(fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, &old));
    SAY("old interval %ld", old.it_interval.tv_nsec);
    struct pollfd p = {fd, POLLIN, 0};
    RES("poll(abs past)", poll(&p, 1, 2000));
    RES("read(one)", read(fd, &n, 8)); SAY("n %lu", (unsigned long)n);
    /* blocking read */
    int bfd = timerfd_create(CLOCK_BOOTTIME, 0);
    its.it_value.tv_sec = 0; its.it_value.tv_nsec = 30000000;
    timerfd_settime(bfd, 0, &its, 0);
    RES("read(blocking)", read(bfd, &n, 8)); SAY("n %lu", (unsigned long)n);
    its.it_value.tv_nsec = 0; its.it_interval.tv_nsec = 5000;
    RES("timerfd_settime(disarm, interval)", timerfd_settime(bfd, 0, &its, 0));
    RES("timerfd_gettime(disarmed)", timerfd_gettime(bfd, &old));
    SAY("disarmed %ld %ld", old.it_value.tv_nsec, old.it_interval.tv_nsec);
    RES("timerfd_create(bad clock)", timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0));
    RES("timerfd_create(bad flags)", timerfd_create(CLOCK_MONOTONIC, 1));
    RES("timerfd_settime(bad flags)", timerfd_settime(fd, 4, &its, 0));
    its.it_value.tv_nsec = 1000000000;
    RES("timerfd_settime(nsec 1e9)", timerfd_settime(fd, 0, &its, 0));
    its.it_value.tv_nsec = 0;
    RES("timerfd_settime(EBADF)", timerfd_settime(999, 0, &its, 0));
    RES("timerfd_settime(not timerfd)", timerfd_settime(1, 0, &its, 0));
    RES("timerfd_settime(EFAULT)", timerfd_settime(fd, 0, (void *)8, 0));
    RES("timerfd_gettime(EFAULT)", timerfd_gettime(fd, (void *)8));
    RES("timerfd_gettime(not timerfd)", timerfd_gettime(0, &old));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "alarm")) return do_alarm();
    if (!strcmp(argv[1], "itimer")) return do_itimer();
    if (!strcmp(argv[1], "posix")) return do_posix();
    if (!strcmp(argv[1], "thread")) return do_thread();
    if (!strcmp(argv[1], "timerfd")) return do_timerfd();
    return 2;
}
"""

MODES = ["alarm", "itimer", "posix", "thread", "timerfd"]


@pytest.fixture(scope="module")
def probe(build_c, tmp_path_factory):
    src = os.path.join(tmp_path_factory.mktemp("timers"), "timers_probe.c")
    with open(src, "w") as f:
        f.write(PROBE_C)
    return build_c(src, static=True, extra=("-pthread",))


@pytest.mark.parametrize("mode", MODES)
def test_probe_matches_native(sandbox, probe, mode):
    native = sandbox.native([probe, mode], timeout=30)
    boxed = sandbox.run([probe, mode], timeout=60)
    assert native.returncode == 0, native.stderr
    assert boxed.stdout.decode().splitlines() == native.stdout.decode().splitlines(), \
        boxed.stderr.decode()[-2000:]
    assert boxed.returncode == native.returncode


ALARM_PY = ("import signal, time; signal.signal(signal.SIGALRM, lambda *a: print('alarm'));"
            " signal.alarm(1); time.sleep(3); print('done')")
ITIMER_PY = ("import signal\n"
             "n = 0\n"
             "def h(*a):\n"
             "    global n\n"
             "    n += 1\n"
             "signal.signal(signal.SIGALRM, h)\n"
             "signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)\n"
             "while n < 5:\n"
             "    signal.pause()\n"
             "old = signal.setitimer(signal.ITIMER_REAL, 0)\n"
             "print(n, old[1])\n")


@pytest.mark.parametrize("code,expect", [(ALARM_PY, "alarm\ndone\n"), (ITIMER_PY, "5 0.05\n")],
                         ids=["alarm-sleep", "setitimer-interval"])
def test_python_signals(sandbox, code, expect):
    native = sandbox.native([sys.executable, "-c", code], timeout=30)
    assert native.stdout.decode() == expect
    boxed = sandbox.run(["python3", "-c", code], timeout=60)
    assert boxed.stdout.decode() == expect, boxed.stderr.decode()[-2000:]
    assert boxed.returncode == 0
