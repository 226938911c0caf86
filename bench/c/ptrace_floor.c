/*
 * ptrace_floor N: the least a ptrace-based sandbox can pay per system call.
 *
 * A child makes N getpid(2) calls under PTRACE_SYSEMU; for each, this tracer
 * does what any ptrace Sentry must do at the least: wait for the stop, read
 * the registers once (PTRACE_GETREGS), write the result (PTRACE_SETREGS) and
 * resume (PTRACE_SYSEMU). Tracer and tracee are pinned to one CPU, because a
 * wake-up that crosses CPUs costs far more than the ptrace calls themselves.
 *
 * "ptrace_floor N unpinned" leaves both to the scheduler: the 2-CPU figure.
 *
 * Prints the nanoseconds per call over the N calls.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PTRACE_SYSEMU
#define PTRACE_SYSEMU 31
#endif

#define FAKE_PID 1

static void die(const char *what)
{
	perror(what);
	exit(2);
}

/* Pins the calling process (and so its future children) to its first allowed CPU. */
static void pin_to_one_cpu(void)
{
	cpu_set_t set;
	int cpu;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		die("sched_getaffinity");
	for (cpu = 0; cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &set); cpu++)
		;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		die("sched_setaffinity");
}

/* The tracee: raw system calls only, so that every stop is one we expect. */
static void tracee(long n)
{
	long i;

	if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0)
		die("PTRACE_TRACEME");
	syscall(SYS_kill, syscall(SYS_getpid), SIGSTOP);
	for (i = 0; i < n; i++)
		syscall(SYS_getpid);
	syscall(SYS_exit_group, 0);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000, served = 0;
	struct user_regs_struct regs;
	double t0, t1;
	pid_t child;
	int status;

	if (!(argc > 2 && strcmp(argv[2], "unpinned") == 0))
		pin_to_one_cpu();
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0)
		tracee(n);
	if (waitpid(child, &status, 0) != child || !WIFSTOPPED(status))
		die("waitpid (initial stop)");
	ptrace(PTRACE_SETOPTIONS, child, NULL, (void *)PTRACE_O_EXITKILL);
	t0 = now();
	for (;;) {
		if (ptrace(PTRACE_SYSEMU, child, NULL, NULL) != 0)
			die("PTRACE_SYSEMU");
		if (waitpid(child, &status, 0) != child)
			die("waitpid");
		if (!WIFSTOPPED(status))
			break;                  /* gone: should not happen before exit_group */
		if (ptrace(PTRACE_GETREGS, child, NULL, &regs) != 0)
			die("PTRACE_GETREGS");
		if (regs.orig_rax == SYS_exit_group)
			break;
		regs.rax = regs.orig_rax == SYS_getpid ? FAKE_PID : 0;
		served += regs.orig_rax == SYS_getpid;
		if (ptrace(PTRACE_SETREGS, child, NULL, &regs) != 0)
			die("PTRACE_SETREGS");
	}
	t1 = now();
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	if (served != n) {
		fprintf(stderr, "served %ld getpid calls, expected %ld\n", served, n);
		return 1;
	}
	printf("%.1f\n", (t1 - t0) * 1e9 / (n ? n : 1));
	return 0;
}
