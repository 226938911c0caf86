"""Each fs syscall handler through the Kernel-less harness task, with its
error paths. `sc()` plays the dispatcher: it returns the result or -errno."""

import errno
import os
import struct
import threading
import time

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls.table import ROWS
from pyvisor.sentry.vfs.stat import unpack_stat
from pyvisor.sentry.vfs.testing import BASE, make_env

MASK = (1 << 64) - 1
HANDLERS = {r.name: r.handler for r in ROWS}
AT_FDCWD = -100
BAD = 0x10                      # below BASE: unmapped, EFAULT


def sc(t, name, *args):
    try:
        return HANDLERS[name](t, *[a & MASK for a in args])
    except SyscallError as e:
        return -e.errno


@pytest.fixture
def t():
    k, vfs, task = make_env()
    return task


def s(t, path):
    return t.cstr(path)


def open_(t, path, flags=os.O_RDONLY, mode=0o644):
    return sc(t, "open", s(t, path), flags, mode)


def write_file(t, path, data):
    fd = open_(t, path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    assert fd >= 0
    buf = t.put(data)
    assert sc(t, "write", fd, buf, len(data)) == len(data)
    assert sc(t, "close", fd) == 0


def stat_(t, path, name="stat"):
    buf = t.alloc(144)
    r = sc(t, name, s(t, path), buf)
    return r if r < 0 else unpack_stat(t.copy_in(buf, 144))


# --- read/write/lseek -----------------------------------------------------------

def test_read_write_lseek(t):
    write_file(t, b"/tmp/f", b"hello world")
    fd = open_(t, b"/tmp/f", os.O_RDWR)
    buf = t.alloc(64)
    assert sc(t, "read", fd, buf, 5) == 5 and t.copy_in(buf, 5) == b"hello"
    assert sc(t, "lseek", fd, 0, 1) == 5
    assert sc(t, "lseek", fd, -5, 2) == 6
    assert sc(t, "read", fd, buf, 64) == 5 and t.copy_in(buf, 5) == b"world"
    assert sc(t, "read", fd, buf, 64) == 0
    assert sc(t, "lseek", fd, 0, 9) == -errno.EINVAL
    assert sc(t, "lseek", fd, -1, 0) == -errno.EINVAL
    assert sc(t, "lseek", 99, 0, 0) == -errno.EBADF


def test_read_write_errors(t):
    write_file(t, b"/tmp/f", b"abc")
    ro = open_(t, b"/tmp/f")
    buf = t.alloc(16)
    assert sc(t, "read", 99, buf, 1) == -errno.EBADF
    assert sc(t, "write", ro, buf, 1) == -errno.EBADF
    assert sc(t, "read", ro, BAD, 3) == -errno.EFAULT
    assert sc(t, "read", ro, buf, 3) == 3            # EFAULT did not consume the data
    rw = open_(t, b"/tmp/f", os.O_RDWR)
    assert sc(t, "write", rw, BAD, 3) == -errno.EFAULT
    d = open_(t, b"/tmp", os.O_RDONLY | os.O_DIRECTORY)
    assert sc(t, "read", d, buf, 1) == -errno.EISDIR


def test_partial_write_then_efault_returns_count(t):
    fd = open_(t, b"/tmp/big", os.O_CREAT | os.O_RDWR)
    t.mem.extend(bytes(2 << 20))
    end = BASE + len(t.mem)
    start = end - (1 << 20) - 100                      # 1 MiB + 100 bytes mapped
    assert sc(t, "write", fd, start, (1 << 20) + 4096) == 1 << 20
    assert stat_(t, b"/tmp/big").st_size == 1 << 20


def test_pread_pwrite(t):
    write_file(t, b"/tmp/f", b"0123456789")
    fd = open_(t, b"/tmp/f", os.O_RDWR)
    buf = t.alloc(16)
    assert sc(t, "pread64", fd, buf, 3, 4) == 3 and t.copy_in(buf, 3) == b"456"
    assert sc(t, "pwrite64", fd, t.put(b"xy"), 2, 8) == 2
    assert sc(t, "lseek", fd, 0, 1) == 0               # offset untouched
    assert sc(t, "pread64", fd, buf, 16, 0) == 10 and t.copy_in(buf, 10) == b"01234567xy"
    assert sc(t, "pread64", fd, buf, 1, -1) == -errno.EINVAL
    rfd, wfd = pipe(t)
    assert sc(t, "pread64", rfd, buf, 1, 0) == -errno.ESPIPE
    assert sc(t, "pwrite64", wfd, buf, 1, 0) == -errno.ESPIPE


def iov(t, parts):
    raw = b""
    for addr, n in parts:
        raw += struct.pack("<QQ", addr, n)
    return t.put(raw)


def test_readv_writev_preadv_pwritev(t):
    fd = open_(t, b"/tmp/v", os.O_CREAT | os.O_RDWR)
    a, b = t.put(b"abc"), t.put(b"defgh")
    assert sc(t, "writev", fd, iov(t, [(a, 3), (b, 5)]), 2) == 8
    sc(t, "lseek", fd, 0, 0)
    x, y = t.alloc(4), t.alloc(8)
    assert sc(t, "readv", fd, iov(t, [(x, 4), (y, 8)]), 2) == 8
    assert t.copy_in(x, 4) == b"abcd" and t.copy_in(y, 4) == b"efgh"
    assert sc(t, "pwritev", fd, iov(t, [(a, 2)]), 1, 1) == 2
    assert sc(t, "preadv", fd, iov(t, [(x, 4)]), 1, 0) == 4 and t.copy_in(x, 4) == b"aabd"
    assert sc(t, "readv", fd, iov(t, [(x, 1)]), -1) == -errno.EINVAL
    assert sc(t, "readv", fd, iov(t, [(x, 1)]), 1025) == -errno.EINVAL
    assert sc(t, "writev", fd, BAD, 1) == -errno.EFAULT
    assert sc(t, "preadv", fd, iov(t, [(x, 1)]), 1, -5) == -errno.EINVAL
    assert sc(t, "writev", fd, iov(t, [(a, 1 << 63)]), 1) == -errno.EINVAL


# --- open/close/creat ---------------------------------------------------------------

def test_open_flags_and_errors(t):
    assert open_(t, b"/tmp/missing") == -errno.ENOENT
    fd = open_(t, b"/tmp/n", os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC)
    assert fd == 0
    assert sc(t, "fcntl", fd, 1, 0) == 1                          # FD_CLOEXEC
    assert open_(t, b"/tmp/n", os.O_CREAT | os.O_EXCL) == -errno.EEXIST
    assert open_(t, b"/tmp/n", os.O_DIRECTORY) == -errno.ENOTDIR
    assert open_(t, b"/tmp", os.O_WRONLY) == -errno.EISDIR
    assert open_(t, b"/tmp/n/x") == -errno.ENOTDIR
    assert open_(t, b"/tmp/" + b"x" * 256) == -errno.ENAMETOOLONG
    assert sc(t, "open", BAD, 0, 0) == -errno.EFAULT
    assert open_(t, b"/tmp/t", os.O_TMPFILE | os.O_RDWR) == -errno.ENOENT
    assert open_(t, b"/tmp", os.O_TMPFILE | os.O_RDONLY) == -errno.EINVAL
    assert open_(t, b"/tmp", os.O_TMPFILE | os.O_RDWR) >= 0
    sc(t, "symlink", s(t, b"/tmp/l2"), s(t, b"/tmp/l1"))
    sc(t, "symlink", s(t, b"/tmp/l1"), s(t, b"/tmp/l2"))
    assert open_(t, b"/tmp/l1") == -errno.ELOOP
    assert open_(t, b"/tmp/l1", os.O_NOFOLLOW) == -errno.ELOOP
    long_path = t.put(b"a" * 5000)                                 # no NUL within PATH_MAX
    assert sc(t, "open", long_path, 0, 0) == -errno.ENAMETOOLONG


def test_getfl_reports_largefile_and_access_mode(t):
    fd = open_(t, b"/tmp/f", os.O_CREAT | os.O_RDWR | os.O_APPEND)
    fl = sc(t, "fcntl", fd, 3, 0)
    assert fl & 3 == os.O_RDWR and fl & os.O_APPEND and fl & 0o100000


def test_openat_and_creat(t):
    sc(t, "mkdir", s(t, b"/tmp/d"), 0o755)
    dfd = open_(t, b"/tmp/d", os.O_DIRECTORY)
    fd = sc(t, "openat", dfd, s(t, b"f"), os.O_CREAT | os.O_RDWR, 0o600)
    assert fd >= 0 and stat_(t, b"/tmp/d/f").st_mode == 0o100600
    assert sc(t, "openat", 77, s(t, b"f"), 0, 0) == -errno.EBADF
    assert sc(t, "openat", fd, s(t, b"f"), 0, 0) == -errno.ENOTDIR
    assert sc(t, "openat", 77, s(t, b"/tmp/d/f"), 0, 0) >= 0      # absolute ignores dirfd
    c = sc(t, "creat", s(t, b"/tmp/d/f"), 0o644)
    assert c >= 0 and sc(t, "read", c, t.alloc(1), 1) == -errno.EBADF


def test_o_path(t):
    write_file(t, b"/tmp/f", b"x")
    fd = open_(t, b"/tmp/f", os.O_PATH)
    assert sc(t, "read", fd, t.alloc(1), 1) == -errno.EBADF
    buf = t.alloc(144)
    assert sc(t, "fstat", fd, buf) == 0 and unpack_stat(t.copy_in(buf, 144)).st_size == 1


def test_close_and_close_range(t):
    fds = [open_(t, b"/dev/null") for _ in range(5)]
    assert sc(t, "close", fds[0]) == 0
    assert sc(t, "close", fds[0]) == -errno.EBADF
    assert sc(t, "close_range", 2, 3, 0) == 0
    assert [fd for fd, _ in t.fdtable.items()] == [1, 4]
    assert sc(t, "close_range", 5, 2, 0) == -errno.EINVAL
    assert sc(t, "close_range", 0, 10, 1 << 7) == -errno.EINVAL
    assert sc(t, "close_range", 0, 10, 1 << 2) == 0
    assert sc(t, "fcntl", 4, 1, 0) == 1


# --- dup/fcntl/ioctl ----------------------------------------------------------------

def test_dup_family(t):
    fd = open_(t, b"/dev/null")
    assert sc(t, "dup", fd) == 1
    assert sc(t, "dup", 50) == -errno.EBADF
    assert sc(t, "dup2", fd, 10) == 10
    assert sc(t, "dup2", fd, fd) == fd
    assert sc(t, "dup2", 50, 50) == -errno.EBADF
    assert sc(t, "dup2", fd, -1) == -errno.EBADF
    assert sc(t, "dup3", fd, fd, 0) == -errno.EINVAL
    assert sc(t, "dup3", fd, 11, 1) == -errno.EINVAL
    assert sc(t, "dup3", fd, 11, os.O_CLOEXEC) == 11
    assert sc(t, "fcntl", 11, 1, 0) == 1


def test_fcntl(t):
    fd = open_(t, b"/tmp/f", os.O_CREAT | os.O_RDWR)
    assert sc(t, "fcntl", fd, 0, 5) == 5                           # F_DUPFD
    assert sc(t, "fcntl", fd, 1030, 20) == 20 and sc(t, "fcntl", 20, 1, 0) == 1
    assert sc(t, "fcntl", fd, 2, 1) == 0 and sc(t, "fcntl", fd, 1, 0) == 1
    assert sc(t, "fcntl", fd, 4, os.O_NONBLOCK | os.O_APPEND | os.O_RDONLY) == 0
    fl = sc(t, "fcntl", fd, 3, 0)
    assert fl & os.O_NONBLOCK and fl & os.O_APPEND and fl & 3 == os.O_RDWR
    flock = t.put(struct.pack("<hhxxxxqqixxxx", 1, 0, 0, 0, 0))
    assert sc(t, "fcntl", fd, 5, flock) == 0                       # F_GETLK
    assert struct.unpack_from("<h", t.copy_in(flock, 2))[0] == 2   # F_UNLCK
    assert sc(t, "fcntl", fd, 6, t.put(struct.pack("<hhxxxxqqixxxx", 1, 0, 0, 0, 0))) == 0
    assert sc(t, "fcntl", fd, 6, t.put(struct.pack("<hhxxxxqqixxxx", 9, 0, 0, 0, 0))) == -errno.EINVAL
    assert sc(t, "fcntl", fd, 5, BAD) == -errno.EFAULT
    ro = open_(t, b"/tmp/f")
    assert sc(t, "fcntl", ro, 6, t.put(struct.pack("<hhxxxxqqixxxx", 1, 0, 0, 0, 0))) == -errno.EBADF
    assert sc(t, "fcntl", fd, 1032, 0) == -errno.EBADF             # not a pipe
    assert sc(t, "fcntl", fd, 9999, 0) == -errno.EINVAL
    assert sc(t, "fcntl", 99, 1, 0) == -errno.EBADF
    assert sc(t, "fcntl", fd, 0, 5000) == -errno.EINVAL


def pipe(t, flags=0):
    buf = t.alloc(8)
    assert sc(t, "pipe2", buf, flags) == 0
    return struct.unpack("<ii", t.copy_in(buf, 8))


def test_pipe_syscalls(t):
    r, w = pipe(t)
    assert sc(t, "write", w, t.put(b"hey"), 3) == 3
    n = t.alloc(4)
    assert sc(t, "ioctl", r, 0x541B, n) == 0 and struct.unpack("<i", t.copy_in(n, 4))[0] == 3
    assert sc(t, "fcntl", r, 1032, 0) == 65536
    assert sc(t, "fcntl", r, 1031, 10000) == 16384
    assert sc(t, "fcntl", r, 3, 0) == os.O_RDONLY
    assert sc(t, "fcntl", w, 3, 0) == os.O_WRONLY
    buf = t.alloc(8)
    assert sc(t, "read", r, buf, 8) == 3
    assert sc(t, "lseek", r, 0, 0) == -errno.ESPIPE
    assert sc(t, "pipe2", buf, 0x1) == -errno.EINVAL
    assert sc(t, "pipe", BAD) == -errno.EFAULT
    assert len(t.fdtable) == 2                    # nothing leaked by the failure
    nr, nw = pipe(t, os.O_NONBLOCK | os.O_CLOEXEC)
    assert sc(t, "read", nr, buf, 1) == -errno.EAGAIN
    assert sc(t, "fcntl", nr, 1, 0) == 1
    sc(t, "close", nr)
    assert sc(t, "write", nw, buf, 1) == -errno.EPIPE
    sc(t, "close", w)
    assert sc(t, "read", r, buf, 1) == 0          # EOF


def test_blocking_pipe_read_through_syscall(t):
    r, w = pipe(t)
    buf = t.alloc(16)
    res = []
    th = threading.Thread(target=lambda: res.append(sc(t, "read", r, buf, 16)))
    th.start()
    time.sleep(0.05)
    sc(t, "write", w, t.put(b"late"), 4)
    th.join(2)
    assert res == [4] and t.copy_in(buf, 4) == b"late"


def test_ioctl_generic(t):
    fd = open_(t, b"/dev/null")
    one = t.put(struct.pack("<i", 1))
    assert sc(t, "ioctl", fd, 0x5421, one) == 0                     # FIONBIO
    assert sc(t, "fcntl", fd, 3, 0) & os.O_NONBLOCK
    assert sc(t, "ioctl", fd, 0x5451, 0) == 0 and sc(t, "fcntl", fd, 1, 0) == 1
    assert sc(t, "ioctl", fd, 0x5450, 0) == 0 and sc(t, "fcntl", fd, 1, 0) == 0
    assert sc(t, "ioctl", fd, 0x5401, t.alloc(64)) == -errno.ENOTTY  # TCGETS
    assert sc(t, "ioctl", 99, 0x5451, 0) == -errno.EBADF
    assert sc(t, "ioctl", fd, 0x5421, BAD) == -errno.EFAULT
    write_file(t, b"/tmp/f", b"12345")
    f = open_(t, b"/tmp/f")
    n = t.alloc(4)
    assert sc(t, "ioctl", f, 0x541B, n) == 0 and struct.unpack("<i", t.copy_in(n, 4))[0] == 5


# --- stat family ------------------------------------------------------------------

def test_stat_lstat_fstat_newfstatat(t):
    write_file(t, b"/tmp/f", b"12345")
    sc(t, "symlink", s(t, b"/tmp/f"), s(t, b"/tmp/l"))
    assert stat_(t, b"/tmp/l").st_size == 5
    assert stat_(t, b"/tmp/l", "lstat").st_mode == 0o120777
    assert stat_(t, b"/tmp/none") == -errno.ENOENT
    assert sc(t, "stat", s(t, b"/tmp/f"), BAD) == -errno.EFAULT
    assert sc(t, "stat", BAD, t.alloc(144)) == -errno.EFAULT
    buf = t.alloc(144)
    fd = open_(t, b"/tmp/f")
    assert sc(t, "fstat", fd, buf) == 0 and unpack_stat(t.copy_in(buf, 144)).st_size == 5
    assert sc(t, "fstat", 99, buf) == -errno.EBADF
    assert sc(t, "newfstatat", AT_FDCWD, s(t, b"/tmp/l"), buf, 0x100) == 0
    assert unpack_stat(t.copy_in(buf, 144)).st_mode == 0o120777
    assert sc(t, "newfstatat", fd, s(t, b""), buf, 0x1000) == 0
    assert unpack_stat(t.copy_in(buf, 144)).st_size == 5
    assert sc(t, "newfstatat", fd, s(t, b""), buf, 0) == -errno.ENOENT
    assert sc(t, "newfstatat", fd, 0, buf, 0x1000) == 0
    assert sc(t, "newfstatat", fd, 0, buf, 0) == -errno.EFAULT
    assert sc(t, "newfstatat", AT_FDCWD, s(t, b"/tmp/f"), buf, 0x4) == -errno.EINVAL


def test_statx(t):
    write_file(t, b"/tmp/f", b"1234567")
    sc(t, "symlink", s(t, b"/tmp/f"), s(t, b"/tmp/l"))
    buf = t.alloc(256)
    assert sc(t, "statx", AT_FDCWD, s(t, b"/tmp/l"), 0, 0x7FF, buf) == 0
    raw = t.copy_in(buf, 256)
    mask, _blksize = struct.unpack_from("<II", raw, 0)
    mode, = struct.unpack_from("<H", raw, 28)
    size, = struct.unpack_from("<Q", raw, 40)
    assert mask & 0x7FF == 0x7FF and mode == 0o100644 and size == 7
    assert sc(t, "statx", AT_FDCWD, s(t, b"/tmp/l"), 0x100, 0x7FF, buf) == 0
    assert struct.unpack_from("<H", t.copy_in(buf, 256), 28)[0] == 0o120777
    fd = open_(t, b"/tmp/f")
    assert sc(t, "statx", fd, s(t, b""), 0x1000, 0x7FF, buf) == 0
    assert struct.unpack_from("<Q", t.copy_in(buf, 256), 40)[0] == 7
    assert sc(t, "statx", AT_FDCWD, s(t, b"/tmp/f"), 0x6000, 0x7FF, buf) == -errno.EINVAL
    assert sc(t, "statx", AT_FDCWD, s(t, b"/tmp/f"), 0, 0x80000000, buf) == -errno.EINVAL
    assert sc(t, "statx", AT_FDCWD, s(t, b"/tmp/f"), 0, 0x7FF, BAD) == -errno.EFAULT


def test_statfs_fstatfs(t):
    buf = t.alloc(120)
    assert sc(t, "statfs", s(t, b"/proc"), buf) == 0
    assert struct.unpack_from("<q", t.copy_in(buf, 8))[0] == 0x9FA0
    fd = open_(t, b"/tmp")
    assert sc(t, "fstatfs", fd, buf) == 0
    assert struct.unpack_from("<q", t.copy_in(buf, 8))[0] == 0x01021994
    assert sc(t, "statfs", s(t, b"/nope"), buf) == -errno.ENOENT
    assert sc(t, "fstatfs", 99, buf) == -errno.EBADF


def test_access(t):
    write_file(t, b"/tmp/f", b"x")
    assert sc(t, "access", s(t, b"/tmp/f"), 4 | 2) == 0
    assert sc(t, "access", s(t, b"/tmp/f"), 1) == -errno.EACCES       # root: needs an x bit
    sc(t, "chmod", s(t, b"/tmp/f"), 0o100)
    assert sc(t, "access", s(t, b"/tmp/f"), 1) == 0
    assert sc(t, "access", s(t, b"/tmp/none"), 0) == -errno.ENOENT
    assert sc(t, "access", s(t, b"/tmp/f"), 8) == -errno.EINVAL
    assert sc(t, "faccessat", AT_FDCWD, s(t, b"/tmp"), 1) == 0
    assert sc(t, "faccessat2", AT_FDCWD, s(t, b"/tmp/f"), 0, 0x200) == 0
    assert sc(t, "faccessat2", AT_FDCWD, s(t, b"/tmp/f"), 0, 0x1) == -errno.EINVAL


# --- directories ------------------------------------------------------------------

def dents(t, fd, size=4096):
    buf = t.alloc(size)
    n = sc(t, "getdents64", fd, buf, size)
    if n < 0:
        return n
    raw, out, off = t.copy_in(buf, n), [], 0
    while off < n:
        ino, doff, reclen, dtype = struct.unpack_from("<QqHB", raw, off)
        name = raw[off + 19:off + reclen].split(b"\0", 1)[0]
        out.append((name, dtype))
        off += reclen
    return out


def test_getdents64(t):
    sc(t, "mkdir", s(t, b"/tmp/d"), 0o755)
    write_file(t, b"/tmp/d/file", b"")
    sc(t, "mkdir", s(t, b"/tmp/d/sub"), 0o755)
    sc(t, "symlink", s(t, b"x"), s(t, b"/tmp/d/ln"))
    fd = open_(t, b"/tmp/d", os.O_DIRECTORY)
    got = dents(t, fd)
    assert sorted(got) == [(b".", 4), (b"..", 4), (b"file", 8), (b"ln", 10), (b"sub", 4)]
    assert dents(t, fd) == []                                   # at the end
    sc(t, "lseek", fd, 0, 0)
    assert len(dents(t, fd, 24)) == 1                           # one record fits
    assert dents(t, fd, 10) == -errno.EINVAL                    # none fits
    assert sc(t, "getdents64", fd, BAD, 4096) == -errno.EFAULT
    assert len(dents(t, fd)) == 4                               # EFAULT consumed nothing
    f = open_(t, b"/tmp/d/file")
    assert dents(t, f) == -errno.ENOTDIR
    assert dents(t, 99) == -errno.EBADF
    sc(t, "lseek", fd, 0, 0)
    buf = t.alloc(4096)
    n = sc(t, "getdents", fd, buf, 4096)
    raw, names, off = t.copy_in(buf, n), [], 0
    while off < n:
        _ino, _off, reclen = struct.unpack_from("<QQH", raw, off)
        names.append((raw[off + 18:off + reclen].split(b"\0", 1)[0], raw[off + reclen - 1]))
        off += reclen
    assert sorted(names) == [(b".", 4), (b"..", 4), (b"file", 8), (b"ln", 10), (b"sub", 4)]


def test_getcwd_chdir_fchdir(t):
    buf = t.alloc(256)
    assert sc(t, "getcwd", buf, 256) == 2 and t.copy_in(buf, 2) == b"/\0"
    sc(t, "mkdir", s(t, b"/tmp/d"), 0o755)
    assert sc(t, "chdir", s(t, b"/tmp/d")) == 0
    assert sc(t, "getcwd", buf, 256) == 7 and t.copy_in(buf, 7) == b"/tmp/d\0"
    assert sc(t, "getcwd", buf, 3) == -errno.ERANGE
    assert sc(t, "getcwd", BAD, 256) == -errno.EFAULT
    write_file(t, b"f", b"rel")                                 # relative to cwd
    assert stat_(t, b"/tmp/d/f").st_size == 3
    assert sc(t, "chdir", s(t, b"/tmp/d/f")) == -errno.ENOTDIR
    assert sc(t, "chdir", s(t, b"/nope")) == -errno.ENOENT
    fd = open_(t, b"/proc", os.O_DIRECTORY)
    assert sc(t, "fchdir", fd) == 0
    assert sc(t, "getcwd", buf, 256) == 6 and t.copy_in(buf, 6) == b"/proc\0"
    f = open_(t, b"/tmp/d/f")
    assert sc(t, "fchdir", f) == -errno.ENOTDIR
    assert sc(t, "fchdir", 99) == -errno.EBADF
    sc(t, "chdir", s(t, b"/tmp/d"))
    sc(t, "unlink", s(t, b"/tmp/d/f"))
    sc(t, "rmdir", s(t, b"/tmp/d"))
    assert sc(t, "getcwd", buf, 256) == -errno.ENOENT


def test_mkdir_rmdir_unlink_at(t):
    assert sc(t, "mkdir", s(t, b"/tmp/d"), 0o755) == 0
    assert sc(t, "mkdir", s(t, b"/tmp/d"), 0o755) == -errno.EEXIST
    assert sc(t, "mkdir", s(t, b"/tmp/x/y"), 0o755) == -errno.ENOENT
    dfd = open_(t, b"/tmp/d", os.O_DIRECTORY)
    assert sc(t, "mkdirat", dfd, s(t, b"sub"), 0o700) == 0
    assert stat_(t, b"/tmp/d/sub").st_mode == 0o040700
    assert sc(t, "rmdir", s(t, b"/tmp/d")) == -errno.ENOTEMPTY
    assert sc(t, "unlinkat", dfd, s(t, b"sub"), 0) == -errno.EISDIR
    assert sc(t, "unlinkat", dfd, s(t, b"sub"), 0x200) == 0
    assert sc(t, "unlinkat", dfd, s(t, b"sub"), 0x1) == -errno.EINVAL
    write_file(t, b"/tmp/d/f", b"")
    assert sc(t, "rmdir", s(t, b"/tmp/d/f")) == -errno.ENOTDIR
    assert sc(t, "unlinkat", dfd, s(t, b"f"), 0x200) == -errno.ENOTDIR
    assert sc(t, "unlink", s(t, b"/tmp/d/f")) == 0
    assert sc(t, "unlink", s(t, b"/tmp/d/f")) == -errno.ENOENT
    assert sc(t, "rmdir", s(t, b"/tmp/d")) == 0
    assert sc(t, "rmdir", s(t, b"/tmp")) == -errno.EBUSY


def test_mknod(t):
    assert sc(t, "mknod", s(t, b"/tmp/null2"), 0o020666, os.makedev(1, 3)) == 0
    fd = open_(t, b"/tmp/null2", os.O_WRONLY)
    assert sc(t, "write", fd, t.put(b"abc"), 3) == 3
    assert sc(t, "mknodat", AT_FDCWD, s(t, b"/tmp/reg"), 0o100600, 0) == 0
    assert stat_(t, b"/tmp/reg").st_mode == 0o100600
    assert sc(t, "mknod", s(t, b"/tmp/bad"), 0o170000, 0) == -errno.EINVAL
    assert sc(t, "mknod", s(t, b"/tmp/reg"), 0o100600, 0) == -errno.EEXIST


def test_rename_family(t):
    write_file(t, b"/tmp/a", b"A")
    write_file(t, b"/tmp/b", b"B")
    assert sc(t, "rename", s(t, b"/tmp/a"), s(t, b"/tmp/c")) == 0
    assert stat_(t, b"/tmp/a") == -errno.ENOENT
    assert sc(t, "renameat2", AT_FDCWD, s(t, b"/tmp/c"), AT_FDCWD, s(t, b"/tmp/b"), 1) == -errno.EEXIST
    assert sc(t, "renameat2", AT_FDCWD, s(t, b"/tmp/c"), AT_FDCWD, s(t, b"/tmp/b"), 8) == -errno.EINVAL
    assert sc(t, "renameat", AT_FDCWD, s(t, b"/tmp/c"), AT_FDCWD, s(t, b"/tmp/b")) == 0
    assert stat_(t, b"/tmp/b").st_size == 1
    assert sc(t, "rename", s(t, b"/tmp/b"), s(t, b"/b")) == -errno.EXDEV
    assert sc(t, "rename", s(t, b"/tmp/none"), s(t, b"/tmp/z")) == -errno.ENOENT
    assert sc(t, "rename", s(t, b"/tmp/b"), s(t, b"/tmp/nodir/z")) == -errno.ENOENT


def test_link_symlink_readlink(t):
    write_file(t, b"/tmp/f", b"data")
    assert sc(t, "link", s(t, b"/tmp/f"), s(t, b"/tmp/h")) == 0
    assert stat_(t, b"/tmp/f").st_nlink == 2
    assert sc(t, "link", s(t, b"/tmp/f"), s(t, b"/tmp/h")) == -errno.EEXIST
    assert sc(t, "link", s(t, b"/tmp"), s(t, b"/tmp/dirlink")) == -errno.EPERM
    assert sc(t, "symlink", s(t, b"/tmp/f"), s(t, b"/tmp/s")) == 0
    assert sc(t, "symlinkat", s(t, b"f"), AT_FDCWD, s(t, b"/tmp/s2")) == 0
    assert sc(t, "linkat", AT_FDCWD, s(t, b"/tmp/s"), AT_FDCWD, s(t, b"/tmp/hs"), 0) == 0
    assert stat_(t, b"/tmp/hs", "lstat").st_mode == 0o120777      # the link itself
    assert sc(t, "linkat", AT_FDCWD, s(t, b"/tmp/s"), AT_FDCWD, s(t, b"/tmp/hf"), 0x400) == 0
    assert stat_(t, b"/tmp/hf", "lstat").st_mode == 0o100644      # followed
    fd = open_(t, b"/tmp/f")
    assert sc(t, "linkat", fd, s(t, b""), AT_FDCWD, s(t, b"/tmp/he"), 0x1000) == 0
    assert sc(t, "linkat", AT_FDCWD, s(t, b"/tmp/f"), AT_FDCWD, s(t, b"/tmp/x"), 0x1) == -errno.EINVAL
    buf = t.alloc(64)
    assert sc(t, "readlink", s(t, b"/tmp/s"), buf, 64) == 6 and t.copy_in(buf, 6) == b"/tmp/f"
    assert sc(t, "readlink", s(t, b"/tmp/s"), buf, 3) == 3 and t.copy_in(buf, 3) == b"/tm"
    assert sc(t, "readlink", s(t, b"/tmp/f"), buf, 64) == -errno.EINVAL
    assert sc(t, "readlink", s(t, b"/tmp/s"), buf, 0) == -errno.EINVAL
    assert sc(t, "readlink", s(t, b"/tmp/s"), BAD, 64) == -errno.EFAULT
    assert sc(t, "readlinkat", AT_FDCWD, s(t, b"/tmp/s2"), buf, 64) == 1
    p = sc(t, "openat", AT_FDCWD, s(t, b"/tmp/s"), os.O_PATH | os.O_NOFOLLOW, 0)
    assert sc(t, "readlinkat", p, s(t, b""), buf, 64) == 6
    assert sc(t, "symlink", s(t, b""), s(t, b"/tmp/e")) == -errno.ENOENT


def test_proc_self_fd_readlink(t):
    fd = open_(t, b"/tmp/x", os.O_CREAT | os.O_RDWR)
    buf = t.alloc(64)
    n = sc(t, "readlink", s(t, b"/proc/self/fd/%d" % fd), buf, 64)
    assert t.copy_in(buf, n) == b"/tmp/x"
    n = sc(t, "readlink", s(t, b"/proc/self/exe"), buf, 64)
    assert t.copy_in(buf, n) == t.exe_path


# --- attributes ----------------------------------------------------------------------

def test_chmod_family(t):
    write_file(t, b"/tmp/f", b"")
    assert sc(t, "chmod", s(t, b"/tmp/f"), 0o4755) == 0
    assert stat_(t, b"/tmp/f").st_mode == 0o104755
    fd = open_(t, b"/tmp/f")
    assert sc(t, "fchmod", fd, 0o600) == 0
    assert stat_(t, b"/tmp/f").st_mode == 0o100600
    assert sc(t, "fchmodat", AT_FDCWD, s(t, b"/tmp/f"), 0o640) == 0
    assert stat_(t, b"/tmp/f").st_mode == 0o100640
    assert sc(t, "chmod", s(t, b"/tmp/none"), 0o600) == -errno.ENOENT
    assert sc(t, "fchmod", 99, 0o600) == -errno.EBADF


def test_chown_family_and_non_root(t):
    from types import SimpleNamespace
    write_file(t, b"/tmp/f", b"")
    sc(t, "symlink", s(t, b"/tmp/f"), s(t, b"/tmp/l"))
    assert sc(t, "chown", s(t, b"/tmp/f"), 1000, 1000) == 0
    st = stat_(t, b"/tmp/f")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert sc(t, "lchown", s(t, b"/tmp/l"), 5, -1) == 0
    assert stat_(t, b"/tmp/l", "lstat").st_uid == 5 and stat_(t, b"/tmp/f").st_uid == 1000
    fd = open_(t, b"/tmp/f")
    assert sc(t, "fchown", fd, -1, 7) == 0 and stat_(t, b"/tmp/f").st_gid == 7
    assert sc(t, "fchownat", AT_FDCWD, s(t, b"/tmp/f"), 1, 1, 0x2) == -errno.EINVAL
    assert sc(t, "fchownat", fd, s(t, b""), 2, 2, 0x1000) == 0
    t.creds = SimpleNamespace(uid=1000, gid=1000, euid=1000, egid=1000, suid=1000, sgid=1000,
                              groups=())
    assert sc(t, "chown", s(t, b"/tmp/f"), 0, 0) == -errno.EPERM
    assert sc(t, "chmod", s(t, b"/tmp/f"), 0o777) == -errno.EPERM


def test_utimensat_and_utimes(t):
    write_file(t, b"/tmp/f", b"")
    times = t.put(struct.pack("<qqqq", 100, 5, 200, 6))
    assert sc(t, "utimensat", AT_FDCWD, s(t, b"/tmp/f"), times, 0) == 0
    st = stat_(t, b"/tmp/f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (100 * 10**9 + 5, 200 * 10**9 + 6)
    omit = t.put(struct.pack("<qqqq", 0, (1 << 30) - 2, 300, 0))
    assert sc(t, "utimensat", AT_FDCWD, s(t, b"/tmp/f"), omit, 0) == 0
    st = stat_(t, b"/tmp/f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (100 * 10**9 + 5, 300 * 10**9)
    bad = t.put(struct.pack("<qqqq", 0, 10**9, 0, 0))
    assert sc(t, "utimensat", AT_FDCWD, s(t, b"/tmp/f"), bad, 0) == -errno.EINVAL
    assert sc(t, "utimensat", AT_FDCWD, s(t, b"/tmp/f"), BAD, 0) == -errno.EFAULT
    assert sc(t, "utimensat", AT_FDCWD, s(t, b"/tmp/f"), 0, 0x2) == -errno.EINVAL
    fd = open_(t, b"/tmp/f")
    assert sc(t, "utimensat", fd, 0, 0, 0) == 0                 # NULL path: the fd, now
    assert stat_(t, b"/tmp/f").st_mtime_ns > 300 * 10**9
    assert sc(t, "utimes", s(t, b"/tmp/f"), t.put(struct.pack("<qqqq", 1, 2, 3, 4))) == 0
    assert stat_(t, b"/tmp/f").st_mtime_ns == 3 * 10**9 + 4000


def test_truncate_ftruncate_fallocate(t):
    write_file(t, b"/tmp/f", b"0123456789")
    assert sc(t, "truncate", s(t, b"/tmp/f"), 4) == 0 and stat_(t, b"/tmp/f").st_size == 4
    assert sc(t, "truncate", s(t, b"/tmp/f"), -1) == -errno.EINVAL
    assert sc(t, "truncate", s(t, b"/tmp"), 0) == -errno.EISDIR
    fd = open_(t, b"/tmp/f", os.O_RDWR)
    assert sc(t, "ftruncate", fd, 100) == 0 and stat_(t, b"/tmp/f").st_size == 100
    ro = open_(t, b"/tmp/f")
    assert sc(t, "ftruncate", ro, 0) == -errno.EINVAL
    assert sc(t, "ftruncate", fd, -1) == -errno.EINVAL
    assert sc(t, "ftruncate", 99, 0) == -errno.EBADF
    assert sc(t, "fallocate", fd, 0, 0, 200) == 0 and stat_(t, b"/tmp/f").st_size == 200
    assert sc(t, "fallocate", fd, 3, 0, 10) == -errno.EOPNOTSUPP
    assert sc(t, "fallocate", fd, 0, 0, 0) == -errno.EINVAL
    assert sc(t, "fallocate", ro, 0, 0, 10) == -errno.EBADF


def test_umask(t):
    assert sc(t, "umask", 0o077) == 0o022
    assert sc(t, "umask", 0o7777) == 0o077
    assert t.fs.umask == 0o777


def test_sync_advise_flock(t):
    fd = open_(t, b"/tmp/f", os.O_CREAT | os.O_RDWR)
    r, w = pipe(t)
    assert sc(t, "fsync", fd) == 0 and sc(t, "fdatasync", fd) == 0
    assert sc(t, "fsync", r) == -errno.EINVAL
    assert sc(t, "fsync", 99) == -errno.EBADF
    assert sc(t, "fadvise64", fd, 0, 0, 4) == 0
    assert sc(t, "fadvise64", fd, 0, 0, 9) == -errno.EINVAL
    assert sc(t, "fadvise64", r, 0, 0, 0) == -errno.ESPIPE
    assert sc(t, "flock", fd, 2 | 4) == 0
    assert sc(t, "flock", fd, 3) == -errno.EINVAL
    assert sc(t, "flock", 99, 2) == -errno.EBADF


def test_sendfile_and_copy_file_range(t):
    write_file(t, b"/tmp/src", b"abcdefghij")
    src = open_(t, b"/tmp/src")
    dst = open_(t, b"/tmp/dst", os.O_CREAT | os.O_RDWR)
    assert sc(t, "sendfile", dst, src, 0, 4) == 4
    off = t.put(struct.pack("<q", 6))
    assert sc(t, "sendfile", dst, src, off, 100) == 4
    assert struct.unpack("<q", t.copy_in(off, 8))[0] == 10
    assert sc(t, "lseek", src, 0, 1) == 4                          # untouched by offset form
    buf = t.alloc(16)
    assert sc(t, "pread64", dst, buf, 16, 0) == 8 and t.copy_in(buf, 8) == b"abcdghij"
    assert sc(t, "sendfile", src, dst, 0, 1) == -errno.EBADF       # src not writable
    r, w = pipe(t)
    assert sc(t, "sendfile", w, src, 0, 3) == 3
    assert sc(t, "read", r, buf, 16) == 3 and t.copy_in(buf, 3) == b"efg"
    out = open_(t, b"/tmp/out", os.O_CREAT | os.O_RDWR)
    assert sc(t, "copy_file_range", src, 0, out, 0, 100, 0) == 3  # from offset 7
    assert sc(t, "copy_file_range", src, 0, out, 0, 1, 1) == -errno.EINVAL
    assert sc(t, "copy_file_range", r, 0, out, 0, 1, 0) == -errno.EINVAL
    proc = open_(t, b"/proc/uptime")
    assert sc(t, "copy_file_range", proc, 0, out, 0, 100, 0) == -errno.EXDEV
    import tempfile
    from pyvisor.sentry.vfs import host_file
    with tempfile.TemporaryFile() as tf:
        host = t.fdtable.install(host_file(os.dup(tf.fileno()), b"stdout"))
        assert sc(t, "copy_file_range", src, 0, host, 0, 100, 0) == -errno.EXDEV
    oin = t.put(struct.pack("<q", 0))
    assert sc(t, "copy_file_range", src, oin, out, 0, 2, 0) == 2
    assert sc(t, "pread64", out, buf, 16, 0) == 5 and t.copy_in(buf, 5) == b"hijab"


def test_sync_chroot_utime_readahead(t):
    assert sc(t, "sync") == 0
    fd = open_(t, b"/tmp", os.O_RDONLY)
    assert sc(t, "syncfs", fd) == 0 and sc(t, "syncfs", 99) == -errno.EBADF
    write_file(t, b"/tmp/f", b"abc")
    f = open_(t, b"/tmp/f")
    assert sc(t, "sync_file_range", f, 0, 0, 0) == 0
    assert sc(t, "sync_file_range", f, -1, 0, 0) == -errno.EINVAL
    assert sc(t, "readahead", f, 0, 100) == 0
    assert sc(t, "readahead", fd, 0, 100) == -errno.EINVAL
    assert sc(t, "utime", s(t, b"/tmp/f"), t.put(struct.pack("<qq", 5, 6))) == 0
    assert stat_(t, b"/tmp/f").st_mtime_ns == 6 * 10**9
    assert sc(t, "futimesat", AT_FDCWD, s(t, b"/tmp/f"), t.put(struct.pack("<qqqq", 1, 0, 2, 0))) == 0
    assert stat_(t, b"/tmp/f").st_mtime_ns == 2 * 10**9
    sc(t, "mkdir", s(t, b"/tmp/jail"), 0o755)
    write_file(t, b"/tmp/jail/inside", b"j")
    assert sc(t, "chroot", s(t, b"/tmp/f")) == -errno.ENOTDIR
    assert sc(t, "chroot", s(t, b"/tmp/jail")) == 0
    assert stat_(t, b"/inside").st_size == 1
    assert stat_(t, b"/../../inside").st_size == 1
    assert stat_(t, b"/tmp") == -errno.ENOENT


def test_readv_writev_partial_and_streams(t):
    write_file(t, b"/tmp/f", b"0123456789")
    fd = open_(t, b"/tmp/f", os.O_RDWR)
    x = t.alloc(4)
    assert sc(t, "readv", fd, iov(t, [(x, 4), (BAD, 4)]), 2) == 4      # EFAULT after data
    assert sc(t, "lseek", fd, 0, 1) == 4                                # nothing lost
    assert sc(t, "readv", fd, iov(t, [(BAD, 4)]), 1) == -errno.EFAULT
    assert sc(t, "writev", fd, iov(t, [(t.put(b"ab"), 2), (BAD, 4)]), 2) == 2
    assert sc(t, "pwritev", fd, iov(t, [(t.put(b"Z"), 1), (t.put(b"Y"), 1)]), 2, 0) == 2
    assert sc(t, "preadv", fd, iov(t, [(x, 2), (x + 2, 2)]), 2, 0) == 4
    assert t.copy_in(x, 4) == b"ZY23"
    r, w = pipe(t)
    parts = [(t.put(b"p" * 100), 100), (t.put(b"q" * 100), 100)]
    assert sc(t, "writev", w, iov(t, parts), 2) == 200
    big = t.alloc(300)
    assert sc(t, "readv", r, iov(t, [(big, 150), (big + 150, 150)]), 2) == 200
    assert t.copy_in(big, 200) == b"p" * 100 + b"q" * 100


def test_fcntl_f_notify_is_accepted_on_directories_only():
    import errno as _e
    from pyvisor.sentry.syscalls import fs as _fs
    from pyvisor.sentry.errors import SyscallError as _SE
    from pyvisor.sentry.vfs.testing import make_env
    _k, _v, t = make_env()
    d = _fs.sys_openat(t, (-100) & 0xFFFFFFFFFFFFFFFF, t.cstr(b"/tmp"), 0o200000, 0)
    assert _fs.sys_fcntl(t, d, 1026, 0x80000001) == 0          # DN_MULTISHOT|DN_ACCESS
    f = _fs.sys_openat(t, (-100) & 0xFFFFFFFFFFFFFFFF, t.cstr(b"/tmp/x"), 0o100 | 2, 0o644)
    assert _fs.sys_fcntl(t, f, 1026, 0) == 0                   # no events: a flush, fine anywhere
    try:
        _fs.sys_fcntl(t, f, 1026, 1)
        raise AssertionError("F_NOTIFY on a file must fail")
    except _SE as e:
        assert e.errno == _e.ENOTDIR
