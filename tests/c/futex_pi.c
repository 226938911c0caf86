/* Priority-inheritance futexes: glibc's PTHREAD_PRIO_INHERIT mutexes (plain,
 * robust, with a condition variable) and the raw futex(2) PI operations with
 * their error cases. Prints one line per fact; the same natively and in the
 * sandbox.  Usage: futex_pi [iterations-per-thread] */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef FUTEX_LOCK_PI2
#define FUTEX_LOCK_PI2 13
#endif

#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define RES(name, expr) do { errno = 0; long r_ = (long)(expr); \
    SAY("%s = %s%s", name, r_ < 0 ? "-1 " : "", r_ < 0 ? strerrorname_np(errno) : "0"); } while (0)
#define NTHREADS 8

static long futex(void *uaddr, int op, uint32_t val, const void *timeout, void *uaddr2, uint32_t val3) {
    return syscall(SYS_futex, uaddr, op, val, timeout, uaddr2, val3);
}
static uint32_t gettid_(void) { return (uint32_t)syscall(SYS_gettid); }

/* --- 1. contended PI mutex --------------------------------------------------- */
static pthread_mutex_t pi_mutex;
static long counter;
static int iterations = 12500;

static void *contend(void *arg) {
    (void)arg;
    for (int i = 0; i < iterations; i++) {
        if (pthread_mutex_lock(&pi_mutex)) abort();
        long c = counter;
        if (i % 64 == 0) sched_yield();          /* hold it a while: contention */
        counter = c + 1;
        if (pthread_mutex_unlock(&pi_mutex)) abort();
    }
    return 0;
}

static void contended(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&pi_mutex, &a);
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) pthread_create(&th[i], 0, contend, 0);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], 0);
    SAY("contended: counter %ld of %ld", counter, (long)NTHREADS * iterations);
    RES("trylock free", pthread_mutex_trylock(&pi_mutex) ? -1 : 0);
    SAY("relock own errorcheck-less: trylock again %s", strerrorname_np(pthread_mutex_trylock(&pi_mutex)));
    pthread_mutex_unlock(&pi_mutex);
}

/* --- 2. robust PI mutex whose owner dies ------------------------------------- */
static pthread_mutex_t robust;
static atomic_int holder_ready;

static void *die_holding(void *arg) {
    (void)arg;
    pthread_mutex_lock(&robust);
    atomic_store(&holder_ready, 1);
    if (arg) usleep(100000);     /* let the main thread block on it first */
    return 0;                    /* exits owning it */
}

static void owner_dies(int main_waits) {
    pthread_t th;
    atomic_store(&holder_ready, 0);
    pthread_create(&th, 0, die_holding, main_waits ? (void *)1 : 0);
    if (!main_waits) pthread_join(th, 0);
    else while (!atomic_load(&holder_ready)) sched_yield();
    int e = pthread_mutex_lock(&robust);
    SAY("robust (%s): lock gives %s", main_waits ? "waiting" : "after exit", strerrorname_np(e));
    SAY("  word has OWNER_DIED %d, owner is me %d", !!(robust.__data.__lock & FUTEX_OWNER_DIED),
        (robust.__data.__lock & FUTEX_TID_MASK) == gettid_());
    SAY("  consistent %s", strerrorname_np(pthread_mutex_consistent(&robust)));
    SAY("  unlock %s", strerrorname_np(pthread_mutex_unlock(&robust)));
    SAY("  lock again %s", strerrorname_np(pthread_mutex_lock(&robust)));
    SAY("  unlock %s", strerrorname_np(pthread_mutex_unlock(&robust)));
    if (main_waits) pthread_join(th, 0);
}

static void robust_pi(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust, &a);
    owner_dies(0);
    owner_dies(1);
    /* Not made consistent: unlocking leaves it unusable. */
    pthread_t th;
    pthread_create(&th, 0, die_holding, 0);
    pthread_join(th, 0);
    SAY("robust: lock %s", strerrorname_np(pthread_mutex_lock(&robust)));
    SAY("  unlock without consistent %s", strerrorname_np(pthread_mutex_unlock(&robust)));
    SAY("  lock now %s", strerrorname_np(pthread_mutex_lock(&robust)));
}

/* --- 3. condition variable with a PI mutex ------------------------------------ */
static pthread_mutex_t cv_mutex;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int queue_len, produced, consumed;
#define ITEMS 2000

static void *producer(void *arg) {
    (void)arg;
    for (int i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&cv_mutex);
        while (queue_len == 4) pthread_cond_wait(&cv, &cv_mutex);
        queue_len++; produced++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&cv_mutex);
    }
    return 0;
}

static void *consumer(void *arg) {
    (void)arg;
    for (int i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&cv_mutex);
        while (queue_len == 0) pthread_cond_wait(&cv, &cv_mutex);
        queue_len--; consumed++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&cv_mutex);
    }
    return 0;
}

static void condvar(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&cv_mutex, &a);
    pthread_t p[2], c[2];
    for (int i = 0; i < 2; i++) { pthread_create(&p[i], 0, producer, 0); pthread_create(&c[i], 0, consumer, 0); }
    for (int i = 0; i < 2; i++) { pthread_join(p[i], 0); pthread_join(c[i], 0); }
    SAY("condvar: produced %d consumed %d left %d", produced, consumed, queue_len);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20000000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    pthread_mutex_lock(&cv_mutex);
    SAY("condvar timedwait %s", strerrorname_np(pthread_cond_timedwait(&cv, &cv_mutex, &ts)));
    pthread_mutex_unlock(&cv_mutex);
}

/* --- 4. the raw operations and their errors ------------------------------------ */
static uint32_t word, word2, cond;
static atomic_int phase;

static void *hold_word(void *arg) {
    /* Take `word` from user space, as glibc does, and hold it until phase 2. */
    uint32_t zero = 0;
    (void)arg;
    if (!atomic_compare_exchange_strong((_Atomic uint32_t *)&word, &zero, gettid_())) abort();
    atomic_store(&phase, 1);
    while (atomic_load(&phase) != 2) usleep(1000);
    long r = futex(&word, FUTEX_UNLOCK_PI, 0, 0, 0, 0);
    SAY("holder unlock (waiters bit set) = %ld", r);
    return 0;
}

static struct timespec abs_in(clockid_t clk, long ms) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    ts.tv_nsec += ms * 1000000;
    while (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    return ts;
}

static atomic_int got_lock;
static uint32_t order[4];
static atomic_int order_n;

static void *requeue_waiter(void *arg) {
    long r = futex(&cond, FUTEX_WAIT_REQUEUE_PI, 0, 0, &word2, 0);
    int id = (int)(intptr_t)arg;
    order[atomic_fetch_add(&order_n, 1)] = id;
    if (r != 0) SAY("waiter %d: wait_requeue_pi = %ld %s", id, r, strerrorname_np(errno));
    if ((word2 & FUTEX_TID_MASK) != gettid_()) SAY("waiter %d: does not own the word", id);
    atomic_fetch_add(&got_lock, 1);
    /* Unlock as glibc does: the fast path, else the kernel. */
    uint32_t me = gettid_();
    if (!atomic_compare_exchange_strong((_Atomic uint32_t *)&word2, &me, 0))
        if (futex(&word2, FUTEX_UNLOCK_PI, 0, 0, 0, 0) != 0) SAY("waiter %d: unlock failed", id);
    return 0;
}

static long requeue_until(int want, int *total) {
    while (*total < want) {
        long r = futex(&cond, FUTEX_CMP_REQUEUE_PI, 1, (void *)(long)INT_MAX, &word2, 0);
        if (r < 0) return r;
        *total += r;
        if (*total < want) usleep(1000);
    }
    return 0;
}

static void raw_ops(void) {
    uint32_t me = gettid_();
    char buf[8] __attribute__((aligned(4)));
    RES("lock_pi unaligned", futex(buf + 1, FUTEX_LOCK_PI, 0, 0, 0, 0));
    RES("lock_pi NULL", futex(0, FUTEX_LOCK_PI, 0, 0, 0, 0));
    RES("unlock_pi unaligned", futex(buf + 2, FUTEX_UNLOCK_PI, 0, 0, 0, 0));
    RES("lock_pi CLOCK_REALTIME flag", futex(&word, FUTEX_LOCK_PI | FUTEX_CLOCK_REALTIME, 0, 0, 0, 0));
    struct timespec bad = {0, 1000000000};
    RES("lock_pi bad timespec", futex(&word, FUTEX_LOCK_PI, 0, &bad, 0, 0));
    RES("lock_pi bad timespec ptr", futex(&word, FUTEX_LOCK_PI, 0, (void *)8, 0, 0));
    RES("unlock_pi free word", futex(&word, FUTEX_UNLOCK_PI, 0, 0, 0, 0));
    RES("lock_pi free word", futex(&word, FUTEX_LOCK_PI, 0, 0, 0, 0));
    SAY("word is mine %d, waiters %d", (word & FUTEX_TID_MASK) == me, !!(word & FUTEX_WAITERS));
    RES("lock_pi own", futex(&word, FUTEX_LOCK_PI, 0, 0, 0, 0));
    RES("trylock_pi own", futex(&word, FUTEX_TRYLOCK_PI, 0, 0, 0, 0));
    RES("unlock_pi own", futex(&word, FUTEX_UNLOCK_PI, 0, 0, 0, 0));
    SAY("word after unlock %#x", word);
    RES("trylock_pi free", futex(&word, FUTEX_TRYLOCK_PI, 0, 0, 0, 0));
    RES("lock_pi2 own", futex(&word, FUTEX_LOCK_PI2, 0, 0, 0, 0));
    RES("unlock_pi", futex(&word, FUTEX_UNLOCK_PI, 0, 0, 0, 0));
    word = 0x3ffffff0;           /* an owner that does not exist */
    RES("lock_pi dead owner", futex(&word, FUTEX_LOCK_PI, 0, 0, 0, 0));
    SAY("word after %#x", word);
    RES("unlock_pi not owner", futex(&word, FUTEX_UNLOCK_PI, 0, 0, 0, 0));
    word = FUTEX_OWNER_DIED;     /* owner died, nobody took it yet */
    RES("lock_pi owner-died word", futex(&word, FUTEX_LOCK_PI, 0, 0, 0, 0));
    SAY("word has OWNER_DIED %d mine %d", !!(word & FUTEX_OWNER_DIED), (word & FUTEX_TID_MASK) == me);
    RES("unlock_pi", futex(&word, FUTEX_UNLOCK_PI, 0, 0, 0, 0));
    SAY("word after unlock %#x", word);

    /* held by another thread */
    pthread_t th;
    atomic_store(&phase, 0);
    pthread_create(&th, 0, hold_word, 0);
    while (atomic_load(&phase) != 1) usleep(1000);
    RES("unlock_pi other's", futex(&word, FUTEX_UNLOCK_PI, 0, 0, 0, 0));
    RES("trylock_pi other's", futex(&word, FUTEX_TRYLOCK_PI, 0, 0, 0, 0));
    SAY("waiters bit after trylock %d", !!(word & FUTEX_WAITERS));
    struct timespec ts = abs_in(CLOCK_MONOTONIC, 20);
    RES("lock_pi2 timeout (monotonic)", futex(&word, FUTEX_LOCK_PI2, 0, &ts, 0, 0));
    ts = abs_in(CLOCK_REALTIME, 20);
    RES("lock_pi2 timeout (realtime flag)", futex(&word, FUTEX_LOCK_PI2 | FUTEX_CLOCK_REALTIME, 0, &ts, 0, 0));
    ts = abs_in(CLOCK_REALTIME, 20);
    RES("lock_pi timeout (realtime)", futex(&word, FUTEX_LOCK_PI, 0, &ts, 0, 0));
    atomic_store(&phase, 2);
    long handed = futex(&word, FUTEX_LOCK_PI, 0, 0, 0, 0);
    pthread_join(th, 0);                 /* the holder has said its line */
    RES("lock_pi blocks until handed over", handed);
    SAY("word mine %d waiters %d", (word & FUTEX_TID_MASK) == me, !!(word & FUTEX_WAITERS));
    RES("unlock_pi", futex(&word, FUTEX_UNLOCK_PI, 0, 0, 0, 0));
    SAY("word after unlock %#x", word);

    /* requeue-PI errors */
    RES("cmp_requeue_pi nr_wake 2", futex(&cond, FUTEX_CMP_REQUEUE_PI, 2, (void *)1L, &word2, 0));
    RES("cmp_requeue_pi nr_requeue -1", futex(&cond, FUTEX_CMP_REQUEUE_PI, 1, (void *)-1L, &word2, 0));
    RES("cmp_requeue_pi same word", futex(&cond, FUTEX_CMP_REQUEUE_PI, 1, (void *)1L, &cond, 0));
    RES("cmp_requeue_pi cmpval differs", futex(&cond, FUTEX_CMP_REQUEUE_PI, 1, (void *)1L, &word2, 5));
    RES("cmp_requeue_pi nobody", futex(&cond, FUTEX_CMP_REQUEUE_PI, 1, (void *)1L, &word2, 0));
    RES("wait_requeue_pi val differs", futex(&cond, FUTEX_WAIT_REQUEUE_PI, 1, 0, &word2, 0));
    RES("wait_requeue_pi same word", futex(&cond, FUTEX_WAIT_REQUEUE_PI, 0, 0, &cond, 0));
    RES("wait_requeue_pi unaligned pi word", futex(&cond, FUTEX_WAIT_REQUEUE_PI, 0, 0, buf + 1, 0));
    ts = abs_in(CLOCK_MONOTONIC, 20);
    RES("wait_requeue_pi timeout", futex(&cond, FUTEX_WAIT_REQUEUE_PI, 0, &ts, &word2, 0));

    /* requeue onto a held PI word: both wait there, handed over in turn */
    uint32_t zero = 0;
    atomic_compare_exchange_strong((_Atomic uint32_t *)&word2, &zero, me);
    pthread_t w1, w2;
    int total = 0;
    pthread_create(&w1, 0, requeue_waiter, (void *)1);
    RES("requeue first", requeue_until(1, &total));
    pthread_create(&w2, 0, requeue_waiter, (void *)2);
    RES("requeue second", requeue_until(2, &total));
    SAY("requeued %d, word2 mine %d waiters %d", total, (word2 & FUTEX_TID_MASK) == me,
        !!(word2 & FUTEX_WAITERS));
    RES("plain wake on the PI word", futex(&word2, FUTEX_WAKE, 1, 0, 0, 0));
    RES("unlock word2", futex(&word2, FUTEX_UNLOCK_PI, 0, 0, 0, 0));
    pthread_join(w1, 0);
    pthread_join(w2, 0);
    SAY("got lock %d, order %u %u, word2 %#x", atomic_load(&got_lock), order[0], order[1], word2);

    /* requeue onto a free PI word: the first waiter is given it at once */
    total = 0;
    pthread_create(&w1, 0, requeue_waiter, (void *)3);
    /* a plain wake meets the requeue-PI waiter: EINVAL (probe until queued) */
    long r;
    while ((r = futex(&cond, FUTEX_WAKE, 1, 0, 0, 0)) == 0) usleep(1000);
    SAY("plain wake with a requeue-pi waiter = %ld %s", r, strerrorname_np(errno));
    RES("requeue to free word", requeue_until(1, &total));
    pthread_join(w1, 0);
    SAY("got lock %d, word2 %#x", atomic_load(&got_lock), word2);
}

int main(int argc, char **argv) {
    if (argc > 1) iterations = atoi(argv[1]);
    raw_ops();
    contended();
    robust_pi();
    condvar();
    SAY("done");
    return 0;
}
