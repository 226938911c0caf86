"""signalfd(2) and signalfd4(2): signals read as a file (vfs/signalfd.py)."""

import errno

from pyvisor.abi.ints import s32
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls._util import file_of_type, read_sigset
from pyvisor.sentry.vfs.signalfd import SFD_CLOEXEC, SignalFile, make_signalfd


def sys_signalfd4(t, fd, mask, sizemask, flags, *_):
    """Implements Linux syscall signalfd4(2): fd -1 makes a new signalfd,
    else fd's mask is replaced (EINVAL if fd is not a signalfd)."""
    flags = s32(flags)
    sigset = read_sigset(t, mask, sizemask)
    fd = s32(fd)
    if fd != -1:
        f = file_of_type(t, fd, SignalFile)
        if flags & ~(SFD_CLOEXEC | 0o4000):
            raise SyscallError(errno.EINVAL)
        f.set_mask(sigset)
        return fd
    f = make_signalfd(t.kernel, sigset, flags)
    return t.fdtable.install(f, cloexec=bool(flags & SFD_CLOEXEC))


def sys_signalfd(t, fd, mask, sizemask, *_):
    """Implements Linux syscall signalfd(2) (no flags)."""
    return sys_signalfd4(t, fd, mask, sizemask, 0)
