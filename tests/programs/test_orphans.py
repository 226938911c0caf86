"""Orphaned process groups: tests/c/orphans.c natively and in the sandbox.

POSIX and Linux (kernel/exit.c kill_orphaned_pgrp; get_signal): when an exit
makes a process group orphaned while a member is stopped, every member gets
SIGHUP then SIGCONT (si_code SI_KERNEL); in an orphaned group a default
SIGTSTP/SIGTTIN/SIGTTOU is discarded, while in a group that still has a
parent in another group of its session SIGTSTP stops. The probe covers both
ways a group becomes orphaned (a child's parent exits; a group's only
outside link exits) and prints each fact from one process at a time.
"""

import os
from conftest import TESTS_DIR

HERE = TESTS_DIR


def test_orphaned_pgrps_match_native(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "orphans.c"))
    native = sandbox.native([prog], timeout=30)
    assert native.returncode == 0, native.stderr
    assert b"case1 grandchild saw CH code SI_KERNEL\n" in native.stdout
    boxed = sandbox.run([prog], cwd="/var/tmp", timeout=30)
    assert boxed.stdout.decode() == native.stdout.decode(), boxed.stderr.decode()
    assert boxed.returncode == 0
