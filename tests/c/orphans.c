/* Orphaned process groups (POSIX; Linux kernel/exit.c kill_orphaned_pgrp and
 * get_signal's is_current_pgrp_orphaned):
 *  1. a stopped process whose group becomes orphaned when its parent exits
 *     gets SIGHUP then SIGCONT (the parent was the group's link outside);
 *  2. the same when a process exits whose own group then becomes orphaned
 *     (it was its group's only member with a parent outside);
 *  3. in an orphaned group, SIGTSTP, SIGTTIN and SIGTTOU with the default
 *     action are discarded, SIGSTOP still stops;
 *  4. in a group that is not orphaned, SIGTSTP stops.
 * The top process is a child subreaper, so orphans come back to it natively
 * as in the sandbox (where it is PID 1); it is in another session than them.
 * Every line is printed by one process at a time. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* one write(2) per line, so lines of different processes never mix */
#define SAY(...) do { char b_[256]; int n_ = snprintf(b_, sizeof b_ - 1, __VA_ARGS__); \
    b_[n_++] = '\n'; if (write(1, b_, n_) != n_) _exit(9); } while (0)

static volatile sig_atomic_t nseen;
static volatile char seen[16];
static volatile int hup_code = -1;
static void on_sig(int s, siginfo_t *si, void *uc) {
    (void)uc;
    if (s == SIGHUP) hup_code = si->si_code;
    if (nseen < 15) seen[nseen++] = s == SIGHUP ? 'H' : s == SIGCONT ? 'C' : '?';
}
static void catch_hup_cont(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sig; sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGHUP, &sa, 0);
    sigaction(SIGCONT, &sa, 0);
}
static void wait_seen(int n) {
    for (int i = 0; i < 5000 && nseen < n; i++) usleep(1000);
}
static const char *stname(int st) {
    static char buf[64];
    if (WIFSTOPPED(st)) snprintf(buf, sizeof buf, "stopped by %d", WSTOPSIG(st));
    else if (WIFEXITED(st)) snprintf(buf, sizeof buf, "exited %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) snprintf(buf, sizeof buf, "killed by %d", WTERMSIG(st));
    else snprintf(buf, sizeof buf, "status %#x", st);
    return buf;
}

/* In an orphaned group: each default stop signal but SIGSTOP is dropped. */
static void orphan_ignores_stops(void) {
    SAY("  orphaned: %s", getpgrp() == getpid() ? "own group" : "?");
    int sigs[] = {SIGTSTP, SIGTTIN, SIGTTOU};
    for (int i = 0; i < 3; i++) {
        kill(getpid(), sigs[i]);
        SAY("  after %s: still running", sigabbrev_np(sigs[i]));
    }
}

/* Case 1: C (a session leader) stops its child G (own group), then exits. */
static void case_parent_exits(void) {
    int pipefd[2];
    if (pipe(pipefd) < 0) exit(2);
    pid_t c = fork();
    if (c == 0) {
        setsid();
        pid_t g = fork();
        if (g == 0) {
            setpgid(0, 0);
            catch_hup_cont();
            if (write(pipefd[1], "r", 1) != 1) _exit(9);
            /* wait here until stopped, then continued by the orphaning */
            wait_seen(2);
            SAY("case1 grandchild saw %.*s code %s", (int)nseen, (const char *)seen,
                hup_code == SI_KERNEL ? "SI_KERNEL" : "other");
            orphan_ignores_stops();
            _exit(0);
        }
        char x;
        if (read(pipefd[0], &x, 1) != 1) _exit(9);
        kill(g, SIGTSTP);               /* not orphaned yet: this stops it */
        int st;
        waitpid(g, &st, WUNTRACED);
        SAY("case1 child: grandchild %s", stname(st));
        _exit(0);                        /* its group is now orphaned */
    }
    int st, cst = -1, gst = -1;
    pid_t w;
    while ((w = wait(&st)) > 0)
        *(w == c ? &cst : &gst) = st;
    SAY("case1 top: child %s", stname(cst));
    SAY("case1 top: grandchild %s", stname(gst));
}

/* Case 2: Q (own group, parent in the same session) stops its child Z
 * (Q's group), then exits: Q's own group becomes orphaned. */
static void case_own_group(void) {
    pid_t c = fork();
    if (c == 0) {
        int done[2];
        if (pipe(done) < 0) _exit(9);
        setsid();
        pid_t q = fork();
        if (q == 0) {
            setpgid(0, 0);
            pid_t z = fork();
            if (z == 0) {
                catch_hup_cont();
                raise(SIGSTOP);
                wait_seen(2);
                SAY("case2 member saw %.*s", (int)nseen, (const char *)seen);
                if (write(done[1], "d", 1) != 1) _exit(9);
                _exit(0);
            }
            int st;
            waitpid(z, &st, WUNTRACED);
            SAY("case2 leader: member %s", stname(st));
            _exit(0);
        }
        close(done[1]);
        int st;
        char x;
        waitpid(q, &st, 0);
        if (read(done[0], &x, 1) != 1) _exit(9);   /* the member has spoken */
        SAY("case2 child: leader %s", stname(st));
        _exit(0);
    }
    int st;
    pid_t w;
    int n = 0;
    while ((w = wait(&st)) > 0)
        n++;
    SAY("case2 top: reaped %d", n);
}

/* Case 4: a group that is not orphaned stops on SIGTSTP. */
static void case_not_orphaned(void) {
    pid_t c = fork();
    if (c == 0) {
        setsid();
        pid_t g = fork();
        if (g == 0) {
            setpgid(0, 0);
            kill(getpid(), SIGTSTP);     /* parent in same session, other group */
            SAY("case4 grandchild: continued");
            _exit(0);
        }
        int st;
        waitpid(g, &st, WUNTRACED);
        SAY("case4 child: grandchild %s", stname(st));
        kill(g, SIGCONT);
        waitpid(g, &st, 0);
        SAY("case4 child: grandchild %s", stname(st));
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    SAY("case4 top: child %s", stname(st));
}

int main(void) {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    case_parent_exits();
    case_own_group();
    case_not_orphaned();
    SAY("done");
    return 0;
}
