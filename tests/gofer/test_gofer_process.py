"""The real Gofer process, ``python -m pyvisor.gofer``, and interop with diod."""

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from pyvisor.gofer import p9
from pyvisor.gofer.client import GoferClient, GoferError

from conftest import BASE_ENV

# The Gofer these tests import (installed, or a source tree's), run from "/".
ENV = dict(os.environ, **{k: v for k, v in BASE_ENV.items() if k == "PYTHONPATH"})
GOFER = [sys.executable, "-m", "pyvisor.gofer"]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_bytes(b"sandbox\n")
    os.symlink("../../outside", root / "etc" / "out")
    (tmp_path / "outside").write_bytes(b"secret")
    return root


def spawn(root):
    """Starts the Gofer process on one end of a socketpair; returns (proc, our end)."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(GOFER + ["--fd", str(theirs.fileno()), "--root", str(root)],
                            pass_fds=[theirs.fileno()], env=ENV, cwd="/",
                            stderr=subprocess.PIPE)
    theirs.close()
    return proc, ours


def _gone(pid, timeout=10.0):
    """True once pid no longer runs (exited, or a zombie awaiting its reaper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_process_serves_and_exits_on_eof(tree):
    proc, sock = spawn(tree)
    try:
        c = GoferClient(sock)
        root = c.attach()
        host = c.walk(root, [b"etc", b"hostname"])
        assert c.getattr(host).size == 8
        f = c.lopen(host, os.O_RDONLY)
        assert f.hostfd is not None and os.pread(f.hostfd, 100, 0) == b"sandbox\n"
        assert c.read(f, 0, 100) == b"sandbox\n"
        c.clunk(f)
        d = c.lopen(c.walk(root, [b"etc"]), os.O_RDONLY)
        assert sorted(e.name for e in c.readdir(d, 0, 4096)) == [b".", b"..", b"hostname", b"out"]
        out = c.walk(root, [b"etc", b"out"])
        assert out.qid.type == p9.QTSYMLINK and c.readlink(out) == b"../../outside"
        assert pytest.raises(GoferError, c.walk, root, [b"..", b"outside"]).value.errno == errno.ENOENT
        assert pytest.raises(GoferError, c.lopen, host, os.O_RDWR).value.errno == errno.EROFS
        assert c.statfs(root).namelen > 0
    finally:
        sock.close()
    assert proc.wait(timeout=10) == 0
    assert proc.stderr.read() == b""


def test_process_ignores_sigint(tree):
    proc, sock = spawn(tree)
    try:
        c = GoferClient(sock)
        root = c.attach()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        assert proc.poll() is None
        assert c.getattr(root).ino == os.stat(tree).st_ino
        c.close()
        assert proc.wait(timeout=10) == 0
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_process_exits_on_garbage(tree):
    proc, sock = spawn(tree)
    try:
        sock.sendall(b"\x02\x00\x00\x00garbage")
        assert proc.wait(timeout=10) == 0
        assert b"closing connection" in proc.stderr.read()
    finally:
        sock.close()


def test_process_dies_with_its_parent(tree):
    """PR_SET_PDEATHSIG: the Gofer dies with its parent even while its socket stays open."""
    ours, theirs = socket.socketpair()
    launcher = (
        "import subprocess, sys\n"
        "p = subprocess.Popen(sys.argv[1:], pass_fds=[%d])\n"
        "print(p.pid, flush=True)\n"
        "sys.stdin.read()\n" % theirs.fileno()
    )
    args = GOFER + ["--fd", str(theirs.fileno()), "--root", str(tree)]
    parent = subprocess.Popen([sys.executable, "-c", launcher] + args, pass_fds=[theirs.fileno()],
                              env=ENV, cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    theirs.close()
    try:
        gofer_pid = int(parent.stdout.readline())
        GoferClient(ours).attach()          # it is up and serving
        parent.kill()
        parent.wait()
        # `ours` is still open, so no EOF: only the death signal can end it.
        assert _gone(gofer_pid)
    finally:
        ours.close()
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_bad_arguments_fail(tree):
    proc = subprocess.run(GOFER + ["--root", str(tree)], env=ENV, cwd="/", capture_output=True)
    assert proc.returncode == 2 and b"--fd" in proc.stderr


@pytest.mark.skipif(shutil.which("diod") is None, reason="diod is not installed")
def test_client_against_diod(tree):
    """Interop: our client against diod serving the same tree (no fd donation there)."""
    ours, theirs = socket.socketpair()
    fd = theirs.fileno()
    proc = subprocess.Popen([shutil.which("diod"), "-f", "-n", "-e", str(tree),
                             "-r", str(fd), "-w", str(fd)], pass_fds=[fd])
    theirs.close()
    try:
        c = GoferClient(ours)
        root = c.attach(os.fsencode(tree))     # diod names the export
        host = c.walk(root, [b"etc", b"hostname"])
        assert c.getattr(host).size == 8
        f = c.lopen(host, os.O_RDONLY)
        assert c.read(f, 0, 100) == b"sandbox\n"
        c.clunk(f)
    finally:
        ours.close()
        proc.terminate()
        proc.wait(timeout=10)
