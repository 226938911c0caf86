/* A random system-call fuzzer for the Sentry: "no input crashes the Sentry".
 *
 * Usage: fuzz SEED CALLS SECONDS [BATCH]
 *
 * Makes CALLS system calls with random numbers and random arguments drawn
 * from classes (0, -1, small ints, huge values, flag-like bitmasks, pointers
 * into its own buffers, NULL/unmapped/kernel pointers, pointers that straddle
 * a page end into PROT_NONE, path strings, open fds, bad fds), from a fixed
 * SEED, and stops early after SECONDS of wall-clock time. The calls run in
 * forked children, BATCH calls each (default 500), so a child that the calls
 * kill (SIGSEGV, exit, a signal to itself) only ends its batch. Each child:
 *  - has its own process group, /dev/null on fds 0-2 (opened by the parent
 *    once: a batch may unlink or replace /dev/null), a scratch directory
 *    as cwd, and a fresh set of fds (file, dir, pipe, sockets, eventfd, ...);
 *    a quarter of them then drop to uid/gid 65534 (permission paths);
 *  - has a SIGALRM handler (no SA_RESTART) and a 10 ms interval timer, so a
 *    call that blocks ends with EINTR and the batch goes on; the handler,
 *    mask and timer are put back after any call that may have changed them;
 *  - counts each call in a page shared with the parent before making it.
 * The parent kills a child that stops, or that is still running after a
 * watchdog (a call that blocks with SIGALRM blocked), and after each batch
 * kills and reaps whatever the batch left (grandchildren).
 *
 * What the calls may not do (everything else is allowed, exit included):
 *  - signal, ptrace, or change the limits or scheduling of the parent or
 *    init (pid arguments 1, -1, the parent's pid become the child's own),
 *    or make a sibling of the child with CLONE_PARENT (whose exit signal,
 *    any number, would go to the parent);
 *  - reboot(2) is never called;
 *  - mmap's MAP_POPULATE is cleared, and a file offset or length between
 *    1 MiB and 2 TiB given to truncate/ftruncate/fallocate/lseek/pwrite is cut
 *    below 1 MiB: the in-memory overlay is not sparse and has no size bound
 *    yet, so such a call would fill the host's memory (a known gap, not a
 *    crash).
 *
 * It refuses to run outside pyvisor (it changes files and credentials at
 * random, and as root natively that would damage the host): the Sentry's
 * uname(2) version field says "pyvisor", which a Linux kernel's does not.
 *
 * FUZZ_VERBOSE=1 in the environment prints every call to stderr first;
 * FUZZ_CHILD=N runs only the N-th batch (counting from 0), as in a full run.
 * The last line is the summary:
 *   fuzz: seed S calls N children C signaled K watchdog W seconds T
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define BUF_SIZE (16 * PAGE)
#define NR_MAX 460
#define TICK_US 10000			/* the child's SIGALRM interval */
#define MAX_FDS 16
#define NULL_FD 99			/* /dev/null, opened by the parent */

struct shared {
	volatile long count;		/* calls made by the current child */
	volatile long nr, args[6];	/* the call being made */
};

static struct shared *sh;
static unsigned char *buf;		/* BUF_SIZE bytes, then a PROT_NONE page */
static char *paths[24];
static int npaths;
static int fds[MAX_FDS], nfds;
static pid_t parent_pid, my_pid;
static uint64_t rng;
static int verbose;

static uint64_t next(void)
{
	/* splitmix64 */
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) { return next() % n; }

static const uint64_t huge[] = {
	0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ULL, 0x7fffffffffffffffULL,
	0x8000000000000000ULL, 0xffffffffffffffffULL, 0xfffffffffffff000ULL, 1ULL << 47,
	0x7ffffffff000ULL, 0xffffffff80000000ULL, 0xfffffffffffffff0ULL,
};

static uint64_t bad_pointer(void)
{
	static const uint64_t p[] = {
		0, 1, 8, 0xfff, 0x1000, 0xdead0000, 0x7ffffffff000ULL, 0x800000000000ULL,
		0xffffffffff600000ULL /* vsyscall */, 0xffff880000000000ULL,
		0xffffffffffffffffULL, 0xfffffffffffff000ULL,
	};
	if (below(3) == 0)
		return (uint64_t)(buf + BUF_SIZE - 1 - below(64));	/* straddles into PROT_NONE */
	return p[below(sizeof p / sizeof p[0])];
}

/* A random argument; a "plausible" one (half of all calls use only those)
 * is 0, a small number, a flag-like mask, a buffer, a path or an open fd,
 * so that calls get past their first checks. */
static uint64_t arg(int plausible)
{
	static const int sane[] = {0, 2, 3, 5, 7, 8, 10, 11};
	switch (plausible ? sane[below(sizeof sane / sizeof sane[0])] : (int)below(13)) {
	case 0: return 0;
	case 1: return (uint64_t)-1;
	case 2: return below(64);
	case 3: return below(4097);
	case 4: return huge[below(sizeof huge / sizeof huge[0])];
	case 5: {				/* flag-like: a few bits */
		uint64_t v = 0;
		for (int i = 0, n = 1 + below(4); i < n; i++)
			v |= 1ULL << below(32);
		return v;
	}
	case 6: return next();
	case 7: case 8: return (uint64_t)(buf + below(BUF_SIZE));
	case 9: return bad_pointer();
	case 10: return (uint64_t)paths[below(npaths)];
	case 11: return nfds ? (uint64_t)fds[below(nfds)] : 3;
	default: {
		static const int bad[] = {-1, 1000, 99999, 0x7fffffff, -100 /* AT_FDCWD */, 63, 62};
		return (uint64_t)(int64_t)bad[below(sizeof bad / sizeof bad[0])];
	}
	}
}

/* --- keeping the run useful ------------------------------------------------ */

static uint64_t safe_pid(uint64_t v)
{
	int32_t p = (int32_t)v;
	if (p == 1 || p == -1 || p == parent_pid || p == -parent_pid || p < -1 || (p == 0 && v >> 32))
		return (uint64_t)my_pid;
	return v;
}

static uint64_t small_size(uint64_t v)
{
	if (v > (1ULL << 20) && v <= (1ULL << 41))
		return v & 0xfffff;
	return v;
}

/* Rewrite one call so that it cannot reach outside the child (see the top). */
static long sanitize(long nr, uint64_t *a)
{
	switch (nr) {
	case SYS_reboot:
		return SYS_getpid;
	case SYS_kill: case SYS_tkill: case SYS_rt_sigqueueinfo: case SYS_prlimit64:
	case SYS_process_vm_readv: case SYS_process_vm_writev: case SYS_setpgid:
	case SYS_pidfd_open: case SYS_sched_setaffinity: case SYS_sched_setscheduler:
	case SYS_sched_setparam: case SYS_sched_setattr: case SYS_migrate_pages:
	case SYS_move_pages:
		a[0] = safe_pid(a[0]);
		break;
	case SYS_tgkill: case SYS_rt_tgsigqueueinfo: case SYS_kcmp:
		a[0] = safe_pid(a[0]);
		a[1] = safe_pid(a[1]);
		break;
	case SYS_ptrace: case SYS_setpriority: case SYS_ioprio_set: case SYS_perf_event_open:
		a[1] = safe_pid(a[1]);
		break;
	case SYS_clone:				/* its exit signal would go to the parent */
		a[0] &= ~(uint64_t)CLONE_PARENT;
		break;
	case SYS_clone3:
		if (a[0] >= (uint64_t)buf && a[0] + 8 <= (uint64_t)buf + BUF_SIZE)
			*(uint64_t *)a[0] &= ~(uint64_t)CLONE_PARENT;
		break;
	case SYS_mmap:
		a[3] &= ~(uint64_t)MAP_POPULATE;
		break;
	case SYS_truncate: case SYS_ftruncate: case SYS_lseek:
		a[1] = small_size(a[1]);
		break;
	case SYS_fallocate:
		a[2] = small_size(a[2]);
		a[3] = small_size(a[3]);
		break;
	case SYS_pwrite64: case SYS_pwritev: case SYS_pwritev2:
		a[3] = small_size(a[3]);
		break;
	}
	return nr;
}

/* --- the child --------------------------------------------------------------- */

static void on_alarm(int s) { (void)s; }

static void arm(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, 0);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGALRM);
	sigprocmask(SIG_UNBLOCK, &m, 0);
	struct itimerval v = {{0, TICK_US}, {0, TICK_US}};
	setitimer(ITIMER_REAL, &v, 0);
}

static int disturbs_alarm(long nr)
{
	switch (nr) {
	case SYS_alarm: case SYS_setitimer: case SYS_rt_sigaction: case SYS_rt_sigprocmask:
	case SYS_rt_sigreturn: case SYS_execve: case SYS_execveat:
		return 1;
	}
	return 0;
}

static void add_fd(int fd)
{
	if (fd >= 0 && nfds < MAX_FDS)
		fds[nfds++] = fd;
}

static void child_setup(void)
{
	/* The parent's /dev/null (fd NULL_FD): a batch may unlink /dev/null. */
	if (verbose)
		dup2(2, 200);
	for (int fd = 0; fd < 3; fd++)
		if (dup2(NULL_FD, fd) < 0)
			close(fd);
	close(NULL_FD);
	setpgid(0, 0);
	my_pid = getpid();
	nfds = 0;
	add_fd(open("f0", O_RDWR | O_CREAT, 0644));
	add_fd(open(".", O_RDONLY | O_DIRECTORY));
	int p[2];
	if (pipe(p) == 0) { add_fd(p[0]); add_fd(p[1]); }
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) == 0) { add_fd(p[0]); add_fd(p[1]); }
	add_fd(socket(AF_INET, SOCK_DGRAM, 0));
	add_fd(socket(AF_INET, SOCK_STREAM, 0));
	add_fd(syscall(SYS_eventfd2, 0, 0));
	add_fd(syscall(SYS_epoll_create1, 0));
	add_fd(open("/dev/zero", O_RDWR));
	add_fd(open("/proc/self/maps", O_RDONLY));
	add_fd(syscall(SYS_timerfd_create, CLOCK_MONOTONIC, 0));
	if (below(4) == 0) {			/* a quarter of the batches run as nobody */
		syscall(SYS_setgroups, 0, 0);
		syscall(SYS_setgid, 65534);
		syscall(SYS_setuid, 65534);
	}
	arm();
}

static void child(long quota)
{
	child_setup();
	for (long i = 0; i < quota; i++) {
		long nr;
		uint64_t a[6];
		switch (below(40)) {
		case 0: nr = (long)next(); break;			/* any number at all */
		case 1: nr = 0x40000000 | below(NR_MAX); break;		/* the x32 bit */
		default: nr = below(NR_MAX); break;
		}
		int plausible = below(2);
		for (int k = 0; k < 6; k++)
			a[k] = arg(plausible);
		nr = sanitize(nr, a);
		sh->nr = nr;
		for (int k = 0; k < 6; k++)
			sh->args[k] = a[k];
		sh->count++;
		if (verbose) {
			char line[200];
			struct timespec ts;
			syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
			int n = snprintf(line, sizeof line, "fuzz %d %ld.%06ld: %ld(%#lx, %#lx, %#lx, %#lx, %#lx, %#lx)\n",
					 my_pid, (long)ts.tv_sec, ts.tv_nsec / 1000, nr, a[0], a[1], a[2], a[3], a[4], a[5]);
			syscall(SYS_write, 200, line, n);
		}
		long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		if (r == 0 && (nr == SYS_clone || nr == SYS_clone3 || nr == SYS_fork || nr == SYS_vfork))
			syscall(SYS_exit, 0);		/* a new task: it is done */
		if (syscall(SYS_getpid) != my_pid)
			syscall(SYS_exit, 0);
		if (disturbs_alarm(nr))
			arm();
	}
	_exit(0);
}

/* --- the parent --------------------------------------------------------------- */

static volatile sig_atomic_t watchdog_fired;
static void on_watchdog(int s) { (void)s; watchdog_fired = 1; }

static int inside_pyvisor(void)
{
	struct utsname u;
	if (syscall(SYS_uname, &u) != 0)
		return 0;
	if (strstr(u.version, "pyvisor") == NULL) {
		fprintf(stderr, "fuzz: refusing to run: not inside pyvisor (uname version \"%s\");"
			" this program changes files and credentials at random\n", u.version);
		return 0;
	}
	return 1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* FUZZ_VERBOSE: list the tasks that outlived a batch. */
static void dump_tasks(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		char path[64], line[256];
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		int fd = open(path, O_RDONLY);
		ssize_t n = fd < 0 ? 0 : read(fd, line, sizeof line - 1);
		if (fd >= 0)
			close(fd);
		if (n > 0)
			fprintf(stderr, "fuzz: left: %.*s\n", (int)(n > 80 ? 80 : n), line);
	}
	if (d)
		closedir(d);
}

/* Kill and reap everything the batch left behind. */
static void cleanup(pid_t pgid)
{
	kill(-pgid, SIGKILL);
	if (getpid() == 1)
		kill(-1, SIGKILL);		/* every process but us (kill(2)) */
	struct itimerval v = {{0, 0}, {2, 0}};
	setitimer(ITIMER_REAL, &v, 0);
	while (waitpid(-1, 0, __WALL) > 0 || errno == EINTR)
		if (watchdog_fired) {
			if (verbose)
				dump_tasks();
			break;
		}
	memset(&v, 0, sizeof v);
	setitimer(ITIMER_REAL, &v, 0);
	watchdog_fired = 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: fuzz SEED CALLS SECONDS [BATCH]\n");
		return 2;
	}
	if (!inside_pyvisor())
		return 3;
	uint64_t seed = strtoull(argv[1], 0, 0);
	long total = strtol(argv[2], 0, 0);
	double seconds = strtod(argv[3], 0);
	long batch = argc > 4 ? strtol(argv[4], 0, 0) : 500;
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	long only = getenv("FUZZ_CHILD") ? strtol(getenv("FUZZ_CHILD"), 0, 0) : -1;
	if (total < 0 || batch <= 0) {
		fprintf(stderr, "fuzz: bad CALLS or BATCH\n");
		return 2;
	}

	parent_pid = getpid();
	int null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, NULL_FD) < 0) {
		perror("fuzz: /dev/null");
		return 1;
	}
	close(null);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	sh = mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	buf = mmap(0, BUF_SIZE + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED || buf == MAP_FAILED || mprotect(buf + BUF_SIZE, PAGE, PROT_NONE)) {
		perror("fuzz: mmap");
		return 1;
	}
	/* Buffers: random bytes, then small numbers, then the path strings. */
	rng = seed;
	for (int i = 0; i < BUF_SIZE / 2; i++)
		buf[i] = (unsigned char)next();
	for (int i = BUF_SIZE / 2; i < BUF_SIZE - 2 * PAGE; i += 8)
		*(uint64_t *)(buf + i) = below(4) ? below(256) : below(1 << 20);
	static const char *names[] = {
		"f0", "f1", "d0", "d0/f2", "d0/d1", "l0", ".", "..", "", "/", "/proc/self/maps",
		"/proc/self/status", "/proc/1/stat", "/dev/null", "/dev/zero", "/dev/full",
		"/dev/urandom", "/etc/passwd", "/tmp", "/nonexistent/x", "f0/", "sock0",
	};
	char *p = (char *)buf + BUF_SIZE - 2 * PAGE;
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
		strcpy(p, names[i]);
		paths[npaths++] = p;
		p += strlen(names[i]) + 1;
	}
	char dir[64];
	snprintf(dir, sizeof dir, "/tmp/fuzz-%llu", (unsigned long long)seed);
	mkdir(dir, 0777);
	if (chdir(dir) != 0) {
		perror("fuzz: chdir");
		return 1;
	}
	mkdir("d0", 0777);
	close(open("f1", O_CREAT | O_WRONLY, 0644));
	symlink("f1", "l0");

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_watchdog;
	sigaction(SIGALRM, &sa, 0);

	long done = 0, children = 0, signaled = 0, watchdog = 0, empty = 0;
	double start = now();
	while (done < total && now() - start < seconds) {
		long quota = total - done < batch ? total - done : batch;
		sh->count = 0;
		rng = seed * 0x100000001b3ULL + (uint64_t)children;
		if (only >= 0 && children != only) {	/* FUZZ_CHILD: replay one batch */
			children++;
			continue;
		}
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fuzz: fork");
			break;
		}
		if (pid == 0)
			child(quota);
		if (verbose)
			fprintf(stderr, "fuzz: batch %ld is pid %d\n", children, pid);
		children++;
		/* The watchdog: a batch of blocking calls takes quota ticks at most. */
		double limit = 2.0 + quota * (TICK_US / 1e6) * 0.5;
		struct itimerval v = {{0, 0}, {(long)limit, 0}};
		setitimer(ITIMER_REAL, &v, 0);
		int st = 0;
		for (;;) {
			pid_t r = waitpid(pid, &st, WUNTRACED);
			if (r == pid && WIFSTOPPED(st)) {
				kill(pid, SIGKILL);
				continue;
			}
			if (r == pid)
				break;
			if (r < 0 && errno == EINTR && watchdog_fired) {
				watchdog_fired = 0;
				watchdog++;
				kill(pid, SIGKILL);
				continue;
			}
			if (r < 0 && errno != EINTR) {
				perror("fuzz: waitpid");
				return 1;
			}
		}
		memset(&v, 0, sizeof v);
		setitimer(ITIMER_REAL, &v, 0);
		watchdog_fired = 0;
		if (WIFSIGNALED(st))
			signaled++;
		long got = sh->count;
		if (got < 0 || got > quota)
			got = quota;
		if (got == 0 && ++empty > 100) {
			fprintf(stderr, "fuzz: 100 children made no call\n");
			return 1;
		}
		done += got;
		cleanup(pid);
		if (only >= 0)
			break;
	}
	printf("fuzz: seed %llu calls %ld children %ld signaled %ld watchdog %ld seconds %.1f\n",
	       (unsigned long long)seed, done, children, signaled, watchdog, now() - start);
	fflush(stdout);
	return 0;
}
