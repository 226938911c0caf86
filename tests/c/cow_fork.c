/*
 * fork(2) gives the child a copy of memory: neither sees the other's writes,
 * whether they are made by instructions, by the kernel on their behalf
 * (read(2) into the buffer), by threads, or are discards (MADV_DONTNEED).
 * pyvisor shares big private mappings copy-on-write; this checks that the
 * sharing is never visible. Prints one line per check.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE (1 << 20)

static unsigned char *buf;

static unsigned long sum(const unsigned char *p, size_t n)
{
	unsigned long s = 0;

	for (size_t i = 0; i < n; i++)
		s = s * 31 + p[i];
	return s;
}

static int child_status(pid_t pid)
{
	int st;

	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void *scribble(void *arg)
{
	memset(buf + (long)arg * 4096, 0xEE, 4096);
	return NULL;
}

int main(void)
{
	unsigned long before;
	int p[2];
	pid_t pid;

	buf = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < SIZE; i++)
		buf[i] = i * 7;
	before = sum(buf, SIZE);
	fflush(stdout);

	/* The child writes; the parent must not see it, nor the child the parent's. */
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		memset(buf, 1, SIZE / 2);
		_exit(sum(buf + SIZE / 2, SIZE / 2) == sum(buf + SIZE / 2, SIZE / 2) && buf[0] == 1 ? 0 : 1);
	}
	buf[SIZE - 1] ^= 0xFF;
	printf("child wrote: status %d, parent unchanged %d\n", child_status(pid),
	       buf[0] == 0 && buf[SIZE / 2 - 1] == (unsigned char)((SIZE / 2 - 1) * 7));
	buf[SIZE - 1] ^= 0xFF;

	/* The parent writes after fork, by instruction and by read(2); the child keeps its copy. */
	if (pipe(p) != 0)
		return 1;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		char c;

		close(p[1]);
		if (read(p[0], &c, 1) != 1)	/* until the parent has written */
			_exit(3);
		_exit(sum(buf, SIZE) == before ? 0 : 1);
	}
	close(p[0]);
	memset(buf + 4096, 2, 4096);
	int q[2];
	if (pipe(q) != 0 || write(q[1], "kernel-wrote", 12) != 12 || read(q[0], buf + 8192, 12) != 12)
		return 1;
	if (write(p[1], "x", 1) != 1)
		return 1;
	printf("parent wrote: child saw its own copy: status %d\n", child_status(pid));
	printf("parent sees: %d %.12s\n", buf[4096], (char *)buf + 8192);

	/* Threads in a child write; discards in a child; the parent is untouched. */
	before = sum(buf, SIZE);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		pthread_t t[4];

		for (long i = 0; i < 4; i++)
			pthread_create(&t[i], NULL, scribble, (void *)(i * 10));
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
		madvise(buf + SIZE / 2, SIZE / 2, MADV_DONTNEED);
		_exit(buf[0] == 0xEE && buf[SIZE / 2] == 0 && buf[SIZE - 1] == 0 ? 0 : 1);
	}
	printf("threads and discard in child: status %d, parent unchanged %d\n", child_status(pid),
	       sum(buf, SIZE) == before);

	/* Many generations: each child forks again and checks. */
	for (int gen = 0; gen < 5; gen++) {
		fflush(stdout);
	pid = fork();
		if (pid != 0) {
			int st = child_status(pid);

			if (gen == 0)
				printf("five generations: status %d, unchanged %d\n", st, sum(buf, SIZE) == before);
			return gen == 0 ? 0 : st;
		}
		if (sum(buf, SIZE) != before)
			_exit(1);
		buf[gen] ^= 0x55;
		before = sum(buf, SIZE);
	}
	return 0;
}
