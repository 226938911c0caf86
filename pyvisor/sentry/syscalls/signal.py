"""Signal state: dispositions, masks and the alternate stack are recorded.

N.B. Delivery to application handlers is not implemented yet (the processes
issue): a signal whose action is a handler is treated by its default action.
"""

import errno
import struct

from pyvisor.sentry.errors import SandboxExit, SyscallError
from pyvisor.sentry.syscalls import _numbers as nr
from pyvisor.sentry.syscalls._util import s32

NSIG = 64
SIGKILL, SIGSTOP = 9, 19
SIG_DFL, SIG_IGN = 0, 1
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31
MINSIGSTKSZ = 2048
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))
SIGACTION = struct.Struct("<QQQQ")    # handler, flags, restorer, mask
STACK_T = struct.Struct("<QiiQ")      # ss_sp, ss_flags, pad, ss_size

# Default actions (signal(7)): what happens when no handler runs.
IGNORE_BY_DEFAULT = {17, 23, 28}            # SIGCHLD, SIGURG, SIGWINCH
STOP_BY_DEFAULT = {19, 20, 21, 22}          # SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU
CONTINUE = 18                               # SIGCONT
CORE_BY_DEFAULT = {3, 4, 5, 6, 7, 8, 11, 24, 25, 31}


class SignalState:
    """Per-thread-group dispositions and per-thread mask and altstack."""

    def __init__(self):
        self.actions = {}          # signo -> (handler, flags, restorer, mask)
        self.mask = 0
        self.altstack = (0, SS_DISABLE, 0)

    def handler(self, signo):
        return self.actions.get(signo, (SIG_DFL, 0, 0, 0))[0]


def _check_signo(sig):
    if not 1 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)


def fatal_action(state, signo):
    """True if signo ends the sandbox now (default terminate or core, or a handler we cannot run)."""
    h = state.handler(signo)
    if h == SIG_IGN and signo not in (SIGKILL, SIGSTOP):
        return False
    if h == SIG_DFL and (signo in IGNORE_BY_DEFAULT or signo in STOP_BY_DEFAULT or signo == CONTINUE):
        return False
    return True


def sys_rt_sigaction(t, sig, act, oldact, sigsetsize, *_):
    """Implements Linux syscall rt_sigaction(2)."""
    sig = s32(sig)
    _check_signo(sig)
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    if act and sig in (SIGKILL, SIGSTOP):
        raise SyscallError(errno.EINVAL)
    new = SIGACTION.unpack(t.copy_in(act, SIGACTION.size)) if act else None
    if oldact:
        t.copy_out(oldact, SIGACTION.pack(*t.signals.actions.get(sig, (0, 0, 0, 0))))
    if new is not None:
        h, flags, restorer, mask = new
        t.signals.actions[sig] = (h, flags, restorer, mask & ~UNBLOCKABLE)
    return 0


def sys_rt_sigprocmask(t, how, setp, oldp, sigsetsize, *_):
    """Implements Linux syscall rt_sigprocmask(2)."""
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    how = s32(how)
    new = None
    if setp:
        if how not in (SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK):
            raise SyscallError(errno.EINVAL)
        new = int.from_bytes(t.copy_in(setp, 8), "little")
    if oldp:
        t.copy_out(oldp, t.signals.mask.to_bytes(8, "little"))
    if new is not None:
        m = t.signals.mask
        m = m | new if how == SIG_BLOCK else m & ~new if how == SIG_UNBLOCK else new
        t.signals.mask = m & ~UNBLOCKABLE
    return 0


def sys_rt_sigpending(t, setp, sigsetsize, *_):
    """Implements Linux syscall rt_sigpending(2): nothing is ever pending yet."""
    if sigsetsize > 8:
        raise SyscallError(errno.EINVAL)
    t.copy_out(setp, bytes(sigsetsize))
    return 0


def sys_sigaltstack(t, ss, old_ss, *_):
    """Implements Linux syscall sigaltstack(2)."""
    new = STACK_T.unpack(t.copy_in(ss, STACK_T.size)) if ss else None
    if old_ss:
        sp, flags, size = t.signals.altstack
        t.copy_out(old_ss, STACK_T.pack(sp, flags, 0, size))
    if new is not None:
        sp, flags, _pad, size = new
        if flags & ~(SS_DISABLE | SS_AUTODISARM | SS_ONSTACK):
            raise SyscallError(errno.EINVAL)
        if flags & SS_DISABLE:
            t.signals.altstack = (0, SS_DISABLE, 0)
        else:
            if size < MINSIGSTKSZ:
                raise SyscallError(errno.ENOMEM)
            t.signals.altstack = (sp, flags & SS_AUTODISARM, size)
    return 0


def _signal_self(t, sig):
    if sig == 0:
        return 0
    if fatal_action(t.signals, sig):
        raise SandboxExit(128 + sig, signal=sig)
    return 0


def sys_kill(t, pid, sig, *_):
    """Implements Linux syscall kill(2) within the sandbox (one process so far)."""
    pid, sig = s32(pid), s32(sig)
    if not 0 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)
    if pid not in (0, -1, t.pid, -t.pid):
        raise SyscallError(errno.ESRCH)
    return _signal_self(t, sig)


def sys_tgkill(t, tgid, tid, sig, *_):
    """Implements Linux syscall tgkill(2)."""
    tgid, tid, sig = s32(tgid), s32(tid), s32(sig)
    if tgid <= 0 or tid <= 0 or not 0 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)
    if (tgid, tid) != (t.pid, t.tid):
        raise SyscallError(errno.ESRCH)
    return _signal_self(t, sig)


def sys_tkill(t, tid, sig, *_):
    """Implements Linux syscall tkill(2)."""
    tid, sig = s32(tid), s32(sig)
    if tid <= 0 or not 0 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)
    if tid != t.tid:
        raise SyscallError(errno.ESRCH)
    return _signal_self(t, sig)


SYSCALLS = {
    nr.NR_rt_sigaction: sys_rt_sigaction,
    nr.NR_rt_sigprocmask: sys_rt_sigprocmask,
    nr.NR_rt_sigpending: sys_rt_sigpending,
    nr.NR_sigaltstack: sys_sigaltstack,
    nr.NR_kill: sys_kill,
    nr.NR_tgkill: sys_tgkill,
    nr.NR_tkill: sys_tkill,
}
