"""Timers: alarm, setitimer/getitimer, POSIX timers, timerfd.

The timers themselves live in sentry/timers.py (one service thread for the
kernel, per-process state on the ThreadGroup) and sentry/vfs/timerfd.py;
these handlers decode and check arguments as Linux does:

- struct itimerval and struct itimerspec put the *interval first*, then the
  value. A timeval is valid with tv_sec >= 0 and 0 <= tv_usec < 1e6, a
  timespec with 0 <= tv_nsec < 1e9; anything else is EINVAL. A zero value
  disarms.
- setitimer(which, NULL, old) is accepted as a zero value (Linux warns once).
- alarm(2) is ITIMER_REAL in seconds; it returns the seconds left of the
  previous alarm, rounded to nearest but never 0 while one was pending.
- timer_create's struct sigevent: sigev_value (8 bytes) @0, sigev_signo @8,
  sigev_notify @12, sigev_notify_thread_id @16; 64 bytes. SIGEV_THREAD
  reaches the kernel only as glibc's SIGEV_THREAD_ID helper, but is
  accepted as SIGEV_SIGNAL, as Linux does. A NULL sevp means SIGEV_SIGNAL,
  SIGALRM, sigev_value = the timer id. A timer id is a 32-bit int.

- ITIMER_VIRTUAL counts the process's user CPU time, ITIMER_PROF its user
  and system time; POSIX timers on CLOCK_PROCESS_CPUTIME_ID count the
  process's, on CLOCK_THREAD_CPUTIME_ID the thread's, and on a clock id from
  clock_getcpuclockid/pthread_getcpuclockid that process's or thread's. An
  absolute time on a CPU clock is a value of that clock.

N.B. CPU time is the host's count for the threads that run the application,
checked every 10 ms (sentry/timers.py): a CPU timer fires up to that late.
"""

import errno
import struct

from pyvisor.abi.signals import SIGRTMAX
from pyvisor.abi.ints import s32
from pyvisor.abi.structs import ITIMERSPEC, NSEC, USEC
from pyvisor.sentry import timers
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls._util import file_of_type, read_itimer, write_itimer
from pyvisor.sentry.vfs.timerfd import TFD_CLOEXEC, TFD_SETTIME_FLAGS, TimerFile, make_timerfd

ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2
TIMER_ABSTIME = 1
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
SIGEVENT_SIZE = 64
CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 2, 3
_CLOCKFD = 3                         # low bits of a negative id naming a posix clock fd
_NOT_TIMER_CLOCKS = (4, 5, 6)        # MONOTONIC_RAW and the COARSE clocks: EOPNOTSUPP
_SIGEVENT = struct.Struct("<Qiii")


# --- alarm and the interval timers ------------------------------------------------------


def _set_real(t, value, interval):
    """Arm (or disarm, value 0) ITIMER_REAL; returns its old (remaining, interval)."""
    timer = timers.real_timer(t.group)
    if value == 0:
        return timer.set(None, 0)
    return timer.set(timer.service.now() + value, interval)


def sys_alarm(t, seconds, *_):
    """Implements Linux syscall alarm(2)."""
    remaining, _interval = _set_real(t, (seconds & 0xFFFFFFFF) * NSEC, 0)
    sec, ns = divmod(remaining, NSEC)
    if (sec == 0 and ns) or ns >= NSEC // 2:
        sec += 1
    return sec


def _itimer(t, which, value, interval):
    """Set interval timer `which`; returns the old (interval, value) in ns."""
    if which == ITIMER_REAL:
        remaining, old_interval = _set_real(t, value, interval)
        if remaining:
            remaining = max(remaining, USEC)    # an armed timer reads at least 1 us
        return old_interval, remaining
    timer = timers.cpu_itimer(t.group, which)
    if value == 0:
        remaining, old_interval = timer.set(None, 0)
    else:
        remaining, old_interval = timer.set(timer.service.now() + value, interval)
    if remaining:
        remaining = max(remaining, USEC)
    return old_interval, remaining


def _check_which(which):
    which = s32(which)
    if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
        raise SyscallError(errno.EINVAL)
    return which


def sys_setitimer(t, which, new, old, *_):
    """Implements Linux syscall setitimer(2)."""
    which = _check_which(which)
    interval, value = read_itimer(t, new, USEC) if new else (0, 0)
    if old:
        t.copy_in(old, ITIMERSPEC.size)                  # EFAULT before anything changes
    old_interval, old_value = _itimer(t, which, value, interval)
    if old:
        write_itimer(t, old, old_interval, old_value, USEC)
    return 0


def sys_getitimer(t, which, cur, *_):
    """Implements Linux syscall getitimer(2)."""
    which = _check_which(which)
    if which == ITIMER_REAL:
        gt = timers.group_timers(t.group)
        value, interval = gt.real.get() if gt.real is not None else (0, 0)
        if value:
            value = max(value, USEC)
    else:
        value, interval = timers.cpu_itimer(t.group, which).get()
        if value:
            value = max(value, USEC)
    write_itimer(t, cur, interval, value, USEC)
    return 0


# --- POSIX timers ----------------------------------------------------------------------


def _check_clock(t, clockid):
    if clockid in timers.TIMER_CLOCKS:
        return
    if clockid in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID):
        return
    if clockid < 0 and clockid & 7 == _CLOCKFD:
        raise SyscallError(errno.EOPNOTSUPP)    # a dynamic (fd) clock: Linux has no timers on them
    if clockid < 0:
        from pyvisor.sentry.syscalls.time import clock_ns
        clock_ns(t, clockid)                    # EINVAL for a bad dynamic CPU clock
        return
    if clockid in _NOT_TIMER_CLOCKS:
        raise SyscallError(errno.EOPNOTSUPP)
    raise SyscallError(errno.EINVAL)


def _read_sigevent(t, sevp):
    """(notify, signo, value, target task or None) from a struct sigevent."""
    value, signo, notify, tid = _SIGEVENT.unpack(t.copy_in(sevp, SIGEVENT_SIZE)[:_SIGEVENT.size])
    target = None
    if notify == SIGEV_SIGNAL | SIGEV_THREAD_ID:
        with t.kernel.lock:
            target = t.kernel.tasks.get(tid)
            if target is None or target.group is not t.group:
                raise SyscallError(errno.EINVAL)
    elif notify not in (SIGEV_SIGNAL, SIGEV_THREAD, SIGEV_NONE):
        raise SyscallError(errno.EINVAL)
    if notify != SIGEV_NONE and not 0 < signo <= SIGRTMAX:
        raise SyscallError(errno.EINVAL)
    return notify, signo, value, target


def sys_timer_create(t, clockid, sevp, timerid, *_):
    """Implements Linux syscall timer_create(2)."""
    clockid = s32(clockid)
    _check_clock(t, clockid)
    event = _read_sigevent(t, sevp) if sevp else None
    g = t.group
    gt = timers.group_timers(g)
    with t.kernel.lock:
        tid = gt.next_id                                # used up even on EFAULT, as Linux
        gt.next_id = (tid + 1) & 0x7FFFFFFF
    notify, signo, value, target = event or (SIGEV_SIGNAL, timers.SIGALRM, tid, None)
    pt = timers.PosixTimer(g, tid, clockid, notify, signo, value, target)
    fire = lambda n, gen: timers.fire_posix(pt, n) if pt.timer.current(gen) else None  # noqa: E731
    cpu = _cpu_clock(t, clockid)
    if cpu is not None:
        pt.timer = timers.cpu_timers(t.kernel).timer(cpu, fire)
    else:
        pt.timer = timers.service(t.kernel).timer(fire)
    t.copy_out(timerid, struct.pack("<i", tid))         # EFAULT: nothing created
    with t.kernel.lock:
        gt.posix[tid] = pt
    return 0


def _posix_timer(t, timerid):
    gt = timers.group_timers(t.group)
    with t.kernel.lock:
        pt = gt.posix.get(s32(timerid))
    if pt is None:
        raise SyscallError(errno.EINVAL)
    return pt


def _cpu_clock(t, clockid):
    """The timers.CpuClock a CPU-time clock id names, or None for other clocks.

    Fixed ids 2 and 3 are the caller's process and thread; a negative id is
    (~pid << 3) | kind, bit 2 meaning a thread (time.py has the details).
    A process clock counts user+system time unless its kind is VIRT (1).
    """
    if clockid == CLOCK_PROCESS_CPUTIME_ID:
        return timers.CpuClock(t.group, timers.PROF)
    if clockid == CLOCK_THREAD_CPUTIME_ID:
        return timers.CpuClock(t.group, timers.PROF, task=t)
    if clockid >= 0:
        return None
    pid, kind = ~(clockid >> 3), clockid & 3
    kind = timers.VIRT if kind == timers.VIRT else timers.PROF
    k = t.kernel
    with k.lock:
        if clockid & timers.CPUCLOCK_PERTHREAD:
            x = t if pid == 0 else k.tasks.get(pid)
            return None if x is None else timers.CpuClock(x.group, kind, task=x)
        g = t.group if pid == 0 else k.groups.get(pid)
        return None if g is None else timers.CpuClock(g, kind)


def _timer_clock(clockid):
    """The clock a deadline is computed on (not a CPU clock: see _cpu_clock)."""
    return clockid if clockid in timers.TIMER_CLOCKS else timers.CLOCK_MONOTONIC


def sys_timer_settime(t, timerid, flags, new, old, *_):
    """Implements Linux syscall timer_settime(2)."""
    pt = _posix_timer(t, timerid)
    if not new:
        raise SyscallError(errno.EINVAL)
    interval, value = read_itimer(t, new, 1)
    if old:
        t.copy_in(old, ITIMERSPEC.size)
    svc = pt.timer.service
    if value == 0:
        remaining, old_interval = pt.timer.set(None, interval)
    elif isinstance(pt.timer, timers.CpuTimer):
        deadline = value if flags & TIMER_ABSTIME else svc.now() + value
        remaining, old_interval = pt.timer.set(deadline, interval)
    else:
        deadline = timers.to_deadline(svc, _timer_clock(pt.clockid), value,
                                      bool(flags & TIMER_ABSTIME))
        remaining, old_interval = pt.timer.set(deadline, interval)
    if old:
        write_itimer(t, old, old_interval, remaining, 1)
    return 0


def sys_timer_gettime(t, timerid, cur, *_):
    """Implements Linux syscall timer_gettime(2)."""
    pt = _posix_timer(t, timerid)
    remaining, interval = pt.timer.get()
    write_itimer(t, cur, interval, remaining, 1)
    return 0


def sys_timer_getoverrun(t, timerid, *_):
    """Implements Linux syscall timer_getoverrun(2)."""
    return timers.getoverrun(_posix_timer(t, timerid))


def sys_timer_delete(t, timerid, *_):
    """Implements Linux syscall timer_delete(2). A signal already queued stays queued."""
    gt = timers.group_timers(t.group)
    with t.kernel.lock:
        pt = gt.posix.pop(s32(timerid), None)
        if pt is None:
            raise SyscallError(errno.EINVAL)
        pt.deleted = True
    pt.timer.cancel()
    return 0


# --- timerfd -----------------------------------------------------------------------------


def sys_timerfd_create(t, clockid, flags, *_):
    """Implements Linux syscall timerfd_create(2)."""
    flags = s32(flags)
    f = make_timerfd(timers.service(t.kernel), s32(clockid), flags)
    return t.fdtable.install(f, cloexec=bool(flags & TFD_CLOEXEC))


def sys_timerfd_settime(t, fd, flags, new, old, *_):
    """Implements Linux syscall timerfd_settime(2). N.B. TFD_TIMER_CANCEL_ON_SET
    is accepted and never cancels: the sandbox's wall clock is never set."""
    interval, value = read_itimer(t, new, 1)         # EFAULT, then EINVAL, as Linux
    flags = s32(flags)
    if flags & ~TFD_SETTIME_FLAGS:
        raise SyscallError(errno.EINVAL)
    f = file_of_type(t, fd, TimerFile)
    if old:
        t.copy_in(old, ITIMERSPEC.size)
    remaining, old_interval = f.settime(flags & TFD_SETTIME_FLAGS, value, interval)
    if old:
        write_itimer(t, old, old_interval, remaining, 1)
    return 0


def sys_timerfd_gettime(t, fd, cur, *_):
    """Implements Linux syscall timerfd_gettime(2)."""
    f = file_of_type(t, fd, TimerFile)
    remaining, interval = f.gettime()
    write_itimer(t, cur, interval, remaining, 1)
    return 0
