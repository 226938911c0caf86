/* MAP_SHARED mappings of a regular file: every mapping (one process, a
 * fork, an exec'd unrelated process) sees the same pages, write(2) shows
 * through a mapping, a store shows to read(2), the data stays in the file
 * after munmap, a private mapping keeps its copy, and msync's bad input.
 *
 *   shm_file DIR            the checks, on DIR/shm.dat; ends with "done"
 *   shm_file peer FILE      (exec'd by the above) meets the parent in FILE
 *   shm_file msync FILE     store, msync(MS_SYNC), say "synced", wait for stdin EOF
 *   shm_file fsync FILE     the same with fsync(2)
 *   shm_file exit FILE      store and exit without msync or munmap
 *   shm_file sigbus DIR     ftruncate shrinks a mapped file: SIGBUS past EOF
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SZ 8192

static void die(const char *what)
{
    printf("%s: %s\n", what, strerror(errno));
    exit(1);
}

static char *map(int fd, int flags)
{
    char *p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

static void pr(const char *label, const char *s, size_t n)
{
    printf("%s: \"%.*s\"\n", label, (int)n, s);
}

static void prread(const char *label, int fd, off_t off, size_t n)
{
    char buf[64] = {0};
    ssize_t r = pread(fd, buf, n, off);
    if (r < 0)
        die("pread");
    pr(label, buf, r);
}

static void report(const char *label, int r)
{
    printf("%s = %d %s\n", label, r, r ? strerror(errno) : "");
}

/* Waits up to 10 s for *p == want; 0 when it came. */
static int wait_for(volatile char *p, char want)
{
    for (int i = 0; i < 10000; i++) {
        if (*p == want)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static int peer(const char *path)
{
    int fd = open(path, O_RDWR);
    if (fd < 0)
        die("peer open");
    char *m = map(fd, MAP_SHARED);
    pr("peer sees the parent's store", m + 500, 6);
    memcpy(m + 400, "exec", 4);
    m[600] = 1;                           /* ready */
    if (wait_for(m + 601, 2))
        printf("peer: no answer\n");
    else
        printf("peer: parent answered while both ran\n");
    return 0;                             /* exit unmaps */
}

static int checks(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/shm.dat", dir);
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open");
    if (ftruncate(fd, SZ))
        die("ftruncate");
    char *a = map(fd, MAP_SHARED), *b = map(fd, MAP_SHARED);
    memcpy(a + 10, "both", 4);
    pr("second mapping sees the first's store", b + 10, 4);
    if (pwrite(fd, "hello", 5, 100) != 5)
        die("pwrite");
    pr("write(2) seen through the mapping", a + 100, 5);
    memcpy(b + 200, "store", 5);
    prread("store seen by read(2)", fd, 200, 5);
    memcpy(a + SZ - 4, "tail", 4);
    prread("store in the last page seen by read(2)", fd, SZ - 4, 4);

    pid_t pid = fork();
    if (pid == 0) {
        memcpy(a + 300, "child", 5);
        pr("child sees the parent's earlier store", a + 200, 5);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    fflush(stdout);
    pr("fork: parent sees the child's store", a + 300, 5);
    prread("fork: read(2) sees the child's store", fd, 300, 5);

    memcpy(a + 500, "parent", 6);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "shm_file", "peer", path, (char *)NULL);
        die("execl");
    }
    if (wait_for(a + 600, 1))
        printf("parent: the peer never got ready\n");
    else
        printf("parent: the peer's flag came through\n");
    a[601] = 2;
    waitpid(pid, NULL, 0);
    pr("exec'd peer's store seen", a + 400, 4);

    char *priv = map(fd, MAP_PRIVATE);
    pr("private mapping starts with the file", priv + 100, 5);
    pr("private mapping starts with the shared stores", priv + 10, 4);
    memcpy(priv + 100, "PRIVT", 5);
    prread("private store not in the file", fd, 100, 5);
    pr("private store not in a shared mapping", a + 100, 5);
    munmap(priv, SZ);

    struct stat before, after;
    int ro = open(path, O_RDONLY);
    fstat(ro, &before);
    char *r = mmap(NULL, SZ, PROT_READ, MAP_SHARED, ro, 0);
    if (r == MAP_FAILED)
        die("mmap ro");
    pr("read-only shared mapping sees the stores", r + 300, 5);
    report("mprotect(PROT_WRITE) of a read-only description's shared mapping",
           mprotect(r, SZ, PROT_READ | PROT_WRITE));
    errno = 0;
    char *w = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
    report("mmap(PROT_WRITE, MAP_SHARED) of a read-only description", w == MAP_FAILED ? -1 : 0);
    munmap(r, SZ);
    fstat(ro, &after);
    printf("mapping read-only and unmapping keeps mtime: %d\n",
           before.st_mtim.tv_sec == after.st_mtim.tv_sec
           && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec);
    close(ro);

    char *g = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (g == MAP_FAILED)
        die("mmap small");
    g = mremap(g, 4096, SZ, MREMAP_MAYMOVE);
    if (g == MAP_FAILED)
        die("mremap");
    pr("mremap'd shared mapping sees the file", g + 300, 5);
    memcpy(g + 4096 + 16, "grown", 5);
    prread("store into its grown part seen by read(2)", fd, 4096 + 16, 5);
    pr("... and by the other mapping", a + 4096 + 16, 5);
    munmap(g, SZ);

    printf("msync(MS_SYNC) = %d\n", msync(a, SZ, MS_SYNC));
    report("msync(unaligned)", msync(a + 1, 10, MS_SYNC));
    report("msync(ASYNC|SYNC)", msync(a, SZ, MS_SYNC | MS_ASYNC));
    report("msync(bad flag)", msync(a, SZ, 0x100));
    report("msync(length 0)", msync(a, 0, MS_SYNC));
    munmap(b, SZ);
    munmap(a, SZ);
    report("msync(unmapped)", msync(a, SZ, MS_SYNC));
    close(fd);

    fd = open(path, O_RDONLY);
    prread("after munmap and close: 10", fd, 10, 4);
    prread("after munmap and close: 200", fd, 200, 5);
    prread("after munmap and close: 300", fd, 300, 5);
    prread("after munmap and close: 400", fd, 400, 4);
    struct stat st;
    fstat(fd, &st);
    printf("size %lld\n", (long long)st.st_size);
    close(fd);
    unlink(path);
    printf("done\n");
    return 0;
}

/* sync: 0 exit without syncing, 1 msync(MS_SYNC), 2 fsync(2) */
static int msync_then_wait(const char *path, int sync)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("open");
    if (ftruncate(fd, SZ))
        die("ftruncate");
    char *m = map(fd, MAP_SHARED);
    memcpy(m + 4096, sync == 2 ? "fsynced" : sync ? "msynced" : "at-exit", 7);
    if (!sync)
        return 0;                         /* exit unmaps */
    if (sync == 1 ? msync(m, SZ, MS_SYNC) : fsync(fd))
        die("msync/fsync");
    printf("synced\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0)
        ;
    return 0;
}

static sigjmp_buf jb;
static volatile char *expect;

static void on_bus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    printf("signal %s code %d addr %s\n", sig == SIGBUS ? "SIGBUS" : "other", si->si_code,
           si->si_addr == (void *)expect ? "ok" : "wrong");
    siglongjmp(jb, 1);
}

static int sigbus(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/shm-bus.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, SZ))
        die("setup");
    volatile char *m = map(fd, MAP_SHARED);
    m[4096] = 'x';
    struct sigaction sa = {0};
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, NULL);
    if (ftruncate(fd, 100))
        die("ftruncate");
    printf("first page still readable: %d\n", m[50]);
    expect = m + 4096;
    if (!sigsetjmp(jb, 1)) {
        char c = m[4096];
        printf("read past EOF gave %d\n", c);
    }
    expect = m + 4096 + 8;
    if (!sigsetjmp(jb, 1)) {
        m[4096 + 8] = 'y';
        printf("write past EOF went through\n");
    }
    if (ftruncate(fd, SZ))
        die("ftruncate");
    printf("regrown page reads %d\n", m[4096]);
    if (ftruncate(fd, 100))
        die("ftruncate");
    volatile char *fresh = map(fd, MAP_SHARED);
    printf("a new mapping reads the first page: %d\n", fresh[10]);
    expect = fresh + 4096 + 1;
    if (!sigsetjmp(jb, 1)) {
        char c = fresh[4096 + 1];
        printf("a new mapping read past EOF: %d\n", c);
    }
    /* Another process maps it while this one moves EOF both ways. */
    int go[2], back[2];
    if (pipe(go) || pipe(back))
        die("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        expect = fresh + 4096 + 2;
        if (!sigsetjmp(jb, 1))
            fresh[4096 + 2] = 1;
        write(back[1], "", 1);
        read(go[0], &c, 1);              /* the parent grew the file */
        fresh[4096 + 3] = 'z';
        printf("child: the grown page is writable\n");
        write(back[1], "", 1);
        read(go[0], &c, 1);              /* the parent shrank it again */
        expect = fresh + 4096 + 4;
        if (!sigsetjmp(jb, 1))
            fresh[4096 + 4] = 1;
        _exit(0);
    }
    char c;
    read(back[0], &c, 1);
    if (ftruncate(fd, SZ))
        die("ftruncate");
    write(go[1], "", 1);
    read(back[0], &c, 1);
    printf("parent sees the child's store: %c\n", fresh[4096 + 3]);
    if (ftruncate(fd, 100))
        die("ftruncate");
    write(go[1], "", 1);
    waitpid(pid, NULL, 0);
    if (pwrite(fd, "grow", 4, 4096 + 100) != 4)
        die("pwrite");
    printf("write(2) past the page makes it readable: %.4s\n", fresh + 4096 + 100);
    unlink(path);
    printf("done\n");
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && !strcmp(argv[1], "peer"))
        return peer(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "msync"))
        return msync_then_wait(argv[2], 1);
    if (argc == 3 && !strcmp(argv[1], "fsync"))
        return msync_then_wait(argv[2], 2);
    if (argc == 3 && !strcmp(argv[1], "exit"))
        return msync_then_wait(argv[2], 0);
    if (argc == 3 && !strcmp(argv[1], "sigbus"))
        return sigbus(argv[2]);
    if (argc == 2)
        return checks(argv[1]);
    fprintf(stderr, "usage\n");
    return 2;
}
