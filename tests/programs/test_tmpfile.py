"""open(2) O_TMPFILE and linkat(2) naming the file: the probe
tests/c/tmpfile.c run natively and in the sandbox, in /tmp (the overlay's
upper tmpfs) and in /dev/shm (a plain tmpfs).

It prints one line per fact: the unnamed file (/proc/self/fd shows
"DIR/#INO (deleted)", nlink 0, the umask applies), its data, naming it with
linkat through /proc/self/fd (AT_SYMLINK_FOLLOW) and with AT_EMPTY_PATH,
O_EXCL forbidding that, an unlinked ordinary file staying nameless, and the
bad inputs (no write access mode, __O_TMPFILE without O_DIRECTORY, O_CREAT,
O_PATH, a regular file, a missing directory, a bad pointer, a file system
without unnamed files).
"""

from probe_compare import assert_probe_matches_native


def test_tmpfile_probe_matches_native(sandbox, build_c):
    assert_probe_matches_native(sandbox, build_c, "tmpfile", ["/tmp"], [["/tmp"], ["/dev/shm"]])
