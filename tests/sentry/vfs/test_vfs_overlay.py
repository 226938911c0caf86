"""The overlay root against a real Gofer serving a temp dir.

Checks copy-up, whiteouts, opaque directories and merged readdir, and
that the host directory is byte-for-byte unchanged afterwards.
"""

import errno
import os
import socket
import threading

import pytest

from pyvisor.gofer.client import GoferClient
from pyvisor.gofer.server import serve
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.file import DirectoryFile
from pyvisor.sentry.vfs.goferfs import GoferFS
from pyvisor.sentry.vfs.testing import make_env

S_IFMT, S_IFDIR, S_IFREG, S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000


def snapshot(root):
    """Everything about a host tree that the sandbox must not change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = None
            if os.path.islink(p):
                data = os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    data = f.read()
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, data)
    return out


@pytest.fixture
def host_tree(tmp_path):
    root = tmp_path / "root"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "bin").mkdir()
    (root / "a.txt").write_bytes(b"lower A")
    (root / "sub" / "b.txt").write_bytes(b"lower B")
    (root / "sub" / "deep" / "c.txt").write_bytes(b"C" * 100000)
    (root / "bin" / "prog").write_bytes(b"\x7fELF")
    os.chmod(root / "bin" / "prog", 0o755)
    os.symlink("a.txt", root / "link")
    os.symlink("/sub", root / "abslink")
    before = snapshot(root)
    yield root
    assert snapshot(root) == before, "the sandbox changed the host tree"


def _gofer(root, accept_fds):
    a, b = socket.socketpair()
    th = threading.Thread(target=serve, args=(b, str(root)), daemon=True)
    th.start()
    return GoferClient(a, accept_fds=accept_fds), th, b


@pytest.fixture(params=[True, False], ids=["donated-fds", "tread"])
def env(host_tree, request):
    client, th, b = _gofer(host_tree, request.param)
    k, vfs, t = make_env(gofer_root=client)
    yield vfs, t
    client.close()
    th.join(5)
    b.close()


def err(fn, *args, **kw):
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def read(vfs, t, path):
    return vfs.open(t, path, os.O_RDONLY).read(1 << 20)


def listing(vfs, t, path):
    d = vfs.open(t, path, os.O_DIRECTORY)
    assert isinstance(d, DirectoryFile)
    return sorted(n for n, _, _ in d._snapshot() if n not in (b".", b".."))


def test_reads_and_stats_lower(env, host_tree):
    vfs, t = env
    assert read(vfs, t, b"/a.txt") == b"lower A"
    assert read(vfs, t, b"/sub/deep/c.txt") == b"C" * 100000
    st = vfs.stat(t, b"/bin/prog")
    assert st.st_mode == S_IFREG | 0o755 and st.st_size == 4
    assert st.st_ino == os.stat(host_tree / "bin" / "prog").st_ino
    assert read(vfs, t, b"/link") == b"lower A"
    assert vfs.readlink(t, b"/link") == b"a.txt"
    assert read(vfs, t, b"/abslink/b.txt") == b"lower B"
    assert err(vfs.stat, t, b"/missing") == errno.ENOENT
    assert err(vfs.stat, t, b"/a.txt/x") == errno.ENOTDIR


def test_root_listing_has_lower_and_mount_dirs(env):
    vfs, t = env
    names = listing(vfs, t, b"/")
    for n in (b"a.txt", b"sub", b"empty", b"bin", b"link", b"tmp", b"dev", b"proc"):
        assert n in names


def test_write_copies_up(env):
    vfs, t = env
    f = vfs.open(t, b"/sub/b.txt", os.O_RDWR)
    f.lseek(0, 2)
    f.write(b" and more")
    assert read(vfs, t, b"/sub/b.txt") == b"lower B and more"
    assert listing(vfs, t, b"/sub") == [b"b.txt", b"deep"]


def test_trunc_copies_up_big_file(env):
    vfs, t = env
    vfs.open(t, b"/sub/deep/c.txt", os.O_WRONLY | os.O_TRUNC).write(b"new")
    assert read(vfs, t, b"/sub/deep/c.txt") == b"new"
    vfs.truncate(t, b"/a.txt", 3)
    assert read(vfs, t, b"/a.txt") == b"low"


def test_copy_up_of_a_sparse_file_keeps_its_holes(env, host_tree):
    """Runs of zeros in the lower file are not held by the upper copy."""
    vfs, t = env
    with open(host_tree / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(16 << 20)
        f.write(b"mid")
        f.truncate(40 << 20)               # ends in a hole
    f = vfs.open(t, b"/sparse", os.O_RDWR)
    f.pwrite(b"H", 0)
    assert f.stat().st_size == 40 << 20
    assert f.pread(8, 0) == b"Head\0\0\0\0"
    assert f.pread(5, (16 << 20) - 1) == b"\0mid\0"
    assert f.pread(4, (40 << 20) - 4) == bytes(4)
    assert f.stat().st_blocks <= 2 * (1 << 20) // 512     # two 1 MiB runs at most, not 40
    os.unlink(host_tree / "sparse")        # the host tree is as it was


def test_chmod_copies_up_and_keeps_data(env):
    vfs, t = env
    vfs.setattr(t, b"/bin/prog", mode=0o700)
    assert vfs.stat(t, b"/bin/prog").st_mode == S_IFREG | 0o700
    assert read(vfs, t, b"/bin/prog") == b"\x7fELF"


def test_unlink_leaves_whiteout(env):
    vfs, t = env
    vfs.unlink(t, b"/a.txt")
    assert err(vfs.stat, t, b"/a.txt") == errno.ENOENT
    assert b"a.txt" not in listing(vfs, t, b"/")
    assert err(vfs.stat, t, b"/link") == errno.ENOENT         # now dangling
    f = vfs.open(t, b"/a.txt", os.O_CREAT | os.O_RDWR, 0o600)  # recreate over it
    f.write(b"upper A")
    assert read(vfs, t, b"/link") == b"upper A"
    assert err(vfs.unlink, t, b"/missing") == errno.ENOENT


def test_rmdir_and_opaque_recreate(env):
    vfs, t = env
    assert err(vfs.rmdir, t, b"/sub") == errno.ENOTEMPTY
    vfs.unlink(t, b"/sub/deep/c.txt")
    vfs.rmdir(t, b"/sub/deep")
    assert listing(vfs, t, b"/sub") == [b"b.txt"]
    vfs.mkdir(t, b"/sub/deep", 0o755)
    assert listing(vfs, t, b"/sub/deep") == []            # opaque: c.txt stays hidden
    assert err(vfs.stat, t, b"/sub/deep/c.txt") == errno.ENOENT
    vfs.rmdir(t, b"/empty")
    assert b"empty" not in listing(vfs, t, b"/")


def test_create_in_lower_dir_merges(env):
    vfs, t = env
    vfs.open(t, b"/sub/new.txt", os.O_CREAT | os.O_WRONLY, 0o644).write(b"N")
    vfs.mkdir(t, b"/sub/newdir", 0o755)
    assert listing(vfs, t, b"/sub") == [b"b.txt", b"deep", b"new.txt", b"newdir"]
    assert read(vfs, t, b"/sub/b.txt") == b"lower B"


def test_rename_file_from_lower(env):
    vfs, t = env
    vfs.rename(t, b"/a.txt", b"/sub/moved.txt")
    assert read(vfs, t, b"/sub/moved.txt") == b"lower A"
    assert err(vfs.stat, t, b"/a.txt") == errno.ENOENT
    assert b"a.txt" not in listing(vfs, t, b"/")
    vfs.rename(t, b"/sub/moved.txt", b"/sub/b.txt")            # replace a lower file
    assert read(vfs, t, b"/sub/b.txt") == b"lower A"
    assert listing(vfs, t, b"/sub") == [b"b.txt", b"deep"]


def test_rename_lower_dir_is_exdev_upper_dir_ok(env):
    vfs, t = env
    assert err(vfs.rename, t, b"/sub", b"/sub2") == errno.EXDEV
    vfs.mkdir(t, b"/updir", 0o755)
    vfs.open(t, b"/updir/f", os.O_CREAT | os.O_WRONLY).write(b"u")
    vfs.rename(t, b"/updir", b"/updir2")
    assert read(vfs, t, b"/updir2/f") == b"u"


def test_rename_dir_over_empty_lower_dir_is_opaque(env, host_tree):
    vfs, t = env
    vfs.mkdir(t, b"/fresh", 0o755)
    vfs.unlink(t, b"/sub/deep/c.txt")
    vfs.rename(t, b"/fresh", b"/sub/deep")
    assert listing(vfs, t, b"/sub/deep") == []


def test_hard_link_to_lower_file(env):
    vfs, t = env
    vfs.link(t, b"/sub/b.txt", b"/b-link")
    assert read(vfs, t, b"/b-link") == b"lower B"
    assert vfs.stat(t, b"/b-link").st_nlink == 2


def test_symlink_and_mkdir_in_overlay(env):
    vfs, t = env
    vfs.symlink(t, b"sub/b.txt", b"/newlink")
    assert read(vfs, t, b"/newlink") == b"lower B"
    assert err(vfs.mkdir, t, b"/sub", 0o755) == errno.EEXIST


def test_statfs_overlay(env):
    vfs, t = env
    assert vfs.statfs(t, b"/").f_type == 0x794C7630


def test_gofer_fs_alone_is_read_only(host_tree):
    client, th, b = _gofer(host_tree, True)
    try:
        from pyvisor.sentry.vfs.vfs import VirtualFilesystem
        from pyvisor.sentry.vfs.testing import FakeTask, fake_kernel
        fs = GoferFS(client)
        vfs = VirtualFilesystem(fs, fs.root)
        t = FakeTask(fake_kernel(), vfs)
        assert read(vfs, t, b"/sub/b.txt") == b"lower B"
        assert err(vfs.open, t, b"/a.txt", os.O_WRONLY) == errno.EROFS
        assert err(vfs.mkdir, t, b"/x", 0o755) == errno.EROFS
        assert err(vfs.unlink, t, b"/a.txt") == errno.EROFS
        assert vfs.statfs(t, b"/").f_type == 0x01021997
        assert listing(vfs, t, b"/sub") == [b"b.txt", b"deep"]
    finally:
        client.close()
        th.join(5)
        b.close()


def test_gofer_subprocess(host_tree):
    """The real Gofer process, as the Sentry starts it."""
    import subprocess
    import sys
    import pyvisor
    top = os.path.dirname(os.path.dirname(os.path.abspath(pyvisor.__file__)))
    a, b = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-m", "pyvisor.gofer", "--fd", str(b.fileno()),
                             "--root", str(host_tree)], pass_fds=[b.fileno()],
                            env=dict(os.environ, PYTHONPATH=top))
    b.close()
    try:
        client = GoferClient(a)
        k, vfs, t = make_env(gofer_root=client)
        assert read(vfs, t, b"/sub/deep/c.txt") == b"C" * 100000
        vfs.open(t, b"/a.txt", os.O_WRONLY | os.O_APPEND).write(b"!")
        assert read(vfs, t, b"/a.txt") == b"lower A!"
        client.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_open_file_lru_is_bounded(env, host_tree, monkeypatch):
    from pyvisor.sentry.vfs import goferfs
    monkeypatch.setattr(goferfs, "MAX_OPEN", 2)
    vfs, t = env
    for p in (b"/a.txt", b"/sub/b.txt", b"/bin/prog", b"/a.txt", b"/sub/deep/c.txt"):
        assert read(vfs, t, p)
    lower = vfs.root.inode.lower.fs
    assert len(lower.open_lru) == 2
    assert sum(1 for i in (lower.root.lookup(b"a.txt"), lower.root.lookup(b"bin").lookup(b"prog"))
               if i._open is not None) <= 1


def test_preadinto_lower_upper_and_tmpfs(env):
    vfs, t = env
    buf = bytearray(200000)
    f = vfs.open(t, b"/sub/deep/c.txt", os.O_RDONLY)
    assert f.preadinto(memoryview(buf), 0) == 100000 and buf[:100000] == b"C" * 100000
    assert f.preadinto(memoryview(buf)[:10], 99995) == 5
    assert f.preadinto(memoryview(buf)[:10], 200000) == 0
    vfs.open(t, b"/sub/deep/c.txt", os.O_WRONLY | os.O_APPEND).write(b"D")     # copy-up
    assert f.preadinto(memoryview(buf)[:4], 99998) == 3 and buf[:3] == b"CCD"
    g = vfs.open(t, b"/tmp/x", os.O_CREAT | os.O_RDWR)
    g.write(b"tmpfs data")
    assert g.preadinto(memoryview(buf)[:5], 6) == 4 and buf[:4] == b"data"
    w = vfs.open(t, b"/tmp/x", os.O_WRONLY)
    with pytest.raises(SyscallError):
        w.preadinto(memoryview(buf), 0)


def test_merged_dir_attrs(env, host_tree):
    vfs, t = env
    root = vfs.stat(t, b"/")
    host = os.stat(host_tree)
    assert (root.st_mode, root.st_uid, root.st_gid) == (host.st_mode, host.st_uid, host.st_gid)
    assert root.st_nlink == 1                                 # merged: as ovl_getattr
    assert vfs.stat(t, b"/sub").st_nlink == os.stat(host_tree / "sub").st_nlink   # lower only
    vfs.open(t, b"/sub/new", os.O_CREAT | os.O_WRONLY)
    assert vfs.stat(t, b"/sub").st_nlink == 1                 # now merged


def test_walked_fids_are_bounded(host_tree, monkeypatch):
    """With a tiny fid budget the tree still reads right, and the Gofer
    never holds more fids than the budget (plus the root and open files)."""
    from pyvisor.sentry.vfs import goferfs
    monkeypatch.setattr(goferfs, "MAX_FIDS", 3)
    monkeypatch.setattr(goferfs, "MAX_OPEN", 1)
    client, th, b = _gofer(host_tree, True)
    try:
        k, vfs, t = make_env(gofer_root=client)
        for _ in range(2):
            assert read(vfs, t, b"/sub/deep/c.txt") == b"C" * 100000
            assert read(vfs, t, b"/a.txt") == b"lower A"
            assert listing(vfs, t, b"/sub/deep") == [b"c.txt"]
            assert vfs.readlink(t, b"/link") == b"a.txt"
            assert read(vfs, t, b"/bin/prog") == b"\x7fELF"
            assert client.nfids <= 1 + 3 + 1
        lower = vfs.root.inode.lower.fs
        assert len(lower.fid_lru) == 3
        assert vfs.statfs(t, b"/").f_type == 0x794C7630
    finally:
        client.close()
        th.join(5)
        b.close()


def test_stats_after_a_listing_share_round_trips(tmp_path):
    """ls -l, find and tar list a directory, then stat each name in order:
    the Gofer is asked about the following names along with the first."""
    from pyvisor.sentry.vfs import goferfs
    (tmp_path / "d").mkdir()
    (tmp_path / "d2").mkdir()
    n = goferfs.LOOKAHEAD + 10
    for i in range(n):
        (tmp_path / "d" / ("f%03d" % i)).write_bytes(b"x" * i)
        (tmp_path / "d2" / ("f%03d" % i)).write_bytes(b"")
    client, th, b = _gofer(tmp_path, True)
    try:
        from pyvisor.sentry.vfs.testing import FakeTask, fake_kernel
        from pyvisor.sentry.vfs.vfs import VirtualFilesystem
        fs = GoferFS(client)
        vfs = VirtualFilesystem(fs, fs.root)
        t = FakeTask(fake_kernel(), vfs)
        trips = []
        many = client.walk_getattr_many
        client.walk_getattr_many = lambda node, names: trips.append(len(names)) or many(node, names)
        d = vfs.open(t, b"/d", os.O_DIRECTORY)
        names = [name for name, _, _ in d._snapshot() if name not in (b".", b"..")]
        assert len(names) == n
        for name in names:
            assert vfs.stat(t, b"/d/" + name).st_size == int(name[1:])
        # /d; the first name alone; from the second, in order: the window ahead.
        assert trips == [1, 1, 1 + goferfs.LOOKAHEAD, n - 2 - goferfs.LOOKAHEAD]
        assert err(vfs.stat, t, b"/d/nope") == errno.ENOENT
        # Without a listing, a lookup asks for its own name only; so does
        # one out of the listing's order.
        trips.clear()
        for i in (3, 1, 2):
            assert vfs.stat(t, b"/d2/f%03d" % i).st_size == 0
        assert trips == [1, 1, 1, 1]      # /d2 itself, then each name
        d2 = vfs.open(t, b"/d2", os.O_DIRECTORY)
        listed = [name for name, _, _ in d2._snapshot() if name not in (b".", b"..")]
        trips.clear()
        for name in listed[::-3]:
            if int(name[1:]) not in (1, 2, 3):
                assert vfs.stat(t, b"/d2/" + name).st_size == 0
        assert trips and set(trips) == {1}
    finally:
        client.close()
        th.join(5)
        b.close()
