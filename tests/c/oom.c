/* Memory limits: oom MB touches MB of private memory, forks, and the child
 * writes all of it again (each page copy-on-write: new pages it needs).
 * Prints the child's fate. Under `pyvisor run --memory` below twice MB, the
 * child is killed with SIGKILL (Linux's OOM killer) and the parent goes on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t mb = argc > 1 ? strtoul(argv[1], 0, 0) : 32;
    size_t n = mb << 20;
    char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("mmap %s\n", strerror(errno));
        return 1;
    }
    memset(p, 1, n);
    /* A mapping bigger than any limit fails up front. */
    void *huge = mmap(0, (size_t)1 << 40, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    printf("huge mmap %s\n", huge == MAP_FAILED ? strerror(errno) : "ok");
    if (huge != MAP_FAILED)
        munmap(huge, (size_t)1 << 40);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        memset(p, 2, n);
        printf("child wrote %zu MB\n", mb);
        return 0;
    }
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st))
        printf("child killed by signal %d\n", WTERMSIG(st));
    else
        printf("child exited %d\n", WEXITSTATUS(st));
    printf("parent still has %d\n", p[n - 1]);
    return 0;
}
