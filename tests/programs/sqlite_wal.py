"""sqlite3 in WAL mode across processes (tests/programs/test_shm_file.py):
two writers insert 300 rows each, one transaction a row, while a reader
checks that each read transaction sees a consistent, growing table. The
processes meet in the database's -shm file, mapped MAP_SHARED.

    python3 sqlite_wal.py DIR
"""
import os, sqlite3, subprocess, sys, time
N = 300
if len(sys.argv) == 3:
    db, role = sys.argv[1], sys.argv[2]
    c = sqlite3.connect(db, timeout=60)
    if role == "reader":
        last, seen = -1, 0
        deadline = time.time() + 120
        while last < 2 * N and time.time() < deadline:
            c.execute("begin")
            n, s = c.execute("select count(*), coalesce(sum(i), 0) from t").fetchone()
            per = dict(c.execute("select w, count(*) from t group by w").fetchall())
            c.execute("commit")
            assert n >= last, (n, last)
            assert sum(per.values()) == n
            last, seen = n, seen + 1
        print("reader saw all rows:", last == 2 * N)
    else:
        for i in range(N):
            with c:
                c.execute("insert into t values(?, ?)", (int(role), i))
    sys.exit(0)
db = os.path.join(sys.argv[1], "wal.db")
for ext in ("", "-wal", "-shm"):
    if os.path.exists(db + ext):
        os.unlink(db + ext)
c = sqlite3.connect(db)
print(c.execute("pragma journal_mode=wal").fetchone()[0])
c.execute("create table t(w, i)")
c.commit()
ps = [subprocess.Popen([sys.executable, __file__, db, r]) for r in ("1", "2", "reader")]
print([p.wait() for p in ps])
print(c.execute("select w, count(*), sum(i) from t group by w").fetchall())
print(c.execute("pragma integrity_check").fetchone()[0])
c.close()
