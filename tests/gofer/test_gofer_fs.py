"""The Gofer server and the Sentry's client, over a real socketpair.

Each test runs against a tree built in a temp directory, served either by
`server.run` in a thread or by the real ``python -m pyvisor.gofer`` process.
"""

import errno
import os
import socket
import stat
import threading

import pytest

from pyvisor.gofer import p9
from pyvisor.gofer.client import Attr, GoferClient, GoferError, Node, OpenFile
from pyvisor.gofer.server import GoferServer, run

BIG = bytes(range(256)) * 200          # 51200 bytes: several Treads at msize 8192
NENTRIES = 200


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("gofer")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not serve")
    root = base / "root"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "sub" / "deep.txt").write_bytes(b"deep")
    (root / "file.txt").write_bytes(b"hello, gofer\n")
    (root / "big.bin").write_bytes(BIG)
    (root / "many").mkdir()
    for i in range(NENTRIES):
        (root / "many" / ("entry-%03d" % i)).write_bytes(b"")
    os.symlink("../outside", root / "escape")
    os.symlink("/", root / "abs")
    os.symlink("file.txt", root / "rel")
    os.mkfifo(root / "fifo")
    return root


def _start_thread(root, **client_kw):
    a, b = socket.socketpair()
    server = GoferServer(str(root))
    thread = threading.Thread(target=run, args=(b, server), daemon=True)
    thread.start()
    return GoferClient(a, **client_kw), server, thread, b


@pytest.fixture
def served(tree):
    client, server, thread, peer = _start_thread(tree)
    yield client, server
    client.close()
    thread.join(10)
    assert not thread.is_alive()
    peer.close()


@pytest.fixture
def c(served):
    return served[0]


def _walk(c, path):
    return c.walk(c.attach(), path.encode().split(b"/") if path else [])


def _err(fn, *args):
    with pytest.raises(GoferError) as info:
        fn(*args)
    return info.value.errno


# -- attach, walk, getattr ---------------------------------------------------------

def test_attach_root(c, tree):
    root = c.attach()
    assert root.qid.type == p9.QTDIR
    assert root.qid.path == os.stat(tree).st_ino


def test_walk_single_and_multi(c, tree):
    root = c.attach()
    f = c.walk(root, [b"file.txt"])
    assert f.qid.path == os.stat(tree / "file.txt").st_ino and f.qid.type == p9.QTFILE
    deep = c.walk(root, [b"dir", b"sub", b"deep.txt"])
    assert deep.qid.path == os.stat(tree / "dir/sub/deep.txt").st_ino
    assert deep.fid not in (root.fid, f.fid)


def test_walk_empty_clones(c):
    root = c.attach()
    clone = c.walk(root, [])
    assert clone.fid != root.fid and clone.qid == root.qid
    c.clunk(clone)
    assert c.getattr(root).ino == root.qid.path


def test_walk_more_than_16_names(c, tree):
    names = [b"dir"] + [b"."] * 20 + [b"sub", b"..", b"sub", b"deep.txt"]
    node = c.walk(c.attach(), names)
    assert node.qid.path == os.stat(tree / "dir/sub/deep.txt").st_ino


def test_walk_missing_leaves_no_fid(served):
    c, server = served
    root = c.attach()
    before = (c.nfids, server.nfids)
    assert _err(c.walk, root, [b"nope"]) == errno.ENOENT
    with pytest.raises(GoferError) as info:
        c.walk(root, [b"dir", b"sub", b"nope"])
    assert info.value.errno == errno.ENOENT and len(info.value.qids) == 2
    # The failure in a second Twalk (after 16 names) clunks the live fid.
    assert _err(c.walk, root, [b"dir"] + [b"."] * 17 + [b"nope"]) == errno.ENOENT
    assert (c.nfids, server.nfids) == before


def test_walk_through_file_is_enotdir(c):
    assert _err(_walk, c, "file.txt/x") == errno.ENOTDIR
    assert _err(_walk, c, "dir/sub/deep.txt/x/y") == errno.ENOTDIR


@pytest.mark.parametrize("bad", [b"", b"a/b", b"/", b"nul\0"])
def test_walk_bad_names_einval(c, bad):
    assert _err(c.walk, c.attach(), [bad]) == errno.EINVAL


def test_dotdot_at_root_stays_at_root(c, tree):
    root = c.attach()
    up = c.walk(root, [b".."])
    assert up.qid == root.qid
    assert c.walk(root, [b"..", b"..", b"..", b"file.txt"]).qid.path == os.stat(tree / "file.txt").st_ino
    again = c.walk(root, [b"dir", b"..", b"..", b"..", b"dir"])
    assert again.qid.path == os.stat(tree / "dir").st_ino
    assert _err(c.walk, root, [b"..", b"outside"]) == errno.ENOENT


def test_getattr_matches_lstat(c, tree):
    root = c.attach()
    for name in ["file.txt", "big.bin", "dir", "escape", "fifo"]:
        a = c.getattr(c.walk(root, [name.encode()]))
        st = os.lstat(tree / name)
        assert isinstance(a, Attr)
        assert (a.mode, a.uid, a.gid, a.nlink, a.size, a.ino) == (
            st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_size, st.st_ino)
        assert (a.blksize, a.blocks, a.rdev) == (st.st_blksize, st.st_blocks, st.st_rdev)
        assert a.mtime == divmod(st.st_mtime_ns, 10**9)
        assert a.ctime == divmod(st.st_ctime_ns, 10**9)
        assert a.atime[1] < 10**9


def test_pre_epoch_times_come_back_negative(tmp_path):
    (tmp_path / "old").write_bytes(b"")
    os.utime(tmp_path / "old", ns=(-1_500_000_000, -2_000_000_000))
    client, _, thread, peer = _start_thread(tmp_path)
    try:
        a = client.getattr(client.walk(client.attach(), [b"old"]))
        assert a.atime == (-2, 500_000_000) and a.mtime == (-2, 0)
    finally:
        client.close()
        thread.join(10)
        peer.close()


def test_unknown_fid_is_ebadf(c):
    ghost = Node(4242, p9.Qid(0, 0, 0))
    assert _err(c.getattr, ghost) == errno.EBADF
    assert _err(c.walk, ghost, [b"x"]) == errno.EBADF
    assert _err(c.clunk, ghost) == errno.EBADF


# -- symlinks and confinement --------------------------------------------------------

def test_symlink_is_never_followed(c, tree):
    root = c.attach()
    link = c.walk(root, [b"escape"])
    assert link.qid.type == p9.QTSYMLINK
    assert link.qid.path == os.lstat(tree / "escape").st_ino
    assert c.readlink(link) == b"../outside"
    assert stat.S_ISLNK(c.getattr(link).mode)
    with pytest.raises(GoferError) as info:
        c.walk(root, [b"escape", b"secret"])
    assert info.value.errno == errno.ENOENT
    assert info.value.qids == (link.qid,)          # the caller sees where it stopped
    assert _err(c.walk, root, [b"abs", b"etc", b"passwd"]) == errno.ENOENT
    assert _err(c.lopen, link, os.O_RDONLY) == errno.ELOOP
    assert _err(c.lopen, c.walk(root, [b"rel"]), os.O_RDONLY) == errno.ELOOP


def test_readlink_of_non_link_is_einval(c):
    assert _err(c.readlink, _walk(c, "file.txt")) == errno.EINVAL
    assert _err(c.readlink, c.attach()) == errno.EINVAL


@pytest.mark.parametrize("flags", [os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC,
                                   os.O_WRONLY | os.O_CREAT])
def test_open_for_write_is_erofs(c, flags):
    assert _err(c.lopen, _walk(c, "file.txt"), flags) == errno.EROFS
    assert _err(c.lopen, _walk(c, "dir"), flags) == errno.EROFS


def test_fifo_is_refused_without_blocking(c):
    assert _err(c.lopen, _walk(c, "fifo"), os.O_RDONLY) == errno.EACCES


def test_o_directory_on_file_is_enotdir(c):
    assert _err(c.lopen, _walk(c, "file.txt"), os.O_RDONLY | os.O_DIRECTORY) == errno.ENOTDIR


# -- lopen and read -------------------------------------------------------------------

def test_lopen_donates_fd(served, tree):
    c, server = served
    node = _walk(c, "file.txt")
    f = c.lopen(node, os.O_RDONLY)
    assert isinstance(f, OpenFile) and f.node.fid != node.fid
    assert f.hostfd is not None
    assert os.pread(f.hostfd, 100, 0) == b"hello, gofer\n"
    assert os.get_inheritable(f.hostfd) is False
    assert os.fstat(f.hostfd).st_ino == os.stat(tree / "file.txt").st_ino
    assert c.read(f, 7, 100) == b"gofer\n"
    assert _err(c.read, f, -1, 10) == errno.EINVAL
    assert _err(c.read, f, 0, -1) == errno.EINVAL
    assert _err(c.read, f, 1 << 64, 10) == errno.EINVAL
    # The original node stays usable; clunk closes the donated fd.
    assert c.getattr(node).size == 13
    fds = server.nfids
    c.clunk(f)
    assert f.hostfd is None and server.nfids == fds - 1


def test_read_by_tread_loops_over_iounit(tree):
    client, server, thread, peer = _start_thread(tree, msize=8192, accept_fds=False)
    try:
        f = client.lopen(client.walk(client.attach(), [b"big.bin"]), os.O_RDONLY)
        assert f.hostfd is None and f.iounit == 8192 - p9.IOHDRSZ
        assert client.read(f, 0, len(BIG) + 1000) == BIG
        assert client.read(f, 1000, 20000) == BIG[1000:21000]
        assert client.read(f, len(BIG), 10) == b""
        assert client.read(f, 0, 0) == b""
        assert _err(client.read, f, 1 << 63, 10) == errno.EINVAL
        client.clunk(f)
        assert _err(client.read, f, 0, 10) == errno.EBADF
    finally:
        client.close()
        thread.join(10)
        peer.close()


def test_read_directory_is_eisdir(c):
    d = c.lopen(_walk(c, "dir"), os.O_RDONLY | os.O_DIRECTORY)
    assert d.hostfd is None                        # directories are never donated
    assert _err(c.read, d, 0, 10) == errno.EISDIR


def test_read_unopened_fid_is_ebadf(c):
    node = _walk(c, "file.txt")
    assert _err(c.read, OpenFile(node, 4096, None), 0, 10) == errno.EBADF


# -- readdir, statfs ------------------------------------------------------------------

def test_readdir_200_entries_in_several_calls(c, tree):
    d = c.lopen(_walk(c, "many"), os.O_RDONLY)
    names, offsets, calls, offset = [], [], 0, 0
    while True:
        batch = c.readdir(d, offset, 1024)
        calls += 1
        if not batch:
            break
        for qid, next_offset, dtype, name in batch:
            names.append(name)
            offsets.append(next_offset)
            if name not in (b".", b".."):
                assert dtype == 8 and qid.path == os.lstat(tree / "many" / name.decode()).st_ino
        offset = batch[-1][1]
    assert calls > 4
    assert names[:2] == [b".", b".."]
    assert sorted(names[2:]) == sorted(os.fsencode(n) for n in os.listdir(tree / "many"))
    assert len(names) == NENTRIES + 2
    assert offsets == sorted(set(offsets))
    # Offsets are stable: resuming in the middle gives the same continuation.
    middle = c.readdir(d, offsets[99], 1024)
    assert [e.name for e in middle] == names[100:100 + len(middle)]


def test_readdir_types_and_dotdot(c, tree):
    d = c.lopen(c.attach(), os.O_RDONLY)
    entries = {e.name: e for e in c.readdir(d, 0, 65536)}
    assert entries[b"dir"].type == 4 and entries[b"dir"].qid.type == p9.QTDIR
    assert entries[b"escape"].type == 10 and entries[b"escape"].qid.type == p9.QTSYMLINK
    assert entries[b"fifo"].type == 1
    assert entries[b"file.txt"].type == 8
    assert entries[b".."].qid.path == os.stat(tree).st_ino        # root's parent is root


def test_readdir_errors(c):
    d = c.lopen(_walk(c, "many"), os.O_RDONLY)
    assert _err(c.readdir, d, 0, 10) == errno.EINVAL             # no room for one entry
    f = c.lopen(_walk(c, "file.txt"), os.O_RDONLY)
    assert _err(c.readdir, f, 0, 4096) == errno.ENOTDIR
    assert _err(c.readdir, OpenFile(_walk(c, "many"), 4096, None), 0, 4096) == errno.EBADF
    assert c.readdir(d, 10**6, 4096) == []


def test_statfs(c, tree):
    s = c.statfs(c.attach())
    v = os.statvfs(tree)
    assert (s.bsize, s.blocks, s.namelen, s.files) == (v.f_bsize, v.f_blocks, v.f_namemax, v.f_files)
    assert s.type != 0


# -- concurrency -----------------------------------------------------------------------

def test_threads_share_one_client(served, tree):
    c, server = served
    root = c.attach()
    start = (c.nfids, server.nfids)
    want = os.stat(tree / "dir/sub/deep.txt").st_ino
    errors = []

    def worker():
        try:
            for _ in range(40):
                n = c.walk(root, [b"dir", b"sub", b"deep.txt"])
                assert c.getattr(n).ino == want
                c.clunk(n)
        except Exception as exc:      # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert (c.nfids, server.nfids) == start


# -- requests that do not wait for their own replies ---------------------------------

def test_walk_getattr_many_in_one_round_trip(served, tree):
    c, server = served
    root = c.attach()
    before = (c.nfids, server.nfids)
    names = [b"file.txt", b"nope", b"dir", b"rel", b"bad/name"]
    got = c.walk_getattr_many(root, names)
    for name, (node, attr) in ((b"file.txt", got[0]), (b"dir", got[2]), (b"rel", got[3])):
        st = os.lstat(tree / name.decode())
        assert (node.qid.path, attr.ino, attr.mode, attr.size) == (
            st.st_ino, st.st_ino, st.st_mode, st.st_size)
    assert isinstance(got[1], GoferError) and got[1].errno == errno.ENOENT
    assert isinstance(got[4], GoferError) and got[4].errno == errno.EINVAL
    assert (c.nfids, server.nfids) == (before[0] + 3, before[1] + 3)
    (node, attr), = c.walk_getattr_many(root, [b"big.bin"])
    assert attr.size == len(BIG)
    # A name too long for a message fails alone, without breaking the client.
    long_name, = c.walk_getattr_many(root, [b"x" * c.msize])
    assert isinstance(long_name, GoferError) and long_name.errno == errno.ENAMETOOLONG
    assert c.walk_getattr_many(root, []) == []
    for res in got[0], got[2], got[3]:
        c.clunk(res[0])
    c.clunk(node)
    assert (c.nfids, server.nfids) == before


def test_walk_getattr_each_walks_from_several_fids(served, tree):
    """Shared file access's revalidation: walks from several fids and
    getattrs of other fids, in one round trip; a walk stopped short is
    ENOENT with the qids walked, and leaves no fid."""
    c, server = served
    root = c.attach()
    d = c.walk(root, [b"dir"])
    before = (c.nfids, server.nfids)
    got, attrs = c.walk_getattr_each(
        [(root, (b"dir",)), (d, (b"sub",)), (root, (b"dir", b"sub", b"deep.txt")),
         (d, (b"nope", b"x")), (root, (b"dir", b"sub", b"nope")), (root, (b"file.txt", b"x"))],
        [d, root])
    for (node, attr, qids), path in zip(got, ("dir", "dir/sub", "dir/sub/deep.txt")):
        st = os.lstat(tree / path)
        assert (node.qid.path, attr.ino, attr.mode, attr.size) == (
            st.st_ino, st.st_ino, st.st_mode, st.st_size)
        assert qids[-1] == node.qid
    assert [q.path for q in got[2][2]] == [os.lstat(tree / p).st_ino
                                          for p in ("dir", "dir/sub", "dir/sub/deep.txt")]
    for bad in got[3:]:
        assert isinstance(bad, GoferError) and bad.errno == errno.ENOENT
    assert len(got[4].qids) == 2
    assert [a.ino for a in attrs] == [os.lstat(tree / "dir").st_ino, os.lstat(tree).st_ino]
    assert (c.nfids, server.nfids) == (before[0] + 3, before[1] + 3)
    for node, _attr, _qids in got[:3]:
        c.clunk(node)
    assert (c.nfids, server.nfids) == before
    c.clunk(d)


def test_clunk_later_goes_out_with_the_next_request(served):
    c, server = served
    root = c.attach()
    nodes = [c.walk(root, [b"file.txt"]) for _ in range(3)]
    held = server.nfids
    for node in nodes:
        c.clunk_later(node)
    assert server.nfids == held                  # nothing sent yet
    assert c.getattr(root).mode & 0o170000 == stat.S_IFDIR
    assert server.nfids == held - 3              # the clunks went first
    assert c.nfids == server.nfids               # and their replies were read
    node = c.walk(root, [b"file.txt"])
    f = c.lopen(node, os.O_RDONLY)
    fd = f.hostfd
    c.clunk_later(f)                             # a donated fd is closed at once
    assert f.hostfd is None
    with pytest.raises(OSError):
        os.fstat(fd)
    c.clunk(node)
    assert c.nfids == server.nfids == held - 3
