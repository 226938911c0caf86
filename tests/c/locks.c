/* flock(2), POSIX record locks and OFD locks (fcntl(2)) between processes:
 * one line per fact, the same natively and in the sandbox. argv[1]: a
 * directory to make the lock files in. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define RES(name, expr) do { errno = 0; long r_ = (long)(expr); \
    SAY("%s = %s%s", name, r_ < 0 ? "-1 " : "ok", r_ < 0 ? strerrorname_np(errno) : ""); } while (0)

static char path[4096];

static void msleep(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, 0);
}

static int lk(int fd, int cmd, short type, short whence, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = whence, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

/* F_GETLK (or F_OFD_GETLK) over [start, start+len): what blocks it. */
static void getlk(const char *name, int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, cmd, &fl) < 0) {
        SAY("%s = -1 %s", name, strerrorname_np(errno));
        return;
    }
    const char *t = fl.l_type == F_RDLCK ? "RD" : fl.l_type == F_WRLCK ? "WR" :
                    fl.l_type == F_UNLCK ? "UN" : "?";
    if (fl.l_type == F_UNLCK)
        SAY("%s = UN", name);
    else
        SAY("%s = %s start=%ld len=%ld whence=%d pid=%s", name, t, (long)fl.l_start, (long)fl.l_len,
            fl.l_whence, fl.l_pid == -1 ? "-1" : fl.l_pid == getppid() ? "parent" :
            fl.l_pid == getpid() ? "self" : "other");
}

static void on_alarm(int sig) { (void)sig; }

static void no_restart_alarm(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, 0);
}

static int reopen(int flags) { return open(path, flags); }

/* A child runs fn(); the parent waits for it and says nothing unless it failed. */
static void in_child(void (*fn)(void)) {
    pid_t pid = fork();
    if (pid == 0) { fn(); fflush(stdout); _exit(0); }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) SAY("child failed: %x", st);
}

/* --- flock --------------------------------------------------------------- */

static void c_flock_other(void) {
    int fd = reopen(O_RDONLY);
    RES("child flock EX|NB while parent has EX", flock(fd, LOCK_EX | LOCK_NB));
    RES("child flock SH|NB while parent has EX", flock(fd, LOCK_SH | LOCK_NB));
}

static void c_flock_shared_ok(void) {
    int fd = reopen(O_RDONLY);
    RES("child flock SH|NB while parent has SH", flock(fd, LOCK_SH | LOCK_NB));
    RES("child flock EX|NB while both have SH", flock(fd, LOCK_EX | LOCK_NB));
}

static int inherited_fd;
static void c_flock_inherited(void) {
    RES("child flock EX|NB on inherited fd (same description)", flock(inherited_fd, LOCK_EX | LOCK_NB));
    RES("child LOCK_UN on inherited fd", flock(inherited_fd, LOCK_UN));
}

static void c_flock_free(void) {
    int fd = reopen(O_RDONLY);
    RES("child flock EX|NB now free", flock(fd, LOCK_EX | LOCK_NB));
}

static void c_flock_busy(void) {
    int fd = reopen(O_RDONLY);
    RES("child flock EX|NB still busy", flock(fd, LOCK_EX | LOCK_NB));
}

static void c_flock_eintr(void) {
    int fd = reopen(O_RDONLY);
    no_restart_alarm();
    alarm(1);
    RES("child blocking flock EX interrupted by SIGALRM", flock(fd, LOCK_EX));
}

static void test_flock(void) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    RES("flock EX", flock(fd, LOCK_EX));
    in_child(c_flock_other);
    RES("flock EX again (own lock)", flock(fd, LOCK_EX | LOCK_NB));
    inherited_fd = fd;
    in_child(c_flock_inherited);
    in_child(c_flock_free);
    RES("flock SH", flock(fd, LOCK_SH));
    in_child(c_flock_shared_ok);
    RES("convert SH -> EX", flock(fd, LOCK_EX | LOCK_NB));
    in_child(c_flock_other);
    in_child(c_flock_eintr);

    /* Blocking: the child waits until the parent unlocks. */
    int p[2];
    if (pipe(p) < 0) exit(2);
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = reopen(O_RDONLY);
        char c = 'w';
        if (write(p[1], &c, 1) != 1) _exit(3);
        int r = flock(cfd, LOCK_EX);
        c = r == 0 ? 'g' : 'e';
        if (write(p[1], &c, 1) != 1) _exit(3);
        _exit(0);
    }
    char c;
    if (read(p[0], &c, 1) != 1) exit(2);
    msleep(200);
    SAY("child blocked: %s", fcntl(p[0], F_SETFL, O_NONBLOCK) == 0 && read(p[0], &c, 1) < 0
        && errno == EAGAIN ? "yes" : "no");
    fcntl(p[0], F_SETFL, 0);
    RES("LOCK_UN wakes the waiter", flock(fd, LOCK_UN));
    if (read(p[0], &c, 1) != 1) exit(2);
    SAY("child got the lock: %c", c);
    waitpid(pid, 0, 0);
    close(p[0]); close(p[1]);

    /* Released with the description's last close, not before. */
    RES("flock EX for close test", flock(fd, LOCK_EX));
    int d = dup(fd);
    close(fd);
    in_child(c_flock_busy);
    close(d);
    in_child(c_flock_free);

    fd = reopen(O_RDONLY);
    RES("flock op 0", flock(fd, 0));
    RES("flock op SH|EX", flock(fd, LOCK_SH | LOCK_EX));
    RES("flock op NB alone", flock(fd, LOCK_NB));
    RES("flock op 16", flock(fd, 16));
    RES("flock bad fd", flock(999, LOCK_EX));
    RES("flock -1", flock(-1, LOCK_EX));
    int pfd = open(path, O_PATH);
    RES("flock O_PATH fd", flock(pfd, LOCK_EX));
    RES("flock on a read-only fd", flock(fd, LOCK_EX | LOCK_NB));
    RES("flock LOCK_UN without a lock", flock(pfd >= 0 ? fd : fd, LOCK_UN));
    RES("flock LOCK_UN again", flock(fd, LOCK_UN));
    int pp[2];
    if (pipe(pp) < 0) exit(2);
    RES("flock on a pipe", flock(pp[0], LOCK_EX | LOCK_NB));
    close(pp[0]); close(pp[1]); close(pfd); close(fd);
}

/* --- POSIX record locks ----------------------------------------------------- */

static void c_posix_view(void) {
    int fd = reopen(O_RDWR);
    getlk("child GETLK WR [5,6)", fd, F_GETLK, F_WRLCK, 5, 1);
    getlk("child GETLK RD [5,6)", fd, F_GETLK, F_RDLCK, 5, 1);
    getlk("child GETLK WR [10,20)", fd, F_GETLK, F_WRLCK, 10, 10);
    RES("child SETLK WR [5,6) conflicts", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 5, 1));
    RES("child SETLK WR [10,20) free", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 10, 10));
}

static void c_posix_split(void) {
    int fd = reopen(O_RDWR);
    getlk("child GETLK after split [0,100)", fd, F_GETLK, F_WRLCK, 0, 100);
    getlk("child GETLK after split [40,60)", fd, F_GETLK, F_WRLCK, 40, 20);
    getlk("child GETLK after split [50,100)", fd, F_GETLK, F_WRLCK, 50, 50);
    getlk("child GETLK RD over RD [0,10)", fd, F_GETLK, F_RDLCK, 0, 10);
}

static void c_posix_merge(void) {
    int fd = reopen(O_RDWR);
    getlk("child GETLK merged", fd, F_GETLK, F_WRLCK, 0, 1);
    getlk("child GETLK to EOF", fd, F_GETLK, F_WRLCK, 1000, 1);
    getlk("child GETLK negative len", fd, F_GETLK, F_WRLCK, 200, 100);
}

static void c_posix_inherit(void) {
    int fd = reopen(O_RDWR);
    getlk("child GETLK (parent's lock, not inherited)", fd, F_GETLK, F_WRLCK, 0, 1);
    RES("child SETLK same range", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
}

static void c_posix_free(void) {
    int fd = reopen(O_RDWR);
    getlk("child GETLK after parent closed another fd", fd, F_GETLK, F_WRLCK, 0, 10);
}

static void c_posix_eintr(void) {
    int fd = reopen(O_RDWR);
    no_restart_alarm();
    alarm(1);
    RES("child SETLKW interrupted by SIGALRM", lk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 1));
}

static void test_posix(void) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    RES("SETLK WR [0,10)", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    getlk("own GETLK sees nothing", fd, F_GETLK, F_WRLCK, 0, 10);
    in_child(c_posix_view);
    RES("upgrade own lock RD [0,5)", lk(fd, F_SETLK, F_RDLCK, SEEK_SET, 0, 5));
    RES("unlock [0,10)", lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 10));

    RES("SETLK WR [0,100)", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 100));
    RES("unlock middle [40,60)", lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 40, 20));
    RES("RD [0,10) inside", lk(fd, F_SETLK, F_RDLCK, SEEK_SET, 0, 10));
    in_child(c_posix_split);
    RES("unlock all (len 0)", lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 0));

    RES("RD [0,10)", lk(fd, F_SETLK, F_RDLCK, SEEK_SET, 0, 10));
    RES("RD [10,20)", lk(fd, F_SETLK, F_RDLCK, SEEK_SET, 10, 10));
    RES("WR from 1000 to EOF", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 1000, 0));
    RES("WR start 300 len -50", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 300, -50));
    in_child(c_posix_merge);
    RES("unlock all", lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 0));

    RES("WR [0,1) for fork", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    in_child(c_posix_inherit);
    int fd2 = reopen(O_RDONLY);
    close(fd2);
    in_child(c_posix_free);

    /* SEEK_CUR and SEEK_END */
    if (ftruncate(fd, 50) < 0) exit(2);
    lseek(fd, 20, SEEK_SET);
    RES("WR SEEK_CUR+5 len 5", lk(fd, F_SETLK, F_WRLCK, SEEK_CUR, 5, 5));
    RES("WR SEEK_END-10 len 10", lk(fd, F_SETLK, F_WRLCK, SEEK_END, -10, 10));
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = reopen(O_RDWR);
        getlk("child GETLK SEEK_CUR lock", cfd, F_GETLK, F_WRLCK, 0, 40);
        getlk("child GETLK SEEK_END lock", cfd, F_GETLK, F_WRLCK, 30, 100);
        _exit(0);
    }
    waitpid(pid, 0, 0);
    RES("unlock all", lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 0));

    /* F_SETLKW waits for the holder; EDEADLK on a cycle. */
    RES("WR [0,1)", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    int p[2];
    if (pipe(p) < 0) exit(2);
    pid = fork();
    if (pid == 0) {
        int cfd = reopen(O_RDWR);
        char c = 'r';
        RES("child WR [1,2)", lk(cfd, F_SETLK, F_WRLCK, SEEK_SET, 1, 1));
        if (write(p[1], &c, 1) != 1) _exit(3);
        int r = lk(cfd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 1);
        SAY("child SETLKW [0,1) = %s", r == 0 ? "ok" : strerrorname_np(errno));
        _exit(0);
    }
    char c;
    if (read(p[0], &c, 1) != 1) exit(2);
    msleep(200);
    RES("parent SETLKW [1,2) would deadlock", lk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 1, 1));
    RES("parent SETLK [1,2) conflicts", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 1, 1));
    int un = lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 1);
    waitpid(pid, 0, 0);
    RES("parent unlocks [0,1) (after the child reported)", un);
    close(p[0]); close(p[1]);

    RES("WR [0,1) again", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    in_child(c_posix_eintr);
    /* With SA_RESTART the interrupted F_SETLKW is restarted and gets the lock. */
    pid = fork();
    if (pid == 0) {
        int cfd = reopen(O_RDWR);
        struct sigaction ra;
        memset(&ra, 0, sizeof ra);
        ra.sa_handler = on_alarm;
        ra.sa_flags = SA_RESTART;
        sigaction(SIGALRM, &ra, 0);
        alarm(1);
        int r = lk(cfd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 1);
        SAY("child SETLKW with SA_RESTART across SIGALRM = %s", r == 0 ? "ok" : strerrorname_np(errno));
        _exit(0);
    }
    msleep(1500);
    int un2 = lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 1);
    waitpid(pid, 0, 0);
    RES("parent unlocked after the alarm (after the child reported)", un2);
    RES("WR [0,1) once more", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    /* A waiter killed in F_SETLKW and flock(LOCK_EX) leaves nothing behind. */
    RES("flock EX for the kill test", flock(fd, LOCK_EX));
    pid = fork();
    if (pid == 0) {
        int cfd = reopen(O_RDWR);
        if (fork() == 0) { flock(reopen(O_RDONLY), LOCK_EX); _exit(0); }
        lk(cfd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 1);
        _exit(0);
    }
    msleep(200);
    kill(pid, SIGKILL);
    int kst;
    waitpid(pid, &kst, 0);
    SAY("killed waiter: signaled %d sig %d", WIFSIGNALED(kst), WTERMSIG(kst));
    RES("flock UN (the grandchild takes it and exits)", flock(fd, LOCK_UN));
    msleep(100);
    RES("unlock all", lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 0));

    /* Bad input. */
    struct flock fl = {.l_type = F_WRLCK};
    RES("SETLK bad type", lk(fd, F_SETLK, 7, SEEK_SET, 0, 1));
    RES("GETLK bad type", lk(fd, F_GETLK, 7, SEEK_SET, 0, 1));
    RES("GETLK F_UNLCK", lk(fd, F_GETLK, F_UNLCK, SEEK_SET, 0, 1));
    RES("SETLK bad whence", lk(fd, F_SETLK, F_WRLCK, 3, 0, 1));
    RES("SETLK start < 0", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, -1, 1));
    RES("SETLK neg len before 0", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 5, -10));
    RES("SETLK overflow", lk(fd, F_SETLK, F_WRLCK, SEEK_END, 0x7fffffffffffffffL, 1));
    RES("SETLK len overflow", lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 10, 0x7fffffffffffffffL));
    RES("SETLK bad pointer", fcntl(fd, F_SETLK, (void *)8));
    RES("GETLK bad pointer", fcntl(fd, F_GETLK, (void *)8));
    RES("SETLK bad fd", fcntl(999, F_SETLK, &fl));
    int ro = reopen(O_RDONLY), wo = reopen(O_WRONLY), pfd = open(path, O_PATH);
    RES("SETLK WR on O_RDONLY", lk(ro, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    RES("SETLK RD on O_WRONLY", lk(wo, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
    RES("SETLK UN on O_RDONLY", lk(ro, F_SETLK, F_UNLCK, SEEK_SET, 0, 1));
    RES("GETLK WR on O_RDONLY", lk(ro, F_GETLK, F_WRLCK, SEEK_SET, 0, 1));
    RES("SETLK on O_PATH", lk(pfd, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
    RES("GETLK on O_PATH", lk(pfd, F_GETLK, F_RDLCK, SEEK_SET, 0, 1));
    close(ro); close(wo); close(pfd); close(fd);
}

/* --- OFD locks -------------------------------------------------------------- */

static void test_ofd(void) {
    int a = open(path, O_RDWR), b = open(path, O_RDWR);
    RES("OFD_SETLK WR [0,10) on a", lk(a, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    RES("OFD_SETLK WR [5,6) on b (same process)", lk(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 5, 1));
    getlk("OFD_GETLK from b", b, F_OFD_GETLK, F_RDLCK, 0, 100);
    getlk("OFD_GETLK from a (own)", a, F_OFD_GETLK, F_WRLCK, 0, 100);
    RES("POSIX SETLK on b vs OFD lock", lk(b, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
    getlk("POSIX GETLK on b sees OFD", b, F_GETLK, F_WRLCK, 0, 1);
    int c = open(path, O_RDONLY);
    close(c);
    RES("OFD lock survives close of another fd", lk(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 5, 1));
    int d = dup(a);
    close(a);
    RES("OFD lock survives close of a dup", lk(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 5, 1));
    pid_t pid = fork();
    if (pid == 0) {
        RES("child OFD_SETLK on inherited description", lk(d, F_OFD_SETLK, F_WRLCK, SEEK_SET, 5, 1));
        _exit(0);
    }
    waitpid(pid, 0, 0);
    close(d);
    RES("OFD lock gone at last close", lk(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 5, 1));
    RES("POSIX lock of this process vs b's OFD lock", ({ int e = open(path, O_RDWR);
        int r = lk(e, F_SETLK, F_WRLCK, SEEK_SET, 5, 1); int s = errno; close(e); errno = s; r; }));
    /* l_pid must be 0. */
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1, .l_pid = 1};
    RES("OFD_SETLK l_pid != 0", fcntl(b, F_OFD_SETLK, &fl));
    RES("OFD_SETLKW l_pid != 0", fcntl(b, F_OFD_SETLKW, &fl));
    RES("OFD_GETLK l_pid != 0", fcntl(b, F_OFD_GETLK, &fl));
    fl.l_pid = 0;
    fl.l_type = F_UNLCK;
    RES("OFD_GETLK F_UNLCK", fcntl(b, F_OFD_GETLK, &fl));
    SAY("OFD_GETLK F_UNLCK gives type %d", fl.l_type);
    RES("OFD_GETLK bad type", lk(b, F_OFD_GETLK, 3, SEEK_SET, 0, 1));
    RES("OFD_SETLK bad whence", lk(b, F_OFD_SETLK, F_RDLCK, 9, 0, 1));
    RES("OFD_SETLK UN", fcntl(b, F_OFD_SETLK, &fl));

    /* OFD_SETLKW waits for another description. */
    RES("OFD WR on b", lk(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    pid = fork();
    if (pid == 0) {
        int e = open(path, O_RDWR);
        no_restart_alarm();
        alarm(1);
        RES("child OFD_SETLKW interrupted", lk(e, F_OFD_SETLKW, F_WRLCK, SEEK_SET, 0, 1));
        _exit(0);
    }
    waitpid(pid, 0, 0);
    pid = fork();
    if (pid == 0) {
        int e = open(path, O_RDWR);
        RES("child OFD_SETLKW granted after unlock", lk(e, F_OFD_SETLKW, F_WRLCK, SEEK_SET, 0, 1));
        _exit(0);
    }
    msleep(200);
    int un = lk(b, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 1);
    waitpid(pid, 0, 0);
    RES("OFD UN on b (after the child reported)", un);
    close(b);
}

int main(int argc, char **argv) {
    snprintf(path, sizeof path, "%s/locks-probe.%d", argc > 1 ? argv[1] : "/tmp", getpid());
    test_flock();
    test_posix();
    test_ofd();
    unlink(path);
    SAY("done");
    return 0;
}
