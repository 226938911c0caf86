/* Inputs the syscall fuzzer (tests/c/fuzz.c) found to crash or wedge the
 * Sentry, each reduced to one case. Usage: fuzz_found CASE; prints what it saw.
 *   altstack  a signal stack at the top of the address space: the frame
 *             address wraps; Linux faults writing it (SIGSEGV).
 *   mxcsr     a signal handler sets reserved MXCSR bits in the saved FPU
 *             state; rt_sigreturn drops them (Linux sanitizes, never fails).
 *   settid    clone(CLONE_PARENT_SETTID) with an unwritable ptid: the fault
 *             is ignored and the child runs and exits normally.
 *   reparent  an orphan whose exit signal is SIGUSR1 is reparented to a
 *             subreaper (or init): its exit signal becomes SIGCHLD.
 *   settls    clone(CLONE_SETTLS) with a TLS base outside user space: EPERM
 *             (the host refused the child's registers: exit 70).
 *   forkstorm 40 children fork 50 short-lived grandchildren each: on KVM the
 *             retired page tables of ~2,000 address spaces are collected
 *             while other vCPUs run (that once triple-faulted the guest). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, chld;

static void on_usr1(int s) { (void)s; usr1++; }
static void on_chld(int s) { (void)s; chld++; }

static void on_mxcsr(int s, siginfo_t *si, void *uc)
{
	(void)s; (void)si;
	((ucontext_t *)uc)->uc_mcontext.fpregs->mxcsr = 0xffffffff;
}

static void status(const char *what, int st)
{
	if (WIFEXITED(st))
		printf("%s: exit %d\n", what, WEXITSTATUS(st));
	else
		printf("%s: signal %d\n", what, WTERMSIG(st));
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	int st;
	setvbuf(stdout, 0, _IONBF, 0);
	if (!strcmp(c, "altstack")) {
		pid_t pid = fork();
		if (pid == 0) {
			stack_t ss = {.ss_sp = (void *)0xffffffffffff0000UL, .ss_size = 0x20000};
			struct sigaction sa;
			memset(&sa, 0, sizeof sa);
			sa.sa_handler = on_usr1;
			sa.sa_flags = SA_ONSTACK;
			printf("sigaltstack = %d\n", sigaltstack(&ss, 0));
			sigaction(SIGUSR1, &sa, 0);
			raise(SIGUSR1);
			_exit(0);
		}
		waitpid(pid, &st, 0);
		status("altstack child", st);
	} else if (!strcmp(c, "mxcsr")) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = on_mxcsr;
		sa.sa_flags = SA_SIGINFO;
		sigaction(SIGUSR1, &sa, 0);
		raise(SIGUSR1);
		unsigned m;
		__asm__ volatile("stmxcsr %0" : "=m"(m));
		printf("mxcsr after sigreturn %#x\n", m);
	} else if (!strcmp(c, "settid")) {
		long pid = syscall(SYS_clone, CLONE_PARENT_SETTID | SIGCHLD, 0, (void *)-1L, 0, 0);
		if (pid == 0)
			_exit(7);
		printf("clone %s\n", pid > 0 ? "ok" : "failed");
		waitpid(pid, &st, 0);
		status("settid child", st);
	} else if (!strcmp(c, "reparent")) {
		prctl(PR_SET_CHILD_SUBREAPER, 1);
		signal(SIGUSR1, on_usr1);
		signal(SIGCHLD, on_chld);
		int p[2];
		pipe(p);
		pid_t a = fork();
		if (a == 0) {
			long b = syscall(SYS_clone, SIGUSR1, 0, 0, 0, 0);
			if (b == 0) {
				char x;
				read(p[0], &x, 1);	/* until the parent is gone */
				_exit(5);
			}
			_exit(0);
		}
		waitpid(a, &st, 0);
		status("middle", st);
		chld = 0;
		write(p[1], "x", 1);
		pid_t r;
		while ((r = waitpid(-1, &st, __WALL)) < 0)
			;
		status("orphan", st);
		printf("SIGUSR1 %d SIGCHLD %d\n", (int)usr1, (int)chld);
	} else if (!strcmp(c, "settls")) {
		unsigned long tls[] = {0x800000000000UL, 0xffffffffffff0000UL};
		for (int i = 0; i < 2; i++) {
			long pid = syscall(SYS_clone, CLONE_SETTLS | SIGCHLD, 0, 0, 0, tls[i]);
			if (pid == 0)
				_exit(3);
			printf("clone(CLONE_SETTLS, %#lx) %s\n", tls[i],
			       pid < 0 ? strerrorname_np(errno) : "made a child");
		}
	} else if (!strcmp(c, "forkstorm")) {
		int ok = 0;
		for (int i = 0; i < 40; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				for (int j = 0; j < 50; j++)
					if (fork() == 0)
						_exit(0);
				while (wait(0) > 0)
					;
				_exit(0);
			}
			waitpid(pid, &st, 0);
			ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
		}
		printf("forkstorm: %d of 40 rounds\n", ok);
	} else {
		fprintf(stderr, "usage: fuzz_found altstack|mxcsr|settid|reparent|settls|forkstorm\n");
		return 2;
	}
	return 0;
}
