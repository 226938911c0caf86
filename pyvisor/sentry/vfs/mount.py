"""The mount tree.

A `Mount` attaches a filesystem's root dentry at a mount point: a
(parent mount, dentry) pair. Path resolution crosses into a child mount
when it reaches a mount point, and leaves a mount's root through its mount
point on "..". The root mount has no parent. A `VDentry`, a (mount,
dentry) pair, names a location in that tree.

This module imports nothing of the VFS, so every other module may use it:
file.py (an open file's path), inode.py, vfs.py.
"""

import itertools
import threading

_mount_ids = itertools.count(1)


class VDentry:
    """A (mount, dentry) pair: a location in the mount tree."""

    __slots__ = ("mount", "dentry")

    def __init__(self, mount, dentry):
        self.mount = mount
        self.dentry = dentry

    @property
    def inode(self):
        return self.dentry.inode

    def __eq__(self, other):
        return (isinstance(other, VDentry) and self.mount is other.mount
                and self.dentry is other.dentry)

    def __hash__(self):
        return hash((id(self.mount), id(self.dentry)))

    def __repr__(self):
        return "VDentry(%r)" % (self.dentry.name,)


class Mount:
    """One filesystem mounted somewhere; `source` and `options` feed /proc/mounts."""

    def __init__(self, fs, root, parent=None, mountpoint=None, source=b"none", options=b"rw"):
        self.id = next(_mount_ids)
        self.fs = fs
        self.root = root                  # the fs's root Dentry
        self.parent = parent              # Mount or None
        self.mountpoint = mountpoint      # Dentry in parent, or None
        self.source = source
        self.options = options

    @property
    def root_vd(self):
        return VDentry(self, self.root)

    def __repr__(self):
        return "Mount(%s, %s)" % (self.fs.name.decode(), self.id)


class MountTable:
    """All mounts, and which mount sits on which (mount, dentry)."""

    def __init__(self, root_mount):
        self.root = root_mount
        self._lock = threading.Lock()
        self._children = {}               # (parent mount id, id(dentry)) -> Mount
        self._mounts = [root_mount]

    def mount(self, fs, root, at, source=b"none", options=b"rw"):
        """Mount `fs` (root dentry `root`) on the VDentry `at`; returns the Mount."""
        m = Mount(fs, root, at.mount, at.dentry, source, options)
        at.dentry.mounted = True          # lets path walks skip the table elsewhere
        with self._lock:
            self._children[(at.mount.id, id(at.dentry))] = m
            self._mounts.append(m)
        return m

    def child_at(self, vd):
        """The mount on top of `vd`, or None."""
        return self._children.get((vd.mount.id, id(vd.dentry)))

    def is_mountpoint(self, vd):
        return (vd.mount.id, id(vd.dentry)) in self._children

    def mounts(self):
        with self._lock:
            return list(self._mounts)


def vd_path(vd, root=None):
    """The absolute path of `vd`, crossing mount points up to the root mount
    (or `root`, a VDentry). Deleted files get Linux's " (deleted)" suffix."""
    parts = []
    mount, dentry = vd.mount, vd.dentry
    deleted = dentry.deleted
    while True:
        if root is not None and mount is root.mount and dentry is root.dentry:
            break
        if dentry is mount.root:
            if mount.parent is None:
                break
            mount, dentry = mount.parent, mount.mountpoint
            continue
        parts.append(dentry.name)
        dentry = dentry.parent
    path = b"/" + b"/".join(reversed(parts))
    return path + b" (deleted)" if deleted else path
