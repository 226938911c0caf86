"""procfs and devfs contents with a stand-in task, and host stdio files."""

import errno
import os
from types import SimpleNamespace

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs import host_file, make_pipe
from pyvisor.sentry.vfs.testing import make_env


@pytest.fixture
def env():
    k, vfs, t = make_env()
    t.argv = [b"prog", b"-x", b"arg"]
    t.envp = [b"A=1", b"B=2"]
    t.comm = b"prog"
    t.exe_path = b"/bin/prog"
    t.pid = t.tid = 1
    t.mm._vmas = [
        SimpleNamespace(start=0x400000, end=0x401000, prot=5, flags=2, offset=0,
                        name=b"/bin/prog"),
        SimpleNamespace(start=0x600000, end=0x602000, prot=3, flags=0x22, offset=0, name=b""),
        SimpleNamespace(start=0x7000000, end=0x7001000, prot=1, flags=1, offset=0x3000,
                        name=b"[stack]"),
    ]
    return k, vfs, t


def read(vfs, t, path):
    return vfs.open(t, path, os.O_RDONLY).read(1 << 20)


def err(fn, *args, **kw):
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def test_self_and_pid_files(env):
    k, vfs, t = env
    assert vfs.readlink(t, b"/proc/self") == b"1"
    assert read(vfs, t, b"/proc/self/cmdline") == b"prog\0-x\0arg\0"
    assert read(vfs, t, b"/proc/1/environ") == b"A=1\0B=2\0"
    assert read(vfs, t, b"/proc/self/comm") == b"prog\n"
    assert vfs.readlink(t, b"/proc/self/exe") == b"/bin/prog"
    assert err(vfs.stat, t, b"/proc/2") == errno.ENOENT


def test_status_fields(env):
    k, vfs, t = env
    status = dict(line.split(b":\t", 1) for line in read(vfs, t, b"/proc/self/status").splitlines())
    assert status[b"Name"] == b"prog"
    assert status[b"Pid"] == b"1" and status[b"Tgid"] == b"1" and status[b"PPid"] == b"0"
    assert status[b"Threads"] == b"1"
    assert status[b"Uid"] == b"0\t0\t0\t0"
    assert status[b"VmSize"].strip() == b"16 kB"


def test_stat_has_52_fields(env):
    k, vfs, t = env
    fields = read(vfs, t, b"/proc/self/stat").split()
    assert len(fields) == 52 and fields[0] == b"1" and fields[1] == b"(prog)"


def test_maps_format(env):
    k, vfs, t = env
    lines = read(vfs, t, b"/proc/self/maps").splitlines()
    assert lines[0].startswith(b"00400000-00401000 r-xp 00000000 00:00 0")
    assert lines[0].endswith(b"/bin/prog") and lines[0].index(b"/bin/prog") == 73
    assert lines[1] == b"00600000-00602000 rw-p 00000000 00:00 0"
    assert lines[2].startswith(b"07000000-07001000 r--s 00003000") and lines[2].endswith(b"[stack]")


def test_fd_dir_links(env):
    k, vfs, t = env
    r, w = make_pipe()
    rfd = t.fdtable.install(r)
    ffd = t.fdtable.install(vfs.open(t, b"/tmp/f", os.O_CREAT | os.O_RDWR))
    assert vfs.readlink(t, b"/proc/self/fd/%d" % rfd) == b"pipe:[%d]" % r.pipe.ino
    assert vfs.readlink(t, b"/proc/self/fd/%d" % ffd) == b"/tmp/f"
    d = vfs.open(t, b"/proc/self/fd", os.O_DIRECTORY)
    names = sorted(n for n, _, _ in d._snapshot())
    assert names == sorted([b".", b"..", b"%d" % rfd, b"%d" % ffd])
    # Opening the magic link reaches the same file / the same pipe.
    vfs.open(t, b"/proc/self/fd/%d" % ffd, os.O_WRONLY).write(b"via fd")
    assert read(vfs, t, b"/tmp/f") == b"via fd"
    w2 = vfs.open(t, b"/proc/self/fd/%d" % rfd, os.O_WRONLY)
    w2.write(b"pipe!")
    assert r.read(10) == b"pipe!"


def test_cwd_root_links(env):
    k, vfs, t = env
    t.fs.cwd = vfs.resolve(t, b"/tmp")
    assert vfs.readlink(t, b"/proc/self/cwd") == b"/tmp"
    assert vfs.readlink(t, b"/proc/self/root") == b"/"
    assert vfs.stat(t, b"/proc/self/cwd").st_ino == vfs.stat(t, b"/tmp").st_ino


def test_mounts_and_mountinfo(env):
    k, vfs, t = env
    mounts = read(vfs, t, b"/proc/mounts").splitlines()
    points = [m.split()[1] for m in mounts]
    assert points == [b"/", b"/tmp", b"/dev", b"/dev/shm", b"/proc"]
    info = read(vfs, t, b"/proc/self/mountinfo").splitlines()
    assert all(b" - " in line for line in info) and len(info) == 5


def test_system_files(env):
    k, vfs, t = env
    assert read(vfs, t, b"/proc/sys/kernel/osrelease").startswith(b"6.")
    assert read(vfs, t, b"/proc/sys/kernel/hostname") == b"pyvisor\n"
    assert read(vfs, t, b"/proc/sys/kernel/ngroups_max") == b"65536\n"
    assert read(vfs, t, b"/proc/sys/vm/overcommit_memory") == b"0\n"
    assert b"processor" in read(vfs, t, b"/proc/cpuinfo")
    assert b"MemTotal:" in read(vfs, t, b"/proc/meminfo")
    assert b"tmpfs" in read(vfs, t, b"/proc/filesystems")
    up = read(vfs, t, b"/proc/uptime").split()
    assert len(up) == 2 and float(up[0]) >= 0
    assert len(read(vfs, t, b"/proc/loadavg").split()) == 5
    assert read(vfs, t, b"/proc/version").startswith(b"Linux version")
    assert read(vfs, t, b"/proc/stat").startswith(b"cpu ")


def test_procfs_is_read_only(env):
    k, vfs, t = env
    # As on Linux: root may open for writing, the write fails.
    f = vfs.open(t, b"/proc/self/status", os.O_WRONLY)
    assert err(f.write, b"x") == errno.EIO
    assert err(vfs.mkdir, t, b"/proc/x", 0o755) == errno.ENOENT
    assert err(vfs.open, t, b"/proc/new", os.O_CREAT | os.O_RDWR) == errno.ENOENT
    assert err(vfs.unlink, t, b"/proc/uptime") == errno.EPERM
    assert err(vfs.setattr, t, b"/proc/uptime", mode=0o777) == errno.EPERM


def test_devfs_devices(env):
    k, vfs, t = env
    assert read(vfs, t, b"/dev/null") == b""
    assert vfs.open(t, b"/dev/null", os.O_WRONLY).write(b"abc") == 3
    assert vfs.open(t, b"/dev/zero", os.O_RDONLY).read(4) == b"\0\0\0\0"
    assert err(vfs.open(t, b"/dev/full", os.O_WRONLY).write, b"x") == errno.ENOSPC
    assert len(vfs.open(t, b"/dev/urandom", os.O_RDONLY).read(16)) == 16
    assert len(vfs.open(t, b"/dev/random", os.O_RDONLY).read(8)) == 8
    st = vfs.stat(t, b"/dev/null")
    assert st.st_mode == 0o020666 and st.st_rdev == os.makedev(1, 3)
    assert vfs.readlink(t, b"/dev/stdin") == b"/proc/self/fd/0"
    assert vfs.stat(t, b"/dev/pts").st_mode & 0o170000 == 0o040000
    assert vfs.stat(t, b"/dev/shm").st_mode & 0o7777 == 0o1777


def test_dev_tty_without_terminal_is_enxio(env):
    k, vfs, t = env
    assert err(vfs.open, t, b"/dev/tty", os.O_RDWR) == errno.ENXIO


def test_dev_tty_with_a_terminal_stdio(env):
    k, vfs, t = env
    master, slave = os.openpty()
    try:
        t.fdtable.install(host_file(os.dup(slave), b"/dev/pts/0"))
        tty = vfs.open(t, b"/dev/tty", os.O_RDWR)
        tty.write(b"hi")
        assert os.read(master, 10).replace(b"\r", b"") == b"hi"
        tty.decref()
    finally:
        os.close(master)
        os.close(slave)


def test_dev_stdin_reopens_host_file(env):
    k, vfs, t = env
    rfd, wfd = os.pipe()
    try:
        t.fdtable.install(host_file(os.dup(rfd), b"pipe:[host]", flags=os.O_RDONLY))
        os.write(wfd, b"input")
        f = vfs.open(t, b"/dev/stdin", os.O_RDONLY)
        assert f.read(10) == b"input"
        f.decref()
    finally:
        os.close(rfd)
        os.close(wfd)


def test_fd_link_modes_follow_access_mode(env):
    k, vfs, t = env
    r, w = make_pipe()
    rfd, wfd = t.fdtable.install(r), t.fdtable.install(w)
    assert vfs.stat(t, b"/proc/self/fd/%d" % rfd, follow=False).st_mode == 0o120500
    assert vfs.stat(t, b"/proc/self/fd/%d" % wfd, follow=False).st_mode == 0o120300


def test_fdinfo(env):
    k, vfs, t = env
    f = vfs.open(t, b"/tmp/f", os.O_CREAT | os.O_RDWR)
    f.write(b"abc")
    fd = t.fdtable.install(f, cloexec=True)
    info = dict(line.split(b":\t") for line in read(vfs, t, b"/proc/self/fdinfo/%d" % fd).splitlines())
    assert info[b"pos"] == b"3"
    assert int(info[b"flags"], 8) == os.O_RDWR | os.O_CLOEXEC
    assert int(info[b"ino"]) == vfs.stat(t, b"/tmp/f").st_ino
    assert err(vfs.stat, t, b"/proc/self/fdinfo/99") == errno.ENOENT
