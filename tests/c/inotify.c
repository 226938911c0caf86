/* inotify(7) probe: run in a scratch directory DIR (argv[1]); prints one
 * line per fact, natively and in the sandbox alike. Events print as
 * "wd=W mask=M cookie=same|0 name=N"; wds are printed relative to the
 * watch they belong to ("D" for the directory, "F" for the file). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[4096];
static int wd_dir = -100, wd_file = -100, wd_sub = -100;
static unsigned last_cookie;

static char *P(const char *name)
{
    static char buf[4][4200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const char *wdname(int wd)
{
    static char b[32];
    if (wd == wd_dir) return "D";
    if (wd == wd_file) return "F";
    if (wd == wd_sub) return "S";
    snprintf(b, sizeof b, "%d", wd);
    return b;
}

#define CHECK(label, expr) do { long r_ = (long)(expr); \
    printf("%s: %s\n", label, r_ < 0 ? strerror(errno) : "ok"); } while (0)

/* Print every queued event, nonblocking. */
static void drain(int fd, const char *label)
{
    char buf[8192] __attribute__((aligned(8)));
    int avail = -1;
    ioctl(fd, FIONREAD, &avail);
    printf("%s: fionread=%d\n", label, avail);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            printf("%s: end %s\n", label, strerror(errno));
            return;
        }
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            const char *ck = "0";
            if (e->cookie) {
                ck = e->cookie == last_cookie ? "same" : "new";
                last_cookie = e->cookie;
            }
            printf("%s: wd=%s mask=%#x cookie=%s len=%u name=%s\n", label, wdname(e->wd),
                   e->mask, ck, e->len, e->len ? e->name : "");
            p += sizeof *e + e->len;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    snprintf(dir, sizeof dir, "%s/inotify-probe.%d", argv[1], getpid());
    if (mkdir(dir, 0755) < 0) { perror("mkdir"); return 1; }

    /* init1 flags */
    errno = 0;
    CHECK("init1 bad flags", syscall(SYS_inotify_init1, 1));
    CHECK("init1 O_RDWR", syscall(SYS_inotify_init1, O_RDWR));
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    printf("init1: %s cloexec=%d nonblock=%d\n", fd >= 0 ? "ok" : strerror(errno),
           !!(fcntl(fd, F_GETFD) & FD_CLOEXEC), !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
    int fd0 = inotify_init();
    printf("init: %s cloexec=%d nonblock=%d\n", fd0 >= 0 ? "ok" : strerror(errno),
           !!(fcntl(fd0, F_GETFD) & FD_CLOEXEC), !!(fcntl(fd0, F_GETFL) & O_NONBLOCK));
    close(fd0);

    /* empty queue */
    char small[8];
    errno = 0;
    CHECK("read empty nonblock", read(fd, small, sizeof small));
    struct pollfd pfd = {fd, POLLIN, 0};
    int pr = poll(&pfd, 1, 0);
    printf("poll empty: %d revents=%#x\n", pr, pfd.revents);

    /* add_watch errors */
    int devnull = open("/dev/null", O_RDONLY);
    CHECK("add mask 0", inotify_add_watch(fd, dir, 0));
    CHECK("add MASK_ADD|MASK_CREATE", inotify_add_watch(fd, dir, IN_MODIFY | IN_MASK_ADD | IN_MASK_CREATE));
    CHECK("add bad fd", inotify_add_watch(999, dir, IN_MODIFY));
    CHECK("add not inotify", inotify_add_watch(devnull, dir, IN_MODIFY));
    CHECK("add missing", inotify_add_watch(fd, P("missing"), IN_MODIFY));
    CHECK("add missing dir", inotify_add_watch(fd, P("missing/x"), IN_MODIFY));
    CHECK("add empty path", inotify_add_watch(fd, "", IN_MODIFY));
    CHECK("add bad pointer", syscall(SYS_inotify_add_watch, fd, (void *)8, IN_MODIFY));
    close(creat(P("plain"), 0644));
    CHECK("add ONLYDIR on file", inotify_add_watch(fd, P("plain"), IN_MODIFY | IN_ONLYDIR));
    CHECK("add through file", inotify_add_watch(fd, P("plain/x"), IN_MODIFY));
    /* EACCES: no read permission, checked as an unprivileged user */
    close(creat(P("secret"), 0600));
    chmod(dir, 0711);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(65534) < 0 || setuid(65534) < 0) _exit(3);
        int ufd = inotify_init();
        CHECK("add unreadable", inotify_add_watch(ufd, P("secret"), IN_MODIFY));
        CHECK("add unreadable dir", inotify_add_watch(ufd, dir, IN_MODIFY));
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("unprivileged child: %d\n", st);
    chmod(dir, 0755);
    unlink(P("secret"));
    symlink("plain", P("link"));
    symlink("nowhere", P("dangling"));
    CHECK("add dangling", inotify_add_watch(fd, P("dangling"), IN_ATTRIB));
    int wl = inotify_add_watch(fd, P("dangling"), IN_ATTRIB | IN_DONT_FOLLOW);
    printf("add dangling DONT_FOLLOW: %s\n", wl > 0 ? "ok" : strerror(errno));
    CHECK("rm dangling watch", inotify_rm_watch(fd, wl));
    CHECK("rm again", inotify_rm_watch(fd, wl));
    CHECK("rm unknown", inotify_rm_watch(fd, 12345));
    CHECK("rm bad fd", inotify_rm_watch(999, 1));
    CHECK("rm not inotify", inotify_rm_watch(devnull, 1));
    drain(fd, "after rm");

    /* same inode, same wd; through a symlink */
    int a = inotify_add_watch(fd, P("plain"), IN_MODIFY);
    int b = inotify_add_watch(fd, P("link"), IN_ATTRIB);
    printf("same inode same wd: %d\n", a == b && a > 0);
    CHECK("MASK_CREATE on watched", inotify_add_watch(fd, P("plain"), IN_ATTRIB | IN_MASK_CREATE));
    inotify_rm_watch(fd, a);
    drain(fd, "rm plain");

    /* directory watch: create, open, write, read, close, attrib, rename, delete */
    wd_dir = inotify_add_watch(fd, dir, IN_ALL_EVENTS | IN_ONLYDIR);
    printf("watch dir: %s\n", wd_dir > 0 ? "ok" : strerror(errno));
    int f = open(P("a"), O_CREAT | O_WRONLY, 0644);
    write(f, "hello", 5);
    write(f, "hello", 5);            /* coalesced with the previous IN_MODIFY */
    close(f);
    drain(fd, "create+write");
    wd_file = inotify_add_watch(fd, P("a"), IN_ALL_EVENTS);
    f = open(P("a"), O_RDONLY);
    char rb[16];
    read(f, rb, sizeof rb);
    read(f, rb, sizeof rb);          /* EOF: no event */
    close(f);
    drain(fd, "read");
    chmod(P("a"), 0600);
    truncate(P("a"), 2);
    f = open(P("a"), O_RDWR | O_TRUNC);
    ftruncate(f, 1);
    fallocate(f, 0, 0, 1);           /* within the size: IN_MODIFY all the same */
    fallocate(f, 0, 0, 8);
    fchmod(f, 0644);
    close(f);
    struct timeval tv[2] = {{1, 0}, {2, 0}};
    utimes(P("a"), tv);
    drain(fd, "attrib+truncate");
    mkdir(P("sub"), 0755);
    wd_sub = inotify_add_watch(fd, P("sub"), IN_ALL_EVENTS);
    rename(P("a"), P("sub/b"));
    drain(fd, "rename out");
    rename(P("sub/b"), P("c"));
    drain(fd, "rename in");
    link(P("c"), P("c2"));
    unlink(P("c2"));
    drain(fd, "link+unlink");
    close(creat(P("victim"), 0644));
    rename(P("c"), P("victim"));
    drain(fd, "rename over");
    unlink(P("victim"));
    drain(fd, "unlink");
    symlink("x", P("sym"));
    mknod(P("fifo"), S_IFIFO | 0644, 0);
    unlink(P("sym"));
    unlink(P("fifo"));
    drain(fd, "symlink+mknod");
    rename(P("sub"), P("sub2"));
    drain(fd, "rename dir");
    rmdir(P("sub2"));
    drain(fd, "rmdir");
    rename(P("plain"), P("plain2"));
    rename(P("plain2"), P("plain"));
    drain(fd, "cookies");
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    char db[4096];
    syscall(SYS_getdents64, d, db, sizeof db);
    close(d);
    d = open(dir, O_PATH);
    close(d);
    drain(fd, "opendir");

    /* read(2) size rules */
    close(creat(P("longname-xxxxxxxxxxxxxxxxx"), 0644));
    int need = -1;
    ioctl(fd, FIONREAD, &need);
    printf("fionread pending: %d\n", need);
    char ev[sizeof(struct inotify_event)];
    CHECK("read too small", read(fd, ev, sizeof ev));
    CHECK("read zero", read(fd, ev, 0));
    pr = poll(&pfd, 1, 0);
    printf("poll pending: %d revents=%#x\n", pr, pfd.revents);
    int ep = epoll_create1(0);
    struct epoll_event ee = {.events = EPOLLIN}, got;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ee);
    printf("epoll pending: %d\n", epoll_wait(ep, &got, 1, 0));
    drain(fd, "small");
    printf("epoll drained: %d\n", epoll_wait(ep, &got, 1, 0));
    unlink(P("longname-xxxxxxxxxxxxxxxxx"));
    drain(fd, "x");

    /* IN_MASK_ADD, IN_ONESHOT, IN_EXCL_UNLINK */
    inotify_rm_watch(fd, wd_dir);
    drain(fd, "rm dir");
    wd_dir = inotify_add_watch(fd, dir, IN_CREATE);
    inotify_add_watch(fd, dir, IN_DELETE | IN_MASK_ADD);
    close(creat(P("m"), 0644));
    unlink(P("m"));
    drain(fd, "mask add");
    inotify_add_watch(fd, dir, IN_DELETE);
    close(creat(P("m"), 0644));
    unlink(P("m"));
    drain(fd, "mask replace");
    inotify_rm_watch(fd, wd_dir);
    wd_dir = inotify_add_watch(fd, dir, IN_CREATE | IN_ONESHOT);
    close(creat(P("o1"), 0644));
    close(creat(P("o2"), 0644));
    drain(fd, "oneshot");
    CHECK("rm after oneshot", inotify_rm_watch(fd, wd_dir));
    wd_dir = inotify_add_watch(fd, dir, IN_MODIFY | IN_EXCL_UNLINK);
    f = open(P("o1"), O_WRONLY);
    write(f, "x", 1);
    unlink(P("o1"));
    write(f, "y", 1);
    close(f);
    drain(fd, "excl unlink");
    unlink(P("o2"));

    /* unlinked while open: IN_DELETE_SELF and IN_IGNORED at the last close */
    f = open(P("held"), O_CREAT | O_RDWR, 0644);
    wd_file = inotify_add_watch(fd, P("held"), IN_ALL_EVENTS);
    unlink(P("held"));
    drain(fd, "unlink open");
    write(f, "x", 1);
    int f2 = dup(f);
    close(f);
    drain(fd, "dup closed");
    close(f2);
    drain(fd, "last close");

    /* blocking read woken by another process's change */
    int bfd = inotify_init();
    wd_dir = inotify_add_watch(bfd, dir, IN_CREATE);
    if (fork() == 0) {
        usleep(100000);
        close(creat(P("late"), 0644));
        _exit(0);
    }
    char bb[256];
    ssize_t n = read(bfd, bb, sizeof bb);
    struct inotify_event *e = (struct inotify_event *)bb;
    printf("blocking read: %zd mask=%#x name=%s\n", n, n > 0 ? e->mask : 0, n > 0 ? e->name : "");
    close(bfd);
    unlink(P("late"));

    /* queue overflow */
    int ofd = inotify_init1(IN_NONBLOCK);
    wd_dir = inotify_add_watch(ofd, dir, IN_ATTRIB);
    /* alternate two different events: identical neighbours would coalesce */
    for (int i = 0; i < 16390; i++)
        chmod(i & 1 ? dir : P("plain"), 0755);
    int total = 0, overflow = 0, ignored = 0;
    char obuf[65536] __attribute__((aligned(8)));
    for (;;) {
        ssize_t m = read(ofd, obuf, sizeof obuf);
        if (m <= 0) break;
        for (char *p = obuf; p < obuf + m;) {
            struct inotify_event *q = (struct inotify_event *)p;
            total++;
            if (q->mask & IN_Q_OVERFLOW) { overflow++; printf("overflow wd=%d at %d\n", q->wd, total); }
            if (q->mask & IN_IGNORED) ignored++;
            p += sizeof *q + q->len;
        }
    }
    printf("overflow: total=%d overflow=%d\n", total, overflow);
    close(ofd);

    unlink(P("plain"));
    unlink(P("link"));
    unlink(P("dangling"));
    CHECK("rmdir scratch", rmdir(dir));
    drain(fd, "end");
    close(fd);
    printf("done\n");
    return 0;
}
