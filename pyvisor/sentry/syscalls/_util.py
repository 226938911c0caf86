"""Helpers shared by syscall handlers: one home for each Linux rule that
more than one call follows (the struct layouts are in pyvisor/abi/structs.py).

- Time spans (timespec_ns, read_timespec, read_deadline, read_itimer,
  write_itimer): a timespec is valid if tv_sec >= 0 and 0 <= tv_nsec < 1e9
  (a timeval: 0 <= tv_usec < 1e6), otherwise EINVAL; a valid value is
  clamped to KTIME_MAX ns. That holds for nanosleep, clock_nanosleep, the
  timeouts of poll, select, epoll, futex, rt_sigtimedwait and recvmmsg, and
  the timers' values. (utimensat's timestamps, select's timeval and the
  SO_RCVTIMEO timeval have rules of their own, kept with their calls.)
- iovecs (read_iovecs, gather, scatter), as lib/iov_iter.c imports them: a
  count above UIO_MAXIOV is EINVAL (readv(2)) or EMSGSIZE (a msghdr's); an
  unreadable array EFAULT; a length with the sign bit set EINVAL (checked
  for every element first); then an element outside the user address space
  (access_ok, even with length 0) EFAULT; lengths are cut so the total is
  at most MAX_RW_COUNT. A fault while copying the data is EFAULT unless
  partial counts are allowed, and then (pipe_read/pipe_write copy a page at
  a time) the count is the whole pages moved before it, EFAULT if none. A
  stream socket fails before consuming what it cannot copy out
  (check_stream_room).
- A file of a kind (file_of_type: EBADF for no file, else the errno the
  call's man page names), a user sigset_t (read_sigset: sigsetsize must be
  8) and a wait's temporary signal mask (swap_in_mask, restore_mask).
"""

import errno
import struct
import time as _time

from pyvisor.abi.ints import s32
from pyvisor.abi.signals import SIGSET_SIZE, UNBLOCKABLE
from pyvisor.abi.structs import (IOVEC, ITIMERSPEC, MAX_RW_COUNT, NSEC, TASK_SIZE_MAX,
                                 TIMESPEC, UIO_MAXIOV, page_down, split_ns, timespec_valid,
                                 to_ns)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.unix import MSG_CMSG_CLOEXEC, MSG_PEEK, SOCK_STREAM, UnixSocket

_SIGN = 1 << 63


# --- time spans ------------------------------------------------------------------


def timespec_ns(sec, sub, unit=1):
    """A timespec (unit 1: sub is tv_nsec) or timeval (unit USEC: tv_usec) as
    ns, clamped to KTIME_MAX; EINVAL if tv_sec < 0 or sub is outside one second."""
    if not timespec_valid(sec, sub, unit):
        raise SyscallError(errno.EINVAL)
    return to_ns(sec, sub, unit)


def read_timespec(t, addr, unit=1):
    """A valid timespec (or timeval, unit USEC) from app memory as ns, clamped
    to KTIME_MAX; EFAULT or EINVAL."""
    return timespec_ns(*TIMESPEC.unpack(t.copy_in(addr, TIMESPEC.size)), unit)


def read_deadline(t, addr):
    """A relative timeout (struct timespec) at addr as a time.monotonic()
    deadline; None for a NULL pointer (no timeout). EFAULT or EINVAL."""
    if not addr:
        return None
    return _time.monotonic() + read_timespec(t, addr) / NSEC


def read_itimer(t, addr, unit=1):
    """(interval ns, value ns) from an itimerspec (unit 1) or itimerval (unit
    USEC); EFAULT, or EINVAL if either half is invalid."""
    isec, isub, vsec, vsub = ITIMERSPEC.unpack(t.copy_in(addr, ITIMERSPEC.size))
    return timespec_ns(isec, isub, unit), timespec_ns(vsec, vsub, unit)


def write_itimer(t, addr, interval, value, unit=1):
    """Write an itimerspec (unit 1) or itimerval (unit USEC); EFAULT."""
    t.copy_out(addr, ITIMERSPEC.pack(*split_ns(interval, unit), *split_ns(value, unit)))


# --- files and signal masks ----------------------------------------------------


def file_of_type(t, fd, cls, err=errno.EINVAL):
    """The open file at ``fd`` (EBADF if none) when it is a ``cls``; else
    ``err``, which each call's man page names (EINVAL for epoll, timerfd and
    signalfd files; EBADF for a pidfd or a pipe)."""
    f = t.fdtable.get(s32(fd))
    if not isinstance(f, cls):
        raise SyscallError(err)
    return f


def read_sigset(t, addr, size):
    """A user sigset_t: ``size`` (sigsetsize) must be sizeof(sigset_t), 8 bytes
    on x86-64, else EINVAL (rt_sigprocmask(2), rt_sigsuspend(2), ppoll(2),
    signalfd(2), ...)."""
    if size != SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)
    return int.from_bytes(t.copy_in(addr, SIGSET_SIZE), "little")


def swap_in_mask(t, mask):
    """rt_sigsuspend(2), ppoll(2), pselect6(2), epoll_pwait(2): ``mask`` (never
    SIGKILL or SIGSTOP) replaces the task's signal mask for a wait. The old
    mask comes back through the frame of the handler that ends it (task.py),
    or by restore_mask()."""
    if t.saved_mask is None:
        t.saved_mask = t.signals.mask
    t.signals.mask = mask & ~UNBLOCKABLE


def restore_mask(t):
    """Undo swap_in_mask when the wait ended without a handler."""
    if t.saved_mask is not None:
        t.signals.mask, t.saved_mask = t.saved_mask, None


# --- iovecs ----------------------------------------------------------------------


def read_iovecs(t, addr, count, too_many=errno.EINVAL):
    """[(base, length)] and their total from `count` struct iovec at addr, by
    the rules in the module doc; `too_many` is the error past UIO_MAXIOV."""
    if count > UIO_MAXIOV:
        raise SyscallError(too_many)
    raw = t.copy_in(addr, count * IOVEC.size) if count else b""
    out, total, fault = [], 0, False
    for base, length in IOVEC.iter_unpack(raw):
        if length & _SIGN:
            raise SyscallError(errno.EINVAL)        # before any EFAULT, as Linux
        if base + length > TASK_SIZE_MAX:           # access_ok
            fault = True
        length = min(length, MAX_RW_COUNT - total)
        total += length
        out.append((base, length))
    if fault:
        raise SyscallError(errno.EFAULT)
    return out, total


def _pages_before_fault(t, vecs, limit, write, allow):
    """After a fault: the whole pages of the iovecs (at most `limit` bytes)
    that can be copied before it, if allow; else, or if none, EFAULT."""
    n = page_down(t.accessible(vecs, limit, write)) if allow else 0
    if not n:
        raise SyscallError(errno.EFAULT)
    return n


def gather(t, vecs, total, allow_partial):
    """Up to `total` bytes from the iovecs, in order. On a fault: the whole
    pages before it if allow_partial, else (or if none) EFAULT."""
    parts, have = [], 0
    for base, length in vecs:
        length = min(length, total - have)
        if not length:
            continue
        try:
            parts.append(t.copy_in(base, length))
        except SyscallError:
            n = _pages_before_fault(t, vecs, total, False, allow_partial)
            return gather(t, vecs, n, False)
        have += length
    return b"".join(parts)


def scatter(t, vecs, data, allow_partial):
    """Copy `data` out over the iovecs; returns how many bytes count as
    delivered: all, or on a fault the whole pages before it if
    allow_partial; else (or if none) EFAULT. The caller decides what becomes
    of the bytes not delivered."""
    done = 0
    for base, length in vecs:
        if done >= len(data):
            break
        piece = data[done:done + length]
        try:
            t.copy_out(base, piece)
        except SyscallError:
            n = _pages_before_fault(t, vecs, len(data), True, allow_partial)
            return scatter(t, vecs, data[:n], False)
        done += len(piece)
    return done


def is_stream_socket(f):
    """A connected-stream socket (AF_UNIX SOCK_STREAM or TCP)."""
    is_sock = isinstance(f, UnixSocket) or getattr(f, "is_socket", False)
    return is_sock and getattr(f, "type", None) == SOCK_STREAM


def check_stream_room(t, sock, vecs, total, flags=0):
    """A stream socket keeps the bytes a receive cannot copy out
    (unix_stream_read_generic, tcp_recvmsg: EFAULT before anything is
    consumed). If the iovecs cannot take `total` bytes, peek at what would
    arrive (blocking as the receive would) and fail EFAULT if it does not fit."""
    fits = t.accessible(vecs, total, write=True)
    if fits >= total:
        return
    r = sock.recv(total, (flags | MSG_PEEK) & ~MSG_CMSG_CLOEXEC)
    for f in r.rights or ():
        f.decref()
    if len(r.data) > fits:
        raise SyscallError(errno.EFAULT)


def install_pair(t, a, b, addr, install):
    """pipe2(2)/socketpair(2)'s ending: install two new files with ``install(f) -> fd``
    and write the fds to ``addr`` as int[2]; on any failure nothing stays installed."""
    try:
        fa = install(a)
    except SyscallError:
        b.decref()
        raise
    try:
        fb = install(b)
    except SyscallError:
        t.fdtable.close(fa)
        raise
    try:
        t.copy_out(addr, struct.pack("<ii", fa, fb))
    except SyscallError:
        t.fdtable.close(fa)
        t.fdtable.close(fb)
        raise
    return 0
