"""flock(2), POSIX record locks and OFD locks (fcntl(2)) between processes
in the sandbox: the probe tests/c/locks.c run natively and in the sandbox.

It prints one line per fact: exclusion between processes (non-blocking
refusals, blocking waits woken by the holder's unlock, EINTR when a signal
without SA_RESTART interrupts a wait), ownership (flock and OFD locks by the
open file description: shared through dup and fork, gone at the last close;
POSIX locks by the process: not inherited, dropped when any fd of the file
closes), byte ranges (split, merge, SEEK_CUR/SEEK_END, negative lengths,
to EOF), EDEADLK for a wait cycle, and every bad input (type, whence,
ranges, access mode, O_PATH, pointers, l_pid of OFD locks).
"""

from probe_compare import assert_probe_matches_native


def test_locks_probe_matches_native(sandbox, build_c, workdir):
    assert_probe_matches_native(sandbox, build_c, "locks", [workdir], [["/tmp"], [workdir]])
