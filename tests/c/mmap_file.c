/*
 * File mappings as Linux gives them, for the page cache's sake: what a
 * private read-only mapping shows, that making it writable gives a private
 * copy (the file and other mappings unchanged), that a child and a second
 * mapping see the same bytes, that a rewritten file is seen by new mappings,
 * and that a mapping longer than the file reads zeros past the end.
 * Prints one line per check; the test compares with a native run.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void write_file(const char *path, char fill, size_t n)
{
	char *buf = malloc(n);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);

	if (!buf || fd < 0)
		die("open for write");
	for (size_t i = 0; i < n; i++)
		buf[i] = fill + (i % 7);
	if (write(fd, buf, n) != (ssize_t)n)
		die("write");
	close(fd);
	free(buf);
}

static char *map(const char *path, size_t len, int prot)
{
	int fd = open(path, O_RDONLY);
	char *p;

	if (fd < 0)
		die("open");
	p = mmap(NULL, len, prot, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	close(fd);
	return p;
}

static unsigned long sum(const char *p, size_t n)
{
	unsigned long s = 0;

	for (size_t i = 0; i < n; i++)
		s = s * 31 + (unsigned char)p[i];
	return s;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/tmp/mmap_file.dat";
	size_t size = 3 * 4096 + 100;
	char *a, *b, *c;
	int status;
	pid_t pid;

	write_file(path, 'a', size);
	a = map(path, size, PROT_READ);
	b = map(path, size, PROT_READ);
	printf("same bytes: %d, sum %lx\n", memcmp(a, b, size) == 0, sum(a, size));
	printf("tail of last page zero: %d\n", a[size] == 0 && a[4 * 4096 - 1] == 0);

	if (mprotect(b, size, PROT_READ | PROT_WRITE) != 0)
		die("mprotect");
	b[0] = 'Z';
	b[size - 1] = 'Y';
	printf("private copy: b %c%c, a %c%c\n", b[0], b[size - 1], a[0], a[size - 1]);

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		printf("child sees a %c, b %c, sum %lx\n", a[0], b[0], sum(a, size));
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, &status, 0);

	c = map(path, size, PROT_READ);
	printf("file untouched by the private write: %d\n", c[0] == 'a' && c[size - 1] == a[size - 1]);
	munmap(c, size);

	write_file(path, 'k', size);
	c = map(path, size, PROT_READ);
	/* N.B. Linux would also show the new bytes through `a`; pyvisor's
	 * mappings are a snapshot of the file (docs/architecture.md). */
	printf("rewritten file seen: %c\n", c[0]);
	munmap(a, size);
	munmap(b, size);
	munmap(c, size);

	/* A mapping longer than the file: pages past EOF read as zero here. */
	a = map(path, 8 * 4096, PROT_READ);
	printf("past the end: %d %d\n", a[size - 1] != 0, a[size] == 0);
	unlink(path);
	return 0;
}
