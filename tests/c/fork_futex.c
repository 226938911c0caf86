/*
 * A thread sleeps on a condition variable in a big private mapping while
 * another thread forks and, with the child still alive, writes that page:
 * pyvisor's copy-on-write then moves the page to a copy. The sleeper must
 * still be woken (a futex key that followed the page would lose it).
 */
#include <pthread.h>
#include <stdio.h>
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

static void *sleeper(void *arg)
{
	pthread_mutex_lock(&s->lock);
	while (!s->flag)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return arg;
}

int main(void)
{
	struct timespec pause = { 0, 100 * 1000 * 1000 };
	pthread_t t;
	pid_t pid;
	int st;

	s = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_create(&t, NULL, sleeper, NULL);
	nanosleep(&pause, NULL);		/* the sleeper is in its futex wait */
	pid = fork();
	if (pid == 0) {
		nanosleep(&pause, NULL);	/* alive while the parent writes */
		_exit(0);
	}
	pthread_mutex_lock(&s->lock);
	s->flag = 1;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(t, NULL);
	waitpid(pid, &st, 0);
	printf("woken, child status %d\n", WEXITSTATUS(st));
	return 0;
}
