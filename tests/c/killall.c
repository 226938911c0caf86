/* kill(-1, sig) signals every process the caller may signal except init
 * (pid 1) and the caller itself (kill(2)); ESRCH when that is nobody.
 * Run as pid 1 (the sandbox's first task, or under unshare --pid): init
 * forks a child, which forks three pausing grandchildren and then calls
 * kill(-1, SIGUSR1). Prints what each process saw. */
#define _GNU_SOURCE	/* strerrorname_np */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIDS 3

static volatile sig_atomic_t hits;

static void on_usr1(int s) { (void)s; hits++; }
static void kid_usr1(int s) { (void)s; _exit(42); }

static int caller(void)
{
	int p[2], i;
	pid_t kids[KIDS];
	char c;

	if (pipe(p) < 0)
		return 1;
	for (i = 0; i < KIDS; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			signal(SIGUSR1, kid_usr1);
			if (write(p[1], "x", 1) != 1)
				_exit(1);
			for (;;)
				pause();
		}
	}
	for (i = 0; i < KIDS; i++)
		if (read(p[0], &c, 1) != 1)
			return 1;
	errno = 0;
	int r = kill(-1, SIGUSR1);
	printf("kill(-1) = %d %s\n", r, r ? strerrorname_np(errno) : "");
	for (i = 0; i < KIDS; i++) {
		int st;
		waitpid(kids[i], &st, 0);
		printf("kid %d: %s %d\n", i, WIFEXITED(st) ? "exit" : "signal",
		       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	}
	printf("caller hits %d\n", (int)hits);
	errno = 0;
	r = kill(-1, SIGUSR1);	/* nobody left but init and the caller */
	printf("kill(-1) alone = %d %s\n", r, r ? strerrorname_np(errno) : "");
	printf("caller hits %d\n", (int)hits);
	fflush(stdout);
	return 0;
}

int main(void)
{
	if (getpid() != 1) {
		fprintf(stderr, "killall: must run as pid 1 (kill(-1) would reach the host)\n");
		return 2;
	}
	signal(SIGUSR1, on_usr1);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		_exit(caller());
	int st;
	waitpid(pid, &st, 0);
	printf("caller status %d\ninit hits %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1, (int)hits);
	return 0;
}
