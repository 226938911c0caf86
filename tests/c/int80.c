/*
 * int80: makes 32-bit system calls from 64-bit code with `int $0x80`, and
 * prints what each returned.
 *
 * Linux with IA32 emulation serves them as i386 calls (eax=20 is getpid).
 * pyvisor, as gVisor, serves no 32-bit call: every one fails with ENOSYS
 * (-38 in eax), and must never run as the 64-bit call of the same number
 * (20 is writev, 1 is write, 60 is exit).
 *
 * Prints "NAME=RESULT" lines, "regs_kept=1" (int $0x80 changes only eax),
 * "after=ok" (64-bit calls still work), then "done".
 * "int80 sysenter" executes sysenter (SIGILL on AMD, a 32-bit call on Intel).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static char msg[] = "written by int 0x80\n";

static long int80(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory", "cc");
    return ret;
}

int main(int argc, char **argv)
{
    long r, rbx = 0x1111, rcx = 0x2222, rdx = 0x3333, rsi = 0x4444, rdi = 0x5555;

    if (argc > 1 && strcmp(argv[1], "sysenter") == 0) {
        __asm__ volatile("mov $20, %%eax; sysenter" : "=a"(r) : : "rcx", "r11", "memory");
        printf("sysenter=%ld\n", r);
        return 0;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("getpid=%ld\n", int80(20, 0, 0, 0));
    /* write(1, msg, len) as i386; as x86-64, 4 is stat */
    printf("write=%ld\n", int80(4, 1, (long)msg, sizeof(msg) - 1));
    /* i386 exit; x86-64 write(fd=7, ...) */
    printf("exit=%ld\n", int80(1, 7, (long)msg, 5));
    /* i386 getppid (64); x86-64 semget */
    printf("getppid=%ld\n", int80(64, 0, 0, 0));
    printf("bogus=%ld\n", int80(0xFFFFFF, 0, 0, 0));
    __asm__ volatile("mov $20, %%eax; int $0x80"
                     : "=a"(r), "+b"(rbx), "+c"(rcx), "+d"(rdx), "+S"(rsi), "+D"(rdi) : : "memory", "cc");
    printf("regs_kept=%d\n", rbx == 0x1111 && rcx == 0x2222 && rdx == 0x3333 && rsi == 0x4444 &&
           rdi == 0x5555);
    printf("after=%s\n", syscall(SYS_getpid) > 0 ? "ok" : "FAIL");
    printf("done\n");
    return 0;
}
