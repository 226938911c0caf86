"""Unit tests of the timer service, the per-process timers, their syscalls
and timerfd, on a real Kernel object (no platform started) with stand-in
tasks whose memory is a bytearray. Time is an input: the service under test
runs on a fake clock and is driven with run_due(now); one test runs the real
service thread.
"""

import errno
import struct
import threading
import time
from types import SimpleNamespace

import pytest

from pyvisor.sentry import timers, waiting
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel import Kernel
from pyvisor.sentry.syscalls.table import build_table
from pyvisor.sentry.syscalls import timer as sc
from pyvisor.sentry.task import SignalState, ThreadGroup
from pyvisor.sentry.vfs.fdtable import FDTable
from pyvisor.sentry.vfs.timerfd import TimerFile, make_timerfd
from pyvisor.sentry.vfs.waitq import POLLIN

NS = timers.NSEC
MS = NS // 1000
BASE, SIZE = 0x10000, 0x4000
A, B, C = BASE, BASE + 0x100, BASE + 0x200
BAD = 8
SIGALRM, SIGUSR1, SIGRTMIN = 14, 10, 34


class FakeClock:
    def __init__(self):
        self.now = 1000 * NS

    def __call__(self):
        return self.now


class StandInTask:
    """The handler contract's parts that timers use; memory is a bytearray at BASE."""

    def __init__(self, kernel, group, tid):
        self.kernel, self.group, self.tid = kernel, group, tid
        self.mem = bytearray(SIZE)
        self.pending = []
        self.signals = SignalState()
        self.fdtable = FDTable()
        self.killed = False
        self.interrupts = 0

    @property
    def pid(self):
        return self.group.tgid

    def _off(self, addr, n):
        if addr < BASE or addr + n > BASE + SIZE:
            raise SyscallError(errno.EFAULT)
        return addr - BASE

    def copy_in(self, addr, n):
        off = self._off(addr, n)
        return bytes(self.mem[off:off + n])

    def copy_out(self, addr, data):
        off = self._off(addr, len(data))
        self.mem[off:off + len(data)] = data

    def interrupt(self):
        self.interrupts += 1


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def kernel(clock):
    k = Kernel(SimpleNamespace(hostname="sandbox", strace=False, debug=False), build_table())
    k.timer_service = timers.TimerService(clock=clock, threaded=False)
    return k


def spawn(k, tgid, ntasks=1):
    g = ThreadGroup(k, tgid, None)
    k.groups[tgid] = g
    tasks = []
    for i in range(ntasks):
        t = StandInTask(k, g, tgid + i)
        g.tasks[t.tid] = t
        k.tasks[t.tid] = t
        tasks.append(t)
    return tasks


@pytest.fixture
def t(kernel):
    return spawn(kernel, 1)[0]


def fails(err, fn, *args):
    with pytest.raises(SyscallError) as e:
        fn(*args)
    assert e.value.errno == err, "expected %s, got %s" % (errno.errorcode[err], e.value)


def put_pair(t, addr, isec, isub, vsec, vsub):
    t.copy_out(addr, struct.pack("<qqqq", isec, isub, vsec, vsub))


def get_pair(t, addr):
    return struct.unpack("<qqqq", t.copy_in(addr, 32))


def queued(g):
    """Every signal queued in the group: Kernel.send_signal puts a
    process-directed one on a thread that does not block it, if any."""
    return list(g.pending) + [item for x in g.tasks.values() for item in x.pending]


def delivered(g):
    """Take every queued signal, as delivery would."""
    g.pending.clear()
    for x in g.tasks.values():
        x.pending.clear()


def advance(k, clock, ns):
    clock.now += ns
    k.timer_service.run_due()


# --- the service --------------------------------------------------------------------


def test_service_one_shot_and_interval(clock):
    svc = timers.TimerService(clock=clock, threaded=False)
    fired = []
    one = svc.timer(lambda n, gen: fired.append(("one", n)))
    rep = svc.timer(lambda n, gen: fired.append(("rep", n)))
    base = clock.now
    assert one.set(base + 10 * MS, 0) == (0, 0)
    rep.set(base + 5 * MS, 5 * MS)
    assert svc.run_due(base + 4 * MS) == base + 5 * MS
    assert fired == []
    assert svc.run_due(base + 10 * MS) == base + 15 * MS
    assert sorted(fired) == [("one", 1), ("rep", 2)]     # 5 and 10 ms are both due
    assert one.get() == (0, 0)
    fired.clear()
    svc.run_due(base + 37 * MS)                           # late: 15, 20, ..., 35
    assert fired == [("rep", 5)]
    assert rep.get() == (40 * MS, 5 * MS)                 # next on the grid: 40


def test_service_rearm_and_cancel_drop_old_entries(clock):
    svc = timers.TimerService(clock=clock, threaded=False)
    fired = []
    tm = svc.timer(lambda n, gen: fired.append(n))
    tm.set(clock.now + 10, 0)
    old = tm.set(clock.now + 100, 7)
    assert old == (10, 0)
    clock.now += 50
    svc.run_due()
    assert fired == []
    assert tm.cancel() == (50, 7)
    svc.run_due(clock.now + 1000)
    assert fired == []
    assert tm.get() == (0, 0)


def test_remaining_of_late_interval_timer_stays_on_grid(clock):
    svc = timers.TimerService(clock=clock, threaded=False)
    tm = svc.timer(lambda n, gen: None)
    tm.set(clock.now + 10, 10)
    clock.now += 23                     # not run: the service is late
    assert tm.get() == (7, 10)
    tm.set(clock.now, 0)                # due right now, not yet fired
    assert tm.get() == (1, 0)           # armed never reads 0


def test_tiny_interval_is_counted_exactly_without_spinning(clock):
    svc = timers.TimerService(clock=clock, threaded=False)
    fired = []
    tm = svc.timer(lambda n, gen: fired.append(n))
    tm.set(clock.now + 1, 1)                         # every nanosecond
    clock.now += 10
    assert svc.run_due() == clock.now + timers.MIN_WAKE_NS
    assert fired == [10]
    clock.now += timers.MIN_WAKE_NS
    svc.run_due()
    assert fired == [10, timers.MIN_WAKE_NS]


def test_disarmed_timer_keeps_interval_for_get(clock):
    svc = timers.TimerService(clock=clock, threaded=False)
    tm = svc.timer(lambda n, gen: None)
    tm.set(None, 5000)
    assert tm.get() == (0, 5000)


def test_current_generation(clock):
    svc = timers.TimerService(clock=clock, threaded=False)
    gens = []
    tm = svc.timer(lambda n, gen: gens.append(gen))
    tm.set(clock.now + 1, 0)
    svc.run_due(clock.now + 1)
    assert tm.current(gens[0])
    tm.set(clock.now + 5, 0)
    assert not tm.current(gens[0])


def test_real_thread_fires_and_shuts_down():
    svc = timers.TimerService()
    done = threading.Event()
    got = []
    tm = svc.timer(lambda n, gen: (got.append(n), done.set()))
    tm.set(svc.now() + 20 * MS, 0)
    assert done.wait(5)
    assert got == [1]
    far = svc.timer(lambda n, gen: None)
    far.set(svc.now() + 10 ** 30 * NS, 0)      # far future must not overflow the wait
    time.sleep(0.01)
    svc.shutdown()
    assert not svc._thread.is_alive()


def test_to_deadline_converts_absolute_clocks(clock):
    svc = timers.TimerService(clock=clock, threaded=False)
    assert timers.to_deadline(svc, timers.CLOCK_MONOTONIC, 5, False) == clock.now + 5
    assert timers.to_deadline(svc, timers.CLOCK_MONOTONIC, 77, True) == 77
    wall = time.clock_gettime_ns(time.CLOCK_REALTIME)
    d = timers.to_deadline(svc, timers.CLOCK_REALTIME, wall + 10 * NS, True)
    assert abs(d - (clock.now + 10 * NS)) < NS


# --- alarm and itimers ------------------------------------------------------------------


def test_alarm_fires_sigalrm_to_group_and_rounds(kernel, clock, t):
    assert sc.sys_alarm(t, 5) == 0
    clock.now += 3 * NS + NS // 2           # 1.5 s left: rounds to 2
    assert sc.sys_alarm(t, 1) == 2
    clock.now += NS // 2 - 1                # 1 ns short of 0.5 s left... still rounds up to 1
    assert sc.sys_alarm(t, 1) == 1
    clock.now += NS - 1                     # 1 ns left: never 0 while pending
    assert sc.sys_alarm(t, 1) == 1
    advance(kernel, clock, NS)
    assert [s for s, _ in queued(t.group)] == [SIGALRM]
    signo, _e, code = struct.unpack_from("<iii", queued(t.group)[0][1])
    assert (signo, code) == (SIGALRM, timers.SI_KERNEL)
    assert sc.sys_alarm(t, 0) == 0


def test_alarm_argument_is_unsigned_32(kernel, clock, t):
    sc.sys_alarm(t, (1 << 32) + 3)
    assert sc.sys_alarm(t, 0) == 3


def test_setitimer_interval_and_old_value(kernel, clock, t):
    put_pair(t, A, 0, 30000, 0, 50000)
    assert sc.sys_setitimer(t, 0, A, 0) == 0
    advance(kernel, clock, 50 * MS)
    assert len(queued(t.group)) == 1
    delivered(t.group)
    advance(kernel, clock, 90 * MS)         # 3 periods at once: one signal
    assert len(queued(t.group)) == 1
    assert sc.sys_getitimer(t, 0, B) == 0
    assert get_pair(t, B) == (0, 30000, 0, 30000)
    put_pair(t, A, 0, 0, 0, 0)
    assert sc.sys_setitimer(t, 0, A, C) == 0
    assert get_pair(t, C) == (0, 30000, 0, 30000)
    sc.sys_getitimer(t, 0, B)
    assert get_pair(t, B) == (0, 0, 0, 0)


def test_alarm_and_itimer_real_share_one_timer(kernel, clock, t):
    put_pair(t, A, 1, 0, 100, 0)
    sc.sys_setitimer(t, 0, A, 0)
    assert sc.sys_alarm(t, 0) == 100
    sc.sys_getitimer(t, 0, B)
    assert get_pair(t, B) == (0, 0, 0, 0)      # alarm cleared the interval too


def test_itimer_real_reads_at_least_one_microsecond(kernel, clock, t):
    put_pair(t, A, 0, 0, 0, 1)
    sc.sys_setitimer(t, 0, A, 0)
    clock.now += 999
    sc.sys_getitimer(t, 0, B)
    assert get_pair(t, B) == (0, 0, 0, 1)


def test_cpu_itimers_are_stored_not_fired(kernel, clock, t):
    put_pair(t, A, 0, 10, 2, 500)
    for which in (1, 2):
        assert sc.sys_setitimer(t, which, A, 0) == 0
        sc.sys_getitimer(t, which, B)
        assert get_pair(t, B) == (0, 10, 2, 500)
    advance(kernel, clock, 10 * NS)
    assert queued(t.group) == []
    put_pair(t, A, 0, 10, 0, 0)                # zero value disarms, interval too
    sc.sys_setitimer(t, 1, A, C)
    assert get_pair(t, C) == (0, 10, 2, 500)
    sc.sys_getitimer(t, 1, B)
    assert get_pair(t, B) == (0, 0, 0, 0)


def test_itimer_bad_input(kernel, clock, t):
    put_pair(t, A, 0, 0, 0, 1)
    for which in (3, -1, 1 << 32 | 7):
        fails(errno.EINVAL, sc.sys_setitimer, t, which, A, 0)
        fails(errno.EINVAL, sc.sys_getitimer, t, which, B)
    for bad in ((0, 0, 0, 1000000), (0, 0, 0, -1), (-1, 0, 0, 0), (0, 0, -1, 0), (0, 1000000, 0, 0)):
        put_pair(t, A, *bad)
        fails(errno.EINVAL, sc.sys_setitimer, t, 0, A, 0)
    fails(errno.EFAULT, sc.sys_setitimer, t, 0, BAD, 0)
    fails(errno.EFAULT, sc.sys_getitimer, t, 0, BAD)
    put_pair(t, A, 0, 0, 5, 0)
    fails(errno.EFAULT, sc.sys_setitimer, t, 0, A, BAD)
    assert sc.sys_alarm(t, 0) == 0                 # EFAULT on old: nothing was armed
    assert sc.sys_setitimer(t, 0, 0, 0) == 0       # NULL new: disarm


# --- POSIX timers --------------------------------------------------------------------


def put_sigevent(t, addr, notify, signo, value=0, tid=0):
    t.copy_out(addr, struct.pack("<Qiii", value, signo, notify, tid).ljust(64, b"\0"))


def created_id(t, addr=C):
    return struct.unpack("<i", t.copy_in(addr, 4))[0]


def timer_info(info):
    return struct.unpack_from("<iii4xiiQ", info)    # signo, errno, code, tid, overrun, value


def test_timer_create_default_sevp(kernel, clock, t):
    assert sc.sys_timer_create(t, 1, 0, C) == 0
    first = created_id(t)
    assert sc.sys_timer_create(t, 1, 0, C) == 0
    second = created_id(t)
    assert (first, second) == (0, 1)
    put_pair(t, A, 0, 0, 0, 10 * MS)
    assert sc.sys_timer_settime(t, second, 0, A, 0) == 0
    advance(kernel, clock, 10 * MS)
    [(signo, info)] = queued(t.group)
    assert signo == SIGALRM
    assert timer_info(info) == (SIGALRM, 0, timers.SI_TIMER, 1, 0, 1)


def test_timer_signal_overrun_while_pending(kernel, clock, t):
    put_sigevent(t, B, sc.SIGEV_SIGNAL, SIGRTMIN, value=4242)
    sc.sys_timer_create(t, 0, B, C)
    tid = created_id(t)
    put_pair(t, A, 0, 10 * MS, 0, 10 * MS)
    sc.sys_timer_settime(t, tid, 0, A, 0)
    advance(kernel, clock, 10 * MS)
    advance(kernel, clock, 10 * MS)
    advance(kernel, clock, 30 * MS)
    [(signo, info)] = queued(t.group)            # one signal, overrun 1 + 3
    assert timer_info(info) == (SIGRTMIN, 0, timers.SI_TIMER, tid, 4, 4242)
    assert sc.sys_timer_getoverrun(t, tid) == 0  # not delivered yet
    delivered(t.group)                      # delivered
    assert sc.sys_timer_getoverrun(t, tid) == 4
    advance(kernel, clock, 10 * MS)
    [(signo, info)] = queued(t.group)
    assert timer_info(info)[4] == 0
    assert sc.sys_timer_getoverrun(t, tid) == 4


def test_timer_absolute_realtime_and_gettime(kernel, clock, t):
    sc.sys_timer_create(t, 0, 0, C)
    tid = created_id(t)
    wall = time.clock_gettime_ns(time.CLOCK_REALTIME) + 5 * NS
    put_pair(t, A, 2, 0, wall // NS, wall % NS)
    put_pair(t, B, 9, 9, 9, 9)
    assert sc.sys_timer_settime(t, tid, sc.TIMER_ABSTIME, A, B) == 0
    assert get_pair(t, B) == (0, 0, 0, 0)
    sc.sys_timer_gettime(t, tid, B)
    isec, insec, vsec, vnsec = get_pair(t, B)
    assert (isec, insec) == (2, 0)
    assert 4 * NS < vsec * NS + vnsec <= 5 * NS
    advance(kernel, clock, 5 * NS)
    assert len(queued(t.group)) == 1


def test_timer_in_the_past_fires_at_once(kernel, clock, t):
    sc.sys_timer_create(t, 1, 0, C)
    put_pair(t, A, 0, 0, 0, 1)
    sc.sys_timer_settime(t, 0, sc.TIMER_ABSTIME, A, 0)   # monotonic 1 ns: long past
    kernel.timer_service.run_due()
    assert len(queued(t.group)) == 1


def test_sigev_none_counts_time_without_signals(kernel, clock, t):
    put_sigevent(t, B, sc.SIGEV_NONE, 0)
    sc.sys_timer_create(t, 1, B, C)
    put_pair(t, A, 0, 0, 50, 0)
    sc.sys_timer_settime(t, 0, 0, A, 0)
    advance(kernel, clock, 10 * NS)
    sc.sys_timer_gettime(t, 0, B)
    assert get_pair(t, B) == (0, 0, 40, 0)
    advance(kernel, clock, 50 * NS)
    sc.sys_timer_gettime(t, 0, B)
    assert get_pair(t, B) == (0, 0, 0, 0)
    assert queued(t.group) == [] and t.pending == []


def test_sigev_thread_id_targets_the_thread(kernel, clock):
    main, other = spawn(kernel, 10, ntasks=2)
    put_sigevent(main, B, sc.SIGEV_THREAD_ID, SIGUSR1, value=77, tid=other.tid)
    assert sc.sys_timer_create(main, 1, B, C) == 0
    put_pair(main, A, 0, 0, 0, MS)
    sc.sys_timer_settime(main, created_id(main), 0, A, 0)
    advance(kernel, clock, MS)
    assert main.group.pending == [] and main.pending == []
    [(signo, info)] = other.pending
    assert timer_info(info)[:3] == (SIGUSR1, 0, timers.SI_TIMER)
    assert other.interrupts == 1


def test_sigev_thread_id_must_be_in_the_group(kernel, clock, t):
    stranger = spawn(kernel, 20)[0]
    for tid in (stranger.tid, 999):
        put_sigevent(t, B, sc.SIGEV_THREAD_ID, SIGUSR1, tid=tid)
        fails(errno.EINVAL, sc.sys_timer_create, t, 1, B, C)


def test_timer_create_bad_input(kernel, clock, t):
    for clk in (99, 12, -1 << 20 | 7):
        fails(errno.EINVAL, sc.sys_timer_create, t, clk, 0, C)
    # ... | 3 is a dynamic (fd) clock: Linux has no timers on them (tests/c/cputimers.c)
    for clk in (4, 5, 6, -1 << 20 | 3):
        fails(errno.EOPNOTSUPP, sc.sys_timer_create, t, clk, 0, C)
    for notify, signo in ((77, SIGALRM), (3, SIGALRM), (sc.SIGEV_SIGNAL, 0), (sc.SIGEV_SIGNAL, 65),
                          (sc.SIGEV_THREAD, -1)):
        put_sigevent(t, B, notify, signo)
        fails(errno.EINVAL, sc.sys_timer_create, t, 1, B, C)
    fails(errno.EFAULT, sc.sys_timer_create, t, 1, BAD, C)
    fails(errno.EFAULT, sc.sys_timer_create, t, 1, 0, BAD)
    assert timers.group_timers(t.group).posix == {}    # nothing was created
    put_sigevent(t, B, sc.SIGEV_NONE, 0)               # SIGEV_NONE: signo not checked
    assert sc.sys_timer_create(t, 1, B, C) == 0
    assert sc.sys_timer_create(t, 7, 0, C) == 0        # BOOTTIME
    assert sc.sys_timer_create(t, 2, 0, C) == 0        # process CPU clock (approximated)


def test_timer_settime_gettime_delete_bad_input(kernel, clock, t):
    sc.sys_timer_create(t, 1, 0, C)
    put_pair(t, A, 0, 0, 0, NS)
    fails(errno.EINVAL, sc.sys_timer_settime, t, 0, 0, A, 0)      # tv_nsec out of range
    put_pair(t, A, 0, -1, 0, 1)
    fails(errno.EINVAL, sc.sys_timer_settime, t, 0, 0, A, 0)
    put_pair(t, A, 0, 0, -1, 0)
    fails(errno.EINVAL, sc.sys_timer_settime, t, 0, 0, A, 0)
    fails(errno.EINVAL, sc.sys_timer_settime, t, 0, 0, 0, 0)      # NULL new
    fails(errno.EFAULT, sc.sys_timer_settime, t, 0, 0, BAD, 0)
    put_pair(t, A, 0, 0, 1, 0)
    fails(errno.EFAULT, sc.sys_timer_settime, t, 0, 0, A, BAD)
    for bad in (1, -1, 12345):
        fails(errno.EINVAL, sc.sys_timer_settime, t, bad, 0, A, 0)
        fails(errno.EINVAL, sc.sys_timer_gettime, t, bad, B)
        fails(errno.EINVAL, sc.sys_timer_getoverrun, t, bad)
        fails(errno.EINVAL, sc.sys_timer_delete, t, bad)
    fails(errno.EFAULT, sc.sys_timer_gettime, t, 0, BAD)
    assert sc.sys_timer_delete(t, 0) == 0
    fails(errno.EINVAL, sc.sys_timer_delete, t, 0)
    sc.sys_timer_create(t, 1, 0, C)
    assert created_id(t) == 1                           # ids are not reused


def test_deleted_timer_never_fires(kernel, clock, t):
    sc.sys_timer_create(t, 1, 0, C)
    put_pair(t, A, 0, MS, 0, MS)
    sc.sys_timer_settime(t, 0, 0, A, 0)
    sc.sys_timer_delete(t, 0)
    advance(kernel, clock, 10 * MS)
    assert queued(t.group) == []


def test_exec_keeps_itimers_and_drops_posix_timers(kernel, clock, t):
    sc.sys_alarm(t, 1)
    sc.sys_timer_create(t, 1, 0, C)
    put_pair(t, A, 0, 0, 0, MS)
    sc.sys_timer_settime(t, 0, 0, A, 0)
    timers.on_exec(t.group)
    fails(errno.EINVAL, sc.sys_timer_gettime, t, 0, B)
    advance(kernel, clock, NS)
    assert [s for s, _ in queued(t.group)] == [SIGALRM]


def test_group_gone_cancels_everything(kernel, clock, t):
    sc.sys_alarm(t, 1)
    sc.sys_timer_create(t, 1, 0, C)
    put_pair(t, A, 0, MS, 0, MS)
    sc.sys_timer_settime(t, 0, 0, A, 0)
    timers.group_gone(t.group)
    timers.group_gone(t.group)                 # idempotent
    advance(kernel, clock, 2 * NS)
    assert queued(t.group) == []
    assert kernel.timer_service._heap == [] or all(
        e[3] != e[2].gen for e in kernel.timer_service._heap)


def test_firing_on_a_dead_group_is_harmless(kernel, clock, t):
    sc.sys_alarm(t, 1)
    sc.sys_timer_create(t, 1, 0, C)
    put_pair(t, A, 0, 0, 0, MS)
    sc.sys_timer_settime(t, 0, 0, A, 0)
    g = t.group
    g.tasks.clear()
    kernel.tasks.clear()
    g.wstatus = 0
    advance(kernel, clock, 2 * NS)
    assert queued(g) == [] and t.pending == []


# --- timerfd ------------------------------------------------------------------------------


def test_timerfd_counts_expiries_and_polls(kernel, clock, t):
    fd = sc.sys_timerfd_create(t, 1, 0o4000)          # TFD_NONBLOCK
    f = t.fdtable.get(fd)
    assert isinstance(f, TimerFile)
    woken = []
    f.waitq.register(woken.append)
    fails(errno.EAGAIN, f.pread, 8, -1)
    put_pair(t, A, 0, 10 * MS, 0, 10 * MS)
    assert sc.sys_timerfd_settime(t, fd, 0, A, 0) == 0
    assert f.poll_events() == 0
    advance(kernel, clock, 35 * MS)
    assert f.poll_events() & POLLIN and woken
    assert f.pread(8, -1) == struct.pack("=Q", 3)
    assert f.poll_events() == 0
    sc.sys_timerfd_gettime(t, fd, B)
    assert get_pair(t, B) == (0, 10 * MS, 0, 5 * MS)
    advance(kernel, clock, 5 * MS)
    put_pair(t, A, 0, 0, 0, 0)
    sc.sys_timerfd_settime(t, fd, 0, A, C)            # disarm resets the count
    assert get_pair(t, C) == (0, 10 * MS, 0, 10 * MS)
    fails(errno.EAGAIN, f.pread, 8, -1)
    assert b"ticks: 0" in f.fdinfo()


def test_timerfd_blocking_read_is_woken(kernel, clock, t):
    f = make_timerfd(kernel.timer_service, timers.CLOCK_MONOTONIC, 0)
    f.settime(0, MS, 0)
    out = []
    reader = threading.Thread(target=lambda: out.append(f.pread(8, -1)))
    reader.start()
    time.sleep(0.02)
    assert out == []
    advance(kernel, clock, MS)
    reader.join(5)
    assert out == [struct.pack("=Q", 1)]


def test_timerfd_blocking_read_is_interrupted(kernel, clock, t):
    f = make_timerfd(kernel.timer_service, timers.CLOCK_MONOTONIC, 0)
    errs = []
    task = SimpleNamespace(wait_lock=threading.Lock(), waiting_on=None, flag=False)
    task.interrupt_pending = lambda: task.flag

    def run():
        waiting.set_current_task(task)
        try:
            f.pread(8, -1)
        except waiting.Interrupted:
            errs.append("EINTR")
    reader = threading.Thread(target=run)
    reader.start()
    time.sleep(0.02)
    task.flag = True
    with task.wait_lock:
        cond = task.waiting_on
    with cond:
        cond.notify_all()
    reader.join(5)
    assert errs == ["EINTR"]


def test_timerfd_absolute_and_release(kernel, clock, t):
    f = make_timerfd(kernel.timer_service, timers.CLOCK_MONOTONIC, 0)
    f.settime(1, clock.now + 2 * MS, 0)                 # TFD_TIMER_ABSTIME
    assert f.gettime() == (2 * MS, 0)
    f.release()
    advance(kernel, clock, NS)
    assert f.ticks == 0


def test_timerfd_rearm_drops_a_stale_expiry(kernel, clock, t):
    f = make_timerfd(kernel.timer_service, timers.CLOCK_MONOTONIC, 0)
    f.settime(0, MS, 0)
    gen = f.timer.gen
    f.settime(0, NS, 0)
    f._expired(1, gen)                  # an expiry of the old arming, arriving late
    assert f.ticks == 0


def test_timerfd_bad_input(kernel, clock, t):
    for clk in (2, 3, 4, 11, 99, -1):
        fails(errno.EINVAL, sc.sys_timerfd_create, t, clk, 0)
    fails(errno.EINVAL, sc.sys_timerfd_create, t, 1, 1)
    fd = sc.sys_timerfd_create(t, 0, 0o2000000)        # TFD_CLOEXEC
    f = t.fdtable.get(fd)
    fails(errno.EINVAL, f.pread, 4, -1)
    fails(errno.ESPIPE, f.pread, 8, 0)
    fails(errno.EINVAL, f.pwrite, b"\0" * 8, -1)
    put_pair(t, A, 0, 0, 0, 1)
    fails(errno.EINVAL, sc.sys_timerfd_settime, t, fd, 4, A, 0)
    put_pair(t, A, 0, 0, 0, NS)
    fails(errno.EINVAL, sc.sys_timerfd_settime, t, fd, 0, A, 0)
    fails(errno.EFAULT, sc.sys_timerfd_settime, t, fd, 0, BAD, 0)
    put_pair(t, A, 0, 0, 0, 1)
    fails(errno.EBADF, sc.sys_timerfd_settime, t, 99, 0, A, 0)
    fails(errno.EFAULT, sc.sys_timerfd_settime, t, fd, 0, A, BAD)
    fails(errno.EBADF, sc.sys_timerfd_gettime, t, 99, B)
    fails(errno.EFAULT, sc.sys_timerfd_gettime, t, fd, BAD)
    other = sc.sys_timerfd_create(t, 1, 0)
    t.fdtable.install(make_timerfd(kernel.timer_service, 1, 0))
    from pyvisor.sentry.vfs.eventfd import make_eventfd
    efd = t.fdtable.install(make_eventfd(0, 0))
    fails(errno.EINVAL, sc.sys_timerfd_settime, t, efd, 0, A, 0)
    fails(errno.EINVAL, sc.sys_timerfd_gettime, t, efd, B)
    assert sc.sys_timerfd_settime(t, other, 3, A, 0) == 0   # ABSTIME | CANCEL_ON_SET
