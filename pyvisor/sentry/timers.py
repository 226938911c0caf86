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
wall clock (the sandbox cannot set it; the host could). ITIMER_VIRTUAL and
ITIMER_PROF are stored and reported by getitimer but never fire, since CPU
time is not measured per task.

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

NSEC = 1_000_000_000
SIGALRM = 14
SI_KERNEL, SI_TIMER = 0x80, -2
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
# siginfo_t for a POSIX timer: signo, errno, code, pad; si_tid, si_overrun, si_value.
_TIMER_INFO = struct.Struct("<iii4xiiQ")
_OVERRUN_OFFSET = 20


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


_service_lock = threading.Lock()


def service(kernel):
    """The kernel's TimerService, made on first use."""
    s = getattr(kernel, "timer_service", None)
    if s is None:
        with _service_lock:
            s = getattr(kernel, "timer_service", None)
            if s is None:
                s = kernel.timer_service = TimerService()
                # The thread must be gone before the interpreter finalizes: a
                # daemon thread waking then is ended by pthread_exit, which
                # dlopens libgcc_s -- refused by the Sentry's seccomp filter.
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
    itimers (stored only), and its POSIX timers. Guarded by Kernel.lock."""

    def __init__(self):
        self.real = None                # Timer, made on first use
        self.cpu = {1: (0, 0), 2: (0, 0)}   # ITIMER_VIRTUAL/PROF: (value ns, interval ns)
        self.posix = {}                 # id -> PosixTimer
        self.next_id = 0


def group_timers(g):
    """The group's GroupTimers, made on first use."""
    gt = getattr(g, "timers", None)
    if gt is None:
        with g.kernel.lock:
            gt = getattr(g, "timers", None)
            if gt is None:
                gt = g.timers = GroupTimers()
    return gt


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
        info = struct.pack("<iii4x", SIGALRM, 0, SI_KERNEL).ljust(128, b"\0")
        k.send_signal(target, SIGALRM, info, group=True)


def timer_siginfo(pt, overrun):
    info = bytearray(128)
    _TIMER_INFO.pack_into(info, 0, pt.signo, 0, SI_TIMER, pt.id, overrun, pt.value)
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
            struct.pack_into("<i", info, _OVERRUN_OFFSET, min(over, DELAYTIMER_MAX))
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
    return struct.unpack_from("<i", info, _OVERRUN_OFFSET)[0]


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
