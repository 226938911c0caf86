"""host_file: the caller's stdio served through the Sentry's own host fds."""

import errno
import os
import struct

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs import host_file
from pyvisor.sentry.vfs.host import (TCGETS, TCSETS, TIOCGPGRP, TIOCGWINSZ, TIOCSPGRP,
                                     TIOCSWINSZ)
from pyvisor.sentry.vfs.testing import make_env


def err(fn, *args, **kw):
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


@pytest.fixture
def pty():
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_read_write_on_host_pipe():
    r, w = os.pipe()
    fr = host_file(r, b"pipe:[1]", flags=os.O_RDONLY)
    fw = host_file(w, b"pipe:[1]", flags=os.O_WRONLY)
    assert fw.write(b"abc") == 3
    assert fr.read(10) == b"abc"
    assert fr.nread() == 0
    assert fr.stat().st_mode & 0o170000 == 0o010000
    assert err(fr.write, b"x") == errno.EBADF
    fr.decref()
    assert err(fw.write, b"x") == errno.EPIPE       # host EPIPE becomes SyscallError
    fw.decref()


def test_bad_host_fd():
    assert err(host_file, 10**6, b"x") == errno.EBADF


def test_tty_ioctls(pty):
    master, slave = pty
    k, vfs, t = make_env()
    f = host_file(os.dup(slave), b"/dev/pts/0")
    buf = t.alloc(64)
    f.ioctl(t, TCGETS, buf)
    termios = t.copy_in(buf, 36)
    f.ioctl(t, TCSETS, buf)
    t.copy_out(buf, struct.pack("<HHHH", 40, 100, 0, 0))
    f.ioctl(t, TIOCSWINSZ, buf)
    t.copy_out(buf, bytes(8))
    f.ioctl(t, TIOCGWINSZ, buf)
    assert struct.unpack("<HHHH", t.copy_in(buf, 8))[:2] == (40, 100)
    f.ioctl(t, TIOCGPGRP, buf)
    assert struct.unpack("<i", t.copy_in(buf, 4))[0] == 1
    assert f.ioctl(t, TIOCSPGRP, buf) == 0
    assert err(f.ioctl, t, 0x1234, buf) == errno.ENOTTY
    assert err(f.ioctl, t, TCGETS, 8) == errno.EFAULT
    assert f.stat().st_mode & 0o170000 == 0o020000
    assert len(termios) == 36
    f.decref()


def test_tty_ioctl_on_non_tty_is_enotty():
    k, vfs, t = make_env()
    r, w = os.pipe()
    f = host_file(r, b"pipe")
    buf = t.alloc(64)
    assert err(f.ioctl, t, TCGETS, buf) == errno.ENOTTY
    assert err(f.ioctl, t, TIOCGPGRP, buf) == errno.ENOTTY
    f.decref()
    os.close(w)


def test_link_names_follow_linux(pty):
    master, slave = pty
    f = host_file(os.dup(slave), b"stdin")
    assert f.path() == os.ttyname(slave).encode()
    f.decref()
    r, w = os.pipe()
    p = host_file(r, b"stdin")
    assert p.path() == b"pipe:[%d]" % os.fstat(r).st_ino
    assert p.flags & 3 == os.O_RDONLY           # the host fd's own access mode
    p.decref()
    os.close(w)
    import tempfile
    with tempfile.TemporaryFile() as tf:
        g = host_file(os.dup(tf.fileno()), b"stdout")
        assert g.path() == b"stdout" and g.flags & 3 == os.O_RDWR
        g.decref()


def test_nonblocking_is_emulated_without_touching_the_host_fd():
    r, w = os.pipe()
    f = host_file(os.dup(r), b"stdin", flags=os.O_RDONLY | os.O_NONBLOCK)
    assert err(f.read, 10) == errno.EAGAIN
    assert os.get_blocking(r)                        # the host fd stays blocking
    os.write(w, b"now")
    assert f.read(10) == b"now"
    f.decref()
    os.close(r)
    os.close(w)
