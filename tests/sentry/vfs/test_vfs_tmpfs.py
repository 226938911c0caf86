"""tmpfs semantics through the VFS: link counts, sizes, times, rename rules."""

import errno
import os
import time

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.testing import make_env

S_IFMT, S_IFDIR, S_IFREG, S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000
RW_CREAT = os.O_CREAT | os.O_RDWR


@pytest.fixture
def env():
    k, vfs, t = make_env()
    return vfs, t


def err(fn, *args, **kw):
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def names(vfs, t, path):
    d = vfs.open(t, path, os.O_DIRECTORY)
    from pyvisor.sentry.vfs.file import DirectoryFile
    assert isinstance(d, DirectoryFile)
    return sorted(n for n, _, _ in d._snapshot())


def test_file_create_write_read_and_sizes(env):
    vfs, t = env
    f = vfs.open(t, b"/tmp/f", RW_CREAT, 0o666)
    assert f.write(b"hello") == 5
    f.lseek(10, 0)
    f.write(b"!")
    st = vfs.stat(t, b"/tmp/f")
    assert st.st_size == 11 and st.st_blocks == 8 and st.st_nlink == 1
    assert st.st_mode == S_IFREG | 0o644          # umask 022
    assert f.pread(100, 0) == b"hello\0\0\0\0\0!"
    f.truncate(3)
    assert f.pread(100, 0) == b"hel"


def test_umask_applies_to_create_and_mkdir(env):
    vfs, t = env
    t.fs.set_umask(0o077)
    vfs.open(t, b"/tmp/f", RW_CREAT, 0o666)
    vfs.mkdir(t, b"/tmp/d", 0o777)
    assert vfs.stat(t, b"/tmp/f").st_mode & 0o7777 == 0o600
    assert vfs.stat(t, b"/tmp/d").st_mode & 0o7777 == 0o700


def test_dir_nlink_counts_subdirs(env):
    vfs, t = env
    vfs.mkdir(t, b"/tmp/d", 0o755)
    assert vfs.stat(t, b"/tmp/d").st_nlink == 2
    vfs.mkdir(t, b"/tmp/d/e", 0o755)
    vfs.open(t, b"/tmp/d/f", RW_CREAT)
    assert vfs.stat(t, b"/tmp/d").st_nlink == 3
    vfs.rmdir(t, b"/tmp/d/e")
    assert vfs.stat(t, b"/tmp/d").st_nlink == 2


def test_mkdir_errors(env):
    vfs, t = env
    vfs.mkdir(t, b"/tmp/d", 0o755)
    assert err(vfs.mkdir, t, b"/tmp/d", 0o755) == errno.EEXIST
    assert err(vfs.mkdir, t, b"/tmp/nope/d", 0o755) == errno.ENOENT
    assert err(vfs.mkdir, t, b"/", 0o755) == errno.EEXIST
    assert err(vfs.mkdir, t, b"/tmp/d/.", 0o755) == errno.EEXIST


def test_rmdir_errors(env):
    vfs, t = env
    vfs.mkdir(t, b"/tmp/d", 0o755)
    vfs.open(t, b"/tmp/d/f", RW_CREAT)
    assert err(vfs.rmdir, t, b"/tmp/d") == errno.ENOTEMPTY
    assert err(vfs.rmdir, t, b"/tmp/d/f") == errno.ENOTDIR
    assert err(vfs.rmdir, t, b"/tmp/d/.") == errno.EINVAL
    assert err(vfs.rmdir, t, b"/tmp/d/..") == errno.ENOTEMPTY
    assert err(vfs.rmdir, t, b"/tmp") == errno.EBUSY        # a mount point
    assert err(vfs.rmdir, t, b"/") == errno.EBUSY
    assert err(vfs.rmdir, t, b"/tmp/missing") == errno.ENOENT


def test_unlink_errors_and_nlink(env):
    vfs, t = env
    vfs.open(t, b"/tmp/f", RW_CREAT)
    vfs.link(t, b"/tmp/f", b"/tmp/g")
    assert vfs.stat(t, b"/tmp/f").st_nlink == 2
    assert vfs.stat(t, b"/tmp/f").st_ino == vfs.stat(t, b"/tmp/g").st_ino
    vfs.unlink(t, b"/tmp/f")
    assert vfs.stat(t, b"/tmp/g").st_nlink == 1
    assert err(vfs.unlink, t, b"/tmp/f") == errno.ENOENT
    vfs.mkdir(t, b"/tmp/d", 0o755)
    assert err(vfs.unlink, t, b"/tmp/d") == errno.EISDIR
    assert err(vfs.link, t, b"/tmp/d", b"/tmp/d2") == errno.EPERM
    assert err(vfs.link, t, b"/tmp/g", b"/tmp/g") == errno.EEXIST
    assert err(vfs.link, t, b"/tmp/g", b"/g") == errno.EXDEV


def test_symlink_stat(env):
    vfs, t = env
    vfs.symlink(t, b"target", b"/tmp/l")
    st = vfs.stat(t, b"/tmp/l", follow=False)
    assert st.st_mode == S_IFLNK | 0o777 and st.st_size == 6
    assert err(vfs.symlink, t, b"", b"/tmp/l2") == errno.ENOENT
    assert err(vfs.symlink, t, b"x", b"/tmp/l") == errno.EEXIST
    assert err(vfs.readlink, t, b"/tmp") == errno.EINVAL


def test_rename_file_and_replace(env):
    vfs, t = env
    f = vfs.open(t, b"/tmp/a", RW_CREAT)
    f.write(b"A")
    vfs.open(t, b"/tmp/b", RW_CREAT).write(b"B")
    vfs.rename(t, b"/tmp/a", b"/tmp/b")
    assert vfs.open(t, b"/tmp/b", 0).read(5) == b"A"
    assert err(vfs.stat, t, b"/tmp/a") == errno.ENOENT
    assert f.path() == b"/tmp/b"        # the open file follows its dentry


def test_rename_dir_rules(env):
    vfs, t = env
    vfs.mkdir(t, b"/tmp/d", 0o755)
    vfs.mkdir(t, b"/tmp/e", 0o755)
    vfs.open(t, b"/tmp/e/x", RW_CREAT)
    vfs.open(t, b"/tmp/f", RW_CREAT)
    assert err(vfs.rename, t, b"/tmp/d", b"/tmp/e") == errno.ENOTEMPTY
    assert err(vfs.rename, t, b"/tmp/d", b"/tmp/f") == errno.ENOTDIR
    assert err(vfs.rename, t, b"/tmp/f", b"/tmp/d") == errno.EISDIR
    assert err(vfs.rename, t, b"/tmp/d", b"/tmp/d/sub") == errno.EINVAL
    assert err(vfs.rename, t, b"/tmp/f", b"/f") == errno.EXDEV
    vfs.rename(t, b"/tmp/f", b"/tmp/g")
    assert err(vfs.stat, t, b"/tmp/f") == errno.ENOENT
    assert vfs.stat(t, b"/tmp/g").st_mode & S_IFMT == S_IFREG
    vfs.mkdir(t, b"/tmp/d/in", 0o755)
    vfs.rename(t, b"/tmp/d", b"/tmp/moved")
    assert vfs.stat(t, b"/tmp/moved/in").st_mode & S_IFMT == S_IFDIR
    assert vfs.stat(t, b"/tmp/moved/in/..").st_ino == vfs.stat(t, b"/tmp/moved").st_ino


def test_rename_noreplace_and_same_file(env):
    vfs, t = env
    vfs.open(t, b"/tmp/a", RW_CREAT)
    vfs.link(t, b"/tmp/a", b"/tmp/b")
    assert err(vfs.rename, t, b"/tmp/a", b"/tmp/b", flags=1) == errno.EEXIST
    vfs.rename(t, b"/tmp/a", b"/tmp/b")       # same inode: nothing happens
    assert vfs.stat(t, b"/tmp/a").st_nlink == 2
    assert err(vfs.rename, t, b"/tmp/a", b"/tmp/c", flags=2) == errno.EINVAL


def test_readdir_lists_dot_dotdot_and_children(env):
    vfs, t = env
    vfs.mkdir(t, b"/tmp/d", 0o755)
    vfs.open(t, b"/tmp/d/f", RW_CREAT)
    vfs.symlink(t, b"x", b"/tmp/d/l")
    assert names(vfs, t, b"/tmp/d") == [b".", b"..", b"f", b"l"]


def test_times_update_on_write_and_setattr(env):
    vfs, t = env
    f = vfs.open(t, b"/tmp/f", RW_CREAT)
    before = vfs.stat(t, b"/tmp/f").st_mtime_ns
    time.sleep(0.002)
    f.write(b"x")
    assert vfs.stat(t, b"/tmp/f").st_mtime_ns > before
    vfs.setattr(t, b"/tmp/f", atime_ns=10**9, mtime_ns=2 * 10**9)
    st = vfs.stat(t, b"/tmp/f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (10**9, 2 * 10**9)
    vfs.setattr(t, b"/tmp/f", mode=0o4711)
    assert vfs.stat(t, b"/tmp/f").st_mode == S_IFREG | 0o4711


def test_open_checks(env):
    vfs, t = env
    vfs.mkdir(t, b"/tmp/d", 0o755)
    vfs.open(t, b"/tmp/f", RW_CREAT).write(b"abc")
    assert err(vfs.open, t, b"/tmp/d", os.O_WRONLY) == errno.EISDIR
    assert err(vfs.open, t, b"/tmp/d", os.O_CREAT) == errno.EISDIR
    assert err(vfs.open, t, b"/tmp/f", os.O_DIRECTORY) == errno.ENOTDIR
    assert err(vfs.open, t, b"/tmp/f", RW_CREAT | os.O_EXCL) == errno.EEXIST
    assert err(vfs.open, t, b"/tmp/missing", 0) == errno.ENOENT
    assert err(vfs.open, t, b"/tmp/x", os.O_TMPFILE | os.O_RDWR) == errno.ENOENT
    assert err(vfs.open, t, b"/tmp/f", os.O_TMPFILE | os.O_RDWR) == errno.ENOTDIR
    unnamed = vfs.open(t, b"/tmp", os.O_TMPFILE | os.O_RDWR)
    assert unnamed.stat().st_nlink == 0 and b"/tmp/x" not in [b"/tmp/" + n for n, *_ in
                                                              vfs.resolve(t, b"/tmp").inode.readdir()]
    vfs.open(t, b"/tmp/f", os.O_WRONLY | os.O_TRUNC)
    assert vfs.stat(t, b"/tmp/f").st_size == 0
    ro = vfs.open(t, b"/tmp/f", os.O_RDONLY)
    assert err(ro.write, b"x") == errno.EBADF
    wo = vfs.open(t, b"/tmp/f", os.O_WRONLY)
    assert err(wo.read, 1) == errno.EBADF


def test_append_mode_writes_at_end(env):
    vfs, t = env
    a = vfs.open(t, b"/tmp/f", RW_CREAT)
    a.write(b"12345")
    b = vfs.open(t, b"/tmp/f", os.O_WRONLY | os.O_APPEND)
    b.write(b"67")
    a.lseek(0, 0)
    assert a.read(10) == b"1234567"


def test_lseek_whence(env):
    vfs, t = env
    f = vfs.open(t, b"/tmp/f", RW_CREAT)
    f.write(b"0123456789")
    assert f.lseek(-2, 2) == 8
    assert f.lseek(1, 1) == 9
    assert f.lseek(3, 3) == 3            # SEEK_DATA
    assert f.lseek(3, 4) == 10           # SEEK_HOLE
    assert err(f.lseek, 10, 3) == errno.ENXIO
    assert err(f.lseek, -1, 0) == errno.EINVAL
    assert err(f.lseek, 0, 7) == errno.EINVAL


def test_statfs_tmpfs(env):
    vfs, t = env
    assert vfs.statfs(t, b"/tmp").f_type == 0x01021994


def test_sticky_directory_protects_other_users_files(env):
    from types import SimpleNamespace
    vfs, t = env

    def user(uid):
        return SimpleNamespace(uid=uid, gid=uid, euid=uid, egid=uid, suid=uid, sgid=uid,
                               groups=())
    t.creds = user(1000)
    vfs.open(t, b"/tmp/mine", RW_CREAT, 0o666)
    t.creds = user(1001)
    vfs.open(t, b"/tmp/theirs", RW_CREAT, 0o666)
    assert err(vfs.unlink, t, b"/tmp/mine") == errno.EPERM
    assert err(vfs.rename, t, b"/tmp/theirs", b"/tmp/mine") == errno.EPERM
    vfs.rename(t, b"/tmp/theirs", b"/tmp/theirs2")
    vfs.unlink(t, b"/tmp/theirs2")
    t.creds = user(0)
    vfs.unlink(t, b"/tmp/mine")


# -- sparse files (HeapData): holes hold no memory, as in Linux's tmpfs --

def _file(size=64 << 20):
    from pyvisor.sentry.vfs.tmpfs import TmpFS
    return TmpFS(size=size).root.create(b"f", 0o644, 0, 0)


def test_a_write_far_past_eof_holds_one_chunk_and_the_hole_reads_zero():
    from pyvisor.sentry.vfs.tmpfs import CHUNK
    f = _file(size=1 << 20)                       # far below the file's size
    f.write_at(0, b"head")
    f.write_at(5 << 30, b"x")                     # 5 GiB in: no ENOSPC
    assert f.size() == (5 << 30) + 1
    assert f.fs.space.used == 5                   # 4 bytes + 1 byte held
    assert len(f.data.chunks) == 2
    assert f.read_at((5 << 30) - 3, 10) == b"\0\0\0x"
    assert f.read_at(CHUNK - 2, 4) == bytes(4)
    buf = bytearray(b"\xff" * (3 * CHUNK))
    assert f.read_into(buf, 0) == len(buf)
    assert buf == b"head" + bytes(3 * CHUNK - 4)
    assert f.data_extents(0, f.size()) == [(0, 4), (5 << 30, (5 << 30) + 1)]


def test_a_write_across_chunks_and_truncate_frees_the_chunks_past_eof():
    from pyvisor.sentry.vfs.tmpfs import CHUNK
    f = _file()
    data = os.urandom(3 * CHUNK + 100)
    f.write_at(CHUNK - 50, data)
    assert f.read_at(CHUNK - 50, len(data)) == data
    assert f.read_at(0, CHUNK - 50) == bytes(CHUNK - 50)
    # A chunk holds from its start: chunk 0's hole before the write too.
    assert f.fs.space.used == CHUNK - 50 + len(data)
    f.truncate(2 * CHUNK + 7)
    assert f.fs.space.used == 2 * CHUNK + 7
    assert sorted(f.data.chunks) == [0, 1, 2]
    f.truncate(10 * CHUNK)                        # grows: a hole, nothing held
    assert f.fs.space.used == 2 * CHUNK + 7
    assert f.read_at(2 * CHUNK, 2 * CHUNK) == data[CHUNK + 50:CHUNK + 57] + bytes(2 * CHUNK - 7)
    f.truncate(0)
    assert f.fs.space.used == 0 and not f.data.chunks


def test_a_sparse_write_past_the_space_left_fails_with_nothing_written():
    f = _file(size=100)
    f.write_at(1 << 30, b"y" * 60)
    with pytest.raises(SyscallError) as e:
        f.write_at(2 << 30, b"z" * 50)
    assert e.value.errno == errno.ENOSPC
    assert f.size() == (1 << 30) + 60 and f.fs.space.used == 60
