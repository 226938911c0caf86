"""strace-style formatting of one system call, for `pyvisor run --strace`.

`format_call(t, nr, args, ret)` returns one line in the shape strace(1)
prints, after the call has completed:

    openat(AT_FDCWD, "/etc/hosts", O_RDONLY|O_CLOEXEC) = 3
    read(3, "root:x:0:0:root:/root:/bin/bash\\n"..., 4096) = 1234
    mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f...
    exit_group(0)                           = ?

Facts about strace's output that this module reproduces:

- The " = " column: a short call is padded with spaces so that "=" falls at
  column 40 of the line (prefix included); a long one gets a single space.
- Strings are C-quoted: \\t \\n \\v \\f \\r \\" \\\\ escaped, other
  non-printable bytes in octal, as short as possible unless the next byte is
  an octal digit (then three digits). Data buffers show at most 32 bytes
  (strace's default -s 32) and "..." after the closing quote when cut.
  Paths are shown whole. getrandom's buffer is always shown in hex.
- A buffer the kernel fills (read, recvfrom, readlink) is printed from the
  result: its first `ret` bytes; on error only its address.
- A pointer the Sentry cannot read is printed as its address in hex.
- Errors print "-1 ENAME (strerror)"; the kernel-internal restart codes
  print "? ERESTARTSYS (...)"; calls that do not return print "?".

Structures are decoded for the common cases (timespec, pipe fds, rlimit,
stat, sigset, argv); any other structure pointer is shown as an address.

This is only used with --strace, so it is plain Python and favours being
right over being fast. It never raises for bad application pointers.
"""

import errno as _errno
import os
import struct

from pyvisor.abi import name_of, numbers as nr_
from pyvisor.abi.ints import s32, s64
from pyvisor.abi.structs import TIMESPEC as _TIMESPEC
from pyvisor.sentry.errors import SyscallError

MAX_STRLEN = 32          # strace -s default: bytes of a data buffer shown
MAX_ARRAY = 32           # argv elements shown before "..."
EQUALS_COLUMN = 40       # strace's default -a alignment column

# ----------------------------------------------------------------------------
# Value printers


def _read(t, addr, n):
    """App memory, or None if the Sentry cannot read it."""
    try:
        return bytes(t.copy_in(addr, n))
    except SyscallError:
        return None


def _read_str(t, addr):
    try:
        return bytes(t.copy_in_str(addr))
    except SyscallError:
        return None


_ESCAPES = {0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v", 0x0C: "\\f", 0x0D: "\\r",
            0x22: '\\"', 0x5C: "\\\\"}


def quote(data, limit=None, hexmode=False):
    """C-quote bytes the way strace does; cut to `limit` bytes with "..." after."""
    cut = limit is not None and len(data) > limit
    if cut:
        data = data[:limit]
    out = ['"']
    for i, b in enumerate(data):
        if hexmode:
            out.append("\\x%02x" % b)
        elif b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        elif i + 1 < len(data) and 0x30 <= data[i + 1] <= 0x37:
            out.append("\\%03o" % b)   # next char is an octal digit: full width
        else:
            out.append("\\%o" % b)
    out.append('"')
    if cut:
        out.append("...")
    return "".join(out)


def hexval(v):
    """strace's hex for offsets and unknown values: 0 stays "0"."""
    return "0x%x" % v if v else "0"


def pointer(v):
    return "0x%x" % v if v else "NULL"


def octal_mode(v):
    """strace's "%#03o": 0 -> 000, 0644 -> 0644, 022 -> 022."""
    return ("0%o" % v if v else "0").rjust(3, "0")


def flags(v, table, zero="0"):
    """Names of set bits in table order; leftover bits in hex."""
    if v == 0:
        return zero
    names = []
    for bit, name in table:
        if bit and v & bit == bit:
            names.append(name)
            v &= ~bit
    if v:
        names.append("0x%x" % v)
    return "|".join(names)


def kibibytes(v):
    """strace's rlimit values: RLIM64_INFINITY, N*1024 or plain."""
    if v == (1 << 64) - 1:
        return "RLIM64_INFINITY"
    if v and v % 1024 == 0:
        return "%d*1024" % (v // 1024)
    return str(v)


# ----------------------------------------------------------------------------
# Constant tables (Linux x86-64 values; order follows strace's xlat files)

_OPEN_FLAGS = (
    (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"), (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"), (0o10000, "O_DSYNC"), (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"), (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"), (0o20200000, "O_TMPFILE"),
    (0o200000, "O_DIRECTORY"), (0o20000, "O_ASYNC"),
)
_O_ACCMODE = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")
_O_CREAT, _O_TMPFILE_BIT = 0o100, 0o20000000

_PROT = ((1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC"),
         (0x01000000, "PROT_GROWSDOWN"), (0x02000000, "PROT_GROWSUP"))
_MAP_TYPE = {1: "MAP_SHARED", 2: "MAP_PRIVATE", 3: "MAP_SHARED_VALIDATE"}
_MAP_FLAGS = (
    (0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x40, "MAP_32BIT"),
    (0x100, "MAP_GROWSDOWN"), (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"), (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"), (0x20000, "MAP_STACK"),
    (0x40000, "MAP_HUGETLB"), (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
)
_AT_FLAGS = ((0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_REMOVEDIR"),
             (0x400, "AT_SYMLINK_FOLLOW"), (0x800, "AT_NO_AUTOMOUNT"),
             (0x1000, "AT_EMPTY_PATH"), (0x6000, "AT_STATX_DONT_SYNC"),
             (0x2000, "AT_STATX_FORCE_SYNC"), (0x8000, "AT_RECURSIVE"))
_ACCESS = ((4, "R_OK"), (2, "W_OK"), (1, "X_OK"))
_CLOEXEC_FLAGS = ((0o2000000, "O_CLOEXEC"), (0o4000, "O_NONBLOCK"),
                  (0o200000, "O_DIRECT"))
_SOCK_FLAGS = ((0o2000000, "SOCK_CLOEXEC"), (0o4000, "SOCK_NONBLOCK"))
_MSG_FLAGS = ((1, "MSG_OOB"), (2, "MSG_PEEK"), (4, "MSG_DONTROUTE"),
              (8, "MSG_CTRUNC"), (0x20, "MSG_TRUNC"), (0x40, "MSG_DONTWAIT"),
              (0x80, "MSG_EOR"), (0x100, "MSG_WAITALL"),
              (0x4000, "MSG_NOSIGNAL"), (0x8000, "MSG_MORE"),
              (0x40000000, "MSG_CMSG_CLOEXEC"))
_GRND = ((1, "GRND_NONBLOCK"), (2, "GRND_RANDOM"), (4, "GRND_INSECURE"))
_WAIT = ((1, "WNOHANG"), (2, "WUNTRACED"), (4, "WEXITED"), (8, "WCONTINUED"),
         (0x1000000, "WNOWAIT"), (0x20000000, "__WNOTHREAD"),
         (0x40000000, "__WALL"), (0x80000000, "__WCLONE"))
_CLONE = ((0x100, "CLONE_VM"), (0x200, "CLONE_FS"), (0x400, "CLONE_FILES"),
          (0x800, "CLONE_SIGHAND"), (0x1000, "CLONE_PIDFD"),
          (0x2000, "CLONE_PTRACE"), (0x4000, "CLONE_VFORK"),
          (0x8000, "CLONE_PARENT"), (0x10000, "CLONE_THREAD"),
          (0x20000, "CLONE_NEWNS"), (0x40000, "CLONE_SYSVSEM"),
          (0x80000, "CLONE_SETTLS"), (0x100000, "CLONE_PARENT_SETTID"),
          (0x200000, "CLONE_CHILD_CLEARTID"), (0x400000, "CLONE_DETACHED"),
          (0x800000, "CLONE_UNTRACED"), (0x1000000, "CLONE_CHILD_SETTID"),
          (0x2000000, "CLONE_NEWCGROUP"), (0x4000000, "CLONE_NEWUTS"),
          (0x8000000, "CLONE_NEWIPC"), (0x10000000, "CLONE_NEWUSER"),
          (0x20000000, "CLONE_NEWPID"), (0x40000000, "CLONE_NEWNET"),
          (0x80000000, "CLONE_IO"))
_MREMAP = ((1, "MREMAP_MAYMOVE"), (2, "MREMAP_FIXED"), (4, "MREMAP_DONTUNMAP"))
_MSYNC = ((1, "MS_ASYNC"), (2, "MS_INVALIDATE"), (4, "MS_SYNC"))
_TIMER = ((1, "TIMER_ABSTIME"),)
_IN_FLAGS = ((0o2000000, "IN_CLOEXEC"), (0o4000, "IN_NONBLOCK"))
_IN_MASK = tuple((1 << i, n) for i, n in enumerate(
    ("IN_ACCESS", "IN_MODIFY", "IN_ATTRIB", "IN_CLOSE_WRITE", "IN_CLOSE_NOWRITE", "IN_OPEN",
     "IN_MOVED_FROM", "IN_MOVED_TO", "IN_CREATE", "IN_DELETE", "IN_DELETE_SELF",
     "IN_MOVE_SELF"))) + ((0x01000000, "IN_ONLYDIR"), (0x02000000, "IN_DONT_FOLLOW"),
                          (0x04000000, "IN_EXCL_UNLINK"), (0x10000000, "IN_MASK_CREATE"),
                          (0x20000000, "IN_MASK_ADD"), (0x80000000, "IN_ONESHOT"))

_SIGNALS = ("0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT",
            "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2",
            "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT",
            "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
            "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR",
            "SIGSYS")
_WHENCE = ("SEEK_SET", "SEEK_CUR", "SEEK_END", "SEEK_DATA", "SEEK_HOLE")
_CLOCKS = ("CLOCK_REALTIME", "CLOCK_MONOTONIC", "CLOCK_PROCESS_CPUTIME_ID",
           "CLOCK_THREAD_CPUTIME_ID", "CLOCK_MONOTONIC_RAW",
           "CLOCK_REALTIME_COARSE", "CLOCK_MONOTONIC_COARSE",
           "CLOCK_BOOTTIME", "CLOCK_REALTIME_ALARM", "CLOCK_BOOTTIME_ALARM",
           None, "CLOCK_TAI")
_SIGHOW = ("SIG_BLOCK", "SIG_UNBLOCK", "SIG_SETMASK")
_RLIMITS = ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK",
            "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE",
            "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING",
            "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME")
_FAMILIES = {0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6",
             16: "AF_NETLINK", 17: "AF_PACKET"}
_SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW",
               4: "SOCK_RDM", 5: "SOCK_SEQPACKET", 10: "SOCK_PACKET"}
_FCNTL = {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL",
          4: "F_SETFL", 5: "F_GETLK", 6: "F_SETLK", 7: "F_SETLKW",
          8: "F_SETOWN", 9: "F_GETOWN", 1024: "F_SETLEASE",
          1025: "F_GETLEASE", 1030: "F_DUPFD_CLOEXEC", 1031: "F_SETPIPE_SZ",
          1032: "F_GETPIPE_SZ", 1033: "F_ADD_SEALS", 1034: "F_GET_SEALS"}
_IOCTLS = {0x5401: "TCGETS", 0x5402: "TCSETS", 0x5403: "TCSETSW",
           0x5404: "TCSETSF", 0x540F: "TIOCGPGRP", 0x5410: "TIOCSPGRP",
           0x5413: "TIOCGWINSZ", 0x5414: "TIOCSWINSZ", 0x541B: "FIONREAD",
           0x5421: "FIONBIO", 0x5450: "FIONCLEX", 0x5451: "FIOCLEX"}
_ARCH_PRCTL = {0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS",
               0x1003: "ARCH_GET_FS", 0x1004: "ARCH_GET_GS",
               0x1011: "ARCH_GET_CPUID", 0x1012: "ARCH_SET_CPUID"}
_PRCTL = {1: "PR_SET_PDEATHSIG", 2: "PR_GET_PDEATHSIG", 3: "PR_GET_DUMPABLE",
          4: "PR_SET_DUMPABLE", 15: "PR_SET_NAME", 16: "PR_GET_NAME",
          22: "PR_SET_SECCOMP", 36: "PR_SET_CHILD_SUBREAPER",
          38: "PR_SET_NO_NEW_PRIVS", 39: "PR_GET_NO_NEW_PRIVS",
          0x59616d61: "PR_SET_PTRACER"}
_MADVISE = {0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL",
            3: "MADV_WILLNEED", 4: "MADV_DONTNEED", 8: "MADV_FREE",
            9: "MADV_REMOVE", 10: "MADV_DONTFORK", 11: "MADV_DOFORK",
            12: "MADV_MERGEABLE", 13: "MADV_UNMERGEABLE",
            14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE",
            16: "MADV_DONTDUMP", 17: "MADV_DODUMP"}
_EPOLL_OPS = {1: "EPOLL_CTL_ADD", 2: "EPOLL_CTL_DEL", 3: "EPOLL_CTL_MOD"}
_FUTEX_OPS = ("FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_FD", "FUTEX_REQUEUE",
              "FUTEX_CMP_REQUEUE", "FUTEX_WAKE_OP", "FUTEX_LOCK_PI",
              "FUTEX_UNLOCK_PI", "FUTEX_TRYLOCK_PI", "FUTEX_WAIT_BITSET",
              "FUTEX_WAKE_BITSET", "FUTEX_WAIT_REQUEUE_PI",
              "FUTEX_CMP_REQUEUE_PI", "FUTEX_LOCK_PI2")
_FUTEX_PRIVATE, _FUTEX_CLOCK_REALTIME = 128, 256

# Python's errno names differ from strace's for a few aliases.
_ERRNO_NAMES = {35: "EDEADLK", 95: "EOPNOTSUPP", 133: "EHWPOISON"}
# Kernel-internal codes a task can be seen returning when a signal arrives.
_RESTART = {512: ("ERESTARTSYS", "To be restarted if SA_RESTART is set"),
            513: ("ERESTARTNOINTR", "To be restarted"),
            514: ("ERESTARTNOHAND", "To be restarted if no handler"),
            516: ("ERESTART_RESTARTBLOCK", "Interrupted by signal")}


def _named(table, v, fallback=hexval):
    """Look a small constant up in a tuple/dict; unknown values via fallback."""
    if isinstance(table, dict):
        name = table.get(v)
    else:
        name = table[v] if 0 <= v < len(table) else None
    return name if name is not None else fallback(v)


def signal_name(v):
    if 0 <= v < len(_SIGNALS):
        return _SIGNALS[v]
    if v == 32:
        return "SIGRTMIN"
    if 32 < v <= 64:
        return "SIGRT_%d" % (v - 32)
    return str(v)


def sigset(mask):
    """strace's sigset: [INT TERM], or ~[...] when more than half is set."""
    def names(m):
        return " ".join(signal_name(s)[3:] for s in range(1, 65) if m & (1 << (s - 1)))
    if bin(mask).count("1") > 32:
        return "~[%s]" % names(~mask & ((1 << 64) - 1))
    return "[%s]" % names(mask)


# ----------------------------------------------------------------------------
# Argument kinds. Each is f(t, args, ret, i) -> str, or None to omit the
# argument (and all after it), as strace does for open's mode without O_CREAT.


def FD(t, a, r, i):
    return str(s32(a[i]))


def DIRFD(t, a, r, i):
    v = s32(a[i])
    return "AT_FDCWD" if v == -100 else str(v)


def INT(t, a, r, i):
    return str(s32(a[i]))


def UINT(t, a, r, i):
    return str(a[i] & 0xFFFFFFFF)


def LONG(t, a, r, i):
    return str(s64(a[i]))


def SIZE(t, a, r, i):
    return str(a[i])


def HEX(t, a, r, i):
    return hexval(a[i])


def PTR(t, a, r, i):
    return pointer(a[i])


def MODE(t, a, r, i):
    return octal_mode(a[i] & 0o7777)


def PATH(t, a, r, i):
    """A NUL-terminated string, shown whole."""
    if a[i] == 0:
        return "NULL"
    s = _read_str(t, a[i])
    return pointer(a[i]) if s is None else quote(s)


def STR(t, a, r, i):
    """A NUL-terminated string, cut at MAX_STRLEN."""
    if a[i] == 0:
        return "NULL"
    s = _read_str(t, a[i])
    return pointer(a[i]) if s is None else quote(s, MAX_STRLEN)


def _buffer(t, addr, n, hexmode=False):
    data = _read(t, addr, min(n, MAX_STRLEN + 1))
    if data is None:
        return pointer(addr)
    shown = quote(data[:MAX_STRLEN], hexmode=hexmode)
    return shown + "..." if n > MAX_STRLEN else shown


def BUF_OUT(t, a, r, i):
    """Data the call reads from the app (write): length is the next argument."""
    return _buffer(t, a[i], a[i + 1])


def SOCKADDR(t, a, r, i):
    """A sockaddr the call reads (bind, connect, sendto): length is the next
    argument. AF_INET as strace shows it; other families as a pointer."""
    n = a[i + 1] & 0xFFFFFFFF
    data = _read(t, a[i], 16) if a[i] and n >= 16 else None
    if data is None or data[:2] != b"\x02\x00":
        return pointer(a[i])
    return '{sa_family=AF_INET, sin_port=htons(%d), sin_addr=inet_addr("%d.%d.%d.%d")}' % (
        int.from_bytes(data[2:4], "big"), *data[4:8])


def BUF_IN(t, a, r, i):
    """Data the call fills in (read): shown after the call, `ret` bytes of it."""
    if r is None or r < 0:
        return pointer(a[i])
    return _buffer(t, a[i], r)


def BUF_IN_HEX(t, a, r, i):
    """getrandom's buffer: random bytes, so strace always shows hex."""
    if r is None or r < 0:
        return pointer(a[i])
    return _buffer(t, a[i], r, hexmode=True)


def PATH_IN(t, a, r, i):
    """A path the call fills in (getcwd), valid only on success."""
    if r is None or r < 0:
        return pointer(a[i])
    return PATH(t, a, r, i)


def OPEN_FLAGS(t, a, r, i):
    v = a[i] & 0xFFFFFFFF
    rest = flags(v & ~3, _OPEN_FLAGS, zero="")
    return _O_ACCMODE[v & 3] + ("|" + rest if rest else "")


def OPEN_MODE(t, a, r, i):
    """open's mode is shown only when O_CREAT or O_TMPFILE makes it used."""
    if a[i - 1] & (_O_CREAT | _O_TMPFILE_BIT):
        return MODE(t, a, r, i)
    return None


def PROT(t, a, r, i):
    return flags(a[i], _PROT, zero="PROT_NONE")


def MMAP_FLAGS(t, a, r, i):
    v = a[i] & 0xFFFFFFFF
    kind = _MAP_TYPE.get(v & 3, "0x%x" % (v & 3))
    rest = flags(v & ~3, _MAP_FLAGS, zero="")
    return kind + ("|" + rest if rest else "")


def _flag_kind(table, zero="0"):
    def kind(t, a, r, i):
        return flags(a[i] & 0xFFFFFFFF, table, zero)
    return kind


def _const_kind(table, fallback=hexval):
    def kind(t, a, r, i):
        return _named(table, s32(a[i]), fallback)
    return kind


AT_FLAGS = _flag_kind(_AT_FLAGS)
ACCESS = _flag_kind(_ACCESS, zero="F_OK")
O_FLAGS = _flag_kind(_CLOEXEC_FLAGS)
SOCK_FLAGS = _flag_kind(_SOCK_FLAGS)
MSG_FLAGS = _flag_kind(_MSG_FLAGS)
GRND_FLAGS = _flag_kind(_GRND)
WAIT_FLAGS = _flag_kind(_WAIT)
MREMAP_FLAGS = _flag_kind(_MREMAP)
MSYNC_FLAGS = _flag_kind(_MSYNC)
IN_FLAGS = _flag_kind(_IN_FLAGS)
IN_MASK = _flag_kind(_IN_MASK)
TIMER_FLAGS = _flag_kind(_TIMER)
WHENCE = _const_kind(_WHENCE, str)
CLOCKID = _const_kind(_CLOCKS, str)
SIGHOW = _const_kind(_SIGHOW, str)
RLIMIT = _const_kind(_RLIMITS, str)
FAMILY = _const_kind(_FAMILIES, str)
FCNTL_CMD = _const_kind(_FCNTL)
ARCH_PRCTL = _const_kind(_ARCH_PRCTL)
PRCTL = _const_kind(_PRCTL, str)
MADVISE = _const_kind(_MADVISE, str)
EPOLL_OP = _const_kind(_EPOLL_OPS, str)


def SIGNAL(t, a, r, i):
    return signal_name(s32(a[i]))


def IOCTL(t, a, r, i):
    return _IOCTLS.get(a[i] & 0xFFFFFFFF, hexval(a[i] & 0xFFFFFFFF))


def SOCK_TYPE(t, a, r, i):
    v = a[i] & 0xFFFFFFFF
    base = _SOCK_TYPES.get(v & 0xF, str(v & 0xF))
    rest = flags(v & ~0xF, _SOCK_FLAGS, zero="")
    return base + ("|" + rest if rest else "")


def CLONE_FLAGS(t, a, r, i):
    v = a[i]
    sig = v & 0xFF
    rest = flags(v & ~0xFF, _CLONE, zero="")
    parts = [p for p in (rest, signal_name(sig) if sig else "") if p]
    return "|".join(parts) or "0"


def _struct_kind(fmt, render, after=False):
    """A pointer to a struct; `after`: only meaningful once the call succeeded."""
    size = struct.calcsize(fmt)

    def kind(t, a, r, i):
        if a[i] == 0:
            return "NULL"
        if after and (r is None or r < 0):
            return pointer(a[i])
        data = _read(t, a[i], size)
        if data is None:
            return pointer(a[i])
        return render(*struct.unpack(fmt, data))
    return kind


def _timespec(sec, nsec):
    return "{tv_sec=%d, tv_nsec=%d}" % (sec, nsec)


def _rlimit(cur, mx):
    return "{rlim_cur=%s, rlim_max=%s}" % (kibibytes(cur), kibibytes(mx))


_S_IFMT = {0o140000: "S_IFSOCK", 0o120000: "S_IFLNK", 0o100000: "S_IFREG",
           0o60000: "S_IFBLK", 0o40000: "S_IFDIR", 0o20000: "S_IFCHR",
           0o10000: "S_IFIFO"}


def _stat(mode, size, rdev):
    fmt = _S_IFMT.get(mode & 0o170000, "%#o" % (mode & 0o170000))
    head = "st_mode=%s|%s" % (fmt, octal_mode(mode & 0o7777))
    if mode & 0o170000 in (0o60000, 0o20000):
        major = ((rdev >> 8) & 0xFFF) | ((rdev >> 32) & ~0xFFF)
        minor = (rdev & 0xFF) | ((rdev >> 12) & ~0xFF)
        return "{%s, st_rdev=makedev(%#x, %#x), ...}" % (head, major, minor)
    return "{%s, st_size=%d, ...}" % (head, size)


TIMESPEC = _struct_kind(_TIMESPEC.format, _timespec)
TIMESPEC_OUT = _struct_kind(_TIMESPEC.format, _timespec, after=True)
RLIMIT_IN = _struct_kind("<QQ", _rlimit)
RLIMIT_OUT = _struct_kind("<QQ", _rlimit, after=True)
FD_PAIR = _struct_kind("<ii", lambda a, b: "[%d, %d]" % (a, b), after=True)
# struct stat: st_mode at 24, st_rdev at 40, st_size at 48 (x86-64).
STAT_OUT = _struct_kind("<24xI12xQQ", lambda m, rdev, size: _stat(m, size, rdev), after=True)
SIGSET = _struct_kind("<Q", sigset)
SIGSET_OUT = _struct_kind("<Q", sigset, after=True)


_SA_FLAGS = ((0x00000001, "SA_NOCLDSTOP"), (0x00000002, "SA_NOCLDWAIT"),
             (0x00000004, "SA_SIGINFO"), (0x04000000, "SA_RESTORER"),
             (0x08000000, "SA_ONSTACK"), (0x10000000, "SA_RESTART"),
             (0x40000000, "SA_NODEFER"), (0x80000000, "SA_RESETHAND"))
_SA_RESTORER = 0x04000000


def _sigaction(handler, sa_flags, restorer, mask):
    """{sa_handler=SIG_IGN, sa_mask=[PIPE], sa_flags=SA_RESTORER, sa_restorer=0x...}"""
    h = {0: "SIG_DFL", 1: "SIG_IGN"}.get(handler, hexval(handler))
    out = "{sa_handler=%s, sa_mask=%s, sa_flags=%s" % (h, sigset(mask),
                                                       flags(sa_flags, _SA_FLAGS))
    if sa_flags & _SA_RESTORER:
        out += ", sa_restorer=%s" % pointer(restorer)
    return out + "}"


SIGACTION_IN = _struct_kind("<QQQQ", _sigaction)
SIGACTION_OUT = _struct_kind("<QQQQ", _sigaction, after=True)


def wait_status(st):
    """[{WIFEXITED(s) && WEXITSTATUS(s) == 3}] and its kin, as strace prints a wait status."""
    sig = st & 0x7F
    if st & 0xFFFF == 0xFFFF:
        return "[{WIFCONTINUED(s)}]"
    if sig == 0:
        return "[{WIFEXITED(s) && WEXITSTATUS(s) == %d}]" % ((st >> 8) & 0xFF)
    if sig == 0x7F:
        return "[{WIFSTOPPED(s) && WSTOPSIG(s) == %s}]" % signal_name((st >> 8) & 0xFF)
    core = " && WCOREDUMP(s)" if st & 0x80 else ""
    return "[{WIFSIGNALED(s) && WTERMSIG(s) == %s%s}]" % (signal_name(sig), core)


def WSTATUS_OUT(t, a, r, i):
    """wait4's status: decoded when a child was reported (the result is its pid)."""
    if a[i] == 0:
        return "NULL"
    if r is None or r <= 0:
        return pointer(a[i])
    data = _read(t, a[i], 4)
    return pointer(a[i]) if data is None else wait_status(struct.unpack("<i", data)[0])


_FADV = ("POSIX_FADV_NORMAL", "POSIX_FADV_RANDOM", "POSIX_FADV_SEQUENTIAL",
         "POSIX_FADV_WILLNEED", "POSIX_FADV_DONTNEED", "POSIX_FADV_NOREUSE")
FADVICE = _const_kind(_FADV, str)


def _clone(t, a, r):
    """clone(child_stack=NULL, flags=...|SIGCHLD, child_tidptr=0x...): strace
    names the arguments and shows the tid pointers only when flags use them."""
    fl = a[0]
    shown = ["child_stack=%s" % pointer(a[1]), "flags=%s" % CLONE_FLAGS(t, a, r, 0)]
    if fl & 0x00100000:                                  # CLONE_PARENT_SETTID
        shown.append("parent_tid=%s" % pointer(a[2]))
    if fl & (0x01000000 | 0x00200000):                   # CLONE_CHILD_SETTID, _CLEARTID
        shown.append("child_tidptr=%s" % pointer(a[3]))
    if fl & 0x00080000:                                  # CLONE_SETTLS
        shown.append("tls=%s" % pointer(a[4]))
    return shown


def _rt_sigreturn(t, a, r):
    """rt_sigreturn({mask=[...]}): the mask the frame restored."""
    signals = getattr(t, "signals", None)
    return ["{mask=%s}" % sigset(signals.mask)] if signals is not None else []


def ARGV(t, a, r, i):
    """A NULL-terminated array of strings: ["ls", "-l"]."""
    ptrs = _pointer_array(t, a[i], MAX_ARRAY + 1)
    if ptrs is None:
        return pointer(a[i])
    shown = [STR(t, (p,), r, 0) for p in ptrs[:MAX_ARRAY]]
    if len(ptrs) > MAX_ARRAY:
        shown.append("...")
    return "[" + ", ".join(shown) + "]"


def ENVP(t, a, r, i):
    """strace abbreviates the environment: 0x7ffc... /* 20 vars */."""
    ptrs = _pointer_array(t, a[i], 4096)
    if ptrs is None or a[i] == 0:
        return pointer(a[i])
    return "%s /* %d vars */" % (pointer(a[i]), len(ptrs))


def _pointer_array(t, addr, limit):
    """The pointers of a NULL-terminated array (at most limit), or None on fault."""
    if addr == 0:
        return None
    ptrs = []
    while len(ptrs) < limit:
        data = _read(t, addr + 8 * len(ptrs), 8)
        if data is None:
            return None
        p = struct.unpack("<Q", data)[0]
        if p == 0:
            break
        ptrs.append(p)
    return ptrs


def DIRENTS(t, a, r, i):
    """getdents64's buffer: its address and the number of entries read."""
    if r is None or r <= 0:
        return pointer(a[i]) if r is None or r < 0 else "%s /* 0 entries */" % pointer(a[i])
    data = _read(t, a[i], r)
    if data is None:
        return pointer(a[i])
    count, off = 0, 0
    while off + 18 <= len(data):
        reclen = struct.unpack_from("<H", data, off + 16)[0]
        if reclen == 0:
            break
        count += 1
        off += reclen
    return "%s /* %d entries */" % (pointer(a[i]), count)


def _futex(t, a, r):
    """futex's shape depends on its op: WAIT has 4 arguments, WAKE 3."""
    op = a[1] & 0xFFFFFFFF
    cmd = op & ~(_FUTEX_PRIVATE | _FUTEX_CLOCK_REALTIME)
    name = _FUTEX_OPS[cmd] if cmd < len(_FUTEX_OPS) else str(cmd)
    if op & _FUTEX_PRIVATE:
        name += "_PRIVATE"
    if op & _FUTEX_CLOCK_REALTIME:
        name += "|FUTEX_CLOCK_REALTIME"
    shown = [pointer(a[0]), name, str(s32(a[2]))]
    if cmd in (0, 9):                                    # WAIT, WAIT_BITSET
        shown.append(TIMESPEC(t, a, r, 3))
        if cmd == 9:
            shown.append(hexval(a[5] & 0xFFFFFFFF))
    elif cmd in (1, 7, 10):                              # WAKE, UNLOCK_PI, WAKE_BITSET
        if cmd == 7:
            shown.pop()
    else:
        shown.extend([hexval(a[3]), pointer(a[4]), str(s32(a[5]))])
    return shown


# ----------------------------------------------------------------------------
# Signature table: name -> (return kind, argument kinds | custom function).

RET_DEC, RET_HEX, RET_OCT, RET_NONE = "dec", "hex", "oct", "none"

_S = {
    "read": (FD, BUF_IN, SIZE), "write": (FD, BUF_OUT, SIZE),
    "open": (PATH, OPEN_FLAGS, OPEN_MODE), "close": (FD,),
    "stat": (PATH, STAT_OUT), "fstat": (FD, STAT_OUT), "lstat": (PATH, STAT_OUT),
    "poll": (PTR, UINT, INT), "lseek": (FD, LONG, WHENCE),
    "mmap": (PTR, SIZE, PROT, MMAP_FLAGS, FD, HEX),
    "mprotect": (PTR, SIZE, PROT), "munmap": (PTR, SIZE), "brk": (PTR,),
    "rt_sigaction": (SIGNAL, SIGACTION_IN, SIGACTION_OUT, SIZE),
    "rt_sigprocmask": (SIGHOW, SIGSET, SIGSET_OUT, SIZE), "rt_sigreturn": _rt_sigreturn,
    "ioctl": (FD, IOCTL, HEX),
    "pread64": (FD, BUF_IN, SIZE, LONG), "pwrite64": (FD, BUF_OUT, SIZE, LONG),
    "readv": (FD, PTR, INT), "writev": (FD, PTR, INT),
    "access": (PATH, ACCESS), "pipe": (FD_PAIR,),
    "select": (INT, PTR, PTR, PTR, PTR), "sched_yield": (),
    "mremap": (PTR, SIZE, SIZE, MREMAP_FLAGS, PTR),
    "msync": (PTR, SIZE, MSYNC_FLAGS), "mincore": (PTR, SIZE, PTR),
    "madvise": (PTR, SIZE, MADVISE), "dup": (FD,), "dup2": (FD, FD),
    "pause": (), "nanosleep": (TIMESPEC, PTR),
    "getitimer": (INT, PTR), "alarm": (UINT,), "setitimer": (INT, PTR, PTR),
    "getpid": (), "sendfile": (FD, FD, PTR, SIZE),
    "socket": (FAMILY, SOCK_TYPE, INT), "connect": (FD, SOCKADDR, UINT),
    "accept": (FD, PTR, PTR),
    "sendto": (FD, BUF_OUT, SIZE, MSG_FLAGS, SOCKADDR, UINT),
    "recvfrom": (FD, BUF_IN, SIZE, MSG_FLAGS, PTR, PTR),
    "sendmsg": (FD, PTR, MSG_FLAGS), "recvmsg": (FD, PTR, MSG_FLAGS),
    "shutdown": (FD, INT), "bind": (FD, SOCKADDR, UINT), "listen": (FD, INT),
    "getsockname": (FD, PTR, PTR), "getpeername": (FD, PTR, PTR),
    "socketpair": (FAMILY, SOCK_TYPE, INT, FD_PAIR),
    "setsockopt": (FD, INT, INT, PTR, UINT),
    "getsockopt": (FD, INT, INT, PTR, PTR),
    "clone": _clone, "fork": (), "vfork": (),
    "execve": (PATH, ARGV, ENVP), "exit": (INT,),
    "wait4": (INT, WSTATUS_OUT, WAIT_FLAGS, PTR), "kill": (INT, SIGNAL),
    "uname": (PTR,), "fcntl": (FD, FCNTL_CMD, HEX), "flock": (FD, INT),
    "fsync": (FD,), "fdatasync": (FD,),
    "truncate": (PATH, LONG), "ftruncate": (FD, LONG),
    "getdents": (FD, PTR, SIZE), "getcwd": (PATH_IN, SIZE),
    "chdir": (PATH,), "fchdir": (FD,), "rename": (PATH, PATH),
    "mkdir": (PATH, MODE), "rmdir": (PATH,), "creat": (PATH, MODE),
    "link": (PATH, PATH), "unlink": (PATH,), "symlink": (PATH, PATH),
    "readlink": (PATH, BUF_IN, SIZE), "chmod": (PATH, MODE),
    "fchmod": (FD, MODE), "chown": (PATH, INT, INT), "fchown": (FD, INT, INT),
    "lchown": (PATH, INT, INT), "umask": (MODE,),
    "gettimeofday": (PTR, PTR), "getrlimit": (RLIMIT, RLIMIT_OUT),
    "getrusage": (INT, PTR), "sysinfo": (PTR,), "times": (PTR,),
    "getuid": (), "getgid": (), "setuid": (INT,), "setgid": (INT,),
    "geteuid": (), "getegid": (), "setpgid": (INT, INT), "getppid": (),
    "getpgrp": (), "setsid": (), "setreuid": (INT, INT),
    "setregid": (INT, INT), "getgroups": (INT, PTR), "setgroups": (INT, PTR),
    "setresuid": (INT, INT, INT), "getresuid": (PTR, PTR, PTR),
    "setresgid": (INT, INT, INT), "getresgid": (PTR, PTR, PTR),
    "getpgid": (INT,), "setfsuid": (INT,), "setfsgid": (INT,),
    "getsid": (INT,), "capget": (PTR, PTR), "capset": (PTR, PTR),
    "rt_sigpending": (SIGSET_OUT, SIZE),
    "rt_sigtimedwait": (SIGSET, PTR, TIMESPEC, SIZE),
    "rt_sigsuspend": (SIGSET, SIZE), "sigaltstack": (PTR, PTR),
    "statfs": (PATH, PTR), "fstatfs": (FD, PTR),
    "getpriority": (INT, INT), "setpriority": (INT, INT, INT),
    "prctl": (PRCTL, HEX, HEX, HEX, HEX), "arch_prctl": (ARCH_PRCTL, HEX),
    "setrlimit": (RLIMIT, RLIMIT_IN), "chroot": (PATH,), "sync": (),
    "sethostname": (BUF_OUT, SIZE), "gettid": (), "tkill": (INT, SIGNAL),
    "time": (PTR,), "futex": _futex,
    "sched_setaffinity": (INT, SIZE, PTR), "sched_getaffinity": (INT, SIZE, PTR),
    "set_tid_address": (PTR,), "getdents64": (FD, DIRENTS, SIZE), "fadvise64": (FD, LONG, SIZE, FADVICE),
    "restart_syscall": (),
    "clock_gettime": (CLOCKID, TIMESPEC_OUT), "clock_getres": (CLOCKID, TIMESPEC_OUT),
    "clock_nanosleep": (CLOCKID, TIMER_FLAGS, TIMESPEC, PTR),
    "exit_group": (INT,), "epoll_wait": (FD, PTR, INT, INT),
    "epoll_ctl": (FD, EPOLL_OP, FD, PTR), "tgkill": (INT, INT, SIGNAL),
    "openat": (DIRFD, PATH, OPEN_FLAGS, OPEN_MODE),
    "mkdirat": (DIRFD, PATH, MODE), "fchownat": (DIRFD, PATH, INT, INT, AT_FLAGS),
    "newfstatat": (DIRFD, PATH, STAT_OUT, AT_FLAGS),
    "unlinkat": (DIRFD, PATH, AT_FLAGS),
    "renameat": (DIRFD, PATH, DIRFD, PATH),
    "renameat2": (DIRFD, PATH, DIRFD, PATH, HEX),
    "linkat": (DIRFD, PATH, DIRFD, PATH, AT_FLAGS),
    "symlinkat": (PATH, DIRFD, PATH), "readlinkat": (DIRFD, PATH, BUF_IN, SIZE),
    "fchmodat": (DIRFD, PATH, MODE), "faccessat": (DIRFD, PATH, ACCESS),
    "faccessat2": (DIRFD, PATH, ACCESS, AT_FLAGS),
    "pselect6": (INT, PTR, PTR, PTR, PTR, PTR),
    "ppoll": (PTR, UINT, TIMESPEC, SIGSET, SIZE),
    "set_robust_list": (PTR, SIZE), "get_robust_list": (INT, PTR, PTR),
    "utimensat": (DIRFD, PATH, PTR, AT_FLAGS),
    "epoll_pwait": (FD, PTR, INT, INT, SIGSET, SIZE),
    "eventfd2": (UINT, O_FLAGS), "epoll_create1": (O_FLAGS,),
    "inotify_init": (), "inotify_init1": (IN_FLAGS,),
    "inotify_add_watch": (FD, PATH, IN_MASK), "inotify_rm_watch": (FD, INT),
    "epoll_create": (INT,), "dup3": (FD, FD, O_FLAGS), "pipe2": (FD_PAIR, O_FLAGS),
    "accept4": (FD, PTR, PTR, SOCK_FLAGS),
    "prlimit64": (INT, RLIMIT, RLIMIT_IN, RLIMIT_OUT),
    "getrandom": (BUF_IN_HEX, SIZE, GRND_FLAGS),
    "memfd_create": (STR, HEX), "statx": (DIRFD, PATH, AT_FLAGS, HEX, PTR),
    "rseq": (PTR, UINT, INT, HEX), "clone3": (PTR, SIZE),
    "close_range": (UINT, UINT, HEX), "getcpu": (PTR, PTR, PTR),
    "personality": (HEX,), "sched_getparam": (INT, PTR),
    "sched_getscheduler": (INT,),
    "pidfd_open": (INT, O_FLAGS), "pidfd_send_signal": (FD, SIGNAL, PTR, HEX),
    "pidfd_getfd": (FD, FD, HEX), "waitid": (INT, INT, PTR, WAIT_FLAGS, PTR),
}

_RET = {"mmap": RET_HEX, "brk": RET_HEX, "mremap": RET_HEX, "shmat": RET_HEX,
        "umask": RET_OCT, "exit": RET_NONE, "exit_group": RET_NONE,
        "personality": RET_HEX}

SIGNATURES = {}
for _nr, _name in nr_.NAMES.items():
    if _name in _S:
        SIGNATURES[_nr] = (_name, _S[_name], _RET.get(_name, RET_DEC))
del _nr, _name


# ----------------------------------------------------------------------------
# The line


def format_args(t, nr, args, ret):
    """The argument list of one call as strings, in order."""
    sig = SIGNATURES.get(nr)
    if sig is None:
        return [hexval(a) for a in args]
    _, kinds, _ = sig
    if callable(kinds):
        return kinds(t, args, ret)
    shown = []
    for i, kind in enumerate(kinds):
        s = kind(t, args, ret, i)
        if s is None:
            break
        shown.append(s)
    return shown


def format_return(nr, ret):
    """strace's result: "3", "0x7f..", "-1 ENOENT (No such file or directory)", "?"."""
    kind = SIGNATURES[nr][2] if nr in SIGNATURES else RET_DEC
    if kind == RET_NONE or ret is None:
        return "?"
    if -4096 < ret < 0:
        err = -ret
        if err in _RESTART:
            return "? %s (%s)" % _RESTART[err]
        name = _ERRNO_NAMES.get(err) or _errno.errorcode.get(err, "ERRNO_%d" % err)
        return "-1 %s (%s)" % (name, os.strerror(err))
    if kind == RET_HEX:
        return "0x%x" % (ret & ((1 << 64) - 1))
    if kind == RET_OCT:
        return octal_mode(ret)
    return str(ret)


def format_call(t, nr, args, ret, pid=None, name=None, shown=None):
    """One strace line for a completed call (no trailing newline).

    t: reads app memory by t.copy_in(addr, n) and t.copy_in_str(addr), which
    raise SyscallError on a bad pointer. args: six unsigned register values.
    ret: the result (-errno on error; a register value is read as signed), or
    None if the call does not return. pid: if given, the line starts
    "[pid N] " as with strace -f. name: the call's name from the kernel's
    syscall table (default: the generated numbers' name, the same for every
    Linux call). shown: the arguments formatted before the call, for a call
    in FORMAT_BEFORE (its memory is gone once it succeeds).
    """
    if ret is not None:
        ret = s64(ret)
    if shown is None:
        shown = format_args(t, nr, args, ret)
    head = "%s(%s)" % (name or name_of(nr), ", ".join(shown))
    return _pad(head, pid) + "= " + format_return(nr, ret)


# execve replaces the memory its arguments are in: they are formatted before it runs.
FORMAT_BEFORE = frozenset({nr_.NR_execve, nr_.NR_execveat})


def _pad(head, pid):
    head = ("[pid %d] " % pid if pid is not None else "") + head
    return head.ljust(EQUALS_COLUMN) if len(head) < EQUALS_COLUMN else head + " "


def format_first_exec(path, argv, env_count, envp_addr, pid=None):
    """The execve strace shows first: the one that started the program (the
    Sentry's loader ran it, not a syscall of the program's)."""
    shown = [quote(path), "[" + ", ".join(quote(a, MAX_STRLEN) for a in argv[:MAX_ARRAY])
             + (", ...]" if len(argv) > MAX_ARRAY else "]"),
             "%s /* %d vars */" % (pointer(envp_addr), env_count)]
    return _pad("execve(%s)" % ", ".join(shown), pid) + "= 0"


_SI_CODES = {0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -2: "SI_TIMER", -3: "SI_MESGQ",
             -4: "SI_ASYNCIO", -5: "SI_SIGIO", -6: "SI_TKILL"}
_FAULT_CODES = {
    4: ("ILL_ILLOPC", "ILL_ILLOPN", "ILL_ILLADR", "ILL_ILLTRP", "ILL_PRVOPC", "ILL_PRVREG",
        "ILL_COPROC", "ILL_BADSTK"),
    5: ("TRAP_BRKPT", "TRAP_TRACE", "TRAP_BRANCH", "TRAP_HWBKPT"),
    7: ("BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR", "BUS_MCEERR_AR", "BUS_MCEERR_AO"),
    8: ("FPE_INTDIV", "FPE_INTOVF", "FPE_FLTDIV", "FPE_FLTOVF", "FPE_FLTUND", "FPE_FLTRES",
        "FPE_FLTINV", "FPE_FLTSUB"),
    11: ("SEGV_MAPERR", "SEGV_ACCERR", "SEGV_BNDERR", "SEGV_PKUERR"),
    17: ("CLD_EXITED", "CLD_KILLED", "CLD_DUMPED", "CLD_TRAPPED", "CLD_STOPPED", "CLD_CONTINUED"),
}


def _si_code(signo, code):
    if code in _SI_CODES and (code <= 0 or code == 0x80):
        return _SI_CODES[code]
    names = _FAULT_CODES.get(signo, ())
    return names[code - 1] if 0 < code <= len(names) else str(code)


def format_signal(info, pid=None):
    """--- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=2, ...} --- for a
    siginfo_t the task is about to act on (a handler, a default action)."""
    signo, err, code = struct.unpack_from("<iii", info)
    fields = ["si_signo=%s" % signal_name(signo), "si_code=%s" % _si_code(signo, code)]
    if err:
        fields.append("si_errno=%d" % err)
    if code == -2:                                        # SI_TIMER
        tid, over, value = struct.unpack_from("<iiQ", info, 16)
        fields += ["si_timerid=%#x" % tid if tid else "si_timerid=0", "si_overrun=%d" % over,
                   "si_int=%d" % s32(value), "si_ptr=%s" % pointer(value)]
    elif code <= 0:                                       # from a process: kill, tkill, sigqueue
        pid_, uid = struct.unpack_from("<iI", info, 16)
        fields += ["si_pid=%d" % pid_, "si_uid=%d" % uid]
    elif signo == 17 and code != 0x80:                    # SIGCHLD from the kernel
        cpid, uid, status, utime, stime = struct.unpack_from("<iIi4xqq", info, 16)
        st = str(status) if code == 1 else signal_name(status)
        fields += ["si_pid=%d" % cpid, "si_uid=%d" % uid, "si_status=%s" % st,
                   "si_utime=%d" % utime, "si_stime=%d" % stime]
    elif signo in (4, 5, 7, 8, 11) and code != 0x80:      # a fault: its address
        addr = struct.unpack_from("<Q", info, 16)[0]
        fields.append("si_addr=%s" % pointer(addr))
    return ("[pid %d] " % pid if pid is not None else "") + "--- %s {%s} ---" % (
        signal_name(signo), ", ".join(fields))


def format_exit(wstatus, pid=None):
    """+++ exited with 0 +++, +++ killed by SIGTERM +++ (+ " (core dumped)")."""
    sig = wstatus & 0x7F
    if sig == 0:
        text = "+++ exited with %d +++" % ((wstatus >> 8) & 0xFF)
    else:
        text = "+++ killed by %s%s +++" % (signal_name(sig),
                                           " (core dumped)" if wstatus & 0x80 else "")
    return ("[pid %d] " % pid if pid is not None else "") + text
