/* Escape attempts, run inside the sandbox: each prints "name: outcome".
 * The test (tests/test_escape.py) compares every line with what Linux-as-a-
 * sandbox must answer and checks that the host is unchanged: the files
 * under DIR, the canary process CANARY (a host pid), the host loopback
 * listener on PORT.
 *
 *   escape DIR CANARY PORT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* The ptrace stub's code (its ELF header is the page below, setup.py) and its
 * control page (platform/ptrace.py), above the application's range. */
#define STUB_PAGE 0x7fffffe01000UL
#define CTRL_PAGE 0x7fffffe02000UL

static const char *dir;

static void say(const char *name, long r)
{
    if (r < 0)
        printf("%s: %s\n", name, strerrorname_np(errno));
    else
        printf("%s: ok\n", name);
    fflush(stdout);
}

static char *at(const char *fmt, const char *a)
{
    static char buf[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], fmt, dir, a);
    return buf[i];
}

static long write_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    long r = write(fd, "pwned\n", 6);
    close(fd);
    return r;
}

/* Run fn in a child; print how the child ended. */
static void in_child(const char *name, void (*fn)(void))
{
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st))
        printf("%s: signal %s\n", name, sigabbrev_np(WTERMSIG(st)));
    else
        printf("%s: exit %d\n", name, WEXITSTATUS(st));
    fflush(stdout);
}

static void write_stub(void) { *(volatile char *)STUB_PAGE = 0xcc; }
static void read_ctrl(void)
{
    /* Nothing of the Sentry's may be left there: all zero, or no access. */
    const volatile uint64_t *p = (const uint64_t *)CTRL_PAGE;
    for (int i = 0; i < 512; i++)
        if (p[i])
            _exit(3);
}
static void write_ctrl(void) { *(volatile uint64_t *)CTRL_PAGE = SYS_execve; }

static void int80_getpid(void)
{
    long r;
    /* eax 20 is getpid in the 32-bit ABI (writev in the 64-bit one). */
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    _exit(r == -ENOSYS ? 0 : 1);
}

static void kill_all(void)
{
    /* Everything this process may signal, except itself and init. */
    _exit(kill(-1, SIGKILL) == 0 ? 0 : 1);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: escape DIR CANARY PORT\n");
        return 2;
    }
    dir = argv[1];
    pid_t canary = atoi(argv[2]);
    int port = atoi(argv[3]);

    /* Files: every write lands in the sandbox's overlay, none on the host. */
    say("write host file", write_file(at("%s/%s", "host_file")));
    say("create host file", write_file(at("%s/%s", "new_file")));
    say("dotdot", write_file(at("/../../..%s/%s", "host_file")));
    say("proc self root", write_file(at("/proc/self/root%s/%s", "host_file")));
    say("proc 1 root", write_file(at("/proc/1/root%s/%s", "host_file")));
    say("symlink out", symlink("/etc/passwd", at("%s/%s", "link")));
    say("write through symlink", write_file(at("%s/%s", "link")));
    say("hard link", link(at("%s/%s", "host_file"), at("%s/%s", "hard")));
    say("write through hard link", write_file(at("%s/%s", "hard")));
    say("chmod host file", chmod(at("%s/%s", "host_file"), 04777));
    say("unlink host file", unlink(at("%s/%s", "keep")));
    say("rename host file", rename(at("%s/%s", "host_file"), at("%s/%s", "moved")));

    /* Processes: host pids are not visible. */
    say("ptrace host pid", ptrace(PTRACE_ATTACH, canary, 0, 0));
    say("kill host pid", kill(canary, SIGKILL));
    pid_t victim = fork();
    if (victim == 0) {
        pause();
        _exit(0);
    }
    in_child("kill -1", kill_all);
    int vst;
    waitpid(victim, &vst, 0);
    printf("kill -1 victim: %s\n", WIFSIGNALED(vst) && WTERMSIG(vst) == SIGKILL ? "killed" : "spared");
    say("process_vm_writev host pid", process_vm_writev(canary, &(struct iovec){"x", 1}, 1,
                                                       &(struct iovec){(void *)0x400000, 1}, 1, 0));
    say("open host pid mem", open(at("/proc/%.0s%s/mem", argv[2]), O_RDWR));

    /* Network: the host's loopback listener is not the sandbox's loopback. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    say("connect host listener", connect(s, (struct sockaddr *)&sin, sizeof sin));
    close(s);
    say("netlink socket", socket(AF_NETLINK, SOCK_RAW, 0));
    say("packet socket", socket(AF_PACKET, SOCK_RAW, 0));
    say("raw socket", socket(AF_INET, SOCK_RAW, IPPROTO_RAW));

    /* Kernel interfaces the Sentry does not offer. */
    say("mount", mount("none", "/mnt", "tmpfs", 0, 0));
    say("unshare net", unshare(CLONE_NEWNET));
    say("setns", setns(0, CLONE_NEWNET));
    union bpf_attr attr = {0};
    say("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
    struct perf_event_attr pe = {.type = PERF_TYPE_SOFTWARE, .size = sizeof pe};
    say("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
    char params[120] = {0};
    say("io_uring_setup", syscall(SYS_io_uring_setup, 4, params));
    say("userfaultfd", syscall(SYS_userfaultfd, 0));

    /* The stub's pages in the application's address space. */
    say("mmap over stub", (long)mmap((void *)STUB_PAGE, 4096, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == -1 ? -1 : 0);
    say("mprotect stub", mprotect((void *)STUB_PAGE, 4096, PROT_READ | PROT_WRITE));
    say("munmap stub", munmap((void *)STUB_PAGE, 8192));
    in_child("write stub page", write_stub);
    in_child("write control page", write_ctrl);
    in_child("read control page", read_ctrl);
    in_child("int 0x80", int80_getpid);
    say("still alive", getpid() == 1 ? 0 : -1);
    return 0;
}
