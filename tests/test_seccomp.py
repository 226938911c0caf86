"""The Sentry's and the Gofer's seccomp filters (pyvisor/seccomp.py).

Filters are irreversible, so every test that installs one does it in a
child Python process, never in pytest's. The BPF programs themselves are
also checked by a small BPF interpreter here, syscall by syscall, so the
counts in SENTRY_ALLOWED / GOFER_ALLOWED are the counts the filters allow.
"""

import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap

import pytest

from pyvisor import seccomp
from pyvisor.seccomp import (AUDIT_ARCH_X86_64, GOFER_ALLOWED, GOFER_DENIED, RET_ALLOW,
                             RET_EPERM, SENTRY_ALLOWED, SENTRY_DENIED, ArgBitsClear,
                             ArgBitsSet, ArgIn, build_filter, ret_errno, syscall_number)
from conftest import REPO_ROOT

ROOT = REPO_ROOT
PYTHON = os.path.realpath(sys.executable)
AUDIT_ARCH_I386 = 0x40000003
AF_PACKET = 17


# -- a BPF interpreter, for what the programs decide -------------------------

def run_bpf(prog, nr, args=(0,) * 6, arch=AUDIT_ARCH_X86_64):
    """Evaluate a seccomp BPF program on one call; return its action."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * 6)[:6])
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == 0x20:                        # ld [k]
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:                      # and #k
            acc &= k
        elif code in (0x15, 0x35, 0x45):       # jeq, jge, jset #k
            hit = {0x15: acc == k, 0x35: acc >= k, 0x45: acc & k != 0}[code]
            pc += jt if hit else jf
        elif code == 0x06:                      # ret #k
            return k
        else:
            raise AssertionError("unknown BPF opcode %#x" % code)


def allowed_numbers(prog, probes):
    """Syscall numbers 0..511 that some argument vector in ``probes`` gets through."""
    return {nr for nr in range(512)
            if any(run_bpf(prog, nr, a) == RET_ALLOW for a in probes)}


def probes_for(rules):
    """Argument vectors that satisfy every condition in ``rules``, plus all-zero."""
    probes = [(0,) * 6]
    for cond in rules.values():
        if isinstance(cond, ArgIn):
            for v in cond.values:
                a = [0] * 6
                a[cond.index] = v
                probes.append(tuple(a))
        elif isinstance(cond, ArgBitsSet):
            a = [0] * 6
            a[cond.index] = cond.mask
            probes.append(tuple(a))
    return probes


def numbers(names):
    return {syscall_number(n) for n in names}


# -- the programs, counted --------------------------------------------------

def test_sentry_allowlist_is_what_the_filter_allows():
    prog = seccomp.sentry_filter()
    assert allowed_numbers(prog, probes_for(seccomp._SENTRY_RULES)) == numbers(SENTRY_ALLOWED)


def test_gofer_allowlist_is_what_the_filter_allows():
    prog = seccomp.gofer_filter()
    assert allowed_numbers(prog, probes_for(seccomp._GOFER_RULES)) == numbers(GOFER_ALLOWED)


def test_allowlists_stay_small():
    assert len(SENTRY_ALLOWED) == 65 < 80
    assert len(GOFER_ALLOWED) == 35 < 40


def test_denied_calls_are_denied_whatever_the_arguments():
    must = {"execve", "execveat", "open", "openat", "openat2", "creat", "connect", "bind"}
    assert must <= set(SENTRY_DENIED)
    prog = seccomp.sentry_filter()
    for nr in numbers(SENTRY_DENIED):
        for a in probes_for(seccomp._SENTRY_RULES):
            assert run_bpf(prog, nr, a) == RET_EPERM, nr
    gprog = seccomp.gofer_filter()
    assert {"execve", "socket", "connect", "ptrace", "clone"} <= set(GOFER_DENIED)
    for nr in numbers(GOFER_DENIED):
        assert run_bpf(gprog, nr) == RET_EPERM, nr


def test_gofer_writer_filter_adds_only_the_write_path():
    """A Gofer serving a read-write volume gets the *at() write calls, and
    still no exec, sockets, tracing, mount, chroot or O_TMPFILE."""
    prog = seccomp.gofer_filter(writable=True)
    assert allowed_numbers(prog, probes_for(seccomp._GOFER_WRITE_RULES)) == \
        numbers(seccomp.GOFER_WRITE_ALLOWED)
    assert len(seccomp.GOFER_WRITE_ALLOWED) == 50 < 56
    added = seccomp.GOFER_WRITE_ALLOWED - GOFER_ALLOWED
    assert added == {"mkdirat", "mknodat", "symlinkat", "linkat", "renameat", "unlinkat",
                     "fchmodat", "fchownat", "utimensat", "ftruncate", "pwrite64", "fsync",
                     "fdatasync", "fsetxattr", "fremovexattr"}
    for nr in numbers(seccomp.GOFER_WRITE_DENIED):
        assert run_bpf(prog, nr) == RET_EPERM, nr
    assert {"execve", "socket", "ptrace", "mount", "chroot", "clone"} <= set(seccomp.GOFER_WRITE_DENIED)
    openat = syscall_number("openat")
    assert run_bpf(prog, openat, (0, 0, os.O_RDWR | os.O_CREAT | os.O_EXCL)) == RET_ALLOW
    assert run_bpf(prog, openat, (0, 0, os.O_TMPFILE | os.O_RDWR)) == RET_EPERM


def test_foreign_architecture_and_x32_are_denied():
    for prog in (seccomp.sentry_filter(), seccomp.gofer_filter()):
        read = syscall_number("read")
        assert run_bpf(prog, read) == RET_ALLOW
        assert run_bpf(prog, read, arch=AUDIT_ARCH_I386) == RET_EPERM
        assert run_bpf(prog, read | 0x40000000) == RET_EPERM


def test_sentry_argument_checks():
    prog = seccomp.sentry_filter()
    nr = syscall_number
    assert run_bpf(prog, nr("socket"), (socket.AF_UNIX, 1)) == RET_ALLOW
    for family in (socket.AF_INET, socket.AF_INET6, AF_PACKET, socket.AF_NETLINK):
        assert run_bpf(prog, nr("socket"), (family, 1)) == RET_EPERM
    assert run_bpf(prog, nr("ioctl"), (0, 0x5401)) == RET_ALLOW        # TCGETS
    assert run_bpf(prog, nr("ioctl"), (0, 0x5412)) == RET_EPERM        # TIOCSTI
    assert run_bpf(prog, nr("ptrace"), (0x4206,)) == RET_ALLOW         # PTRACE_SEIZE
    assert run_bpf(prog, nr("ptrace"), (16,)) == RET_EPERM             # PTRACE_ATTACH
    assert run_bpf(prog, nr("ptrace"), (0,)) == RET_EPERM              # PTRACE_TRACEME
    assert run_bpf(prog, nr("clone"), (0x3D0F00,)) == RET_ALLOW        # pthread_create's flags
    assert run_bpf(prog, nr("clone"), (0x1200011,)) == RET_EPERM       # fork()'s flags
    assert run_bpf(prog, nr("clone3")) == ret_errno(errno.ENOSYS)
    assert run_bpf(prog, nr("newfstatat"), (3, 0, 0, 0x1000)) == RET_ALLOW   # fstat()
    assert run_bpf(prog, nr("newfstatat"), (3, 0, 0, 0)) == RET_EPERM        # stat by path


def test_gofer_opens_read_only():
    prog = seccomp.gofer_filter()
    openat = syscall_number("openat")
    for flags in (os.O_RDONLY | os.O_CLOEXEC, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                  os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC):
        assert run_bpf(prog, openat, (0, 0, flags)) == RET_ALLOW
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_CREAT, os.O_RDONLY | os.O_TRUNC,
                  os.O_RDONLY | os.O_APPEND, os.O_TMPFILE | os.O_RDWR):
        assert run_bpf(prog, openat, (0, 0, flags)) == RET_EPERM


def test_build_rejects_an_allowed_denied_call():
    with pytest.raises(ValueError, match="execve"):
        build_filter({"read": None, "execve": None}, ("execve",))
    with pytest.raises(ValueError, match="clone3"):
        build_filter({"clone3": None}, (), {"clone3": errno.ENOSYS})


def test_build_rejects_unknown_syscall():
    with pytest.raises(KeyError):
        build_filter({"no_such_call": None}, ())
    with pytest.raises(KeyError):
        syscall_number("no_such_call")


def test_conditions_compose():
    prog = build_filter({"ioctl": ArgIn(1, [5, 7]), "openat": ArgBitsClear(2, 3),
                         "clone": ArgBitsSet(0, 0x30), "read": None}, ("write",))
    assert [run_bpf(prog, 16, (0, v)) for v in (5, 6, 7)] == [RET_ALLOW, RET_EPERM, RET_ALLOW]
    assert [run_bpf(prog, 257, (0, 0, v)) for v in (4, 1, 2)] == [RET_ALLOW, RET_EPERM, RET_EPERM]
    assert [run_bpf(prog, 56, (v,)) for v in (0x31, 0x10)] == [RET_ALLOW, RET_EPERM]
    assert run_bpf(prog, 0) == RET_ALLOW
    assert run_bpf(prog, 1) == RET_EPERM       # denied
    assert run_bpf(prog, 3) == RET_EPERM       # not listed


# -- the filters, installed in a child process -----------------------------

PRELUDE = """
import ctypes, errno, json, os, socket, sys, threading, time
from pyvisor import seccomp
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def err(fn, *args, **kw):
    try:
        fn(*args, **kw)
        return 0
    except OSError as e:
        return e.errno

def raw(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return ctypes.get_errno() if r == -1 else 0

out = {}
"""


def confined(body, *, setup=""):
    """Run ``setup``, install a filter (body says which), run the rest; return ``out``."""
    code = PRELUDE + textwrap.dedent(setup) + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    p = subprocess.run([PYTHON, "-c", code], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout.decode().splitlines()[-1])


def test_sentry_cannot_open_exec_or_make_network_sockets(tmp_path):
    f = tmp_path / "secret"
    f.write_bytes(b"host data")
    out = confined("""
        seccomp.install_sentry_filter()
        out["open"] = err(open, %(f)r, "rb")
        out["openat"] = err(os.open, "secret", os.O_RDONLY, dir_fd=dirfd)
        out["raw_open"] = raw(2, 0, 0)
        out["creat"] = raw(85, 0, 0)
        out["openat2"] = raw(437, -100, 0, 0, 0)
        out["stat"] = err(os.stat, %(f)r)
        out["execv"] = err(os.execv, "/bin/true", ["true"])
        out["execveat"] = raw(322, -100, 0, 0, 0, 0)
        out["inet"] = err(socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        out["inet6"] = err(socket.socket, socket.AF_INET6, socket.SOCK_DGRAM)
        out["packet"] = err(socket.socket, 17, socket.SOCK_RAW)
        out["fork"] = err(os.fork)
        out["x32_getpid"] = raw(0x40000000 | 39)
        out["attach"] = raw(101, 16, os.getppid(), 0, 0)
        out["tiocsti"] = err(fcntl.ioctl, a.fileno(), 0x5412, b"x")
        out["getdents"] = raw(217, dirfd, 0, 0)
        out["read_held_fd"] = os.pread(held, 4, 0).decode()
        out["fstat_held_fd"] = os.fstat(held).st_size
    """ % {"f": str(f)}, setup="""
        dirfd = os.open(%r, os.O_RDONLY | os.O_DIRECTORY)
        held = os.open(%r, os.O_RDONLY)
        a, b = socket.socketpair()
        import fcntl
    """ % (str(tmp_path), str(f)))
    eperm = errno.EPERM
    assert out.pop("read_held_fd") == "host" and out.pop("fstat_held_fd") == 9
    assert out == {k: eperm for k in out}, out


def test_sentry_can_still_do_its_work():
    out = confined("""
        seccomp.install_sentry_filter()
        big = bytearray(64 << 20)               # mmap'd by the allocator
        big[-1] = 1
        del big
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        out["unix_socket"] = s.family == socket.AF_UNIX
        s.close()
        x, y = socket.socketpair()
        x.sendall(b"ping")
        out["socketpair"] = y.recv(4).decode()
        r, w = held_pipe
        socket.send_fds(x, [b"fd"], [r])
        msg, fds, _, _ = socket.recv_fds(y, 2, 1)
        os.write(w, b"via donated fd")
        out["donated"] = os.read(fds[0], 64).decode()
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(i * i)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["threads"] = sorted(results)
        t0 = time.monotonic()
        time.sleep(0.01)
        out["slept"] = time.monotonic() - t0 >= 0.01
        out["time"] = time.time() > 1e9
        out["urandom"] = len(os.urandom(16))
        out["cpus"] = (os.cpu_count() or 0) > 0
        out["connect_unix_path"] = err(socket.socket(socket.AF_UNIX).connect, "/nonexistent")
    """, setup="""
        held_pipe = os.pipe()
    """)
    assert out == {"unix_socket": True, "socketpair": "ping", "donated": "via donated fd",
                   "threads": [0, 1, 4, 9], "slept": True, "time": True, "urandom": 16,
                   "cpus": True, "connect_unix_path": errno.EPERM}


def test_preimport_makes_lazy_imports_work():
    """Without preimport(), the Sentry's lazy imports fail once confined."""
    out = confined("""
        seccomp.preimport()
        seccomp.install_sentry_filter()
        import pyvisor.sentry.strace, traceback, resource
        out["lazy"] = sorted(m for m in ("pyvisor.sentry.strace", "traceback", "resource")
                             if m in sys.modules)
        try:
            import wave
            out["new_import"] = "imported"
        except Exception as e:          # noqa: BLE001 - which one depends on sys.path
            out["new_import"] = type(e).__name__
        out["report"] = "ZeroDivisionError" in "".join(
            traceback.format_exception(ZeroDivisionError("x")))
    """)
    assert out == {"lazy": ["pyvisor.sentry.strace", "resource", "traceback"],
                   "new_import": out["new_import"], "report": True}
    assert out["new_import"] in ("ModuleNotFoundError", "PermissionError")


def test_foreign_architecture_call_is_denied():
    """An int 0x80 (i386 ABI) getpid from a hand-made code page gets EPERM."""
    out = confined("""
        import mmap
        # mov eax, 20 (i386 getpid); int 0x80; ret  -- eax comes back as the result
        code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])
        page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(code)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        fn = ctypes.CFUNCTYPE(ctypes.c_int)(addr)
        out["before"] = fn() == os.getpid()
        seccomp.install_sentry_filter()
        out["after"] = fn()
    """)
    assert out == {"before": True, "after": -errno.EPERM}


def test_log_denials_still_denies():
    out = confined("""
        seccomp.install_sentry_filter(log_denials=True)
        out["exec"] = err(os.execv, "/bin/true", ["true"])
        out["write"] = os.write(1, b"") == 0
    """)
    assert out == {"exec": errno.EPERM, "write": True}


def test_filter_applies_to_threads_started_before():
    out = confined("""
        go, done = threading.Event(), threading.Event()
        def worker():
            go.wait()
            out["thread_open"] = err(open, "/etc/hostname", "rb")
            done.set()
        threading.Thread(target=worker).start()
        seccomp.install_sentry_filter()
        go.set()
        done.wait(10)
    """)
    assert out == {"thread_open": errno.EPERM}


def test_gofer_filter(tmp_path):
    (tmp_path / "f").write_bytes(b"served")
    out = confined("""
        seccomp.install_gofer_filter()
        fd = os.open("f", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
        rfd = os.open("/proc/self/fd/" + str(fd), os.O_RDONLY | os.O_CLOEXEC)
        out["read"] = os.pread(rfd, 6, 0).decode()
        out["listdir"] = os.listdir(root)
        out["write_open"] = err(os.open, "f", os.O_WRONLY, dir_fd=root)
        out["create"] = err(os.open, "new", os.O_RDONLY | os.O_CREAT, 0o644, dir_fd=root)
        out["exec"] = err(os.execv, "/bin/true", ["true"])
        out["unix_socket"] = err(socket.socket, socket.AF_UNIX)
        out["inet_socket"] = err(socket.socket, socket.AF_INET)
        out["kill"] = err(os.kill, os.getppid(), 0)
        out["fork"] = err(os.fork)
        out["mkdir"] = err(os.mkdir, "d", dir_fd=root)
        out["unlink"] = err(os.unlink, "f", dir_fd=root)
    """, setup="""
        root = os.open(%r, os.O_RDONLY | os.O_DIRECTORY)
    """ % str(tmp_path))
    assert out.pop("read") == "served"
    assert out.pop("listdir") == ["f"]
    assert out == {k: errno.EPERM for k in out}, out
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_install_failure_is_an_oserror():
    """A program the kernel rejects (a jump out of range) raises, and installs nothing."""
    out = confined("""
        out["bad"] = err(seccomp.install, [(0x15, 5, 5, 0)])
        out["open_still_works"] = err(open, "/etc/hostname", "rb")
    """)
    assert out == {"bad": errno.EINVAL, "open_still_works": 0}


# -- the Sentry confined for whole runs --------------------------------------

RUNNER = """
import errno, os, sys
from pyvisor import seccomp
from pyvisor.config import SandboxConfig
from pyvisor.sentry.kernel import Kernel
from pyvisor.sentry.syscalls.table import build_table
argv = tuple(os.fsencode(a) for a in sys.argv[2:])
env = tuple(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in os.environ.items())
k = Kernel(SandboxConfig(argv=argv, env=env, cwd="/", strace=sys.argv[1] == "strace"), build_table())
k.start()   # confines the Sentry (SandboxConfig.confine defaults to True)
try:
    code = k.run()
finally:
    k.stop()
try:
    open("/etc/hostname", "rb")
    sys.exit("the Sentry was not confined")
except PermissionError:
    pass
sys.stdout.flush()
os._exit(code if 0 <= code < 256 else 255)
"""


def confined_run(argv, strace=False):
    return subprocess.run([PYTHON, "-c", RUNNER, "strace" if strace else "-"] + argv,
                          capture_output=True, timeout=120, cwd="/")


@pytest.mark.parametrize("argv", [
    ["/bin/ls", "-la", "/usr/bin/env", "/etc/passwd", "/bin"],   # no "total": st_blocks differ
    [PYTHON, "-c", "import json, sqlite3, hashlib; print(json.dumps(hashlib.sha1(b'x').hexdigest()))"],
    ["sqlite3", ":memory:", "create table t(x); insert into t values (1),(2); select sum(x) from t;"],
    ["/bin/cat", "/etc/passwd", "/nonexistent"],
], ids=["ls", "python", "sqlite3", "cat"])
def test_confined_sentry_runs_programs_as_natively(argv):
    if shutil.which(argv[0]) is None:
        pytest.skip("%s not installed" % argv[0])
    native = subprocess.run(argv, capture_output=True, timeout=60, cwd="/")
    boxed = confined_run(argv)
    assert (boxed.stdout, boxed.returncode) == (native.stdout, native.returncode), boxed.stderr


def test_confined_sentry_with_strace():
    boxed = confined_run(["/bin/true"], strace=True)
    assert boxed.returncode == 0, boxed.stderr
    assert b"exit_group(0)" in boxed.stderr
