/* Prints "ready", then sleeps argv[1] seconds (default 4) in one nanosleep(2):
 * a test interrupts the sandbox while the program is blocked in the Sentry. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	struct timespec ts = { argc > 1 ? atoi(argv[1]) : 4, 0 };

	printf("ready\n");
	fflush(stdout);
	nanosleep(&ts, NULL);
	printf("woke\n");
	return 0;
}
