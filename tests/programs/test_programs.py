"""Real programs run under ``pyvisor run``, compared with the same run natively.

Each test runs a program the way a user does (``python -m pyvisor run --
PROGRAM ARGS``) with the same argv, stdin and environment as a native run, and
compares stdout and the exit status. The fixtures (conftest.py) also check
that every run leaves no stub or Gofer process behind.
"""

import gzip
import os
import shutil
import select
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import TESTS_DIR

HERE = TESTS_DIR
PYTHON = os.path.realpath(sys.executable)   # a real ELF binary, not a pyenv shim script

pytestmark = pytest.mark.slow


def assert_same(sandbox, argv, input=b"", **kwargs):
    """Run argv natively and sandboxed; assert equal stdout and status."""
    native = sandbox.native(argv, input=input, **kwargs)
    boxed = sandbox.run(argv, input=input, **kwargs)
    assert (boxed.stdout, boxed.returncode) == (native.stdout, native.returncode), boxed.stderr
    return boxed


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


# -- busybox applets ---------------------------------------------------------

def test_echo(sandbox, busybox):
    assert_same(sandbox, [busybox, "echo", "hello", "sandbox world"])


def test_cat_file(sandbox, busybox, workdir):
    path = write(os.path.join(workdir, "in.txt"), b"line one\nline two\n" * 100)
    out = assert_same(sandbox, [busybox, "cat", path])
    assert out.stdout == b"line one\nline two\n" * 100


def test_cat_stdin(sandbox, busybox):
    out = assert_same(sandbox, [busybox, "cat"], input=b"from stdin\n")
    assert out.stdout == b"from stdin\n"


def test_ls_directory(sandbox, busybox, workdir):
    for name in ("b.txt", "a.txt", "c"):
        write(os.path.join(workdir, name), b"x" * len(name))
    os.mkdir(os.path.join(workdir, "subdir"))
    out = assert_same(sandbox, [busybox, "ls", "-1", workdir])
    assert out.stdout.split() == [b"a.txt", b"b.txt", b"c", b"subdir"]


def test_wc(sandbox, busybox):
    assert_same(sandbox, [busybox, "wc"], input=b"one two\nthree\nfour five six\n")


def test_sort(sandbox, busybox):
    out = assert_same(sandbox, [busybox, "sort"], input=b"pear\napple\nfig\n")
    assert out.stdout == b"apple\nfig\npear\n"


def test_sha256sum(sandbox, busybox, workdir):
    path = write(os.path.join(workdir, "blob"), bytes(range(256)) * 64)
    assert_same(sandbox, [busybox, "sha256sum", path])


def test_gzip_roundtrip(sandbox, busybox, workdir):
    original = b"".join(b"%d compressible line\n" % i for i in range(2000))
    path = write(os.path.join(workdir, "plain.txt"), original)
    packed = sandbox.run([busybox, "gzip", "-c", path])
    assert packed.returncode == 0, packed.stderr
    assert gzip.decompress(packed.stdout) == original
    unpacked = sandbox.run([busybox, "gunzip", "-c"], input=packed.stdout)
    assert (unpacked.returncode, unpacked.stdout) == (0, original), unpacked.stderr


# -- ls -la / ----------------------------------------------------------------

# Entries the sandbox itself provides (overlay root, its tmpfs, devfs and
# procfs mounts): their link counts, sizes and times legitimately differ.
SANDBOX_OWNED = {b".", b"..", b"dev", b"proc", b"tmp"}


def _ls_entries(out):
    """Map name -> the fields of its `ls -la` line (skipping the total line).

    Fields, not the raw line: ls pads columns to the widest value, and the
    widest link count belongs to a sandbox-owned entry (/proc)."""
    entries = {}
    for line in out.splitlines()[1:]:
        fields = line.split(None, 8)
        entries[fields[8].split(b" -> ")[0]] = fields
    return entries


def test_ls_la_root(sandbox):
    native = sandbox.native(["/bin/ls", "-la", "/"])
    boxed = sandbox.run(["/bin/ls", "-la", "/"])
    assert boxed.returncode == native.returncode == 0, boxed.stderr
    want, got = _ls_entries(native.stdout), _ls_entries(boxed.stdout)
    assert sorted(got) == sorted(want)
    for name in set(want) - SANDBOX_OWNED:
        assert got[name] == want[name]


# -- other programs ----------------------------------------------------------

def test_env_controlled(sandbox):
    env = {"PATH": sandbox.env["PATH"], "A": "1"}
    if "PYTHONPATH" in sandbox.env:    # needed by the sandbox itself during development
        env["PYTHONPATH"] = sandbox.env["PYTHONPATH"]
    native = sandbox.native(["/usr/bin/env"], env=env)
    boxed = sandbox.run(["/usr/bin/env"], env=env)
    assert boxed.returncode == native.returncode == 0, boxed.stderr
    assert sorted(boxed.stdout.splitlines()) == sorted(native.stdout.splitlines())
    assert b"A=1" in boxed.stdout.splitlines()


def test_python_stdlib(sandbox):
    code = ("import json, hashlib, sqlite3\n"
            "db = sqlite3.connect(':memory:')\n"
            "db.execute('create table t (k text, v int)')\n"
            "db.executemany('insert into t values (?, ?)', [('a', 1), ('b', 2), ('c', 3)])\n"
            "rows = db.execute('select k, v * 10 from t order by k').fetchall()\n"
            "print(json.dumps({'rows': rows, 'sum': sum(v for _, v in rows)}, sort_keys=True))\n"
            "print(hashlib.sha256(json.dumps(rows).encode()).hexdigest())\n")
    out = assert_same(sandbox, [PYTHON, "-S", "-c", code])
    assert out.stdout.startswith(b'{"rows": [["a", 10]')


def test_sqlite3_cli(sandbox):
    sqlite3 = "/usr/bin/sqlite3"
    if not os.access(sqlite3, os.X_OK):
        pytest.skip("sqlite3 CLI not installed")
    script = (b"create table t(a integer, b text);\n"
              b"insert into t values (1, 'one'), (2, 'two'), (3, 'three');\n"
              b"select a, b from t where a > 1 order by a desc;\n"
              b"select count(*), sum(a) from t;\n")
    out = assert_same(sandbox, [sqlite3, ":memory:"], input=script)
    assert out.stdout == b"3|three\n2|two\n3|6\n"


SCRIPT_BODY = (b"echo start $1\n"
               b"i=0\n"
               b"while [ $i -lt 5 ]; do echo \"i=$i\"; i=$((i + 1)); done\n"
               b"exit 3\n")


@pytest.mark.parametrize("interpreter", [b"/bin/busybox sh", b"/bin/sh"])
def test_shebang_script(sandbox, workdir, interpreter):
    if not os.access(interpreter.split()[0], os.X_OK):
        pytest.skip("%s not installed" % interpreter.decode())
    path = write(os.path.join(workdir, "script.sh"), b"#!" + interpreter + b"\n" + SCRIPT_BODY)
    os.chmod(path, 0o755)
    out = assert_same(sandbox, [path, "arg1"])
    assert out.returncode == 3
    assert out.stdout.splitlines()[0] == b"start arg1"


def test_busybox_sh_builtins(sandbox, busybox):
    assert_same(sandbox, [busybox, "sh", "-c", "echo hi; for x in a b c; do echo $x; done; exit 5"])


# -- exit statuses -----------------------------------------------------------

def test_exit_status_passed_through(sandbox):
    out = sandbox.run([PYTHON, "-S", "-c", "import sys; sys.exit(7)"])
    assert out.returncode == 7, out.stderr


def test_sigkill_is_128_plus_9(sandbox):
    out = sandbox.run([PYTHON, "-S", "-c", "import os; os.kill(os.getpid(), 9)"])
    assert out.returncode == 128 + signal.SIGKILL, out.stderr


@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
def test_sigsegv_is_128_plus_11(sandbox, build_c, static):
    prog = build_c(os.path.join(HERE, "c", "segv.c"), static=static)
    assert sandbox.native([prog]).returncode == -signal.SIGSEGV
    out = sandbox.run([prog])
    assert out.returncode == 128 + signal.SIGSEGV, out.stderr


# -- options -----------------------------------------------------------------

def test_strace_to_stderr(sandbox, busybox, workdir):
    path = write(os.path.join(workdir, "f"), b"data\n")
    out = sandbox.run([busybox, "cat", path, os.path.join(workdir, "missing")], options=["--strace"])
    assert out.stdout == b"data\n"
    assert out.returncode == 1
    err = out.stderr.decode()
    assert 'openat(AT_FDCWD, "%s", O_RDONLY' % path in err
    assert ') = 3\n' in err
    assert '"%s/missing", O_RDONLY' % workdir in err
    assert "= -1 ENOENT (No such file or directory)" in err
    assert "exit_group(1)" in err


def test_strace_to_file(sandbox, workdir):
    log = os.path.join(workdir, "trace.log")
    target = "/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/passwd"
    out = sandbox.run(["/bin/cat", target], options=["--strace=" + log])
    assert out.returncode == 0, out.stderr
    assert b"openat(" not in out.stderr          # the trace went to the file
    with open(log) as f:
        trace = f.read()
    assert 'openat(AT_FDCWD, "%s", O_RDONLY|O_CLOEXEC) = 3' % target in trace \
        or 'openat(AT_FDCWD, "%s", O_RDONLY) = 3' % target in trace
    assert '"/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3' in trace
    assert "exit_group(0)" in trace


def test_hostname(sandbox, busybox):
    out = sandbox.run([busybox, "uname", "-n"], options=["--hostname", "box-name.example"])
    assert (out.returncode, out.stdout) == (0, b"box-name.example\n"), out.stderr


def test_default_hostname_is_not_the_host(sandbox, busybox):
    out = sandbox.run([busybox, "hostname"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() != socket.gethostname().encode()


def test_env_option(sandbox, busybox):
    out = sandbox.run([busybox, "sh", "-c", 'echo "$GREETING|$A"'],
                      options=["--env", "GREETING=hello there", "--env", "A=x=y"])
    assert (out.returncode, out.stdout) == (0, b"hello there|x=y\n"), out.stderr


def test_cwd_option(sandbox, busybox):
    out = sandbox.run([busybox, "pwd"], options=["--cwd", "/usr/share"])
    assert (out.returncode, out.stdout) == (0, b"/usr/share\n"), out.stderr


def test_cwd_defaults_to_callers(sandbox, busybox, workdir):
    write(os.path.join(workdir, "rel.txt"), b"relative\n")
    out = sandbox.run([busybox, "cat", "rel.txt"], cwd=workdir)
    assert (out.returncode, out.stdout) == (0, b"relative\n"), out.stderr


def test_rootfs_option(sandbox, busybox, workdir):
    rootfs = os.path.join(workdir, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    os.makedirs(os.path.join(rootfs, "etc"))
    write(os.path.join(rootfs, "etc", "marker"), b"inside the small rootfs\n")
    shutil.copy(busybox, os.path.join(rootfs, "bin", "busybox"))     # static: needs no libc
    out = sandbox.run(["/bin/busybox", "cat", "/etc/marker"], options=["--rootfs", rootfs])
    assert (out.returncode, out.stdout) == (0, b"inside the small rootfs\n"), out.stderr
    out = sandbox.run(["/bin/busybox", "ls", "/bin"], options=["--rootfs", rootfs])
    assert (out.returncode, out.stdout.split()) == (0, [b"busybox"]), out.stderr
    out = sandbox.run(["/bin/busybox", "pwd"], options=["--rootfs", rootfs])
    assert (out.returncode, out.stdout) == (0, b"/\n"), out.stderr


# -- bad input ---------------------------------------------------------------

def test_missing_program(sandbox, workdir):
    missing = os.path.join(workdir, "no-such-program")
    out = sandbox.run([missing])
    assert out.returncode == 127
    assert out.stderr.decode() == "pyvisor: %s: No such file or directory\n" % missing


def test_not_an_executable_format(sandbox, workdir):
    path = write(os.path.join(workdir, "notelf"), b"just some text, no #! line\n")
    os.chmod(path, 0o755)
    out = sandbox.run([path])
    assert out.returncode == 126
    assert "Exec format error" in out.stderr.decode()
    assert out.stderr.decode().startswith("pyvisor: %s:" % path)


def test_unknown_option(sandbox, busybox):
    out = sandbox.run([busybox, "true"], options=["--no-such-option"])
    assert out.returncode == 2
    err = out.stderr.decode()
    assert err.startswith("usage: pyvisor")
    assert "--no-such-option" in err


def test_no_program(sandbox):
    proc = subprocess.run(sandbox.command([])[:-1], capture_output=True, env=sandbox.env,
                          timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.startswith(b"usage: pyvisor run")


def _read_line(stream, timeout):
    """One line from a pipe, or b"" if none starts within timeout seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else b""


def test_sigint_while_sleeping_leaves_nothing(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "sleeper.c"), static=True)
    before = sandbox.children()
    proc = sandbox.popen([prog, "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        assert _read_line(proc.stdout, 30) == b"ready\n"
        time.sleep(0.3)                     # let it block in nanosleep
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=2.0)          # the program sleeps 4 s: it must not finish it
            stopped = True
        except subprocess.TimeoutExpired:
            stopped = False
            proc.wait(timeout=30)
        assert b"woke" not in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        sandbox.assert_no_leftovers(before)
    assert stopped, "pyvisor kept running for 2 s after SIGINT"
    assert proc.returncode == 128 + signal.SIGINT
