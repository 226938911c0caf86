/* Sparse files: a write far past EOF leaves a hole that reads as zero and
 * holds no pages (st_blocks), SEEK_DATA/SEEK_HOLE find the data, a small
 * MAP_SHARED window of the big file works at both ends, truncate frees the
 * tail. One line per fact, the same natively (tmpfs) and in the sandbox.
 * Data is written at 64 KiB-aligned offsets (holes are tracked per page by
 * Linux's tmpfs, per 64 KiB chunk in the Sentry). Usage: sparse DIR */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define GIB (1L << 30)
#define MIB (1L << 20)

static void seeks(int fd, const char *when) {
    static const long offs[] = {0, 5, 4096, 100000, MIB, MIB + 10, 2 * MIB,
                                5 * GIB - 1, 5 * GIB, 5 * GIB + 1, -1};
    for (int i = 0; offs[i] >= 0; i++) {
        errno = 0;
        long d = lseek(fd, offs[i], SEEK_DATA);
        int ed = errno;
        errno = 0;
        long h = lseek(fd, offs[i], SEEK_HOLE);
        SAY("%s: at %ld data %ld%s hole %ld%s", when, offs[i], d, d < 0 ? strerrorname_np(ed) : "",
            h, h < 0 ? strerrorname_np(errno) : "");
    }
}

static void blocks(int fd, const char *when) {
    struct stat st;
    fstat(fd, &st);
    SAY("%s: size %ld blocks %ld", when, (long)st.st_size, (long)st.st_blocks);
}

static int zeros(int fd, long off, long n) {
    static char buf[1 << 16];
    while (n > 0) {
        long k = n < (long)sizeof buf ? n : (long)sizeof buf;
        if (pread(fd, buf, k, off) != k)
            return 0;
        for (long i = 0; i < k; i++)
            if (buf[i])
                return 0;
        off += k;
        n -= k;
    }
    return 1;
}

int main(int argc, char **argv) {
    char path[4096];
    snprintf(path, sizeof path, "%s/sparse.dat", argc > 1 ? argv[1] : "/tmp");
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { SAY("open: %s", strerrorname_np(errno)); return 1; }
    SAY("write head = %ld", (long)pwrite(fd, "head", 4, 0));
    SAY("write far = %ld", (long)pwrite(fd, "x", 1, 5 * GIB));
    SAY("write mid = %ld", (long)pwrite(fd, "mid", 3, MIB));
    blocks(fd, "written");
    seeks(fd, "written");
    char b[8] = {0};
    long n = pread(fd, b, 8, 5 * GIB - 4);
    SAY("read across EOF = %ld %d", n, !memcmp(b, "\0\0\0\0x", 5));
    SAY("hole reads zero = %d %d", zeros(fd, 4, MIB - 4), zeros(fd, MIB + 3, 8 * MIB));

    /* A 64 KiB shared window at the start and one at the end. */
    char *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) { SAY("mmap head: %s", strerrorname_np(errno)); return 1; }
    SAY("mapped head = %.4s %d", m, m[4]);
    m[0] = 'H';
    n = pread(fd, b, 1, 0);
    SAY("read through = %ld %c", n, b[0]);
    n = pwrite(fd, "W", 1, 1);
    SAY("write through = %ld %c", n, m[1]);
    munmap(m, 1 << 16);
    char *e = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 5 * GIB);
    if (e == MAP_FAILED) { SAY("mmap tail: %s", strerrorname_np(errno)); return 1; }
    SAY("mapped tail = %c %d", e[0], e[1]);
    e[0] = 'z';
    msync(e, 4096, MS_SYNC);
    munmap(e, 1 << 16);
    memset(b, 0, sizeof b);
    n = pread(fd, b, 2, 0);
    SAY("after munmap = %ld %.2s", n, b);
    n = pread(fd, b, 1, 5 * GIB);
    SAY("tail after munmap = %ld %c", n, b[0]);
    blocks(fd, "mapped");
    seeks(fd, "mapped");

    SAY("truncate = %d", ftruncate(fd, 2 * MIB));
    blocks(fd, "truncated");
    seeks(fd, "truncated");
    SAY("truncate 0 = %d", ftruncate(fd, 0));
    blocks(fd, "empty");
    errno = 0;
    n = lseek(fd, 0, SEEK_DATA);
    SAY("empty data = %ld %s", n, strerrorname_np(errno));
    close(fd);
    unlink(path);
    SAY("done");
    return 0;
}
