/* splice(2), tee(2) and vmsplice(2): one line per fact, the same natively
 * and in the sandbox. argv[1]: a writable directory. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define RES(name, expr) do { errno = 0; long r_ = (long)(expr); \
    if (r_ < 0) SAY("%s = -1 %s", name, strerrorname_np(errno)); else SAY("%s = %ld", name, r_); } while (0)

static volatile int sigpipes;
static void on_sigpipe(int s) { (void)s; sigpipes++; }
static void on_alarm(int s) { (void)s; }

static void drain(const char *what, int fd) {
    char buf[256];
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    fcntl(fd, F_SETFL, fl);
    buf[n < 0 ? 0 : n] = 0;
    SAY("%s: '%s'", what, buf);
}

static void msleep(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, 0);
}

int main(int argc, char **argv) {
    char path[2048];
    snprintf(path, sizeof path, "%s/splice-probe.%d", argc > 1 ? argv[1] : "/tmp", getpid());
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigaction(SIGPIPE, &sa, 0);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, 0);      /* no SA_RESTART: EINTR */

    int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (write(f, "0123456789abcdefghij", 20) != 20) return 2;
    lseek(f, 0, SEEK_SET);
    int p[2], q[2];
    if (pipe(p) < 0 || pipe(q) < 0) return 2;
    loff_t off;

    /* file -> pipe */
    RES("splice file->pipe 4 (file offset)", splice(f, NULL, p[1], NULL, 4, 0));
    SAY("file offset now %ld", (long)lseek(f, 0, SEEK_CUR));
    drain("pipe holds", p[0]);
    off = 10;
    RES("splice file->pipe 5 at off_in 10", splice(f, &off, p[1], NULL, 5, 0));
    SAY("off_in now %ld, file offset %ld", (long)off, (long)lseek(f, 0, SEEK_CUR));
    drain("pipe holds", p[0]);
    off = 18;
    RES("splice file->pipe 100 near EOF", splice(f, &off, p[1], NULL, 100, 0));
    drain("pipe holds", p[0]);
    off = 20;
    RES("splice file->pipe at EOF", splice(f, &off, p[1], NULL, 100, 0));

    /* pipe -> file */
    if (write(p[1], "XYZ", 3) != 3) return 2;
    off = 2;
    RES("splice pipe->file at off_out 2", splice(p[0], NULL, f, &off, 100, 0));
    SAY("off_out now %ld, file offset %ld", (long)off, (long)lseek(f, 0, SEEK_CUR));
    if (write(p[1], "uv", 2) != 2) return 2;
    RES("splice pipe->file (file offset)", splice(p[0], NULL, f, NULL, 1, 0));
    SAY("file offset now %ld", (long)lseek(f, 0, SEEK_CUR));
    drain("pipe keeps the rest", p[0]);
    char buf[64] = {0};
    pread(f, buf, 20, 0);
    SAY("file: %s", buf);

    /* pipe -> pipe */
    if (write(p[1], "pipe2pipe", 9) != 9) return 2;
    RES("splice pipe->pipe 4", splice(p[0], NULL, q[1], NULL, 4, 0));
    drain("target", q[0]);
    drain("source keeps", p[0]);

    /* empty pipes */
    RES("splice empty pipe SPLICE_F_NONBLOCK", splice(p[0], NULL, q[1], NULL, 4, SPLICE_F_NONBLOCK));
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    RES("splice empty pipe O_NONBLOCK", splice(p[0], NULL, f, NULL, 4, 0));
    fcntl(p[0], F_SETFL, 0);
    RES("splice empty pipe->file SPLICE_F_NONBLOCK", splice(p[0], NULL, f, NULL, 4, SPLICE_F_NONBLOCK));
    alarm(1);
    RES("blocking splice from an empty pipe, SIGALRM", splice(p[0], NULL, f, NULL, 4, 0));
    pid_t pid = fork();
    if (pid == 0) { msleep(150); if (write(p[1], "late", 4) != 4) _exit(1); _exit(0); }
    RES("blocking splice woken by a writer", splice(p[0], NULL, q[1], NULL, 100, 0));
    waitpid(pid, 0, 0);
    drain("target", q[0]);

    /* full pipe */
    fcntl(q[1], F_SETPIPE_SZ, 4096);
    char big[4096];
    memset(big, 'b', sizeof big);
    if (write(q[1], big, sizeof big) != sizeof big) return 2;
    off = 0;
    RES("splice file->full pipe SPLICE_F_NONBLOCK", splice(f, &off, q[1], NULL, 4, SPLICE_F_NONBLOCK));
    if (write(p[1], "x", 1) != 1) return 2;
    RES("splice pipe->full pipe SPLICE_F_NONBLOCK", splice(p[0], NULL, q[1], NULL, 4, SPLICE_F_NONBLOCK));
    drain("source keeps", p[0]);
    while (read(q[0], big, sizeof big) == sizeof big && 0) {}
    close(q[0]); close(q[1]);
    if (pipe(q) < 0) return 2;

    /* sockets */
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    if (write(p[1], "to-sock", 7) != 7) return 2;
    RES("splice pipe->socket", splice(p[0], NULL, sv[0], NULL, 100, 0));
    memset(buf, 0, sizeof buf);
    RES("socket got", read(sv[1], buf, sizeof buf));
    SAY("socket data: %s", buf);
    if (write(sv[1], "from-sock", 9) != 9) return 2;
    RES("splice socket->pipe", splice(sv[0], NULL, p[1], NULL, 100, 0));
    drain("pipe holds", p[0]);
    off = 0;
    RES("splice socket->pipe with off_in", splice(sv[0], &off, p[1], NULL, 100, 0));

    /* no reader */
    int r[2];
    if (pipe(r) < 0) return 2;
    close(r[0]);
    off = 0;
    RES("splice file->pipe without reader", splice(f, &off, r[1], NULL, 4, 0));
    SAY("SIGPIPEs: %d", sigpipes);
    if (write(p[1], "y", 1) != 1) return 2;
    RES("splice pipe->pipe without reader", splice(p[0], NULL, r[1], NULL, 4, 0));
    SAY("SIGPIPEs: %d", sigpipes);
    drain("source keeps", p[0]);
    close(r[1]);
    if (pipe(r) < 0) return 2;
    close(r[1]);
    RES("splice from a pipe without writer", splice(r[0], NULL, f, NULL, 4, 0));
    RES("splice pipe->pipe from one without writer", splice(r[0], NULL, q[1], NULL, 4, 0));
    close(r[0]);

    /* bad input */
    RES("splice len 0 with bad flags", splice(p[0], NULL, f, NULL, 0, 0x100));
    RES("splice bad flags", splice(p[0], NULL, f, NULL, 4, 0x100));
    RES("splice bad fd_in", splice(999, NULL, f, NULL, 4, 0));
    RES("splice bad fd_out", splice(p[0], NULL, 999, NULL, 4, 0));
    int g = open(path, O_RDONLY);
    RES("splice file->file", splice(g, NULL, f, NULL, 4, 0));
    off = 0;
    RES("splice off_in on a pipe", splice(p[0], &off, f, NULL, 4, 0));
    RES("splice off_out on a pipe", splice(f, NULL, p[1], &off, 4, 0));
    RES("splice pipe to itself", splice(p[0], NULL, p[1], NULL, 4, 0));
    RES("splice into a read end", splice(f, NULL, p[0], NULL, 4, 0));
    RES("splice into a read-only file", splice(p[0], NULL, g, NULL, 4, 0));
    int wo = open(path, O_WRONLY);
    RES("splice from a write-only file", splice(wo, NULL, p[1], NULL, 4, 0));
    int ap = open(path, O_WRONLY | O_APPEND);
    if (write(p[1], "z", 1) != 1) return 2;
    RES("splice into an O_APPEND file", splice(p[0], NULL, ap, NULL, 4, 0));
    off = -1;
    RES("splice negative off_in", splice(f, &off, p[1], NULL, 4, 0));
    RES("splice negative off_out", splice(p[0], NULL, f, &off, 4, 0));
    RES("splice bad off_in pointer", splice(f, (loff_t *)8, p[1], NULL, 4, 0));
    RES("splice bad off_out pointer", splice(p[0], NULL, f, (loff_t *)8, 4, 0));
    drain("pipe still holds", p[0]);

    /* tee */
    if (write(p[1], "teedata", 7) != 7) return 2;
    RES("tee 3", tee(p[0], q[1], 3, 0));
    drain("tee target", q[0]);
    RES("tee all", tee(p[0], q[1], 100, 0));
    drain("tee target", q[0]);
    drain("tee source keeps all", p[0]);
    RES("tee empty SPLICE_F_NONBLOCK", tee(p[0], q[1], 4, SPLICE_F_NONBLOCK));
    fcntl(q[1], F_SETFL, O_NONBLOCK);
    RES("tee empty O_NONBLOCK out", tee(p[0], q[1], 4, 0));
    fcntl(q[1], F_SETFL, 0);
    alarm(1);
    RES("blocking tee, SIGALRM", tee(p[0], q[1], 4, 0));
    RES("tee len 0", tee(p[0], q[1], 0, 0));
    RES("tee len 0 bad flags", tee(p[0], q[1], 0, 0x100));
    RES("tee bad flags", tee(p[0], q[1], 4, 0x100));
    RES("tee bad fd", tee(999, q[1], 4, 0));
    RES("tee file in", tee(f, q[1], 4, 0));
    RES("tee file out", tee(p[0], f, 4, 0));
    RES("tee same pipe", tee(p[0], p[1], 4, 0));
    RES("tee from a write end", tee(p[1], q[1], 4, 0));
    RES("tee into a read end", tee(p[0], q[0], 4, 0));
    if (pipe(r) < 0) return 2;
    close(r[1]);
    RES("tee from a pipe without writer", tee(r[0], q[1], 4, 0));
    close(r[0]);
    if (pipe(r) < 0) return 2;
    close(r[0]);
    if (write(p[1], "w", 1) != 1) return 2;
    RES("tee into a pipe without reader", tee(p[0], r[1], 4, 0));
    SAY("SIGPIPEs: %d", sigpipes);
    close(r[1]);
    drain("source keeps", p[0]);

    /* vmsplice */
    struct iovec iov[2] = {{"vm", 2}, {"splice", 6}};
    RES("vmsplice to pipe", vmsplice(p[1], iov, 2, 0));
    char o1[4] = {0}, o2[8] = {0};
    struct iovec out[2] = {{o1, 3}, {o2, 7}};
    RES("vmsplice from pipe", vmsplice(p[0], out, 2, 0));
    SAY("got '%s' '%s'", o1, o2);
    RES("vmsplice from empty pipe SPLICE_F_NONBLOCK", vmsplice(p[0], out, 2, SPLICE_F_NONBLOCK));
    RES("vmsplice 0 segments", vmsplice(p[1], iov, 0, 0));
    RES("vmsplice 1025 segments", vmsplice(p[1], iov, 1025, 0));
    RES("vmsplice bad flags", vmsplice(p[1], iov, 2, 0x100));
    RES("vmsplice bad fd", vmsplice(999, iov, 2, 0));
    RES("vmsplice to a file", vmsplice(f, iov, 2, 0));
    RES("vmsplice from a read-only file", vmsplice(g, out, 2, 0));
    RES("vmsplice bad iovec pointer", vmsplice(p[1], (struct iovec *)8, 2, 0));
    struct iovec bad[1] = {{(void *)8, 4}};
    RES("vmsplice bad buffer", vmsplice(p[1], bad, 1, 0));
    fcntl(q[1], F_SETPIPE_SZ, 4096);
    memset(big, 'b', sizeof big);
    if (write(q[1], big, sizeof big) != sizeof big) return 2;
    RES("vmsplice to a full pipe SPLICE_F_NONBLOCK", vmsplice(q[1], iov, 2, SPLICE_F_NONBLOCK));
    struct iovec biv[1] = {{big, sizeof big}};
    RES("vmsplice from a full pipe", vmsplice(q[0], biv, 1, 0));
    /* One page-aligned page: Linux's page-sized pipe buffers and our bytes agree. */
    char *page = aligned_alloc(4096, 4096);
    memset(page, 'p', 4096);
    struct iovec piv[1] = {{page, 4096}};
    RES("vmsplice a page into the emptied pipe", vmsplice(q[1], piv, 1, 0));
    RES("read it back", read(q[0], big, sizeof big));
    if (pipe(r) < 0) return 2;
    close(r[0]);
    RES("vmsplice into a pipe without reader", vmsplice(r[1], iov, 2, 0));
    SAY("SIGPIPEs: %d", sigpipes);
    close(r[1]);
    if (pipe(r) < 0) return 2;
    close(r[1]);
    RES("vmsplice from a pipe without writer", vmsplice(r[0], out, 2, 0));
    unlink(path);
    SAY("done");
    return 0;
}
