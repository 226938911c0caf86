"""Shared file access (sentry/vfs/goferfs.py, GoferFS(shared=True)) under
the VFS's path walk, over our Gofer and over diod: each walk sees what the
host did since the last one (a rewritten file, a directory replaced,
removed and made again, a new name, a listing), where an exclusive one
keeps what it cached."""

import errno
import os
import shutil
import sys

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.goferfs import GoferFS
from pyvisor.sentry.vfs.vfs import VirtualFilesystem

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_gofer_write import SERVERS, Served  # noqa: E402


def _served(server, tmp_path, shared):
    host = tmp_path / "vol"
    (host / "d1" / "d2").mkdir(parents=True)
    (host / "d1" / "d2" / "f").write_bytes(b"one")
    (tmp_path / "root").mkdir()
    s = Served(server, host, tmp_path / "root")
    aname = b"vol" if server == "pyvisor" else os.fsencode(host)
    fs = GoferFS(s.c, aname, read_only=False, shared=shared)
    return s, VirtualFilesystem(fs, fs.root), host


@pytest.fixture(params=SERVERS)
def shared(request, tmp_path):
    s, vfs, host = _served(request.param, tmp_path, True)
    yield vfs, host
    s.close()


def _errno(fn, *args):
    with pytest.raises(SyscallError) as info:
        fn(*args)
    return info.value.errno


def _names(vfs, path):
    return sorted(n for n, _ino, _dt in vfs.resolve(None, path).inode.readdir())


def test_each_walk_sees_the_host(shared):
    vfs, host = shared
    f = host / "d1" / "d2" / "f"
    assert vfs.stat(None, b"/d1/d2/f").st_size == 3
    f.write_bytes(b"three")
    assert vfs.stat(None, b"/d1/d2/f").st_size == 5
    # The directory on the path replaced: the walk finds the new one's file.
    os.rename(host / "d1", host / "old")
    (host / "d1" / "d2").mkdir(parents=True)
    f.write_bytes(b"new one!")
    st = vfs.stat(None, b"/d1/d2/f")
    assert (st.st_size, st.st_ino) == (8, os.stat(f).st_ino)
    assert vfs.stat(None, b"/old/d2/f").st_size == 5
    shutil.rmtree(host / "d1")
    assert _errno(vfs.stat, None, b"/d1/d2/f") == errno.ENOENT
    assert _errno(vfs.stat, None, b"/d1") == errno.ENOENT
    (host / "d1").mkdir()
    (host / "d1" / "x").write_bytes(b"x")
    assert vfs.stat(None, b"/d1/x").st_size == 1
    assert _errno(vfs.stat, None, b"/d1/x/y") == errno.ENOTDIR
    assert _names(vfs, b"/d1") == [b"x"]
    (host / "d1" / "y").mkdir()
    assert _names(vfs, b"/d1") == [b"x", b"y"]         # listings are never cached
    # A first walk of a deep new path, then the same path again.
    (host / "a" / "b" / "c" / "d").mkdir(parents=True)
    assert vfs.resolve(None, b"/a/b/c/d").inode.is_dir()
    shutil.rmtree(host / "a" / "b")
    assert _errno(vfs.resolve, None, b"/a/b/c/d") == errno.ENOENT


@pytest.mark.parametrize("server", SERVERS)
def test_exclusive_keeps_what_it_cached(server, tmp_path):
    s, vfs, host = _served(server, tmp_path, False)
    try:
        assert vfs.stat(None, b"/d1/d2/f").st_size == 3
        (host / "d1" / "d2" / "f").write_bytes(b"three")
        (host / "d1" / "new").write_bytes(b"")
        assert vfs.stat(None, b"/d1/d2/f").st_size == 3
        assert _names(vfs, b"/d1") == [b"d2", b"new"]     # the first listing
        (host / "d1" / "newer").write_bytes(b"")
        assert _names(vfs, b"/d1") == [b"d2", b"new"]
    finally:
        s.close()
