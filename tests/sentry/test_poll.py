"""poll/select/epoll/eventfd/signalfd through the Kernel-less harness, with
real threads for the blocking paths and every error path."""

import errno
import os
import struct
import threading
import time
from types import SimpleNamespace

import pytest

from pyvisor.sentry import waiting
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls import eventfd as EV, poll as P, signalfd as SG
from pyvisor.sentry.syscalls import fs
from pyvisor.sentry.vfs import epoll as E
from pyvisor.sentry.vfs.eventfd import COUNTER_MAX, EFD_SEMAPHORE, make_eventfd
from pyvisor.sentry.vfs.file import O_NONBLOCK
from pyvisor.sentry.vfs.pipe import make_pipe
from pyvisor.sentry.vfs.signalfd import SignalFile, notify_signal, siginfo_to_signalfd
from pyvisor.sentry.vfs.testing import make_env
from pyvisor.sentry.vfs.waitq import POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT

MASK = (1 << 64) - 1
BAD = 0x10                      # below the harness's memory: EFAULT
U64 = struct.Struct("=Q")


def err(fn, *args, **kw):
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def call(t, fn, *args):
    """Play the dispatcher: the result, or -errno."""
    try:
        return fn(t, *[a & MASK for a in args])
    except SyscallError as e:
        return -e.errno


class SignalTask:
    """Just what waiting.wait and the signalfd need of a task: a flag that
    plays a pending signal, the wait bookkeeping, and signal queues."""

    def __init__(self, kernel=None):
        self.wait_lock = threading.Lock()
        self.waiting_on = None
        self.flag = False
        self.pending = []
        self.group = SimpleNamespace(pending=[])
        self.kernel = kernel

    def interrupt_pending(self):
        return self.flag

    def interrupt(self):
        self.flag = True
        with self.wait_lock:
            cond = self.waiting_on
        if cond is not None:
            with cond:
                cond.notify_all()


def in_thread(fn, task=None):
    """Run fn in a thread (as `task` if given); returns (thread, results)."""
    out = []

    def body():
        waiting.set_current_task(task)
        try:
            out.append(fn())
        except BaseException as e:      # noqa: BLE001 - handed to the test
            out.append(e)
    th = threading.Thread(target=body, daemon=True)
    th.start()
    return th, out


@pytest.fixture
def t():
    _k, _vfs, task = make_env()
    return task


def install_pipe(t, flags=0):
    r, w = make_pipe(flags)
    return t.fdtable.install(r), t.fdtable.install(w)


# --- eventfd ------------------------------------------------------------------------

def test_eventfd_counter_and_semaphore():
    f = make_eventfd(3, 0)
    assert f.write(U64.pack(4)) == 8
    assert f.read(8) == U64.pack(7)
    s = make_eventfd(2, EFD_SEMAPHORE | O_NONBLOCK)
    assert s.read(16) == U64.pack(1)
    assert s.read(8) == U64.pack(1)
    assert err(s.read, 8) == errno.EAGAIN
    assert s.poll_events() & (POLLIN | POLLOUT) == POLLOUT


def test_eventfd_errors():
    f = make_eventfd(0, O_NONBLOCK)
    assert err(f.read, 7) == errno.EINVAL
    assert err(f.write, b"1234567") == errno.EINVAL
    assert err(f.write, U64.pack(MASK)) == errno.EINVAL
    assert f.write(U64.pack(COUNTER_MAX)) == 8
    assert err(f.write, U64.pack(1)) == errno.EAGAIN          # would overflow
    assert f.poll_events() & (POLLIN | POLLOUT) == POLLIN
    assert err(f.pread, 8, 0) == errno.ESPIPE
    assert err(make_eventfd, 0, 0x10) == errno.EINVAL


def test_eventfd_blocking_read_woken_by_writer():
    f = make_eventfd(0, 0)
    th, out = in_thread(lambda: f.read(8))
    time.sleep(0.05)
    assert not out
    f.write(U64.pack(5))
    th.join(2)
    assert out == [U64.pack(5)]


def test_eventfd_blocking_read_interrupted():
    f = make_eventfd(0, 0)
    task = SignalTask()
    th, out = in_thread(lambda: f.read(8), task)
    time.sleep(0.05)
    task.interrupt()
    th.join(2)
    assert isinstance(out[0], waiting.Interrupted)


def test_eventfd_syscalls(t):
    fd = call(t, EV.sys_eventfd2, 1, 0o2000000 | O_NONBLOCK)
    assert fd >= 0 and t.fdtable.get_cloexec(fd)
    assert call(t, EV.sys_eventfd2, 0, 0x10) == -errno.EINVAL
    fd2 = call(t, EV.sys_eventfd, 0)
    assert not t.fdtable.get(fd2).nonblocking
    buf = t.alloc(8)
    assert call(t, fs.sys_read, fd, buf, 8) == 8
    assert t.copy_in(buf, 8) == U64.pack(1)
    assert call(t, fs.sys_read, fd, buf, 8) == -errno.EAGAIN
    # A buffer under 8 bytes is EINVAL, an empty one too (not 0, as for most files).
    assert call(t, fs.sys_read, fd, buf, 0) == -errno.EINVAL
    assert call(t, fs.sys_write, fd, buf, 0) == -errno.EINVAL


# --- pipes: readiness and interruptible waits ------------------------------------------

def test_pipe_poll_events_and_notify():
    r, w = make_pipe()
    seen = []
    r.waitq.register(seen.append)
    assert r.poll_events() == 0
    assert w.poll_events() & POLLOUT
    w.write(b"x")
    assert r.poll_events() & POLLIN and seen
    w.decref()
    assert r.poll_events() & POLLHUP
    r2, w2 = make_pipe()
    r2.decref()
    assert w2.poll_events() & POLLERR


def test_pipe_read_interrupted_by_signal():
    r, w = make_pipe()
    task = SignalTask()
    th, out = in_thread(lambda: r.read(10), task)
    time.sleep(0.05)
    task.interrupt()
    th.join(2)
    assert isinstance(out[0], waiting.Interrupted)


def test_pipe_big_write_interrupted_returns_partial_count():
    r, w = make_pipe()
    task = SignalTask()
    th, out = in_thread(lambda: w.write(b"x" * 100000), task)
    time.sleep(0.05)
    task.interrupt()
    th.join(2)
    assert out == [65536]               # what fitted before the wait


def test_sigpipe_sent_to_the_writing_thread(t):
    sent = []
    t.kernel.send_signal = lambda target, signo, info, group=True: sent.append(
        (target, signo, group, info[:4]))
    rfd, wfd = install_pipe(t)
    t.fdtable.close(rfd)
    buf = t.put(b"x")
    assert call(t, fs.sys_write, wfd, buf, 1) == -errno.EPIPE
    assert sent == [(t, 13, False, struct.pack("<i", 13))]
    iov = t.put(struct.pack("<QQ", buf, 1))
    assert call(t, fs.sys_writev, wfd, iov, 1) == -errno.EPIPE
    assert len(sent) == 2


# --- poll and select ---------------------------------------------------------------------

def pollfds(t, *entries):
    return t.put(b"".join(struct.pack("<ihh", fd, ev, 0) for fd, ev in entries))


def revents(t, addr, n):
    return [struct.unpack_from("<ihh", t.copy_in(addr + 8 * i, 8))[2] for i in range(n)]


def test_poll_ready_nval_and_negative_fd(t):
    rfd, wfd = install_pipe(t)
    addr = pollfds(t, (rfd, POLLIN), (wfd, POLLOUT), (-1, POLLIN), (99, POLLIN))
    assert call(t, P.sys_poll, addr, 4, 0) == 2
    assert revents(t, addr, 4) == [0, POLLOUT, 0, POLLNVAL]


def test_poll_errors(t):
    assert call(t, P.sys_poll, BAD, 1, 0) == -errno.EFAULT
    assert call(t, P.sys_poll, BAD, t.fdtable.limit + 1, 0) == -errno.EINVAL
    assert call(t, P.sys_poll, 0, 0, 0) == 0


def test_poll_timeout_and_wake_by_writer(t):
    rfd, wfd = install_pipe(t)
    addr = pollfds(t, (rfd, POLLIN))
    start = time.monotonic()
    assert call(t, P.sys_poll, addr, 1, 50) == 0
    assert time.monotonic() - start >= 0.045
    w = t.fdtable.get(wfd)
    threading.Timer(0.05, w.write, (b"x",)).start()
    assert call(t, P.sys_poll, addr, 1, -1) == 1
    assert revents(t, addr, 1) == [POLLIN]


def test_poll_interrupted(t):
    rfd, _wfd = install_pipe(t)
    addr = pollfds(t, (rfd, POLLIN))
    task = SignalTask()
    th, out = in_thread(lambda: P.sys_poll(t, addr, 1, MASK), task)
    time.sleep(0.05)
    task.interrupt()
    th.join(2)
    assert isinstance(out[0], waiting.Interrupted)


def test_ppoll_timespec_and_sigmask(t):
    t.signals = SimpleNamespace(mask=0b1)
    t.saved_mask = None
    rfd, _wfd = install_pipe(t)
    addr = pollfds(t, (rfd, POLLIN))
    ts = t.put(struct.pack("<qq", 0, 20_000_000))
    mask = t.put(struct.pack("<Q", 0b110))
    assert call(t, P.sys_ppoll, addr, 1, ts, mask, 8) == 0
    assert struct.unpack("<qq", t.copy_in(ts, 16)) == (0, 0)       # time left written back
    assert t.signals.mask == 0b1 and t.saved_mask is None           # restored
    assert call(t, P.sys_ppoll, addr, 1, ts, mask, 4) == -errno.EINVAL
    bad = t.put(struct.pack("<qq", 0, 1_000_000_000))
    assert call(t, P.sys_ppoll, addr, 1, bad, 0, 8) == -errno.EINVAL


def test_ppoll_interrupted_keeps_old_mask_for_the_frame(t):
    t.signals = SimpleNamespace(mask=0b1)
    t.saved_mask = None
    rfd, _wfd = install_pipe(t)
    addr = pollfds(t, (rfd, POLLIN))
    mask = t.put(struct.pack("<Q", 0))
    task = SignalTask()
    th, out = in_thread(lambda: P.sys_ppoll(t, addr, 1, 0, mask, 8), task)
    time.sleep(0.05)
    task.interrupt()
    th.join(2)
    assert isinstance(out[0], waiting.Interrupted)
    assert t.signals.mask == 0 and t.saved_mask == 0b1


def fdset(t, *fds, nbytes=8):
    bits = 0
    for fd in fds:
        bits |= 1 << fd
    return t.put(bits.to_bytes(nbytes, "little"))


def test_select_ready_sets_and_timeval(t):
    rfd, wfd = install_pipe(t)
    rs, ws = fdset(t, rfd), fdset(t, rfd, wfd)
    tv = t.put(struct.pack("<qq", 0, 30000))
    assert call(t, P.sys_select, wfd + 1, rs, ws, 0, tv) == 1
    assert int.from_bytes(t.copy_in(rs, 8), "little") == 0
    assert int.from_bytes(t.copy_in(ws, 8), "little") == 1 << wfd
    t.fdtable.get(wfd).write(b"x")
    rs = fdset(t, rfd)
    assert call(t, P.sys_select, wfd + 1, rs, 0, 0, tv) == 1
    assert int.from_bytes(t.copy_in(rs, 8), "little") == 1 << rfd
    tv = t.put(struct.pack("<qq", 0, 20000))
    t.fdtable.get(rfd).read(1)
    rs = fdset(t, rfd)
    assert call(t, P.sys_select, rfd + 1, rs, 0, 0, tv) == 0
    assert struct.unpack("<qq", t.copy_in(tv, 16)) == (0, 0)


def test_select_errors(t):
    assert call(t, P.sys_select, 40, fdset(t, 33), 0, 0, 0) == -errno.EBADF
    assert call(t, P.sys_select, -1, 0, 0, 0, 0) == -errno.EINVAL
    assert call(t, P.sys_select, 1, BAD, 0, 0, 0) == -errno.EFAULT
    assert call(t, P.sys_select, 0, 0, 0, 0, t.put(struct.pack("<qq", 0, -1))) == -errno.EINVAL
    assert call(t, P.sys_select, 0, 0, 0, 0, t.put(struct.pack("<qq", -1, 0))) == -errno.EINVAL
    # bits at or above nfds are ignored, even for fds that are not open
    assert call(t, P.sys_select, 1, fdset(t, 33), 0, 0, t.put(bytes(16))) == 0


def test_pselect6_sigmask_struct(t):
    t.signals = SimpleNamespace(mask=0)
    t.saved_mask = None
    rfd, _wfd = install_pipe(t)
    ts = t.put(struct.pack("<qq", 0, 0))
    sig = t.put(struct.pack("<QQ", t.put(struct.pack("<Q", 4)), 8))
    assert call(t, P.sys_pselect6, rfd + 1, fdset(t, rfd), 0, 0, ts, sig) == 0
    assert t.signals.mask == 0
    badsig = t.put(struct.pack("<QQ", t.put(bytes(8)), 7))
    assert call(t, P.sys_pselect6, rfd + 1, fdset(t, rfd), 0, 0, ts, badsig) == -errno.EINVAL


# --- epoll --------------------------------------------------------------------------------

def ev(events, data):
    return struct.pack("<IQ", events, data)


def ctl(t, epfd, op, fd, events=0, data=0):
    return call(t, P.sys_epoll_ctl, epfd, op, fd, t.put(ev(events, data)))


def wait(t, epfd, maxevents=8, timeout=0):
    buf = t.alloc(12 * maxevents)
    n = call(t, P.sys_epoll_wait, epfd, buf, maxevents, timeout)
    if n < 0:
        return n
    return [struct.unpack_from("<IQ", t.copy_in(buf + 12 * i, 12)) for i in range(n)]


def test_epoll_create_errors(t):
    assert call(t, P.sys_epoll_create, 0) == -errno.EINVAL
    assert call(t, P.sys_epoll_create1, 1) == -errno.EINVAL
    fd = call(t, P.sys_epoll_create1, 0o2000000)
    assert t.fdtable.get_cloexec(fd)
    assert t.fdtable.get(fd).path() == b"anon_inode:[eventpoll]"


def test_epoll_ctl_errors(t):
    ep = call(t, P.sys_epoll_create1, 0)
    rfd, wfd = install_pipe(t)
    reg = call(t, fs.sys_open, t.cstr(b"/tmp/f"), os.O_CREAT | os.O_RDWR, 0o644)
    assert ctl(t, ep, E.EPOLL_CTL_ADD, rfd, E.EPOLLIN) == 0
    assert ctl(t, ep, E.EPOLL_CTL_ADD, rfd, E.EPOLLIN) == -errno.EEXIST
    assert ctl(t, ep, E.EPOLL_CTL_MOD, wfd, E.EPOLLOUT) == -errno.ENOENT
    assert ctl(t, ep, E.EPOLL_CTL_DEL, wfd) == -errno.ENOENT
    assert ctl(t, ep, E.EPOLL_CTL_ADD, ep, E.EPOLLIN) == -errno.EINVAL
    assert ctl(t, ep, 9, wfd, E.EPOLLIN) == -errno.EINVAL
    assert ctl(t, ep, E.EPOLL_CTL_ADD, 77, E.EPOLLIN) == -errno.EBADF
    assert ctl(t, 77, E.EPOLL_CTL_ADD, rfd, E.EPOLLIN) == -errno.EBADF
    assert ctl(t, rfd, E.EPOLL_CTL_ADD, wfd, E.EPOLLIN) == -errno.EINVAL
    assert ctl(t, ep, E.EPOLL_CTL_ADD, reg, E.EPOLLIN) == -errno.EPERM
    assert ctl(t, ep, E.EPOLL_CTL_ADD, wfd, E.EPOLLOUT | E.EPOLLEXCLUSIVE | E.EPOLLONESHOT) \
        == -errno.EINVAL
    assert ctl(t, ep, E.EPOLL_CTL_ADD, wfd, E.EPOLLOUT | E.EPOLLEXCLUSIVE) == 0
    assert ctl(t, ep, E.EPOLL_CTL_MOD, wfd, E.EPOLLOUT) == -errno.EINVAL
    assert call(t, P.sys_epoll_ctl, ep, E.EPOLL_CTL_ADD, wfd, BAD) == -errno.EFAULT
    assert ctl(t, ep, E.EPOLL_CTL_DEL, rfd) == 0
    assert wait(t, ep, 0) == -errno.EINVAL
    assert wait(t, rfd) == -errno.EINVAL
    assert call(t, P.sys_epoll_wait, ep, BAD, 4, 0) == -errno.EFAULT


def test_epoll_level_edge_oneshot(t):
    rfd, wfd = install_pipe(t)
    lt, et, os_ = (call(t, P.sys_epoll_create1, 0) for _ in range(3))
    ctl(t, lt, E.EPOLL_CTL_ADD, rfd, E.EPOLLIN, 1)
    ctl(t, et, E.EPOLL_CTL_ADD, rfd, E.EPOLLIN | E.EPOLLET, 2)
    ctl(t, os_, E.EPOLL_CTL_ADD, rfd, E.EPOLLIN | E.EPOLLONESHOT, 3)
    assert wait(t, lt) == wait(t, et) == wait(t, os_) == []
    t.fdtable.get(wfd).write(b"ab")
    assert wait(t, lt) == wait(t, lt) == [(E.EPOLLIN, 1)]
    assert wait(t, et) == [(E.EPOLLIN, 2)]
    assert wait(t, et) == []
    t.fdtable.get(wfd).write(b"c")
    assert wait(t, et) == [(E.EPOLLIN, 2)]
    assert wait(t, os_) == [(E.EPOLLIN, 3)]
    assert wait(t, os_) == []
    assert ctl(t, os_, E.EPOLL_CTL_MOD, rfd, E.EPOLLIN | E.EPOLLONESHOT, 4) == 0
    assert wait(t, os_) == [(E.EPOLLIN, 4)]
    t.fdtable.get(rfd).read(10)
    assert wait(t, lt) == []
    t.fdtable.close(wfd)
    assert wait(t, lt) == [(E.EPOLLHUP, 1)]          # HUP is reported unasked


def test_epoll_maxevents_rotates_level_items(t):
    ep = call(t, P.sys_epoll_create1, 0)
    fds = [install_pipe(t)[1] for _ in range(3)]
    for fd in fds:
        ctl(t, ep, E.EPOLL_CTL_ADD, fd, E.EPOLLOUT, fd)
    seen = [wait(t, ep, 1)[0][1] for _ in range(3)]
    assert sorted(seen) == sorted(fds)               # each gets its turn


def test_epoll_blocking_wait_woken_and_timeout(t):
    rfd, wfd = install_pipe(t)
    ep = call(t, P.sys_epoll_create1, 0)
    ctl(t, ep, E.EPOLL_CTL_ADD, rfd, E.EPOLLIN, 5)
    start = time.monotonic()
    assert wait(t, ep, timeout=40) == []
    assert time.monotonic() - start >= 0.035
    threading.Timer(0.05, t.fdtable.get(wfd).write, (b"x",)).start()
    assert wait(t, ep, timeout=-1) == [(E.EPOLLIN, 5)]


def test_epoll_close_removes_item_but_dup_keeps_it(t):
    rfd, wfd = install_pipe(t)
    ep = call(t, P.sys_epoll_create1, 0)
    ctl(t, ep, E.EPOLL_CTL_ADD, rfd, E.EPOLLIN, 6)
    t.fdtable.get(wfd).write(b"x")
    d = t.fdtable.dup(rfd)
    t.fdtable.close(rfd)
    assert wait(t, ep) == [(E.EPOLLIN, 6)]
    assert ctl(t, ep, E.EPOLL_CTL_DEL, rfd) == -errno.EBADF
    assert ctl(t, ep, E.EPOLL_CTL_ADD, d, E.EPOLLIN, 7) == 0   # (d, file) is a new key
    t.fdtable.close(d)
    assert wait(t, ep) == []
    assert not t.fdtable.get(ep).items


def test_epoll_nested_and_loops(t):
    rfd, wfd = install_pipe(t)
    inner, outer = call(t, P.sys_epoll_create1, 0), call(t, P.sys_epoll_create1, 0)
    ctl(t, inner, E.EPOLL_CTL_ADD, rfd, E.EPOLLIN, 1)
    assert ctl(t, outer, E.EPOLL_CTL_ADD, inner, E.EPOLLIN, 2) == 0
    assert ctl(t, inner, E.EPOLL_CTL_ADD, outer, E.EPOLLIN, 3) == -errno.ELOOP
    assert ctl(t, outer, E.EPOLL_CTL_ADD, inner, E.EPOLLIN | E.EPOLLEXCLUSIVE) \
        == -errno.EINVAL
    assert wait(t, outer) == []
    threading.Timer(0.05, t.fdtable.get(wfd).write, (b"x",)).start()
    assert wait(t, outer, timeout=2000) == [(E.EPOLLIN, 2)]
    addr = pollfds(t, (inner, POLLIN))
    assert call(t, P.sys_poll, addr, 1, 0) == 1


def test_epoll_pwait_and_pwait2(t):
    t.signals = SimpleNamespace(mask=0)
    t.saved_mask = None
    _rfd, wfd = install_pipe(t)
    ep = call(t, P.sys_epoll_create1, 0)
    ctl(t, ep, E.EPOLL_CTL_ADD, wfd, E.EPOLLOUT, 9)
    buf, mask = t.alloc(12), t.put(struct.pack("<Q", 2))
    assert call(t, P.sys_epoll_pwait, ep, buf, 1, 0, mask, 8) == 1
    assert call(t, P.sys_epoll_pwait, ep, buf, 1, 0, mask, 9) == -errno.EINVAL
    ts = t.put(struct.pack("<qq", 0, 0))
    assert call(t, P.sys_epoll_pwait2, ep, buf, 1, ts, 0, 8) == 1
    assert call(t, P.sys_epoll_pwait2, ep, buf, 1, t.put(struct.pack("<qq", -1, 0)), 0, 8) \
        == -errno.EINVAL
    assert t.signals.mask == 0


def test_epoll_interrupted(t):
    rfd, _wfd = install_pipe(t)
    ep = call(t, P.sys_epoll_create1, 0)
    ctl(t, ep, E.EPOLL_CTL_ADD, rfd, E.EPOLLIN)
    buf = t.alloc(12)
    task = SignalTask()
    th, out = in_thread(lambda: P.sys_epoll_wait(t, ep, buf, 1, MASK), task)
    time.sleep(0.05)
    task.interrupt()
    th.join(2)
    assert isinstance(out[0], waiting.Interrupted)


# --- signalfd ----------------------------------------------------------------------------

def sig_kernel():
    lock = threading.RLock()
    return SimpleNamespace(lock=lock, cond=threading.Condition(lock))


def kill_info(signo, pid):
    return struct.pack("<iii4xiI", signo, 0, 0, pid, 0).ljust(128, b"\0")


def test_signalfd_reads_pending_signals_in_mask():
    k = sig_kernel()
    task = SignalTask(k)
    f = SignalFile(k, (1 << 9) | (1 << 8), O_NONBLOCK)      # SIGUSR1, and SIGKILL (dropped)
    assert f.mask == 1 << 9
    task.pending.append((12, kill_info(12, 3)))              # SIGUSR2: not ours
    task.group.pending.append((10, kill_info(10, 7)))
    th, out = in_thread(lambda: (f.poll_events(), f.read(256), f.poll_events()), task)
    th.join(2)
    before, data, after = out[0]
    assert before & POLLIN and not after & POLLIN
    assert len(data) == 128
    signo, _err, code, pid = struct.unpack_from("<IiiI", data)
    assert (signo, code, pid) == (10, 0, 7)
    assert task.pending == [(12, kill_info(12, 3))]


def test_signalfd_errors_and_blocking_read():
    k = sig_kernel()
    task = SignalTask(k)
    f = SignalFile(k, 1 << 9, O_NONBLOCK)
    assert err(f.read, 127) == errno.EINVAL
    th, out = in_thread(lambda: f.read(128), task)
    th.join(2)
    assert isinstance(out[0], SyscallError) and out[0].errno == errno.EAGAIN
    assert err(f.write, bytes(128)) == errno.EINVAL
    b = SignalFile(k, 1 << 9, 0)
    th, out = in_thread(lambda: b.read(128), task)
    time.sleep(0.05)
    assert not out
    with k.lock:
        task.pending.append((10, kill_info(10, 1)))
    notify_signal(k)
    th.join(2)
    assert struct.unpack_from("<I", out[0])[0] == 10


def test_signalfd_syscalls(t):
    t.kernel.lock = threading.RLock()
    mask = t.put(struct.pack("<Q", 1 << 9))
    assert call(t, SG.sys_signalfd4, MASK, mask, 8, 1) == -errno.EINVAL
    assert call(t, SG.sys_signalfd4, MASK, mask, 4, 0) == -errno.EINVAL
    assert call(t, SG.sys_signalfd4, MASK, BAD, 8, 0) == -errno.EFAULT
    fd = call(t, SG.sys_signalfd4, MASK, mask, 8, 0o2000000)
    assert fd >= 0 and t.fdtable.get_cloexec(fd)
    assert t.fdtable.get(fd).path() == b"anon_inode:[signalfd]"
    mask2 = t.put(struct.pack("<Q", 1 << 11))
    assert call(t, SG.sys_signalfd, fd, mask2, 8) == fd
    assert t.fdtable.get(fd).mask == 1 << 11
    rfd, _wfd = install_pipe(t)
    assert call(t, SG.sys_signalfd, rfd, mask2, 8) == -errno.EINVAL
    assert call(t, SG.sys_signalfd, 99, mask2, 8) == -errno.EBADF


def test_siginfo_conversion_layouts():
    chld = struct.pack("<iii4xiIi4xqq", 17, 0, 1, 42, 1000, 3, 5, 6).ljust(128, b"\0")
    s = siginfo_to_signalfd(chld)
    assert struct.unpack_from("<IiiII", s) == (17, 0, 1, 42, 1000)
    assert struct.unpack_from("<i", s, 40)[0] == 3                     # ssi_status
    assert struct.unpack_from("<QQ", s, 56) == (5, 6)                  # utime, stime
    segv = struct.pack("<iii4xQ", 11, 0, 1, 0xDEAD).ljust(128, b"\0")
    assert struct.unpack_from("<Q", siginfo_to_signalfd(segv), 72)[0] == 0xDEAD
    queued = struct.pack("<iii4xiIq", 34, 0, -1, 9, 0, -5).ljust(128, b"\0")
    s = siginfo_to_signalfd(queued)
    assert struct.unpack_from("<i", s, 44)[0] == -5                    # ssi_int
