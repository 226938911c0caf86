"""Pipes: pipe(7) semantics with real threads."""

import errno
import threading
import time

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.pipe import PIPE_BUF, make_pipe
from pyvisor.sentry.vfs.file import O_NONBLOCK


def err(fn, *args, **kw):
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def test_write_then_read_and_fionread():
    r, w = make_pipe()
    assert w.write(b"hello") == 5
    assert r.nread() == 5
    assert r.read(3) == b"hel"
    assert r.read(100) == b"lo"


def test_blocking_reader_is_woken_by_writer_thread():
    r, w = make_pipe()
    got = []
    th = threading.Thread(target=lambda: got.append(r.read(10)))
    th.start()
    time.sleep(0.05)
    assert not got                      # still blocked
    w.write(b"wake")
    th.join(2)
    assert got == [b"wake"]


def test_eof_when_writers_gone():
    r, w = make_pipe()
    w.write(b"x")
    w.decref()
    assert r.read(10) == b"x"
    assert r.read(10) == b""


def test_blocked_reader_sees_eof_when_last_writer_closes():
    r, w = make_pipe()
    got = []
    th = threading.Thread(target=lambda: got.append(r.read(10)))
    th.start()
    time.sleep(0.05)
    w.decref()
    th.join(2)
    assert got == [b""]


def test_epipe_without_readers():
    r, w = make_pipe()
    r.decref()
    assert err(w.write, b"x") == errno.EPIPE


def test_nonblocking_eagain():
    r, w = make_pipe(O_NONBLOCK)
    assert err(r.read, 1) == errno.EAGAIN
    w.write(b"a" * 65536)
    assert err(w.write, b"b") == errno.EAGAIN


def test_nonblocking_large_write_is_partial():
    r, w = make_pipe(O_NONBLOCK)
    w.write(b"a" * (65536 - 100))
    assert w.write(b"b" * 10000) == 100          # > PIPE_BUF: what fits
    r.read(PIPE_BUF)
    assert w.write(b"c" * (PIPE_BUF + 1)) == PIPE_BUF
    assert err(w.write, b"d" * (PIPE_BUF + 1)) == errno.EAGAIN


def test_small_writes_are_atomic_under_contention():
    r, w = make_pipe()
    w.write(b"x" * (65536 - 10))                 # 10 bytes of room
    done = []
    th = threading.Thread(target=lambda: done.append(w.write(b"y" * 100)))
    th.start()
    time.sleep(0.05)
    assert not done                              # does not write 10 of the 100
    assert r.nread() == 65536 - 10
    r.read(1000)
    th.join(2)
    assert done == [100]


def test_large_blocking_write_completes_as_reader_drains():
    r, w = make_pipe()
    data = bytes(range(256)) * 1024              # 256 KiB > capacity
    out = bytearray()

    def reader():
        while len(out) < len(data):
            out.extend(r.read(7000))
    th = threading.Thread(target=reader)
    th.start()
    assert w.write(data) == len(data)
    th.join(5)
    assert bytes(out) == data


def test_wrong_end_and_seek():
    r, w = make_pipe()
    assert err(r.write, b"x") == errno.EBADF
    assert err(w.read, 1) == errno.EBADF
    assert err(r.lseek, 0, 0) == errno.ESPIPE
    assert err(r.pread, 1, 0) == errno.ESPIPE


def test_capacity_and_stat():
    r, w = make_pipe()
    assert r.pipe.set_capacity(5000) == 8192
    assert err(r.pipe.set_capacity, 1 << 21) == errno.EPERM
    w.write(b"z" * 8000)
    assert err(r.pipe.set_capacity, 4096) == errno.EBUSY
    assert r.stat().st_mode == 0o010600
    assert r.path() == b"pipe:[%d]" % r.pipe.ino


# --- named FIFOs (mknod S_IFIFO on tmpfs) ------------------------------------------

import os  # noqa: E402

from pyvisor.sentry.vfs.testing import make_env  # noqa: E402


@pytest.fixture
def fifo_env():
    k, vfs, t = make_env()
    vfs.mknod(t, b"/tmp/fifo", 0o010644, 0)
    return vfs, t


def test_fifo_open_waits_for_peer(fifo_env):
    vfs, t = fifo_env
    got = []

    def reader():
        f = vfs.open(t, b"/tmp/fifo", os.O_RDONLY)
        got.append(f.read(10))
        got.append(f.read(10))
    th = threading.Thread(target=reader)
    th.start()
    time.sleep(0.05)
    assert not got
    w = vfs.open(t, b"/tmp/fifo", os.O_WRONLY)
    assert w.write(b"through") == 7
    w.decref()
    th.join(2)
    assert got == [b"through", b""]
    assert vfs.stat(t, b"/tmp/fifo").st_mode == 0o010644
    assert w.path() == b"/tmp/fifo"


def test_fifo_nonblocking_opens(fifo_env):
    vfs, t = fifo_env
    assert err(vfs.open, t, b"/tmp/fifo", os.O_WRONLY | os.O_NONBLOCK) == errno.ENXIO
    r = vfs.open(t, b"/tmp/fifo", os.O_RDONLY | os.O_NONBLOCK)
    assert r.read(1) == b""                          # no writer: EOF, not EAGAIN
    w = vfs.open(t, b"/tmp/fifo", os.O_WRONLY | os.O_NONBLOCK)
    assert err(r.read, 1) == errno.EAGAIN
    w.write(b"q")
    assert r.read(1) == b"q"


def test_fifo_rdwr_does_not_block(fifo_env):
    vfs, t = fifo_env
    f = vfs.open(t, b"/tmp/fifo", os.O_RDWR)
    f.write(b"self")
    assert f.read(10) == b"self"
    f.decref()
    assert f.pipe.readers == 0 and f.pipe.writers == 0
