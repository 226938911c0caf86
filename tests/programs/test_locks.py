"""flock(2), POSIX record locks and OFD locks (fcntl(2)) between processes
in the sandbox: the probe tests/c/locks.c run natively and in the sandbox.

It prints one line per fact: exclusion between processes (non-blocking
refusals, blocking waits woken by the holder's unlock, EINTR when a signal
without SA_RESTART interrupts a wait), ownership (flock and OFD locks by the
open file description: shared through dup and fork, gone at the last close;
POSIX locks by the process: not inherited, dropped when any fd of the file
closes), byte ranges (split, merge, SEEK_CUR/SEEK_END, negative lengths,
to EOF), EDEADLK for a wait cycle, and every bad input (type, whence,
ranges, access mode, O_PATH, pointers, l_pid of OFD locks). Then a real
program: concurrent sqlite3 writers.
"""

import os

import pytest

from probe_compare import assert_probe_matches_native


def test_locks_probe_matches_native(sandbox, build_c, workdir):
    assert_probe_matches_native(sandbox, build_c, "locks", [workdir], [["/tmp"], [workdir]])


SQLITE_WRITERS = """set -e
db=$1/locks-sqlite.db
rm -f $db $db-journal
sqlite3 $db "create table t(w integer, i integer);"
writer() {
  i=0; s=""
  while [ $i -lt 200 ]; do
    s="$s begin immediate; insert into t values($1, $i); commit;"; i=$((i + 1))
  done
  sqlite3 -cmd ".timeout 20000" $db "$s"
}
writer 1 & writer 2 & writer 3
wait
sqlite3 $db "select w, count(*), sum(i) from t group by w; pragma integrity_check;"
rm -f $db
"""


def test_sqlite_writers_exclude_each_other(sandbox, workdir):
    """Three sqlite3 processes write one database in rollback-journal mode,
    600 transactions: only real fcntl locks keep them from corrupting the
    journal ("disk I/O error" when every lock is granted)."""
    if not os.access("/usr/bin/sqlite3", os.X_OK):
        pytest.skip("sqlite3 CLI not installed")
    script = os.path.join(workdir, "writers.sh")
    with open(script, "w") as f:
        f.write(SQLITE_WRITERS)
    native = sandbox.native(["/bin/sh", script, workdir])
    assert native.stdout == b"1|200|19900\n2|200|19900\n3|200|19900\nok\n", native.stderr
    for where in ("/tmp", workdir):
        boxed = sandbox.run(["/bin/sh", script, where], cwd="/var/tmp")
        assert boxed.stdout == native.stdout, (where, boxed.stderr.decode())
        assert boxed.returncode == 0
