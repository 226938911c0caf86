/*
 * probe: checks basic Linux semantics from inside a sandbox.
 *
 * Usage: probe [HOSTNAME [ROOT_FILE [TMP_FILE]]]
 *   defaults: probehost /probe_root_file /tmp/probe_tmp_file
 *
 * Prints one line per check, "ok NAME" or "FAIL NAME detail", and exits with
 * the number of failed checks. Natively every check but getpid_is_1 passes
 * (when given the host's name and writable paths), which is how the test
 * knows the probe itself is right.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static int failures;
/* volatile, so the compiler neither warns about nor folds the bad access */
static void *volatile bad_pointer = (void *)8;

/* Prints "ok NAME", or "FAIL NAME detail" (detail formatted from fmt). */
__attribute__((format(printf, 3, 4)))
static void report(const char *name, int ok, const char *fmt, ...)
{
	va_list ap;

	if (ok) {
		printf("ok %s\n", name);
		return;
	}
	failures++;
	printf("FAIL %s ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* Checks that a call returned -1 with errno `want`. */
static void expect_errno(const char *name, long ret, int want)
{
	int got = errno;

	report(name, ret == -1 && got == want, "ret=%ld errno=%d (%s), want errno %d (%s)",
	       ret, got, strerror(got), want, strerror(want));
}

static long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void check_ids(const char *hostname)
{
	struct utsname u;
	pid_t pid = getpid();

	report("getpid_is_1", pid == 1, "getpid()=%d", (int)pid);
	if (uname(&u) != 0) {
		report("uname_nodename", 0, "uname: %s", strerror(errno));
		return;
	}
	report("uname_nodename", strcmp(u.nodename, hostname) == 0,
	       "nodename=\"%s\", want \"%s\"", u.nodename, hostname);
	report("uname_sysname", strcmp(u.sysname, "Linux") == 0, "sysname=\"%s\"", u.sysname);
}

static void check_errors(void)
{
	char buf[16];
	int fd;

	errno = 0;
	expect_errno("write_bad_pointer_efault", write(1, bad_pointer, 4), EFAULT);
	errno = 0;
	expect_errno("unknown_syscall_enosys", syscall(9999), ENOSYS);
	errno = 0;
	expect_errno("close_bad_fd_ebadf", close(12345), EBADF);
	errno = 0;
	expect_errno("read_bad_fd_ebadf", read(12345, buf, sizeof(buf)), EBADF);
	errno = 0;
	expect_errno("open_missing_enoent", open("/no/such/probe/file", O_RDONLY), ENOENT);
	fd = open("/etc/passwd", O_RDONLY);
	if (fd < 0) {
		report("read_bad_pointer_efault", 0, "open /etc/passwd: %s", strerror(errno));
		return;
	}
	errno = 0;
	expect_errno("read_bad_pointer_efault", read(fd, bad_pointer, 4), EFAULT);
	close(fd);
}

/* Writes `path`, reads it back, and compares. */
static void check_file_roundtrip(const char *name, const char *path)
{
	static const char content[] = "written by the probe\n";
	char back[64] = { 0 };
	ssize_t n;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, content, sizeof(content) - 1) != sizeof(content) - 1) {
		report(name, 0, "create/write %s: %s", path, strerror(errno));
		return;
	}
	close(fd);
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		report(name, 0, "reopen %s: %s", path, strerror(errno));
		return;
	}
	n = read(fd, back, sizeof(back));
	close(fd);
	report(name, n == sizeof(content) - 1 && memcmp(back, content, n) == 0,
	       "read back %zd bytes: \"%.*s\"", n, (int)(n > 0 ? n : 0), back);
}

static void check_mmap(void)
{
	const size_t page = 4096;       /* x86-64 */
	unsigned char *p, *q;
	size_t i;
	int ok = 1;

	errno = 0;
	expect_errno("mmap_zero_length_einval",
		     (long)mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), EINVAL);
	p = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		report("mmap_anonymous", 0, "mmap: %s", strerror(errno));
		return;
	}
	for (i = 0; i < 3 * page; i++)
		ok &= p[i] == 0;
	memset(p, 0xab, 3 * page);
	report("mmap_anonymous", ok && p[3 * page - 1] == 0xab, "fresh memory not zero");
	report("munmap_middle", munmap(p + page, page) == 0, "munmap: %s", strerror(errno));
	report("mprotect_read_only", mprotect(p, page, PROT_READ) == 0 && p[0] == 0xab,
	       "mprotect: %s", strerror(errno));
	report("munmap_rest", munmap(p, page) == 0 && munmap(p + 2 * page, page) == 0,
	       "munmap: %s", strerror(errno));

	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (i = 0; p != MAP_FAILED && i < page; i++)
		p[i] = (unsigned char)i;
	q = p == MAP_FAILED ? MAP_FAILED : mremap(p, page, 8 * page, MREMAP_MAYMOVE);
	if (q == MAP_FAILED) {
		report("mremap_grow_keeps_content", 0, "mmap/mremap: %s", strerror(errno));
		return;
	}
	ok = 1;
	for (i = 0; i < page; i++)
		ok &= q[i] == (unsigned char)i;
	q[8 * page - 1] = 1;            /* the grown part is usable */
	report("mremap_grow_keeps_content", ok && q[page] == 0, "content changed");
	munmap(q, 8 * page);
}

static void check_brk(void)
{
	char *cur = (char *)syscall(SYS_brk, 0);
	char *want = cur + 256 * 1024;
	char *got = (char *)syscall(SYS_brk, want);

	if (got != want) {
		report("brk_grows", 0, "brk(%p) = %p", (void *)want, (void *)got);
		return;
	}
	memset(cur, 0x5a, want - cur);
	report("brk_grows", want[-1] == 0x5a, "memory not writable");
}

static void check_random_and_time(void)
{
	unsigned char a[64] = { 0 }, b[64] = { 0 };
	struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
	long t0, t1, t2;
	ssize_t na = getrandom(a, sizeof(a), 0), nb = getrandom(b, sizeof(b), 0);
	int nonzero = 0, i;

	for (i = 0; i < (int)sizeof(a); i++)
		nonzero += a[i] != 0;
	report("getrandom_fills", na == sizeof(a) && nb == sizeof(b) && nonzero > 32 &&
	       memcmp(a, b, sizeof(a)) != 0, "got %zd/%zd bytes, %d non-zero", na, nb, nonzero);

	t0 = now_ns();
	t1 = now_ns();
	report("clock_monotonic_increases", t0 > 0 && t1 >= t0, "t0=%ld t1=%ld", t0, t1);
	report("nanosleep_10ms", nanosleep(&ten_ms, NULL) == 0, "nanosleep: %s", strerror(errno));
	t2 = now_ns();
	report("nanosleep_waits", t2 - t1 >= 10 * 1000 * 1000, "slept only %ld ns", t2 - t1);
}

int main(int argc, char **argv)
{
	const char *hostname = argc > 1 ? argv[1] : "probehost";
	const char *root_file = argc > 2 ? argv[2] : "/probe_root_file";
	const char *tmp_file = argc > 3 ? argv[3] : "/tmp/probe_tmp_file";

	setvbuf(stdout, NULL, _IOLBF, 0);
	check_ids(hostname);
	check_errors();
	check_file_roundtrip("root_file_roundtrip", root_file);
	check_file_roundtrip("tmp_file_roundtrip", tmp_file);
	check_mmap();
	check_brk();
	check_random_and_time();
	return failures;
}
