"""inotify_init(2), inotify_init1(2), inotify_add_watch(2),
inotify_rm_watch(2): a file of change events (vfs/inotify.py)."""

import errno

from pyvisor.abi.ints import s32
from pyvisor.sentry.errors import SyscallError
from pyvisor.abi.flags import (ALL_INOTIFY_BITS, IN_ALL_EVENTS, IN_CLOEXEC, IN_DONT_FOLLOW,
                               IN_MASK_ADD, IN_MASK_CREATE, IN_ONLYDIR)
from pyvisor.sentry.vfs.inotify import InotifyFile, make_inotify
from pyvisor.sentry.vfs.perm import R_OK, check_access, creds_of
from pyvisor.sentry.vfs.vfs import PATH_MAX


def sys_inotify_init1(t, flags, *_):
    """Implements Linux syscall inotify_init1(2): EINVAL for flags other
    than IN_NONBLOCK and IN_CLOEXEC."""
    flags = s32(flags)
    f = make_inotify(flags)
    return t.fdtable.install(f, cloexec=bool(flags & IN_CLOEXEC))


def sys_inotify_init(t, *_):
    """Implements Linux syscall inotify_init(2) (no flags)."""
    return sys_inotify_init1(t, 0)


def _inotify_file(t, fd):
    """EBADF for a closed fd, EINVAL for one that is not an inotify file."""
    f = t.fdtable.get(s32(fd))
    if not isinstance(f, InotifyFile):
        raise SyscallError(errno.EINVAL)
    return f


def sys_inotify_add_watch(t, fd, path, mask, *_):
    """Implements Linux syscall inotify_add_watch(2). In Linux's order:
    EINVAL for a mask with no event bit, or with both IN_MASK_ADD and
    IN_MASK_CREATE; EBADF/EINVAL for the fd; the path's errors (ENOENT,
    ENOTDIR also for IN_ONLYDIR on a non-directory, ELOOP); EACCES without
    read permission; EEXIST for IN_MASK_CREATE on a watched inode."""
    mask &= 0xFFFFFFFF
    if not mask & ALL_INOTIFY_BITS or not mask & IN_ALL_EVENTS:
        raise SyscallError(errno.EINVAL)
    if mask & IN_MASK_ADD and mask & IN_MASK_CREATE:
        raise SyscallError(errno.EINVAL)
    f = _inotify_file(t, fd)
    p = t.copy_in_str(path, PATH_MAX)
    vd = t.kernel.vfs.resolve_vd(t, p, follow=not mask & IN_DONT_FOLLOW)
    if mask & IN_ONLYDIR and not vd.inode.is_dir():
        raise SyscallError(errno.ENOTDIR)
    check_access(vd.inode, creds_of(t), R_OK)
    return f.add_watch(vd.inode, mask)


def sys_inotify_rm_watch(t, fd, wd, *_):
    """Implements Linux syscall inotify_rm_watch(2): EINVAL for a wd the
    instance does not hold; queues IN_IGNORED."""
    f = _inotify_file(t, fd)
    f.rm_watch(s32(wd))
    return 0
