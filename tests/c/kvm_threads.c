/* Many threads on few CPUs (the KVM platform's vCPU pool).
 *
 *   kvm_threads spin N    N threads compute without system calls; main waits
 *                         until every one has counted, then stops them.
 *                         Prints "spin N: all progressed" (or which did not).
 *   kvm_threads pipes N   N threads block in read(2) on their own pipe; main
 *                         writes one byte to each, in turn, and joins them.
 *                         Prints "pipes N: ok sum=S".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXT 256

static volatile unsigned long counts[MAXT];
static volatile int stop;
static int fds[MAXT][2];
static int got[MAXT];

static void *spinner(void *arg)
{
	long me = (long)arg;

	while (!stop)
		counts[me]++;
	return NULL;
}

static void *reader(void *arg)
{
	long me = (long)arg;
	char c;

	if (read(fds[me][0], &c, 1) != 1)
		return (void *)1;
	got[me] = c;
	return NULL;
}

static int spin(int n)
{
	pthread_t t[MAXT];
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	int i, waited, all = 0;

	for (i = 0; i < n; i++)
		pthread_create(&t[i], NULL, spinner, (void *)(long)i);
	for (waited = 0; waited < 2000 && !all; waited++) {	/* 20 s at most */
		nanosleep(&tick, NULL);
		for (all = 1, i = 0; i < n; i++)
			all = all && counts[i];
	}
	stop = 1;
	for (i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	if (all) {
		printf("spin %d: all progressed\n", n);
		return 0;
	}
	printf("spin %d: never ran:", n);
	for (i = 0; i < n; i++)
		if (!counts[i])
			printf(" %d", i);
	printf("\n");
	return 1;
}

static int pipes(int n)
{
	pthread_t t[MAXT];
	void *ret;
	int i, bad = 0;
	long sum = 0;

	for (i = 0; i < n; i++) {
		if (pipe(fds[i]) != 0) {
			perror("pipe");
			return 1;
		}
		pthread_create(&t[i], NULL, reader, (void *)(long)i);
	}
	for (i = 0; i < n; i++) {
		char c = (char)(i % 100 + 1);

		if (write(fds[i][1], &c, 1) != 1)
			bad = 1;
	}
	for (i = 0; i < n; i++) {
		pthread_join(t[i], &ret);
		bad |= ret != NULL;
		sum += got[i];
	}
	printf("pipes %d: %s sum=%ld\n", n, bad ? "FAILED" : "ok", sum);
	return bad;
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[2]) : 0;

	if (argc != 3 || n < 1 || n > MAXT) {
		fprintf(stderr, "usage: kvm_threads spin|pipes N (N <= %d)\n", MAXT);
		return 2;
	}
	if (strcmp(argv[1], "spin") == 0)
		return spin(n);
	if (strcmp(argv[1], "pipes") == 0)
		return pipes(n);
	fprintf(stderr, "kvm_threads: unknown mode %s\n", argv[1]);
	return 2;
}
