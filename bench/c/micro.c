/*
 * micro OP N [PATH]: does operation OP N times, then exits 0.
 *
 * The benchmark runs it at two N and divides the difference in wall time by
 * the difference in N, so process start-up and set-up cancel out. Every
 * result is checked: a failed call prints what failed and exits 1, so that a
 * broken sandbox is reported as failed rather than as fast.
 *
 * OP is one of the names in the table at the bottom. PATH is the file that
 * "open" and "stat" use (default /etc/passwd); "open_tmpfs" makes its own
 * file under /tmp. Raw syscall(2) is used where libc could cache or skip.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BIG (64 * 1024)

static const char *path = "/etc/passwd";
static char buf[BIG];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void op_getpid(long n)
{
	for (long i = 0; i < n; i++)
		if (syscall(SYS_getpid) <= 0)
			die("getpid");
}

/* Write then read back SIZE bytes through one pipe, in chunks the pipe takes. */
static void pipe_rw(long n, size_t size)
{
	int p[2];

	if (pipe(p) != 0)
		die("pipe");
	for (long i = 0; i < n; i++) {
		size_t done = 0;

		while (done < size) {
			ssize_t w = write(p[1], buf, size - done), r;

			if (w <= 0)
				die("write");
			for (ssize_t got = 0; got < w; got += r)
				if ((r = read(p[0], buf, w - got)) <= 0)
					die("read");
			done += w;
		}
	}
}

static void op_pipe_1(long n) { pipe_rw(n, 1); }
static void op_pipe_64k(long n) { pipe_rw(n, BIG); }

static void open_close(long n, const char *file)
{
	for (long i = 0; i < n; i++) {
		int fd = openat(AT_FDCWD, file, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || close(fd) != 0)
			die(file);
	}
}

static void op_open(long n) { open_close(n, path); }

static void op_open_tmpfs(long n)
{
	char name[64];
	int fd;

	snprintf(name, sizeof(name), "/tmp/pyvisor-micro-%d", (int)getpid());
	fd = open(name, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	if (fd < 0 || close(fd) != 0)
		die(name);
	open_close(n, name);
	unlink(name);
}

static void op_stat(long n)
{
	struct stat st;

	for (long i = 0; i < n; i++)
		if (stat(path, &st) != 0)
			die("stat");
}

static void mmap_touch(long n, size_t size)
{
	for (long i = 0; i < n; i++) {
		volatile char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			die("mmap");
		for (size_t off = 0; off < size; off += 4096)
			p[off] = 1;
		if (munmap((void *)p, size) != 0)
			die("munmap");
	}
}

static void op_mmap_4k(long n) { mmap_touch(n, 4096); }
static void op_mmap_1m(long n) { mmap_touch(n, 1 << 20); }

/* Through libc, as programs call it: the vDSO where the platform offers one. */
static void op_clock(long n)
{
	struct timespec ts;

	for (long i = 0; i < n; i++)
		if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
			die("clock_gettime");
}

static void reap(pid_t pid)
{
	int status;

	if (pid < 0)
		die("fork");
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("waitpid");
}

static void op_fork(long n)
{
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		reap(pid);
	}
}

static void op_exec(long n)
{
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			execl("/bin/true", "true", (char *)NULL);
			_exit(127);
		}
		reap(pid);
	}
}

static void *nothing(void *arg)
{
	return arg;
}

static void op_thread(long n)
{
	for (long i = 0; i < n; i++) {
		pthread_t t;

		if (pthread_create(&t, NULL, nothing, NULL) != 0 || pthread_join(t, NULL) != 0)
			die("pthread");
	}
}

/* Futex ping-pong: the turn word says whose move it is (0 main, 1 partner). */
static atomic_int turn;

static void futex_wait_for(int want)
{
	int cur;

	while ((cur = atomic_load(&turn)) != want)
		syscall(SYS_futex, &turn, FUTEX_WAIT_PRIVATE, cur, NULL, NULL, 0);
}

static void pass_turn(int to)
{
	atomic_store(&turn, to);
	syscall(SYS_futex, &turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *futex_partner(void *arg)
{
	long n = (long)arg;

	for (long i = 0; i < n; i++) {
		futex_wait_for(1);
		pass_turn(0);
	}
	return NULL;
}

static void op_futex(long n)
{
	pthread_t t;

	if (pthread_create(&t, NULL, futex_partner, (void *)n) != 0)
		die("pthread_create");
	for (long i = 0; i < n; i++) {
		pass_turn(1);
		futex_wait_for(0);
	}
	pthread_join(t, NULL);
}

static void op_pipe_pingpong(long n)
{
	int ab[2], ba[2];
	char c = 'x';
	pid_t pid;

	if (pipe(ab) != 0 || pipe(ba) != 0)
		die("pipe");
	pid = fork();
	if (pid == 0) {
		for (long i = 0; i < n; i++)
			if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1)
				_exit(1);
		_exit(0);
	}
	for (long i = 0; i < n; i++)
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
			die("pipe ping-pong");
	reap(pid);
}

static volatile sig_atomic_t caught;

static void on_usr1(int sig)
{
	caught += sig == SIGUSR1;
}

/* kill(self) -> handler -> rt_sigreturn: one delivery round trip. */
static void op_signal(long n)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	pid_t self = getpid();

	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		die("sigaction");
	for (long i = 0; i < n; i++)
		if (kill(self, SIGUSR1) != 0)
			die("kill");
	if (caught != n) {
		fprintf(stderr, "caught %ld of %ld signals\n", (long)caught, n);
		exit(1);
	}
}

static const struct {
	const char *name;
	void (*run)(long n);
} ops[] = {
	{ "getpid", op_getpid },	{ "pipe_1", op_pipe_1 },
	{ "pipe_64k", op_pipe_64k },	{ "open", op_open },
	{ "open_tmpfs", op_open_tmpfs }, { "stat", op_stat },
	{ "mmap_4k", op_mmap_4k },	{ "mmap_1m", op_mmap_1m },
	{ "clock_gettime", op_clock },	{ "fork", op_fork },
	{ "exec", op_exec },		{ "thread", op_thread },
	{ "futex_pingpong", op_futex },	{ "pipe_pingpong", op_pipe_pingpong },
	{ "signal", op_signal },
};

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: micro OP N [PATH]\n");
		return 2;
	}
	if (argc > 3)
		path = argv[3];
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strcmp(argv[1], ops[i].name) == 0) {
			ops[i].run(atol(argv[2]));
			return 0;
		}
	}
	fprintf(stderr, "micro: unknown OP %s\n", argv[1]);
	return 2;
}
