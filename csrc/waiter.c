/* The `pyvisor run` process once the Sentry runs: `_waiter PID`.
 *
 * confine.py forks the Sentry (PID, its child) into fresh namespaces and
 * then execs this, so that the process the user started holds a few
 * hundred KiB instead of a Python interpreter. It is exec'd with SIGCHLD
 * and the forwarded signals blocked (the mask survives exec, and so does a
 * SIGCHLD already pending). It waits for PID and exits with its status as a
 * shell reports it (the code, or 128 + the signal). A signal a process
 * sent us (si_code <= 0: kill, sigqueue, tgkill) is relayed to PID as the
 * real-time signal SIGRTMAX - i, i its index in `forwarded` (confine.py,
 * RELAYED): real-time signals queue, so the relayed copy is never merged
 * with the one a kill of the whole process group gave the Sentry directly,
 * which the Sentry drops. One the kernel sent (the terminal's Ctrl-C,
 * SIGWINCH) went to the Sentry as well, in our process group, and is not
 * relayed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1, SIGUSR2 };

int main(int argc, char **argv)
{
	sigset_t set;
	siginfo_t si;
	pid_t pid;
	int i, sig, st;

	if (argc != 2 || (pid = (pid_t)atoi(argv[1])) <= 0)
		return 70;
	sigemptyset(&set);
	for (i = 0; i < (int)(sizeof(forwarded) / sizeof(forwarded[0])); i++)
		sigaddset(&set, forwarded[i]);
	sigaddset(&set, SIGCHLD);
	for (i = 0; i < (int)(sizeof(forwarded) / sizeof(forwarded[0])); i++)
		sigaddset(&set, SIGRTMAX - i);   /* blocked as in the Python parent; never sent to us */
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (r < 0 && errno != EINTR)
			return 70;
		sig = sigwaitinfo(&set, &si);
		if (sig < 0 || sig == SIGCHLD || si.si_code > 0)
			continue;
		for (i = 0; i < (int)(sizeof(forwarded) / sizeof(forwarded[0])); i++)
			if (forwarded[i] == sig)
				kill(pid, SIGRTMAX - i);
	}
}
