/* 16 threads share one counter through a mutex and hand a token round a ring
 * through condition variables (one per thread, so each hand-over wakes only
 * the next thread): over 100000 lock/unlock/wait/signal operations in all. Prints the counter and a checksum of the hand-over order, which are the
 * same on every correct run, natively and in a sandbox. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define NTHREADS 16
#define ROUNDS 1000		/* ring hand-overs per thread */
#define ADDS 2000		/* plain mutex increments per thread */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t your_turn[NTHREADS];
static long counter;
static int turn;		/* index of the thread whose turn it is */
static unsigned long order_sum;	/* checksum of the order turns were taken */
static unsigned long step;

static void *worker(void *arg)
{
	int me = (int)(long)arg;

	for (int i = 0; i < ADDS; i++) {
		pthread_mutex_lock(&lock);
		counter++;
		pthread_mutex_unlock(&lock);
	}
	for (int r = 0; r < ROUNDS; r++) {
		pthread_mutex_lock(&lock);
		while (turn != me)
			pthread_cond_wait(&your_turn[me], &lock);
		step++;
		order_sum = order_sum * 31 + (unsigned long)me * step;
		turn = (turn + 1) % NTHREADS;
		pthread_cond_signal(&your_turn[turn]);
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

int main(void)
{
	pthread_t threads[NTHREADS];

	for (int i = 0; i < NTHREADS; i++)
		pthread_cond_init(&your_turn[i], NULL);
	for (long i = 0; i < NTHREADS; i++) {
		int err = pthread_create(&threads[i], NULL, worker, (void *)i);

		if (err != 0) {
			fprintf(stderr, "pthread_create: %s\n", strerror(err));
			return 1;
		}
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(threads[i], NULL);
	printf("counter=%ld steps=%lu order=%lu\n", counter, step, order_sum);
	return 0;
}
