"""Permission checks (Linux's generic_permission, without ACLs).

File access uses the filesystem ids (fsuid/fsgid, which follow the
effective ids unless setfsuid changed them); access(2) uses the real ids.
The owner, group or other triplet applies, first match wins. Then the
capabilities override, as capable_wrt_inode_uidgid does:

- CAP_DAC_OVERRIDE: read and write anything; execute a file only if some
  x bit is set; search any directory.
- CAP_DAC_READ_SEARCH: read any file, search any directory.

Credentials without capability fields (tests, the Sentry itself) count
uid 0 as holding all of them.
"""

import errno
from types import SimpleNamespace

from ..errors import SyscallError
from .stat import S_IFDIR, S_IFMT

R_OK, W_OK, X_OK = 4, 2, 1
CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 0, 1, 2, 3

_ROOT = SimpleNamespace(uid=0, gid=0, euid=0, egid=0, suid=0, sgid=0, fsuid=0, fsgid=0,
                        groups=())


def creds_of(t):
    """The task's credentials; a task without creds (the Sentry itself) acts as root."""
    creds = getattr(t, "creds", None)
    return creds if creds is not None else _ROOT


def fs_ids(creds):
    """(fsuid, fsgid): the ids that own new files and pass file checks."""
    return getattr(creds, "fsuid", creds.euid), getattr(creds, "fsgid", creds.egid)


def has_cap(creds, cap, real=False):
    """Whether `creds` hold capability `cap`. With `real` (access(2)), as
    do_faccessat: a non-root real uid has none, a root one its permitted set."""
    if real:
        if creds.uid != 0:
            return False
        caps = getattr(creds, "cap_permitted", None)
    else:
        caps = getattr(creds, "cap_effective", None)
    if caps is None:
        return (creds.uid if real else fs_ids(creds)[0]) == 0
    return bool(caps >> cap & 1)


def check_access(inode, creds, mask, real=False):
    """EACCES unless `creds` may do `mask` (R_OK|W_OK|X_OK) to `inode`."""
    if not mask:
        return
    if real:
        uid, gid = creds.uid, creds.gid
    else:
        uid, gid = fs_ids(creds)
    mode = inode.mode
    if uid == inode.uid:
        bits = (mode >> 6) & 7
    elif gid == inode.gid or inode.gid in getattr(creds, "groups", ()):
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    if not mask & ~bits:
        return
    is_dir = mode & S_IFMT == S_IFDIR
    if has_cap(creds, CAP_DAC_OVERRIDE, real):
        if not mask & X_OK or is_dir or mode & 0o111:
            return
    if has_cap(creds, CAP_DAC_READ_SEARCH, real):
        if not mask & W_OK and (not mask & X_OK or is_dir):
            return
    raise SyscallError(errno.EACCES)


def is_owner(inode, creds):
    """inode_owner_or_capable: the fsuid owns it, or CAP_FOWNER."""
    return fs_ids(creds)[0] == inode.uid or has_cap(creds, CAP_FOWNER)
