"""Bad input on both sides of the Gofer connection.

The server is driven message by message through `GoferServer.handle` and
over a raw socket with garbage; the client is run against a scripted
misbehaving server.
"""

import errno
import os
import socket
import struct
import threading

import pytest

from pyvisor.gofer import p9
from pyvisor.gofer.client import GoferClient, GoferError, OpenFile
from pyvisor.gofer.server import GoferServer, run


@pytest.fixture
def root(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "d").mkdir()
    return tmp_path


@pytest.fixture
def server(root):
    s = GoferServer(str(root))
    yield s
    s.close()


def ask(server, msg):
    reply, fd = server.handle(msg)
    (decoded,) = p9.Decoder(p9.REPLIES).feed(reply)
    return decoded, fd


def ecode(server, msg):
    reply, fd = ask(server, msg)
    assert type(reply) is p9.Rlerror and fd is None and reply.tag == msg.tag
    return reply.ecode


def attached(server):
    assert type(ask(server, p9.Tversion(p9.NOTAG, 8192, p9.VERSION))[0]) is p9.Rversion
    assert type(ask(server, p9.Tattach(1, 0, p9.NOFID, b"", b"", 0))[0]) is p9.Rattach
    return server


# -- the server, one message at a time -------------------------------------------------

def test_requests_before_version_are_eproto(server):
    assert ecode(server, p9.Tattach(1, 0, p9.NOFID, b"", b"", 0)) == errno.EPROTO


def test_version_negotiation(server):
    reply, _ = ask(server, p9.Tversion(p9.NOTAG, 1 << 30, p9.VERSION))
    assert reply == p9.Rversion(p9.NOTAG, p9.DEFAULT_MSIZE, p9.VERSION)
    reply, _ = ask(server, p9.Tversion(p9.NOTAG, 8192, b"9P2000.u"))
    assert reply.version == b"unknown"
    assert ecode(server, p9.Tclunk(1, 0)) == errno.EPROTO       # not versioned any more
    assert ecode(server, p9.Tversion(p9.NOTAG, 100, p9.VERSION)) == errno.EINVAL


def test_version_resets_the_session(server):
    attached(server)
    assert server.nfids == 1
    ask(server, p9.Tversion(p9.NOTAG, 8192, p9.VERSION))
    assert server.nfids == 0
    assert ecode(server, p9.Tgetattr(2, 0, p9.GETATTR_BASIC)) == errno.EBADF


def test_attach_errors(server):
    attached(server)
    assert ecode(server, p9.Tattach(2, 0, p9.NOFID, b"", b"", 0)) == errno.EINVAL     # fid in use
    assert ecode(server, p9.Tattach(3, 1, 7, b"", b"", 0)) == errno.EINVAL            # afid
    assert ecode(server, p9.Tattach(4, 1, p9.NOFID, b"", b"/etc", 0)) == errno.ENOENT
    assert ecode(server, p9.Tauth(5, 9, b"", b"", 0)) == errno.EOPNOTSUPP


def test_walk_errors(server):
    attached(server)
    assert type(ask(server, p9.Twalk(2, 0, 1, (b"f",)))[0]) is p9.Rwalk
    assert ecode(server, p9.Twalk(3, 0, 1, (b"d",))) == errno.EINVAL     # newfid in use
    assert type(ask(server, p9.Tlopen(4, 1, os.O_RDONLY))[0]) is p9.Rlopen
    assert ecode(server, p9.Twalk(5, 1, 2, ())) == errno.EBADF           # walk from an open fid
    assert ecode(server, p9.Tlopen(6, 1, os.O_RDONLY)) == errno.EBADF    # opened twice


@pytest.mark.parametrize("name", [b"x", b".", b".."])
def test_walk_from_a_file_is_enotdir(server, root, name):
    attached(server)
    ask(server, p9.Twalk(2, 0, 1, (b"f",)))
    assert ecode(server, p9.Twalk(3, 1, 2, (name,))) == errno.ENOTDIR


def test_walk_through_symlink_is_enotdir(server, root):
    os.symlink("d", root / "l")
    attached(server)
    ask(server, p9.Twalk(2, 0, 1, (b"l",)))
    assert ecode(server, p9.Twalk(3, 1, 2, (b"x",))) == errno.ENOTDIR
    assert ecode(server, p9.Twalk(4, 1, 2, (b"..",))) == errno.ENOTDIR


def test_partial_walk_reply(server):
    attached(server)
    reply, _ = ask(server, p9.Twalk(2, 0, 1, (b"d", b"missing", b"x")))
    assert type(reply) is p9.Rwalk and len(reply.qids) == 1
    assert server.nfids == 1                                             # newfid not created


def test_walk_in_place_replaces_fid(server, root):
    attached(server)
    reply, _ = ask(server, p9.Twalk(2, 0, 0, (b"d",)))
    assert reply.qids[0].path == os.stat(root / "d").st_ino
    got, _ = ask(server, p9.Tgetattr(3, 0, p9.GETATTR_BASIC))
    assert got.qid.path == os.stat(root / "d").st_ino and server.nfids == 1


def test_lopen_reply_carries_fd_for_files_only(server):
    attached(server)
    ask(server, p9.Twalk(2, 0, 1, (b"f",)))
    ask(server, p9.Twalk(3, 0, 2, (b"d",)))
    reply, fd = ask(server, p9.Tlopen(4, 1, os.O_RDONLY))
    assert reply.iounit == 8192 - p9.IOHDRSZ and os.pread(fd, 1, 0) == b"x"
    reply, fd = ask(server, p9.Tlopen(5, 2, os.O_RDONLY))
    assert type(reply) is p9.Rlopen and fd is None


def test_mutations_and_writes_are_refused(server):
    attached(server)
    assert ecode(server, p9.Tunsupported(2, 72)) == errno.EROFS     # Tmkdir
    assert ecode(server, p9.Tunsupported(3, 26)) == errno.EROFS     # Tsetattr
    assert ecode(server, p9.Tunsupported(4, 52)) == errno.EOPNOTSUPP
    assert ecode(server, p9.Twrite(5, 0, 0, b"x")) == errno.EBADF
    assert ecode(server, p9.Twrite(6, 77, 0, b"x")) == errno.EBADF


def test_flush_is_answered(server):
    attached(server)
    assert ask(server, p9.Tflush(9, 3))[0] == p9.Rflush(9)


def test_handler_bug_answers_eio_and_logs(root, capsys):
    class Buggy(GoferServer):
        def _getattr(self, m):
            raise RuntimeError("injected bug")

    s = attached(Buggy(str(root)))
    try:
        assert ecode(s, p9.Tgetattr(7, 0, p9.GETATTR_BASIC)) == errno.EIO
    finally:
        s.close()
    assert "injected bug" in capsys.readouterr().err


# -- the server loop against garbage -----------------------------------------------------

def _serve_thread(root):
    a, b = socket.socketpair()
    t = threading.Thread(target=run, args=(b, GoferServer(str(root))), daemon=True)
    t.start()
    return a, b, t


def _recv_all(sock):
    sock.settimeout(10)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("garbage", [
    b"\x03\x00\x00\x00",                            # size below the header
    b"\xff\xff\xff\x7f",                            # far beyond msize
    struct.pack("<IBH", 7, 99, 1),                  # unknown type
    struct.pack("<IBH", 9, 120, 1) + b"\x00\x00",   # truncated Tclunk
], ids=range(4))
def test_malformed_frame_closes_connection(root, garbage, capsys):
    a, b, t = _serve_thread(root)
    try:
        a.sendall(p9.encode(p9.Tversion(p9.NOTAG, 8192, p9.VERSION)) + garbage)
        replies = p9.Decoder(p9.REPLIES).feed(_recv_all(a))
        assert [type(r) for r in replies] == [p9.Rversion]
        t.join(10)
        assert not t.is_alive()
    finally:
        a.close()
        b.close()
    assert "closing connection" in capsys.readouterr().err


def test_pipelined_requests_are_all_answered(root):
    a, b, t = _serve_thread(root)
    try:
        a.sendall(b"".join(p9.encode(m) for m in [
            p9.Tversion(p9.NOTAG, 8192, p9.VERSION),
            p9.Tattach(1, 0, p9.NOFID, b"", b"", 0),
            p9.Twalk(2, 0, 1, (b"f",)),
            p9.Tclunk(3, 1),
        ]))
        a.shutdown(socket.SHUT_WR)
        replies = p9.Decoder(p9.REPLIES).feed(_recv_all(a))
        assert [type(r) for r in replies] == [p9.Rversion, p9.Rattach, p9.Rwalk, p9.Rclunk]
        assert [r.tag for r in replies] == [p9.NOTAG, 1, 2, 3]
        t.join(10)
        assert not t.is_alive()
    finally:
        a.close()
        b.close()


# -- the client against a misbehaving server -------------------------------------------

def _fake_server(script):
    """Answers Tversion properly, then each later request with script's next bytes.

    A None in the script closes the connection at that point.
    """
    a, b = socket.socketpair()

    def serve():
        dec = p9.Decoder(p9.REQUESTS)
        steps = list(script) + [None]
        with b:
            while True:
                data = b.recv(65536)
                if not data:
                    return
                for msg in dec.feed(data):
                    if type(msg) is p9.Tversion:
                        b.sendall(p9.encode(p9.Rversion(msg.tag, msg.msize, p9.VERSION)))
                    else:
                        b.sendall(steps.pop(0)(msg))
                if steps[0] is None:
                    return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return a, t


def _qid():
    return p9.Qid(p9.QTDIR, 0, 1)


@pytest.mark.parametrize("script", [
    [],                                                                         # EOF
    [lambda m: p9.encode(p9.Rattach(m.tag, _qid()))[:10]],                      # short, then EOF
    [lambda m: p9.encode(p9.Rattach(m.tag + 1, _qid()))],                       # wrong tag
    [lambda m: struct.pack("<IBH", 0x7FFFFFFF, 105, m.tag)],                    # oversize
    [lambda m: struct.pack("<IBH", 8, 77, m.tag) + b"\x00"],                    # unknown type
    [lambda m: p9.encode(p9.Rattach(m.tag, _qid())) + b"junk"],                 # unsolicited bytes
], ids=["eof", "short", "tag", "oversize", "type", "trailing"])
def test_client_broken_replies_give_eio_and_break_the_client(script):
    sock, t = _fake_server(script)
    client = GoferClient(sock, msize=8192)
    try:
        with pytest.raises(GoferError) as info:
            client.attach()
        assert info.value.errno == errno.EIO
        # The stream can no longer be trusted: later calls fail fast.
        with pytest.raises(GoferError) as info:
            client.attach()
        assert info.value.errno == errno.EIO
    finally:
        client.close()
        t.join(10)


def test_client_wrong_reply_type_and_bad_ecode():
    sock, t = _fake_server([
        lambda m: p9.encode(p9.Rclunk(m.tag)),            # Rclunk for Tattach
        lambda m: p9.encode(p9.Rlerror(m.tag, 0)),        # errno 0 is not an error
        lambda m: p9.encode(p9.Rlerror(m.tag, errno.EACCES)),
    ])
    client = GoferClient(sock, msize=8192)
    try:
        assert [pytest.raises(GoferError, client.attach).value.errno for _ in range(3)] == [
            errno.EIO, errno.EIO, errno.EACCES]
        assert client.nfids == 0
    finally:
        client.close()
        t.join(10)


def test_client_rwalk_with_extra_qids_is_eio():
    sock, t = _fake_server([
        lambda m: p9.encode(p9.Rattach(m.tag, _qid())),
        lambda m: p9.encode(p9.Rwalk(m.tag, (_qid(), _qid()))),   # 2 qids for 1 name
        lambda m: p9.encode(p9.Rclunk(m.tag)),                    # the client clunks to be safe
        lambda m: p9.encode(p9.Rreaddir(m.tag, b"\x00" * 5)),     # truncated dirent
    ])
    client = GoferClient(sock, msize=8192)
    try:
        root = client.attach()
        assert pytest.raises(GoferError, client.walk, root, [b"a"]).value.errno == errno.EIO
        assert client.nfids == 1
        f = OpenFile(root, 4096, None)
        assert pytest.raises(GoferError, client.readdir, f, 0, 4096).value.errno == errno.EIO
    finally:
        client.close()
        t.join(10)


def test_client_refuses_bad_version():
    a, b = socket.socketpair()

    def serve():
        with b:
            (msg,) = p9.Decoder(p9.REQUESTS).feed(b.recv(100))
            b.sendall(p9.encode(p9.Rversion(msg.tag, msg.msize, b"unknown")))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with pytest.raises(GoferError) as info:
        GoferClient(a, msize=8192)
    assert info.value.errno == errno.EPROTONOSUPPORT
    t.join(10)
    a.close()


def test_client_local_errors_do_not_break_it(root):
    a, b, t = _serve_thread(root)
    client = GoferClient(a)
    try:
        r = client.attach()
        assert pytest.raises(GoferError, client.walk, r, [b"x" * 70000]).value.errno == errno.ENAMETOOLONG
        assert client.walk(r, [b"f"]).qid.type == p9.QTFILE
    finally:
        client.close()
        t.join(10)
        b.close()


def test_client_pipelining_survives_a_server_that_reorders(root):
    """9P does not promise that requests sent together run in order (diod
    runs them on a thread pool). A proxy hands each burst of requests to
    the real server backwards: every Tgetattr of a pipelined walk_getattr_many
    then runs before its Twalk and fails, and so does the Tlopen of a clone:
    the client must ask again."""
    client_end, proxy_in = socket.socketpair()
    proxy_out, server_end = socket.socketpair()
    server = GoferServer(str(root))
    threads = [threading.Thread(target=run, args=(server_end, server), daemon=True)]

    def requests():
        dec = p9.Decoder(p9.REQUESTS)
        while data := proxy_in.recv(65536):
            proxy_out.sendall(b"".join(p9.encode(m) for m in reversed(dec.feed(data))))
        proxy_out.shutdown(socket.SHUT_WR)

    def replies():
        while data := proxy_out.recv(65536):
            proxy_in.sendall(data)
        proxy_in.shutdown(socket.SHUT_WR)

    threads += [threading.Thread(target=f, daemon=True) for f in (requests, replies)]
    for t in threads:
        t.start()
    client = GoferClient(client_end, msize=8192)
    try:
        top = client.attach()
        kept = client.walk(top, [b"f"])
        client.clunk_later(kept)                   # goes out, reversed, with the next burst
        asked_again = []
        plain = client._getattr_locked
        client._getattr_locked = lambda fid: asked_again.append(fid) or plain(fid)
        got = client.walk_getattr_many(top, [b"f", b"d", b"missing"])
        assert len(asked_again) == 2               # both names that exist
        (f, fattr), (d, dattr), missing = got
        assert (fattr.ino, fattr.size) == (os.stat(root / "f").st_ino, 1)
        assert dattr.ino == os.stat(root / "d").st_ino and dattr.mode & 0o170000 == 0o040000
        assert isinstance(missing, GoferError) and missing.errno == errno.ENOENT
        opened = client.lopen(f, os.O_RDONLY)      # its Tlopen runs before the clone exists
        assert client.read(opened, 0, 10) == b"x"
        client.clunk(opened)
        client.clunk(f)
        client.clunk(d)
        assert client.nfids == server.nfids == 1   # only the root is left
    finally:
        client.close()
        for t in threads:
            t.join(10)
        for s in (proxy_in, proxy_out, server_end):
            s.close()
