/* AF_INET sockets over 127.0.0.1: the output must be the same natively and
 * in the sandbox, so it never prints ports, addresses of ephemeral binds or
 * buffer sizes that depend on the host's sysctls.
 *
 * Sections: bad input (errnos), TCP echo between a forked client and its
 * parent, non-blocking connect + poll (success and refusal), UDP echo with
 * MSG_TRUNC, MSG_PEEK / MSG_WAITALL / FIONREAD, SIGPIPE and MSG_NOSIGNAL,
 * socket options, signals interrupting blocked calls. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* "ok" or the errno's name for a call's result. */
static const char *res(long r) {
    static char buf[64];
    if (r >= 0) {
        snprintf(buf, sizeof buf, "ok");
        return buf;
    }
    switch (errno) {
#define E(x) case x: return #x;
    E(EINVAL) E(EAFNOSUPPORT) E(EADDRNOTAVAIL) E(EADDRINUSE) E(EOPNOTSUPP) E(ECONNREFUSED)
    E(ENOTCONN) E(EPIPE) E(EISCONN) E(EINPROGRESS) E(EALREADY) E(EAGAIN) E(ENOPROTOOPT)
    E(EDESTADDRREQ) E(EMSGSIZE) E(EFAULT) E(ENOTSOCK) E(EBADF) E(EPROTONOSUPPORT)
    E(ESOCKTNOSUPPORT) E(ECONNRESET) E(EINTR)
#undef E
    default:
        snprintf(buf, sizeof buf, "errno %d", errno);
        return buf;
    }
}

static struct sockaddr_in lo(int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int port_of(int fd) {
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &n) < 0)
        return -1;
    return ntohs(a.sin_port);
}

static int listener(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo(0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0) {
        perror("listener");
        exit(1);
    }
    *port = port_of(fd);
    return fd;
}

static int intopt(int fd, int level, int opt) {
    int v = -1;
    socklen_t n = sizeof v;
    if (getsockopt(fd, level, opt, &v, &n) < 0)
        return -errno;
    return v;
}

static void bad_input(void) {
    out("== bad input\n");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo(0);
    out("socket(AF_INET, SOCK_SEQPACKET): %s\n", res(socket(AF_INET, SOCK_SEQPACKET, 0)));
    out("socket(AF_INET, SOCK_STREAM, IPPROTO_UDP): %s\n",
        res(socket(AF_INET, SOCK_STREAM, IPPROTO_UDP)));
    out("socketpair(AF_INET): %s\n", res(socketpair(AF_INET, SOCK_STREAM, 0, (int[2]){0, 0})));
    out("bind addrlen 8: %s\n", res(bind(fd, (struct sockaddr *)&a, 8)));
    out("bind addrlen 200: %s\n", res(bind(fd, (struct sockaddr *)&a, 200)));
    out("bind NULL: %s\n", res(bind(fd, NULL, sizeof a)));
    struct sockaddr_in u = a;
    u.sin_family = AF_UNIX;
    out("bind AF_UNIX family: %s\n", res(bind(fd, (struct sockaddr *)&u, sizeof u)));
    struct sockaddr_in far = a;
    far.sin_addr.s_addr = inet_addr("192.0.2.1");
    out("bind 192.0.2.1: %s\n", res(bind(fd, (struct sockaddr *)&far, sizeof far)));
    out("getpeername unconnected: %s\n",
        res(getpeername(fd, (struct sockaddr *)&u, &(socklen_t){sizeof u})));
    char c;
    out("recv unconnected: %s\n", res(recv(fd, &c, 1, 0)));
    out("send unconnected: %s\n", res(send(fd, "x", 1, MSG_NOSIGNAL)));
    out("accept not listening: %s\n", res(accept(fd, NULL, NULL)));
    out("shutdown unconnected: %s\n", res(shutdown(fd, SHUT_RDWR)));
    out("shutdown how 7: %s\n", res(shutdown(fd, 7)));
    out("connect addrlen 4: %s\n", res(connect(fd, (struct sockaddr *)&a, 4)));
    int one = 1;
    out("setsockopt optlen 2: %s\n", res(setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, 2)));
    out("setsockopt unknown: %s\n", res(setsockopt(fd, SOL_SOCKET, 9999, &one, sizeof one)));
    out("bind ok: %s\n", res(bind(fd, (struct sockaddr *)&a, sizeof a)));
    out("bind again: %s\n", res(bind(fd, (struct sockaddr *)&a, sizeof a)));
    /* A bound port that does not listen refuses connections. */
    int closed = port_of(fd);
    int other = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in same = lo(closed);
    out("bind in use: %s\n", res(bind(other, (struct sockaddr *)&same, sizeof same)));
    out("connect to closed port: %s\n", res(connect(other, (struct sockaddr *)&same, sizeof same)));
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    out("listen on UDP: %s\n", res(listen(udp, 1)));
    out("accept on UDP: %s\n", res(accept(udp, NULL, NULL)));
    out("UDP send no address: %s\n", res(send(udp, "x", 1, 0)));
    out("UDP sendto port 0: %s\n", res(sendto(udp, "x", 1, 0, (struct sockaddr *)&a, sizeof a)));
    struct sockaddr_in dst = lo(9);
    static char big[65508];
    out("UDP sendto 65508 bytes: %s\n",
        res(sendto(udp, big, sizeof big, 0, (struct sockaddr *)&dst, sizeof dst)));
    out("TCP option on UDP: %s\n", res(setsockopt(udp, IPPROTO_TCP, TCP_NODELAY, &one, 4)));
    out("UDP shutdown unconnected: %s\n", res(shutdown(udp, SHUT_RD)));
    close(fd);
    close(other);
    close(udp);
}

static void options(void) {
    out("== options\n");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    out("SO_TYPE %d %d\n", intopt(fd, SOL_SOCKET, SO_TYPE), intopt(udp, SOL_SOCKET, SO_TYPE));
    out("SO_DOMAIN %d\n", intopt(fd, SOL_SOCKET, SO_DOMAIN));
    out("SO_PROTOCOL %d %d\n", intopt(fd, SOL_SOCKET, SO_PROTOCOL),
        intopt(udp, SOL_SOCKET, SO_PROTOCOL));
    out("SO_ERROR %d\n", intopt(fd, SOL_SOCKET, SO_ERROR));
    out("SO_ACCEPTCONN %d\n", intopt(fd, SOL_SOCKET, SO_ACCEPTCONN));
    int v = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    out("SO_RCVBUF %d SO_SNDBUF %d\n", intopt(fd, SOL_SOCKET, SO_RCVBUF),
        intopt(fd, SOL_SOCKET, SO_SNDBUF));
    v = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, sizeof v);
    out("TCP_NODELAY %d SO_KEEPALIVE %d SO_REUSEPORT %d\n", intopt(fd, IPPROTO_TCP, TCP_NODELAY),
        intopt(fd, SOL_SOCKET, SO_KEEPALIVE), intopt(fd, SOL_SOCKET, SO_REUSEPORT));
    v = 45;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof v);
    v = 7;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof v);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof v);
    out("TCP_KEEPIDLE %d TCP_KEEPINTVL %d TCP_KEEPCNT %d\n", intopt(fd, IPPROTO_TCP, TCP_KEEPIDLE),
        intopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), intopt(fd, IPPROTO_TCP, TCP_KEEPCNT));
    v = 33;
    setsockopt(fd, IPPROTO_IP, IP_TTL, &v, sizeof v);
    out("IP_TTL %d\n", intopt(fd, IPPROTO_IP, IP_TTL));
    struct linger l = {1, 5}, l2;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    socklen_t n = sizeof l2;
    getsockopt(fd, SOL_SOCKET, SO_LINGER, &l2, &n);
    out("SO_LINGER %d %d (%d bytes)\n", l2.l_onoff, l2.l_linger, (int)n);
    struct timeval tv = {2, 500000}, tv2;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    n = sizeof tv2;
    getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv2, &n);
    out("SO_RCVTIMEO %ld.%06ld\n", (long)tv2.tv_sec, (long)tv2.tv_usec);
    int fl = fcntl(fd, F_GETFL);
    out("O_NONBLOCK %d\n", !!(fl & O_NONBLOCK));
    int off = 0;
    ioctl(fd, FIONBIO, &off);
    out("O_NONBLOCK after FIONBIO 0: %d\n", !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
    close(fd);
    close(udp);
}

static void echo_server_once(int lfd) {
    struct sockaddr_in peer;
    socklen_t n = sizeof peer;
    int c = accept4(lfd, (struct sockaddr *)&peer, &n, SOCK_CLOEXEC);
    char buf[4096];
    long total = 0;
    ssize_t r;
    while ((r = read(c, buf, sizeof buf)) > 0) {
        total += r;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(c, buf + off, r - off);
            if (w <= 0) {
                perror("echo write");
                exit(1);
            }
            off += w;
        }
    }
    out("server: echoed %ld bytes, peer %s, addrlen %d\n", total,
        peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK) ? "127.0.0.1" : "?", (int)n);
    close(c);
}

static void tcp_echo_fork(void) {
    out("== TCP echo across fork\n");
    int port;
    int lfd = listener(&port);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = lo(port);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
            perror("connect");
            _exit(1);
        }
        struct sockaddr_in me, peer;
        socklen_t n1 = sizeof me, n2 = sizeof peer;
        getsockname(fd, (struct sockaddr *)&me, &n1);
        getpeername(fd, (struct sockaddr *)&peer, &n2);
        out("client: peer port matches %d, local 127.0.0.1 %d\n", ntohs(peer.sin_port) == port,
            me.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
        static char msg[200000];
        for (size_t i = 0; i < sizeof msg; i++)
            msg[i] = (char)(i * 7);
        for (int round = 0; round < 3; round++) {
            ssize_t w = send(fd, msg, sizeof msg, 0);
            static char back[200000];
            ssize_t got = recv(fd, back, sizeof back, MSG_WAITALL);
            out("client: round %d sent %zd got %zd same %d\n", round, w, got,
                got == w && memcmp(msg, back, w) == 0);
        }
        shutdown(fd, SHUT_WR);
        char c;
        out("client: after SHUT_WR read %zd\n", read(fd, &c, 1));
        close(fd);
        _exit(0);
    }
    echo_server_once(lfd);
    int st;
    waitpid(pid, &st, 0);
    out("client exit %d\n", WEXITSTATUS(st));
    close(lfd);
}

static void nonblocking_connect(void) {
    out("== non-blocking connect\n");
    int port;
    int lfd = listener(&port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = lo(port);
    out("connect: %s\n", res(connect(fd, (struct sockaddr *)&a, sizeof a)));
    struct pollfd p = {fd, POLLOUT, 0};
    int r = poll(&p, 1, 5000);
    out("poll %d revents OUT %d ERR %d HUP %d\n", r, !!(p.revents & POLLOUT),
        !!(p.revents & POLLERR), !!(p.revents & POLLHUP));
    out("SO_ERROR %d\n", intopt(fd, SOL_SOCKET, SO_ERROR));
    out("connect again: %s\n", res(connect(fd, (struct sockaddr *)&a, sizeof a)));
    out("connect again: %s\n", res(connect(fd, (struct sockaddr *)&a, sizeof a)));
    struct pollfd lp = {lfd, POLLIN, 0};
    out("listener poll %d IN %d\n", poll(&lp, 1, 5000), !!(lp.revents & POLLIN));
    int c = accept(lfd, NULL, NULL);
    char buf[16];
    out("recv nothing yet: %s\n", res(recv(c, buf, sizeof buf, MSG_DONTWAIT)));
    /* N.B. without TCP_NODELAY the second write waits for the first's ACK:
     * netstack delays that ACK where Linux acks at once (quickack). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    send(fd, "ping", 4, 0);
    send(fd, "pong", 4, 0);
    struct pollfd cp = {c, POLLIN, 0};
    poll(&cp, 1, 5000);
    int avail = 0;
    ioctl(c, FIONREAD, &avail);
    out("FIONREAD %d\n", avail);
    ssize_t n = recv(c, buf, 4, MSG_PEEK);
    out("peek %zd %.4s\n", n, buf);
    n = recv(c, buf, 8, MSG_WAITALL);
    out("recv %zd %.8s\n", n, buf);
    close(c);
    close(fd);

    /* Refused: the port is bound but nothing listens. */
    int b = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in any = lo(0);
    bind(b, (struct sockaddr *)&any, sizeof any);
    struct sockaddr_in dead = lo(port_of(b));
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    out("connect refused: %s\n", res(connect(fd, (struct sockaddr *)&dead, sizeof dead)));
    p.fd = fd;
    p.events = POLLOUT;
    r = poll(&p, 1, 5000);
    out("poll %d revents OUT %d ERR %d HUP %d\n", r, !!(p.revents & POLLOUT),
        !!(p.revents & POLLERR), !!(p.revents & POLLHUP));
    out("SO_ERROR %s\n", intopt(fd, SOL_SOCKET, SO_ERROR) == ECONNREFUSED ? "ECONNREFUSED" : "?");
    out("SO_ERROR after %d\n", intopt(fd, SOL_SOCKET, SO_ERROR));
    close(fd);
    close(b);
    close(lfd);
}

static void udp_echo(void) {
    out("== UDP echo across fork\n");
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = lo(0);
    bind(s, (struct sockaddr *)&a, sizeof a);
    int port = port_of(s);
    pid_t pid = fork();
    if (pid == 0) {
        int c = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in to = lo(port);
        for (int i = 0; i < 3; i++) {
            char msg[32], back[32];
            int len = snprintf(msg, sizeof msg, "datagram %d", i);
            sendto(c, msg, len, 0, (struct sockaddr *)&to, sizeof to);
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(c, back, sizeof back, 0, (struct sockaddr *)&from, &fl);
            out("client: got %zd '%.*s' from server %d\n", n, (int)n, back,
                ntohs(from.sin_port) == port && fl == sizeof from);
        }
        connect(c, (struct sockaddr *)&to, sizeof to);
        send(c, "0123456789", 10, 0);
        char small[4];
        out("client: MSG_TRUNC recv %zd\n", recv(c, small, sizeof small, MSG_TRUNC));
        _exit(0);
    }
    for (int i = 0; i < 4; i++) {
        char buf[64];
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        sendto(s, buf, n, 0, (struct sockaddr *)&from, fl);
    }
    int st;
    waitpid(pid, &st, 0);
    out("client exit %d\n", WEXITSTATUS(st));
    close(s);
}

static void sigpipe(void) {
    out("== SIGPIPE\n");
    int port;
    int lfd = listener(&port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo(port);
    connect(fd, (struct sockaddr *)&a, sizeof a);
    int c = accept(lfd, NULL, NULL);
    shutdown(fd, SHUT_WR);
    out("send MSG_NOSIGNAL after SHUT_WR: %s\n", res(send(fd, "x", 1, MSG_NOSIGNAL)));
    signal(SIGPIPE, SIG_IGN);
    out("write with SIGPIPE ignored: %s\n", res(write(fd, "x", 1)));
    signal(SIGPIPE, SIG_DFL);
    pid_t pid = fork();
    if (pid == 0) {
        write(fd, "x", 1);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    out("child killed by signal %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    char ch;
    out("peer reads EOF: %zd\n", read(c, &ch, 1));
    close(c);
    close(fd);
    close(lfd);
}

static void on_usr1(int signo) {
    (void)signo;
}

/* A child signals us while we block in accept/recv: EINTR without
 * SA_RESTART, a restart with it, and EINTR again for a wait bounded by
 * SO_RCVTIMEO (signal(7): never restarted). */
static void signals(void) {
    out("== signals\n");
    int port;
    int lfd = listener(&port);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        struct sockaddr_in a = lo(port);
        usleep(150000);
        kill(parent, SIGUSR1);                  /* 1: accept, no SA_RESTART */
        usleep(150000);
        kill(parent, SIGUSR1);                  /* 2: accept, SA_RESTART */
        usleep(150000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        connect(fd, (struct sockaddr *)&a, sizeof a);
        usleep(150000);
        kill(parent, SIGUSR1);                  /* 3: recv with SO_RCVTIMEO */
        usleep(150000);
        close(fd);
        _exit(0);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    out("accept without SA_RESTART: %s\n", res(accept(lfd, NULL, NULL)));
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    int c = accept(lfd, NULL, NULL);
    out("accept with SA_RESTART: %s\n", res(c));
    struct timeval tv = {5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char ch;
    out("recv with SO_RCVTIMEO: %s\n", res(recv(c, &ch, 1, 0)));
    /* N.B. no timeout now: the child's exit sends SIGCHLD, which the
     * sandbox (unlike Linux, where a default-ignored signal is discarded)
     * lets interrupt a timed wait with EINTR. */
    struct timeval forever = {0, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
    ssize_t n = recv(c, &ch, 1, 0);
    out("recv at close: %zd %s\n", n, res(n));
    int st;
    waitpid(pid, &st, 0);
    signal(SIGUSR1, SIG_DFL);
    close(c);
    close(lfd);
}

int main(void) {
    bad_input();
    options();
    tcp_echo_fork();
    nonblocking_connect();
    udp_echo();
    sigpipe();
    signals();
    out("done\n");
    return 0;
}
