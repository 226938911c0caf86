"""The kernel-wide timer service, and the per-process timers built on it.

Linux background (time(7), setitimer(2), timer_create(2), timerfd_create(2)):

- A process has three interval timers. ITIMER_REAL counts wall time and
  sends SIGALRM to the process; alarm(2) is the same timer seen in whole
  seconds. ITIMER_VIRTUAL and ITIMER_PROF count CPU time (SIGVTALRM,
  SIGPROF). All three survive execve(2); none is inherited by fork(2).
- POSIX timers (timer_create) belong to the process, are numbered from 0 in
  creation order, are not inherited by fork and are deleted by execve. An
  expiry queues one signal (si_code SI_TIMER, si_timerid, si_overrun,
  si_value). While that signal is still queued, further expiries only add
  to its overrun count; timer_getoverrun reports the count of the last
  signal that was delivered.
- An interval timer that is late counts every period it missed: its next
  deadline stays on the original grid (deadline + k * interval).

Here all timers of a kernel share ONE Sentry thread (`TimerService`): a heap
of (deadline, seq, timer, generation) entries and a Condition; re-arming a
timer bumps its generation, which turns the old heap entry stale (it is
dropped when popped), so arming and cancelling never search the heap.
Deadlines are kept on the host's monotonic clock in ns; an absolute time on
CLOCK_REALTIME or CLOCK_BOOTTIME is converted when the timer is armed.

N.B. a timer armed on CLOCK_REALTIME does not follow later changes of the
wall clock (the sandbox cannot set it; the host could).

CPU time (ITIMER_VIRTUAL, ITIMER_PROF, POSIX timers on CPU-time clocks,
clock_gettime of those clocks, getrusage, times): the application's CPU
time is the host's count for the host threads that run it, read with
clock_gettime on a host CPU-time clock id, (~id << 3) | kind, where kind
is PROF (0: user+system), VIRT (1: user), | 4 for a thread clock.

- ptrace: a thread group runs in one stub process, whose *process* clock
  covers all its threads. Linux lets any process read another's process
  clock, but a *thread* clock only within the same thread group, so the
  per-thread figure is the stub process's too (exact for one thread).
- KVM: the application runs inside its task's Sentry thread (KVM_RUN), so
  it is that thread's clock, which also counts the Sentry's own work for
  the task. Sentry threads are reused, so each task records the thread's
  clock when it starts running there (`Task.cpu_source`).

A group's totals are accumulated from the deltas of each source between
readings (`CpuAccount`), so sources may come and go (exec into a new
stub, threads exiting); a task's last figures are read as it exits, and a
reaped child's totals are added to its parent's children totals. CPU
timers are checked every CPU_POLL_NS by a periodic timer on the same
service thread while any is armed, so one fires at most that late: no
host call is made per application syscall.

Callbacks run on the service thread with no lock of the service held (they
take Kernel.lock, a timerfd's lock, a WaitQueue's lock). A callback gets the
generation it fired for, so a consumer can drop an expiry that raced with a
re-arm (`Timer.current(gen)`).

Lock order: a consumer's own lock (timerfd's cond, Kernel.lock), then
TimerService._cond. The service never calls out with _cond held.
"""

import atexit
import heapq
import itertools
import struct
import threading
import time

from pyvisor.abi.signals import (SI_KERNEL, SI_TIMER, SIGALRM, SIGINFO_OVERRUN_OFFSET,
                                 SIGINFO_SIZE, SIGINFO_TIMER, SIGPROF, SIGVTALRM, siginfo_bytes)
from pyvisor.abi.structs import NSEC
from pyvisor.sentry.once import made_once

DELAYTIMER_MAX = 0x7FFFFFFF
MIN_WAKE_NS = 100_000             # the service wakes a periodic timer at most every 100 us
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME = 0, 1, 7
CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM, CLOCK_TAI = 8, 9, 11
_HOST_CLOCK = {
    CLOCK_REALTIME: time.CLOCK_REALTIME,
    CLOCK_MONOTONIC: time.CLOCK_MONOTONIC,
    CLOCK_BOOTTIME: getattr(time, "CLOCK_BOOTTIME", 7),
    CLOCK_REALTIME_ALARM: time.CLOCK_REALTIME,
    CLOCK_BOOTTIME_ALARM: getattr(time, "CLOCK_BOOTTIME", 7),
    CLOCK_TAI: getattr(time, "CLOCK_TAI", 11),
}
TIMER_CLOCKS = frozenset(_HOST_CLOCK)                     # timer_create's
TIMERFD_CLOCKS = TIMER_CLOCKS - {CLOCK_TAI}               # timerfd_create's


class Timer:
    """One interval timer on a TimerService.

    `deadline` (monotonic ns, None when disarmed), `interval` (ns) and `gen`
    are protected by the service's _cond. `callback(expirations, gen)` runs
    on the service thread.
    """

    __slots__ = ("service", "callback", "deadline", "interval", "gen")

    def __init__(self, service, callback):
        self.service = service
        self.callback = callback
        self.deadline = None
        self.interval = 0
        self.gen = 0

    def set(self, deadline, interval):
        """Arm at monotonic `deadline` (ns; None disarms, keeping `interval`
        for get()) repeating every `interval` ns (0: once). Returns the old
        (remaining, interval)."""
        return self.service.arm(self, deadline, interval)

    def cancel(self):
        """Disarm; returns the old (remaining, interval)."""
        return self.service.arm(self, None, 0)

    def get(self):
        """(remaining ns, interval ns); (0, interval) when disarmed."""
        return self.service.remaining(self)

    def current(self, gen):
        """True if an expiry of generation `gen` is still this timer's latest arming."""
        return self.gen == gen


class TimerService:
    """ONE thread serving every timer of a kernel: a heap and a Condition.

    `clock` gives monotonic ns (tests pass their own, with threaded=False,
    and drive time by calling `run_due(now)`).
    """

    def __init__(self, clock=time.monotonic_ns, threaded=True):
        self.clock = clock
        self._cond = threading.Condition()
        self._heap = []                 # (deadline, seq, timer, gen)
        self._seq = itertools.count()
        self._threaded = threaded
        self._thread = None
        self._stopped = False

    def now(self):
        return self.clock()

    def timer(self, callback):
        return Timer(self, callback)

    # -- arming -------------------------------------------------------------

    def arm(self, timer, deadline, interval):
        with self._cond:
            old = self._remaining_locked(timer)
            timer.gen += 1
            timer.deadline = deadline
            timer.interval = interval     # kept while disarmed: timer_gettime reports it
            if deadline is not None:
                heapq.heappush(self._heap, (deadline, next(self._seq), timer, timer.gen))
                if self._heap[0][2] is timer:
                    self._cond.notify()
                self._start_locked()
        return old

    def remaining(self, timer):
        with self._cond:
            return self._remaining_locked(timer)

    def _remaining_locked(self, timer):
        if timer.deadline is None:
            return 0, timer.interval
        left = timer.deadline - self.clock()
        if left <= 0 and timer.interval:
            # Late: the next expiry is on the grid of the original deadline.
            left = timer.interval - (-left) % timer.interval
        # An armed timer never reads as 0 (0 means disarmed), as Linux.
        return max(left, 1), timer.interval

    # -- firing -------------------------------------------------------------

    def run_due(self, now=None):
        """Fire every timer due at `now` (default: the clock); returns the
        next deadline or None. Callbacks run after the lock is released."""
        fired = []
        with self._cond:
            now = self.clock() if now is None else now
            nxt = self._pop_due_locked(now, fired)
        for timer, n, gen in fired:
            timer.callback(n, gen)
        return nxt

    def _pop_due_locked(self, now, fired):
        heap = self._heap
        while heap and heap[0][0] <= now:
            _deadline, _seq, timer, gen = heapq.heappop(heap)
            if gen != timer.gen or timer.deadline is None:
                continue                     # re-armed or cancelled since pushed
            n = 1
            if timer.interval:
                n += (now - timer.deadline) // timer.interval
                timer.deadline += n * timer.interval
                # The count stays exact, but a tiny interval must not spin
                # this thread: wake for it at most every MIN_WAKE_NS.
                wake = max(timer.deadline, now + MIN_WAKE_NS)
                heapq.heappush(heap, (wake, next(self._seq), timer, gen))
            else:
                timer.deadline = None
            fired.append((timer, n, gen))
        return heap[0][0] if heap else None

    def _start_locked(self):
        if self._threaded and self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._loop, name="pyvisor-timers", daemon=True)
            self._thread.start()

    def _loop(self):
        while True:
            with self._cond:
                if self._stopped:
                    return
                nxt = self._heap[0][0] if self._heap else None
                now = self.clock()
                if nxt is None or nxt > now:
                    # Bounded: a deadline years away must not overflow the wait.
                    self._cond.wait(3600.0 if nxt is None else min((nxt - now) / NSEC, 3600.0))
                    continue
            self.run_due()

    def shutdown(self):
        """Stop the thread (timers then never fire); for Kernel.stop and tests."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)


def service(kernel):
    """The kernel's TimerService, made on first use."""
    return made_once(kernel, "timer_service", _new_service)


def _new_service():
    s = TimerService()
    # The thread must be gone before the interpreter finalizes: a daemon
    # thread waking then is ended by pthread_exit, which dlopens libgcc_s --
    # refused by the Sentry's seccomp filter.
    atexit.register(s.shutdown)
    return s


def shutdown(kernel):
    """Stop the kernel's timer thread, if it has one (Kernel.stop)."""
    s = getattr(kernel, "timer_service", None)
    if s is not None:
        s.shutdown()


def to_deadline(svc, clockid, ns, absolute):
    """A monotonic deadline (ns) for `ns` on `clockid`, absolute or relative."""
    if not absolute:
        return svc.now() + ns
    if clockid == CLOCK_MONOTONIC:
        return ns
    return svc.now() + (ns - time.clock_gettime_ns(_HOST_CLOCK[clockid]))


# -- per-process timers ---------------------------------------------------------------


class PosixTimer:
    """A timer_create(2) timer. `info` and `last_overrun` are guarded by Kernel.lock."""

    def __init__(self, group, timer_id, clockid, notify, signo, value, target):
        self.group = group
        self.id = timer_id
        self.clockid = clockid
        self.notify = notify            # SIGEV_NONE, SIGEV_SIGNAL, SIGEV_THREAD, |SIGEV_THREAD_ID
        self.signo = signo
        self.value = value              # sigev_value, 8 bytes as an int
        self.target = target            # the Task for SIGEV_THREAD_ID, else None
        self.info = None                # the siginfo last queued (a bytearray)
        self.last_overrun = 0
        self.deleted = False
        self.timer = None


class GroupTimers:
    """A thread group's timers: ITIMER_REAL (shared with alarm), the CPU
    itimers, and its POSIX timers. Guarded by Kernel.lock."""

    def __init__(self):
        self.real = None                # Timer, made on first use
        self.cpu = {}                   # ITIMER_VIRTUAL/PROF -> CpuTimer, made on first use
        self.posix = {}                 # id -> PosixTimer
        self.next_id = 0


def _per_group(g, name, make):
    """g's attribute ``name``, made by ``make()`` on first use (once, under the kernel lock)."""
    obj = getattr(g, name, None)
    if obj is None:
        with g.kernel.lock:
            obj = getattr(g, name, None)
            if obj is None:
                obj = make()
                setattr(g, name, obj)
    return obj


def group_timers(g):
    """The group's GroupTimers, made on first use."""
    return _per_group(g, "timers", GroupTimers)


def _any_task(g):
    tasks = [x for x in g.tasks.values() if x is not None]
    return tasks[0] if tasks else None


def real_timer(g):
    """The group's ITIMER_REAL Timer: SIGALRM (si_code SI_KERNEL) to the process."""
    gt = group_timers(g)
    with g.kernel.lock:
        if gt.real is None:
            gt.real = service(g.kernel).timer(lambda n, gen: _send_alarm(g))
        return gt.real


def _send_alarm(g):
    k = g.kernel
    with k.lock:
        target = _any_task(g)
    if target is not None:
        info = siginfo_bytes(SIGALRM, SI_KERNEL)
        k.send_signal(target, SIGALRM, info, group=True)


def timer_siginfo(pt, overrun):
    info = bytearray(SIGINFO_SIZE)
    SIGINFO_TIMER.pack_into(info, 0, pt.signo, 0, SI_TIMER, pt.id, overrun, pt.value)
    return info


def fire_posix(pt, n):
    """An expiry of POSIX timer pt, `n` periods at once: queue its signal, or
    add to the overrun of the one still queued."""
    if pt.notify == 1:                  # SIGEV_NONE
        return
    g = pt.group
    k = g.kernel
    with k.lock:
        if pt.deleted or g.wstatus is not None or g.exiting is not None:
            return
        target = pt.target if pt.target is not None else _any_task(g)
        if target is None:
            return
        info = pt.info
        if info is not None and _queued(pt, info):
            over = _overrun(info) + n
            struct.pack_into("<i", info, SIGINFO_OVERRUN_OFFSET, min(over, DELAYTIMER_MAX))
            return
        if info is not None:
            pt.last_overrun = _overrun(info)
        pt.info = info = timer_siginfo(pt, min(n - 1, DELAYTIMER_MAX))
    k.send_signal(target, pt.signo, info, group=pt.target is None)


def _queued(pt, info):
    """Is this siginfo still queued, not yet delivered? Kernel.lock held.
    A process-directed signal may sit on the group or on any of its threads."""
    if pt.target is not None:
        queues = (pt.target.pending,)
    else:
        queues = [pt.group.pending] + [x.pending for x in pt.group.tasks.values() if x is not None]
    return any(item[1] is info for q in queues for item in q)


def _overrun(info):
    return struct.unpack_from("<i", info, SIGINFO_OVERRUN_OFFSET)[0]


def getoverrun(pt):
    """timer_getoverrun(2): the overrun of the last signal delivered."""
    with pt.group.kernel.lock:
        info = pt.info
        if info is None:
            return 0
        return pt.last_overrun if _queued(pt, info) else _overrun(info)


def delete_posix_timers(g):
    """Cancel and forget the group's POSIX timers (execve, exit)."""
    gt = getattr(g, "timers", None)
    if gt is None:
        return
    with g.kernel.lock:
        timers, gt.posix = list(gt.posix.values()), {}
        for pt in timers:
            pt.deleted = True
    for pt in timers:
        pt.timer.cancel()


def on_exec(g):
    """execve(2): POSIX timers are deleted; the itimers and alarm stay."""
    delete_posix_timers(g)


def group_gone(g):
    """The thread group died: cancel every timer it owns (idempotent)."""
    delete_posix_timers(g)
    gt = getattr(g, "timers", None)
    if gt is not None and gt.real is not None:
        gt.real.cancel()
    if gt is not None:
        for ct in list(gt.cpu.values()):
            ct.cancel()


# -- CPU time (see the module docstring) -------------------------------------------------

CPU_POLL_NS = 10_000_000          # CPU timers are checked this often while armed
PROF, VIRT = 0, 1                 # host CPU clock kinds: user+system, user
CPUCLOCK_PERTHREAD = 4


def _host_clock(ident, kind, thread):
    return ((~ident) << 3) | kind | (CPUCLOCK_PERTHREAD if thread else 0)


def task_cpu_source(context):
    """What to read for the CPU time of the task about to run `context` on
    the calling thread: (key, user clock, prof clock, (user, prof) base)."""
    pid = getattr(getattr(context, "aspace", None), "pid", None)
    if pid is not None:                       # ptrace: the stub process
        return (("p", pid), _host_clock(pid, VIRT, False), _host_clock(pid, PROF, False), (0, 0))
    tid = threading.get_native_id()           # KVM: this Sentry thread, from now on
    uclk, pclk = _host_clock(tid, VIRT, True), _host_clock(tid, PROF, True)
    try:
        base = (time.clock_gettime_ns(uclk), time.clock_gettime_ns(pclk))
    except OSError:
        base = (0, 0)
    return (("t", tid), uclk, pclk, base)


def _read_source(src):
    """(user, prof) ns now, or None once the source is gone."""
    _key, uclk, pclk, _base = src
    try:
        return time.clock_gettime_ns(uclk), time.clock_gettime_ns(pclk)
    except (OSError, OverflowError):
        return None


class CpuAccount:
    """A thread group's CPU time: totals from the deltas of its sources.
    `children` holds the totals of reaped children (getrusage RUSAGE_CHILDREN)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.user = 0
        self.prof = 0
        self.seen = {}                  # source key -> (user, prof) last read
        self.children = (0, 0)

    def update(self, sources, drop_others=True):
        """Add what each source used since it was last read; returns (user, prof)."""
        with self.lock:
            keys = set()
            for src in sources:
                now = _read_source(src)
                if now is None:
                    continue
                key = src[0]
                keys.add(key)
                lu, lp = self.seen.get(key, src[3])
                self.user += max(0, now[0] - lu)
                self.prof += max(0, now[1] - lp)
                self.seen[key] = now
            if drop_others:
                for key in [k for k in self.seen if k not in keys]:
                    del self.seen[key]
            return self.user, max(self.prof, self.user)


def cpu_account(g):
    """The group's CpuAccount, made on first use."""
    return _per_group(g, "cpu_account", CpuAccount)


def _sources(g):
    with g.kernel.lock:
        tasks = [x for x in g.tasks.values() if x is not None]
    out, keys = [], set()
    for x in tasks:
        src = getattr(x, "cpu_source", None)
        if src is not None and src[0] not in keys:
            keys.add(src[0])
            out.append(src)
    return out


def group_cpu(g):
    """(user ns, user+system ns) the thread group has used so far."""
    return cpu_account(g).update(_sources(g))


def task_cpu(t):
    """(user ns, user+system ns) of one task; N.B. under ptrace its whole stub process's."""
    src = getattr(t, "cpu_source", None)
    now = _read_source(src) if src is not None else None
    if now is None:
        return 0, 0
    u, p = now[0] - src[3][0], now[1] - src[3][1]
    return max(0, u), max(0, p, u)


def task_exiting(t):
    """t is about to end: read its source one last time while it still exists."""
    src = getattr(t, "cpu_source", None)
    if src is not None:
        cpu_account(t.group).update([src], drop_others=False)


def child_reaped(parent, child):
    """wait(2) reaped `child`: its totals, and its own children's, become the parent's."""
    cu, cp = cpu_account(child).update([])
    ku, kp = cpu_account(child).children
    acct = cpu_account(parent)
    with acct.lock:
        u, p = acct.children
        acct.children = (u + cu + ku, p + cp + kp)


def children_cpu(g):
    return cpu_account(g).children


class CpuClock:
    """A CPU-time clock as a timer counts it: `now()` in ns. kind VIRT or PROF
    of a thread group, or of one task (`task` set)."""

    def __init__(self, group, kind, task=None):
        self.group = group
        self.kind = kind
        self.task = task

    def now(self):
        u, p = task_cpu(self.task) if self.task is not None else group_cpu(self.group)
        return u if self.kind == VIRT else p


class CpuTimer:
    """An interval timer on a CpuClock; the same interface as Timer (`set`,
    `cancel`, `get`, `current`, `service.now()`), with deadlines in that
    clock's ns. Fields are guarded by the CpuTimers' lock."""

    __slots__ = ("service", "callback", "deadline", "interval", "gen", "_poller")

    def __init__(self, poller, clock, callback):
        self._poller = poller
        self.service = clock
        self.callback = callback
        self.deadline = None
        self.interval = 0
        self.gen = 0

    def set(self, deadline, interval):
        return self._poller.arm(self, deadline, interval)

    def cancel(self):
        return self._poller.arm(self, None, 0)

    def get(self):
        with self._poller.lock:
            return self._poller.remaining_locked(self, self.service.now())

    def current(self, gen):
        return self.gen == gen


class CpuTimers:
    """The kernel's armed CPU timers, checked every CPU_POLL_NS by one
    periodic Timer on the TimerService while any is armed.

    Lock order: CpuTimers.lock, then TimerService._cond (the poll timer is
    armed and cancelled with our lock held); CpuTimer callbacks and clock
    reads run with neither held."""

    def __init__(self, svc):
        self.svc = svc
        self.lock = threading.Lock()
        self.armed = set()
        self.poll = svc.timer(lambda n, gen: self.check())

    def timer(self, clock, callback):
        return CpuTimer(self, clock, callback)

    def remaining_locked(self, timer, now):
        if timer.deadline is None:
            return 0, timer.interval
        return max(timer.deadline - now, 1), timer.interval

    def arm(self, timer, deadline, interval):
        now = timer.service.now()
        with self.lock:
            old = self.remaining_locked(timer, now)
            timer.gen += 1
            timer.deadline = deadline
            timer.interval = interval
            was = bool(self.armed)
            if deadline is None:
                self.armed.discard(timer)
            else:
                self.armed.add(timer)
            # Under our lock, so a check() that finds nothing armed cannot
            # cancel the poll just started for a new timer.
            if not was and self.armed:
                self.poll.set(self.svc.now() + CPU_POLL_NS, CPU_POLL_NS)
            elif was and not self.armed:
                self.poll.cancel()
        if deadline is not None and deadline <= now:
            self.check()
        return old

    def check(self):
        """Fire every armed CPU timer whose clock has passed its deadline."""
        with self.lock:
            timers = list(self.armed)
        nows = {}
        fired = []
        for timer in timers:
            clock = timer.service
            key = (id(clock.group), id(clock.task), clock.kind)
            if key not in nows:
                nows[key] = clock.now()
            now = nows[key]
            with self.lock:
                if timer not in self.armed or timer.deadline is None or now < timer.deadline:
                    continue
                n = 1
                if timer.interval:
                    n += (now - timer.deadline) // timer.interval
                    timer.deadline += n * timer.interval
                else:
                    timer.deadline = None
                    self.armed.discard(timer)
                fired.append((timer, n, timer.gen))
        with self.lock:
            if not self.armed:
                self.poll.cancel()
        for timer, n, gen in fired:
            timer.callback(n, gen)


def cpu_timers(kernel):
    """The kernel's CpuTimers, made on first use."""
    return made_once(kernel, "cpu_timers", lambda: CpuTimers(service(kernel)))


def cpu_itimer(g, which):
    """The group's ITIMER_VIRTUAL (1) or ITIMER_PROF (2): SIGVTALRM/SIGPROF to the process."""
    gt = group_timers(g)
    with g.kernel.lock:
        ct = gt.cpu.get(which)
    if ct is None:
        signo = SIGVTALRM if which == 1 else SIGPROF
        made = cpu_timers(g.kernel).timer(CpuClock(g, VIRT if which == 1 else PROF),
                                          lambda n, gen: _send_cpu_signal(g, signo))
        with g.kernel.lock:
            ct = gt.cpu.setdefault(which, made)
    return ct


def _send_cpu_signal(g, signo):
    k = g.kernel
    with k.lock:
        target = _any_task(g)
    if target is not None:
        info = siginfo_bytes(signo, SI_KERNEL)
        k.send_signal(target, signo, info, group=True)
