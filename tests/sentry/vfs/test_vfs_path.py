"""Path resolution: Linux's path_resolution(7) rules on a tmpfs root."""

import errno
import os

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.testing import make_env

O_RDONLY, O_CREAT, O_RDWR = os.O_RDONLY, os.O_CREAT, os.O_RDWR


@pytest.fixture
def env():
    k, vfs, t = make_env()
    vfs.mkdir(t, b"/a", 0o755)
    vfs.mkdir(t, b"/a/b", 0o755)
    f = vfs.open(t, b"/a/b/file", O_CREAT | O_RDWR, 0o644)
    f.write(b"data")
    vfs.symlink(t, b"b/file", b"/a/rel")          # relative to /a
    vfs.symlink(t, b"/a/b", b"/abs")
    vfs.symlink(t, b"nowhere", b"/dangling")
    return vfs, t


def err(fn, *args, **kw):
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def test_absolute_and_dot_components(env):
    vfs, t = env
    for p in (b"/a/b/file", b"//a///b/./file", b"/a/../a/b/file", b"/../../a/b/file"):
        assert vfs.stat(t, p).st_size == 4


def test_dotdot_at_root_stays_at_root(env):
    vfs, t = env
    assert vfs.stat(t, b"/..").st_ino == vfs.stat(t, b"/").st_ino


def test_relative_to_cwd_and_dirfd(env):
    vfs, t = env
    t.fs.cwd = vfs.resolve(t, b"/a")
    assert vfs.stat(t, b"b/file").st_size == 4
    assert vfs.stat(t, b"./b/../b/file").st_size == 4
    fd = t.fdtable.install(vfs.open(t, b"/a/b", os.O_DIRECTORY))
    assert vfs.stat(t, b"file", dirfd=fd).st_size == 4
    ffd = t.fdtable.install(vfs.open(t, b"/a/b/file", O_RDONLY))
    assert err(vfs.stat, t, b"x", dirfd=ffd) == errno.ENOTDIR
    assert err(vfs.stat, t, b"x", dirfd=999) == errno.EBADF


def test_symlinks_followed_relative_and_absolute(env):
    vfs, t = env
    assert vfs.stat(t, b"/a/rel").st_size == 4
    assert vfs.stat(t, b"/abs/file").st_size == 4
    assert vfs.stat(t, b"/a/rel", follow=False).st_mode & 0o170000 == 0o120000
    assert vfs.readlink(t, b"/a/rel") == b"b/file"
    assert err(vfs.stat, t, b"/dangling") == errno.ENOENT
    assert vfs.stat(t, b"/dangling", follow=False).st_size == len(b"nowhere")


def test_symlink_loop_gives_eloop(env):
    vfs, t = env
    vfs.symlink(t, b"/loop2", b"/loop1")
    vfs.symlink(t, b"/loop1", b"/loop2")
    assert err(vfs.stat, t, b"/loop1") == errno.ELOOP
    assert err(vfs.open, t, b"/loop1/x", O_RDONLY) == errno.ELOOP


def test_forty_links_allowed_forty_one_not(env):
    vfs, t = env
    vfs.symlink(t, b"/a/b/file", b"/l0")
    for i in range(1, 41):
        vfs.symlink(t, b"/l%d" % (i - 1), b"/l%d" % i)
    assert vfs.stat(t, b"/l39").st_size == 4     # 40 links followed
    assert err(vfs.stat, t, b"/l40") == errno.ELOOP


def test_o_nofollow(env):
    vfs, t = env
    assert err(vfs.open, t, b"/a/rel", O_RDONLY | os.O_NOFOLLOW) == errno.ELOOP
    # Only the last component is affected.
    f = vfs.open(t, b"/abs/file", O_RDONLY | os.O_NOFOLLOW)
    assert f.read(10) == b"data"
    # O_PATH|O_NOFOLLOW opens the link itself.
    p = vfs.open(t, b"/a/rel", os.O_PATH | os.O_NOFOLLOW)
    assert p.stat().st_mode & 0o170000 == 0o120000


def test_trailing_slash_rules(env):
    vfs, t = env
    assert err(vfs.stat, t, b"/a/b/file/") == errno.ENOTDIR
    assert vfs.stat(t, b"/a/b/").st_mode & 0o170000 == 0o040000
    assert vfs.stat(t, b"/abs/").st_mode & 0o170000 == 0o040000   # followed
    assert err(vfs.open, t, b"/a/new/", O_CREAT | O_RDWR, 0o644) == errno.EISDIR
    vfs.mkdir(t, b"/a/newdir/", 0o755)
    assert err(vfs.unlink, t, b"/a/b/file/") == errno.ENOTDIR


def test_enotdir_through_file(env):
    vfs, t = env
    assert err(vfs.stat, t, b"/a/b/file/x") == errno.ENOTDIR
    assert err(vfs.open, t, b"/a/b/file/x", O_CREAT | O_RDWR) == errno.ENOTDIR


def test_enametoolong(env):
    vfs, t = env
    assert err(vfs.stat, t, b"/" + b"x" * 256) == errno.ENAMETOOLONG
    assert err(vfs.stat, t, b"/a/" + b"x" * 256 + b"/y") == errno.ENAMETOOLONG
    assert err(vfs.stat, t, b"/a" * 2048) == errno.ENAMETOOLONG
    assert err(vfs.stat, t, b"/" + b"x" * 255) == errno.ENOENT      # 255 is allowed
    vfs.mkdir(t, b"/" + b"x" * 255, 0o755)


def test_empty_path_is_enoent(env):
    vfs, t = env
    assert err(vfs.stat, t, b"") == errno.ENOENT
    assert err(vfs.open, t, b"", O_RDONLY) == errno.ENOENT


def test_dotdot_crosses_mount_points(env):
    vfs, t = env
    assert vfs.stat(t, b"/proc/..").st_ino == vfs.stat(t, b"/").st_ino
    assert vfs.stat(t, b"/dev/shm/../null").st_mode & 0o170000 == 0o020000
    t.fs.cwd = vfs.resolve(t, b"/tmp")
    assert vfs.stat(t, b"../a/b/file").st_size == 4


def test_chroot_like_root_bounds_dotdot(env):
    vfs, t = env
    t.fs.root = vfs.resolve(t, b"/a")
    assert vfs.stat(t, b"/b/file").st_size == 4
    assert vfs.stat(t, b"/../../b/file").st_size == 4


def test_path_of_open_file_and_deleted(env):
    vfs, t = env
    f = vfs.open(t, b"/abs/file", O_RDONLY)
    assert f.path() == b"/a/b/file"
    g = vfs.open(t, b"/tmp/x", O_CREAT | O_RDWR, 0o600)
    assert g.path() == b"/tmp/x"
    vfs.unlink(t, b"/tmp/x")
    assert g.path() == b"/tmp/x (deleted)"
    assert g.write(b"still works") == 11


def test_open_creat_through_dangling_symlink_creates_target(env):
    vfs, t = env
    vfs.symlink(t, b"/a/created", b"/tolink")
    f = vfs.open(t, b"/tolink", O_CREAT | O_RDWR, 0o600)
    f.write(b"x")
    assert vfs.stat(t, b"/a/created").st_size == 1
    assert err(vfs.open, t, b"/tolink", O_CREAT | os.O_EXCL | O_RDWR) == errno.EEXIST


def test_permission_denied_for_non_root():
    from types import SimpleNamespace
    user = SimpleNamespace(uid=1000, gid=1000, euid=1000, egid=1000, suid=1000, sgid=1000,
                           groups=())
    k, vfs, t = make_env(creds=user)
    root = SimpleNamespace(uid=0, gid=0, euid=0, egid=0, suid=0, sgid=0, groups=())
    t.creds = root
    vfs.mkdir(t, b"/secret", 0o700)
    vfs.open(t, b"/secret/f", O_CREAT | O_RDWR, 0o600)
    vfs.open(t, b"/ro", O_CREAT | O_RDWR, 0o644)
    t.creds = user
    assert err(vfs.stat, t, b"/secret/f") == errno.EACCES
    assert err(vfs.open, t, b"/ro", O_RDWR) == errno.EACCES
    assert vfs.open(t, b"/ro", O_RDONLY).read(1) == b""
    assert err(vfs.mkdir, t, b"/secret/d", 0o755) == errno.EACCES


def test_capabilities_and_fsuid_decide_access():
    """Credentials as the lead's Credentials has them: fsuid and capability bits."""
    from types import SimpleNamespace
    ALL = (1 << 41) - 1

    def creds(uid, caps, fsuid=None):
        fsuid = uid if fsuid is None else fsuid
        return SimpleNamespace(uid=uid, gid=uid, euid=uid, egid=uid, suid=uid, sgid=uid,
                               fsuid=fsuid, fsgid=fsuid, groups=[], cap_effective=caps)
    k, vfs, t = make_env()
    vfs.mkdir(t, b"/locked", 0o700)
    vfs.open(t, b"/locked/f", O_CREAT | O_RDWR, 0o600)
    vfs.setattr(t, b"/locked/f", uid=1234, gid=1234)
    vfs.setattr(t, b"/locked", uid=1234, gid=1234)
    t.creds = creds(0, 0)                                  # root without capabilities
    assert err(vfs.stat, t, b"/locked/f") == errno.EACCES
    t.creds = creds(0, 1 << 2)                             # CAP_DAC_READ_SEARCH only
    assert vfs.open(t, b"/locked/f", O_RDONLY).read(1) == b""
    assert err(vfs.open, t, b"/locked/f", O_RDWR) == errno.EACCES
    t.creds = creds(1000, 0, fsuid=1234)                   # the fsuid owns them
    assert vfs.open(t, b"/locked/f", O_RDWR) is not None
    t.creds = creds(0, ALL)
    f = vfs.open(t, b"/tmp/mine", O_CREAT | O_RDWR, 0o644)
    t.creds = creds(0, ALL, fsuid=42)
    vfs.open(t, b"/tmp/theirs", O_CREAT | O_RDWR, 0o644)
    assert vfs.stat(t, b"/tmp/theirs").st_uid == 42       # new files belong to the fsuid
    assert f.stat().st_uid == 0
