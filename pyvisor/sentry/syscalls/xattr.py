"""Extended attributes: none are stored; reads say so as Linux does for an empty set.

N.B. setting an attribute gives EOPNOTSUPP (Linux tmpfs would keep user.* ones).
"""

import errno

from pyvisor.abi.ints import s32
from pyvisor.sentry.errors import SyscallError

XATTR_NAME_MAX = 255


def _path_exists(t, path, follow):
    t.kernel.vfs.stat(t, t.copy_in_str(path), follow=follow)


def _name(t, name):
    n = t.copy_in_str(name, XATTR_NAME_MAX + 1)
    if not n or len(n) > XATTR_NAME_MAX:
        raise SyscallError(errno.ERANGE)
    return n


def _get(follow):
    def sys_getxattr(t, path, name, value, size, *_):
        """Implements Linux syscalls getxattr(2)/lgetxattr(2): no attribute exists (ENODATA)."""
        _path_exists(t, path, follow)
        _name(t, name)
        raise SyscallError(errno.ENODATA)
    return sys_getxattr


def sys_fgetxattr(t, fd, name, value, size, *_):
    """Implements Linux syscall fgetxattr(2)."""
    t.fdtable.get(s32(fd))
    _name(t, name)
    raise SyscallError(errno.ENODATA)


def _list(follow):
    def sys_listxattr(t, path, buf, size, *_):
        """Implements Linux syscalls listxattr(2)/llistxattr(2): the empty list."""
        _path_exists(t, path, follow)
        return 0
    return sys_listxattr


def sys_flistxattr(t, fd, buf, size, *_):
    """Implements Linux syscall flistxattr(2)."""
    t.fdtable.get(s32(fd))
    return 0


def _set(follow):
    def sys_setxattr(t, path, name, value, size, flags, *_):
        """Implements Linux syscalls setxattr(2)/lsetxattr(2): not supported here."""
        _path_exists(t, path, follow)
        _name(t, name)
        raise SyscallError(errno.EOPNOTSUPP)
    return sys_setxattr


def sys_fsetxattr(t, fd, name, value, size, flags, *_):
    """Implements Linux syscall fsetxattr(2): not supported here."""
    t.fdtable.get(s32(fd))
    _name(t, name)
    raise SyscallError(errno.EOPNOTSUPP)


def _remove(follow):
    def sys_removexattr(t, path, name, *_):
        """Implements Linux syscalls removexattr(2)/lremovexattr(2): nothing to remove."""
        _path_exists(t, path, follow)
        _name(t, name)
        raise SyscallError(errno.ENODATA)
    return sys_removexattr


def sys_fremovexattr(t, fd, name, *_):
    """Implements Linux syscall fremovexattr(2)."""
    t.fdtable.get(s32(fd))
    _name(t, name)
    raise SyscallError(errno.ENODATA)


sys_getxattr, sys_lgetxattr = _get(True), _get(False)
sys_listxattr, sys_llistxattr = _list(True), _list(False)
sys_setxattr, sys_lsetxattr = _set(True), _set(False)
sys_removexattr, sys_lremovexattr = _remove(True), _remove(False)
