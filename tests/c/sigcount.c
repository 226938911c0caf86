/* Prints "ready", then counts the SIGINTs that arrive while it sleeps
 * argv[1] seconds (default 2, resumed across interruptions), and prints
 * "count N": a test signals the sandbox from outside and checks that each
 * signal sent is delivered exactly once. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile sig_atomic_t count;

static void on_sigint(int sig)
{
	(void)sig;
	count++;
}

int main(int argc, char **argv)
{
	struct timespec left = { argc > 1 ? atoi(argv[1]) : 2, 0 };
	struct sigaction sa = { .sa_handler = on_sigint };

	sigaction(SIGINT, &sa, NULL);
	printf("ready\n");
	fflush(stdout);
	while (nanosleep(&left, &left) != 0)
		;
	printf("count %d\n", (int)count);
	return 0;
}
