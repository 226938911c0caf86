"""Linux x86-64 signals as plain data: numbers, sigaction(2) and
sigaltstack(2) flags, siginfo codes, the default actions (signal(7)), and
the layouts of siginfo_t, struct sigaction and stack_t.

- ``siginfo_t`` (128 bytes): si_signo, si_errno, si_code (i32 each), 4 bytes
  of padding, then a union: kill/tkill {pid i32, uid u32}; SIGCHLD {pid, uid,
  status i32, pad, utime i64, stime i64}; a fault {addr u64}; a POSIX timer
  {timerid i32, overrun i32, value u64}.
- ``struct sigaction`` as rt_sigaction(2) reads it: handler, flags,
  restorer, mask (u64 each). ``stack_t``: ss_sp u64, ss_flags i32, pad,
  ss_size u64.
"""

import struct

SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE = 1, 2, 3, 4, 5, 6, 7, 8
SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM = 9, 10, 11, 12, 13, 14, 15
SIGSTKFLT, SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU = 16, 17, 18, 19, 20, 21, 22
SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGPOLL = 23, 24, 25, 26, 27, 28, 29
SIGPWR, SIGSYS = 30, 31
SIGRTMIN, SIGRTMAX = 32, 64
NSIG = 64

SIG_DFL, SIG_IGN = 0, 1
SA_NOCLDSTOP, SA_SIGINFO, SA_RESTORER, SA_ONSTACK = 1, 4, 0x04000000, 0x08000000
SA_RESTART, SA_NODEFER, SA_RESETHAND = 0x10000000, 0x40000000, 0x80000000
SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31
MINSIGSTKSZ = 2048

# si_code values
SI_USER, SI_KERNEL, SI_TIMER, SI_TKILL = 0, 0x80, -2, -6

# The two signals no mask blocks, no handler catches.
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))
# Default actions other than "terminate" (signal(7)).
IGNORE_BY_DEFAULT = frozenset({SIGCHLD, SIGURG, SIGWINCH})
STOP_BY_DEFAULT = frozenset({SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU})
# Signals a fault raises; their siginfo carries si_addr (sigaction(2)).
FAULT_SIGNALS = frozenset({SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV})
CORE_BY_DEFAULT = frozenset({SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV,
                             SIGXCPU, SIGXFSZ, SIGSYS})

SIGSET_SIZE = 8                                 # sizeof(sigset_t): the sigsetsize calls take
SIGINFO_SIZE = 128
SIGINFO_HEAD = struct.Struct("<iii4x")          # si_signo, si_errno, si_code
SIGINFO_TIMER = struct.Struct("<iii4xiiQ")      # the head, si_tid, si_overrun, si_value
SIGINFO_OVERRUN_OFFSET = 20                     # where si_overrun sits in SIGINFO_TIMER
SIGACTION = struct.Struct("<QQQQ")              # handler, flags, restorer, mask
STACK_T = struct.Struct("<QiiQ")                # ss_sp, ss_flags, pad, ss_size


def siginfo_bytes(signo, code=SI_USER, pid=0, uid=0, addr=None, status=None):
    """A siginfo_t for a kill-like signal (pid, uid), a fault (addr) or a
    SIGCHLD (pid, uid, status; no CPU times)."""
    head = SIGINFO_HEAD.pack(signo, 0, code)
    if addr is not None:
        body = struct.pack("<Q", addr)
    elif status is not None:
        body = struct.pack("<iIi4xqq", pid, uid, status, 0, 0)
    else:
        body = struct.pack("<iI", pid, uid)
    return (head + body).ljust(SIGINFO_SIZE, b"\0")
