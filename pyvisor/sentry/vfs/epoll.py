"""epoll(7): an interest list and a ready list, as one file.

Some facts about Linux's epoll (fs/eventpoll.c) that this module keeps:

- An interest item is keyed by (fd number, open file description), not by
  either alone. dup(fd) gives a second fd for the same description, which
  may be added as its own item; after close(fd) the item stays (it is still
  reported, with the data it was given) as long as another fd holds the
  description, and EPOLL_CTL_DEL on the closed fd then fails with EBADF.
  When the description itself is released (its last fd closed) the item
  goes from every epoll set.
- EPOLLERR and EPOLLHUP are always reported, whatever the events asked.
- Level-triggered (the default): an item stays on the ready list while the
  file is ready, so every epoll_wait reports it again. Edge-triggered
  (EPOLLET): the item is reported once per wake-up of its file's wait queue,
  i.e. per new event, and then leaves the ready list. EPOLLONESHOT: after one
  report the item is disabled until EPOLL_CTL_MOD re-arms it.
- EPOLLEXCLUSIVE only limits how many waiters one event wakes; it is
  accepted with its EINVAL rules (not with MOD, nor with other flags than
  EPOLLIN/OUT/ERR/HUP/WAKEUP/ET, nor on an epoll file) and otherwise ignored
  (N.B. every waiter is woken).
- Files that cannot poll (regular files, directories) cannot be added: EPERM.
  An epoll file can watch another epoll file (it is ready when that one has
  ready items), but not itself (EINVAL) nor make a cycle (ELOOP).

How it maps here: each item registers a waiter on its file's WaitQueue
(vfs/waitq.py); the waiter puts the item on the ready list and wakes the
epoll's waiters. epoll_wait re-checks each ready item's `poll_events()` and
reports only what is true now (Linux does the same: ep_item_poll). Files
that cannot notify (host files, signalfd: `poll_periodically`) stay on the
ready list for good and are re-checked at every scan; for them an
edge-triggered item reports when the ready events change (N.B. a
best-effort edge), and waiters re-check every POLL_INTERVAL.

Lock order: EpollFile.lock, then a watched file's own locks (through
poll_events). Waiters run without the file's locks and take EpollFile.lock;
the epoll's own WaitQueue is notified after EpollFile.lock is released.
"""

import errno
import struct
import threading

from ..errors import SyscallError
from .file import FileDescription, O_RDWR
from .waitq import POLLIN, POLLRDNORM, WaitQueue, poll_events

EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x2, 0x4, 0x8, 0x10
EPOLLRDNORM, EPOLLRDBAND, EPOLLWRNORM, EPOLLWRBAND, EPOLLMSG, EPOLLRDHUP = (
    0x40, 0x80, 0x100, 0x200, 0x400, 0x2000)
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EPOLLEXCLUSIVE_OK = EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE
EP_PRIVATE_BITS = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE
EPOLL_EVENT = struct.Struct("<IQ")   # struct epoll_event is packed on x86-64: 12 bytes
MAX_NESTING = 4                      # Linux's EP_MAX_NESTS


def can_poll(f):
    """Whether `f` supports poll (Linux: f_op->poll); EPERM for epoll otherwise."""
    return (getattr(f, "waitq", None) is not None or getattr(f, "poll_periodically", False)
            or hasattr(f, "poll_events"))


def is_released(f):
    """Whether the description's last reference is gone (file.py's refcount).
    N.B. read lazily: FileDescription has no release hook for epoll."""
    return getattr(f, "_refs", 1) <= 0


class EpollItem:
    """One interest: (fd, file) -> events and data. Fields protected by the epoll's lock."""

    __slots__ = ("fd", "file", "events", "data", "ready", "last", "waiter", "polled")

    def __init__(self, fd, file, events, data):
        self.fd = fd
        self.file = file
        self.events = events
        self.data = data
        self.ready = False        # on the ready list
        self.last = 0             # last events reported (edge detection for polled files)
        self.waiter = None
        self.polled = bool(getattr(file, "poll_periodically", False))


class EpollFile(FileDescription):
    """An epoll instance (epoll_create1(2))."""

    seekable = False
    anon_name = b"[eventpoll]"

    def __init__(self):
        super().__init__(None, O_RDWR)
        self.lock = threading.Lock()
        self.items = {}           # (fd, file) -> EpollItem
        self.ready = {}           # EpollItem -> None, in the order they became ready
        self.waitq = WaitQueue()  # wakes epoll_wait callers, and pollers of this epoll

    # --- the interest list (epoll_ctl) -----------------------------------

    def ctl(self, op, fd, f, events=0, data=0):
        """Implements epoll_ctl(2)'s work once the fds are looked up.

        Preconditions: `f` is the description at `fd`, and the event was
        read for ADD and MOD."""
        if f is self:
            raise SyscallError(errno.EINVAL)
        if not can_poll(f):
            raise SyscallError(errno.EPERM)
        if op not in (EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD):
            raise SyscallError(errno.EINVAL)
        if op != EPOLL_CTL_DEL and events & EPOLLEXCLUSIVE:
            if op == EPOLL_CTL_MOD or isinstance(f, EpollFile) or events & ~EPOLLEXCLUSIVE_OK:
                raise SyscallError(errno.EINVAL)
        if op == EPOLL_CTL_ADD and isinstance(f, EpollFile):
            _check_nesting(self, f)
        events |= EPOLLERR | EPOLLHUP
        events &= ~EPOLLWAKEUP      # N.B. no suspend to block: the flag means nothing here
        key = (fd, f)
        self._prune()
        with self.lock:
            item = self.items.get(key)
            if op == EPOLL_CTL_ADD:
                if item is not None:
                    raise SyscallError(errno.EEXIST)
                item = self.items[key] = EpollItem(fd, f, events, data)
                self._attach_locked(item)
            elif item is None:
                raise SyscallError(errno.ENOENT)
            elif op == EPOLL_CTL_DEL:
                self._detach_locked(item)
                return 0
            else:
                if item.events & EPOLLEXCLUSIVE:
                    raise SyscallError(errno.EINVAL)
                item.events, item.data, item.last = events, data, 0
            # ADD and MOD look at the file now, as Linux's ep_item_poll does.
            self._mark_ready_locked(item)
        self.waitq.notify(POLLIN | POLLRDNORM)
        return 0

    def _attach_locked(self, item):
        q = getattr(item.file, "waitq", None)
        if q is not None:
            item.waiter = self._make_waiter(item)
            q.register(item.waiter)

    def _detach_locked(self, item):
        self.items.pop((item.fd, item.file), None)
        self.ready.pop(item, None)
        item.ready = False
        q = getattr(item.file, "waitq", None)
        if q is not None and item.waiter is not None:
            q.unregister(item.waiter)
        item.waiter = None

    def _make_waiter(self, item):
        def on_event(events):
            with self.lock:
                if item.waiter is None or not events & (item.events & ~EP_PRIVATE_BITS):
                    return
                self._mark_ready_locked(item)
            self.waitq.notify(POLLIN | POLLRDNORM)
        return on_event

    def _mark_ready_locked(self, item):
        if not item.ready and item.events & ~EP_PRIVATE_BITS:
            item.ready = True
            self.ready[item] = None

    def _prune(self):
        """Forget the items whose description was released (module doc)."""
        with self.lock:
            dead = [item for item in self.items.values() if is_released(item.file)]
            for item in dead:
                self._detach_locked(item)

    # --- the ready list (epoll_wait) -------------------------------------

    @property
    def poll_periodically(self):
        """True while some watched file cannot notify: waiters must re-check."""
        with self.lock:
            return any(item.polled for item in self.items.values())

    def collect(self, maxevents):
        """Take up to `maxevents` ready events: [(events, data)]. Does not block.

        Level-triggered items go back to the end of the ready list; edge-
        triggered ones leave it; one-shot ones are disabled."""
        self._prune()
        out = []
        with self.lock:
            for item in list(self.ready):
                if len(out) >= maxevents:
                    break
                del self.ready[item]
                item.ready = False
                revents = self._revents(item)
                if item.polled:
                    # Polled files never notify: keep them listed, report by their mode.
                    changed = revents != item.last
                    item.last = revents
                    self._mark_ready_locked(item)
                    if not revents or (item.events & EPOLLET and not changed):
                        continue
                elif not revents:
                    continue
                out.append((revents, item.data))
                if item.events & EPOLLONESHOT:
                    item.events &= EP_PRIVATE_BITS      # disarmed until EPOLL_CTL_MOD
                    self.ready.pop(item, None)
                    item.ready = False
                elif not item.events & EPOLLET and not item.polled:
                    self._mark_ready_locked(item)       # level: report again next time
        return out

    @staticmethod
    def _revents(item):
        interest = item.events & ~EP_PRIVATE_BITS
        if not interest:
            return 0
        return poll_events(item.file) & interest

    def poll_events(self):
        """An epoll file is readable when an item is ready now (ep_eventpoll_poll)."""
        self._prune()
        with self.lock:
            items = list(self.ready)
        for item in items:
            if self._revents(item):
                return POLLIN | POLLRDNORM
        return 0

    def release(self):
        with self.lock:
            for item in list(self.items.values()):
                self._detach_locked(item)


def _check_nesting(ep, target):
    """ELOOP if adding epoll `target` to `ep` closes a cycle or nests too deep."""
    def depth(f, seen):
        if f is ep:
            raise SyscallError(errno.ELOOP)
        if f in seen:
            return 0
        seen = seen | {f}
        with f.lock:
            subs = [i.file for i in f.items.values() if isinstance(i.file, EpollFile)]
        return 1 + max((depth(s, seen) for s in subs), default=0)
    if depth(target, frozenset()) >= MAX_NESTING:
        raise SyscallError(errno.ELOOP)


def pack_events(events):
    """struct epoll_event[] for the user, from collect()'s list."""
    return b"".join(EPOLL_EVENT.pack(ev & 0xFFFFFFFF, data) for ev, data in events)
