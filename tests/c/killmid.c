/* Starts 16 threads that block in the kernel, eight in read(2) on a pipe no one
 * writes and eight in nanosleep(2), prints "ready", then ends as argv[1]
 * says: "KILL": kill(getpid(), SIGKILL); "exit": exit(3), which must end the
 * blocked threads too; "wait": pause until a signal from outside, e.g.
 * SIGTERM, kills it. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NTHREADS 16

static int pipefd[2];

static void *reader(void *arg)
{
	char c;

	(void)arg;
	return (void *)(long)read(pipefd[0], &c, 1);
}

static void *sleeper(void *arg)
{
	struct timespec ts = { 1000, 0 };

	(void)arg;
	nanosleep(&ts, NULL);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[NTHREADS];
	struct timespec settle = { 0, 200000000 };

	if (pipe(pipefd) != 0) {
		perror("pipe");
		return 1;
	}
	for (int i = 0; i < NTHREADS; i++)
		if (pthread_create(&threads[i], NULL, i % 2 ? sleeper : reader, NULL) != 0) {
			perror("pthread_create");
			return 1;
		}
	nanosleep(&settle, NULL);	/* let the threads reach their syscalls */
	printf("ready\n");
	fflush(stdout);
	if (argc > 1 && strcmp(argv[1], "KILL") == 0)
		kill(getpid(), SIGKILL);
	if (argc > 1 && strcmp(argv[1], "exit") == 0)
		exit(3);
	for (;;)
		pause();
}
