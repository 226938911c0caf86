/* pidfd_open, pidfd_send_signal, pidfd_getfd, waitid(P_PIDFD), CLONE_PIDFD:
 * one line per fact, the same natively and in the sandbox. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define PIDFD_NONBLOCK O_NONBLOCK

#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define RES(name, expr) do { errno = 0; long r_ = (long)(expr); \
    SAY("%s = %s%s", name, r_ < 0 ? "-1 " : "ok", r_ < 0 ? strerrorname_np(errno) : ""); } while (0)

static int p_open(pid_t pid, unsigned flags) { return syscall(SYS_pidfd_open, pid, flags); }
static int p_send(int fd, int sig, siginfo_t *info, unsigned flags) {
    return syscall(SYS_pidfd_send_signal, fd, sig, info, flags);
}
static int p_getfd(int fd, int target, unsigned flags) { return syscall(SYS_pidfd_getfd, fd, target, flags); }

static int pollin(int fd, int ms) {
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, ms);
    return r <= 0 ? r : p.revents;
}

static volatile int thread_tid;
static int thread_go[2];
static void *thread_main(void *arg) {
    (void)arg; char c;
    thread_tid = syscall(SYS_gettid);
    if (read(thread_go[0], &c, 1) < 0) return 0;
    return 0;
}

static pid_t child_waiting(int *ctl) {
    /* A child that blocks on a pipe read, holding the read end as fd 50;
       it says "ready" on a second pipe once fd 50 is in place. */
    int p[2], ready[2];
    char c;
    if (pipe(p) < 0 || pipe(ready) < 0) exit(2);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[0], 50);
        close(p[1]);
        if (write(ready[1], "r", 1) != 1) _exit(4);
        if (read(50, &c, 1) < 0) _exit(3);
        _exit(c);
    }
    close(p[0]); close(ready[1]);
    if (read(ready[0], &c, 1) != 1) exit(2);
    close(ready[0]);
    *ctl = p[1];
    return pid;
}

static void bad_inputs(void) {
    int pipefd[2];
    if (pipe(pipefd) < 0) exit(2);
    RES("open bad flags", p_open(getpid(), 1));
    RES("open pid 0", p_open(0, 0));
    RES("open pid -1", p_open(-1, 0));
    RES("open no such pid", p_open(0x3ffffff0, 0));
    int self = p_open(getpid(), 0);
    RES("open self", self);
    SAY("cloexec %d", fcntl(self, F_GETFD) & FD_CLOEXEC);
    char buf[8];
    RES("read pidfd", read(self, buf, 8));
    RES("write pidfd", write(self, buf, 8));
    RES("send probe self", p_send(self, 0, NULL, 0));
    RES("send bad flags", p_send(self, 0, NULL, 8));
    RES("send two scopes", p_send(self, 0, NULL, 3));
    RES("send bad sig", p_send(self, 65, NULL, 0));
    RES("send neg sig", p_send(self, -1, NULL, 0));
    RES("send not pidfd", p_send(pipefd[0], 0, NULL, 0));
    RES("send bad fd", p_send(999, 0, NULL, 0));
    RES("send bad info ptr", p_send(self, SIGUSR1, (siginfo_t *)8, 0));
    siginfo_t si; memset(&si, 0, sizeof si);
    si.si_signo = SIGUSR2; si.si_code = SI_QUEUE;
    RES("send info signo mismatch", p_send(self, SIGUSR1, &si, 0));
    RES("getfd bad flags", p_getfd(self, 0, 1));
    RES("getfd not pidfd", p_getfd(pipefd[0], 0, 0));
    RES("getfd bad target", p_getfd(self, 999, 0));
    RES("getfd neg target", p_getfd(self, -1, 0));
    int mine = p_getfd(self, pipefd[1], 0);
    RES("getfd self", mine);
    SAY("getfd cloexec %d", fcntl(mine, F_GETFD) & FD_CLOEXEC);
    RES("write through dup", write(mine, "x", 1));
    RES("read it back", read(pipefd[0], buf, 1));
    siginfo_t wi;
    RES("waitid pidfd -1", waitid(P_PIDFD, -1, &wi, WEXITED));
    RES("waitid not pidfd", waitid(P_PIDFD, pipefd[0], &wi, WEXITED));
    RES("waitid own pidfd", waitid(P_PIDFD, self, &wi, WEXITED | WNOHANG));
    /* a thread is not a process */
    pthread_t th;
    if (pipe(thread_go) < 0) exit(2);
    pthread_create(&th, 0, thread_main, 0);
    while (!thread_tid) sched_yield();
    RES("open thread", p_open(thread_tid, 0));
    if (write(thread_go[1], "g", 1) != 1) exit(2);
    pthread_join(th, 0);
    /* a signal to yourself with a forged si_code is allowed */
    signal(SIGUSR1, SIG_IGN);
    memset(&si, 0, sizeof si);
    si.si_signo = SIGUSR1; si.si_code = SI_USER;
    RES("send self forged info", p_send(self, SIGUSR1, &si, 0));
    RES("send self thread scope", p_send(self, SIGUSR1, NULL, 1));
    /* a /proc/PID directory names its process for pidfd_send_signal only */
    int procdir = open("/proc/self", O_DIRECTORY | O_RDONLY);
    int proc = open("/proc", O_DIRECTORY | O_RDONLY);
    RES("send via /proc/self dir", p_send(procdir, 0, NULL, 0));
    RES("send SIGUSR1 via /proc/self dir", p_send(procdir, SIGUSR1, NULL, 0));
    RES("send via /proc dir", p_send(proc, 0, NULL, 0));
    RES("getfd via /proc/self dir", p_getfd(procdir, 0, 0));
    close(procdir); close(proc);
    close(self); close(mine); close(pipefd[0]); close(pipefd[1]);
}

static void lifecycle(void) {
    int ctl;
    pid_t pid = child_waiting(&ctl);
    int fd = p_open(pid, 0);
    int nb = p_open(pid, PIDFD_NONBLOCK);
    RES("open child", fd);
    RES("open child nonblock", nb);
    SAY("poll running %d", pollin(fd, 0));
    RES("probe running", p_send(fd, 0, NULL, 0));
    siginfo_t wi;
    RES("waitid nonblock running", waitid(P_PIDFD, nb, &wi, WEXITED));
    memset(&wi, 0, sizeof wi);
    RES("waitid WNOHANG running", waitid(P_PIDFD, fd, &wi, WEXITED | WNOHANG));
    SAY("WNOHANG pid %d", wi.si_pid);
    siginfo_t si; memset(&si, 0, sizeof si);
    si.si_signo = SIGUSR1; si.si_code = SI_USER;
    RES("send forged to other", p_send(fd, SIGUSR1, &si, 0));
    int theirs;
    RES("getfd child fd 50", theirs = p_getfd(fd, 50, 0));
    struct stat st1, st2;
    fstat(theirs, &st1);
    fstat(ctl, &st2);
    SAY("same pipe %d", st1.st_ino == st2.st_ino);
    close(theirs);
    /* epoll and select see the exit too */
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7};
    RES("epoll add", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
    RES("epoll before", epoll_wait(ep, &ev, 1, 0));
    RES("kill via pidfd", p_send(fd, SIGTERM, NULL, 0));
    SAY("poll exited %#x", pollin(fd, 10000));
    struct epoll_event out = {0};
    int n = epoll_wait(ep, &out, 1, 10000);
    SAY("epoll after %d data %u in %d", n, out.data.u32, !!(out.events & EPOLLIN));
    fd_set rs; FD_ZERO(&rs); FD_SET(fd, &rs);
    struct timeval tv = {5, 0};
    SAY("select %d", select(fd + 1, &rs, 0, 0, &tv));
    RES("probe zombie", p_send(fd, 0, NULL, 0));
    RES("signal zombie", p_send(fd, SIGUSR1, NULL, 0));
    RES("getfd zombie", p_getfd(fd, 50, 0));
    RES("open zombie", p_open(pid, 0));
    memset(&wi, 0, sizeof wi);
    RES("waitid WNOWAIT", waitid(P_PIDFD, fd, &wi, WEXITED | WNOWAIT));
    SAY("status code %d sig %d same pid %d", wi.si_code, wi.si_status, wi.si_pid == pid);
    memset(&wi, 0, sizeof wi);
    RES("waitid reap", waitid(P_PIDFD, nb, &wi, WEXITED));
    SAY("reaped same pid %d", wi.si_pid == pid);
    SAY("poll reaped %#x", pollin(fd, 0));
    RES("probe reaped", p_send(fd, 0, NULL, 0));
    RES("getfd reaped", p_getfd(fd, 50, 0));
    RES("waitid reaped", waitid(P_PIDFD, fd, &wi, WEXITED));
    RES("open reaped", p_open(pid, 0));
    close(fd); close(nb); close(ep); close(ctl);
}

static void clone_pidfd(void) {
    int pidfd = -1;
    /* clone(2): the pidfd goes where parent_tid points */
    long pid = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &pidfd, 0, 0);
    if (pid == 0) _exit(7);
    RES("clone CLONE_PIDFD", pid);
    SAY("clone pidfd set %d", pidfd >= 0);
    SAY("clone cloexec %d", fcntl(pidfd, F_GETFD) & FD_CLOEXEC);
    siginfo_t wi; memset(&wi, 0, sizeof wi);
    RES("waitid clone pidfd", waitid(P_PIDFD, pidfd, &wi, WEXITED));
    SAY("clone child status %d same %d", wi.si_status, wi.si_pid == pid);
    close(pidfd);
    int x = 0;
    RES("clone PIDFD|PARENT_SETTID", syscall(SYS_clone, CLONE_PIDFD | CLONE_PARENT_SETTID | SIGCHLD, 0, &x, 0, 0));
    RES("clone PIDFD bad ptr", syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, (int *)8, 0, 0));
    /* clone3: cl_args.pidfd */
    int fd3 = -1;
    struct clone_args ca; memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_PIDFD;
    ca.pidfd = (uintptr_t)&fd3;
    ca.exit_signal = SIGCHLD;
    pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0) _exit(9);
    RES("clone3 CLONE_PIDFD", pid);
    SAY("clone3 pidfd set %d", fd3 >= 0);
    SAY("clone3 poll %#x", pollin(fd3, 10000));
    memset(&wi, 0, sizeof wi);
    RES("waitid clone3 pidfd", waitid(P_PIDFD, fd3, &wi, WEXITED));
    SAY("clone3 child status %d same %d", wi.si_status, wi.si_pid == pid);
    close(fd3);
    ca.flags = CLONE_PIDFD | CLONE_DETACHED;
    RES("clone3 PIDFD|DETACHED", syscall(SYS_clone3, &ca, sizeof ca));
}

int main(void) {
    bad_inputs();
    lifecycle();
    clone_pidfd();
    SAY("done");
    return 0;
}
