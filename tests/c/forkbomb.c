/* Forks until fork(2) fails, then reports the errno of the failure and how many
 * children it made; the children pause until the parent kills its process
 * group. A sandbox with a process limit must stop it with EAGAIN. */
#define _GNU_SOURCE	/* strerrorname_np */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CHILDREN 10000	/* stop here even if nothing limits us */

int main(void)
{
	int made = 0, err = 0;

	setpgid(0, 0);
	while (made < MAX_CHILDREN) {
		pid_t pid = fork();

		if (pid == 0) {
			pause();
			_exit(0);
		}
		if (pid < 0) {
			err = errno;
			break;
		}
		made++;
	}
	signal(SIGTERM, SIG_IGN);
	kill(0, SIGTERM);
	while (wait(NULL) > 0)
		;
	printf("fork=%s made=%d\n", err ? strerrorname_np(err) : "unlimited", made);
	return err == EAGAIN ? 0 : 1;
}
