"""Seccomp confinement of the Sentry, the Gofer and the ptrace stub (DESIGN.md, invariants 4, 6).

Each process installs, once its start-up is done, an ALLOWLIST filter on
itself: a host system call not listed fails with EPERM (never a kill: a
denied call surfaces as a Python OSError that the Sentry can report). The
calls that would reach the host's files, programs or network are also named
in an explicit deny list, which the builder checks against the allowlist.

Sentry: after ``Kernel.start()`` it holds every host resource it needs (the
Gofer socket, the memory file, the stubs, stdio), so it cannot open, exec
or create network sockets. It may ptrace and kill by pid: what makes that
safe is its pid namespace (confine.py), in which it is PID 1 and sees only
its own stubs and Gofer; no host pid can be named from there. Gofer: it must open files under its root (by
``openat`` relative to fds it holds; seccomp cannot check paths), so it may
open read-only, but never exec, connect, trace or write.

Why hand-written BPF and not libseccomp (``pyseccomp``): importing
pyseccomp costs ~20 ms of start-up (it runs ``ctypes.util.find_library``
twice) and needs the system's libseccomp; the filter here is one linear
program of about a hundred instructions that reads as the rules do. The
kernel's seccomp action cache (Linux >= 5.11) makes the calls allowed
whatever their arguments cost nothing per call.

Argument checks read only the low 32 bits of an argument: the checked
arguments are C ints or unsigned ints (the kernel ignores the upper half),
or, for ptrace's ``long request`` and clone's flags, values whose upper
half the kernel rejects or never uses.

Typical use in the Sentry (after the program is loaded)::

    seccomp.preimport()
    seccomp.install_sentry_filter()
"""

import ctypes
import errno
import importlib
import importlib.machinery
import os
import socket
import struct

from pyvisor.abi import numbers as _numbers
from pyvisor.abi.flags import PR_SET_NO_NEW_PRIVS, SECCOMP_SET_MODE_FILTER

# -- BPF and seccomp constants (linux/filter.h, linux/seccomp.h, linux/audit.h)

_LD_W_ABS = 0x20          # BPF_LD | BPF_W | BPF_ABS
_ALU_AND_K = 0x54         # BPF_ALU | BPF_AND | BPF_K
_JEQ_K = 0x15             # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35             # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45            # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06             # BPF_RET | BPF_K

_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16     # struct seccomp_data
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000


def ret_errno(err):
    """The SECCOMP_RET_ERRNO action that fails a call with ``err``."""
    return _RET_ERRNO | (err & 0xFFFF)


RET_EPERM = ret_errno(errno.EPERM)

_SECCOMP_FILTER_FLAG_TSYNC = 1
_SECCOMP_FILTER_FLAG_LOG = 2

# -- argument conditions ------------------------------------------------------


class ArgIn:
    """Allow the call only if argument ``index`` is one of ``values``."""

    def __init__(self, index, values):
        self.index = index
        self.values = tuple(sorted(set(values)))

    def code(self):
        prog = [(_LD_W_ABS, 0, 0, _OFF_ARGS + 8 * self.index)]
        for v in self.values:
            prog += [(_JEQ_K, 0, 1, v), (_RET_K, 0, 0, RET_ALLOW)]
        return prog


class ArgBitsClear:
    """Allow the call only if argument ``index`` has none of ``mask``'s bits."""

    def __init__(self, index, mask):
        self.index, self.mask = index, mask

    def code(self):
        return [(_LD_W_ABS, 0, 0, _OFF_ARGS + 8 * self.index), (_ALU_AND_K, 0, 0, self.mask),
                (_JEQ_K, 0, 1, 0), (_RET_K, 0, 0, RET_ALLOW)]


class ArgBitsSet:
    """Allow the call only if argument ``index`` has all of ``mask``'s bits."""

    def __init__(self, index, mask):
        self.index, self.mask = index, mask

    def code(self):
        return [(_LD_W_ABS, 0, 0, _OFF_ARGS + 8 * self.index), (_ALU_AND_K, 0, 0, self.mask),
                (_JEQ_K, 0, 1, self.mask), (_RET_K, 0, 0, RET_ALLOW)]


# -- the rules ----------------------------------------------------------------

AT_EMPTY_PATH = 0x1000
CLONE_THREAD = 0x10000
# Terminal ioctls the Sentry forwards to a host tty (vfs/host.py). Not
# TIOCSTI (which would push input into the user's terminal), nor any other.
# KVM platform (_kvm.pyx): the vCPU loop and what adopting a task needs
# (a new vCPU, its registers, FPU and CPUID). Only on the KVM fds we hold:
# /dev/kvm itself cannot be opened any more.
_KVM_IOCTLS = (
    0xAE03, 0xAE04, 0xC008AE05,   # KVM_CHECK_EXTENSION, GET_VCPU_MMAP_SIZE, GET_SUPPORTED_CPUID
    0xAE41, 0x4020AE46,           # KVM_CREATE_VCPU, SET_USER_MEMORY_REGION
    0xAE80,                       # KVM_RUN
    0x8090AE81, 0x4090AE82,       # KVM_GET/SET_REGS
    0x8138AE83, 0x4138AE84,       # KVM_GET/SET_SREGS
    0x4008AE89, 0x4008AE90,       # KVM_SET_MSRS, SET_CPUID2
    0x9000AEA4, 0x5000AEA5,       # KVM_GET/SET_XSAVE
    0x9000AECF,                   # KVM_GET_XSAVE2
)
_TTY_IOCTLS = (0x5401, 0x5402, 0x5403, 0x5404,   # TCGETS, TCSETS, TCSETSW, TCSETSF
               0x5413, 0x5414,                   # TIOCGWINSZ, TIOCSWINSZ
               0x541B)                           # FIONREAD
# ptrace requests of the platform (_fastpath.pyx), and the register, event
# and signal requests a platform needs for signals and clone. Not
# PTRACE_ATTACH, PTRACE_TRACEME nor PEEK/POKE (memory goes by the memory file).
_PTRACE_REQUESTS = (
    7, 8,                   # PTRACE_CONT, PTRACE_KILL
    12, 13, 14, 15,         # PTRACE_GETREGS, SETREGS, GETFPREGS, SETFPREGS
    17,                     # PTRACE_DETACH
    31, 32,                 # PTRACE_SYSEMU, PTRACE_SYSEMU_SINGLESTEP
    0x4200, 0x4201,         # PTRACE_SETOPTIONS, PTRACE_GETEVENTMSG
    0x4202, 0x4203,         # PTRACE_GETSIGINFO, PTRACE_SETSIGINFO
    0x4204, 0x4205,         # PTRACE_GETREGSET, PTRACE_SETREGSET
    0x4206, 0x4207,         # PTRACE_SEIZE (stubs made by an injected clone), PTRACE_INTERRUPT
    0x420e,                 # PTRACE_GET_SYSCALL_INFO: a call's ABI where `syscall` keeps rcx (FRED)
)

# What the Sentry does after start-up, found by tracing real runs (ls -la /,
# python3, sqlite3, --strace) with strace; each entry says why.
_SENTRY_RULES = {
    # Data on fds it already holds: host stdio, the Gofer socket, files the
    # Gofer donated, the memory file.
    "read": None,
    "write": None,
    "readv": None,
    "writev": None,
    "pread64": None,           # donated files; the memory file
    "pwrite64": None,
    "preadv": None,
    "pwritev": None,
    "preadv2": None,           # os.preadv on donated files
    "pwritev2": None,
    "lseek": None,             # host stdio when it is a file
    "close": None,
    "fstat": None,
    "newfstatat": ArgIn(3, [AT_EMPTY_PATH]),   # glibc's fstat(); not a stat by path
    "fcntl": None,             # F_GETFL of host fds, F_DUPFD_CLOEXEC
    "dup": None,               # host stdio for /dev/stdin re-opens
    "dup2": None,
    "dup3": None,
    "ioctl": ArgIn(1, _TTY_IOCTLS + _KVM_IOCTLS),
    "fallocate": None,         # punching holes in the memory file (freed pages)
    # The Gofer socket (9P messages, donated fds with SCM_RIGHTS).
    "recvfrom": None,
    "sendto": None,
    "recvmsg": None,
    "sendmsg": None,
    "shutdown": None,
    "socket": ArgIn(0, [socket.AF_UNIX]),      # never a network socket; no connect/bind
    "socketpair": ArgIn(0, [socket.AF_UNIX]),
    # Python's allocator, and the memory file's one mapping.
    "mmap": None,
    "munmap": None,
    "mprotect": None,
    "mremap": None,
    "madvise": None,
    "brk": None,
    # Driving the stubs.
    "ptrace": ArgIn(0, _PTRACE_REQUESTS),   # its stubs: the only tracees its pid namespace holds
    "wait4": None,             # stub stops; the Gofer's exit (subprocess.wait)
    "waitid": None,
    "kill": None,              # SIGKILL to a stub (only its own pid namespace's pids exist for it)
    "tgkill": None,
    # Signals (Python handlers, SIGINT/SIGQUIT ignored during a run).
    "rt_sigaction": None,
    "rt_sigprocmask": None,
    "sched_yield": None,       # the KVM platform waiting for a kicked vCPU to leave KVM_RUN
    "poll": None,              # readiness of the caller's stdio (vfs/host.py)
    "ppoll": None,
    "rt_sigtimedwait": None,   # the thread that forwards host signals (Ctrl-C) to the sandbox
    "rt_sigreturn": None,
    "restart_syscall": None,   # an interrupted sleep resumed by the kernel
    # Threads and locks (clone only for threads: no new processes).
    "clone": ArgBitsSet(0, CLONE_THREAD),
    "futex": None,
    "set_robust_list": None,
    "rseq": None,
    "exit": None,
    "exit_group": None,
    "getpid": None,
    "gettid": None,
    "sched_getaffinity": None,  # os.cpu_count()'s fallback once /sys cannot be read
    "sched_setaffinity": None,  # pinning a tracer thread to its stub's CPU
    "sched_yield": None,
    # Time and resources, for the sandbox's clocks, times(2), getrusage(2), sysinfo(2).
    "clock_gettime": None,
    "clock_getres": None,
    "gettimeofday": None,
    "clock_nanosleep": None,
    "nanosleep": None,
    "times": None,
    "getrusage": None,
    "sysinfo": None,
    "getrandom": None,         # os.urandom: AT_RANDOM, /dev/urandom, getrandom(2)
}

# Calls named here fail with another errno than EPERM, on purpose.
_SENTRY_ERRNO = {
    # glibc's pthread_create tries clone3 and falls back to clone on ENOSYS;
    # clone3's flags are in memory, where seccomp cannot check CLONE_THREAD.
    "clone3": errno.ENOSYS,
}

# Never allowed, whatever the allowlist says; checked at build time.
_ALWAYS_DENIED = ("execve", "execveat", "open", "openat", "openat2", "creat")
SENTRY_DENIED = _ALWAYS_DENIED + (
    "connect", "bind", "listen", "accept", "accept4",
    "stat", "lstat", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
    "getdents64", "chdir", "fchdir", "chroot", "mount", "umount2", "pivot_root",
    "fork", "vfork", "memfd_create", "process_vm_readv", "process_vm_writev",
    "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
    "link", "linkat", "symlink", "symlinkat", "mknod", "mknodat", "truncate",
    "chmod", "fchmodat", "chown", "fchownat", "setuid", "setgid", "prctl",
)

# The Gofer, after start-up: the 9P serve loop, as traced serving real runs.
_O_WRITE_OR_CREATE = 0o3 | 0o100 | 0o1000 | 0o2000 | 0o20000000   # ACCMODE CREAT TRUNC APPEND TMPFILE
_GOFER_RULES = {
    "recvfrom": None,          # 9P requests
    "sendto": None,            # 9P replies
    "sendmsg": None,           # replies that donate an fd (SCM_RIGHTS)
    "shutdown": None,          # end of service
    # Walking and reading under its root, read-only: openat is relative to an
    # fd it holds (O_PATH|O_NOFOLLOW), or a re-open through /proc/self/fd.
    "openat": ArgBitsClear(2, _O_WRITE_OR_CREATE),
    "newfstatat": None,        # fstat of fids; scandir entries
    "fstat": None,
    "getdents64": None,        # Treaddir
    "lseek": None,             # rewinding a directory
    "readlinkat": None,        # Treadlink
    "fstatfs": None,           # Tstatfs
    "fgetxattr": None,         # Txattrwalk of a user.* attribute
    "flistxattr": None,
    "pread64": None,           # Tread of files not donated
    "read": None,
    "fcntl": None,             # os.dup is F_DUPFD_CLOEXEC
    "close": None,             # Tclunk
    "write": None,             # a report on stderr
    # Python itself.
    "mmap": None,
    "munmap": None,
    "mprotect": None,
    "mremap": None,
    "madvise": None,
    "brk": None,
    "futex": None,
    "rt_sigaction": None,
    "rt_sigprocmask": None,
    "rt_sigreturn": None,
    "restart_syscall": None,
    "getrandom": None,
    "clock_gettime": None,
    "getpid": None,
    "gettid": None,
    "exit": None,
    "exit_group": None,
}
GOFER_DENIED = ("execve", "execveat", "open", "creat", "openat2", "socket", "socketpair",
                "connect", "bind", "listen", "accept", "accept4", "ptrace", "clone", "clone3",
                "fork", "vfork", "kill", "tgkill", "unlinkat", "renameat2", "mkdirat", "linkat",
                "symlinkat", "mknodat", "fchmodat", "fchownat", "ftruncate", "pwrite64",
                "mount", "chroot", "prctl", "process_vm_writev")

# The Gofer that serves a read-write volume (-v HOST:PATH[:rw]): the 9P2000.L
# write path on top, every call relative to an fd it holds. Still no exec,
# sockets, tracing, mount or chroot; no O_TMPFILE.
_GOFER_WRITE_RULES = dict(_GOFER_RULES)
_GOFER_WRITE_RULES.update({
    "openat": ArgBitsClear(2, 0o20000000),   # O_CREAT/O_TRUNC/writing yes, __O_TMPFILE no
    "mkdirat": None,           # Tmkdir
    "mknodat": None,           # Tmknod (files, FIFOs, sockets; devices refused before)
    "symlinkat": None,         # Tsymlink
    "linkat": None,            # Tlink
    "renameat": None,          # Trenameat
    "unlinkat": None,          # Tunlinkat
    "fchmodat": None,          # Tsetattr mode (through /proc/self/fd)
    "fchownat": None,          # Tsetattr uid/gid
    "utimensat": None,         # Tsetattr times
    "ftruncate": None,         # Tsetattr size
    "pwrite64": None,          # Twrite
    "fsync": None,             # Tfsync
    "fdatasync": None,
    "fsetxattr": None,         # Tclunk of a Txattrcreate fid (user.* only)
    "fremovexattr": None,
})
GOFER_WRITE_DENIED = tuple(n for n in GOFER_DENIED if n not in _GOFER_WRITE_RULES)

SENTRY_ALLOWED = frozenset(_SENTRY_RULES)
GOFER_ALLOWED = frozenset(_GOFER_RULES)
GOFER_WRITE_ALLOWED = frozenset(_GOFER_WRITE_RULES)


# -- building ------------------------------------------------------------------


def syscall_number(name):
    """The x86-64 number of syscall ``name``; KeyError if there is none."""
    nr = getattr(_numbers, "NR_" + name, None)
    if nr is None:
        raise KeyError("no x86-64 syscall %r" % name)
    return nr


def _one_rule(nr, cond):
    """Code for one allowed syscall: a match falls into its checks; a miss skips them."""
    body = cond.code() + [(_RET_K, 0, 0, RET_EPERM)]
    if len(body) > 255:
        raise ValueError("rule for syscall %d too long for a BPF jump" % nr)
    return [(_JEQ_K, 0, len(body), nr)] + body


def build_filter(allowed, denied, errnos=None):
    """The BPF program (a list of (code, jt, jf, k)) for an allowlist.

    ``allowed`` maps syscall names to None (always allowed) or a condition
    on an argument; ``denied`` names calls that must never be allowed (a
    ValueError if one is in ``allowed``); ``errnos`` maps names to the errno
    they fail with. Everything else, a foreign architecture and the x32 ABI
    fail with EPERM.
    """
    errnos = errnos or {}
    clash = set(allowed) & (set(denied) | set(errnos))
    if clash:
        raise ValueError("allowed and denied: %s" % ", ".join(sorted(clash)))
    prog = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (_RET_K, 0, 0, RET_EPERM),
        (_LD_W_ABS, 0, 0, _OFF_NR),
        (_JGE_K, 0, 1, X32_SYSCALL_BIT),
        (_RET_K, 0, 0, RET_EPERM),
    ]
    for name in denied:
        prog += [(_JEQ_K, 0, 1, syscall_number(name)), (_RET_K, 0, 0, RET_EPERM)]
    for name, err in sorted(errnos.items()):
        prog += [(_JEQ_K, 0, 1, syscall_number(name)), (_RET_K, 0, 0, ret_errno(err))]
    for name, cond in sorted(allowed.items()):
        if cond is not None:
            prog += _one_rule(syscall_number(name), cond)
    plain = sorted(syscall_number(n) for n, c in allowed.items() if c is None)
    if len(plain) > 255:
        raise ValueError("too many plain rules for one BPF jump: %d" % len(plain))
    for i, nr in enumerate(plain):
        # Jump over the remaining checks and the default to the final ALLOW.
        prog.append((_JEQ_K, len(plain) - i, 0, nr))
    prog += [(_RET_K, 0, 0, RET_EPERM), (_RET_K, 0, 0, RET_ALLOW)]
    if len(prog) > 4096:            # BPF_MAXINSNS
        raise ValueError("filter too long: %d instructions" % len(prog))
    return prog


def sentry_filter():
    """The Sentry's BPF program; see build_filter()."""
    return build_filter(_SENTRY_RULES, SENTRY_DENIED, _SENTRY_ERRNO)


def gofer_filter(writable=False):
    """The Gofer's BPF program; see build_filter(). `writable` for a Gofer
    that serves a read-write volume."""
    if writable:
        return build_filter(_GOFER_WRITE_RULES, GOFER_WRITE_DENIED)
    return build_filter(_GOFER_RULES, GOFER_DENIED)


# -- the ptrace stub's filter ---------------------------------------------------
#
# A stub (platform/stub.S) runs application code under PTRACE_SYSEMU, so the
# application's own `syscall`s stop before seccomp runs and are skipped: this
# filter never sees them. It sees (a) the host calls the Sentry injects at the
# stub's own syscall instructions and (b) the kernel's emulation of the
# legacy vsyscall page (a call to 0xffffffffff600000 + 0/0x400/0x800 is
# gettimeofday/time/getcpu run by the host with no ptrace stop; the kernel
# asks seccomp first, with the vsyscall address as instruction pointer).
# So: ALLOW exactly the injected calls, at the instruction that makes each,
# with their fd and flag arguments; TRAP the three vsyscall forms (SIGSYS,
# which the Sentry serves); KILL the process for anything else.

_OFF_IP = 8
RET_TRAP = 0x00030000
RET_KILL_PROCESS = 0x80000000
VSYSCALL_PAGE = 0xFFFFFFFFFF600000
# Linux's vsyscall page layout (arch/x86/entry/vsyscall/vsyscall_64.c).
VSYSCALLS = ((0x000, "gettimeofday"), (0x400, "time"), (0x800, "getcpu"))


class Eq:
    """Argument ``index`` is exactly ``value`` (all 64 bits)."""

    def __init__(self, index, value):
        self.index, self.value = index, value & 0xFFFFFFFFFFFFFFFF

    def code(self, fail):
        off = _OFF_ARGS + 8 * self.index
        return [(_LD_W_ABS, 0, 0, off), (_JEQ_K, 0, fail, self.value & 0xFFFFFFFF),
                (_LD_W_ABS, 0, 0, off + 4), (_JEQ_K, 0, fail, self.value >> 32)]


class Within:
    """Argument ``index`` has no bit outside ``mask`` (all 64 bits)."""

    def __init__(self, index, mask):
        self.index, self.mask = index, mask

    def code(self, fail):
        off = _OFF_ARGS + 8 * self.index
        return [(_LD_W_ABS, 0, 0, off), (_ALU_AND_K, 0, 0, ~self.mask & 0xFFFFFFFF),
                (_JEQ_K, 0, fail, 0),
                (_LD_W_ABS, 0, 0, off + 4), (_JEQ_K, 0, fail, 0)]


def _stub_rule(nr, ip, checks, action):
    """One (call, instruction pointer, argument checks) -> action; a miss falls past it.

    ``fail`` in the condition code is a placeholder resolved here to a jump
    past the rule's return.
    """
    FAIL = object()
    body = [(_LD_W_ABS, 0, 0, _OFF_NR), (_JEQ_K, 0, FAIL, nr),
            (_LD_W_ABS, 0, 0, _OFF_IP), (_JEQ_K, 0, FAIL, ip & 0xFFFFFFFF),
            (_LD_W_ABS, 0, 0, _OFF_IP + 4), (_JEQ_K, 0, FAIL, ip >> 32)]
    for c in checks:
        body += c.code(FAIL)
    body.append((_RET_K, 0, 0, action))
    out = []
    for i, (code, jt, jf, k) in enumerate(body):
        if jf is FAIL:
            jf = len(body) - i - 1
        out.append((code, jt, jf, k))
    return out


def stub_rules(sites, memfd, ctrlfd, ctrl_page):
    """The stub's rules: (name, nr, ip, checks, action, why), in the order checked.

    ``sites`` gives the address just after each of the stub's syscall
    instructions (what the kernel reports as the instruction pointer):
    ``edit`` (_start: single edits, exit), ``batch`` (batch_entry),
    ``clone``, ``pdeathsig`` and ``pause`` (clone_entry). ``ctrl_page`` is
    where the control page is mapped.
    """
    MAP_SHARED, MAP_FIXED, PROT_RWX = 0x01, 0x10, 0x7
    CLONE_PARENT, CLONE_THREAD_FLAGS = 0x8000, 0x50F00   # VM FS FILES SIGHAND THREAD SYSVSEM
    PR_SET_PDEATHSIG, SIGKILL = 1, 9
    mem_map = [Eq(4, memfd), Eq(3, MAP_SHARED | MAP_FIXED), Within(2, PROT_RWX)]
    clone_rest = [Eq(1, 0), Eq(2, 0), Eq(3, 0), Eq(4, 0)]
    n = syscall_number
    rules = [
        ("mmap", n("mmap"), sites["batch"], mem_map, RET_ALLOW,
         "a batched edit: memory-file pages, shared and fixed"),
        ("munmap", n("munmap"), sites["batch"], [], RET_ALLOW, "a batched edit"),
        ("mprotect", n("mprotect"), sites["batch"], [Within(2, PROT_RWX)], RET_ALLOW,
         "a batched edit"),
        ("mmap", n("mmap"), sites["edit"], mem_map, RET_ALLOW,
         "an edit made alone (no control page)"),
        ("mmap", n("mmap"), sites["edit"],
         [Eq(0, ctrl_page), Eq(1, 4096), Eq(2, 1), Eq(3, MAP_SHARED | MAP_FIXED), Eq(4, ctrlfd)],
         RET_ALLOW, "the process's control page, read-only"),
        ("munmap", n("munmap"), sites["edit"], [], RET_ALLOW,
         "an edit made alone; clearing a clone's inherited mappings"),
        ("mprotect", n("mprotect"), sites["edit"], [Within(2, PROT_RWX)], RET_ALLOW,
         "an edit made alone"),
        ("exit", n("exit"), sites["edit"], [], RET_ALLOW, "ending one stub thread"),
        ("clone", n("clone"), sites["clone"], [Eq(0, CLONE_PARENT)] + clone_rest, RET_ALLOW,
         "fork: a new stub process, child of the Sentry"),
        ("clone", n("clone"), sites["clone"], [Eq(0, CLONE_THREAD_FLAGS)] + clone_rest, RET_ALLOW,
         "a new thread: a new stub thread"),
        ("prctl", n("prctl"), sites["pdeathsig"], [Eq(0, PR_SET_PDEATHSIG), Eq(1, SIGKILL)],
         RET_ALLOW, "a new stub dies with the Sentry"),
        ("pause", n("pause"), sites["pause"], [], RET_ALLOW,
         "a new stub waits to be seized; a parked leader"),
    ]
    for off, name in VSYSCALLS:
        rules.append((name, n(name), VSYSCALL_PAGE + off, [], RET_TRAP,
                      "the vsyscall page: SIGSYS, served by the Sentry"))
    return rules


def stub_filter(sites, memfd, ctrlfd, ctrl_page):
    """The ptrace stub's BPF program (see stub_rules); anything else kills the stub."""
    prog = [(_LD_W_ABS, 0, 0, _OFF_ARCH), (_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
            (_RET_K, 0, 0, RET_KILL_PROCESS)]
    for _name, nr, ip, checks, action, _why in stub_rules(sites, memfd, ctrlfd, ctrl_page):
        prog += _stub_rule(nr, ip, checks, action)
    prog.append((_RET_K, 0, 0, RET_KILL_PROCESS))
    if len(prog) > 4096:
        raise ValueError("stub filter too long: %d instructions" % len(prog))
    return prog


def encode(prog):
    """A BPF program as the bytes of its struct sock_filter array."""
    return b"".join(struct.pack("<HBBI", *insn) for insn in prog)


# -- installing ------------------------------------------------------------------


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(prog, log_denials=False):
    """Install a BPF program on every thread of this process, with no_new_privs.

    Irreversible. ``log_denials`` asks the kernel to log every denied call
    to the audit log (SECCOMP_FILTER_FLAG_LOG). Raises OSError on failure.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    raw = encode(prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(prog), ctypes.addressof(buf))
    flags = _SECCOMP_FILTER_FLAG_TSYNC | (_SECCOMP_FILTER_FLAG_LOG if log_denials else 0)
    libc.syscall.restype = ctypes.c_long
    r = libc.syscall(ctypes.c_long(_numbers.NR_seccomp), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                     ctypes.c_long(flags), ctypes.byref(fprog))
    if r < 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER)")
    if r > 0:   # TSYNC: this thread could not be synchronised
        raise OSError(errno.EBUSY, "seccomp: thread %d cannot take the filter" % r)


def install_sentry_filter(log_denials=False):
    """Confine the Sentry: from now on it cannot open, exec or make network sockets.

    Call once the kernel has started (Gofer running, stubs spawned, program
    loaded) and after preimport(). Spawning a stub by fork+exec fails after
    this; new address spaces must come from a clone injected into a stub.
    """
    install(sentry_filter(), log_denials)


def install_gofer_filter(log_denials=False, writable=False):
    """Confine the Gofer to file service: no exec, sockets, tracing; no
    writes unless it serves a read-write volume."""
    install(gofer_filter(writable), log_denials)


# Modules the Sentry imports on first use (a report's traceback, getrusage).
_LAZY_STDLIB = ("traceback", "linecache", "tokenize", "resource")
_LAZY_PACKAGES = ("pyvisor.abi", "pyvisor.sentry", "pyvisor.platform")
_SKIP = ("__main__", "testing")
_CODECS = ("utf-8", "latin-1", "ascii")


def preimport():
    """Import now what the Sentry would import lazily: once filtered, an
    import that needs open() fails with PermissionError."""
    import codecs
    import ctypes
    try:
        # glibc dlopens libgcc_s to unwind a thread that ends at interpreter
        # exit (pthread_exit); once confined that open would abort the process.
        ctypes.CDLL("libgcc_s.so.1")
    except OSError:
        pass
    for name in _LAZY_STDLIB:
        importlib.import_module(name)
    for codec in _CODECS:
        codecs.lookup(codec)
    for pkg_name in _LAZY_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for name in _walk(pkg_name, pkg.__path__):
            if name.rsplit(".", 1)[-1] not in _SKIP:
                importlib.import_module(name)


def iter_modules(paths):
    """(name, is_package) for each module in the directories ``paths``, as
    pkgutil.iter_modules finds them, without the import of inspect that
    pkgutil's first call costs (~10 ms at every start)."""
    suffixes = sorted(importlib.machinery.all_suffixes(), key=len, reverse=True)
    seen = set()
    for d in paths:
        try:
            entries = sorted(os.listdir(d))
        except OSError:
            continue
        for fn in entries:
            if os.path.isfile(os.path.join(d, fn, "__init__.py")):
                name, ispkg = fn, True
            else:
                suffix = next((s for s in suffixes if fn.endswith(s)), None)
                if suffix is None:
                    continue
                name, ispkg = fn[:-len(suffix)], False
            if name.isidentifier() and name != "__init__" and name not in seen:
                seen.add(name)
                yield name, ispkg


def _walk(pkg_name, paths):
    """Full names of every module below a package, importing subpackages to walk them."""
    for name, ispkg in iter_modules(paths):
        full = pkg_name + "." + name
        yield full
        if ispkg:
            yield from _walk(full, importlib.import_module(full).__path__)


__all__ = ["SENTRY_ALLOWED", "SENTRY_DENIED", "GOFER_ALLOWED", "GOFER_DENIED",
           "GOFER_WRITE_ALLOWED", "GOFER_WRITE_DENIED",
           "ArgIn", "ArgBitsClear", "ArgBitsSet", "build_filter", "sentry_filter",
           "gofer_filter", "install", "install_sentry_filter", "install_gofer_filter",
           "preimport", "iter_modules", "syscall_number", "stub_filter", "stub_rules",
           "encode", "RET_TRAP", "RET_KILL_PROCESS", "VSYSCALL_PAGE", "VSYSCALLS"]
