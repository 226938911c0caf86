/* iovec edge cases for readv/writev (pipes, a file) and sendmsg/recvmsg
 * (unix stream and datagram pairs, a TCP loopback pair): count limits,
 * lengths whose sum overflows, a bad iovec array, a bad buffer after a good
 * one. Each line prints the return value, errno and, where it matters, what
 * a following read finds (was the data consumed?). tests/programs/test_iovec.py
 * compares the lines with a native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static char buf[64];
static char big[8192];
static struct iovec many[1026];
static volatile int minus_one = -1;
#define BAD ((void *)8)

static void show(const char *what, long r)
{
    if (r < 0)
        printf("%s = -1 %s\n", what, strerror(errno));
    else
        printf("%s = %ld\n", what, r);
}

/* Read what is left in fd (non-blocking) and print its length. */
static void left(const char *what, int fd)
{
    char tmp[64];
    long r = read(fd, tmp, sizeof tmp);
    if (r < 0 && errno == EAGAIN)
        r = 0;
    printf("%s: left %ld\n", what, r);
}

static void drain(int fd)
{
    long n = 0, r;
    while ((r = read(fd, big, sizeof big)) > 0)
        n += r;
    printf("drained %ld\n", n);
}

static void pipes(void)
{
    int p[2];
    struct iovec iov[2];
    pipe2(p, O_NONBLOCK);

    show("writev 1025", writev(p[1], many, 1025));
    show("readv 1025", readv(p[0], many, 1025));
    show("writev -1", writev(p[1], many, minus_one));
    show("readv 1024 zero", readv(p[0], many, 1024));
    show("writev bad array", writev(p[1], BAD, 1));
    write(p[1], "hello", 5);
    show("readv bad array", readv(p[0], BAD, 1));
    left("after readv bad array", p[0]);

    iov[0] = (struct iovec){buf, (size_t)1 << 63};
    write(p[1], "hello", 5);
    show("readv len sign bit", readv(p[0], iov, 1));
    left("after readv len sign bit", p[0]);
    show("writev len sign bit", writev(p[1], iov, 1));

    iov[0] = (struct iovec){buf, (size_t)1 << 62};
    iov[1] = (struct iovec){buf, (size_t)1 << 62};
    write(p[1], "hello", 5);
    show("readv sum overflows", readv(p[0], iov, 2));
    left("after readv sum overflows", p[0]);

    iov[0] = (struct iovec){buf, 0x80000000UL};
    write(p[1], "hello", 5);
    show("readv len over INT_MAX", readv(p[0], iov, 1));
    left("after readv len over INT_MAX", p[0]);

    iov[0] = (struct iovec){buf, 2};
    iov[1] = (struct iovec){BAD, 10};
    write(p[1], "hello", 5);
    show("readv good then bad", readv(p[0], iov, 2));
    left("after readv good then bad", p[0]);
    memcpy(buf, "abcdefgh", 8);
    show("writev good then bad", writev(p[1], iov, 2));
    left("after writev good then bad", p[0]);
    iov[0] = (struct iovec){(void *)0xffff800000000000UL, 0};
    show("writev zero length at kernel address", writev(p[1], iov, 1));
    iov[0] = (struct iovec){big, 5000};
    show("writev 5000 then bad", writev(p[1], iov, 2));
    drain(p[0]);
    iov[0] = (struct iovec){big, 8192};
    show("writev 8192 then bad", writev(p[1], iov, 2));
    drain(p[0]);
    write(p[1], big, 6000);
    iov[0] = (struct iovec){big, 5000};
    show("readv 5000 then bad", readv(p[0], iov, 2));
    drain(p[0]);
    /* The fault inside the second iovec: its first 2000 bytes are mapped. */
    char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(two + 4096, 4096);
    iov[0] = (struct iovec){big, 3000};
    iov[1] = (struct iovec){two + 4096 - 2000, 4000};
    show("writev 3000 then half-mapped", writev(p[1], iov, 2));
    drain(p[0]);
    write(p[1], big, 6000);
    show("readv 3000 then half-mapped", readv(p[0], iov, 2));
    drain(p[0]);
    iov[0] = (struct iovec){big, 1000};
    show("writev 1000 then half-mapped", writev(p[1], iov, 2));
    drain(p[0]);
    close(p[0]);
    close(p[1]);
}

static void files(void)
{
    char path[] = "/tmp/iovec-probe-XXXXXX";
    struct iovec iov[2];
    int fd = mkstemp(path);
    unlink(path);
    memcpy(buf, "abcdefgh", 8);
    iov[0] = (struct iovec){buf, 2};
    iov[1] = (struct iovec){BAD, 10};
    show("file writev good then bad", writev(fd, iov, 2));
    printf("file size %ld\n", (long)lseek(fd, 0, SEEK_END));
    iov[0] = (struct iovec){big, 5000};
    show("file writev 5000 then bad", writev(fd, iov, 2));
    printf("file size %ld\n", (long)lseek(fd, 0, SEEK_END));
    lseek(fd, 0, SEEK_SET);
    iov[0] = (struct iovec){buf, 1};
    show("file readv good then bad", readv(fd, iov, 2));
    printf("file offset %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    lseek(fd, 0, SEEK_SET);
    iov[0] = (struct iovec){big, 4097};
    show("file readv 4097 then bad", readv(fd, iov, 2));
    printf("file offset %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    show("file preadv good then bad", preadv(fd, iov, 2, 1));
    close(fd);
}

static long sendv(int fd, struct iovec *iov, size_t n)
{
    struct msghdr m = {0};
    m.msg_iov = iov;
    m.msg_iovlen = n;
    return sendmsg(fd, &m, MSG_DONTWAIT);
}

static long recvv(int fd, struct iovec *iov, size_t n)
{
    struct msghdr m = {0};
    m.msg_iov = iov;
    m.msg_iovlen = n;
    return recvmsg(fd, &m, MSG_DONTWAIT);
}

/* A connected TCP pair over loopback, both ends non-blocking. */
static void tcp_pair(int s[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    bind(l, (struct sockaddr *)&a, sizeof a);
    getsockname(l, (struct sockaddr *)&a, &len);
    listen(l, 1);
    s[0] = socket(AF_INET, SOCK_STREAM, 0);
    connect(s[0], (struct sockaddr *)&a, sizeof a);
    s[1] = accept(l, NULL, NULL);
    close(l);
    fcntl(s[0], F_SETFL, O_NONBLOCK);
    fcntl(s[1], F_SETFL, O_NONBLOCK);
}

/* Let loopback deliver what was just sent. */
static void settle(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    poll(&p, 1, 1000);
}

/* Queue "hello" on s[1], receive it into iov (recvmsg, or readv), and show
 * the result and what stayed queued. */
static void receive(int s[2], const char *name, const char *label, struct iovec *iov,
                    size_t n, int by_readv)
{
    char what[80];
    write(s[0], "hello", 5);
    settle(s[1]);
    snprintf(what, sizeof what, "%s %s", name, label);
    show(what, by_readv ? readv(s[1], iov, n) : recvv(s[1], iov, n));
    snprintf(what, sizeof what, "%s after %s", name, label);
    left(what, s[1]);
}

static void sockets(int type, const char *name)
{
    int s[2];
    char what[80];
    struct iovec iov[2];
    if (type < 0)
        tcp_pair(s);
    else
        socketpair(AF_UNIX, type | SOCK_NONBLOCK, 0, s);
#define SHOW(label, r) (snprintf(what, sizeof what, "%s %s", name, label), show(what, r))
#define LEFT(label) (snprintf(what, sizeof what, "%s after %s", name, label), left(what, s[1]))

    SHOW("sendmsg 1025", sendv(s[0], many, 1025));
    SHOW("recvmsg 1025", recvv(s[1], many, 1025));
    SHOW("sendmsg huge count", sendv(s[0], many, (size_t)-1));
    SHOW("sendmsg bad array", sendv(s[0], BAD, 1));
    LEFT("sendmsg bad array");
    receive(s, name, "recvmsg bad array", BAD, 1, 0);

    iov[0] = (struct iovec){buf, (size_t)1 << 63};
    receive(s, name, "recvmsg len sign bit", iov, 1, 0);
    SHOW("sendmsg len sign bit", sendv(s[0], iov, 1));
    LEFT("sendmsg len sign bit");

    iov[0] = (struct iovec){buf, (size_t)1 << 62};
    iov[1] = (struct iovec){buf, (size_t)1 << 62};
    receive(s, name, "recvmsg sum overflows", iov, 2, 0);

    iov[0] = (struct iovec){buf, 0x80000000UL};
    receive(s, name, "recvmsg len over INT_MAX", iov, 1, 0);
    iov[0] = (struct iovec){buf, 0x7fffffffUL};
    iov[1] = (struct iovec){buf, 2};
    receive(s, name, "recvmsg sum over INT_MAX", iov, 2, 0);

    iov[0] = (struct iovec){buf, 2};
    iov[1] = (struct iovec){BAD, 10};
    receive(s, name, "recvmsg good then bad", iov, 2, 0);
    memcpy(buf, "abcdefgh", 8);
    SHOW("sendmsg good then bad", sendv(s[0], iov, 2));
    LEFT("sendmsg good then bad");
    receive(s, name, "readv good then bad", iov, 2, 1);
    SHOW("writev good then bad", writev(s[0], iov, 2));
    LEFT("writev good then bad");
    close(s[0]);
    close(s[1]);
}

int main(int argc, char **argv)
{
    for (int i = 0; i < 1026; i++)
        many[i] = (struct iovec){buf, 0};
    if (argc < 2 || !strcmp(argv[1], "pipe"))
        pipes();
    if (argc < 2 || !strcmp(argv[1], "file"))
        files();
    if (argc < 2 || !strcmp(argv[1], "stream"))
        sockets(SOCK_STREAM, "stream");
    if (argc < 2 || !strcmp(argv[1], "dgram"))
        sockets(SOCK_DGRAM, "dgram");
    if (argc < 2 || !strcmp(argv[1], "tcp"))
        sockets(-1, "tcp");
    return 0;
}
