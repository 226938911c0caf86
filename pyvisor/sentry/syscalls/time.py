"""Clocks, sleeps and CPU-time accounting.

Linux background (clock_gettime(2), clock_nanosleep(2), time(7)):

- Clock ids 0..11 name the system clocks. A *negative* id is a CPU-time
  clock of some process or thread: id = (~pid << 3) | type, where bit 2
  says "thread" and the low two bits pick PROF (0), VIRT (1) or SCHED (2);
  3 is invalid. pid 0 means the caller. glibc's clock_getcpuclockid and
  pthread_getcpuclockid make these.
- A timespec is valid if tv_sec >= 0 and 0 <= tv_nsec < 1e9 (a timeval:
  0 <= tv_usec < 1e6); otherwise EINVAL. That holds for nanosleep,
  clock_nanosleep (relative and absolute), and every timeout and timer value
  read through `_util.timespec_ns` (poll, select, epoll, futex, rt_sigtimedwait,
  recvmmsg, the timers). A valid value is clamped to KTIME_MAX ns (about 292
  years), as timespec64_to_ktime does: a huge timeout is "forever", never an
  error.
- clock_nanosleep ignores flag bits other than TIMER_ABSTIME. Clocks without
  a sleep implementation (MONOTONIC_RAW, the COARSE ones) give EOPNOTSUPP,
  a thread CPU clock EINVAL, an unknown id EINVAL. It returns the error
  (glibc hands it back as a return value, not errno); at the syscall level
  that is -errno all the same.
- The remaining time is written to `rem` only if a relative sleep is
  interrupted by a signal.

N.B. The wall and monotonic clocks are the host's (as in gVisor). CPU-time
clocks are the host's count for the host threads that run the application
(sentry/timers.py: the stub process under ptrace, whose figure a thread's
clock shows too; the task's Sentry thread under KVM). getrusage(2) and
times(2) report the same figures, so they agree with the CPU timers.
"""

import errno
import struct
import time as _time

from pyvisor.abi.ints import s32
from pyvisor.abi.structs import NSEC, USEC, pack_timespec, pack_timeval, split_ns
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls._util import read_timespec

USER_HZ = 100                       # clock_t ticks per second for times(2)

CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
CLOCK_PROCESS_CPUTIME_ID = 2
CLOCK_THREAD_CPUTIME_ID = 3
CLOCK_MONOTONIC_RAW = 4
CLOCK_REALTIME_COARSE = 5
CLOCK_MONOTONIC_COARSE = 6
CLOCK_BOOTTIME = 7
CLOCK_TAI = 11
TIMER_ABSTIME = 1

# Sandbox clock id -> host clock id, for the clocks read from the host.
_HOST_CLOCKS = {
    CLOCK_REALTIME: _time.CLOCK_REALTIME,
    CLOCK_MONOTONIC: _time.CLOCK_MONOTONIC,
    CLOCK_MONOTONIC_RAW: getattr(_time, "CLOCK_MONOTONIC_RAW", _time.CLOCK_MONOTONIC),
    CLOCK_REALTIME_COARSE: 5,
    CLOCK_MONOTONIC_COARSE: 6,
    CLOCK_BOOTTIME: getattr(_time, "CLOCK_BOOTTIME", 7),
    CLOCK_TAI: getattr(_time, "CLOCK_TAI", 11),
}
_CPU_CLOCKS = (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID)
_SLEEP_CLOCKS = (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI)
_CPUCLOCK_PERTHREAD = 4
_CPUCLOCK_INVALID = 3


# --- clock reading ---------------------------------------------------------


def _cpu_clock_ns(t, clockid):
    """The CPU-time clocks: fixed ids 2 and 3, or a negative dynamic id."""
    from pyvisor.sentry import timers
    if clockid == CLOCK_PROCESS_CPUTIME_ID:
        return timers.group_cpu(t.group)[1]
    if clockid == CLOCK_THREAD_CPUTIME_ID:
        return timers.task_cpu(t)[1]
    pid = ~(clockid >> 3)
    if clockid & 3 == _CPUCLOCK_INVALID:
        raise SyscallError(errno.EINVAL)
    if pid != 0 and not _task_exists(t, pid):
        raise SyscallError(errno.EINVAL)
    user = clockid & 3 == 1                  # CPUCLOCK_VIRT; PROF and SCHED count both
    if clockid & _CPUCLOCK_PERTHREAD:
        x = t if pid == 0 else t.kernel.tasks.get(pid, t)
        times = timers.task_cpu(x)
    else:
        g = t.group if pid == 0 else t.kernel.groups.get(pid, t.group)
        times = timers.group_cpu(g)
    return times[0] if user else times[1]


def _task_exists(t, pid):
    if pid in (getattr(t, "tid", None), getattr(t, "pid", None)):
        return True
    tasks = getattr(t.kernel, "tasks", ())
    return pid in tasks


def clock_ns(t, clockid):
    """Current value of a sandbox clock in ns; EINVAL for an unknown id."""
    host = _HOST_CLOCKS.get(clockid)
    if host is not None:
        return _time.clock_gettime_ns(host)
    if clockid in _CPU_CLOCKS or clockid < 0:
        return _cpu_clock_ns(t, clockid)
    raise SyscallError(errno.EINVAL)


def sys_clock_gettime(t, clockid, tp, *_):
    """Implements Linux syscall clock_gettime(2). N.B. CPU clocks approximate (see module)."""
    t.copy_out(tp, pack_timespec(clock_ns(t, s32(clockid))))
    return 0


def sys_clock_getres(t, clockid, res, *_):
    """Implements Linux syscall clock_getres(2). A NULL res only validates the id."""
    clockid = s32(clockid)
    clock_ns(t, clockid)                    # EINVAL for a bad id
    if clockid in (CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE):
        ns = round(_time.clock_getres(_HOST_CLOCKS[clockid]) * NSEC)
    else:
        ns = 1                              # high-resolution clocks
    if res:
        t.copy_out(res, pack_timespec(ns))
    return 0


def sys_gettimeofday(t, tv, tz, *_):
    """Implements Linux syscall gettimeofday(2). The timezone is always {0, 0} (UTC)."""
    if tv:
        ns = _time.clock_gettime_ns(_time.CLOCK_REALTIME)
        t.copy_out(tv, pack_timeval(ns))
    if tz:
        t.copy_out(tz, struct.pack("<ii", 0, 0))
    return 0


def sys_time(t, tloc, *_):
    """Implements Linux syscall time(2)."""
    now = _time.clock_gettime_ns(_time.CLOCK_REALTIME) // NSEC
    if tloc:
        t.copy_out(tloc, struct.pack("<q", now))
    return now


# --- sleeping --------------------------------------------------------------


def _sleep(t, seconds, rem=0):
    """Block the task interruptibly; on a signal, write the time left to rem (if given) first."""
    from pyvisor.sentry import waiting
    if seconds <= 0:
        return
    try:
        waiting.sleep(seconds)
    except waiting.Interrupted:
        if rem:
            left = int(t.sleep_left * NSEC)
            t.copy_out(rem, pack_timespec(left))
        raise


def sys_nanosleep(t, req, rem, *_):
    """Implements Linux syscall nanosleep(2).

    N.B. when no handler runs, an interrupted sleep restarts from its full length.
    """
    _sleep(t, read_timespec(t, req) / NSEC, rem)
    return 0


def sys_clock_nanosleep(t, clockid, flags, req, rem, *_):
    """Implements Linux syscall clock_nanosleep(2).

    N.B. Sleeping on a process CPU-time clock gives EINVAL (Linux supports it).
    """
    clockid = s32(clockid)
    if clockid in (CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE):
        raise SyscallError(errno.EOPNOTSUPP)
    if clockid not in _SLEEP_CLOCKS:         # CPU clocks and unknown ids
        raise SyscallError(errno.EINVAL)
    ns = read_timespec(t, req)
    if flags & TIMER_ABSTIME:
        ns -= clock_ns(t, clockid)
        rem = 0
    _sleep(t, ns / NSEC, rem)
    return 0


# --- CPU accounting --------------------------------------------------------

RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD = 0, -1, 1


def _self_and_children(t):
    """((user, system), (children's user, system)) in ns, as timers count them."""
    from pyvisor.sentry import timers
    user, prof = timers.group_cpu(t.group)
    cu, cp = timers.children_cpu(t.group)
    return (user, prof - user), (cu, max(0, cp - cu))


def sys_times(t, buf, *_):
    """Implements Linux syscall times(2): the process's and its reaped
    children's CPU times in clock ticks; returns ticks since the sandbox
    kernel started."""
    if buf:
        (u, s), (cu, cs) = _self_and_children(t)
        tick = NSEC // USER_HZ
        t.copy_out(buf, struct.pack("<4q", u // tick, s // tick, cu // tick, cs // tick))
    start = getattr(t.kernel, "start_time", 0.0)
    return int((_time.monotonic() - start) * USER_HZ)


def sys_getrusage(t, who, usage, *_):
    """Implements Linux syscall getrusage(2).

    N.B. only the times and ru_maxrss are filled; ru_maxrss is the
    Sentry's own (0 for RUSAGE_CHILDREN). Under ptrace RUSAGE_THREAD gives
    the whole process's times (see sentry/timers.py).
    """
    from pyvisor.sentry import timers
    who = s32(who)
    if who == RUSAGE_SELF:
        (user, system), _children = _self_and_children(t)
    elif who == RUSAGE_THREAD:
        user, prof = timers.task_cpu(t)
        system = prof - user
    elif who == RUSAGE_CHILDREN:
        _self, (user, system) = _self_and_children(t)
    else:
        raise SyscallError(errno.EINVAL)
    maxrss = 0
    if who != RUSAGE_CHILDREN:
        import resource                     # only on this rare path
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fields = (*split_ns(user, USEC), *split_ns(system, USEC), maxrss) + (0,) * 13
    t.copy_out(usage, struct.pack("<4q14q", *fields))
    return 0
