"""Priority-inheritance futexes: tests/c/futex_pi.c natively and in the sandbox.

The probe exercises the raw operations (LOCK_PI, LOCK_PI2, TRYLOCK_PI,
UNLOCK_PI, WAIT_REQUEUE_PI, CMP_REQUEUE_PI) with their error cases
(unaligned and bad addresses, EDEADLK, EPERM, ESRCH, bad timespecs,
timeouts on both clocks, bad requeue arguments, a plain wake meeting PI
waiters), then glibc's PTHREAD_PRIO_INHERIT mutexes: 8 threads contending,
robust PI mutexes whose owner dies (EOWNERDEAD, pthread_mutex_consistent,
ENOTRECOVERABLE), and a condition variable with a PI mutex. Its output must
be the same in the sandbox as natively.

The contended part makes 100k lock/unlock pairs under ptrace; under KVM,
where each futex call is a slower VM exit on this nested host, 16k.
"""

import os
from conftest import TESTS_DIR

HERE = TESTS_DIR
ITERATIONS = {"ptrace": 12500, "kvm": 2000}     # per thread, 8 threads


def test_futex_pi_probe_matches_native(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "futex_pi.c"), extra=("-pthread",))
    argv = [prog, str(ITERATIONS[sandbox.platform])]
    native = sandbox.native(argv, timeout=60)
    assert native.returncode == 0, native.stderr
    assert b"contended: counter" in native.stdout and native.stdout.endswith(b"done\n")
    boxed = sandbox.run(argv, cwd="/var/tmp", timeout=120)
    assert boxed.stdout.decode() == native.stdout.decode(), boxed.stderr.decode()
    assert boxed.returncode == 0
