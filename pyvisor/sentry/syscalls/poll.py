"""Waiting for many files: poll, select, epoll.

All of them share one wait (`wait_ready`): register a waker on the WaitQueue
of every watched file (vfs/waitq.py), check readiness, and sleep through
`waiting.wait` until a waker fires, the timeout passes, or a signal comes
(`waiting.Interrupted`: the dispatcher returns EINTR, since these calls are
in task.NO_RESTART, as signal(7) lists them).

N.B. files that cannot notify a WaitQueue (host files, signalfd until the
signal sender notifies; see `poll_periodically` in vfs/host.py and
vfs/signalfd.py) are re-checked every POLL_INTERVAL (20 ms) while waiting,
so readiness on them is seen up to that late.

Timeouts are relative; a negative poll/epoll timeout or a NULL pointer is
infinite, 0 checks once. select, pselect6 and ppoll write the time left
back, as Linux does. The sigmask of ppoll/pselect6/epoll_pwait replaces the
task's mask for the wait; if a signal interrupts, the old mask comes back
through the handler's frame (`t.saved_mask`, as rt_sigsuspend does),
otherwise it is restored before returning.
"""

import contextlib
import errno
import struct
import threading
import time

from pyvisor.abi.ints import s32
from pyvisor.sentry import waiting
from pyvisor.sentry.errors import SyscallError
from pyvisor.abi.structs import KTIME_MAX, NSEC, TIMESPEC, TIMEVAL, USEC, split_ns
from pyvisor.sentry.syscalls._util import (file_of_type, read_deadline, read_sigset, restore_mask, swap_in_mask,
                                           timespec_ns)
from pyvisor.sentry.vfs.epoll import (EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_EVENT,
                                      EpollFile, pack_events)
from pyvisor.sentry.vfs.host import POLL_INTERVAL
from pyvisor.sentry.vfs.waitq import (POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI,
                                      POLLRDBAND, POLLRDNORM, POLLWRBAND, POLLWRNORM,
                                      poll_events)

RLIMIT_NOFILE = 7
EPOLL_CLOEXEC = 0o2000000
EP_MAX_EVENTS = 0x7FFFFFFF // EPOLL_EVENT.size
POLLFD = struct.Struct("<ihh")
USEC_PER_SEC = 1_000_000
# fs/select.c: which poll bits make an fd readable, writable, exceptional.
POLLIN_SET = POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR
POLLOUT_SET = POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR
POLLEX_SET = POLLPRI


# --- the shared wait ----------------------------------------------------------

def wait_ready(files, check, deadline):
    """Call `check()` until it returns something true, or the deadline
    (time.monotonic(); None for never) passes; returns its last result.

    Wakes when a file in `files` notifies its WaitQueue; re-checks every
    POLL_INTERVAL when one of them cannot notify. Raises waiting.Interrupted
    when a signal comes for the task."""
    cond = threading.Condition()
    woken = [False]

    def waker(_events):
        with cond:
            woken[0] = True
            cond.notify_all()

    queues = {id(q): q for q in (getattr(f, "waitq", None) for f in files) if q is not None}
    periodic = any(getattr(f, "poll_periodically", False) for f in files)
    for q in queues.values():
        q.register(waker)
    try:
        while True:
            with cond:
                woken[0] = False
            result = check()
            if result:
                return result
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return result
            if periodic:
                left = POLL_INTERVAL if left is None else min(left, POLL_INTERVAL)
            with cond:
                if not woken[0]:
                    waiting.wait(cond, left)
    finally:
        for q in queues.values():
            q.unregister(waker)


def _deadline_ms(ms):
    """poll/epoll_wait's int timeout in ms: negative is infinite."""
    if ms < 0:
        return None
    return time.monotonic() + ms / 1000.0


def _time_left(deadline):
    """ns left before deadline, never negative."""
    return max(0, int((deadline - time.monotonic()) * NSEC))


@contextlib.contextmanager
def _sigmask(t, addr, size):
    """Swap in the user's signal mask at `addr` for the wait (module doc)."""
    if not addr:
        yield
        return
    swap_in_mask(t, read_sigset(t, addr, size))
    try:
        yield
    except waiting.Interrupted:
        raise                   # the old mask returns through the handler's frame
    except BaseException:
        restore_mask(t)
        raise
    else:
        restore_mask(t)


def _nofile_limit(t):
    limits = getattr(t, "rlimits", None)
    if limits and RLIMIT_NOFILE in limits:
        return limits[RLIMIT_NOFILE][0]
    return t.fdtable.limit


# --- poll ------------------------------------------------------------------------

def _do_poll(t, fds_addr, nfds, deadline):
    """The work of poll(2) and ppoll(2): returns the count of ready entries."""
    if nfds > _nofile_limit(t):
        raise SyscallError(errno.EINVAL)
    raw = t.copy_in(fds_addr, nfds * POLLFD.size) if nfds else b""
    entries = [POLLFD.unpack_from(raw, i * POLLFD.size) for i in range(nfds)]
    files = []
    for fd, _ev, _rev in entries:
        if fd >= 0:
            try:
                files.append(t.fdtable.get(fd))
            except SyscallError:
                pass
    revents = [0] * nfds

    def check():
        n = 0
        for i, (fd, events, _rev) in enumerate(entries):
            if fd < 0:
                revents[i] = 0
                continue
            try:
                f = t.fdtable.get(fd)
            except SyscallError:
                revents[i] = POLLNVAL
            else:
                revents[i] = poll_events(f) & ((events & 0xFFFF) | POLLERR | POLLHUP)
            if revents[i]:
                n += 1
        return n

    n = wait_ready(files, check, deadline)
    out = b"".join(POLLFD.pack(fd, ev, rev - (1 << 16) if rev & 0x8000 else rev)
                   for (fd, ev, _), rev in zip(entries, revents))
    if out:
        t.copy_out(fds_addr, out)
    return n


def sys_poll(t, fds, nfds, timeout, *_):
    """Implements Linux syscall poll(2)."""
    return _do_poll(t, fds, nfds & 0xFFFFFFFF, _deadline_ms(s32(timeout)))


def sys_ppoll(t, fds, nfds, tsp, sigmask, sigsetsize, *_):
    """Implements Linux syscall ppoll(2); the timespec gets the time left."""
    deadline = read_deadline(t, tsp)
    with _sigmask(t, sigmask, sigsetsize):
        try:
            return _do_poll(t, fds, nfds & 0xFFFFFFFF, deadline)
        finally:
            if deadline is not None:
                _write_left(t, tsp, TIMESPEC, deadline, 1)


def _write_left(t, addr, struct_, deadline, unit):
    """Write the time left to a timespec (unit 1) or timeval (unit USEC);
    a fault here is ignored, as Linux does (poll_select_finish)."""
    try:
        t.copy_out(addr, struct_.pack(*split_ns(_time_left(deadline), unit)))
    except SyscallError:
        pass


# --- select ----------------------------------------------------------------------

def _read_fdset(t, addr, nbytes):
    if not addr:
        return None
    return int.from_bytes(t.copy_in(addr, nbytes), "little")


def _do_select(t, nfds, raddr, waddr, eaddr, deadline):
    """The work of select(2) and pselect6(2): returns the count of set bits."""
    if nfds < 0:
        raise SyscallError(errno.EINVAL)
    nfds = min(nfds, max(_nofile_limit(t), 0))
    nbytes = (nfds + 63) // 64 * 8
    limit = (1 << nfds) - 1
    sets = [_read_fdset(t, a, nbytes) for a in (raddr, waddr, eaddr)]
    sets = [None if s is None else s & limit for s in sets]
    wanted = 0
    for s in sets:
        if s:
            wanted |= s
    files = {}
    fd = 0
    while wanted >> fd:
        if wanted >> fd & 1:
            files[fd] = t.fdtable.get(fd)          # EBADF for a bad fd, as Linux
        fd += 1
    result = [0, 0, 0]

    def check():
        res = [0, 0, 0]
        for fd, f in files.items():
            ev = poll_events(f)
            for i, bits in enumerate((POLLIN_SET, POLLOUT_SET, POLLEX_SET)):
                if sets[i] and sets[i] >> fd & 1 and ev & bits:
                    res[i] |= 1 << fd
        result[:] = res
        return sum(bin(r).count("1") for r in res)

    n = wait_ready(list(files.values()), check, deadline)
    for addr, bits in zip((raddr, waddr, eaddr), result):
        if addr:
            t.copy_out(addr, bits.to_bytes(nbytes, "little"))
    return n


def _read_timeval(t, addr):
    if not addr:
        return None
    sec, usec = TIMEVAL.unpack(t.copy_in(addr, TIMEVAL.size))
    # Linux (kern_select) folds whole seconds out of tv_usec before checking;
    # a sum past the 64-bit range wraps negative there: EINVAL.
    if sec < 0 or usec < 0:
        raise SyscallError(errno.EINVAL)
    sec, usec = sec + usec // USEC_PER_SEC, usec % USEC_PER_SEC
    if sec > KTIME_MAX:
        raise SyscallError(errno.EINVAL)
    return time.monotonic() + timespec_ns(sec, usec, USEC) / NSEC


def sys_select(t, nfds, readfds, writefds, exceptfds, timeout, *_):
    """Implements Linux syscall select(2); the timeval gets the time left."""
    deadline = _read_timeval(t, timeout)
    try:
        return _do_select(t, s32(nfds), readfds, writefds, exceptfds, deadline)
    finally:
        if deadline is not None:
            _write_left(t, timeout, TIMEVAL, deadline, USEC)


def sys_pselect6(t, nfds, readfds, writefds, exceptfds, timeout, sig, *_):
    """Implements Linux syscall pselect6(2): the sixth argument points to
    {const sigset_t *ss; size_t ss_len}; the timespec gets the time left."""
    deadline = read_deadline(t, timeout)
    ss = ss_len = 0
    if sig:
        ss, ss_len = struct.unpack("<QQ", t.copy_in(sig, 16))
    with _sigmask(t, ss, ss_len):
        try:
            return _do_select(t, s32(nfds), readfds, writefds, exceptfds, deadline)
        finally:
            if deadline is not None:
                _write_left(t, timeout, TIMESPEC, deadline, 1)


# --- epoll -----------------------------------------------------------------------

def _epoll_create(t, flags):
    if flags & ~EPOLL_CLOEXEC:
        raise SyscallError(errno.EINVAL)
    return t.fdtable.install(EpollFile(), cloexec=bool(flags & EPOLL_CLOEXEC))


def sys_epoll_create(t, size, *_):
    """Implements Linux syscall epoll_create(2): size must be positive, else unused."""
    if s32(size) <= 0:
        raise SyscallError(errno.EINVAL)
    return _epoll_create(t, 0)


def sys_epoll_create1(t, flags, *_):
    """Implements Linux syscall epoll_create1(2)."""
    return _epoll_create(t, s32(flags))


def sys_epoll_ctl(t, epfd, op, fd, event, *_):
    """Implements Linux syscall epoll_ctl(2)."""
    op = s32(op)
    events = data = 0
    if op in (EPOLL_CTL_ADD, EPOLL_CTL_MOD):
        events, data = EPOLL_EVENT.unpack(t.copy_in(event, EPOLL_EVENT.size))
    t.fdtable.get(s32(epfd))                         # EBADF before the target's
    fd = s32(fd)
    f = t.fdtable.get(fd)
    return file_of_type(t, epfd, EpollFile).ctl(op, fd, f, events, data)


def _do_epoll_wait(t, epfd, events_addr, maxevents, deadline):
    maxevents = s32(maxevents)
    if maxevents <= 0 or maxevents > EP_MAX_EVENTS:
        raise SyscallError(errno.EINVAL)
    ep = file_of_type(t, epfd, EpollFile)
    got = wait_ready([ep], lambda: ep.collect(maxevents), deadline)
    if got:
        t.copy_out(events_addr, pack_events(got))
    return len(got)


def sys_epoll_wait(t, epfd, events, maxevents, timeout, *_):
    """Implements Linux syscall epoll_wait(2)."""
    return _do_epoll_wait(t, epfd, events, maxevents, _deadline_ms(s32(timeout)))


def sys_epoll_pwait(t, epfd, events, maxevents, timeout, sigmask, sigsetsize, *_):
    """Implements Linux syscall epoll_pwait(2)."""
    with _sigmask(t, sigmask, sigsetsize):
        return _do_epoll_wait(t, epfd, events, maxevents, _deadline_ms(s32(timeout)))


def sys_epoll_pwait2(t, epfd, events, maxevents, timeout, sigmask, sigsetsize, *_):
    """Implements Linux syscall epoll_pwait2(2): a timespec timeout (NULL: infinite)."""
    deadline = read_deadline(t, timeout)
    with _sigmask(t, sigmask, sigsetsize):
        return _do_epoll_wait(t, epfd, events, maxevents, deadline)
