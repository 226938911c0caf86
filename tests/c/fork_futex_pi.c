/*
 * As fork_futex.c, for a priority-inheritance mutex: a thread blocks in
 * FUTEX_LOCK_PI on a word in a big private mapping while the owner forks
 * and, with the child still alive, writes that page (copy-on-write moves
 * the owner's copy). The owner's unlock must still hand the lock over.
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct shared {
	pthread_mutex_t lock;
	int counter;
};

static struct shared *s;

static void *waiter(void *arg)
{
	pthread_mutex_lock(&s->lock);	/* blocks: main holds it */
	s->counter++;
	pthread_mutex_unlock(&s->lock);
	return arg;
}

int main(void)
{
	struct timespec pause = { 0, 100 * 1000 * 1000 };
	pthread_mutexattr_t attr;
	pthread_t t;
	pid_t pid;
	int st;

	s = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
	pthread_mutex_init(&s->lock, &attr);
	pthread_mutex_lock(&s->lock);
	pthread_create(&t, NULL, waiter, NULL);
	nanosleep(&pause, NULL);		/* the waiter is in FUTEX_LOCK_PI */
	pid = fork();
	if (pid == 0) {
		nanosleep(&pause, NULL);	/* alive while the parent writes */
		_exit(0);
	}
	s->counter = 41;			/* the owner's copy of the page moves */
	pthread_mutex_unlock(&s->lock);		/* FUTEX_UNLOCK_PI: hand it over */
	pthread_join(t, NULL);
	waitpid(pid, &st, 0);
	printf("handed over, counter %d, child status %d\n", s->counter, WEXITSTATUS(st));
	return 0;
}
