/* CPU-time timers and clocks: ITIMER_VIRTUAL, ITIMER_PROF, POSIX timers on
 * CLOCK_PROCESS_CPUTIME_ID / CLOCK_THREAD_CPUTIME_ID, and getrusage/times,
 * which must agree with them. The program spins until the signals arrive;
 * it prints only facts that hold at any speed (counts, codes, errno names,
 * coarse inequalities). The same natively and in the sandbox. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define RES(name, expr) do { errno = 0; long r_ = (long)(expr); \
    SAY("%s = %s%s", name, r_ < 0 ? "-1 " : "", r_ < 0 ? strerrorname_np(errno) : "0"); } while (0)

static volatile sig_atomic_t hits[65], last_code[65];
static void on_sig(int s, siginfo_t *si, void *uc) { (void)uc; hits[s]++; last_code[s] = si->si_code; }
static void handle(int sig) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sig; sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(sig, &sa, 0);
}
static long long ns_of(clockid_t c) {
    struct timespec ts; clock_gettime(c, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
/* Spin until `sig` has arrived n times; give up after 20 s of wall time. */
static int spin_until(int sig, int n) {
    long long end = ns_of(CLOCK_MONOTONIC) + 20000000000LL;
    volatile unsigned long x = 0;
    while (hits[sig] < n) {
        for (int i = 0; i < 10000; i++) x += i;
        if (ns_of(CLOCK_MONOTONIC) > end) return -1;
    }
    return 0;
}
static const char *code_name(int c) { return c == SI_KERNEL ? "SI_KERNEL" : c == SI_TIMER ? "SI_TIMER" : "other"; }

static void itimer(int which, int sig, const char *name) {
    handle(sig);
    struct itimerval v = {{0, 20000}, {0, 20000}}, cur;
    long long before = ns_of(CLOCK_PROCESS_CPUTIME_ID);
    RES(name, setitimer(which, &v, 0));
    int spun = spin_until(sig, 3);
    SAY("%s: spin %d, signals >= 3: %d, code %s", name, spun, hits[sig] >= 3,
        code_name(last_code[sig]));
    long long used = ns_of(CLOCK_PROCESS_CPUTIME_ID) - before;
    /* Linux's itimers count tick-sampled time, the clock the scheduler's:
       under load they differ, so only "it advanced" is a stable fact. */
    SAY("%s: CPU clock advanced: %d", name, used > 0);
    getitimer(which, &cur);
    SAY("%s: armed interval %ld us, value in (0, 20ms]: %d", name, (long)cur.it_interval.tv_usec,
        cur.it_value.tv_sec == 0 && cur.it_value.tv_usec > 0 && cur.it_value.tv_usec <= 20000);
    struct itimerval zero = {{0, 0}, {0, 0}}, old;
    RES("disarm", setitimer(which, &zero, &old));
    SAY("%s: old interval %ld", name, (long)old.it_interval.tv_usec);
    getitimer(which, &cur);
    SAY("%s: disarmed %ld %ld", name, (long)cur.it_value.tv_sec, (long)cur.it_value.tv_usec);
}

static void not_while_sleeping(void) {
    handle(SIGVTALRM);
    hits[SIGVTALRM] = 0;
    struct itimerval v = {{0, 0}, {0, 50000}}, cur;
    setitimer(ITIMER_VIRTUAL, &v, 0);
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, 0);
    getitimer(ITIMER_VIRTUAL, &cur);
    SAY("sleeping: vtalrm %d, value left > 25 ms: %d", hits[SIGVTALRM], cur.it_value.tv_usec > 25000);
    SAY("sleeping: one-shot fires when spinning: %d", spin_until(SIGVTALRM, 1) == 0);
    getitimer(ITIMER_VIRTUAL, &cur);
    SAY("one-shot then disarmed: %ld %ld", (long)cur.it_value.tv_sec, (long)cur.it_value.tv_usec);
}

static void posix_cpu_timer(clockid_t clk, const char *name) {
    int sig = SIGRTMIN + 1;
    handle(sig);
    hits[sig] = 0;
    struct sigevent ev; memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL; ev.sigev_signo = sig;
    timer_t id;
    RES(name, timer_create(clk, &ev, &id));
    struct itimerspec its = {{0, 0}, {0, 30000000}}, cur;
    RES("settime", timer_settime(id, 0, &its, 0));
    timer_gettime(id, &cur);
    SAY("%s: armed value in (0, 30ms]: %d", name, cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0 &&
        cur.it_value.tv_nsec <= 30000000);
    int spun = spin_until(sig, 1);
    SAY("%s: spin %d code %s", name, spun, code_name(last_code[sig]));
    timer_gettime(id, &cur);
    SAY("%s: then disarmed %ld", name, (long)cur.it_value.tv_nsec);
    /* absolute: a value of the clock itself */
    struct timespec now; clock_gettime(clk, &now);
    now.tv_nsec += 30000000;
    if (now.tv_nsec >= 1000000000) { now.tv_sec++; now.tv_nsec -= 1000000000; }
    its.it_value = now;
    RES("settime abs", timer_settime(id, TIMER_ABSTIME, &its, 0));
    SAY("%s abs: spin %d", name, spin_until(sig, 2));
    timer_delete(id);
}

static void *thread_timer(void *arg) {
    (void)arg;
    clockid_t c;
    pthread_getcpuclockid(pthread_self(), &c);
    posix_cpu_timer(c, "pthread_getcpuclockid timer");
    return 0;
}

static void accounting(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long long ru_ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                      (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
    long long clk = ns_of(CLOCK_PROCESS_CPUTIME_ID);
    SAY("rusage self >= 150 ms: %d, clock >= rusage - 20 ms: %d", ru_ns >= 150000000LL,
        clk >= ru_ns - 20000000LL);
    struct tms tm;
    times(&tm);
    SAY("times self >= 15 ticks: %d", tm.tms_utime + tm.tms_stime >= 15);
    pid_t pid = fork();
    if (pid == 0) {
        /* 100 ms on the process CPU clock: the figure rusage reports (an
           itimer counts tick-sampled time, which under load differs). */
        volatile unsigned long x = 0;
        long long end = ns_of(CLOCK_MONOTONIC) + 20000000000LL;
        while (ns_of(CLOCK_PROCESS_CPUTIME_ID) < 100000000LL && ns_of(CLOCK_MONOTONIC) < end)
            for (int i = 0; i < 10000; i++) x += i;
        _exit(ns_of(CLOCK_PROCESS_CPUTIME_ID) >= 100000000LL ? 0 : 1);
    }
    int st;
    struct rusage cru;
    wait4(pid, &st, 0, &cru);
    SAY("child spun: %d, its wait4 rusage >= 90 ms: %d", WIFEXITED(st) && WEXITSTATUS(st) == 0,
        (cru.ru_utime.tv_sec + cru.ru_stime.tv_sec) * 1000000LL + cru.ru_utime.tv_usec +
        cru.ru_stime.tv_usec >= 90000);
    getrusage(RUSAGE_CHILDREN, &ru);
    SAY("rusage children >= 90 ms: %d", (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL +
        ru.ru_utime.tv_usec + ru.ru_stime.tv_usec >= 90000);
    times(&tm);
    SAY("times children >= 9 ticks: %d", tm.tms_cutime + tm.tms_cstime >= 9);
}

static void bad_inputs(void) {
    struct itimerval v = {{0, 0}, {0, 1000000}}, cur;
    RES("setitimer bad which", setitimer(3, &v, 0));
    RES("getitimer bad which", getitimer(-1, &cur));
    RES("setitimer usec 1e6", setitimer(ITIMER_VIRTUAL, &v, 0));
    RES("setitimer bad ptr", syscall(SYS_setitimer, ITIMER_PROF, (void *)8, 0));
    RES("getitimer bad ptr", syscall(SYS_getitimer, ITIMER_PROF, (void *)8));
    timer_t id;
    RES("timer_create fd clock", timer_create(((~0) << 3) | 3, 0, &id));
    RES("timer_create bad cpu clock kind", timer_create(((~0) << 3) | 7, 0, &id));
    RES("timer_create no such pid clock", timer_create(((~4194305) << 3) | 2, 0, &id));
}

int main(void) {
    bad_inputs();
    itimer(ITIMER_VIRTUAL, SIGVTALRM, "ITIMER_VIRTUAL");
    itimer(ITIMER_PROF, SIGPROF, "ITIMER_PROF");
    not_while_sleeping();
    posix_cpu_timer(CLOCK_PROCESS_CPUTIME_ID, "CLOCK_PROCESS_CPUTIME_ID timer");
    posix_cpu_timer(CLOCK_THREAD_CPUTIME_ID, "CLOCK_THREAD_CPUTIME_ID timer");
    pthread_t th;
    pthread_create(&th, 0, thread_timer, 0);
    pthread_join(th, 0);
    accounting();
    SAY("done");
    return 0;
}
