/* Memory limits: oom MB touches MB of private memory, forks, and the child
 * writes all of it again (each page copy-on-write: new pages it needs).
 * Prints the child's fate. Under `pyvisor run --memory` below twice MB, the
 * child is killed with SIGKILL (Linux's OOM killer) and the parent goes on.
 * The child starts writing only once the parent has copied the stack pages
 * it still writes (its own copy-on-write faults), so which process meets
 * the bound first does not depend on how the two are scheduled. */
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
    int go[2];
    if (pipe(go) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        if (read(go[0], &c, 1) != 1)
            return 1;
        memset(p, 2, n);
        printf("child wrote %zu MB\n", mb);
        return 0;
    }
    volatile char stack[65536];          /* the frames below, copied now */
    memset((char *)stack, 0, sizeof stack);
    if (write(go[1], "g", 1) != 1)
        return 1;
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st))
        printf("child killed by signal %d\n", WTERMSIG(st));
    else
        printf("child exited %d\n", WEXITSTATUS(st));
    printf("parent still has %d\n", p[n - 1]);
    return 0;
}
