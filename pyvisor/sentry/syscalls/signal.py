"""Signal syscalls: dispositions, masks, the alternate stack, sending and waiting.

Delivery itself (frames, default actions) lives in sentry/task.py.
"""

import errno
import struct
import time

from pyvisor.abi.ints import s32
from pyvisor.abi.signals import (MINSIGSTKSZ, NSIG, SI_TKILL, SI_USER, SIGACTION, SIGKILL,
                                 SIGSET_SIZE, SIGSTOP, SS_AUTODISARM, SS_DISABLE, SS_ONSTACK,
                                 STACK_T, UNBLOCKABLE, siginfo_bytes)
from pyvisor.sentry import waiting
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls._util import read_deadline, read_sigset, swap_in_mask
from pyvisor.sentry.vfs.pidfd import PidFile

SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2


def _check_signo(sig):
    if not 1 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)


def sys_rt_sigaction(t, sig, act, oldact, sigsetsize, *_):
    """Implements Linux syscall rt_sigaction(2)."""
    sig = s32(sig)
    _check_signo(sig)
    if sigsetsize != SIGSET_SIZE:
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
    if sigsetsize != SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)
    how = s32(how)
    new = None
    if setp:
        if how not in (SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK):
            raise SyscallError(errno.EINVAL)
        new = read_sigset(t, setp, sigsetsize)
    if oldp:
        t.copy_out(oldp, t.signals.mask.to_bytes(8, "little"))
    if new is not None:
        m = t.signals.mask
        m = m | new if how == SIG_BLOCK else m & ~new if how == SIG_UNBLOCK else new
        t.signals.mask = m & ~UNBLOCKABLE
    return 0


def sys_rt_sigpending(t, setp, sigsetsize, *_):
    """Implements Linux syscall rt_sigpending(2): signals pending and blocked."""
    if sigsetsize > SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)
    bits = 0
    for signo, _info in t.pending + t.group.pending:
        bits |= 1 << (signo - 1)
    t.copy_out(setp, (bits & t.signals.mask).to_bytes(8, "little")[:sigsetsize])
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


def _send(t, target, sig, group, code):
    if not 0 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)
    if sig:
        t.kernel.send_signal(target, sig, siginfo_bytes(sig, code, pid=t.pid, uid=t.creds.uid),
                             group=group)
    return 0


def sys_kill(t, pid, sig, *_):
    """Implements Linux syscall kill(2): a process, a process group, or every process."""
    pid, sig = s32(pid), s32(sig)
    if not 0 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)
    k = t.kernel
    with k.lock:
        live = [g for g in k.groups.values() if g.tasks and g.exiting is None]
        if pid > 0:
            targets = [g for g in live if g.tgid == pid]
        elif pid == -1:
            # kill(2): every process the caller may signal except init (pid 1)
            # and the caller itself; ESRCH if that is nobody.
            targets = [g for g in live if g.tgid != 1 and g is not t.group]
        else:
            pgid = t.group.pgid if pid == 0 else -pid
            targets = [g for g in live if g.pgid == pgid]
        leaders = [next(iter(g.tasks.values())) for g in targets]
    if not leaders:
        raise SyscallError(errno.ESRCH)
    for x in leaders:
        _send(t, x, sig, True, SI_USER)
    return 0


def _task(t, tid, tgid=None):
    x = t.kernel.tasks.get(tid)
    if x is None or (tgid is not None and x.pid != tgid):
        raise SyscallError(errno.ESRCH)
    return x


def sys_tgkill(t, tgid, tid, sig, *_):
    """Implements Linux syscall tgkill(2)."""
    tgid, tid, sig = s32(tgid), s32(tid), s32(sig)
    if tgid <= 0 or tid <= 0 or not 0 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)
    return _send(t, _task(t, tid, tgid), sig, False, SI_TKILL)


def sys_tkill(t, tid, sig, *_):
    """Implements Linux syscall tkill(2)."""
    tid, sig = s32(tid), s32(sig)
    if tid <= 0 or not 0 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)
    return _send(t, _task(t, tid), sig, False, SI_TKILL)


def _queueinfo(t, target, sig, info, group):
    if not 1 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)
    raw = t.copy_in(info, 128)
    code = struct.unpack_from("<i", raw, 8)[0]
    if (code >= 0 or code == SI_TKILL) and target.pid != t.pid:
        raise SyscallError(errno.EPERM)
    t.kernel.send_signal(target, sig, struct.pack("<i", sig) + raw[4:], group=group)
    return 0


def sys_rt_sigqueueinfo(t, tgid, sig, info, *_):
    """Implements Linux syscall rt_sigqueueinfo(2)."""
    g = t.kernel.groups.get(s32(tgid))
    if g is None or not g.tasks:
        raise SyscallError(errno.ESRCH)
    return _queueinfo(t, next(iter(g.tasks.values())), s32(sig), info, True)


def sys_rt_tgsigqueueinfo(t, tgid, tid, sig, info, *_):
    """Implements Linux syscall rt_tgsigqueueinfo(2)."""
    return _queueinfo(t, _task(t, s32(tid), s32(tgid)), s32(sig), info, False)


PIDFD_SIGNAL_THREAD, PIDFD_SIGNAL_THREAD_GROUP, PIDFD_SIGNAL_PROCESS_GROUP = 1, 2, 4
PIDFD_SIGNAL_FLAGS = PIDFD_SIGNAL_THREAD | PIDFD_SIGNAL_THREAD_GROUP | PIDFD_SIGNAL_PROCESS_GROUP
PIDFD_SELF_THREAD, PIDFD_SELF_THREAD_GROUP = -10000, -20000


def _pidfd_target(t, pidfd):
    """(ThreadGroup, the thread named or None, default scope flag) for pidfd_send_signal.

    Besides a pidfd, an fd of a /proc/PID directory names that process (Linux
    tgid_pidfd_to_pid; ESRCH once it is gone)."""
    if pidfd == PIDFD_SELF_THREAD:
        return t.group, t, PIDFD_SIGNAL_THREAD
    if pidfd == PIDFD_SELF_THREAD_GROUP:
        return t.group, None, PIDFD_SIGNAL_THREAD_GROUP
    f = t.fdtable.get(pidfd)
    if isinstance(f, PidFile):
        return f.group, None, PIDFD_SIGNAL_THREAD_GROUP
    pid = _proc_pid_dir(f)
    if pid is None:
        raise SyscallError(errno.EBADF)
    g = t.kernel.groups.get(pid)
    if g is None:
        raise SyscallError(errno.ESRCH)
    return g, None, PIDFD_SIGNAL_THREAD_GROUP


def _proc_pid_dir(f):
    """The pid if f is an open /proc/PID directory, else None."""
    from pyvisor.sentry.vfs.procfs import ProcDir, ProcFS
    inode = getattr(getattr(f, "vd", None), "inode", None)
    if isinstance(inode, ProcDir) and isinstance(inode.fs, ProcFS) and inode.key.isdigit():
        return int(inode.key)
    return None


def sys_pidfd_send_signal(t, pidfd, sig, info, flags, *_):
    """Implements Linux syscall pidfd_send_signal(2).

    Checks in Linux's order: flags (at most one scope flag), the fd (EBADF
    unless a pidfd), the siginfo (its si_signo must be sig; only a process
    signalling itself may forge a positive si_code or SI_TKILL: EPERM), then
    the target: ESRCH once reaped, and then the signal number (EINVAL). A
    zombie still exists: the signal (or the probe, sig 0) succeeds and is
    dropped, as Linux drops signals to a group that has exited.
    """
    pidfd, sig, flags = s32(pidfd), s32(sig), flags & 0xFFFFFFFF
    if flags & ~PIDFD_SIGNAL_FLAGS or bin(flags).count("1") > 1:
        raise SyscallError(errno.EINVAL)
    g, thread, scope = _pidfd_target(t, pidfd)
    scope = flags or scope
    raw = None
    if info:
        raw = t.copy_in(info, 128)
        signo, code = struct.unpack_from("<i", raw, 0)[0], struct.unpack_from("<i", raw, 8)[0]
        if signo != sig:
            raise SyscallError(errno.EINVAL)
        if (g is not t.group or thread not in (None, t) or scope == PIDFD_SIGNAL_PROCESS_GROUP) \
                and (code >= 0 or code == SI_TKILL):
            raise SyscallError(errno.EPERM)
    k = t.kernel
    with k.lock:
        if g.wstatus is not None and k.groups.get(g.tgid) is not g:
            raise SyscallError(errno.ESRCH)
        if scope == PIDFD_SIGNAL_PROCESS_GROUP:
            members = [x for x in k.groups.values() if x.pgid == g.tgid and x.tasks]
            if not members:
                raise SyscallError(errno.ESRCH)
        else:
            members = [g] if g.tasks else []
    if not 0 <= sig <= NSIG:
        raise SyscallError(errno.EINVAL)
    code = SI_TKILL if scope == PIDFD_SIGNAL_THREAD else SI_USER
    for m in members:
        with k.lock:
            target = thread if thread is not None and thread.group is m else \
                next(iter(m.tasks.values()), None)
        if target is None or not sig:
            continue
        data = (struct.pack("<i", sig) + raw[4:]) if raw is not None else \
            siginfo_bytes(sig, code, pid=t.pid, uid=t.creds.uid)
        k.send_signal(target, sig, data, group=scope != PIDFD_SIGNAL_THREAD)
    return 0


def sys_rt_sigreturn(t, *_):
    """Implements Linux syscall rt_sigreturn(2)."""
    return t.sigreturn()


def _suspend_until_signal(t):
    with t.kernel.lock:
        while True:
            waiting.wait(t.kernel.cond)


def sys_pause(t, *_):
    """Implements Linux syscall pause(2): sleeps until a signal handler has run (EINTR)."""
    _suspend_until_signal(t)


def sys_rt_sigsuspend(t, mask, sigsetsize, *_):
    """Implements Linux syscall rt_sigsuspend(2): the old mask returns through the handler's frame."""
    swap_in_mask(t, read_sigset(t, mask, sigsetsize))
    _suspend_until_signal(t)


def sys_rt_sigtimedwait(t, setp, info, timeout, sigsetsize, *_):
    """Implements Linux syscall rt_sigtimedwait(2)."""
    wanted = read_sigset(t, setp, sigsetsize) & ~UNBLOCKABLE
    deadline = read_deadline(t, timeout)
    k = t.kernel
    with k.lock:
        while True:
            for src in (t.pending, t.group.pending):
                for i, (signo, raw) in enumerate(src):
                    if wanted & (1 << (signo - 1)):
                        del src[i]
                        if info:
                            t.copy_out(info, raw)
                        return signo
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise SyscallError(errno.EAGAIN)
            # Only signals outside `wanted` interrupt this wait; senders of a
            # wanted one pick this task (Kernel.send_signal) and wake it.
            old = t.signals.mask
            t.signals.mask = old | wanted
            t.sigwaiting = wanted
            try:
                waiting.wait(k.cond, left)
            finally:
                t.signals.mask = old
                t.sigwaiting = 0
