"""pidfd_open(2), pidfd_send_signal(2), pidfd_getfd(2), waitid(P_PIDFD) and
CLONE_PIDFD: the probe tests/c/pidfd.c run natively and in the sandbox.

The probe prints one line per fact (a result or an errno name), covering the
bad inputs (flags, pids, fds, signal numbers, siginfo, pointers), a pidfd's
whole life (running, zombie, reaped: poll, epoll, select, signals, getfd,
waitid) and both clone forms. Both runs must print the same lines.
"""

import os
from conftest import TESTS_DIR

HERE = TESTS_DIR


def test_pidfd_probe_matches_native(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "pidfd.c"))
    native = sandbox.native([prog])
    assert native.returncode == 0, native.stderr
    assert native.stdout.endswith(b"done\n")
    boxed = sandbox.run([prog], cwd="/var/tmp")
    assert boxed.stdout.decode() == native.stdout.decode(), boxed.stderr.decode()
    assert boxed.returncode == 0

