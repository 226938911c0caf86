"""FDTable and FSContext semantics (dup, cloexec, limits, fork)."""

import errno

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.fdtable import FDTable, FSContext
from pyvisor.sentry.vfs.file import FileDescription


class Counted(FileDescription):
    """A description that records its release."""

    def __init__(self):
        super().__init__(None, 0)
        self.released = 0

    def release(self):
        self.released += 1


def err(fn, *args, **kw):
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def test_install_lowest_free_and_minfd():
    t = FDTable()
    assert [t.install(Counted()) for _ in range(3)] == [0, 1, 2]
    t.close(1)
    assert t.install(Counted()) == 1
    assert t.install(Counted(), minfd=10) == 10
    assert t.install(Counted(), minfd=10) == 11


def test_get_and_close_ebadf():
    t = FDTable()
    assert err(t.get, 0) == errno.EBADF
    assert err(t.close, 5) == errno.EBADF
    f = Counted()
    fd = t.install(f)
    assert t.get(fd) is f
    t.close(fd)
    assert f.released == 1
    assert err(t.get, fd) == errno.EBADF


def test_dup_shares_description_and_releases_once():
    t = FDTable()
    f = Counted()
    fd = t.install(f, cloexec=True)
    d = t.dup(fd)
    assert t.get(d) is f and not t.get_cloexec(d) and t.get_cloexec(fd)
    t.close(fd)
    assert f.released == 0
    t.close(d)
    assert f.released == 1


def test_dup2_semantics():
    t = FDTable()
    a, b = Counted(), Counted()
    fa, fb = t.install(a), t.install(b)
    assert t.dup2(fa, fa) == fa                      # dup2(fd, fd) is a check only
    assert err(t.dup2, 7, 7) == errno.EBADF
    assert t.dup2(fa, fb) == fb
    assert b.released == 1 and t.get(fb) is a
    assert t.dup2(fa, 100, cloexec=True) == 100 and t.get_cloexec(100)
    assert err(t.dup2, fa, 1024) == errno.EBADF
    assert err(t.dup2, fa, -1) == errno.EBADF


def test_rlimit_nofile():
    t = FDTable(limit=8)
    for _ in range(8):
        t.install(Counted())
    extra = Counted()
    assert err(t.install, extra) == errno.EMFILE
    assert extra.released == 1                       # install dropped the reference
    assert err(t.dup, 0) == errno.EMFILE
    assert err(t.dup, 0, minfd=8) == errno.EINVAL


def test_cloexec_flags_and_close_on_exec():
    t = FDTable()
    keep, drop = Counted(), Counted()
    fk, fd = t.install(keep), t.install(drop, cloexec=True)
    t.set_cloexec(fk, True)
    t.set_cloexec(fk, False)
    t.close_on_exec()
    assert t.get(fk) is keep and drop.released == 1
    assert err(t.get, fd) == errno.EBADF
    assert err(t.set_cloexec, 99, True) == errno.EBADF


def test_fork_copies_table_sharing_descriptions():
    t = FDTable()
    f = Counted()
    fd = t.install(f, cloexec=True)
    child = t.fork()
    assert child.get(fd) is f and child.get_cloexec(fd)
    child.close(fd)
    assert f.released == 0
    t.close(fd)
    assert f.released == 1
    assert len(child) == 0


def test_close_range():
    t = FDTable()
    fs = [Counted() for _ in range(5)]
    for f in fs:
        t.install(f)
    t.close_range(1, 2, flags=1 << 2)                # CLOSE_RANGE_CLOEXEC
    assert t.get_cloexec(1) and t.get_cloexec(2) and not t.get_cloexec(3)
    t.close_range(3, 100)
    assert [fd for fd, _ in t.items()] == [0, 1, 2]
    assert fs[3].released == fs[4].released == 1


def test_fscontext_umask_and_fork():
    ctx = FSContext(root="R")
    assert ctx.cwd == "R" and ctx.umask == 0o022
    assert ctx.set_umask(0o1777) == 0o022
    assert ctx.umask == 0o777
    child = ctx.fork()
    child.cwd = "X"
    assert ctx.cwd == "R" and child.umask == 0o777


def test_anonymous_description_defaults():
    """A pathless description (sockets, epoll...) still stats and names itself."""
    f = Counted()
    assert f.path() == b"anon_inode:[pyvisor]"
    assert f.stat().st_mode == 0o600
    assert f.statfs().f_type == 0x09041934
    assert err(f.pread, 1, 0) == errno.EINVAL
    assert err(f.ioctl, None, 0x5401, 0) == errno.ENOTTY
