"""Extended attributes (xattr(7)): getxattr(2), setxattr(2), listxattr(2),
removexattr(2) and their l*/f* forms.

The file's inode answers: a file in a volume (-v) keeps user.* attributes
on the host through the Gofer (Txattrwalk/Txattrcreate); every other file
has none (reads say so as Linux does for an empty set: ENODATA, the empty
list) and refuses to store one (EOPNOTSUPP).

N.B. Linux tmpfs would keep user.* attributes in memory; ours do not. And
9P2000.L cannot tell "set to the empty value" from "remove": setting an
empty value on a volume's file removes the attribute.
"""

import errno

from pyvisor.abi.ints import s32
from pyvisor.sentry.errors import SyscallError

XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
XATTR_CREATE, XATTR_REPLACE = 1, 2


def _path_inode(t, path, follow):
    return t.kernel.vfs.resolve_vd(t, t.copy_in_str(path), follow=follow).inode


def _fd_inode(t, fd):
    f = t.fdtable.get(s32(fd))
    return f.vd.inode if f.vd is not None else None


def _name(t, name):
    n = t.copy_in_str(name, XATTR_NAME_MAX + 1)
    if not n or len(n) > XATTR_NAME_MAX:
        raise SyscallError(errno.ERANGE)
    return n


def _out(t, data, buf, size):
    """Copies data to buf; size 0 asks only for the length (ERANGE if short)."""
    if size == 0:
        return len(data)
    if len(data) > size:
        raise SyscallError(errno.ERANGE)
    if data:
        t.copy_out(buf, data)
    return len(data)


def _getxattr(t, inode, name, value, size):
    n = _name(t, name)
    if inode is None:
        raise SyscallError(errno.ENODATA)
    return _out(t, inode.getxattr(n), value, min(size, XATTR_SIZE_MAX))


def _get(follow):
    def sys_getxattr(t, path, name, value, size, *_):
        """Implements Linux syscalls getxattr(2)/lgetxattr(2)."""
        return _getxattr(t, _path_inode(t, path, follow), name, value, size)
    return sys_getxattr


def sys_fgetxattr(t, fd, name, value, size, *_):
    """Implements Linux syscall fgetxattr(2)."""
    return _getxattr(t, _fd_inode(t, fd), name, value, size)


def _listxattr(t, inode, buf, size):
    names = inode.listxattr() if inode is not None else []
    return _out(t, b"".join(n + b"\0" for n in names), buf, min(size, XATTR_SIZE_MAX))


def _list(follow):
    def sys_listxattr(t, path, buf, size, *_):
        """Implements Linux syscalls listxattr(2)/llistxattr(2)."""
        return _listxattr(t, _path_inode(t, path, follow), buf, size)
    return sys_listxattr


def sys_flistxattr(t, fd, buf, size, *_):
    """Implements Linux syscall flistxattr(2)."""
    return _listxattr(t, _fd_inode(t, fd), buf, size)


def _setxattr(t, inode, name, value, size, flags):
    flags = s32(flags)
    if flags & ~(XATTR_CREATE | XATTR_REPLACE):
        raise SyscallError(errno.EINVAL)
    n = _name(t, name)
    if size > XATTR_SIZE_MAX:
        raise SyscallError(errno.E2BIG)     # setxattr(2): "size of name or value exceeds a limit"
    data = t.copy_in(value, size) if size else b""
    if inode is None:
        raise SyscallError(errno.EOPNOTSUPP)
    inode.setxattr(n, bytes(data), flags)
    return 0


def _set(follow):
    def sys_setxattr(t, path, name, value, size, flags, *_):
        """Implements Linux syscalls setxattr(2)/lsetxattr(2)."""
        return _setxattr(t, _path_inode(t, path, follow), name, value, size, flags)
    return sys_setxattr


def sys_fsetxattr(t, fd, name, value, size, flags, *_):
    """Implements Linux syscall fsetxattr(2)."""
    return _setxattr(t, _fd_inode(t, fd), name, value, size, flags)


def _removexattr(t, inode, name):
    n = _name(t, name)
    if inode is None:
        raise SyscallError(errno.ENODATA)
    inode.removexattr(n)
    return 0


def _remove(follow):
    def sys_removexattr(t, path, name, *_):
        """Implements Linux syscalls removexattr(2)/lremovexattr(2)."""
        return _removexattr(t, _path_inode(t, path, follow), name)
    return sys_removexattr


def sys_fremovexattr(t, fd, name, *_):
    """Implements Linux syscall fremovexattr(2)."""
    return _removexattr(t, _fd_inode(t, fd), name)


sys_getxattr, sys_lgetxattr = _get(True), _get(False)
sys_listxattr, sys_llistxattr = _list(True), _list(False)
sys_setxattr, sys_lsetxattr = _set(True), _set(False)
sys_removexattr, sys_lremovexattr = _remove(True), _remove(False)
