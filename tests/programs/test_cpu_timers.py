"""CPU-time timers: ITIMER_VIRTUAL, ITIMER_PROF, POSIX timers on the CPU-time
clocks, and getrusage/times, in the sandbox and natively (tests/c/cputimers.c).

The probe spins until SIGVTALRM, SIGPROF and the POSIX timers' signals
arrive, checks that sleeping uses no CPU time, that a one-shot timer
disarms, that a thread's own CPU clock (pthread_getcpuclockid) can carry a
timer, that getrusage and times agree with the CPU clock, and that a reaped
child's CPU time shows in wait4's rusage, RUSAGE_CHILDREN and times; plus
the bad inputs (bad `which`, bad timeval, bad pointers, bad CPU clock ids).
It prints only speed-independent facts, so the outputs must be equal.
"""

import os
from conftest import TESTS_DIR

HERE = TESTS_DIR


def test_cpu_timers_probe_matches_native(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "cputimers.c"), extra=("-pthread",))
    native = sandbox.native([prog], timeout=60)
    assert native.returncode == 0, native.stderr
    assert b"ITIMER_VIRTUAL: spin 0, signals >= 3: 1, code SI_KERNEL" in native.stdout
    boxed = sandbox.run([prog], cwd="/var/tmp", timeout=90)
    assert boxed.stdout.decode() == native.stdout.decode(), boxed.stderr.decode()
    assert boxed.returncode == 0


def test_cpu_account_sums_sources_that_come_and_go():
    """CpuAccount adds each source's progress since its last reading, keeps
    the totals when a source goes away, and counts a new one from its base."""
    import threading
    import time
    from pyvisor.sentry import timers

    def spin(seconds):
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    tid = threading.get_native_id()
    uclk = timers._host_clock(tid, timers.VIRT, True)
    pclk = timers._host_clock(tid, timers.PROF, True)
    base = (time.clock_gettime_ns(uclk), time.clock_gettime_ns(pclk))
    src = (("t", tid), uclk, pclk, base)
    acct = timers.CpuAccount()
    assert acct.update([src]) == (0, 0) or acct.update([src])[1] < 5_000_000
    spin(0.05)
    user, prof = acct.update([src])
    assert 40_000_000 <= prof < 2_000_000_000 and user <= prof
    # The source goes away: the totals stay.
    assert acct.update([]) == (user, prof)
    # A source that cannot be read (a clock of no thread) is skipped.
    nopid = 4194305                     # above any pid_max
    gone = (("p", nopid), timers._host_clock(nopid, timers.VIRT, False),
            timers._host_clock(nopid, timers.PROF, False), (0, 0))
    assert acct.update([gone]) == (user, prof)
    # Coming back, it counts only from its new base, not from zero.
    now = (time.clock_gettime_ns(uclk), time.clock_gettime_ns(pclk))
    assert acct.update([(("t", tid), uclk, pclk, now)])[1] - prof < 5_000_000


def test_cpu_timers_fire_on_cpu_time_only():
    """A CpuTimer on a real CPU clock (this thread's) fires once that much CPU is used."""
    import threading
    import time
    from pyvisor.sentry import timers

    class Clock:                       # this thread's CPU time, as a CpuClock would read it
        group = task = None
        kind = timers.PROF

        def __init__(self):
            self.tid = threading.get_native_id()

        def now(self):
            return time.clock_gettime_ns(timers._host_clock(self.tid, timers.PROF, True))

    svc = timers.TimerService()
    try:
        ct = timers.CpuTimers(svc)
        fired = []
        clock = Clock()
        t = ct.timer(clock, lambda n, gen: fired.append(n))
        t.set(clock.now() + 30_000_000, 0)
        time.sleep(0.1)                # no CPU used: nothing fires
        assert fired == []
        remaining, interval = t.get()
        assert 20_000_000 < remaining <= 30_000_000 and interval == 0
        end = time.monotonic() + 10
        while not fired and time.monotonic() < end:
            pass                        # spin: CPU time passes
        assert fired == [1]
        assert t.get() == (0, 0)        # one-shot: disarmed
        assert not ct.armed
    finally:
        svc.shutdown()
