"""Task identity and lifetime: getpid, exit, arch_prctl, set_tid_address and friends."""

import errno

import struct

from pyvisor.abi.flags import (CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID, CLONE_DETACHED,
                               CLONE_FILES, CLONE_FS, CLONE_IO, CLONE_NEWMASK, CLONE_PARENT,
                               CLONE_PARENT_SETTID, CLONE_PIDFD, CLONE_PTRACE, CLONE_SETTLS,
                               CLONE_SIGHAND, CLONE_SYSVSEM, CLONE_THREAD, CLONE_UNTRACED,
                               CLONE_VFORK, CLONE_VM, CSIGNAL)
from pyvisor.abi.ints import s32
from pyvisor.abi.signals import SIGCHLD, siginfo_bytes
from pyvisor.abi.structs import pack_timeval
from pyvisor.sentry import timers
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.mm import MM_TOP
from pyvisor.sentry.syscalls._util import file_of_type
from pyvisor.sentry.task import GroupExit, TaskExit, exit_wstatus
from pyvisor.sentry.vfs import pidfd as _pidfd

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012
PR_SET_NAME, PR_GET_NAME, PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 15, 16, 1, 2
PR_GET_DUMPABLE, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 3, 4, 38, 39
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER, PR_CAPBSET_READ = 36, 37, 23
PR_GET_SECUREBITS, PR_SET_VMA, PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 27, 0x53564D41, 41, 42
PR_MCE_KILL_GET = 34


def sys_getpid(t, *_):
    """Implements Linux syscall getpid(2): the thread group id in the sandbox's PID namespace."""
    return t.pid


def sys_gettid(t, *_):
    """Implements Linux syscall gettid(2)."""
    return t.tid


def sys_getppid(t, *_):
    """Implements Linux syscall getppid(2): 0 for the sandbox's init, as in a new PID namespace."""
    return t.ppid


def sys_exit(t, status, *_):
    """Implements Linux syscall exit(2): this thread ends; the group when it was the last."""
    raise TaskExit(status & 0xFF)


def sys_exit_group(t, status, *_):
    """Implements Linux syscall exit_group(2)."""
    raise GroupExit(exit_wstatus(status & 0xFF))


SUPPORTED = (CSIGNAL | CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_VFORK
             | CLONE_PARENT | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID
             | CLONE_CHILD_CLEARTID | CLONE_DETACHED | CLONE_UNTRACED | CLONE_CHILD_SETTID
             | CLONE_IO | CLONE_PTRACE | CLONE_PIDFD)


def _clone(t, flags, stack, ptid, ctid, tls, pidfd_addr=None):
    """clone(2)'s flag rules, then the Kernel's work.

    With CLONE_PIDFD a pidfd for the child is stored as an int at
    `pidfd_addr` (clone3's cl_args.pidfd), or at `ptid` for clone(2), which
    is why clone(2) refuses CLONE_PIDFD with CLONE_PARENT_SETTID.
    """
    if flags & CLONE_THREAD and not flags & CLONE_SIGHAND or \
            flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_PIDFD:
        if flags & (CLONE_THREAD | CLONE_DETACHED):
            raise SyscallError(errno.EINVAL)
        if pidfd_addr is None:
            if flags & CLONE_PARENT_SETTID:
                raise SyscallError(errno.EINVAL)
            pidfd_addr = ptid
        t.copy_out(pidfd_addr, b"\0\0\0\0")      # EFAULT before any child exists
    if flags & CLONE_THREAD and flags & CSIGNAL:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_NEWMASK:
        raise SyscallError(errno.EPERM if flags & ~SUPPORTED & CLONE_NEWMASK else errno.EINVAL)
    if flags & ~SUPPORTED:
        raise SyscallError(errno.EINVAL)
    if flags & CSIGNAL > 64:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_SETTLS and tls >= MM_TOP:
        raise SyscallError(errno.EPERM)     # copy_thread: arch_prctl(ARCH_SET_FS)'s rule
    tid = t.kernel.clone(t, flags & ~CLONE_PIDFD, stack, ptid, ctid, tls)
    if flags & CLONE_PIDFD:
        _store_pidfd(t, tid, pidfd_addr)
    return tid


def _store_pidfd(t, tid, addr):
    """CLONE_PIDFD: a pidfd for the new child, its number written at addr.

    N.B. Linux installs the pidfd before the child can run; here it is made
    just after, which only differs if a sibling thread reaps the child first.
    """
    with t.kernel.lock:
        g = t.kernel.groups.get(tid)
    if g is None:
        return
    fd = t.fdtable.install(_pidfd.PidFile(g), cloexec=True)
    t.copy_out(addr, struct.pack("<i", fd))


def sys_clone(t, flags, stack, ptid, ctid, tls, *_):
    """Implements Linux syscall clone(2) (x86-64 argument order: flags, stack, ptid, ctid, tls)."""
    return _clone(t, flags & 0xFFFFFFFF, stack, ptid, ctid, tls)


CLONE_ARGS = struct.Struct("<11Q")


def sys_clone3(t, uargs, size, *_):
    """Implements Linux syscall clone3(2) for the fields clone(2) has."""
    if size < 64 or size > 4096:
        raise SyscallError(errno.EINVAL)
    raw = t.copy_in(uargs, min(size, CLONE_ARGS.size)).ljust(CLONE_ARGS.size, b"\0")
    flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, \
        set_tid_size, cgroup = CLONE_ARGS.unpack(raw)
    if exit_signal & ~CSIGNAL or flags & 0xFF or set_tid or set_tid_size or flags >> 32:
        raise SyscallError(errno.EINVAL)
    if (stack == 0) != (stack_size == 0):
        raise SyscallError(errno.EINVAL)
    return _clone(t, flags | exit_signal, stack + stack_size if stack else 0,
                  parent_tid, child_tid, tls, pidfd_addr=pidfd)


def sys_fork(t, *_):
    """Implements Linux syscall fork(2)."""
    return _clone(t, SIGCHLD, 0, 0, 0, 0)


def sys_vfork(t, *_):
    """Implements Linux syscall vfork(2): the parent waits until the child execs or exits."""
    return _clone(t, CLONE_VM | CLONE_VFORK | SIGCHLD, 0, 0, 0, 0)


ARG_MAX = 2 << 20


def _string_list(t, addr):
    out, total = [], 0
    if not addr:
        return out
    while True:
        p = t.copy_in_u64(addr + 8 * len(out))
        if not p:
            return out
        s = t.copy_in_str(p, 131072 + 1)
        total += len(s) + 1 + 8
        if total > ARG_MAX:
            raise SyscallError(errno.E2BIG)
        out.append(s)


def sys_execve(t, path, argv, envp, *_):
    """Implements Linux syscall execve(2)."""
    p = t.copy_in_str(path)
    if not p:
        raise SyscallError(errno.ENOENT)
    return t.kernel.execve(t, p, _string_list(t, argv), _string_list(t, envp))


def sys_execveat(t, dirfd, path, argv, envp, flags, *_):
    """Implements Linux syscall execveat(2) for AT_FDCWD and absolute paths."""
    if s32(dirfd) != -100 and not t.copy_in_str(path).startswith(b"/"):
        raise SyscallError(errno.ENOSYS)
    if flags & ~0x1100:
        raise SyscallError(errno.EINVAL)
    return sys_execve(t, path, argv, envp)


WNOHANG, WUNTRACED, WCONTINUED, WEXITED, WNOWAIT = 1, 2, 8, 4, 0x01000000
WNOTHREAD, WALL, WCLONE = 0x20000000, 0x40000000, 0x80000000
RUSAGE_SIZE = 144


def sys_wait4(t, pid, status, options, rusage, *_):
    """Implements Linux syscall wait4(2)."""
    pid, options = s32(pid), s32(options) & 0xFFFFFFFF
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE):
        raise SyscallError(errno.EINVAL)
    if pid == -0x80000000:
        raise SyscallError(errno.ESRCH)
    found = t.kernel.wait_child(t, pid, options | WEXITED)
    if found is None:
        return 0
    child, wstatus = found
    _reaped(t, child)
    if status:
        t.copy_out(status, struct.pack("<i", wstatus))
    if rusage:
        t.copy_out(rusage, _child_rusage(child))
    return child.tgid


def _reaped(t, child):
    """After a wait: if it reaped `child`, its CPU times join ours and its pidfds hang up."""
    if child.wstatus is not None and t.kernel.groups.get(child.tgid) is not child:
        timers.child_reaped(t.group, child)
        _pidfd.group_changed(child)


def _child_rusage(child):
    """A struct rusage with the child's CPU times (and its reaped children's)."""
    user, prof = timers.group_cpu(child)
    cu, cp = timers.children_cpu(child)
    user, system = user + cu, max(0, prof + cp - user - cu)
    tv = pack_timeval(user) + pack_timeval(system)       # ru_utime, ru_stime
    return tv.ljust(RUSAGE_SIZE, b"\0")


P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3


def sys_waitid(t, idtype, ident, infop, options, rusage, *_):
    """Implements Linux syscall waitid(2)."""
    idtype, ident, options = s32(idtype), s32(ident), s32(options) & 0xFFFFFFFF
    if options & ~(WNOHANG | WUNTRACED | WEXITED | WCONTINUED | WNOWAIT | WNOTHREAD | WALL | WCLONE):
        raise SyscallError(errno.EINVAL)
    if not options & (WEXITED | WUNTRACED | WCONTINUED):
        raise SyscallError(errno.EINVAL)
    if idtype == P_ALL:
        pid = -1
    elif idtype == P_PID:
        pid = ident
    elif idtype == P_PGID:
        pid = -ident if ident else 0
    elif idtype == P_PIDFD:
        pid, options = _pidfd_wait_target(t, ident, options)
    else:
        raise SyscallError(errno.EINVAL)
    if idtype == P_PID and ident <= 0 or idtype == P_PGID and ident < 0:
        raise SyscallError(errno.EINVAL)
    found = t.kernel.wait_child(t, pid, options, reap=not options & WNOWAIT)
    if found is None and idtype == P_PIDFD and options & _PIDFD_NOHANG:
        raise SyscallError(errno.EAGAIN)
    if found is not None and not options & WNOWAIT:
        _reaped(t, found[0])
    if infop:
        if found is None:
            t.copy_out(infop, bytes(128))
        else:
            child, wstatus = found
            code, st = t.kernel._child_code(wstatus)
            t.copy_out(infop, siginfo_bytes(SIGCHLD, code, pid=child.tgid, status=st))
    if rusage:
        t.copy_out(rusage, _child_rusage(found[0]) if found is not None else bytes(RUSAGE_SIZE))
    return 0


_PIDFD_NOHANG = 1 << 40     # internal: WNOHANG came from a PIDFD_NONBLOCK pidfd


def _pidfd_wait_target(t, fd, options):
    """waitid(P_PIDFD, fd): the pid the pidfd names; a PIDFD_NONBLOCK pidfd
    makes the wait WNOHANG, and "nothing yet" then EAGAIN (Linux 5.10)."""
    if fd < 0:
        raise SyscallError(errno.EINVAL)
    f = file_of_type(t, fd, _pidfd.PidFile, errno.EBADF)
    if f.nonblocking and not options & WNOHANG:
        options |= WNOHANG | _PIDFD_NOHANG
    return f.group.tgid, options


PIDFD_NONBLOCK = _pidfd.PIDFD_NONBLOCK


def sys_pidfd_open(t, pid, flags, *_):
    """Implements Linux syscall pidfd_open(2): a pidfd for a process (a thread-group leader).

    EINVAL for flags other than PIDFD_NONBLOCK or a pid <= 0; ENOENT for a
    thread that does not lead its group (Linux 6.9 and later; EINVAL
    before); ESRCH when no such process exists (a zombie still exists: it
    has not been reaped). N.B. PIDFD_THREAD is not offered (EINVAL).
    """
    pid, flags = s32(pid), flags & 0xFFFFFFFF
    if flags & ~PIDFD_NONBLOCK or pid <= 0:
        raise SyscallError(errno.EINVAL)
    k = t.kernel
    with k.lock:
        g = k.groups.get(pid)
        if g is None:
            raise SyscallError(errno.ENOENT if pid in k.tasks else errno.ESRCH)
    return t.fdtable.install(_pidfd.PidFile(g, flags), cloexec=True)


def sys_pidfd_getfd(t, pidfd, targetfd, flags, *_):
    """Implements Linux syscall pidfd_getfd(2): a duplicate (close-on-exec) of another process's fd.

    N.B. every process of the sandbox may take another's fds (Linux asks
    for PTRACE_MODE_ATTACH_REALCREDS; all tasks here run as one user, and
    the host's Yama would allow a parent). ESRCH once the process has
    exited (Linux 6.18 says so for a zombie too); EBADF for an fd it does
    not have.
    """
    f = file_of_type(t, pidfd, _pidfd.PidFile, errno.EBADF)
    if flags:
        raise SyscallError(errno.EINVAL)
    k = t.kernel
    with k.lock:
        tasks = list(f.group.tasks.values())
    if not tasks or f.exited():
        raise SyscallError(errno.ESRCH)
    if s32(targetfd) < 0:
        raise SyscallError(errno.EBADF)
    theirs = tasks[0].fdtable
    # The reference is taken under their table's lock: the process may close
    # the fd at the same moment (FDTable.close drops it after that lock).
    with theirs._lock:
        got = theirs.get(s32(targetfd)).incref()
    return t.fdtable.install(got, cloexec=True)


def _group_of(t, pid):
    if pid == 0:
        return t.group
    g = t.kernel.groups.get(pid)
    if g is None or g.wstatus is not None:
        raise SyscallError(errno.ESRCH)
    return g


def sys_getpgid(t, pid, *_):
    """Implements Linux syscall getpgid(2)."""
    return _group_of(t, s32(pid)).pgid


def sys_getpgrp(t, *_):
    """Implements Linux syscall getpgrp(2)."""
    return t.group.pgid


def sys_getsid(t, pid, *_):
    """Implements Linux syscall getsid(2)."""
    return _group_of(t, s32(pid)).sid


def sys_setpgid(t, pid, pgid, *_):
    """Implements Linux syscall setpgid(2): self or a child that has not exec'd, within the session."""
    pid, pgid = s32(pid), s32(pgid)
    if pgid < 0:
        raise SyscallError(errno.EINVAL)
    k = t.kernel
    with k.lock:
        g = _group_of(t, pid)
        if g is not t.group and g.parent is not t.group:
            raise SyscallError(errno.ESRCH)
        if g is not t.group and g.execed:
            raise SyscallError(errno.EACCES)
        if g.sid != t.group.sid or g.sid == g.tgid:
            raise SyscallError(errno.EPERM)
        pgid = pgid or g.tgid
        if pgid != g.tgid and not any(o.pgid == pgid and o.sid == g.sid for o in k.groups.values()):
            raise SyscallError(errno.EPERM)
        g.pgid = pgid
    return 0


def sys_setsid(t, *_):
    """Implements Linux syscall setsid(2)."""
    k = t.kernel
    with k.lock:
        g = t.group
        if any(o.pgid == g.tgid for o in k.groups.values() if o.wstatus is None):
            raise SyscallError(errno.EPERM)
        g.sid = g.pgid = g.tgid
    return g.tgid


def sys_set_tid_address(t, addr, *_):
    """Implements Linux syscall set_tid_address(2): remembers clear_child_tid, returns the tid."""
    t.clear_child_tid = addr
    return t.tid


def sys_set_robust_list(t, head, length, *_):
    """Implements Linux syscall set_robust_list(2)."""
    if length != 24:
        raise SyscallError(errno.EINVAL)
    t.robust_list = head
    return 0


def sys_get_robust_list(t, pid, head_ptr, len_ptr, *_):
    """Implements Linux syscall get_robust_list(2) for the calling task."""
    if s32(pid) not in (0, t.tid):
        raise SyscallError(errno.ESRCH)
    t.copy_out_u64(head_ptr, t.robust_list)
    t.copy_out_u64(len_ptr, 24)
    return 0


def sys_arch_prctl(t, code, addr, *_):
    """Implements Linux syscall arch_prctl(2): the FS and GS bases."""
    code = s32(code)
    if code == ARCH_SET_FS:
        if addr >= MM_TOP:
            raise SyscallError(errno.EPERM)
        t.regs.fs_base = addr
        return 0
    if code == ARCH_GET_FS:
        t.copy_out_u64(addr, t.regs.fs_base)
        return 0
    if code == ARCH_SET_GS:
        if addr >= MM_TOP:
            raise SyscallError(errno.EPERM)
        t.regs.set_regs({"gs_base": addr})
        return 0
    if code == ARCH_GET_GS:
        t.copy_out_u64(addr, t.regs.get_regs()["gs_base"])
        return 0
    if code == ARCH_GET_CPUID:
        return 1
    raise SyscallError(errno.EINVAL)


def sys_prctl(t, option, a2, a3, a4, a5, *_):
    """Implements Linux syscall prctl(2) for the options single-process programs use."""
    option = s32(option)
    if option == PR_SET_NAME:
        t.comm = t.copy_in_str(a2, 4096)[:15]
        return 0
    if option == PR_GET_NAME:
        t.copy_out(a2, t.comm[:15].ljust(16, b"\0"))
        return 0
    if option == PR_SET_PDEATHSIG:
        if a2 > 64:
            raise SyscallError(errno.EINVAL)
        t.pdeathsig = a2
        return 0
    if option == PR_GET_PDEATHSIG:
        t.copy_out(a2, getattr(t, "pdeathsig", 0).to_bytes(4, "little"))
        return 0
    if option == PR_GET_DUMPABLE:
        return getattr(t, "dumpable", 1)
    if option == PR_SET_DUMPABLE:
        if a2 not in (0, 1):
            raise SyscallError(errno.EINVAL)
        t.dumpable = a2
        return 0
    if option == PR_SET_NO_NEW_PRIVS:
        if a2 != 1 or a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        t.no_new_privs = True
        return 0
    if option == PR_GET_NO_NEW_PRIVS:
        return int(getattr(t, "no_new_privs", False))
    if option == PR_SET_CHILD_SUBREAPER:
        t.group.child_subreaper = bool(a2)
        return 0
    if option == PR_GET_CHILD_SUBREAPER:
        t.copy_out(a2, int(t.group.child_subreaper).to_bytes(4, "little"))
        return 0
    if option == PR_CAPBSET_READ:
        if a2 > 40:
            raise SyscallError(errno.EINVAL)
        return 1
    if option in (PR_GET_SECUREBITS, PR_GET_THP_DISABLE, PR_MCE_KILL_GET):
        return 0
    if option in (PR_SET_VMA, PR_SET_THP_DISABLE):
        return 0
    raise SyscallError(errno.EINVAL)
