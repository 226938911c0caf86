"""Process file descriptors: the file object behind pidfd_open(2) and CLONE_PIDFD.

Linux background (pidfd_open(2), pidfd_send_signal(2), pidfd_getfd(2), and
pidfd_poll() in kernel/pid.c / fs/pidfs.c):

- A pidfd refers to a process (its thread-group leader's struct pid), not
  to a number: a pid reused later is not the process the pidfd names.
- It is always close-on-exec; PIDFD_NONBLOCK (O_NONBLOCK) only makes
  waitid(P_PIDFD, ...) return EAGAIN instead of blocking.
- read(2)/write(2) on it fail with EINVAL.
- Readiness: POLLIN|POLLRDNORM once the process has exited (the whole thread
  group is gone, a zombie), plus POLLHUP once it has been reaped. Nothing is
  ever consumed: it stays readable.

Here a PidFile holds the ThreadGroup itself. The group carries one WaitQueue
for all its pidfds (`pidfd_waitq`, made on first use); Kernel._group_dead
and the reaping wait call `group_changed(g)`, which notifies it.

N.B. PIDFD_THREAD (a pidfd for one thread, Linux 6.9) is not offered:
pidfd_open gives EINVAL for it, as a pre-6.9 kernel does.
"""

from ..once import made_once
from .file import FileDescription, O_NONBLOCK, O_RDWR
from .waitq import POLLHUP, POLLIN, POLLRDNORM, WaitQueue

PIDFD_NONBLOCK = O_NONBLOCK


def _waitq(g):
    """The group's pidfd WaitQueue, made on first use."""
    return made_once(g, "pidfd_waitq", WaitQueue)


def group_changed(g):
    """The group exited or was reaped: wake pollers of its pidfds (no lock held)."""
    q = getattr(g, "pidfd_waitq", None)
    if q is not None:
        q.notify(POLLIN | POLLRDNORM | POLLHUP)


class PidFile(FileDescription):
    """A pidfd. `group` is the process it names, for its whole life."""

    seekable = False
    anon_name = b"[pidfd]"

    def __init__(self, group, flags=0):
        super().__init__(None, O_RDWR | (flags & O_NONBLOCK))
        self.group = group
        self.waitq = _waitq(group)

    def exited(self):
        """True once every thread of the process has ended (a zombie or reaped)."""
        return self.group.wstatus is not None

    def reaped(self):
        """True once the process is gone from the kernel's table (waited for, or autoreaped)."""
        g = self.group
        return g.wstatus is not None and g.kernel.groups.get(g.tgid) is not g

    def poll_events(self):
        """POLLIN when the process has exited, and POLLHUP too once it is reaped."""
        if not self.exited():
            return 0
        return POLLIN | POLLRDNORM | (POLLHUP if self.reaped() else 0)

    def fdinfo(self):
        g = self.group
        return b"Pid:\t%d\nNSpid:\t%d\n" % ((-1, -1) if self.reaped() else (g.tgid, g.tgid))
