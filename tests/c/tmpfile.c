/* open(2) O_TMPFILE and naming the file with linkat(2): one line per fact,
 * the same natively and in the sandbox. argv[1]: a writable directory. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define RES(name, expr) do { errno = 0; long r_ = (long)(expr); \
    SAY("%s = %s%s", name, r_ < 0 ? "-1 " : "ok", r_ < 0 ? strerrorname_np(errno) : ""); } while (0)

static char dir[2048], buf[4096];

static const char *at(const char *name) {
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void show_link(const char *what, int fd) {
    char p[64], out[4096];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, out, sizeof out - 1);
    out[n < 0 ? 0 : n] = 0;
    /* "DIR/#INO (deleted)": the inode number is the host's or ours. */
    char *hash = strrchr(out, '#'), *sp = hash ? strchr(hash, ' ') : 0;
    SAY("%s: in dir %d, '#', suffix '%s'", what, hash && !strncmp(out, dir, strlen(dir)),
        sp ? sp : "(none)");
}

int main(int argc, char **argv) {
    snprintf(dir, sizeof dir, "%s/tmpfile-probe.%d", argc > 1 ? argv[1] : "/tmp", getpid());
    umask(022);
    if (mkdir(dir, 0755) < 0) { perror("mkdir"); return 2; }

    int fd = open(dir, O_TMPFILE | O_RDWR, 0666);
    RES("O_TMPFILE|O_RDWR", fd);
    show_link("link", fd);
    struct stat st;
    fstat(fd, &st);
    SAY("fstat: reg %d mode %o nlink %ld size %ld", S_ISREG(st.st_mode), st.st_mode & 07777,
        (long)st.st_nlink, (long)st.st_size);
    SAY("accmode rdwr: %d", (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR);
    RES("write", write(fd, "tmpdata", 7));
    char rb[16] = {0};
    RES("pread", pread(fd, rb, 7, 0));
    SAY("read back: %s", rb);
    RES("directory still empty (rmdir would fail otherwise)", 0);
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    RES("linkat via /proc/self/fd + AT_SYMLINK_FOLLOW", linkat(AT_FDCWD, p, AT_FDCWD, at("named"), AT_SYMLINK_FOLLOW));
    fstat(fd, &st);
    SAY("nlink after link: %ld", (long)st.st_nlink);
    int r = open(at("named"), O_RDONLY);
    memset(rb, 0, sizeof rb);
    RES("read by name", read(r, rb, 7));
    SAY("content: %s", rb);
    close(r);
    RES("second link of a named tmpfile", linkat(fd, "", AT_FDCWD, at("named2"), AT_EMPTY_PATH));
    unlink(at("named")); unlink(at("named2"));
    RES("link after all names are gone", linkat(fd, "", AT_FDCWD, at("again"), AT_EMPTY_PATH));
    close(fd);

    fd = open(dir, O_TMPFILE | O_WRONLY, 0600);
    RES("O_TMPFILE|O_WRONLY", fd);
    fstat(fd, &st);
    SAY("mode %o", st.st_mode & 07777);
    RES("linkat AT_EMPTY_PATH", linkat(fd, "", AT_FDCWD, at("empty"), AT_EMPTY_PATH));
    RES("linkat onto an existing name", linkat(fd, "", AT_FDCWD, at("empty"), AT_EMPTY_PATH));
    RES("linkat with empty path but no AT_EMPTY_PATH", linkat(fd, "", AT_FDCWD, at("x"), 0));
    unlink(at("empty"));
    close(fd);

    fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL, 0600);
    RES("O_TMPFILE|O_EXCL", fd);
    RES("linkat of an O_EXCL tmpfile (AT_EMPTY_PATH)", linkat(fd, "", AT_FDCWD, at("excl"), AT_EMPTY_PATH));
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    RES("linkat of an O_EXCL tmpfile (/proc/self/fd)", linkat(AT_FDCWD, p, AT_FDCWD, at("excl"), AT_SYMLINK_FOLLOW));
    close(fd);

    /* A plain file that was unlinked cannot get a name back. */
    fd = open(at("plain"), O_RDWR | O_CREAT, 0600);
    unlink(at("plain"));
    RES("linkat of an unlinked ordinary file", linkat(fd, "", AT_FDCWD, at("plain2"), AT_EMPTY_PATH));
    close(fd);

    /* Bad flags and paths. */
    RES("O_TMPFILE|O_RDONLY", open(dir, O_TMPFILE | O_RDONLY, 0600));
    RES("__O_TMPFILE without O_DIRECTORY", open(dir, (O_TMPFILE & ~O_DIRECTORY) | O_RDWR, 0600));
    RES("O_TMPFILE|O_CREAT", open(dir, O_TMPFILE | O_CREAT | O_RDWR, 0600));
    RES("O_TMPFILE|O_PATH (O_PATH drops the rest)", (fd = open(dir, O_TMPFILE | O_PATH | O_RDWR, 0600)));
    show_link("O_TMPFILE|O_PATH opens the directory itself", fd);
    close(fd);
    fd = open(at("reg"), O_RDWR | O_CREAT, 0600);
    close(fd);
    RES("O_TMPFILE on a regular file", open(at("reg"), O_TMPFILE | O_RDWR, 0600));
    unlink(at("reg"));
    RES("O_TMPFILE on a missing directory", open(at("nodir"), O_TMPFILE | O_RDWR, 0600));
    RES("O_TMPFILE on an empty path", open("", O_TMPFILE | O_RDWR, 0600));
    RES("O_TMPFILE bad path pointer", open((const char *)8, O_TMPFILE | O_RDWR, 0600));
    RES("O_TMPFILE on /proc", open("/proc", O_TMPFILE | O_RDWR, 0600));
    RES("O_TMPFILE|O_TRUNC", (fd = open(dir, O_TMPFILE | O_RDWR | O_TRUNC, 0600)));
    close(fd);
    int dfd = open(dir, O_DIRECTORY | O_RDONLY);
    RES("openat(dirfd, \".\", O_TMPFILE)", (fd = openat(dfd, ".", O_TMPFILE | O_RDWR, 0600)));
    RES("linkat to the dirfd", linkat(fd, "", dfd, "viadirfd", AT_EMPTY_PATH));
    RES("unlinkat it", unlinkat(dfd, "viadirfd", 0));
    close(fd); close(dfd);
    RES("rmdir (nothing left behind)", rmdir(dir));
    SAY("done");
    return 0;
}
