"""A real program, natively and in the sandbox: the same Python script runs
file-system calls and prints what each returned; the outputs must match.

Skipped when the sandbox cannot start here (no ptrace platform built).
"""

import os
import subprocess
import sys

import pytest

from conftest import BASE_ENV, PYVISOR

PYTHON3 = "/usr/bin/python3"

PROBE = '"""Run file-system calls and print results; the output must be the same natively and sandboxed."""\nimport errno, os, stat, sys\n\nbase = sys.argv[1]\nos.makedirs(base)\nout = []\ndef rec(label, fn, *a, **kw):\n    try:\n        r = fn(*a, **kw)\n    except OSError as e:\n        r = "E" + errno.errorcode[e.errno]\n    out.append("%s: %r" % (label, r))\n\ndef st(p, follow=True):\n    s = os.stat(p, follow_symlinks=follow)\n    isdir = stat.S_ISDIR(s.st_mode)\n    return (oct(s.st_mode), s.st_nlink, None if isdir else s.st_size)\n\nos.chdir(base)\nrec("mkdir", os.mkdir, "d")\nrec("makedirs", os.makedirs, "d/e/f")\nfd = os.open("d/file", os.O_CREAT | os.O_RDWR, 0o640)\nrec("write", os.write, fd, b"hello world")\nrec("lseek", os.lseek, fd, 0, os.SEEK_SET)\nrec("read", os.read, fd, 5)\nrec("pread", os.pread, fd, 5, 6)\nrec("pwrite", os.pwrite, fd, b"W", 6)\nrec("fstat", lambda: st("d/file"))\nrec("ftruncate", os.ftruncate, fd, 3)\nrec("readall", lambda: open("d/file", "rb").read())\nrec("dup", lambda: os.dup(fd) > fd)\nrec("getfl", lambda: oct(__import__("fcntl").fcntl(fd, 3) & ~0o100000))\nos.close(fd)\nrec("close-again", os.close, fd)\nrec("symlink", os.symlink, "file", "d/link")\nrec("readlink", os.readlink, "d/link")\nrec("lstat", lambda: st("d/link", False))\nrec("link", os.link, "d/file", "d/hard")\nrec("nlink", lambda: st("d/file"))\nrec("listdir", lambda: sorted(os.listdir("d")))\nrec("walk", lambda: sorted((p, sorted(ds), sorted(fs)) for p, ds, fs in os.walk("d")))\nrec("rename", os.rename, "d/hard", "d/e/moved")\nrec("rename-dir-into-self", os.rename, "d", "d/e/x")\nrec("rmdir-nonempty", os.rmdir, "d/e")\nrec("unlink-dir", os.unlink, "d/e")\nrec("rmdir-file", os.rmdir, "d/file")\nrec("chmod", os.chmod, "d/file", 0o4711)\nrec("mode", lambda: st("d/file"))\nrec("utime", os.utime, "d/file", ns=(10**9, 2 * 10**9))\nrec("times", lambda: (os.stat("d/file").st_atime_ns, os.stat("d/file").st_mtime_ns))\nrec("access-x", os.access, "d/file", os.X_OK)\nrec("access-missing", os.access, "d/nothing", os.F_OK)\nrec("open-excl", os.open, "d/file", os.O_CREAT | os.O_EXCL)\nrec("open-dir-w", os.open, "d", os.O_WRONLY)\nrec("open-notdir", os.open, "d/file/x", os.O_RDONLY)\nrec("open-long", os.open, "x" * 300, os.O_RDONLY)\nrec("loop", lambda: (os.symlink("l2", "l1"), os.symlink("l1", "l2"), os.open("l1", 0)))\nr, w = os.pipe()\nrec("pipe-write", os.write, w, b"piped")\nrec("pipe-read", os.read, r, 100)\nos.set_blocking(r, False)\nrec("pipe-eagain", os.read, r, 1)\nos.close(r)\nrec("pipe-epipe", os.write, w, b"x")\nrec("getcwd", lambda: os.getcwd() == base)\nrec("chdir-file", os.chdir, "d/file")\nrec("scandir", lambda: sorted((e.name, e.is_dir(), e.is_symlink()) for e in os.scandir("d")))\nrec("statvfs-namemax", lambda: os.statvfs(".").f_namemax)\nrec("umask", os.umask, 0o077)\nfd = os.open("new", os.O_CREAT | os.O_WRONLY, 0o666)\nrec("umask-mode", lambda: oct(os.fstat(fd).st_mode))\nrec("devnull", lambda: open("/dev/null", "rb").read())\nrec("devzero", lambda: open("/dev/zero", "rb").read(3))\nrec("proc-self-fd", lambda: os.readlink("/proc/self/fd/%d" % fd).endswith("/new"))\nrec("truncate-neg", os.truncate, "new", -1)\nrec("rmtree", lambda: __import__("shutil").rmtree("d"))\nrec("final", lambda: sorted(os.listdir(".")))\nprint("\\n".join(out))\n'


def _sandbox(*argv, timeout=120):
    return subprocess.run([*PYVISOR, "run", "--", *argv], cwd="/",
                          env=BASE_ENV, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def sandbox_ok():
    if not os.path.exists(PYTHON3):
        pytest.skip("no /usr/bin/python3 on this host")
    try:
        r = _sandbox("/bin/true", timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip("sandbox unavailable: %s" % e)
    if r.returncode != 0:
        pytest.skip("sandbox unavailable: %s" % r.stderr.decode(errors="replace")[-300:])


@pytest.mark.slow
def test_fs_probe_same_output_native_and_sandboxed(tmp_path, sandbox_ok):
    native = subprocess.run([PYTHON3, "-c", PROBE, str(tmp_path / "probe")],
                            capture_output=True, timeout=60)
    assert native.returncode == 0, native.stderr
    # The probe makes its own empty directory; in the sandbox it exists only
    # in the overlay's upper layer.
    inside = "/tmp/pyvisor-vfs-probe-%d" % os.getpid()
    ours = _sandbox(PYTHON3, "-c", PROBE, inside)
    assert ours.returncode == 0, ours.stderr.decode(errors="replace")
    assert ours.stdout.decode().splitlines() == native.stdout.decode().splitlines()
    assert not os.path.exists(inside), "the sandbox wrote to the host"
