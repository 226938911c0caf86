"""A task's credentials: user and group IDs, supplementary groups and
capabilities, with the rules by which they change.

Linux background (credentials(7), capabilities(7)):

- A task has real, effective, saved and filesystem IDs for both user and
  group. The effective ID is the one permission checks mostly use; the
  filesystem ID follows the effective ID on every change unless set with
  setfsuid, and is what file access checks use.
- Changing user IDs changes capabilities (the "no SECBIT_KEEP_CAPS" rules of
  capabilities(7), "Effect of user ID changes on capabilities"):
  * if real, effective or saved uid was 0 and afterwards none is, the
    permitted and effective sets are cleared;
  * effective uid 0 -> non-zero clears the effective set;
  * effective uid non-zero -> 0 copies permitted into effective;
  * fsuid 0 -> non-zero drops the filesystem capabilities from effective,
    and back to 0 restores those of them that are permitted.

Credentials are per task in Linux (glibc makes a process agree by signalling
every thread); here `t.creds` is per task as well. The set*id handlers live
in syscalls/creds.py.
"""

from pyvisor.fields import Fields

CAP_LAST_CAP = 40                       # CAP_CHECKPOINT_RESTORE, Linux 5.9+
ALL_CAPS = (1 << (CAP_LAST_CAP + 1)) - 1
CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID = 0, 1, 2, 3, 4
CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 6, 7, 8
CAP_LINUX_IMMUTABLE, CAP_MKNOD, CAP_MAC_OVERRIDE = 9, 27, 32
# The capabilities that follow fsuid 0 (include/linux/capability.h CAP_FS_SET).
FS_CAPS = sum(1 << c for c in (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
                               CAP_FOWNER, CAP_FSETID, CAP_LINUX_IMMUTABLE,
                               CAP_MKNOD, CAP_MAC_OVERRIDE))


class Credentials(Fields):
    """One task's credentials. Mutable: the set*id handlers edit it in place.

    fork() must give the child its own copy (`copy()`), since a later
    setuid in one must not change the other.
    """

    __slots__ = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid", "groups",
                 "cap_effective", "cap_permitted", "cap_inheritable")

    def __init__(self, uid=0, euid=0, suid=0, fsuid=0, gid=0, egid=0, sgid=0, fsgid=0,
                 groups=None, cap_effective=ALL_CAPS, cap_permitted=ALL_CAPS, cap_inheritable=0):
        self.uid, self.euid, self.suid, self.fsuid = uid, euid, suid, fsuid
        self.gid, self.egid, self.sgid, self.fsgid = gid, egid, sgid, fsgid
        self.groups = [] if groups is None else groups
        self.cap_effective = cap_effective
        self.cap_permitted = cap_permitted
        self.cap_inheritable = cap_inheritable

    @classmethod
    def root(cls):
        """uid/gid 0 with every capability: what a sandbox's init runs as."""
        return cls()

    @classmethod
    def user(cls, uid, gid, groups=()):
        """An unprivileged user: all IDs set to uid/gid, no capabilities."""
        return cls(uid, uid, uid, uid, gid, gid, gid, gid, list(groups), 0, 0, 0)

    def copy(self):
        return self.replace(groups=list(self.groups))

    def capable(self, cap):
        """Whether cap is in the effective set."""
        return bool(self.cap_effective >> cap & 1)

    # --- the uid-change rules of capabilities(7) ---

    def set_uids(self, ruid, euid, suid, fsuid):
        """Install new user IDs and adjust capabilities as Linux does."""
        old_any_root = 0 in (self.uid, self.euid, self.suid)
        old_euid, old_fsuid = self.euid, self.fsuid
        self.uid, self.euid, self.suid, self.fsuid = ruid, euid, suid, fsuid
        if old_any_root and 0 not in (ruid, euid, suid):
            self.cap_permitted = 0
            self.cap_effective = 0
        if old_euid == 0 and euid != 0:
            self.cap_effective = 0
        elif old_euid != 0 and euid == 0:
            self.cap_effective = self.cap_permitted
        self._fsuid_caps(old_fsuid)

    def _fsuid_caps(self, old_fsuid):
        if old_fsuid == 0 and self.fsuid != 0:
            self.cap_effective &= ~FS_CAPS
        elif old_fsuid != 0 and self.fsuid == 0:
            self.cap_effective |= self.cap_permitted & FS_CAPS
