"""User and group IDs, supplementary groups and capabilities.

Linux background (credentials(7), capabilities(7), setresuid(2)):

- A task has real, effective, saved and filesystem IDs for both user and
  group. The effective ID is the one permission checks mostly use; the
  filesystem ID follows the effective ID on every change unless set with
  setfsuid, and is what file access checks use.
- "Privileged" means holding CAP_SETUID (for uid changes) or CAP_SETGID (for
  gid changes and setgroups) in the effective set, not "uid is 0". A
  non-privileged task may only move its IDs among its current real,
  effective and saved values.
- Changing user IDs changes capabilities (the "no SECBIT_KEEP_CAPS" rules of
  capabilities(7), "Effect of user ID changes on capabilities"):
  * if real, effective or saved uid was 0 and afterwards none is, the
    permitted and effective sets are cleared;
  * effective uid 0 -> non-zero clears the effective set;
  * effective uid non-zero -> 0 copies permitted into effective;
  * fsuid 0 -> non-zero drops the filesystem capabilities from effective,
    and back to 0 restores those of them that are permitted.
- An ID of -1 (0xffffffff) is "unchanged" for setre*/setres*; for setuid,
  setgid it is not a valid ID, so EINVAL.

Credentials are per task in Linux (glibc makes a process agree by signalling
every thread); here `t.creds` is per task as well: a Credentials
(sentry/auth.py, which also holds the uid-change rules above).
"""

import errno
import struct

from pyvisor.abi.ints import s32
from pyvisor.sentry.auth import ALL_CAPS, CAP_SETGID, CAP_SETPCAP, CAP_SETUID
from pyvisor.sentry.errors import SyscallError


UNCHANGED = 0xFFFFFFFF                  # (uid_t)-1
NGROUPS_MAX = 65536

# capget/capset header versions (linux/capability.h).
CAP_V1, CAP_V2, CAP_V3 = 0x19980330, 0x20071026, 0x20080522
_CAP_WORDS = {CAP_V1: 1, CAP_V2: 2, CAP_V3: 2}



def _id(v):
    return v & 0xFFFFFFFF


def _check_valid(v):
    if v == UNCHANGED:
        raise SyscallError(errno.EINVAL)
    return v


# --- getters -----------------------------------------------------------------


def sys_getuid(t, *_):
    """Implements Linux syscall getuid(2)."""
    return t.creds.uid


def sys_geteuid(t, *_):
    """Implements Linux syscall geteuid(2)."""
    return t.creds.euid


def sys_getgid(t, *_):
    """Implements Linux syscall getgid(2)."""
    return t.creds.gid


def sys_getegid(t, *_):
    """Implements Linux syscall getegid(2)."""
    return t.creds.egid


def _put_ids(t, addrs, values):
    # Linux writes each in turn; a bad later pointer still fails the call.
    for addr, v in zip(addrs, values):
        t.copy_out(addr, struct.pack("<I", v))
    return 0


def sys_getresuid(t, ruid, euid, suid, *_):
    """Implements Linux syscall getresuid(2)."""
    c = t.creds
    return _put_ids(t, (ruid, euid, suid), (c.uid, c.euid, c.suid))


def sys_getresgid(t, rgid, egid, sgid, *_):
    """Implements Linux syscall getresgid(2)."""
    c = t.creds
    return _put_ids(t, (rgid, egid, sgid), (c.gid, c.egid, c.sgid))


def sys_getgroups(t, size, addr, *_):
    """Implements Linux syscall getgroups(2)."""
    size = s32(size)
    groups = t.creds.groups
    if size < 0:
        raise SyscallError(errno.EINVAL)
    if size == 0:
        return len(groups)
    if size < len(groups):
        raise SyscallError(errno.EINVAL)
    if groups:
        t.copy_out(addr, struct.pack("<%dI" % len(groups), *groups))
    return len(groups)


# --- user IDs ----------------------------------------------------------------


def sys_setuid(t, uid, *_):
    """Implements Linux syscall setuid(2)."""
    c = t.creds
    uid = _check_valid(_id(uid))
    if c.capable(CAP_SETUID):
        c.set_uids(uid, uid, uid, uid)
    elif uid in (c.uid, c.suid):
        c.set_uids(c.uid, uid, c.suid, uid)
    else:
        raise SyscallError(errno.EPERM)
    return 0


def _setre(old, r, e, priv):
    """setreuid(2)/setregid(2)'s rule on (real, effective, saved): unprivileged,
    the real id may become the real or effective one, the effective id any
    of the three. The saved id follows the new effective one if the real id
    was set, or the effective id was set to something other than the old real."""
    real, eff, saved = old
    if not priv:
        if r != UNCHANGED and r not in (real, eff):
            raise SyscallError(errno.EPERM)
        if e != UNCHANGED and e not in old:
            raise SyscallError(errno.EPERM)
    new_r = real if r == UNCHANGED else r
    new_e = eff if e == UNCHANGED else e
    if r != UNCHANGED or (e != UNCHANGED and e != real):
        saved = new_e
    return new_r, new_e, saved


def _setres(old, want, priv):
    """setresuid(2)/setresgid(2)'s rule: each id unchanged (-1) or, unprivileged,
    one of the three old ones."""
    if not priv:
        for v in want:
            if v != UNCHANGED and v not in old:
                raise SyscallError(errno.EPERM)
    return tuple(o if v == UNCHANGED else v for v, o in zip(want, old))


def sys_setreuid(t, ruid, euid, *_):
    """Implements Linux syscall setreuid(2)."""
    c = t.creds
    r, e, sv = _setre((c.uid, c.euid, c.suid), _id(ruid), _id(euid), c.capable(CAP_SETUID))
    c.set_uids(r, e, sv, e)
    return 0


def sys_setresuid(t, ruid, euid, suid, *_):
    """Implements Linux syscall setresuid(2)."""
    c = t.creds
    r, e, sv = _setres((c.uid, c.euid, c.suid), [_id(v) for v in (ruid, euid, suid)],
                       c.capable(CAP_SETUID))
    c.set_uids(r, e, sv, e)
    return 0


def sys_setfsuid(t, fsuid, *_):
    """Implements Linux syscall setfsuid(2). Returns the previous fsuid, always."""
    c = t.creds
    old = c.fsuid
    fsuid = _id(fsuid)
    if fsuid != UNCHANGED and (c.capable(CAP_SETUID) or fsuid in (c.uid, c.euid, c.suid, c.fsuid)):
        c.fsuid = fsuid
        c._fsuid_caps(old)
    return old


# --- group IDs ---------------------------------------------------------------


def sys_setgid(t, gid, *_):
    """Implements Linux syscall setgid(2)."""
    c = t.creds
    gid = _check_valid(_id(gid))
    if c.capable(CAP_SETGID):
        c.gid = c.egid = c.sgid = c.fsgid = gid
    elif gid in (c.gid, c.sgid):
        c.egid = c.fsgid = gid
    else:
        raise SyscallError(errno.EPERM)
    return 0


def sys_setregid(t, rgid, egid, *_):
    """Implements Linux syscall setregid(2)."""
    c = t.creds
    c.gid, c.egid, c.sgid = _setre((c.gid, c.egid, c.sgid), _id(rgid), _id(egid),
                                   c.capable(CAP_SETGID))
    c.fsgid = c.egid
    return 0


def sys_setresgid(t, rgid, egid, sgid, *_):
    """Implements Linux syscall setresgid(2)."""
    c = t.creds
    c.gid, c.egid, c.sgid = _setres((c.gid, c.egid, c.sgid), [_id(v) for v in (rgid, egid, sgid)],
                                    c.capable(CAP_SETGID))
    c.fsgid = c.egid
    return 0


def sys_setfsgid(t, fsgid, *_):
    """Implements Linux syscall setfsgid(2). Returns the previous fsgid, always."""
    c = t.creds
    old = c.fsgid
    fsgid = _id(fsgid)
    if fsgid != UNCHANGED and (c.capable(CAP_SETGID) or fsgid in (c.gid, c.egid, c.sgid, c.fsgid)):
        c.fsgid = fsgid
    return old


def sys_setgroups(t, size, addr, *_):
    """Implements Linux syscall setgroups(2)."""
    size = s32(size)
    if size < 0 or size > NGROUPS_MAX:
        raise SyscallError(errno.EINVAL)
    if not t.creds.capable(CAP_SETGID):
        raise SyscallError(errno.EPERM)
    groups = list(struct.unpack("<%dI" % size, t.copy_in(addr, 4 * size))) if size else []
    t.creds.groups = sorted(groups)          # Linux sorts (groups_sort) but keeps duplicates
    return 0


# --- capabilities ------------------------------------------------------------


def _cap_header(t, hdr):
    """Read (version, pid) from a cap header; EINVAL (and v3 written back) if unknown."""
    version, pid = struct.unpack("<Ii", t.copy_in(hdr, 8))
    if version not in _CAP_WORDS:
        t.copy_out(hdr, struct.pack("<I", CAP_V3))
        raise SyscallError(errno.EINVAL)
    return version, pid


def _task_creds(t, pid):
    """Credentials of task pid in t's namespace (0 = t itself); ESRCH if none."""
    if pid in (0, t.tid):
        return t.creds
    tasks = getattr(t.kernel, "tasks", None)
    other = tasks.get(pid) if isinstance(tasks, dict) else None
    if other is None:
        raise SyscallError(errno.ESRCH)
    return other.creds


def sys_capget(t, hdr, data, *_):
    """Implements Linux syscall capget(2).

    N.B. Other tasks are looked up in t.kernel.tasks when it is a dict
    {tid: task}; otherwise only the caller can be queried.
    """
    try:
        version, pid = _cap_header(t, hdr)
    except SyscallError as e:
        # Probing the version with a NULL data pointer is not an error.
        if e.errno == errno.EINVAL and data == 0:
            return 0
        raise
    if data == 0:
        return 0
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    c = _task_creds(t, pid)
    out = b""
    for word in range(_CAP_WORDS[version]):
        shift = 32 * word
        out += struct.pack("<III", (c.cap_effective >> shift) & 0xFFFFFFFF,
                           (c.cap_permitted >> shift) & 0xFFFFFFFF,
                           (c.cap_inheritable >> shift) & 0xFFFFFFFF)
    t.copy_out(data, out)
    return 0


def sys_capset(t, hdr, data, *_):
    """Implements Linux syscall capset(2): only the caller's own sets.

    New permitted must be a subset of the old; effective of the new
    permitted; inheritable of old inheritable|permitted unless CAP_SETPCAP.
    """
    version, pid = _cap_header(t, hdr)
    if pid not in (0, t.tid):
        raise SyscallError(errno.EPERM)
    words = _CAP_WORDS[version]
    raw = struct.unpack("<%dI" % (3 * words), t.copy_in(data, 12 * words))
    eff = perm = inh = 0
    for word in range(words):
        e, p, i = raw[3 * word:3 * word + 3]
        eff |= e << (32 * word)
        perm |= p << (32 * word)
        inh |= i << (32 * word)
    c = t.creds
    eff, perm, inh = eff & ALL_CAPS, perm & ALL_CAPS, inh & ALL_CAPS
    if perm & ~c.cap_permitted or eff & ~perm:
        raise SyscallError(errno.EPERM)
    if not c.capable(CAP_SETPCAP) and inh & ~(c.cap_inheritable | c.cap_permitted):
        raise SyscallError(errno.EPERM)
    c.cap_effective, c.cap_permitted, c.cap_inheritable = eff, perm, inh
    return 0
