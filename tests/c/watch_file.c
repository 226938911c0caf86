/*
 * Shared file access: a long-running program that looks at a file each
 * time the test says go (a line on stdin), so the test can change the
 * file on the host between looks. For each line it prints, for the path
 * in argv[1]: stat's size, what read(2) gives, and what a fresh private
 * mapping shows (the page cache's copy), then "END".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void look(const char *path)
{
	struct stat st;
	char buf[256];
	ssize_t n;
	int fd;

	if (stat(path, &st) < 0) {
		printf("stat %s\n", strerror(errno));
		return;
	}
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		printf("open %s\n", strerror(errno));
		return;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n < 0 ? 0 : n] = 0;
	printf("size %lld read %s", (long long)st.st_size, buf);
	if (st.st_size > 0) {
		char *m = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (m == MAP_FAILED)
			printf("mmap %s\n", strerror(errno));
		else {
			printf("mmap %.*s", (int)st.st_size, m);
			munmap(m, st.st_size);
		}
	}
	close(fd);
}

int main(int argc, char **argv)
{
	char line[64];

	if (argc != 2)
		return 2;
	setvbuf(stdout, NULL, _IONBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		look(argv[1]);
		printf("END\n");
	}
	return 0;
}
