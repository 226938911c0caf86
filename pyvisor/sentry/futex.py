"""Futexes: the Sentry's wait queues keyed by the memory-file page offset of the word.

Linux background (futex(2)): FUTEX_WAIT sleeps if the 32-bit word still
holds the expected value, checked and queued atomically with respect to
FUTEX_WAKE. A word is identified by its physical page here: its offset in
the memory file, so threads sharing an address space meet, and copies made
by fork do not.
"""

import errno
import struct
import threading

from pyvisor.sentry import waiting
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.mm import PROT_READ

_U32 = struct.Struct("<I")


class _Waiter:
    __slots__ = ("key", "bitset", "cond", "woken")

    def __init__(self, key, bitset, lock):
        self.key = key
        self.bitset = bitset
        self.cond = threading.Condition(lock)
        self.woken = False


class FutexTable:
    def __init__(self):
        self.lock = threading.Lock()
        self.waiters = {}     # key -> [ _Waiter ], oldest first; protected by lock

    @staticmethod
    def key(t, addr):
        if addr % 4:
            raise SyscallError(errno.EINVAL)
        (off, _n), = t.mm._chunks(addr, 4, PROT_READ)
        return off

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
        q = self.waiters.get(key)
        woken = 0
        if not q:
            return 0
        for w in list(q):
            if woken >= n:
                break
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
