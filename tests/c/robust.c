/* A thread dies holding a robust mutex; the next locker gets EOWNERDEAD,
 * makes it consistent and carries on. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t m;

static void *die_holding(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&m);
	return NULL;		/* exits without unlocking */
}

int main(void)
{
	pthread_mutexattr_t a;
	pthread_t th;
	int r;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&m, &a);
	pthread_create(&th, NULL, die_holding, NULL);
	pthread_join(th, NULL);
	r = pthread_mutex_lock(&m);
	printf("lock=%s\n", r == EOWNERDEAD ? "EOWNERDEAD" : r == 0 ? "0" : "other");
	if (r == EOWNERDEAD)
		printf("consistent=%d\n", pthread_mutex_consistent(&m));
	printf("unlock=%d\n", pthread_mutex_unlock(&m));
	return 0;
}
