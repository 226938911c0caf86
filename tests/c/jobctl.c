/* A child stops itself with SIGSTOP (default action), the parent sees it with
 * WUNTRACED, continues it with SIGCONT, sees that with WCONTINUED, and reaps
 * its exit. A second stop is seen by waitid as CLD_STOPPED. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	int st, go[2];
	char c;
	siginfo_t si;
	pid_t p;

	if (pipe(go) != 0)
		return 1;
	p = fork();
	if (p == 0) {
		raise(SIGSTOP);
		/* Stop again only once the parent has seen the continue. */
		if (read(go[0], &c, 1) != 1)
			_exit(1);
		raise(SIGSTOP);	/* not SIGTSTP: dropped in an orphaned process group */
		_exit(7);
	}
	waitpid(p, &st, WUNTRACED);
	printf("stopped=%d sig=%d\n", WIFSTOPPED(st), WSTOPSIG(st));
	kill(p, SIGCONT);
	waitpid(p, &st, WCONTINUED);
	printf("continued=%d\n", WIFCONTINUED(st));
	if (write(go[1], "g", 1) != 1)
		return 1;
	waitid(P_PID, p, &si, WSTOPPED);
	printf("waitid code=%s status=%d\n", si.si_code == CLD_STOPPED ? "CLD_STOPPED" : "other",
	       si.si_status);
	kill(p, SIGCONT);
	waitpid(p, &st, 0);
	printf("exited=%d code=%d\n", WIFEXITED(st), WEXITSTATUS(st));
	return 0;
}
