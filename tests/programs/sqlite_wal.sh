# sqlite3's shell in WAL mode: two writers (100 one-row transactions each,
# a new process each) and a reader, in $1 (tests/programs/test_shm_file.py).
set -e
cd "$1"
rm -f w.db w.db-wal w.db-shm
sqlite3 w.db "pragma journal_mode=wal; create table t(w, i);" >/dev/null
writer() {
  i=0
  while [ $i -lt 100 ]; do
    sqlite3 -cmd ".timeout 20000" w.db "insert into t values($1, $i);"
    i=$((i+1))
  done
}
reader() {
  n=0
  while [ $n -lt 30 ]; do
    c=$(sqlite3 -cmd ".timeout 20000" w.db "select count(*) from t;")
    n=$((n+1))
  done
  echo reader ok
}
writer 1 & a=$!
writer 2 & b=$!
reader & r=$!
wait $a; wait $b; wait $r
sqlite3 w.db "select w, count(*), sum(i) from t group by w; pragma integrity_check; pragma journal_mode;"
