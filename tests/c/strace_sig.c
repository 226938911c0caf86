/* The calls and events people read most in strace output: sigaction structs,
 * kill/tgkill and their signal lines, fork children that exit or are killed,
 * wait4's status, fadvise64, an exit; with an argument, a fault.
 * tests/programs/test_strace_programs.py runs it under real strace and under
 * pyvisor run --strace and compares the lines. Children finish before the
 * parent waits (a sleep), so no call of the parent is split by strace. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void handler(int s) { (void)s; }

static void settle(void) {
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    (void)argv;
    struct sigaction sa = {0};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    kill(getpid(), SIGUSR1);
    syscall(SYS_tgkill, getpid(), getpid(), SIGUSR1);
    int st;
    pid_t p = fork();
    if (p == 0)
        _exit(3);
    settle();
    wait4(p, &st, 0, NULL);
    p = fork();
    if (p == 0) {
        kill(getpid(), SIGTERM);
        pause();
    }
    settle();
    wait4(p, &st, 0, NULL);
    int fd = open("/etc/passwd", O_RDONLY);
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (argc > 1)
        *(volatile int *)0 = 1;
    return 5;
}
