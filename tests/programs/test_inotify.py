"""inotify(7) for the sandbox's own changes: the probe tests/c/inotify.c run
natively (in a scratch directory under /var/tmp) and in the sandbox (in
/tmp, in the overlay root's /var/tmp, and in a volume), compared line by line.

It prints one line per fact: inotify_init/init1 flags (EINVAL for others),
every inotify_add_watch/rm_watch error (mask, fd, path, IN_ONLYDIR,
IN_DONT_FOLLOW, EACCES, IN_MASK_CREATE, unknown wd), one wd per inode,
the events of create/open/write/read/close/chmod/truncate/utimes/rename
(shared cookies)/link/unlink/symlink/mknod/rmdir/getdents with IN_ISDIR,
self events (IN_MOVE_SELF, IN_DELETE_SELF, IN_IGNORED), coalescing,
read(2) with a buffer too small, FIONREAD, poll and epoll readiness,
IN_MASK_ADD, IN_ONESHOT, IN_EXCL_UNLINK, a blocking read woken by another
process, and IN_Q_OVERFLOW after 16384 events.
"""

import os

from conftest import TESTS_DIR
from probe_compare import assert_probe_matches_native


def test_inotify_probe_matches_native(sandbox, build_c, workdir):
    os.chmod(workdir, 0o755)        # the probe's unprivileged child walks through it
    vol = os.path.join(workdir, "vol")
    os.mkdir(vol)
    assert_probe_matches_native(sandbox, build_c, "inotify", [workdir],
                                [["/tmp"], [workdir]])
    # A volume served by the Gofer (goferfs): the same events.
    prog = build_c(os.path.join(TESTS_DIR, "c", "inotify.c"))
    native = sandbox.native([prog, workdir])
    boxed = sandbox.run([prog, "/vol"], options=["-v", vol + ":/vol"], cwd="/var/tmp")
    assert boxed.stdout.decode() == native.stdout.decode(), boxed.stderr.decode()
    assert boxed.returncode == 0
    assert os.listdir(vol) == []
