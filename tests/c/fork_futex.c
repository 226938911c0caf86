/*
 * A thread sleeps in the Sentry on a futex word in a big private mapping
 * while another thread forks and, with the child still alive, writes that
 * page: pyvisor's copy-on-write then moves the writer's copy of the page.
 * The sleeper must still be woken (a futex key that followed the page
 * would lose it).
 *
 * fork_futex        the sleeper waits on a condition variable (FUTEX_WAIT)
 * fork_futex pi     it blocks on a priority-inheritance mutex the main
 *                   thread holds (FUTEX_LOCK_PI); the unlock must hand it over
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct shared {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int flag;
};

static struct shared *s;
static int pi;

static void *sleeper(void *arg)
{
	pthread_mutex_lock(&s->lock);		/* pi: blocks, main holds it */
	while (!pi && !s->flag)
		pthread_cond_wait(&s->cond, &s->lock);
	s->flag++;
	pthread_mutex_unlock(&s->lock);
	return arg;
}

int main(int argc, char **argv)
{
	struct timespec pause = { 0, 100 * 1000 * 1000 };
	pthread_mutexattr_t attr;
	pthread_t t;
	pid_t pid;
	int st;

	pi = argc > 1 && strcmp(argv[1], "pi") == 0;
	s = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_mutexattr_init(&attr);
	if (pi)
		pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
	pthread_mutex_init(&s->lock, &attr);
	pthread_cond_init(&s->cond, NULL);
	if (pi)
		pthread_mutex_lock(&s->lock);
	pthread_create(&t, NULL, sleeper, NULL);
	nanosleep(&pause, NULL);		/* the sleeper is in its futex call */
	pid = fork();
	if (pid == 0) {
		nanosleep(&pause, NULL);	/* alive while the parent writes */
		_exit(0);
	}
	if (pi) {
		s->flag = 41;			/* the owner's copy of the page moves */
	} else {
		pthread_mutex_lock(&s->lock);	/* the write: taking the lock */
		s->flag = 41;
		pthread_cond_signal(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);		/* pi: FUTEX_UNLOCK_PI hands it over */
	pthread_join(t, NULL);
	waitpid(pid, &st, 0);
	printf("woken, flag %d, child status %d\n", s->flag, WEXITSTATUS(st));
	return 0;
}
