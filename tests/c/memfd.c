/* memfd_create(2) and file seals (fcntl F_ADD_SEALS/F_GET_SEALS): one line
 * per fact, the same natively and in the sandbox. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define RES(name, expr) do { errno = 0; long r_ = (long)(expr); \
    SAY("%s = %s%s", name, r_ < 0 ? "-1 " : "ok", r_ < 0 ? strerrorname_np(errno) : ""); } while (0)

#ifndef MFD_EXEC
#define MFD_EXEC 0x10
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 8
#endif

static int mfd(const char *name, unsigned flags) { return syscall(SYS_memfd_create, name, flags); }

static void show_link(const char *what, int fd) {
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = 0;
    SAY("%s: %s", what, n < 0 ? strerrorname_np(errno) : buf);
}

extern char **environ;

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "from-memfd")) {
        SAY("running from a memfd");
        SAY("done");
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "hugetlb")) {
        /* Huge pages are a host matter: the sandbox has none (EINVAL). */
        RES("MFD_HUGETLB", mfd("h", MFD_HUGETLB));
        RES("MFD_HUGETLB with a size", mfd("h", MFD_HUGETLB | (21u << 26)));
        return 0;
    }
    /* Flags and names. */
    int fd = mfd("probe", 0);
    RES("memfd_create plain", fd);
    SAY("plain FD_CLOEXEC: %d", fcntl(fd, F_GETFD));
    int cfd = mfd("probe", MFD_CLOEXEC);
    SAY("MFD_CLOEXEC FD_CLOEXEC: %d", fcntl(cfd, F_GETFD));
    SAY("O_RDWR: %d", (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR);
    close(cfd);
    RES("unknown flag 0x100", mfd("x", 0x100));
    RES("flag bit 31", mfd("x", 0x80000000u));
    RES("MFD_EXEC|MFD_NOEXEC_SEAL", mfd("x", MFD_EXEC | MFD_NOEXEC_SEAL));
    RES("huge size bits without MFD_HUGETLB", mfd("x", 21u << 26));
    char name[300];
    memset(name, 'n', sizeof name);
    name[249] = 0;
    int lfd = mfd(name, 0);
    RES("249-byte name", lfd);
    show_link("249-byte name link length", lfd);
    close(lfd);
    name[249] = 'n'; name[250] = 0;
    RES("250-byte name", mfd(name, 0));
    RES("NULL name", mfd(NULL, 0));
    RES("bad name pointer", mfd((const char *)8, 0));
    RES("empty name", (cfd = mfd("", 0)));
    show_link("empty name link", cfd);
    close(cfd);
    show_link("link", fd);

    struct stat st;
    fstat(fd, &st);
    SAY("fstat: type reg %d mode %o size %ld nlink %ld", S_ISREG(st.st_mode), st.st_mode & 07777,
        (long)st.st_size, (long)st.st_nlink);
    int nfd = mfd("noexec", MFD_NOEXEC_SEAL);
    fstat(nfd, &st);
    SAY("MFD_NOEXEC_SEAL mode %o seals %#x", st.st_mode & 07777, fcntl(nfd, F_GET_SEALS));
    RES("chmod +x under F_SEAL_EXEC", fchmod(nfd, 0777));
    RES("chmod -w under F_SEAL_EXEC", fchmod(nfd, 0444));
    close(nfd);
    struct statfs sf;
    fstatfs(fd, &sf);
    SAY("fstatfs tmpfs: %d", sf.f_type == 0x01021994);

    /* Data. */
    RES("write", write(fd, "hello memfd", 11));
    char buf[64] = {0};
    RES("pread", pread(fd, buf, 5, 6));
    SAY("read back: %s", buf);
    RES("ftruncate 8192", ftruncate(fd, 8192));
    fstat(fd, &st);
    SAY("size %ld", (long)st.st_size);
    RES("lseek SEEK_END", lseek(fd, 0, SEEK_END));

    /* Shared mappings see each other and the file. */
    char *a = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *b = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4096);
    SAY("mapped: %d %d", a != MAP_FAILED, b != MAP_FAILED);
    SAY("mapping shows the file: %.11s", a);
    a[4096] = 'X';
    SAY("second mapping sees it: %c", b[0]);
    b[1] = 'Y';
    SAY("first mapping sees it: %c", a[4097]);
    pread(fd, buf, 2, 4096);
    SAY("read sees mapped writes: %.2s", buf);
    pwrite(fd, "W", 1, 0);
    SAY("mapping sees write(2): %c", a[0]);
    pid_t pid = fork();
    if (pid == 0) {
        a[100] = 'C';
        int cfd2 = mfd("child", 0);    /* the child's own memfd is its own */
        close(cfd2);
        _exit(0);
    }
    waitpid(pid, 0, 0);
    SAY("parent sees the child's write: %c", a[100]);
    char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    p[0] = 'P';
    SAY("private copy is private: %c %c", a[0], p[0]);
    munmap(p, 4096);
    RES("ftruncate to 64 GiB (a hole: no memory)", ftruncate(fd, 1L << 36));
    char hb = 1;
    RES("pread in the hole", pread(fd, &hb, 1, 1L << 35));
    SAY("hole byte: %d", hb);
    RES("ftruncate back to 8192", ftruncate(fd, 8192));
    SAY("mapping still sees the data: %c%c", a[0], a[4096]);
    RES("mmap O_RDWR memfd MAP_SHARED at offset 1", (long)mmap(0, 4096, PROT_READ, MAP_SHARED, fd, 1));

    /* Seals. */
    SAY("no ALLOW_SEALING: seals %#x", fcntl(fd, F_GET_SEALS));
    RES("no ALLOW_SEALING: add", fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK));
    int s = mfd("sealed", MFD_ALLOW_SEALING);
    SAY("ALLOW_SEALING: seals %#x", fcntl(s, F_GET_SEALS));
    RES("ftruncate 4096", ftruncate(s, 4096));
    RES("add unknown seal bit", fcntl(s, F_ADD_SEALS, 0x100));
    RES("add SHRINK", fcntl(s, F_ADD_SEALS, F_SEAL_SHRINK));
    SAY("seals %#x", fcntl(s, F_GET_SEALS));
    RES("shrink sealed", ftruncate(s, 100));
    RES("grow under SHRINK", ftruncate(s, 8192));
    RES("same size under SHRINK", ftruncate(s, 8192));
    RES("add GROW", fcntl(s, F_ADD_SEALS, F_SEAL_GROW));
    RES("grow sealed", ftruncate(s, 8193));
    RES("write past EOF under GROW", pwrite(s, "z", 1, 8192));
    RES("write inside under GROW", pwrite(s, "z", 1, 8191));
    char *m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
    RES("add WRITE with a writable shared mapping", fcntl(s, F_ADD_SEALS, F_SEAL_WRITE));
    munmap(m, 4096);
    m = mmap(0, 4096, PROT_READ, MAP_SHARED, s, 0);
    RES("add WRITE with a read-only shared mapping (may become writable)", fcntl(s, F_ADD_SEALS, F_SEAL_WRITE));
    munmap(m, 4096);
    m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, s, 0);
    RES("add WRITE with a private mapping", fcntl(s, F_ADD_SEALS, F_SEAL_WRITE));
    munmap(m, 4096);
    RES("add WRITE after munmap", fcntl(s, F_ADD_SEALS, F_SEAL_WRITE));
    SAY("seals %#x", fcntl(s, F_GET_SEALS));
    RES("write under WRITE", pwrite(s, "z", 1, 0));
    RES("mmap shared writable under WRITE", (long)mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0));
    m = mmap(0, 4096, PROT_READ, MAP_SHARED, s, 0);
    SAY("mmap shared read-only under WRITE: %d", m != MAP_FAILED);
    char *q = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, s, 0);
    SAY("mmap private writable under WRITE: %d", q != MAP_FAILED);
    char pp2[64];
    snprintf(pp2, sizeof pp2, "/proc/self/fd/%d", s);
    int ro = open(pp2, O_RDONLY);
    RES("reopen through /proc/self/fd read-only", ro);
    SAY("its seals %#x", fcntl(ro, F_GET_SEALS));
    RES("add seals through a read-only description", fcntl(ro, F_ADD_SEALS, F_SEAL_SHRINK));
    char *rm = mmap(0, 4096, PROT_READ, MAP_SHARED, ro, 0);
    SAY("its shared read-only mapping: %d", rm == MAP_FAILED ? -1 : rm[0]);
    close(ro);
    RES("add SEAL", fcntl(s, F_ADD_SEALS, F_SEAL_SEAL));
    RES("add after SEAL", fcntl(s, F_ADD_SEALS, F_SEAL_GROW));
    SAY("seals %#x", fcntl(s, F_GET_SEALS));
    close(s);

    int fw = mfd("future", MFD_ALLOW_SEALING);
    RES("ftruncate", ftruncate(fw, 4096));
    m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fw, 0);
    RES("add FUTURE_WRITE with a mapping", fcntl(fw, F_ADD_SEALS, F_SEAL_FUTURE_WRITE));
    m[0] = 'm';
    SAY("old mapping still writes: %c", m[0]);
    RES("write under FUTURE_WRITE", write(fw, "z", 1));
    RES("mmap shared writable under FUTURE_WRITE",
        (long)mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fw, 0));
    RES("ftruncate under FUTURE_WRITE", ftruncate(fw, 100));
    close(fw);

    int pp[2];
    if (pipe(pp) < 0) return 2;
    RES("F_GET_SEALS on a pipe", fcntl(pp[1], F_GET_SEALS));
    RES("F_ADD_SEALS on a pipe's write end", fcntl(pp[1], F_ADD_SEALS, F_SEAL_SHRINK));
    RES("F_ADD_SEALS on a pipe's read end", fcntl(pp[0], F_ADD_SEALS, F_SEAL_SHRINK));
    RES("F_GET_SEALS bad fd", fcntl(999, F_GET_SEALS));
    char shm[64];
    snprintf(shm, sizeof shm, "/dev/shm/memfd-probe.%d", getpid());
    int sh = open(shm, O_RDWR | O_CREAT, 0600);
    unlink(shm);
    SAY("tmpfs file: seals %#x", fcntl(sh, F_GET_SEALS));
    RES("F_ADD_SEALS on a tmpfs file", fcntl(sh, F_ADD_SEALS, F_SEAL_GROW));
    RES("F_ADD_SEALS bad bits on a tmpfs file", fcntl(sh, F_ADD_SEALS, 0x100));
    close(sh);
    int ex = open("/proc/self/exe", O_RDONLY);
    RES("F_GET_SEALS on an ordinary file", fcntl(ex, F_GET_SEALS));
    RES("F_ADD_SEALS on a read-only ordinary file", fcntl(ex, F_ADD_SEALS, F_SEAL_GROW));
    close(ex);

    /* Runtimes run a program from a memfd (fexecve: /proc/self/fd/N). */
    int src = open("/proc/self/exe", O_RDONLY), x = mfd("selfexe", MFD_CLOEXEC);
    char chunk[65536];
    ssize_t n;
    while ((n = read(src, chunk, sizeof chunk)) > 0)
        if (write(x, chunk, n) != n) return 2;
    char *args[] = {"memfd", "from-memfd", 0};
    fexecve(x, args, environ);
    SAY("fexecve = -1 %s", strerrorname_np(errno));
    return 1;
}
