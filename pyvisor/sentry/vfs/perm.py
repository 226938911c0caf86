"""Permission checks (Linux's generic_permission / acl-less inode_permission).

uid 0 may read and write anything, and may execute a file if any of its x
bits is set (directories are always searchable for root). Others get the
owner, group or other triplet, first match wins.
"""

import errno
from types import SimpleNamespace

from ..errors import SyscallError
from .stat import S_IFDIR, S_IFMT

R_OK, W_OK, X_OK = 4, 2, 1

_ROOT = SimpleNamespace(uid=0, gid=0, euid=0, egid=0, suid=0, sgid=0, groups=())


def creds_of(t):
    """The task's credentials; a task without creds (tests, the Sentry
    itself) acts as root."""
    creds = getattr(t, "creds", None)
    return creds if creds is not None else _ROOT


def check_access(inode, creds, mask, real=False):
    """EACCES unless `creds` may do `mask` (R_OK|W_OK|X_OK) to `inode`."""
    if not mask:
        return
    uid = creds.uid if real else creds.euid
    gid = creds.gid if real else creds.egid
    mode = inode.mode
    if uid == 0:
        if mask & X_OK and mode & S_IFMT != S_IFDIR and not mode & 0o111:
            raise SyscallError(errno.EACCES)
        return
    if uid == inode.uid:
        bits = (mode >> 6) & 7
    elif gid == inode.gid or inode.gid in getattr(creds, "groups", ()):
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    if mask & ~bits:
        raise SyscallError(errno.EACCES)
