"""Advisory file locks: flock(2), POSIX record locks and OFD locks (fcntl(2)).

The Linux model (fs/locks.c, fcntl(2), flock(2)):

- **flock locks** belong to an open file description: dup'd fds and fork
  share them, and they go when the description's last reference closes.
  A second flock() by the same description converts its lock (not
  atomically: the old lock is dropped first, as Linux does).
- **POSIX record locks** (F_SETLK/F_SETLKW/F_GETLK) cover byte ranges and
  belong to the process's fd table (Linux's `fl_owner` is the
  `files_struct`): threads sharing it share them, a fork does not inherit
  them, and closing *any* fd of the file releases all of them on that file.
  Ranges of one owner split and merge as they are set and cleared.
  A blocking F_SETLKW that would close a cycle of waiters fails with EDEADLK.
- **OFD locks** (F_OFD_*) are byte-range locks owned by the description,
  like flock's owner; they conflict with POSIX locks of other owners.
- flock and POSIX locks never conflict with each other.

`LockTable` (one per VFS) is keyed by inode identity (device and inode
number, so every path and every description of a file meet). Blocking
waits go through `waiting.wait` on the table's one condition, so a signal or
the task's death interrupts them; every release notifies it.
Files on the host (a volume's, goferfs) have a `HostLocker`: once the
table grants a lock, the union of the sandbox's locks on the file is taken
on the host too, without waiting (a host holder makes F_SETLK fail with
EAGAIN, and a blocking lock retries every few ms in `wait`, so a signal
interrupts it, as Linux's 9p client polls in v9fs_file_do_lock); flock
locks are whole-file locks there, as with Linux's 9p and NFS. F_GETLK asks
the host when nothing in the sandbox conflicts.
Lock order: FDTable lock (never held here), then LockTable.cond, then the
filesystem's (a HostLocker's RPC).
"""

import errno
import threading

from ..errors import SyscallError
from ..waiting import wait

F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
OFFSET_MAX = (1 << 63) - 1
HOST_RETRY_MIN, HOST_RETRY_MAX = 0.005, 0.1   # s, the backoff of a wait on a host holder
_RANK = {None: -1, F_RDLCK: 0, F_WRLCK: 1}


def inode_key(f):
    """The identity locks are keyed by: (st_dev, st_ino) of the file."""
    st = f.stat()
    return (st.st_dev, st.st_ino)


class _Range:
    """One held byte-range lock [start, end] (end inclusive)."""

    __slots__ = ("start", "end", "type", "owner", "pid", "ofd")

    def __init__(self, start, end, type_, owner, pid, ofd):
        self.start, self.end, self.type = start, end, type_
        self.owner, self.pid, self.ofd = owner, pid, ofd


def _conflicts(a_type, b_type):
    return a_type == F_WRLCK or b_type == F_WRLCK


def _union(ranges, flocks):
    """The strongest lock held on each byte by anyone: [(start, end, type)],
    sorted, adjacent pieces of one type merged; a flock covers the file."""
    spans = [(r.start, r.end, r.type) for r in ranges]
    spans += [(0, OFFSET_MAX, t) for t in flocks.values()]
    return _pieces(spans, lambda held: max(held, key=_RANK.get) if held else None)


def _pieces(spans, pick):
    """Cut [0, OFFSET_MAX] at every edge of `spans` ((start, end, value));
    each piece gets pick([values covering it]); None pieces dropped, equal
    neighbours merged."""
    edges = sorted({s for s, _, _ in spans} | {e + 1 for _, e, _ in spans if e < OFFSET_MAX})
    out = []
    for i, a in enumerate(edges):
        b = edges[i + 1] - 1 if i + 1 < len(edges) else OFFSET_MAX
        v = pick([t for s, e, t in spans if s <= a and b <= e])
        if v is None:
            continue
        if out and out[-1][2] == v and out[-1][1] + 1 == a:
            out[-1] = (out[-1][0], b, v)
        else:
            out.append((a, b, v))
    return out


def _length(start, end):
    return 0 if end == OFFSET_MAX else end - start + 1


class _FileLocks:
    __slots__ = ("flocks", "ranges", "host", "held")

    def __init__(self, host=None):
        self.flocks = {}     # description -> F_RDLCK (shared) or F_WRLCK (exclusive)
        self.ranges = []     # [_Range], grouped by owner, sorted by start within one
        self.host = host     # HostLocker, or None: the locks live only here
        self.held = []       # what the host holds for us: _union's form

    def host_sync(self, ranges, flocks):
        """Make the host hold the union of `ranges` and `flocks` (which may
        be a change not yet made here): gains first, each a Tlock; if the
        host refuses one, the gains made are undone and False is returned;
        then the losses, which the host cannot refuse."""
        if self.host is None:
            return True
        want = _union(ranges, flocks)
        if want == self.held:
            return True
        spans = [(s, e, ("old", t)) for s, e, t in self.held] + \
                [(s, e, ("new", t)) for s, e, t in want]

        def pick(vals):
            old = next((t for k, t in vals if k == "old"), None)
            new = next((t for k, t in vals if k == "new"), None)
            return None if old == new else (old, new)
        changes = _pieces(spans, pick)
        gained = []

        def undo():
            for gs, ge, gold in reversed(gained):
                self.host.set(F_UNLCK if gold is None else gold, gs, _length(gs, ge))
        for s, e, (old, new) in changes:
            if _RANK[new] > _RANK[old]:
                try:
                    ok = self.host.set(new, s, _length(s, e))
                except SyscallError:
                    undo()
                    raise
                if not ok:
                    undo()
                    return False
                gained.append((s, e, old))
        for s, e, (old, new) in changes:
            if _RANK[new] < _RANK[old]:
                self.host.set(F_UNLCK if new is None else new, s, _length(s, e))
        self.held = want
        return True

    def host_release(self):
        """Bring the host to what is held here (a release: never refused)."""
        try:
            self.host_sync(self.ranges, self.flocks)
        except SyscallError:
            self.held = _union(self.ranges, self.flocks)

    def empty(self):
        return not self.flocks and not self.ranges


class LockTable:
    def __init__(self):
        self.cond = threading.Condition(threading.Lock())
        self._files = {}          # inode key -> _FileLocks
        self._waiting_for = {}    # POSIX owner -> owner of the lock it waits on

    def _locks(self, key, f):
        fl = self._files.get(key)
        if fl is None:
            vd = f.vd
            fl = self._files[key] = _FileLocks(vd.inode.host_locker() if vd else None)
        return fl

    def _tidy_locked(self, key):
        fl = self._files.get(key)
        if fl is None:
            return
        fl.host_release()
        if fl.empty():
            del self._files[key]
            if fl.host is not None:
                fl.host.close()

    # --- flock(2) ----------------------------------------------------------

    def flock(self, f, type_, block):
        """Take (F_RDLCK/F_WRLCK) or drop (F_UNLCK) `f`'s flock lock.
        EWOULDBLOCK if taken elsewhere and not `block`; may raise Interrupted."""
        key = inode_key(f)
        with self.cond:
            fl = self._locks(key, f)
            had = fl.flocks.pop(f, None)
            if had is not None:
                self.cond.notify_all()
            if type_ == F_UNLCK:
                self._tidy_locked(key)
                return
            f.lock_table = self
            retry = HOST_RETRY_MIN
            try:
                while True:
                    if any(_conflicts(type_, t) for d, t in fl.flocks.items() if d is not f):
                        if not block:
                            raise SyscallError(errno.EWOULDBLOCK)
                        wait(self.cond)
                        continue
                    if fl.host_sync(fl.ranges, {**fl.flocks, f: type_}):
                        break
                    if not block:
                        raise SyscallError(errno.EWOULDBLOCK)
                    wait(self.cond, retry)
                    retry = min(retry * 2, HOST_RETRY_MAX)
            except BaseException:
                self._tidy_locked(key)
                raise
            fl.flocks[f] = type_

    # --- POSIX and OFD record locks -----------------------------------------

    def _conflict_locked(self, fl, owner, type_, start, end):
        for r in fl.ranges:
            if r.owner is not owner and r.start <= end and start <= r.end \
                    and _conflicts(type_, r.type):
                return r
        return None

    def test(self, f, owner, type_, start, end):
        """F_GETLK / F_OFD_GETLK: the first lock of another owner that would
        block this one, as (type, start, end, pid, ofd), or None."""
        key = inode_key(f)
        with self.cond:
            fl = self._files.get(key)
            r = fl and self._conflict_locked(fl, owner, type_, start, end)
            if r:
                return (r.type, r.start, r.end, r.pid, r.ofd)
            host = fl.host if fl else None
            if host is None and f.vd is not None:
                host = f.vd.inode.host_locker()
            if host is None:
                return None
            try:
                got = host.test(type_, start, _length(start, end))
            finally:
                if fl is None:
                    host.close()
            if got is None:
                return None
            htype, hstart, hlen, pid = got
            pid = pid - (1 << 32) if pid >= 1 << 31 else pid
            hend = OFFSET_MAX if hlen == 0 else min(hstart + hlen - 1, OFFSET_MAX)
            return (htype, hstart, hend, pid, pid == -1)

    def _deadlock_locked(self, owner, blocker):
        """Would `owner` waiting on `blocker` close a cycle (fs/locks.c
        posix_locks_deadlock)? Only POSIX owners are followed."""
        seen = 0
        while blocker is not None and seen < 1024:
            if blocker is owner:
                return True
            blocker = self._waiting_for.get(blocker)
            seen += 1
        return False

    def setlk(self, f, owner, pid, ofd, type_, start, end, block):
        """F_SETLK(W) / F_OFD_SETLK(W): set or clear [start, end] for `owner`.
        EAGAIN on a conflict without `block`; EDEADLK for a POSIX wait cycle;
        may raise Interrupted while waiting."""
        key = inode_key(f)
        with self.cond:
            fl = self._locks(key, f)
            if type_ != F_UNLCK:
                if ofd:
                    f.lock_table = self
                else:
                    owner.lock_table = self
                retry = HOST_RETRY_MIN
                while True:
                    r = self._conflict_locked(fl, owner, type_, start, end)
                    if r is None:
                        try:
                            got = fl.host_sync(self._set_range(fl, owner, pid, ofd, type_,
                                                               start, end), fl.flocks)
                        except BaseException:
                            self._tidy_locked(key)
                            raise
                        if got:
                            break
                        if not block:
                            self._tidy_locked(key)
                            raise SyscallError(errno.EAGAIN)
                        try:
                            wait(self.cond, retry)
                        except BaseException:
                            self._tidy_locked(key)
                            raise
                        retry = min(retry * 2, HOST_RETRY_MAX)
                        continue
                    if not block:
                        self._tidy_locked(key)
                        raise SyscallError(errno.EAGAIN)
                    if not ofd and not r.ofd and self._deadlock_locked(owner, r.owner):
                        self._tidy_locked(key)
                        raise SyscallError(errno.EDEADLK)
                    if not ofd:
                        self._waiting_for[owner] = r.owner
                    try:
                        wait(self.cond)
                    except BaseException:
                        self._tidy_locked(key)
                        raise
                    finally:
                        if not ofd:
                            self._waiting_for.pop(owner, None)
            fl.ranges = self._set_range(fl, owner, pid, ofd, type_, start, end)
            self._tidy_locked(key)
            self.cond.notify_all()

    @staticmethod
    def _set_range(fl, owner, pid, ofd, type_, start, end):
        """`fl.ranges` with `owner`'s locks over [start, end] replaced by
        `type_` (F_UNLCK: none), splitting the ranges it cuts and merging
        neighbours of the same type."""
        mine, others = [], []
        for r in fl.ranges:
            (mine if r.owner is owner else others).append(r)
        kept = []
        for r in mine:
            if r.end < start or r.start > end:
                kept.append(r)
                continue
            if r.start < start:
                kept.append(_Range(r.start, start - 1, r.type, owner, r.pid, ofd))
            if r.end > end:
                kept.append(_Range(end + 1, r.end, r.type, owner, r.pid, ofd))
        if type_ != F_UNLCK:
            kept.append(_Range(start, end, type_, owner, pid, ofd))
        kept.sort(key=lambda r: r.start)
        merged = []
        for r in kept:
            last = merged[-1] if merged else None
            if last is not None and last.type == r.type and r.start <= last.end + 1:
                last.end = max(last.end, r.end)
                continue
            # A copy: the result may be only tried on the host, not kept.
            merged.append(_Range(r.start, r.end, r.type, owner, r.pid, ofd))
        return others + merged

    # --- release ----------------------------------------------------------

    def release_description(self, f):
        """The last reference to `f` closed: its flock and OFD locks go."""
        try:
            key = inode_key(f)
        except SyscallError:
            key = None
        with self.cond:
            keys = [key] if key in self._files else list(self._files)
            for k in keys:
                fl = self._files[k]
                fl.flocks.pop(f, None)
                fl.ranges = [r for r in fl.ranges if r.owner is not f]
                self._tidy_locked(k)
            self.cond.notify_all()

    def release_posix(self, owner, f):
        """`owner` (an fd table) closed an fd of `f`'s file: all its POSIX
        locks on that file go (fcntl(2): "the process closes any file
        descriptor referring to a file")."""
        with self.cond:
            # Most closes find nothing: answer those without a stat.
            if not any(r.owner is owner for fl in self._files.values() for r in fl.ranges):
                return
        try:
            key = inode_key(f)
        except SyscallError:
            return
        with self.cond:
            fl = self._files.get(key)
            if fl is None:
                return
            n = len(fl.ranges)
            fl.ranges = [r for r in fl.ranges if r.owner is not owner]
            if len(fl.ranges) != n:
                self._tidy_locked(key)
                self.cond.notify_all()
