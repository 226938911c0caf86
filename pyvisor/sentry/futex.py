"""Futexes: the Sentry's wait queues, keyed as Linux keys futex words.

Linux background (futex(2)): FUTEX_WAIT sleeps if the 32-bit word still
holds the expected value, checked and queued atomically with respect to
FUTEX_WAKE. A word in MAP_SHARED memory is identified by its page (its
offset in the memory file), so processes sharing it meet; any other word by
(address space, address), so threads meet, copies made by fork do not, and
copy-on-write moving the page does not strand a sleeper. PI waiters are
queued by the same keys; the Sentry changes a PI word in place, in the
task's own copy of its page.

Priority-inheritance futexes (futex(2) "Priority-inheritance futexes")
give the word a meaning: the owner's TID in the low 30 bits, FUTEX_WAITERS
(bit 31: someone waits in the kernel, so the owner must unlock through it)
and FUTEX_OWNER_DIED (bit 30: the owner died holding it). User space locks
an uncontended word with cmpxchg(0 -> tid) and unlocks with
cmpxchg(tid -> 0); only when that fails does it call FUTEX_LOCK_PI or
FUTEX_UNLOCK_PI. The kernel side here:

- LOCK_PI takes a word whose TID is 0 (keeping OWNER_DIED, which glibc
  turns into EOWNERDEAD); otherwise it sets FUTEX_WAITERS and queues the
  task on the word's PI queue. EDEADLK if the caller owns it; ESRCH if the
  owner TID names no live task.
- UNLOCK_PI (EPERM unless the caller owns the word) hands the lock straight
  to the first queued waiter (word = its TID | FUTEX_WAITERS), or clears
  the word when nobody waits.
- WAIT_REQUEUE_PI waits on a plain word (a condition variable) to be moved
  by CMP_REQUEUE_PI onto a PI word: the first waiter is given the PI lock
  at once if it is free, the others join the PI queue and are handed the
  lock by later unlocks. Either way the waiter returns owning the PI lock.
- When a task exits or execs, PI words it still owns and others wait on are
  handed over (Linux exit_pi_state_list); its robust list marks them
  OWNER_DIED first (Kernel._robust_cleanup).

The word is changed with atomic compare-and-swap (`_atomic.cas32`) on the
Sentry's mapping of the memory file, since application threads cmpxchg it
at the same time. N.B. priority inheritance itself (boosting the owner) has
no effect: the Sentry does not schedule tasks, the host does.
"""

import errno
import struct
import threading

from pyvisor.sentry import _atomic, waiting
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.mm import PROT_READ, PROT_WRITE

_U32 = struct.Struct("<I")
FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK = 0x80000000, 0x40000000, 0x3FFFFFFF


class _Waiter:
    """A task blocked in the table. `pi`: it waits for a PI lock (LOCK_PI, or
    requeued there); `requeue_to`: a WAIT_REQUEUE_PI waiter's PI key;
    `granted`: it was handed the PI lock. Fields are guarded by the table lock."""

    __slots__ = ("key", "bitset", "cond", "woken", "tid", "pi", "requeue_to", "granted")

    def __init__(self, key, bitset, lock, tid=0, pi=False, requeue_to=None):
        self.key = key
        self.bitset = bitset
        self.cond = threading.Condition(lock)
        self.woken = False
        self.tid = tid
        self.pi = pi
        self.requeue_to = requeue_to
        self.granted = False


class FutexTable:
    def __init__(self):
        self.lock = threading.Lock()
        self.waiters = {}     # key -> [ _Waiter ], oldest first; protected by lock
        self.pi_waiters = {}  # PI word key -> [ _Waiter ] waiting to be handed it; protected by lock

    @staticmethod
    def key(t, addr):
        """The word's key (Linux get_futex_key): EINVAL if unaligned, EFAULT if unmapped.

        In MAP_SHARED memory its memory-file offset, where processes meet;
        elsewhere (address space, address), so that a waiter keeps its key
        when copy-on-write moves the page under it (a fork by another
        thread, then a write)."""
        if addr % 4:
            raise SyscallError(errno.EINVAL)
        return t.mm.futex_key(addr)

    def wait(self, t, addr, val, deadline, bitset):
        """Sleep while *addr == val; deadline is a time.monotonic() value or None."""
        import time
        if bitset == 0:
            raise SyscallError(errno.EINVAL)
        key = self.key(t, addr)
        with self.lock:
            if _U32.unpack(t.copy_in(addr, 4))[0] != val & 0xFFFFFFFF:
                raise SyscallError(errno.EAGAIN)
            w = _Waiter(key, bitset, self.lock)
            self.waiters.setdefault(w.key, []).append(w)
            try:
                while not w.woken:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise SyscallError(errno.ETIMEDOUT)
                    waiting.wait(w.cond, left)
            finally:
                if not w.woken:
                    q = self.waiters.get(w.key, [])
                    if w in q:
                        q.remove(w)
                        if not q:
                            del self.waiters[w.key]
        return 0

    def wake(self, t, addr, n, bitset):
        if bitset == 0:
            raise SyscallError(errno.EINVAL)
        key = self.key(t, addr)
        with self.lock:
            return self._wake_locked(key, n, bitset)

    def _wake_locked(self, key, n, bitset=0xFFFFFFFF):
        if self.pi_waiters.get(key):
            raise SyscallError(errno.EINVAL)     # Linux: a plain wake of a PI word with waiters
        q = self.waiters.get(key)
        woken = 0
        if not q:
            return 0
        for w in list(q):
            if woken >= n:
                break
            if w.requeue_to is not None:
                # Linux: a plain wake or requeue that meets a WAIT_REQUEUE_PI waiter.
                raise SyscallError(errno.EINVAL)
            if w.bitset & bitset:
                q.remove(w)
                w.woken = True
                w.cond.notify()
                woken += 1
        if not q:
            del self.waiters[key]
        return woken

    def requeue(self, t, addr, n_wake, n_requeue, addr2, cmpval=None):
        key, key2 = self.key(t, addr), self.key(t, addr2)
        with self.lock:
            if cmpval is not None and _U32.unpack(t.copy_in(addr, 4))[0] != cmpval & 0xFFFFFFFF:
                raise SyscallError(errno.EAGAIN)
            done = self._wake_locked(key, n_wake)
            q = self.waiters.get(key, [])
            moved = q[:n_requeue]
            if any(w.requeue_to is not None for w in moved):
                raise SyscallError(errno.EINVAL)
            if moved:
                del q[:n_requeue]
                if not q:
                    self.waiters.pop(key, None)
                for w in moved:
                    w.key = key2
                self.waiters.setdefault(key2, []).extend(moved)
            return done + len(moved)

    def wake_op(self, t, addr, n, addr2, n2, op):
        """FUTEX_WAKE_OP. N.B. the read-modify-write of *addr2 is atomic only among Sentry threads."""
        key, key2 = self.key(t, addr), self.key(t, addr2)
        kind, cmp = (op >> 28) & 7, (op >> 24) & 15
        oparg, cmparg = (op >> 12) & 0xFFF, op & 0xFFF
        if op & (8 << 28):
            oparg = 1 << oparg
        with self.lock:
            old = _U32.unpack(t.copy_in(addr2, 4))[0]
            new = {0: oparg, 1: old + oparg, 2: old | oparg, 3: old & ~oparg, 4: old ^ oparg}.get(kind)
            if new is None or cmp > 5:
                raise SyscallError(errno.ENOSYS)
            t.copy_out(addr2, _U32.pack(new & 0xFFFFFFFF))
            done = self._wake_locked(key, n)
            sold = old - (1 << 32) if old & 0x80000000 else old
            hit = (sold == cmparg, sold != cmparg, sold < cmparg, sold <= cmparg,
                   sold > cmparg, sold >= cmparg)[cmp]
            if hit:
                done += self._wake_locked(key2, n2)
            return done

    # -- priority-inheritance futexes (see the module docstring) ---------------

    def pi_word(self, t, addr):
        """(key, word) of a PI word: it must be aligned (EINVAL) and writable
        (EFAULT). The key is the futex key, as for plain futexes; `word` is a
        view of the word in the memory file. The Sentry writes it, so a
        copy-on-write page becomes the task's own first, as a write fault
        would make it."""
        key = self.key(t, addr)                 # EINVAL if unaligned
        return key, self._word_view(t.mm, addr)

    @staticmethod
    def _word_view(mm, addr):
        """The word at addr in mm's own copy of its page; EFAULT unless writable."""
        (off, _n), = mm._chunks(addr, 4, PROT_READ | PROT_WRITE, write=True)
        return mm.file.view(off, 4)

    @staticmethod
    def _word_of(t, key):
        """The word `key` names, as task t sees it; None for a private word
        of another address space (not t's to look at)."""
        if isinstance(key, tuple):
            mm, addr = key
            if mm is not t.mm:
                return None
            try:
                return FutexTable._word_view(mm, addr)
            except SyscallError:
                return None         # unmapped since: nothing to hand over
        return t.mm.file.view(key, 4)

    def _owner_alive_locked(self, t, tid):
        x = t.kernel.tasks.get(tid)
        return x is not None and not getattr(x, "futex_dead", False)

    def _dequeue_locked(self, table, w):
        q = table.get(w.key)
        if q and w in q:
            q.remove(w)
            if not q:
                del table[w.key]

    def _grant_locked(self, w):
        """Hand the PI lock to waiter w (the word already names it)."""
        self._dequeue_locked(self.pi_waiters, w)
        w.granted = w.woken = True
        w.cond.notify()

    def _set_waiters_locked(self, t, word, key):
        """Make sure the owned word at key has FUTEX_WAITERS; returns its value.
        ESRCH if the owner TID names no live task (Linux handle_exit_race)."""
        while True:
            val = _atomic.load32(word)
            if not val & FUTEX_WAITERS and _atomic.cas32(word, val, val | FUTEX_WAITERS) != val:
                continue
            val |= FUTEX_WAITERS
            if not self._owner_alive_locked(t, val & FUTEX_TID_MASK):
                if _atomic.load32(word) != val:
                    continue
                raise SyscallError(errno.ESRCH)
            return val

    def lock_pi(self, t, addr, deadline, trylock=False):
        """FUTEX_LOCK_PI/LOCK_PI2 (trylock: FUTEX_TRYLOCK_PI). Returns 0 owning
        the lock; EDEADLK, ESRCH, EAGAIN (trylock), ETIMEDOUT; Interrupted."""
        key, word = self.pi_word(t, addr)
        me = t.tid
        with self.lock:
            while True:
                val = _atomic.load32(word)
                owner = val & FUTEX_TID_MASK
                if owner == me:
                    raise SyscallError(errno.EDEADLK)
                if owner == 0:
                    new = (val & FUTEX_OWNER_DIED) | me
                    if self.pi_waiters.get(key):
                        new |= FUTEX_WAITERS
                    if _atomic.cas32(word, val, new) == val:
                        return 0
                    continue
                self._set_waiters_locked(t, word, key)
                if trylock:
                    raise SyscallError(errno.EAGAIN)
                break
            w = _Waiter(key, 0xFFFFFFFF, self.lock, tid=me, pi=True)
            self.pi_waiters.setdefault(key, []).append(w)
            try:
                while not w.granted:
                    if not waiting.wait_until(w.cond, deadline):
                        raise SyscallError(errno.ETIMEDOUT)
            except (SyscallError, waiting.Interrupted):
                if w.granted:
                    return 0          # handed the lock as the wait ended: it is ours
                self._dequeue_locked(self.pi_waiters, w)
                raise
        return 0

    def unlock_pi(self, t, addr):
        """FUTEX_UNLOCK_PI: EPERM unless t owns the word; hands it to the first waiter.

        As Linux, the owner is checked (EFAULT, EPERM) before the alignment (EINVAL)."""
        if _U32.unpack(t.copy_in(addr, 4))[0] & FUTEX_TID_MASK != t.tid:
            raise SyscallError(errno.EPERM)
        key, word = self.pi_word(t, addr)
        with self.lock:
            while True:
                val = _atomic.load32(word)
                if val & FUTEX_TID_MASK != t.tid:
                    raise SyscallError(errno.EPERM)
                q = self.pi_waiters.get(key)
                new = (q[0].tid | FUTEX_WAITERS) if q else 0
                if _atomic.cas32(word, val, new) != val:
                    continue
                if q:
                    self._grant_locked(q[0])
                return 0

    def wait_requeue_pi(self, t, addr, val, deadline, addr2):
        """FUTEX_WAIT_REQUEUE_PI: wait on addr until CMP_REQUEUE_PI moves us to
        the PI word addr2; returns 0 owning it. EAGAIN if *addr != val or if
        interrupted once requeued; ETIMEDOUT; Interrupted (restart) before."""
        key, (key2, _word) = self.key(t, addr), self.pi_word(t, addr2)
        if key == key2:                    # the same word
            raise SyscallError(errno.EINVAL)
        with self.lock:
            if _U32.unpack(t.copy_in(addr, 4))[0] != val & 0xFFFFFFFF:
                raise SyscallError(errno.EAGAIN)
            w = _Waiter(key, 0xFFFFFFFF, self.lock, tid=t.tid, requeue_to=key2)
            self.waiters.setdefault(key, []).append(w)
            try:
                while not w.granted:
                    if not waiting.wait_until(w.cond, deadline):
                        raise SyscallError(errno.ETIMEDOUT)
            except (SyscallError, waiting.Interrupted) as e:
                if w.granted:
                    return 0
                if w.pi:
                    self._dequeue_locked(self.pi_waiters, w)
                    if isinstance(e, waiting.Interrupted):
                        # Linux: requeued already, a restart could only fail: EAGAIN now.
                        raise SyscallError(errno.EAGAIN) from None
                else:
                    self._dequeue_locked(self.waiters, w)
                raise
        return 0

    def cmp_requeue_pi(self, t, addr, n_requeue, addr2, cmpval):
        """FUTEX_CMP_REQUEUE_PI (nr_wake is 1): give the PI word at addr2 to the
        first waiter on addr if it is free, move up to n_requeue others (one
        more if none was given it) to the PI queue; returns how many."""
        key, (key2, word) = self.key(t, addr), self.pi_word(t, addr2)
        if key == key2:                    # the same word
            raise SyscallError(errno.EINVAL)
        with self.lock:
            if _U32.unpack(t.copy_in(addr, 4))[0] != cmpval & 0xFFFFFFFF:
                raise SyscallError(errno.EAGAIN)
            q = list(self.waiters.get(key, []))
            for w in q:
                if w.requeue_to != key2:
                    raise SyscallError(errno.EINVAL)
            done, limit = 0, 1 + n_requeue
            if q:
                top = q[0]
                while True:
                    val = _atomic.load32(word)
                    owner = val & FUTEX_TID_MASK
                    if owner == top.tid:
                        raise SyscallError(errno.EDEADLK)
                    if owner:
                        self._set_waiters_locked(t, word, key2)
                        break
                    more = len(q) > 1 and n_requeue > 0 or self.pi_waiters.get(key2)
                    new = (val & FUTEX_OWNER_DIED) | top.tid | (FUTEX_WAITERS if more else 0)
                    if _atomic.cas32(word, val, new) == val:
                        self._dequeue_locked(self.waiters, top)
                        top.granted = top.woken = True
                        top.cond.notify()
                        q.pop(0)
                        done = 1
                        break
            for w in q[:limit - done]:
                self._dequeue_locked(self.waiters, w)
                w.key, w.pi = key2, True
                self.pi_waiters.setdefault(key2, []).append(w)
                done += 1
            return done

    def handle_death(self, t, uaddr, pi, pending):
        """One robust-list entry of dying task t (Linux handle_futex_death): a
        word t owns becomes OWNER_DIED (TID 0, FUTEX_WAITERS kept); a plain
        futex's waiter is woken, a PI word's first waiter is handed it by
        exit_pi. Raises SyscallError for a bad address."""
        val = _U32.unpack(t.copy_in(uaddr, 4))[0]
        if val & FUTEX_TID_MASK != t.tid and not (pending and not pi and val == 0):
            return                       # not ours: leave the page alone
        _key, word = self.pi_word(t, uaddr)
        while True:
            val = _atomic.load32(word)
            if pending and not pi and val == 0:
                self.wake(t, uaddr, 1, 0xFFFFFFFF)
                return
            if val & FUTEX_TID_MASK != t.tid:
                return
            new = (val & FUTEX_WAITERS) | FUTEX_OWNER_DIED
            if _atomic.cas32(word, val, new) == val:
                break
        if not pi and val & FUTEX_WAITERS:
            self.wake(t, uaddr, 1, 0xFFFFFFFF)

    def exit_pi(self, t, dying=True):
        """t exits (or execs): hand each PI word it owns, or that its robust
        list left ownerless, to the word's first waiter (OWNER_DIED kept);
        once dying, t no longer counts as a live owner (Linux
        exit_pi_state_list and futex_exit_state)."""
        with self.lock:
            if dying:
                t.futex_dead = True
            for key, q in list(self.pi_waiters.items()):
                word = self._word_of(t, key)
                while q and word is not None:
                    val = _atomic.load32(word)
                    if val & FUTEX_TID_MASK not in (0, t.tid):
                        break
                    new = (val & FUTEX_OWNER_DIED) | q[0].tid | FUTEX_WAITERS
                    if _atomic.cas32(word, val, new) == val:
                        self._grant_locked(q[0])
                        break
