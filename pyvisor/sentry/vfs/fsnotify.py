"""fsnotify: the hooks through which VFS operations report events to
inotify watches (vfs/inotify.py holds the file type and the rules).

The VFS calls these only when `ACTIVE[0]` (the number of watches in the
sandbox) is non-zero, so with no watch the cost is one list lookup per
operation. Watches are found by the inode's identity, (file system,
inode number), not by the inode object: the overlay gives each name of a
hard-linked file its own object, and Linux watches the inode.
"""

import itertools
import struct
import threading

from pyvisor.abi.flags import IN_DELETE_SELF, IN_EXCL_UNLINK, IN_ISDIR, IN_ONESHOT

# /proc/sys/fs/inotify: Linux's per-user limits, here for the whole sandbox.
MAX_QUEUED_EVENTS = 16384
MAX_USER_INSTANCES = 128
MAX_USER_WATCHES = 65536
_HEAD = struct.Struct("=iIII")

# ACTIVE[0]: the number of watches in the sandbox; the VFS hooks test it first.
ACTIVE = [0]
INSTANCES = [0]         # inotify files alive (EMFILE past MAX_USER_INSTANCES)
LOCK = threading.Lock()
_cookies = itertools.count(1)


def new_cookie():
    """A cookie shared by the IN_MOVED_FROM and IN_MOVED_TO of one rename."""
    return next(_cookies) & 0xFFFFFFFF


def watches_of(inode, create=False):
    """The list of watches on `inode` (None when it has none)."""
    table = getattr(inode.fs, "inotify_watches", None)
    if table is None:
        if not create:
            return None
        table = inode.fs.inotify_watches = {}
    lst = table.get(inode.ino)
    if lst is None and create:
        lst = table[inode.ino] = []
    return lst


def forget_watch(w):
    """Take watch `w` off its inode's list (caller holds LOCK)."""
    table = getattr(w.inode.fs, "inotify_watches", None)
    lst = table.get(w.inode.ino) if table else None
    if lst and w in lst:
        lst.remove(w)
        if not lst:
            del table[w.inode.ino]


class Watch:
    __slots__ = ("owner", "wd", "inode", "mask")

    def __init__(self, owner, wd, inode, mask):
        self.owner, self.wd, self.inode, self.mask = owner, wd, inode, mask


def pack_event(wd, mask, cookie, name):
    if not name:
        return _HEAD.pack(wd, mask, cookie, 0)
    n = (len(name) + 1 + 15) // 16 * 16        # NUL-padded like Linux (round up to the head size)
    return _HEAD.pack(wd, mask, cookie, n) + name.ljust(n, b"\0")


def _deliver(watches, mask, cookie, name, is_dir, unlinked):
    for w in list(watches):
        if name is not None and unlinked and w.mask & IN_EXCL_UNLINK:
            continue
        if not w.mask & mask:
            continue
        ev = mask | (IN_ISDIR if is_dir else 0)
        w.owner.queue(pack_event(w.wd, ev, cookie, name))
        if w.mask & IN_ONESHOT:
            w.owner.drop(w)


def notify(inode, parent, name, mask, cookie=0, unlinked=False):
    """Report event `mask` on `inode`: to the watches of directory dentry
    `parent` under `name` (when given), then to the inode's own."""
    is_dir = inode is not None and inode.is_dir()
    if parent is not None:
        pw = watches_of(parent.inode)
        if pw:
            _deliver(pw, mask, cookie, name, is_dir, unlinked)
    if inode is not None:
        w = watches_of(inode)
        if w:
            _deliver(w, mask, cookie, None, is_dir, False)


def notify_name(parent, name, mask, is_dir, cookie=0):
    """A directory-entry event (IN_CREATE, IN_DELETE, IN_MOVED_FROM/TO):
    only the watches of directory dentry `parent` see it, under `name`."""
    pw = watches_of(parent.inode)
    if pw:
        _deliver(pw, mask, cookie, name, is_dir, False)


def notify_self(inode, mask):
    """An event only the inode's own watches see (IN_MOVE_SELF, IN_ATTRIB
    of a link count: fsnotify_inode, which adds no IN_ISDIR)."""
    w = watches_of(inode)
    if w:
        _deliver(w, mask, 0, None, False, False)


def inode_gone(inode):
    """The inode's last link went away: IN_DELETE_SELF then IN_IGNORED."""
    w = watches_of(inode)
    if w:
        _deliver(w, IN_DELETE_SELF, 0, None, False, False)
        for watch in list(w):
            watch.owner.drop(watch)


def link_dropped(inode):
    """A name of `inode` was removed: when it was the last (a directory's
    is always), IN_DELETE_SELF and IN_IGNORED. The link count comes from
    stat(), which a file system served by the Gofer refreshes. A file
    still open is gone only at its last close (vfs/file.py), as in Linux,
    where the dentry's last reference is dropped then."""
    if watches_of(inode) and (inode.is_dir() or inode.stat().st_nlink == 0):
        if inode.nopen:
            inode.delete_pending = True
        else:
            inode_gone(inode)


def file_event(f, mask):
    """An event on the open file `f` (IN_ACCESS, IN_MODIFY, IN_OPEN, IN_CLOSE_*)."""
    vd = f.vd
    if vd is None:
        return
    d = vd.dentry
    notify(d.inode, d.parent, d.name, mask, unlinked=d.deleted)


