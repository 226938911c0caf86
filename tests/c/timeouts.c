/* Timeouts and timer values at the edges: a huge relative timeout (tv_sec
 * 0x7fffffffffffffff) is "forever" (Linux clamps it to KTIME_MAX), so each
 * blocking call below ends only by the 50 ms SIGALRM (EINTR); a negative
 * time or a sub-second field out of range is EINVAL (EDOM for SO_RCVTIMEO).
 * Timer values read back show the clamp. Prints one line per call.
 * Usage: timeouts [NAME]  (no NAME: all). */
#define _GNU_SOURCE	/* strerrorname_np */
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BIG 0x7fffffffffffffffL
#define SAY(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define RES(name, expr) do { errno = 0; long r_ = (long)(expr); \
	SAY("%s = %ld%s%s", name, r_, r_ < 0 ? " " : "", r_ < 0 ? strerrorname_np(errno) : ""); } while (0)

static void on_alrm(int s) { (void)s; }

/* SIGALRM in 50 ms: ends a "forever" wait with EINTR. */
static void arm(void)
{
	struct itimerval v = {{0, 0}, {0, 50000}};
	setitimer(ITIMER_REAL, &v, 0);
}

static int want(const char *w, const char *name) { return !*w || !strcmp(w, name); }

int main(int argc, char **argv)
{
	const char *w = argc > 1 ? argv[1] : "";
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alrm;
	sigaction(SIGALRM, &sa, 0);
	struct timespec ts = {BIG, 0}, rem;
	struct timeval tv;

	if (want(w, "nanosleep")) {
		arm(); RES("nanosleep huge", syscall(SYS_nanosleep, &ts, &rem));
		struct timespec bad[] = {{0, -1}, {0, 1000000000}, {-1, 0}, {BIG, BIG}};
		for (int i = 0; i < 4; i++)
			RES("nanosleep bad", syscall(SYS_nanosleep, &bad[i], 0));
		arm(); RES("clock_nanosleep huge", syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, &rem));
		arm(); RES("clock_nanosleep abs huge", syscall(SYS_clock_nanosleep, CLOCK_REALTIME, 1, &ts, &rem));
		RES("clock_nanosleep abs bad", syscall(SYS_clock_nanosleep, CLOCK_REALTIME, 1, &bad[0], 0));
	}
	if (want(w, "select")) {
		tv.tv_sec = BIG; tv.tv_usec = 0;
		arm(); RES("select huge", syscall(SYS_select, 0, 0, 0, 0, &tv));
		tv.tv_sec = BIG; tv.tv_usec = BIG;
		RES("select huge usec", syscall(SYS_select, 0, 0, 0, 0, &tv));
		tv.tv_sec = 0; tv.tv_usec = -1;
		RES("select usec -1", syscall(SYS_select, 0, 0, 0, 0, &tv));
		tv.tv_sec = 0; tv.tv_usec = 1100000;	/* folded: 1.1 s, cut short */
		arm(); RES("select usec 1.1e6", syscall(SYS_select, 0, 0, 0, 0, &tv));
		ts.tv_sec = BIG; ts.tv_nsec = 0;
		arm(); RES("pselect6 huge", syscall(SYS_pselect6, 0, 0, 0, 0, &ts, 0));
		ts.tv_nsec = 1000000000;
		RES("pselect6 nsec 1e9", syscall(SYS_pselect6, 0, 0, 0, 0, &ts, 0));
	}
	if (want(w, "poll")) {
		ts.tv_sec = BIG; ts.tv_nsec = 0;
		arm(); RES("ppoll huge", syscall(SYS_ppoll, 0, 0, &ts, 0, 8));
		ts.tv_nsec = -1;
		RES("ppoll nsec -1", syscall(SYS_ppoll, 0, 0, &ts, 0, 8));
		arm(); RES("poll INT_MAX ms", syscall(SYS_poll, 0, 0, 0x7fffffff));
		int ep = epoll_create1(0);
		struct epoll_event ev[1];
		ts.tv_sec = BIG; ts.tv_nsec = 0;
		arm(); RES("epoll_pwait2 huge", syscall(SYS_epoll_pwait2, ep, ev, 1, &ts, 0, 8));
		ts.tv_sec = -1;
		RES("epoll_pwait2 sec -1", syscall(SYS_epoll_pwait2, ep, ev, 1, &ts, 0, 8));
		arm(); RES("epoll_wait INT_MAX ms", syscall(SYS_epoll_wait, ep, ev, 1, 0x7fffffff));
	}
	if (want(w, "futex")) {
		int word = 0;
		ts.tv_sec = BIG; ts.tv_nsec = 0;
		arm(); RES("futex wait huge", syscall(SYS_futex, &word, FUTEX_WAIT, 0, &ts, 0, 0));
		arm(); RES("futex wait_bitset abs huge", syscall(SYS_futex, &word, FUTEX_WAIT_BITSET, 0, &ts, 0, -1));
		ts.tv_nsec = -1;
		RES("futex wait nsec -1", syscall(SYS_futex, &word, FUTEX_WAIT, 0, &ts, 0, 0));
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, SIGUSR1);
		ts.tv_nsec = 0;
		arm(); RES("rt_sigtimedwait huge", syscall(SYS_rt_sigtimedwait, &s, 0, &ts, 8));
		ts.tv_nsec = 1000000000;
		RES("rt_sigtimedwait nsec 1e9", syscall(SYS_rt_sigtimedwait, &s, 0, &ts, 8));
	}
	if (want(w, "timers")) {
		struct itimerspec its = {{BIG, 0}, {BIG, 0}}, o;
		int fd = timerfd_create(CLOCK_MONOTONIC, 0);
		RES("timerfd_settime huge", timerfd_settime(fd, 0, &its, &o));
		RES("timerfd_gettime", timerfd_gettime(fd, &o));
		SAY("timerfd interval %ld %ld", (long)o.it_interval.tv_sec, o.it_interval.tv_nsec);
		RES("timerfd_settime abs huge", timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, &o));
		its.it_value.tv_nsec = -1;
		RES("timerfd_settime nsec -1", timerfd_settime(fd, 0, &its, &o));
		timer_t tid;
		struct sigevent se;
		memset(&se, 0, sizeof se);
		se.sigev_notify = SIGEV_NONE;
		RES("timer_create", syscall(SYS_timer_create, CLOCK_MONOTONIC, &se, &tid));
		its.it_value.tv_nsec = 0;
		RES("timer_settime huge", syscall(SYS_timer_settime, tid, 0, &its, &o));
		RES("timer_gettime", syscall(SYS_timer_gettime, tid, &o));
		SAY("timer interval %ld %ld", (long)o.it_interval.tv_sec, o.it_interval.tv_nsec);
		RES("timer_settime abs huge", syscall(SYS_timer_settime, tid, 1, &its, &o));
		its.it_interval.tv_nsec = 1000000000;
		RES("timer_settime nsec 1e9", syscall(SYS_timer_settime, tid, 0, &its, &o));
		struct itimerval v = {{BIG, 0}, {BIG, 0}}, ov;
		RES("setitimer huge", setitimer(ITIMER_REAL, &v, &ov));
		RES("getitimer", getitimer(ITIMER_REAL, &ov));
		SAY("itimer interval %ld %ld", (long)ov.it_interval.tv_sec, (long)ov.it_interval.tv_usec);
		RES("setitimer virtual huge", setitimer(ITIMER_VIRTUAL, &v, &ov));
		v.it_value.tv_usec = 1000000;
		RES("setitimer usec 1e6", setitimer(ITIMER_REAL, &v, &ov));
		memset(&v, 0, sizeof v);
		setitimer(ITIMER_REAL, &v, 0);
		setitimer(ITIMER_VIRTUAL, &v, 0);
		RES("alarm(UINT_MAX)", alarm(0xffffffffu));
		RES("alarm(0)", alarm(0));
	}
	if (want(w, "sockets")) {
		int sv[2];
		socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
		struct timeval t2 = {BIG, 0};
		socklen_t l = sizeof t2;
		RES("SO_RCVTIMEO huge", setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &t2, sizeof t2));
		RES("getsockopt SO_RCVTIMEO", getsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &t2, &l));
		SAY("rcvtimeo %ld %ld", (long)t2.tv_sec, (long)t2.tv_usec);
		char c;
		arm(); RES("recv huge timeout", recv(sv[0], &c, 1, 0));
		t2.tv_sec = 0; t2.tv_usec = -1;
		RES("SO_RCVTIMEO usec -1", setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &t2, sizeof t2));
		int s = socket(AF_INET, SOCK_STREAM, 0);
		t2.tv_sec = BIG; t2.tv_usec = 0;
		RES("SO_SNDTIMEO inet huge", setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &t2, sizeof t2));
		l = sizeof t2;
		RES("getsockopt SO_SNDTIMEO", getsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &t2, &l));
		SAY("sndtimeo %ld %ld", (long)t2.tv_sec, (long)t2.tv_usec);
		struct mmsghdr mm;
		char buf[4];
		struct iovec iov = {buf, sizeof buf};
		memset(&mm, 0, sizeof mm);
		mm.msg_hdr.msg_iov = &iov;
		mm.msg_hdr.msg_iovlen = 1;
		ts.tv_sec = BIG; ts.tv_nsec = 0;
		arm(); RES("recvmmsg huge", syscall(SYS_recvmmsg, sv[0], &mm, 1, 0, &ts));
		ts.tv_nsec = -1;
		RES("recvmmsg nsec -1", syscall(SYS_recvmmsg, sv[0], &mm, 1, 0, &ts));
	}
	return 0;
}
