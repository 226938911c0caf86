/*
 * vsyscall: calls the legacy vsyscall page (0xffffffffff600000: gettimeofday
 * at +0, time at +0x400, getcpu at +0x800) through function pointers, and the
 * same three calls with `syscall`, and prints what each returned.
 *
 * Natively (a host with [vsyscall] in /proc/self/maps) the kernel emulates
 * the page. In pyvisor the Sentry must serve the vsyscall forms too, so they
 * answer as the syscall forms do (getcpu: the Sentry's CPU, not the host's).
 *
 * Prints "getcpu vsyscall=C syscall=C", "time delta=N", "gettimeofday delta=N
 * ret=R", "time_null ok", then "done".
 *
 * "vsyscall badptr" passes gettimeofday a kernel address and "vsyscall
 * misaligned" calls +0x100: Linux answers both with SIGSEGV.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef long (*gtod_fn)(struct timeval *, void *);
typedef long (*time_fn)(long *);
typedef long (*getcpu_fn)(unsigned *, unsigned *, void *);

int main(int argc, char **argv)
{
    gtod_fn v_gtod = (gtod_fn)0xffffffffff600000UL;
    time_fn v_time = (time_fn)0xffffffffff600400UL;
    getcpu_fn v_getcpu = (getcpu_fn)0xffffffffff600800UL;
    unsigned vcpu = 999, vnode = 999, scpu = 998, snode = 998;
    struct timeval vtv, stv;
    long vt, st, tloc = 0, r;

    if (argc > 1 && strcmp(argv[1], "badptr") == 0) {
        v_gtod((struct timeval *)0xffff800000000000UL, NULL);
        printf("survived\n");
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "misaligned") == 0) {
        ((time_fn)0xffffffffff600100UL)(NULL);
        printf("survived\n");
        return 1;
    }
    r = v_getcpu(&vcpu, &vnode, NULL);
    syscall(SYS_getcpu, &scpu, &snode, NULL);
    printf("getcpu vsyscall=%u syscall=%u ret=%ld node=%u/%u\n", vcpu, scpu, r, vnode, snode);

    vt = v_time(&tloc);
    st = syscall(SYS_time, NULL);
    printf("time delta=%ld tloc_ok=%d\n", labs(st - vt) <= 2 ? 0 : st - vt, tloc == vt);

    r = v_gtod(&vtv, NULL);
    syscall(SYS_gettimeofday, &stv, NULL);
    printf("gettimeofday delta=%ld ret=%ld\n",
           labs(stv.tv_sec - vtv.tv_sec) <= 2 ? 0 : stv.tv_sec - vtv.tv_sec, r);

    vt = v_time(NULL);
    printf("time_null %s\n", labs(vt - time(NULL)) <= 2 ? "ok" : "FAIL");
    printf("done\n");
    return 0;
}
