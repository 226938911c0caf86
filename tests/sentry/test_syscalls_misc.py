"""Handlers in syscalls/time.py, misc.py and creds.py, through a small task.

The task is a SimpleNamespace whose memory is a bytearray at BASE; any
access outside it raises SyscallError(EFAULT), as the real Task does.
Where the host can run the same calls (credentials, as root), the test runs
them natively in a forked child and compares.
"""

import errno
import json
import os
import struct
import threading
import time
from types import SimpleNamespace

import pytest

from pyvisor.sentry import auth, limits
from pyvisor.sentry.auth import Credentials
from pyvisor.sentry.errors import SyscallError
from pyvisor.abi import numbers as nr
from pyvisor.sentry.syscalls import creds as cr
from pyvisor.sentry.syscalls import misc, sched
from pyvisor.sentry.syscalls import table
from pyvisor.sentry.syscalls import time as tm
from pyvisor.sentry.task import ThreadGroup

BASE = 0x10000
SIZE = 0x3000
BAD = 0xdead0000
U = (1 << 64) - 1


def u(v):
    return v & U


class Memory:
    def __init__(self, size=SIZE):
        self.mem = bytearray(size)

    def _off(self, addr, n):
        if addr < BASE or addr + n > BASE + len(self.mem):
            raise SyscallError(errno.EFAULT)
        return addr - BASE

    def copy_in(self, addr, n):
        off = self._off(addr, n)
        return bytes(self.mem[off:off + n])

    def copy_out(self, addr, data):
        off = self._off(addr, len(data))
        self.mem[off:off + len(data)] = data

    def copy_in_str(self, addr, maxlen=4096):
        off = self._off(addr, 1)
        end = self.mem.find(b"\0", off, off + maxlen)
        if end < 0:
            raise SyscallError(errno.EFAULT)
        return bytes(self.mem[off:end])


def make_task(creds=None, size=SIZE):
    m = Memory(size)
    kernel = SimpleNamespace(hostname=b"sandbox", start_time=time.monotonic() - 100.0,
                             tasks={1: None, 2: None, 5: None}, groups={},
                             lock=threading.RLock())
    # A real ThreadGroup with no tasks: its CPU time (sentry/timers.py) is 0.
    group = ThreadGroup(kernel, 1, None)
    kernel.groups[1] = group
    return SimpleNamespace(copy_in=m.copy_in, copy_out=m.copy_out, copy_in_str=m.copy_in_str,
                           mem=m, kernel=kernel, pid=1, tid=1, group=group, cpu_source=None,
                           creds=creds or Credentials.root(), rlimits=limits.default_rlimits())


@pytest.fixture
def t():
    return make_task()


def fails(err, fn, *args):
    with pytest.raises(SyscallError) as e:
        fn(*args)
    assert e.value.errno == err, "expected %s, got %s" % (errno.errorcode[err], e.value)


A = BASE            # handy addresses inside memory
B = BASE + 0x800
C = BASE + 0x1000
END = BASE + SIZE


def test_table_uses_generated_numbers():
    rows = {r.number: r for r in table.ROWS}
    assert rows[228].handler is tm.sys_clock_gettime
    assert rows[nr.NR_uname].handler is misc.sys_uname and nr.NR_uname == 63
    assert rows[105].handler is cr.sys_setuid


# --- time ---------------------------------------------------------------------

def ts(t, addr):
    return struct.unpack("<qq", t.copy_in(addr, 16))


def test_clock_gettime_clocks(t):
    for clk, host in ((0, time.CLOCK_REALTIME), (1, time.CLOCK_MONOTONIC), (7, time.CLOCK_BOOTTIME)):
        before = time.clock_gettime_ns(host)
        assert tm.sys_clock_gettime(t, clk, A) == 0
        sec, nsec = ts(t, A)
        assert 0 <= nsec < 10**9
        assert before <= sec * 10**9 + nsec <= time.clock_gettime_ns(host)
    for clk in (2, 3, 4, 5, 6, 11):
        assert tm.sys_clock_gettime(t, clk, A) == 0
        assert ts(t, A)[0] >= 0


def test_clock_gettime_dynamic_cpu_clocks(t):
    self_thread = u((~0 << 3) | 4 | 2)       # pthread_getcpuclockid(self)
    other_proc = u((~5 << 3) | 2)
    assert tm.sys_clock_gettime(t, self_thread, A) == 0
    assert tm.sys_clock_gettime(t, other_proc, A) == 0
    fails(errno.EINVAL, tm.sys_clock_gettime, t, u((~999 << 3) | 2), A)   # no such pid
    fails(errno.EINVAL, tm.sys_clock_gettime, t, u((~0 << 3) | 3), A)     # type 3


def test_clock_gettime_errors(t):
    fails(errno.EINVAL, tm.sys_clock_gettime, t, 12, A)
    fails(errno.EINVAL, tm.sys_clock_gettime, t, 100, A)
    fails(errno.EFAULT, tm.sys_clock_gettime, t, 0, BAD)
    fails(errno.EFAULT, tm.sys_clock_gettime, t, 0, 0)
    fails(errno.EFAULT, tm.sys_clock_gettime, t, 0, END - 8)


def test_clock_getres(t):
    assert tm.sys_clock_getres(t, 1, A) == 0
    assert ts(t, A) == (0, 1)
    assert tm.sys_clock_getres(t, 6, A) == 0
    assert ts(t, A) == (0, round(time.clock_getres(6) * 1e9))
    assert tm.sys_clock_getres(t, 0, 0) == 0
    fails(errno.EINVAL, tm.sys_clock_getres, t, 42, A)
    fails(errno.EINVAL, tm.sys_clock_getres, t, 42, 0)
    fails(errno.EFAULT, tm.sys_clock_getres, t, 0, BAD)


def test_gettimeofday_and_time(t):
    t.copy_out(B, b"\xff" * 8)
    assert tm.sys_gettimeofday(t, A, B) == 0
    sec, usec = struct.unpack("<qq", t.copy_in(A, 16))
    assert abs(sec - time.time()) < 5 and 0 <= usec < 10**6
    assert t.copy_in(B, 8) == b"\0" * 8
    assert tm.sys_gettimeofday(t, 0, 0) == 0
    fails(errno.EFAULT, tm.sys_gettimeofday, t, BAD, 0)
    fails(errno.EFAULT, tm.sys_gettimeofday, t, A, BAD)
    now = tm.sys_time(t, 0)
    assert abs(now - time.time()) < 5
    assert tm.sys_time(t, C) >= now and struct.unpack("<q", t.copy_in(C, 8))[0] >= now
    fails(errno.EFAULT, tm.sys_time, t, BAD)


def put_ts(t, addr, sec, nsec):
    t.copy_out(addr, struct.pack("<qq", sec, nsec))
    return addr


def test_nanosleep_sleeps_and_validates(t):
    start = time.monotonic()
    assert tm.sys_nanosleep(t, put_ts(t, A, 0, 20_000_000), 0) == 0
    assert time.monotonic() - start >= 0.02
    for sec, nsec in ((0, -1), (0, 10**9), (-1, 0)):
        fails(errno.EINVAL, tm.sys_nanosleep, t, put_ts(t, A, sec, nsec), 0)
    fails(errno.EFAULT, tm.sys_nanosleep, t, BAD, 0)
    fails(errno.EFAULT, tm.sys_nanosleep, t, 0, 0)


def test_nanosleep_is_interrupted_and_writes_rem(t):
    import threading
    from pyvisor.sentry import waiting
    flag = []
    t.wait_lock, t.waiting_on, t.sleep_left = threading.Lock(), None, 0.0
    t.interrupt_pending = lambda: bool(flag)

    def signal_it():
        time.sleep(0.05)
        with t.wait_lock:
            flag.append(1)
            cond = t.waiting_on
        with cond:
            cond.notify_all()

    waiting.set_current_task(t)
    try:
        threading.Thread(target=signal_it).start()
        rem = A + 64
        with pytest.raises(waiting.Interrupted):
            tm.sys_nanosleep(t, put_ts(t, A, 5, 0), rem)
        sec, nsec = struct.unpack("<qq", t.copy_in(rem, 16))
        assert 4 <= sec < 5 and 0 <= nsec < 10**9
    finally:
        waiting.set_current_task(None)


def test_clock_nanosleep(t, monkeypatch):
    from pyvisor.sentry import waiting
    slept = []
    monkeypatch.setattr(waiting, "sleep", slept.append)
    assert tm.sys_clock_nanosleep(t, 1, 0, put_ts(t, A, 1, 0), 0) == 0
    # Absolute: a deadline 3 s ahead on CLOCK_MONOTONIC sleeps about 3 s.
    deadline = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 3 * 10**9
    put_ts(t, A, deadline // 10**9, deadline % 10**9)
    assert tm.sys_clock_nanosleep(t, 1, tm.TIMER_ABSTIME, A, 0) == 0
    assert 2.5 < slept[-1] <= 3.0
    # An absolute time in the past returns at once; unknown flag bits are ignored.
    assert tm.sys_clock_nanosleep(t, 0, tm.TIMER_ABSTIME | 0x10, put_ts(t, A, 1, 0), 0) == 0
    assert len(slept) == 2
    for clk in (4, 5, 6):
        fails(errno.EOPNOTSUPP, tm.sys_clock_nanosleep, t, clk, 0, A, 0)
    for clk in (2, 3, 12, u(-6)):
        fails(errno.EINVAL, tm.sys_clock_nanosleep, t, clk, 0, A, 0)
    fails(errno.EINVAL, tm.sys_clock_nanosleep, t, 0, 0, put_ts(t, A, 0, 10**9), 0)
    fails(errno.EINVAL, tm.sys_clock_nanosleep, t, 0, 1, put_ts(t, A, -5, 0), 0)
    fails(errno.EFAULT, tm.sys_clock_nanosleep, t, 0, 0, BAD, 0)


def test_times(t):
    ticks = tm.sys_times(t, A)
    assert 100 * 100 <= ticks < 100 * 200           # kernel started 100 s ago
    utime, stime, cutime, cstime = struct.unpack("<4q", t.copy_in(A, 32))
    assert utime >= 0 and stime >= 0 and cutime == cstime == 0
    assert tm.sys_times(t, 0) >= ticks
    fails(errno.EFAULT, tm.sys_times, t, BAD)


def test_getrusage(t):
    for who in (0, 1, u(-1)):
        t.copy_out(A, b"\xff" * 144)
        assert tm.sys_getrusage(t, who, A) == 0
        f = struct.unpack("<4q14q", t.copy_in(A, 144))
        assert all(v >= 0 for v in f) and f[1] < 10**6 and f[3] < 10**6
    assert f[4] == 0                                  # children: maxrss 0
    tm.sys_getrusage(t, 0, A)
    assert struct.unpack_from("<q", t.copy_in(A, 144), 32)[0] > 0
    fails(errno.EINVAL, tm.sys_getrusage, t, 2, A)
    fails(errno.EINVAL, tm.sys_getrusage, t, u(-2), A)
    fails(errno.EFAULT, tm.sys_getrusage, t, 0, BAD)


# --- misc ---------------------------------------------------------------------

def test_uname_layout(t):
    assert misc.sys_uname(t, A) == 0
    raw = t.copy_in(A, 390)
    fields = [raw[i * 65:(i + 1) * 65].split(b"\0")[0] for i in range(6)]
    assert fields == [b"Linux", b"sandbox", b"6.1.0", b"#1 SMP pyvisor", b"x86_64", b"(none)"]
    t.kernel.hostname = b"h" * 100
    misc.sys_uname(t, A)
    assert t.copy_in(A + 65, 65) == b"h" * 64 + b"\0"
    fails(errno.EFAULT, misc.sys_uname, t, BAD)
    fails(errno.EFAULT, misc.sys_uname, t, END - 389)


def test_sysinfo_layout(t):
    assert misc.sys_sysinfo(t, A) == 0
    f = struct.unpack("<q3Q6QHH4xQQI4x", t.copy_in(A, 112))
    uptime, loads, totalram, freeram = f[0], f[1:4], f[4], f[5]
    assert 99 <= uptime <= 200
    assert loads == (0, 0, 0)
    assert totalram == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < freeram <= totalram
    assert f[10] == 3 and f[-1] == 1                  # procs, mem_unit
    fails(errno.EFAULT, misc.sys_sysinfo, t, BAD)


def test_getrandom(t):
    assert misc.sys_getrandom(t, A, 64, 0) == 64
    first = t.copy_in(A, 64)
    assert misc.sys_getrandom(t, A, 64, misc.GRND_NONBLOCK | misc.GRND_INSECURE) == 64
    assert t.copy_in(A, 64) != first
    assert misc.sys_getrandom(t, A, 0, misc.GRND_RANDOM) == 0
    t.copy_out(B, b"\0" * 16)
    assert misc.sys_getrandom(t, B, 8, 0) == 8 and t.copy_in(B + 8, 8) == b"\0" * 8


def test_getrandom_errors_and_partial(t):
    fails(errno.EINVAL, misc.sys_getrandom, t, A, 8, 8)
    fails(errno.EINVAL, misc.sys_getrandom, t, A, 8, misc.GRND_RANDOM | misc.GRND_INSECURE)
    fails(errno.EFAULT, misc.sys_getrandom, t, BAD, 8, 0)
    # A buffer that runs off the end after one chunk: the first chunk counts.
    big = make_task(size=misc._CHUNK + 100)
    assert misc.sys_getrandom(big, BASE, misc._CHUNK * 2, 0) == misc._CHUNK


def test_getrandom_count_is_capped(t):
    written = []
    t.copy_out = lambda addr, data: written.append(len(data))
    assert misc.sys_getrandom(t, A, 1 << 40, 0) == misc.GETRANDOM_MAX == (32 << 20) - 1
    assert sum(written) == misc.GETRANDOM_MAX


def rl(t, addr):
    return struct.unpack("<QQ", t.copy_in(addr, 16))


def test_default_rlimits():
    d = limits.default_rlimits()
    assert set(d) == set(range(16))
    assert d[limits.RLIMIT_NOFILE] == (1024, 1048576)
    assert d[limits.RLIMIT_STACK] == (8 << 20, limits.RLIM_INFINITY)
    assert all(s <= h for s, h in d.values())
    assert d is not limits.default_rlimits()


def test_getrlimit_setrlimit(t):
    assert misc.sys_getrlimit(t, limits.RLIMIT_NOFILE, A) == 0
    assert rl(t, A) == (1024, 1048576)
    t.copy_out(A, struct.pack("<QQ", 4096, 4096))
    assert misc.sys_setrlimit(t, limits.RLIMIT_NOFILE, A) == 0
    assert t.rlimits[limits.RLIMIT_NOFILE] == (4096, 4096)
    # Root may raise the hard limit again, but not NOFILE beyond nr_open.
    t.copy_out(A, struct.pack("<QQ", 4096, 8192))
    assert misc.sys_setrlimit(t, limits.RLIMIT_NOFILE, A) == 0
    t.copy_out(A, struct.pack("<QQ", 4096, 1048577))
    fails(errno.EPERM, misc.sys_setrlimit, t, limits.RLIMIT_NOFILE, A)
    t.copy_out(A, struct.pack("<QQ", 10, 5))
    fails(errno.EINVAL, misc.sys_setrlimit, t, limits.RLIMIT_CORE, A)
    fails(errno.EINVAL, misc.sys_getrlimit, t, 16, A)
    fails(errno.EINVAL, misc.sys_setrlimit, t, u(-1), A)
    fails(errno.EFAULT, misc.sys_getrlimit, t, 0, BAD)
    fails(errno.EFAULT, misc.sys_setrlimit, t, 0, BAD)


def test_setrlimit_hard_needs_privilege():
    t = make_task(Credentials.user(1000, 1000))
    t.copy_out(A, struct.pack("<QQ", 0, 100))
    assert misc.sys_setrlimit(t, limits.RLIMIT_CORE, A) == 0          # lowering is fine
    t.copy_out(A, struct.pack("<QQ", 0, 101))
    fails(errno.EPERM, misc.sys_setrlimit, t, limits.RLIMIT_CORE, A)
    assert t.rlimits[limits.RLIMIT_CORE] == (0, 100)


def test_prlimit64(t):
    t.copy_out(A, struct.pack("<QQ", 256, 512))
    assert misc.sys_prlimit64(t, 0, limits.RLIMIT_NOFILE, A, B) == 0
    assert rl(t, B) == (1024, 1048576)                 # the old value
    assert misc.sys_prlimit64(t, 1, limits.RLIMIT_NOFILE, 0, B) == 0
    assert rl(t, B) == (256, 512)
    assert misc.sys_prlimit64(t, 0, limits.RLIMIT_NOFILE, 0, 0) == 0
    fails(errno.ESRCH, misc.sys_prlimit64, t, 5, limits.RLIMIT_NOFILE, 0, B)
    fails(errno.ESRCH, misc.sys_prlimit64, t, u(-3), limits.RLIMIT_NOFILE, 0, B)
    fails(errno.EINVAL, misc.sys_prlimit64, t, 0, 99, 0, B)
    fails(errno.EFAULT, misc.sys_prlimit64, t, 0, limits.RLIMIT_NOFILE, BAD, B)
    t.copy_out(A, struct.pack("<QQ", 9, 3))
    fails(errno.EINVAL, misc.sys_prlimit64, t, 0, limits.RLIMIT_NOFILE, A, B)
    # As in Linux, the new limit sticks even if old_limit is a bad pointer.
    t.copy_out(A, struct.pack("<QQ", 100, 200))
    fails(errno.EFAULT, misc.sys_prlimit64, t, 0, limits.RLIMIT_NOFILE, A, BAD)
    assert t.rlimits[limits.RLIMIT_NOFILE] == (100, 200)


def test_sched_getaffinity(t):
    n = sched.HOST_NCPUS
    t.copy_out(A, b"\xee" * 16)
    assert sched.sys_sched_getaffinity(t, 0, 16, A) == 8
    assert int.from_bytes(t.copy_in(A, 8), "little") == (1 << n) - 1
    assert t.copy_in(A + 8, 8) == b"\xee" * 8
    assert sched.sys_sched_getaffinity(t, 5, 128, A) == 8
    assert bin(int.from_bytes(t.copy_in(A, 8), "little")).count("1") == n == os.cpu_count()
    fails(errno.EINVAL, sched.sys_sched_getaffinity, t, 0, 4, A)
    fails(errno.EINVAL, sched.sys_sched_getaffinity, t, 0, 0, A)
    fails(errno.ESRCH, sched.sys_sched_getaffinity, t, 77, 8, A)
    fails(errno.EFAULT, sched.sys_sched_getaffinity, t, 0, 8, BAD)


def test_sched_setaffinity(t):
    t.copy_out(A, struct.pack("<Q", 1))
    assert sched.sys_sched_setaffinity(t, 0, 8, A) == 0
    assert sched.sys_sched_setaffinity(t, 2, 4, A) == 0
    t.copy_out(A, struct.pack("<Q", 1 << 63))
    fails(errno.EINVAL, sched.sys_sched_setaffinity, t, 0, 8, A)
    t.copy_out(A, struct.pack("<Q", 1))
    fails(errno.ESRCH, sched.sys_sched_setaffinity, t, 77, 8, A)
    fails(errno.EFAULT, sched.sys_sched_setaffinity, t, 0, 8, BAD)


def test_yield_getcpu_personality(t):
    assert sched.sys_sched_yield(t) == 0
    t.copy_out(A, b"\xff" * 8)
    assert sched.sys_getcpu(t, A, A + 4, 0) == 0
    assert t.copy_in(A, 8) == b"\0" * 8
    assert sched.sys_getcpu(t, 0, 0, 0) == 0
    fails(errno.EFAULT, sched.sys_getcpu, t, BAD, 0, 0)
    fails(errno.EFAULT, sched.sys_getcpu, t, 0, BAD, 0)
    assert misc.sys_personality(t, 0xFFFFFFFF) == 0
    assert misc.sys_personality(t, 0x0040000) == 0       # ADDR_NO_RANDOMIZE
    assert misc.sys_personality(t, u(-1)) == 0x0040000  # query, upper bits ignored
    assert misc.sys_personality(t, 0) == 0x0040000


# --- creds --------------------------------------------------------------------

def ids(t):
    c = t.creds
    return (c.uid, c.euid, c.suid, c.fsuid), (c.gid, c.egid, c.sgid, c.fsgid)


def test_getters(t):
    t.creds = Credentials(uid=1, euid=2, suid=3, fsuid=2, gid=4, egid=5, sgid=6, fsgid=5)
    assert (cr.sys_getuid(t), cr.sys_geteuid(t), cr.sys_getgid(t), cr.sys_getegid(t)) == (1, 2, 4, 5)
    assert cr.sys_getresuid(t, A, A + 4, A + 8) == 0
    assert struct.unpack("<3I", t.copy_in(A, 12)) == (1, 2, 3)
    assert cr.sys_getresgid(t, A, A + 4, A + 8) == 0
    assert struct.unpack("<3I", t.copy_in(A, 12)) == (4, 5, 6)
    fails(errno.EFAULT, cr.sys_getresuid, t, A, BAD, A)
    fails(errno.EFAULT, cr.sys_getresgid, t, BAD, A, A)


def test_root_setuid_drops_everything(t):
    assert cr.sys_setuid(t, 1000) == 0
    assert ids(t)[0] == (1000,) * 4
    assert t.creds.cap_effective == t.creds.cap_permitted == 0
    fails(errno.EPERM, cr.sys_setuid, t, 0)
    fails(errno.EPERM, cr.sys_setgid, t, 5)
    assert cr.sys_setgid(t, 0) == 0                     # gid 0 is still its real gid
    fails(errno.EPERM, cr.sys_setgroups, t, 0, 0)


def test_setuid_invalid_id(t):
    fails(errno.EINVAL, cr.sys_setuid, t, 0xFFFFFFFF)
    fails(errno.EINVAL, cr.sys_setgid, t, u(-1))


def test_nonroot_setuid_rules():
    t = make_task(Credentials(uid=1000, euid=1001, suid=1002, fsuid=1001, gid=1, egid=1, sgid=1, fsgid=1,
                              cap_effective=0, cap_permitted=0))
    assert cr.sys_setuid(t, 1002) == 0                  # to the saved uid: only euid/fsuid move
    assert ids(t)[0] == (1000, 1002, 1002, 1002)
    fails(errno.EPERM, cr.sys_setuid, t, 1001)          # 1001 is gone now
    fails(errno.EPERM, cr.sys_setuid, t, 0)


def test_seteuid_and_back_keeps_root_via_saved_uid(t):
    """A root daemon drops euid temporarily and regains it (the saved uid stays 0)."""
    assert cr.sys_setresuid(t, u(-1), 1000, u(-1)) == 0
    assert ids(t)[0] == (0, 1000, 0, 1000)
    assert t.creds.cap_effective == 0 and t.creds.cap_permitted == auth.ALL_CAPS
    fails(errno.EPERM, cr.sys_setuid, t, 5)             # no CAP_SETUID in effective
    assert cr.sys_setresuid(t, u(-1), 0, u(-1)) == 0    # 0 is the real/saved uid
    assert t.creds.cap_effective == auth.ALL_CAPS
    assert cr.sys_setuid(t, 5) == 0


def test_setreuid_saved_uid_rule(t):
    assert cr.sys_setreuid(t, u(-1), 1000) == 0         # euid != old ruid: suid follows
    assert ids(t)[0] == (0, 1000, 1000, 1000)
    t = make_task()
    assert cr.sys_setreuid(t, 1000, u(-1)) == 0         # ruid set: suid = euid
    assert ids(t)[0] == (1000, 0, 0, 0)
    assert cr.sys_setreuid(t, u(-1), u(-1)) == 0
    t = make_task(Credentials.user(1000, 1000))
    fails(errno.EPERM, cr.sys_setreuid, t, 0, u(-1))
    fails(errno.EPERM, cr.sys_setreuid, t, u(-1), 0)


def test_setresuid_nonroot(t):
    t = make_task(Credentials(uid=1, euid=2, suid=3, fsuid=2, cap_effective=0, cap_permitted=0))
    assert cr.sys_setresuid(t, 3, 1, 2) == 0
    assert ids(t)[0] == (3, 1, 2, 1)
    fails(errno.EPERM, cr.sys_setresuid, t, 4, u(-1), u(-1))
    assert ids(t)[0] == (3, 1, 2, 1)                    # unchanged on failure


def test_gid_calls(t):
    assert cr.sys_setresgid(t, 10, 11, 12) == 0
    assert ids(t)[1] == (10, 11, 12, 11)
    assert cr.sys_setregid(t, u(-1), 13) == 0
    assert ids(t)[1] == (10, 13, 13, 13)
    assert cr.sys_setgid(t, 20) == 0
    assert ids(t)[1] == (20,) * 4
    u_t = make_task(Credentials.user(1000, 100))
    u_t.creds.sgid = 200
    assert cr.sys_setgid(u_t, 200) == 0
    assert ids(u_t)[1] == (100, 200, 200, 200)
    fails(errno.EPERM, cr.sys_setgid, u_t, 300)
    fails(errno.EPERM, cr.sys_setregid, u_t, 300, u(-1))
    fails(errno.EPERM, cr.sys_setregid, u_t, u(-1), 300)
    fails(errno.EPERM, cr.sys_setresgid, u_t, u(-1), u(-1), 300)


def test_setfsuid_setfsgid(t):
    assert cr.sys_setfsuid(t, 1000) == 0
    assert t.creds.fsuid == 1000 and not t.creds.capable(auth.CAP_DAC_OVERRIDE)
    assert t.creds.capable(auth.CAP_SETUID)
    assert cr.sys_setfsuid(t, u(-1)) == 1000            # query
    assert cr.sys_setfsuid(t, 0) == 1000
    assert t.creds.capable(auth.CAP_DAC_OVERRIDE)
    u_t = make_task(Credentials.user(1000, 100))
    assert cr.sys_setfsuid(u_t, 0) == 1000               # refused: still returns old
    assert u_t.creds.fsuid == 1000
    assert cr.sys_setfsgid(u_t, 0) == 100
    assert u_t.creds.fsgid == 100
    assert cr.sys_setfsgid(t, 7) == 0 and t.creds.fsgid == 7


def test_groups(t):
    assert cr.sys_getgroups(t, 0, 0) == 0
    t.copy_out(A, struct.pack("<3I", 30, 10, 20))
    assert cr.sys_setgroups(t, 3, A) == 0
    assert cr.sys_getgroups(t, 0, BAD) == 3
    assert cr.sys_getgroups(t, 5, B) == 3
    assert struct.unpack("<3I", t.copy_in(B, 12)) == (10, 20, 30)
    fails(errno.EINVAL, cr.sys_getgroups, t, 2, B)
    fails(errno.EINVAL, cr.sys_getgroups, t, u(-1), B)
    fails(errno.EFAULT, cr.sys_getgroups, t, 3, BAD)
    fails(errno.EINVAL, cr.sys_setgroups, t, 65537, A)
    fails(errno.EINVAL, cr.sys_setgroups, t, u(-1), A)
    fails(errno.EFAULT, cr.sys_setgroups, t, 2, BAD)
    t.copy_out(A, struct.pack("<3I", 7, 3, 7))
    assert cr.sys_setgroups(t, 3, A) == 0 and t.creds.groups == [3, 7, 7]
    assert cr.sys_setgroups(t, 0, 0) == 0 and t.creds.groups == []


def test_credentials_copy_is_independent():
    a = Credentials.root()
    a.groups.append(5)
    b = a.copy()
    b.groups.append(6)
    b.uid = 3
    assert a.groups == [5] and a.uid == 0


def cap_header(t, version, pid=0):
    t.copy_out(A, struct.pack("<Ii", version, pid))
    return A


def test_capget(t):
    assert cr.sys_capget(t, cap_header(t, cr.CAP_V3), B) == 0
    e0, p0, i0, e1, p1, i1 = struct.unpack("<6I", t.copy_in(B, 24))
    assert (e0, p0, i0) == (0xFFFFFFFF, 0xFFFFFFFF, 0)
    assert (e1, p1, i1) == (0x1FF, 0x1FF, 0)
    assert cr.sys_capget(t, cap_header(t, cr.CAP_V1), B) == 0
    # An unknown version: the preferred one is written back; NULL data makes it a probe.
    assert cr.sys_capget(t, cap_header(t, 0x1234), 0) == 0
    assert struct.unpack("<I", t.copy_in(A, 4))[0] == cr.CAP_V3
    fails(errno.EINVAL, cr.sys_capget, t, cap_header(t, 0x1234), B)
    fails(errno.EINVAL, cr.sys_capget, t, cap_header(t, cr.CAP_V3, -1), B)
    fails(errno.ESRCH, cr.sys_capget, t, cap_header(t, cr.CAP_V3, 999), B)
    fails(errno.EFAULT, cr.sys_capget, t, BAD, B)
    fails(errno.EFAULT, cr.sys_capget, t, cap_header(t, cr.CAP_V3), BAD)


def test_capget_other_task(t):
    other = make_task(Credentials.user(5, 5))
    t.kernel.tasks = {1: t, 2: other}
    t.copy_out(B, b"\xff" * 24)
    assert cr.sys_capget(t, cap_header(t, cr.CAP_V3, 2), B) == 0
    assert t.copy_in(B, 24) == b"\0" * 24


def test_capset(t):
    keep = (1 << auth.CAP_SETUID) | (1 << auth.CAP_CHOWN)
    t.copy_out(B, struct.pack("<6I", keep, keep, 0, 0, 0, 0))
    assert cr.sys_capset(t, cap_header(t, cr.CAP_V3), B) == 0
    assert t.creds.cap_permitted == keep and t.creds.cap_effective == keep
    t.copy_out(B, struct.pack("<6I", keep, keep | 1 << 5, 0, 0, 0, 0))
    fails(errno.EPERM, cr.sys_capset, t, cap_header(t, cr.CAP_V3), B)    # permitted may not grow
    t.copy_out(B, struct.pack("<6I", keep, 1 << auth.CAP_CHOWN, 0, 0, 0, 0))
    fails(errno.EPERM, cr.sys_capset, t, cap_header(t, cr.CAP_V3), B)    # effective ⊄ permitted
    t.copy_out(B, struct.pack("<6I", 0, keep, 1 << 20, 0, 0, 0))
    fails(errno.EPERM, cr.sys_capset, t, cap_header(t, cr.CAP_V3), B)    # inheritable, no SETPCAP
    fails(errno.EPERM, cr.sys_capset, t, cap_header(t, cr.CAP_V3, 2), B)
    fails(errno.EINVAL, cr.sys_capset, t, cap_header(t, 7), B)
    fails(errno.EFAULT, cr.sys_capset, t, cap_header(t, cr.CAP_V3), BAD)
    fails(errno.EFAULT, cr.sys_capset, t, BAD, B)
    assert t.creds.cap_permitted == keep


def test_capset_drops_then_setuid_fails(t):
    t.copy_out(B, struct.pack("<6I", 0, 0, 0, 0, 0, 0))
    assert cr.sys_capset(t, cap_header(t, cr.CAP_V3), B) == 0
    fails(errno.EPERM, cr.sys_setuid, t, 1000)
    fails(errno.EPERM, cr.sys_setgroups, t, 0, 0)


# The same sequences of ID changes natively (in a forked child, as root) and
# in the Sentry must give the same errors and the same IDs after each step.
SEQUENCES = [
    [("setresuid", -1, 1000, -1), ("setuid", 5), ("setresuid", -1, 0, -1), ("setuid", 5), ("setuid", 0)],
    [("setreuid", 1000, -1), ("setreuid", -1, 1000), ("setreuid", 0, -1), ("setuid", 1000)],
    [("setreuid", -1, 1000), ("setreuid", 0, 0), ("setresuid", 1, 2, 3), ("setresuid", 3, 1, 2),
     ("setresuid", 9, -1, -1)],
    [("setresgid", 1, 2, 3), ("setresuid", 1000, 1000, 1000), ("setgid", 3), ("setgid", 9),
     ("setregid", 2, -1), ("setregid", -1, 7), ("setresgid", -1, -1, 1)],
    [("setgroups0",), ("setresuid", 5, 6, 7), ("setgroups0",), ("setresgid", 1, 1, 1), ("setuid", 7)],
]


def _native(seq):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # child: apply, report, exit
        try:
            out = []
            for op in seq:
                try:
                    if op[0] == "setgroups0":
                        os.setgroups([])
                    else:
                        getattr(os, op[0])(*op[1:])
                    res = 0
                except OSError as e:
                    res = e.errno
                out.append([res, os.getresuid(), os.getresgid()])
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data.decode())


def _sandboxed(seq):
    t = make_task()
    out = []
    for op in seq:
        name = "setgroups" if op[0] == "setgroups0" else op[0]
        args = [u(a) for a in op[1:]] or [0, 0]
        try:
            getattr(cr, "sys_" + name)(t, *args)
            res = 0
        except SyscallError as e:
            res = e.errno
        c = t.creds
        out.append([res, [c.uid, c.euid, c.suid], [c.gid, c.egid, c.sgid]])
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change IDs natively")
@pytest.mark.parametrize("seq", SEQUENCES)
def test_id_changes_match_native_linux(seq):
    assert _sandboxed(seq) == _native(seq)
