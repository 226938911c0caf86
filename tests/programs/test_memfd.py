"""memfd_create(2) and file seals: the probe tests/c/memfd.c run natively
and in the sandbox.

It prints one line per fact: flags (MFD_CLOEXEC, MFD_ALLOW_SEALING,
MFD_NOEXEC_SEAL, unknown bits, MFD_EXEC with MFD_NOEXEC_SEAL), names (249
bytes, 250, NULL and bad pointers, empty), /proc/self/fd's
"/memfd:NAME (deleted)", fstat/fstatfs, data through read/write/ftruncate,
MAP_SHARED mappings that see each other, write(2) and a forked child's
writes, a private mapping that does not, and every seal with Linux's errors
(EPERM on a sealed operation, EBUSY for F_SEAL_WRITE while a writable shared
mapping exists, EINVAL on a file that is not a memfd, EPERM on a read-only
description).
"""

import os

from conftest import TESTS_DIR
from probe_compare import assert_probe_matches_native


def test_memfd_probe_matches_native(sandbox, build_c):
    assert_probe_matches_native(sandbox, build_c, "memfd")


def test_memfd_hugetlb_is_einval(sandbox, build_c):
    """N.B. the host may have huge pages; the sandbox offers none."""
    prog = build_c(os.path.join(TESTS_DIR, "c", "memfd.c"))
    boxed = sandbox.run([prog, "hugetlb"], cwd="/var/tmp")
    assert boxed.stdout.decode().splitlines() == [
        "MFD_HUGETLB = -1 EINVAL", "MFD_HUGETLB with a size = -1 EINVAL"], boxed.stderr.decode()
