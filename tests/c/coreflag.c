/*
 * The wait status of a death by a core-dumping signal: WCOREDUMP is set
 * when RLIMIT_CORE allows a core (Linux reports the dump), clear when it is
 * 0. Run it in a scratch directory: natively the kernel writes the core.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static void die_by(int sig, rlim_t core)
{
	struct rlimit rl = { core, RLIM_INFINITY };
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		setrlimit(RLIMIT_CORE, &rl);
		signal(sig, SIG_DFL);
		raise(sig);
		_exit(99);
	}
	waitpid(pid, &st, 0);
	printf("signal %d, core limit %s: signaled %d sig %d coredump %d\n", sig,
	       core ? "unlimited" : "0", WIFSIGNALED(st), WTERMSIG(st), WCOREDUMP(st) != 0);
}

int main(void)
{
	die_by(SIGSEGV, 0);
	die_by(SIGSEGV, RLIM_INFINITY);
	die_by(SIGABRT, RLIM_INFINITY);
	die_by(SIGTERM, RLIM_INFINITY);	/* terminates, never dumps */
	return 0;
}
