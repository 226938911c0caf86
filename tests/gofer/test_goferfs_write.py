"""The Sentry's gofer-backed file system (sentry/vfs/goferfs.py) as a
read-write volume, over our Gofer and over diod: the inode operations the
VFS calls, and what the host holds after each; the caches follow."""

import errno
import os
import stat
import sys

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.goferfs import GoferFS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_gofer_write import SERVERS, Served  # noqa: E402


@pytest.fixture(params=SERVERS)
def vol(request, tmp_path):
    host = tmp_path / "vol"
    host.mkdir()
    (tmp_path / "root").mkdir()
    s = Served(request.param, host, tmp_path / "root")
    aname = b"vol" if request.param == "pyvisor" else os.fsencode(host)
    fs = GoferFS(s.c, aname, read_only=False, host_locks=True)
    yield fs, host
    s.close()


def _errno(fn, *args):
    with pytest.raises(SyscallError) as info:
        fn(*args)
    return info.value.errno


def test_create_write_read_truncate(vol):
    fs, host = vol
    root = fs.root
    assert _errno(root.lookup, b"f") == errno.ENOENT        # remembered as missing...
    f = root.create(b"f", 0o600, 0, 0)
    assert root.lookup(b"f") is f                             # ...and forgotten on create
    assert f.write_at(0, b"hello") == 5
    assert f.write_at(10, b"world") == 5
    assert f.stat().st_size == 15 and f.read_at(0, 100) == b"hello\0\0\0\0\0world"
    assert (host / "f").read_bytes() == b"hello\0\0\0\0\0world"
    f.truncate(3)
    assert f.stat().st_size == 3 and (host / "f").read_bytes() == b"hel"
    assert f.fsync() == 0
    assert [n for n, _ino, _t in root.readdir()] == [b"f"]


def test_a_read_only_created_file_is_writable_through_its_creating_handle(vol):
    fs, host = vol
    f = fs.root.create(b"ro", 0o444, 0, 0)
    assert f.write_at(0, b"x") == 1
    assert (host / "ro").read_bytes() == b"x"
    assert stat.S_IMODE(os.stat(host / "ro").st_mode) == 0o444


def test_directories_links_rename_unlink(vol):
    fs, host = vol
    root = fs.root
    root.mkdir(b"d", 0o750, 0, 0)
    d = root.lookup(b"d")
    assert d.is_dir() and (host / "d").is_dir()
    f = d.create(b"a", 0o644, 0, 0)
    f.write_at(0, b"data")
    d.link(b"b", f)
    assert f.stat().st_nlink == 2 and os.stat(host / "d" / "b").st_nlink == 2
    root.symlink(b"s", b"d/a", 0, 0)
    assert root.lookup(b"s").readlink(None) == b"d/a"
    root.mknod(b"p", stat.S_IFIFO | 0o600, 0, 0, 0)
    assert stat.S_ISFIFO(os.lstat(host / "p").st_mode)
    d.rename(b"a", f, root, b"moved", None)
    assert root.lookup(b"moved") is f and _errno(d.lookup, b"a") == errno.ENOENT
    assert (host / "moved").read_bytes() == b"data"
    assert sorted(n for n, _i, _t in root.readdir()) == [b"d", b"moved", b"p", b"s"]
    root.unlink(b"moved", f)
    other = d.lookup(b"b")
    assert other.stat().st_nlink == 1 and other.read_at(0, 10) == b"data"
    d.unlink(b"b", other)
    root.rmdir(b"d", d)
    assert sorted(os.listdir(host)) == ["p", "s"]


def test_setattr_reaches_the_host(vol):
    fs, host = vol
    f = fs.root.create(b"f", 0o600, 0, 0)
    f.setattr(mode=0o640, atime_ns=5 * 10**9, mtime_ns=7 * 10**9 + 3)
    st = os.stat(host / "f")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == 7 * 10**9 + 3
    assert f.stat().st_mtime_ns == 7 * 10**9 + 3 and f.stat().st_mode & 0o777 == 0o640


def test_read_only_volume_is_erofs(tmp_path):
    host = tmp_path / "vol"
    host.mkdir()
    (host / "f").write_bytes(b"k")
    (tmp_path / "root").mkdir()
    s = Served("pyvisor", host, tmp_path / "root", read_only=True)
    try:
        fs = GoferFS(s.c, b"vol", read_only=True)
        f = fs.root.lookup(b"f")
        for op in (lambda: fs.root.create(b"n", 0o600, 0, 0),
                   lambda: fs.root.mkdir(b"n", 0o700, 0, 0),
                   lambda: fs.root.unlink(b"f", f),
                   lambda: f.write_at(0, b"x"),
                   lambda: f.truncate(0),
                   lambda: f.setattr(mode=0o777)):
            assert _errno(op) == errno.EROFS
        assert fs.statfs().f_flags & 1                       # ST_RDONLY
    finally:
        s.close()



def test_host_lockers_exclude_each_other(vol):
    """Two holders on the server (two sandboxes' fids): a write lock of
    one refuses the other's, until it is released or its fid clunked."""
    fs, host = vol
    p9 = fs.p9
    f = fs.root.create(b"l2", 0o644, 0, 0)
    a, b = f.host_locker(), f.host_locker()
    assert a.set(p9.LOCK_WRLCK, 0, 0) is True
    assert b.set(p9.LOCK_WRLCK, 0, 0) is False
    assert b.test(p9.LOCK_WRLCK, 0, 0) is not None
    assert a.set(p9.LOCK_UNLCK, 0, 0) is True
    assert b.set(p9.LOCK_WRLCK, 0, 0) is True
    assert a.set(p9.LOCK_RDLCK, 0, 0) is False
    b.close()
    assert a.set(p9.LOCK_RDLCK, 0, 0) is True
    a.close()


def test_host_locker_meets_host_locks(tmp_path):
    """Our Gofer takes Tlock as an OFD lock (diod's Tlock, as measured, does
    not meet a host process's POSIX lock): a host process's POSIX lock
    refuses a conflicting Tlock and shows in Tgetlock; ours refuse the
    host's; close releases them."""
    import fcntl
    host = tmp_path / "vol"
    host.mkdir()
    (tmp_path / "root").mkdir()
    s = Served("pyvisor", host, tmp_path / "root")
    try:
        fs = GoferFS(s.c, b"vol", read_only=False, host_locks=True)
        _host_locker_meets_host_locks(fs, host, fcntl)
    finally:
        s.close()


def _host_locker_meets_host_locks(fs, host, fcntl):
    f = fs.root.create(b"l", 0o644, 0, 0)
    f.write_at(0, b"x" * 100)
    locker = f.host_locker()
    p9 = fs.p9
    held = os.open(host / "l", os.O_RDWR)
    try:
        fcntl.lockf(held, fcntl.LOCK_EX, 100, 0)
        assert locker.set(p9.LOCK_WRLCK, 0, 0) is False
        assert locker.set(p9.LOCK_RDLCK, 200, 10) is True
        got = locker.test(p9.LOCK_WRLCK, 0, 0)
        assert got is not None and got[:3] == (p9.LOCK_WRLCK, 0, 100)
        fcntl.lockf(held, fcntl.LOCK_UN, 100, 0)
        assert locker.test(p9.LOCK_WRLCK, 0, 0) is None
        assert locker.set(p9.LOCK_WRLCK, 0, 0) is True
        with pytest.raises(OSError) as info:
            fcntl.lockf(held, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 50)
        assert info.value.errno in (errno.EAGAIN, errno.EACCES)
        locker.close()
        fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)     # all gone with the fid
    finally:
        os.close(held)
