"""Scheduling calls (policy, priority, nice, membarrier) give what Linux gives."""

import os
from conftest import TESTS_DIR

HERE = TESTS_DIR
PROBE = os.path.join(HERE, "py", "sched_probe.py")


def test_sched_probe_matches_native(sandbox):
    native = sandbox.native(["python3", PROBE])
    assert native.returncode == 0, native.stderr
    got = sandbox.run(["python3", PROBE])
    assert (got.returncode, got.stdout) == (0, native.stdout), got.stderr


MEMBARRIER_C = r"""
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void)
{
	long q = syscall(SYS_membarrier, 0, 0);
	printf("query_has_global=%d\n", q >= 0 && (q & 1));
	printf("global=%ld\n", syscall(SYS_membarrier, 1, 0));
	long bad = syscall(SYS_membarrier, 1 << 20, 0);
	printf("bad=%ld errno=%d\n", bad, errno);
	return 0;
}
"""


def test_membarrier_query_and_bad_command(sandbox, build_c, workdir):
    src = os.path.join(workdir, "mb.c")
    with open(src, "w") as f:
        f.write(MEMBARRIER_C)
    prog = build_c(src, static=True)
    native = sandbox.native([prog])
    got = sandbox.run([prog])
    assert got.stdout == native.stdout, got.stderr
    assert b"bad=-1 errno=22" in got.stdout
