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


TAIL_F = """d=$1
: > $d/tail.log
tail -s 30 -f $d/tail.log & pid=$!
sleep 0.5
echo hello >> $d/tail.log
sleep 1.5
echo world >> $d/tail.log
sleep 1.5
kill $pid
wait $pid 2>/dev/null
rm -f $d/tail.log
echo end
"""


def test_tail_follows_through_inotify(sandbox, workdir):
    """GNU tail -f waits in inotify for a local file system; with a 30 s
    polling interval the two appended lines appear only if IN_MODIFY wakes
    it. (On the overlay root tail polls, as natively on overlayfs, which
    coreutils counts as remote.)"""
    script = os.path.join(workdir, "tailf.sh")
    with open(script, "w") as f:
        f.write(TAIL_F)
    vol = os.path.join(workdir, "vol")
    os.mkdir(vol)
    native = sandbox.native(["/bin/sh", script, workdir])
    assert native.stdout == b"hello\nworld\nend\n", native.stderr
    for opts, where in ((["-v", vol + ":/vol"], "/vol"), (["--tmpfs", "/scratch"], "/scratch")):
        boxed = sandbox.run(["/bin/sh", script, where], options=opts)
        assert boxed.stdout == native.stdout, (where, boxed.stderr.decode())


def test_inotify_limits(sandbox, build_c):
    """EMFILE past max_user_instances and ENOSPC past max_user_watches, the
    values /proc/sys/fs/inotify shows (Linux's defaults), for the whole
    sandbox; a closed instance gives its share back. No native run: on the
    host these limits are shared with every process of the user."""
    prog = build_c(os.path.join(TESTS_DIR, "c", "inotify_limits.c"))
    boxed = sandbox.run([prog, "/tmp"])
    assert boxed.stdout.decode() == (
        "max_queued_events=16384 max_user_instances=128 max_user_watches=65536\n"
        "instances: 128 then Too many open files\n"
        "after close: ok\n"
        "watches: 65536 then No space left on device\n"
        "after close: ok\n"
        "done\n"), boxed.stderr.decode()
