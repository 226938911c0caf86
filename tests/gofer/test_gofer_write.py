"""The 9P2000.L write path, client-level, against our Gofer and against diod.

Each test runs the same client calls against both servers serving a fresh
host directory, then checks what the host sees. Our Gofer serves it as a
volume (``--mount vol=DIR``) beside a read-only root, under its seccomp
filter and chroot; diod serves it as its export.
"""

import errno
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys

import pytest

from pyvisor.gofer import p9
from pyvisor.gofer.client import GoferClient, GoferError

from conftest import BASE_ENV

ENV = dict(os.environ, **{k: v for k, v in BASE_ENV.items() if k == "PYTHONPATH"})
GOFER = [sys.executable, "-m", "pyvisor.gofer"]
SERVERS = ["pyvisor", pytest.param("diod", marks=pytest.mark.skipif(
    shutil.which("diod") is None, reason="diod is not installed"))]


class Served:
    """A client attached to the served volume; `host` is the directory."""

    def __init__(self, kind, host, root_dir, read_only=False):
        self.kind = kind
        self.host = host
        ours, theirs = socket.socketpair()
        fd = theirs.fileno()
        if kind == "pyvisor":
            cmd = GOFER + ["--fd", str(fd), "--root", str(root_dir),
                           "--mount", "vol=%s%s" % (host, ":ro" if read_only else "")]
            aname = b"vol"
        else:
            cmd = [shutil.which("diod"), "-f", "-n", "-e", str(host), "-r", str(fd), "-w", str(fd)]
            aname = os.fsencode(host)
        self.proc = subprocess.Popen(cmd, pass_fds=[fd], env=ENV, cwd="/", stderr=subprocess.PIPE)
        theirs.close()
        self.sock = ours
        self.c = GoferClient(ours)
        self.root = self.c.attach(aname)

    def close(self):
        self.sock.close()
        if self.kind == "diod":
            self.proc.terminate()
        self.proc.wait(timeout=10)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        if self.kind == "pyvisor":
            assert err == b"", err


@pytest.fixture(params=SERVERS)
def served(request, tmp_path):
    host = tmp_path / "vol"
    host.mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").write_bytes(b"secret")
    s = Served(request.param, host, tmp_path / "root")
    yield s
    s.close()


def _errno(fn, *args, **kw):
    with pytest.raises(GoferError) as info:
        fn(*args, **kw)
    return info.value.errno


def test_create_write_read_and_the_host_sees_it(served):
    c, host = served.c, served.host
    f = c.lcreate(served.root, b"a.txt", os.O_RDWR, 0o640)
    assert f.node.qid.type == p9.QTFILE
    assert c.write(f, 0, b"hello ") == 6
    assert c.write(f, 6, b"world\n" * 1000) == 6000
    c.fsync(f)
    assert c.read(f, 0, 11) == b"hello world"
    c.clunk(f)
    assert (host / "a.txt").read_bytes() == b"hello " + b"world\n" * 1000
    assert stat.S_IMODE(os.stat(host / "a.txt").st_mode) == 0o640 & ~_umask_of(served)
    # Create again: O_EXCL on the host.
    assert _errno(c.lcreate, served.root, b"a.txt", os.O_RDWR | os.O_EXCL, 0o644) == errno.EEXIST
    # Opened again for writing with O_TRUNC.
    node = c.walk(served.root, [b"a.txt"])
    g = c.lopen(node, os.O_WRONLY | os.O_TRUNC)
    assert c.write(g, 0, b"new") == 3
    c.clunk(g)
    c.clunk(node)
    assert (host / "a.txt").read_bytes() == b"new"


def _umask_of(served):
    # diod applies the process umask it inherited; our Gofer creates with the mode asked.
    if served.kind == "pyvisor":
        return 0
    um = os.umask(0)
    os.umask(um)
    return um


def test_twrite_without_donated_fd(served):
    """The same writes as 9P messages (no fd donation): Twrite in iounit chunks."""
    c = served.c
    f = c.lcreate(served.root, b"w", os.O_WRONLY, 0o600)
    hostfd, f.hostfd = f.hostfd, None
    if hostfd is not None:
        os.close(hostfd)
    data = os.urandom(3 * f.iounit + 17)
    assert c.write(f, 0, data) == len(data)
    c.clunk(f)
    assert (served.host / "w").read_bytes() == data


def test_mkdir_mknod_symlink_link(served):
    c, host = served.c, served.host
    qid = c.mkdir(served.root, b"d", 0o755)
    assert qid.type == p9.QTDIR and (host / "d").is_dir()
    assert _errno(c.mkdir, served.root, b"d", 0o755) == errno.EEXIST
    c.mknod(served.root, b"fifo", stat.S_IFIFO | 0o600)
    assert stat.S_ISFIFO(os.lstat(host / "fifo").st_mode)
    c.mknod(served.root, b"plain", stat.S_IFREG | 0o600)
    assert stat.S_ISREG(os.lstat(host / "plain").st_mode)
    q = c.symlink(served.root, b"ln", b"/etc/passwd")
    assert q.type == p9.QTSYMLINK and os.readlink(host / "ln") == "/etc/passwd"
    assert c.readlink(c.walk(served.root, [b"ln"])) == b"/etc/passwd"
    (host / "f").write_bytes(b"x")
    node = c.walk(served.root, [b"f"])
    d = c.walk(served.root, [b"d"])
    c.link(d, node, b"f2")
    assert os.stat(host / "f").st_nlink == 2 and (host / "d" / "f2").read_bytes() == b"x"
    assert c.getattr(node).nlink == 2
    assert _errno(c.link, d, d, b"dir2") == errno.EPERM      # no hard links to directories


def test_rename_and_unlink(served):
    c, host = served.c, served.host
    (host / "a").write_bytes(b"1")
    (host / "sub").mkdir()
    (host / "sub" / "inner").write_bytes(b"2")
    sub = c.walk(served.root, [b"sub"])
    c.renameat(served.root, b"a", sub, b"b")
    assert not (host / "a").exists() and (host / "sub" / "b").read_bytes() == b"1"
    assert _errno(c.renameat, served.root, b"missing", sub, b"x") == errno.ENOENT
    assert _errno(c.unlinkat, served.root, b"sub", p9.AT_REMOVEDIR) == errno.ENOTEMPTY
    assert _errno(c.unlinkat, served.root, b"sub", 0) in (errno.EISDIR, errno.EPERM)
    c.unlinkat(sub, b"b", 0)
    c.unlinkat(sub, b"inner", 0)
    c.clunk(sub)
    c.unlinkat(served.root, b"sub", p9.AT_REMOVEDIR)
    assert os.listdir(host) == []


def test_setattr_mode_size_times(served):
    c, host = served.c, served.host
    (host / "f").write_bytes(b"0123456789")
    node = c.walk(served.root, [b"f"])
    c.setattr(node, p9.SETATTR_MODE, mode=0o604)
    assert stat.S_IMODE(os.stat(host / "f").st_mode) == 0o604
    c.setattr(node, p9.SETATTR_SIZE, size=4)
    assert (host / "f").read_bytes() == b"0123"
    c.setattr(node, p9.SETATTR_SIZE, size=8)
    assert (host / "f").read_bytes() == b"0123\0\0\0\0"
    both = p9.SETATTR_ATIME | p9.SETATTR_ATIME_SET | p9.SETATTR_MTIME | p9.SETATTR_MTIME_SET
    c.setattr(node, both, atime_sec=1000, atime_nsec=5, mtime_sec=2000, mtime_nsec=7)
    st = os.stat(host / "f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (1000 * 10**9 + 5, 2000 * 10**9 + 7)
    # mtime now, atime omitted.
    c.setattr(node, p9.SETATTR_MTIME)
    st = os.stat(host / "f")
    assert st.st_atime_ns == 1000 * 10**9 + 5 and st.st_mtime_ns > 2000 * 10**9
    a = c.getattr(node)
    assert a.size == 8 and a.mode & 0o7777 == 0o604
    # Ownership as it is: a no-op chown is allowed.
    c.setattr(node, p9.SETATTR_UID | p9.SETATTR_GID, uid=a.uid, gid=a.gid)
    d = c.walk(served.root, [])
    assert _errno(c.setattr, d, p9.SETATTR_SIZE, size=0) == errno.EISDIR
    assert c.statfs(served.root).namelen == 255


LONG = b"n" * 255


@pytest.mark.parametrize("name", [b"new\nline", b"bad\xff\xfeutf8", LONG, b" lead space", b"-"])
def test_odd_names_round_trip(served, name):
    c, host = served.c, served.host
    f = c.lcreate(served.root, name, os.O_WRONLY, 0o600)
    c.write(f, 0, b"x")
    c.clunk(f)
    assert os.listdir(os.fsencode(host)) == [name]
    d = c.lopen(c.walk(served.root, []), os.O_RDONLY)
    assert name in [e.name for e in c.readdir(d, 0, 1 << 16)]
    c.clunk(d)
    c.renameat(served.root, name, served.root, name[:-1] + b"2")
    c.unlinkat(served.root, name[:-1] + b"2", 0)
    assert os.listdir(host) == []


def test_name_too_long(served):
    assert _errno(served.c.lcreate, served.root, b"n" * 256, os.O_RDWR, 0o600) == errno.ENAMETOOLONG
    assert _errno(served.c.mkdir, served.root, b"n" * 256, 0o700) == errno.ENAMETOOLONG


# -- our Gofer only: confinement and refusals -------------------------------------


@pytest.fixture
def ours(tmp_path):
    host = tmp_path / "vol"
    host.mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "file").write_bytes(b"secret")
    s = Served("pyvisor", host, tmp_path / "root")
    yield s
    s.close()


def test_names_that_are_not_one_component(ours):
    c = ours.c
    for bad in (b"..", b".", b"a/b", b""):
        assert _errno(c.mkdir, ours.root, bad, 0o700) == errno.EINVAL
        assert _errno(c.lcreate, ours.root, bad, os.O_RDWR, 0o600) == errno.EINVAL
        assert _errno(c.unlinkat, ours.root, bad, 0) == errno.EINVAL
        assert _errno(c.symlink, ours.root, bad, b"t") == errno.EINVAL
    assert os.listdir(ours.host) == []
    assert _errno(c.unlinkat, ours.root, b"x", 0x1) == errno.EINVAL


def test_devices_are_refused(ours):
    for kind in (stat.S_IFCHR, stat.S_IFBLK):
        assert _errno(ours.c.mknod, ours.root, b"dev", kind | 0o600, 1, 3) == errno.EPERM
    assert _errno(ours.c.mknod, ours.root, b"dir", stat.S_IFDIR | 0o700) == errno.EINVAL
    assert os.listdir(ours.host) == []


def test_symlinks_out_of_the_volume_are_never_followed(ours, tmp_path):
    c, host = ours.c, ours.host
    outside = tmp_path / "outside"
    os.symlink(str(outside), host / "abs")                     # absolute
    os.symlink("../outside", host / "rel")                     # a `..` chain
    os.symlink("../../../../../../" + str(outside)[1:], host / "deep")
    for link in (b"abs", b"rel", b"deep"):
        node = c.walk(c.walk(ours.root, []), [link])
        assert node.qid.type == p9.QTSYMLINK
        # Creating, removing or renaming *through* the link: the link is not a directory.
        for op in (lambda: c.lcreate(node, b"file", os.O_RDWR, 0o600),
                   lambda: c.mkdir(node, b"d", 0o700),
                   lambda: c.unlinkat(node, b"file", 0),
                   lambda: c.renameat(node, b"file", ours.root, b"stolen"),
                   lambda: c.symlink(node, b"s", b"x")):
            assert _errno(op) == errno.ENOTDIR
        # Walking through it is refused too.
        assert _errno(c.walk, ours.root, [link, b"file"]) in (errno.ENOENT, errno.ENOTDIR)
        # Setting attributes acts on the link itself, never its target.
        assert _errno(c.setattr, node, p9.SETATTR_SIZE, size=0) == errno.EINVAL
        assert _errno(c.setattr, node, p9.SETATTR_MODE, mode=0o777) == errno.EOPNOTSUPP
        # A hard link of the symlink is a link to the symlink.
        c.link(ours.root, node, link + b".hard")
        assert os.readlink(host / (link.decode() + ".hard")) == os.readlink(host / link.decode())
        # Tlcreate over an existing symlink name does not follow it.
        assert _errno(c.lcreate, ours.root, link, os.O_RDWR, 0o600) == errno.EEXIST
        # Renaming onto the link replaces the link, not its target.
        (host / "victim").write_bytes(b"v")
        c.renameat(ours.root, b"victim", ours.root, link)
        assert (host / link.decode()).read_bytes() == b"v"
    assert (outside / "file").read_bytes() == b"secret"
    assert sorted(os.listdir(outside)) == ["file"]


def test_read_only_mount_refuses_every_write(tmp_path):
    host = tmp_path / "vol"
    host.mkdir()
    (host / "f").write_bytes(b"keep")
    (host / "d").mkdir()
    (tmp_path / "root").mkdir()
    s = Served("pyvisor", host, tmp_path / "root", read_only=True)
    try:
        c, root = s.c, s.root
        f = c.walk(root, [b"f"])
        d = c.walk(root, [b"d"])
        for op in (lambda: c.lcreate(root, b"n", os.O_RDWR, 0o600),
                   lambda: c.mkdir(root, b"n", 0o700),
                   lambda: c.mknod(root, b"n", stat.S_IFIFO | 0o600),
                   lambda: c.symlink(root, b"n", b"t"),
                   lambda: c.link(root, f, b"n"),
                   lambda: c.renameat(root, b"f", root, b"n"),
                   lambda: c.unlinkat(root, b"f", 0),
                   lambda: c.unlinkat(root, b"d", p9.AT_REMOVEDIR),
                   lambda: c.setattr(f, p9.SETATTR_MODE, mode=0o777),
                   lambda: c.setattr(f, p9.SETATTR_SIZE, size=0),
                   lambda: c.setattr(f, p9.SETATTR_MTIME),
                   lambda: c.lopen(f, os.O_WRONLY),
                   lambda: c.lopen(f, os.O_RDONLY | os.O_TRUNC)):
            assert _errno(op) == errno.EROFS
        o = c.lopen(f, os.O_RDONLY)
        assert c.read(o, 0, 10) == b"keep"
        assert _errno(c.write, o, 0, b"x") == errno.EBADF
        c.clunk(o)
        assert sorted(os.listdir(host)) == ["d", "f"] and (host / "f").read_bytes() == b"keep"
    finally:
        s.close()


def test_root_stays_read_only_beside_a_volume(tmp_path):
    host = tmp_path / "vol"
    host.mkdir()
    (tmp_path / "root").mkdir()
    s = Served("pyvisor", host, tmp_path / "root")
    try:
        root = s.c.attach(b"")
        assert _errno(s.c.mkdir, root, b"x", 0o700) == errno.EROFS
        assert _errno(s.c.attach, b"nosuch") == errno.ENOENT
        # A volume and the root are different trees: no link or rename across.
        f = s.c.lcreate(s.root, b"f", os.O_RDWR, 0o600)
        s.c.clunk(f)
        assert os.listdir(tmp_path / "root") == []
    finally:
        s.close()


def test_gofer_mount_option_is_checked(tmp_path):
    for spec in ("novalue", "=dir", "x="):
        proc = subprocess.run(GOFER + ["--fd", "0", "--root", str(tmp_path), "--mount", spec],
                              env=ENV, cwd="/", capture_output=True)
        assert proc.returncode == 2 and b"--mount" in proc.stderr


def test_write_requests_from_random_input_never_crash_the_server(tmp_path, capfd):
    """Random bytes for every write-path request decode or are refused
    (RemoteProtocolError, nothing else); random well-formed requests (fids
    that exist or not, names good and bad, any mode, flags and size) get a
    reply from the server, never an exception; nothing outside the volume
    changes."""
    import random

    from pyvisor.gofer.server import GoferServer
    host = tmp_path / "vol"
    host.mkdir()
    (host / "f").write_bytes(b"x")
    (tmp_path / "root").mkdir()
    rng = random.Random(13)
    types = [p9.Tlcreate, p9.Tsymlink, p9.Tmknod, p9.Tsetattr, p9.Tfsync, p9.Tlink,
             p9.Tmkdir, p9.Trenameat, p9.Tunlinkat, p9.Trename, p9.Tremove, p9.Twrite]
    for _ in range(3000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        frame = struct.pack("<IBH", 7 + len(body), rng.choice(types).TYPE, 5) + body
        try:
            p9.decode(frame, p9.REQUESTS)
        except p9.RemoteProtocolError:
            pass

    server = GoferServer(str(tmp_path / "root"), mounts={b"vol": (str(host), False)})
    server.handle(p9.Tversion(p9.NOTAG, 65536, p9.VERSION))
    names = [b"f", b"g", b"d", b"..", b".", b"", b"a/b", b"n" * 256, b"\xff", b"l"]
    u32 = lambda: rng.choice((0, 1, 0o777, 0o10644, 0o20644, 0o40755, 0o140755, 0xFFFFFFFF))
    u64 = lambda: rng.choice((0, 3, 1 << 62, (1 << 64) - 1))
    fid = lambda: rng.randrange(4)
    makers = [
        lambda: p9.Tlcreate(5, fid(), rng.choice(names), u32(), u32(), 0),
        lambda: p9.Tsymlink(5, fid(), rng.choice(names), rng.choice(names), 0),
        lambda: p9.Tmknod(5, fid(), rng.choice(names), u32(), 1, 3, 0),
        lambda: p9.Tsetattr(5, fid(), u32() & 0x1FF, u32(), 0, 0, u64(), u64(), u64(), u64(), u64()),
        lambda: p9.Tfsync(5, fid(), rng.randrange(2)),
        lambda: p9.Tlink(5, fid(), fid(), rng.choice(names)),
        lambda: p9.Tmkdir(5, fid(), rng.choice(names), u32(), 0),
        lambda: p9.Trenameat(5, fid(), rng.choice(names), fid(), rng.choice(names)),
        lambda: p9.Tunlinkat(5, fid(), rng.choice(names), rng.choice((0, 0x200, 1))),
        lambda: p9.Twrite(5, fid(), u64(), b"data"),
        lambda: p9.Tlopen(5, fid(), u32()),
        lambda: p9.Tclunk(5, fid()),
        lambda: p9.Twalk(5, 0, rng.randrange(1, 4), (rng.choice(names),)),
        lambda: p9.Tattach(5, fid(), p9.NOFID, b"", b"vol", 0),
    ]
    for _ in range(3000):
        reply, fd = server.handle(rng.choice(makers)())
        assert p9.decode(reply).tag == 5
    server.close()
    assert "bug" not in capfd.readouterr().err          # no handler raised
    assert sorted(os.listdir(tmp_path)) == ["root", "vol"]
    assert os.listdir(tmp_path / "root") == []


def test_user_xattrs(served):
    c, host = served.c, served.host
    (host / "f").write_bytes(b"x")
    node = c.walk(served.root, [b"f"])
    c.setxattr(node, b"user.one", b"1")
    c.setxattr(node, b"user.big", bytes(range(256)) * 10)
    assert os.getxattr(host / "f", "user.one") == b"1"
    assert c.getxattr(node, b"user.big") == bytes(range(256)) * 10
    assert sorted(c.getxattr(node, b"").split(b"\0")[:-1]) == [b"user.big", b"user.one"]
    assert _errno(c.setxattr, node, b"user.one", b"2", os.XATTR_CREATE) == errno.EEXIST
    assert _errno(c.setxattr, node, b"user.new", b"2", os.XATTR_REPLACE) == errno.ENODATA
    c.removexattr(node, b"user.one")
    assert os.listxattr(host / "f") == ["user.big"]
    assert _errno(c.getxattr, node, b"user.one") == errno.ENODATA
    d = c.walk(served.root, [])
    c.setxattr(d, b"user.dir", b"d")
    assert os.getxattr(host, "user.dir") == b"d"


def test_xattrs_outside_user_namespace_and_on_read_only(ours, tmp_path):
    c = ours.c
    (ours.host / "f").write_bytes(b"x")
    node = c.walk(ours.root, [b"f"])
    assert _errno(c.setxattr, node, b"trusted.x", b"1") == errno.EOPNOTSUPP
    assert _errno(c.setxattr, node, b"security.x", b"1") == errno.EOPNOTSUPP
    assert _errno(c.getxattr, node, b"trusted.x") == errno.ENODATA
    assert _errno(c.getxattr, node, b"nonamespace") == errno.EOPNOTSUPP
    assert _errno(c.setxattr, node, b"user.x", b"v" * 65537) == errno.E2BIG
    os.symlink("f", ours.host / "l")
    assert _errno(c.setxattr, c.walk(ours.root, [b"l"]), b"user.x", b"1") == errno.EPERM
    assert os.listxattr(ours.host / "f") == []
    ro = Served("pyvisor", ours.host, tmp_path / "root", read_only=True)
    try:
        assert _errno(ro.c.setxattr, ro.c.walk(ro.root, [b"f"]), b"user.x", b"1") == errno.EROFS
    finally:
        ro.close()


def test_a_volume_removed_on_the_host_gives_enoent(served):
    """The host directory goes away under a running client: every call is
    an error (ENOENT, or ESTALE), never a hang or a file made elsewhere."""
    c, host = served.c, served.host
    sub = host / "sub"
    sub.mkdir()
    node = c.walk(served.root, [b"sub"])
    sub.rmdir()
    for op in (lambda: c.lcreate(node, b"f", os.O_RDWR, 0o600),
               lambda: c.mkdir(node, b"d", 0o700),
               lambda: c.walk(node, [b"x"])):
        assert _errno(op) in (errno.ENOENT, errno.ESTALE)
    assert os.listdir(host) == []


def _host_lock_holder(path, kind):
    """A host process holding a POSIX lock of `kind` on the whole file until
    its stdin closes; returns the Popen once the lock is held."""
    code = ("import fcntl, sys\nf = open(sys.argv[1], 'r+')\n"
            "fcntl.lockf(f, fcntl.LOCK_%s)\nprint('held', flush=True)\nsys.stdin.read()\n" % kind)
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"held\n"
    return p


def test_locks_conflict_with_a_host_process(ours):
    """N.B. ours only: diod grants a Tlock that a host process's lock holds."""
    c, host = ours.c, ours.host
    (host / "f").write_bytes(b"0123456789")
    f = c.lopen(c.walk(ours.root, [b"f"]), os.O_RDWR)
    assert c.getlock(f, p9.LOCK_WRLCK, 0, 0).type == p9.LOCK_UNLCK
    holder = _host_lock_holder(host / "f", "EX")
    try:
        assert c.lock(f, p9.LOCK_WRLCK, 0, 0) == p9.LOCK_BLOCKED
        assert c.lock(f, p9.LOCK_RDLCK, 2, 3) == p9.LOCK_BLOCKED
        g = c.getlock(f, p9.LOCK_RDLCK, 0, 0)
        assert g.type == p9.LOCK_WRLCK and g.start == 0
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert c.lock(f, p9.LOCK_WRLCK, 0, 0) == p9.LOCK_SUCCESS
    assert c.lock(f, p9.LOCK_UNLCK, 0, 0) == p9.LOCK_SUCCESS
    c.clunk(f)


def test_locks_of_two_fids_conflict(ours):
    """Two open fids are two lock owners (OFD locks), as two sandboxes would be."""
    c, host = ours.c, ours.host
    (host / "f").write_bytes(b"x" * 100)
    node = c.walk(ours.root, [b"f"])
    a, b = c.lopen(node, os.O_RDWR), c.lopen(node, os.O_RDWR)
    assert c.lock(a, p9.LOCK_WRLCK, 10, 10) == p9.LOCK_SUCCESS
    assert c.lock(b, p9.LOCK_WRLCK, 15, 1) == p9.LOCK_BLOCKED
    assert c.lock(b, p9.LOCK_WRLCK, 20, 0) == p9.LOCK_SUCCESS     # 20 to the end: no overlap
    g = c.getlock(b, p9.LOCK_RDLCK, 0, 0)
    assert (g.type, g.start, g.length) == (p9.LOCK_WRLCK, 10, 10)
    assert c.lock(a, p9.LOCK_RDLCK, 0, 0) == p9.LOCK_BLOCKED         # b holds 20..
    c.clunk(b)                                                      # closing drops b's locks
    assert c.lock(a, p9.LOCK_RDLCK, 0, 0) == p9.LOCK_SUCCESS
    assert _errno(c.lock, a, 7, 0, 0) == errno.EINVAL
    assert _errno(c.getlock, a, p9.LOCK_UNLCK, 0, 0) == errno.EINVAL
    d = c.walk(ours.root, [])
    assert _errno(c.lock, c.lopen(d, os.O_RDONLY), p9.LOCK_RDLCK, 0, 0) == errno.EBADF
    c.clunk(a)


def test_links_swapped_during_walks_never_lead_out(ours, tmp_path):
    """A host process swaps a directory in the volume with a symlink to a
    directory outside it, over and over, while the client walks through that
    name and creates files: every create lands in the volume or fails;
    nothing is ever made outside."""
    import threading
    import time

    c, host = ours.c, ours.host
    outside = tmp_path / "outside"
    (host / "d").mkdir()
    (host / "real").mkdir()
    stop = threading.Event()

    errors = []

    def swap():
        # d alternates between a directory of the volume and a symlink to
        # `outside`; a directory is moved aside (kept), a link replaced.
        i = 0
        try:
            while not stop.is_set():
                tmp = host / ("swap%d" % i)
                if (host / "d").is_symlink():
                    tmp.mkdir()
                    os.unlink(host / "d")
                    os.rename(tmp, host / "d")
                else:
                    os.rename(host / "d", host / ("old%d" % i))
                    os.symlink(str(outside), tmp)
                    os.rename(tmp, host / "d")
                i += 1
        except Exception as e:   # noqa: BLE001 - reported by the test below
            errors.append(e)

    t = threading.Thread(target=swap, daemon=True)
    t.start()
    made = refused = 0
    deadline = time.monotonic() + 2.0
    try:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            try:
                node = c.walk(ours.root, [b"d"])
            except GoferError:
                continue
            try:
                f = c.lcreate(node, b"f%d" % n, os.O_RDWR, 0o600)
                c.write(f, 0, b"x")
                c.clunk(f)
                made += 1
            except GoferError as e:
                assert e.errno in (errno.ENOTDIR, errno.ENOENT, errno.EEXIST), e
                refused += e.errno == errno.ENOTDIR     # the walk found the link
            c.clunk(node)
    finally:
        stop.set()
        t.join(timeout=10)
    assert errors == []
    assert sorted(os.listdir(outside)) == ["file"]        # untouched
    assert made > 0 and refused > 0                       # both states were met
