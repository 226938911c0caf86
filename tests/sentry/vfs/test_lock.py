"""vfs/lock.py in-process: byte-range bookkeeping (split, merge, upgrade,
OFFSET_MAX), ownership and release, and the EDEADLK walk. The same rules are
checked against Linux by tests/programs/test_locks.py; these pin the table's
own state, which a probe can only see through F_GETLK."""

import errno

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.lock import F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX, LockTable
from pyvisor.sentry.vfs.pipe import make_pipe


class Owner:
    """A POSIX lock owner (an fd table in the Sentry)."""
    lock_table = None


@pytest.fixture
def f():
    r, w = make_pipe()
    yield r
    r.decref()
    w.decref()


def ranges(table, f, owner):
    return [(r.start, r.end, r.type) for fl in table._files.values() for r in fl.ranges
            if r.owner is owner]


def test_split_and_merge(f):
    table, a = LockTable(), Owner()
    table.setlk(f, a, 1, False, F_WRLCK, 0, 99, False)
    table.setlk(f, a, 1, False, F_UNLCK, 40, 59, False)
    assert ranges(table, f, a) == [(0, 39, F_WRLCK), (60, 99, F_WRLCK)]
    table.setlk(f, a, 1, False, F_RDLCK, 10, 19, False)
    assert ranges(table, f, a) == [(0, 9, F_WRLCK), (10, 19, F_RDLCK), (20, 39, F_WRLCK),
                                   (60, 99, F_WRLCK)]
    table.setlk(f, a, 1, False, F_WRLCK, 10, 59, False)      # fills the hole: one range
    assert ranges(table, f, a) == [(0, 99, F_WRLCK)]
    table.setlk(f, a, 1, False, F_WRLCK, 100, OFFSET_MAX, False)
    assert ranges(table, f, a) == [(0, OFFSET_MAX, F_WRLCK)]
    table.setlk(f, a, 1, False, F_UNLCK, 0, OFFSET_MAX, False)
    assert ranges(table, f, a) == [] and not table._files


def test_conflicts_and_release(f):
    table, a, b = LockTable(), Owner(), Owner()
    table.setlk(f, a, 1, False, F_RDLCK, 0, 9, False)
    table.setlk(f, b, 2, False, F_RDLCK, 5, 14, False)       # shared locks coexist
    assert table.test(f, b, F_WRLCK, 0, 4) == (F_RDLCK, 0, 9, 1, False)
    with pytest.raises(SyscallError) as e:
        table.setlk(f, b, 2, False, F_WRLCK, 0, 0, False)
    assert e.value.errno == errno.EAGAIN
    table.release_posix(a, f)
    assert table.test(f, b, F_WRLCK, 0, 4) is None
    table.flock(f, F_WRLCK, False)
    assert f.lock_table is table
    table.release_description(f)
    assert all(not fl.flocks for fl in table._files.values())


def test_deadlock_walk(f):
    table, a, b, c = LockTable(), Owner(), Owner(), Owner()
    table._waiting_for[b] = c
    table._waiting_for[c] = a
    assert table._deadlock_locked(a, b)        # a -> b -> c -> a
    del table._waiting_for[c]
    assert not table._deadlock_locked(a, b)
