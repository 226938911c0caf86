"""inotify(7): events for the changes the sandbox itself makes.

Linux background (fs/notify/inotify/, fsnotify.h):

- A watch is on an inode; one inotify file holds at most one watch per
  inode, so adding a path that names a watched inode again returns the
  same watch descriptor (its mask replaced, or OR-ed with IN_MASK_ADD).
- An event on a file goes to the file's own watches (no name), and to the
  watches of its parent directory with the file's name (IN_ISDIR added for
  a directory) — the parent first.
- read(2) returns whole struct inotify_event records (wd, mask, cookie,
  len, then the name NUL-padded to a multiple of the record head's 16
  bytes); a buffer too small for the next
  record is EINVAL. An event identical to the one last queued and not yet
  read is dropped (inotify_merge).
- The queue holds max_queued_events (16384); then one IN_Q_OVERFLOW event
  (wd -1) is queued and later events are dropped until it is read.
- Removing a watch (inotify_rm_watch, IN_ONESHOT after its event, the
  inode deleted) queues IN_IGNORED.

Hooks: vfs/fsnotify.py, called by vfs.py and file.py once any watch exists.

Limits (/proc/sys/fs/inotify): 128 instances (EMFILE), 65536 watches
(ENOSPC), for the whole sandbox rather than per user.

Not covered: changes made on the host underneath a shared-mode volume
(no host watch is taken; a host that deletes a watched file and reuses
its inode number would hand the watch to the new file); execve's own
open of the program (the loader's open reports IN_OPEN/IN_ACCESS, but its
description is never closed, so no IN_CLOSE_NOWRITE follows); IN_UNMOUNT.
"""

import errno
import threading

from .. import waiting
from ..errors import SyscallError
from .file import FileDescription, O_NONBLOCK, O_RDONLY
from .waitq import POLLIN, POLLRDNORM, WaitQueue
from pyvisor.abi.flags import (ALL_INOTIFY_BITS, IN_CLOEXEC, IN_IGNORED, IN_MASK_ADD,
                               IN_MASK_CREATE, IN_NONBLOCK, IN_Q_OVERFLOW)
from .fsnotify import (ACTIVE, INSTANCES, LOCK, MAX_QUEUED_EVENTS, MAX_USER_INSTANCES,
                       MAX_USER_WATCHES, Watch, forget_watch, pack_event, watches_of)


class InotifyFile(FileDescription):
    """An inotify instance: watches by wd, and the event queue."""

    seekable = False
    reads_empty = True        # inotify_read: a buffer too small for the next event is EINVAL
    anon_name = b"inotify"

    def __init__(self, flags):
        super().__init__(None, O_RDONLY | (flags & O_NONBLOCK))
        self.cond = threading.Condition()
        self.waitq = WaitQueue()
        self.events = []          # packed records, oldest first
        self.nbytes = 0
        self.watches = {}         # wd -> Watch
        self.next_wd = 1

    # --- watches ----------------------------------------------------------

    def add_watch(self, inode, mask):
        """inotify_add_watch(2) once the path is resolved: the wd."""
        with LOCK:
            mine = [w for w in watches_of(inode) or () if w.owner is self]
            if mine:
                w = mine[0]
                if mask & IN_MASK_CREATE:
                    raise SyscallError(errno.EEXIST)
                new = mask & ~IN_MASK_ADD
                w.mask = (w.mask | new) if mask & IN_MASK_ADD else new
                return w.wd
            if ACTIVE[0] >= MAX_USER_WATCHES:
                raise SyscallError(errno.ENOSPC)
            w = Watch(self, self.next_wd, inode, mask & ~(IN_MASK_ADD | IN_MASK_CREATE))
            self.next_wd += 1
            self.watches[w.wd] = w
            watches_of(inode, create=True).append(w)
            ACTIVE[0] += 1
            return w.wd

    def rm_watch(self, wd):
        """inotify_rm_watch(2): EINVAL for a wd this instance does not hold."""
        w = self.watches.get(wd)
        if w is None:
            raise SyscallError(errno.EINVAL)
        self.drop(w)

    def drop(self, w):
        with LOCK:
            if self.watches.pop(w.wd, None) is None:
                return
            forget_watch(w)
            ACTIVE[0] -= 1
        self.queue(pack_event(w.wd, IN_IGNORED, 0, None))

    def release(self):
        """The last close: the watches go without IN_IGNORED (no one reads it)."""
        with LOCK:
            INSTANCES[0] -= 1
            for w in self.watches.values():
                forget_watch(w)
            ACTIVE[0] -= len(self.watches)
            self.watches.clear()

    # --- the queue --------------------------------------------------------

    def queue(self, rec):
        with self.cond:
            if self.events and self.events[-1] == rec:
                return                              # inotify_merge
            if len(self.events) >= MAX_QUEUED_EVENTS:
                rec = pack_event(-1, IN_Q_OVERFLOW, 0, None)
                if self.events[-1] == rec:
                    return
            self.events.append(rec)
            self.nbytes += len(rec)
            self.cond.notify_all()
        self.waitq.notify(POLLIN | POLLRDNORM)

    def pread(self, count, offset):
        """read(2): whole records; EINVAL when the next one does not fit."""
        if offset >= 0:
            raise SyscallError(errno.ESPIPE)
        with self.cond:
            while not self.events:
                if self.nonblocking:
                    raise SyscallError(errno.EAGAIN)
                waiting.wait(self.cond)
            out = []
            n = 0
            while self.events and n + len(self.events[0]) <= count:
                rec = self.events.pop(0)
                out.append(rec)
                n += len(rec)
            if not out:
                raise SyscallError(errno.EINVAL)
            self.nbytes -= n
            return b"".join(out)

    def pwrite(self, data, offset):
        raise SyscallError(errno.EINVAL)

    def nread(self):
        with self.cond:
            return self.nbytes

    def poll_events(self):
        with self.cond:
            return POLLIN | POLLRDNORM if self.events else 0

    def fdinfo(self):
        lines = []
        for w in list(self.watches.values()):
            st = w.inode.stat()
            lines.append(b"inotify wd:%x ino:%x sdev:%x mask:%x ignored_mask:0\n"
                         % (w.wd, st.st_ino, st.st_dev, w.mask & ALL_INOTIFY_BITS))
        return b"".join(lines)


def make_inotify(flags):
    """inotify_init1(2)'s object: EINVAL for flags other than IN_NONBLOCK|IN_CLOEXEC."""
    if flags & ~(IN_NONBLOCK | IN_CLOEXEC):
        raise SyscallError(errno.EINVAL)
    with LOCK:
        if INSTANCES[0] >= MAX_USER_INSTANCES:
            raise SyscallError(errno.EMFILE)      # "the user limit on inotify instances"
        INSTANCES[0] += 1
    return InotifyFile(flags)
