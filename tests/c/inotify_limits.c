/* inotify limits in the sandbox (natively they are per host user, shared
 * with the host's own processes, so no native comparison): EMFILE past
 * max_user_instances, ENOSPC past max_user_watches, both as
 * /proc/sys/fs/inotify says; closing an instance gives both back. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

static long proc(const char *name)
{
    char p[128], b[32] = {0};
    snprintf(p, sizeof p, "/proc/sys/fs/inotify/%s", name);
    int fd = open(p, O_RDONLY);
    if (fd < 0 || read(fd, b, sizeof b - 1) <= 0) return -1;
    close(fd);
    return atol(b);
}

int main(int argc, char **argv)
{
    long inst = proc("max_user_instances"), watches = proc("max_user_watches");
    printf("max_queued_events=%ld max_user_instances=%ld max_user_watches=%ld\n",
           proc("max_queued_events"), inst, watches);
    static int fds[4096];
    int n = 0;
    for (; n < 4096; n++) {
        fds[n] = inotify_init();
        if (fds[n] < 0) break;
    }
    printf("instances: %d then %s\n", n, strerror(errno));
    close(fds[n - 1]);
    int again = inotify_init();
    printf("after close: %s\n", again >= 0 ? "ok" : strerror(errno));
    /* watches: distinct inodes per instance, spread over all instances */
    const char *dir = argv[1];
    int files = (int)(watches / n) + 2;
    char p[256];
    for (int i = 0; i < files; i++) {
        snprintf(p, sizeof p, "%s/w%d", dir, i);
        close(creat(p, 0644));
    }
    fds[n - 1] = again;
    long added = 0;
    int err = 0;
    for (int k = 0; k < n && !err; k++)
        for (int i = 0; i < files; i++) {
            snprintf(p, sizeof p, "%s/w%d", dir, i);
            if (inotify_add_watch(fds[k], p, IN_MODIFY) < 0) { err = errno; break; }
            added++;
        }
    printf("watches: %ld then %s\n", added, strerror(err));
    close(fds[0]);
    snprintf(p, sizeof p, "%s/extra", dir);
    close(creat(p, 0644));
    printf("after close: %s\n", inotify_add_watch(fds[1], p, IN_ATTRIB) > 0 ? "ok" : strerror(errno));
    unlink(p);
    for (int i = 0; i < files; i++) {
        snprintf(p, sizeof p, "%s/w%d", dir, i);
        unlink(p);
    }
    printf("done\n");
    return 0;
}
