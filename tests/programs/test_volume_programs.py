"""Host directories mounted into the sandbox (-v HOST:PATH[:ro|rw]), with
real programs: each runs natively in a scratch directory and sandboxed in a
volume, and what the host holds afterwards is compared. Also --tmpfs,
--read-only, and the command line's refusals (exit 2, one line, before
anything starts).
"""

import errno
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile

import pytest

from conftest import BASE_ENV, NOBODY, PYVISOR, as_nobody, kvm_for_nobody

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_vfs_programs import PROBE  # noqa: E402  (the same file-system probe)

PYTHON3 = "/usr/bin/python3"
MNT = "/mnt/vol"


def _tree(root):
    """What the host holds below root: {relative path: (kind, mode, data or target)}."""
    root = os.fsencode(root)
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_nlink,
                                hashlib.sha256(f.read()).hexdigest())
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
    return out


def _volume_dirs(workdir):
    native = os.path.join(workdir, "native")
    vol = os.path.join(workdir, "vol")
    os.mkdir(native)
    os.mkdir(vol)
    return native, vol


def _run(sandbox, vol, argv, extra=(), cwd=MNT, ro=False):
    spec = "%s:%s%s" % (vol, MNT, ":ro" if ro else "")
    return sandbox.run(argv, options=["-v", spec, "--cwd", cwd, *extra], timeout=120)


SHELL = r"""
set -e
mkdir -p a/b/c
echo one > a/one
printf 'two\n%.0s' $(seq 1 500) > a/b/two
cp a/one a/b/c/copy
mv a/one a/renamed
ln -s renamed a/sym
ln a/renamed a/hard
chmod 751 a/b
touch -d @1234567890 a/b/two
rm a/b/c/copy
rmdir a/b/c
mkfifo fifo
(echo through the fifo > fifo &)
cat fifo
echo appended >> a/renamed
: > truncated
echo data > trunc2 && : > trunc2
ls -la a | wc -l
cat a/sym
"""


def test_shell_script_leaves_the_same_tree(sandbox, workdir):
    native, vol = _volume_dirs(workdir)
    want = sandbox.native(["/bin/sh", "-c", SHELL], cwd=native)
    got = _run(sandbox, vol, ["/bin/sh", "-c", SHELL])
    assert got.returncode == want.returncode == 0, got.stderr
    assert got.stdout == want.stdout
    assert _tree(vol) == _tree(native)
    assert os.stat(os.path.join(vol, "a/b/two")).st_mtime == 1234567890


def _python_both_ways(sandbox, workdir, script, name):
    """Runs a Python script on native/NAME and, sandboxed, on the volume's
    NAME; asserts the same output; returns the volume's host directory."""
    if not os.path.exists(PYTHON3):
        pytest.skip("no /usr/bin/python3")
    native, vol = _volume_dirs(workdir)
    want = sandbox.native([PYTHON3, "-c", script, os.path.join(native, name)])
    got = _run(sandbox, vol, [PYTHON3, "-c", script, MNT + "/" + name])
    assert got.returncode == want.returncode == 0, got.stderr[-2000:]
    assert got.stdout == want.stdout
    return native, vol


def test_fs_probe_in_a_volume(sandbox, workdir):
    """The VFS probe of test_vfs_programs, run where the files are the host's."""
    native, vol = _python_both_ways(sandbox, workdir, PROBE, "p")
    assert _tree(vol) == _tree(native)


def _tarball(path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, **kw):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.size, info.mtime = kind, mode, len(data), 1_000_000_000
            for k, v in kw.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("pkg", tarfile.DIRTYPE, mode=0o755)
        add("pkg/src", tarfile.DIRTYPE, mode=0o700)
        for i in range(40):
            add("pkg/src/f%02d.c" % i, data=os.urandom(97 * i))
        add("pkg/run.sh", data=b"#!/bin/sh\necho hi\n", mode=0o755)
        add("pkg/big", data=os.urandom(3 << 20))
        add("pkg/link", tarfile.SYMTYPE, linkname="run.sh")
        add("pkg/hard", tarfile.LNKTYPE, linkname="pkg/run.sh")
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def test_tar_x_then_sha256_on_the_host(sandbox, workdir):
    native, vol = _volume_dirs(workdir)
    tarball = os.path.join(workdir, "t.tar.gz")
    _tarball(tarball)
    want = sandbox.native(["tar", "xzf", tarball], cwd=native)
    got = _run(sandbox, vol, ["tar", "xzf", tarball])
    assert got.returncode == want.returncode == 0, got.stderr
    assert _tree(vol) == _tree(native)
    # And sha256sum inside agrees with the host's files.
    got = _run(sandbox, vol, ["/bin/sh", "-c", "sha256sum pkg/big pkg/src/f39.c"])
    for line in got.stdout.decode().splitlines():
        digest, name = line.split()
        with open(os.path.join(vol, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest


GIT = r"""
set -e
export HOME=$PWD GIT_AUTHOR_DATE=@1000000000 GIT_COMMITTER_DATE=@1000000000
git init -q -b main repo
cd repo
git config user.email t@example.com
git config user.name t
for i in $(seq 1 50); do echo "line $i" > "file$i.txt"; done
git add .
git commit -q -m first
git checkout -q -b side
echo changed > file1.txt
git commit -q -am second
git checkout -q main
git merge -q --no-edit side
git fsck --strict 2>&1
git log --format=%H%n%s
git status --porcelain
"""


def test_git_in_a_volume(sandbox, workdir):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    native, vol = _volume_dirs(workdir)
    env = dict(BASE_ENV, GIT_CONFIG_NOSYSTEM="1")
    want = sandbox.native(["/bin/sh", "-c", GIT], cwd=native, env=env)
    got = sandbox.run(["/bin/sh", "-c", GIT], options=["-v", "%s:%s" % (vol, MNT), "--cwd", MNT,
                                                     "--env", "GIT_CONFIG_NOSYSTEM=1"],
                      timeout=240)
    assert got.returncode == want.returncode == 0, got.stderr[-2000:]
    assert got.stdout == want.stdout
    # The host's git reads the sandbox's repository.
    check = subprocess.run(["git", "-C", os.path.join(vol, "repo"), "fsck", "--strict"],
                           capture_output=True, env=env)
    assert check.returncode == 0, check.stderr


SQL = "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create table t(x)');" \
      "c.executemany('insert into t values(?)', [(i,) for i in range(2000)]); c.commit();" \
      "print(c.execute('select count(*), sum(x) from t').fetchone())"


def test_sqlite_writes_a_database_the_host_reads(sandbox, workdir):
    if not os.path.exists(PYTHON3):
        pytest.skip("no /usr/bin/python3")
    native, vol = _volume_dirs(workdir)
    got = _run(sandbox, vol, [PYTHON3, "-c", SQL, MNT + "/db.sqlite"])
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout == b"(2000, 1999000)\n"
    import sqlite3
    db = sqlite3.connect(os.path.join(vol, "db.sqlite"))
    assert db.execute("select count(*), sum(x) from t").fetchone() == (2000, 1999000)
    assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    db.close()


ERRNO = "import errno,os,sys\nfor p in sys.argv[1:]:\n  try:\n    %s\n    print('ok')\n" \
        "  except OSError as e:\n    print(errno.errorcode[e.errno])\n"


def _errnos(sandbox, stmt, paths, options):
    if not os.path.exists(PYTHON3):
        pytest.skip("no /usr/bin/python3")
    r = sandbox.run([PYTHON3, "-c", ERRNO % stmt, *paths], options=options, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.decode().split()


def test_read_only_volume_refuses_writes_with_erofs(sandbox, workdir):
    _native, vol = _volume_dirs(workdir)
    with open(os.path.join(vol, "f"), "w") as f:
        f.write("keep")
    os.mkdir(os.path.join(vol, "d"))
    opts = ["-v", "%s:%s:ro" % (vol, MNT)]
    assert _errnos(sandbox, "open(p, 'w')", [MNT + "/f", MNT + "/new"], opts) == ["EROFS"] * 2
    assert _errnos(sandbox, "os.mkdir(p)", [MNT + "/x"], opts) == ["EROFS"]
    assert _errnos(sandbox, "os.unlink(p)", [MNT + "/f"], opts) == ["EROFS"]
    assert _errnos(sandbox, "os.rmdir(p)", [MNT + "/d"], opts) == ["EROFS"]
    assert _errnos(sandbox, "os.rename(p, p + '2')", [MNT + "/f"], opts) == ["EROFS"]
    assert _errnos(sandbox, "os.chmod(p, 0o777)", [MNT + "/f"], opts) == ["EROFS"]
    assert _errnos(sandbox, "os.truncate(p, 0)", [MNT + "/f"], opts) == ["EROFS"]
    assert _errnos(sandbox, "os.symlink('f', p)", [MNT + "/l"], opts) == ["EROFS"]
    assert _errnos(sandbox, "print(open(p).read(), end=' ')", [MNT + "/f"], opts) == ["keep", "ok"]
    assert sorted(os.listdir(vol)) == ["d", "f"]


def test_read_only_root_and_tmpfs(sandbox, workdir):
    opts = ["--read-only", "--tmpfs", "/mnt/scratch:size=64k"]
    assert _errnos(sandbox, "open(p, 'w')", ["/etc/pyvisor-test", "/mnt/scratch/ok"],
                   opts) == ["EROFS", "ok"]
    assert _errnos(sandbox, "os.mkdir(p)", ["/var/pyvisor-test"], opts) == ["EROFS"]
    # --tmpfs's size bound.
    assert _errnos(sandbox, "open(p, 'wb').write(bytes(100 << 10))", ["/mnt/scratch/big"],
                   opts) == ["ENOSPC"]
    assert not os.path.exists("/etc/pyvisor-test")


def test_symlinks_out_of_a_volume_lead_nowhere_on_the_host(sandbox, workdir):
    """Links in a volume resolve in the sandbox's own tree (the Sentry
    follows them, in its mount table); the Gofer never follows one out."""
    _native, vol = _volume_dirs(workdir)
    outside = os.path.join(workdir, "outside")
    os.mkdir(outside)
    os.symlink("../outside", os.path.join(vol, "rel"))
    os.symlink("../../../../../../../" + outside.lstrip("/"), os.path.join(vol, "deep"))
    os.symlink(outside, os.path.join(vol, "abs"))
    paths = [MNT + "/rel/f", MNT + "/deep/f", MNT + "/abs/f"]
    # rel leads to /mnt/outside in the sandbox (absent); deep and abs name the
    # host's path, which the sandbox's root (the host's / under an in-memory
    # overlay) shows: the write lands in the overlay, not on the host.
    got = _errnos(sandbox, "open(p, 'w').write('x')", paths, ["-v", "%s:%s" % (vol, MNT)])
    assert got == ["ENOENT", "ok", "ok"]
    assert os.listdir(outside) == []                 # nothing reached the host's directory
    # With --read-only there is no overlay: the same writes are EROFS.
    got = _errnos(sandbox, "open(p, 'w').write('x')", paths,
                  ["--read-only", "-v", "%s:%s" % (vol, MNT)])
    assert got == ["ENOENT", "EROFS", "EROFS"]
    assert os.listdir(outside) == []


def test_odd_names_round_trip(sandbox, workdir):
    _native, vol = _volume_dirs(workdir)
    script = ("import os\nfor n in [b'new\\nline', b'bad\\xff\\xfe', b'n' * 255]:\n"
              "  open(b'%s/' + n, 'wb').write(n)\n"
              "print(sorted(os.listdir(b'%s')))\n"
              "try:\n  open(b'%s/' + b'n' * 256, 'w')\nexcept OSError as e:\n  print(e.errno)\n"
              % (MNT.encode().decode(), MNT, MNT))
    r = _run(sandbox, vol, [PYTHON3, "-c", script])
    assert r.returncode == 0, r.stderr[-2000:]
    names = [b"new\nline", b"bad\xff\xfe", b"n" * 255]
    assert r.stdout.decode().splitlines() == [repr(sorted(names)), str(errno.ENAMETOOLONG)]
    assert sorted(os.listdir(os.fsencode(vol))) == sorted(names)
    for n in names:
        with open(os.path.join(os.fsencode(vol), n), "rb") as f:
            assert f.read() == n


def test_created_files_belong_to_the_invoking_user(sandbox, workdir):
    _native, vol = _volume_dirs(workdir)
    r = _run(sandbox, vol, ["/bin/sh", "-c", "echo x > f && mkdir d && chmod 4755 f"])
    assert r.returncode == 0, r.stderr
    for name in ("f", "d"):
        st = os.lstat(os.path.join(vol, name))
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())


# -- the command line's refusals --------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["-v", "/nonexistent-pyvisor:/x"], "does not exist"),
    (["-v", "/etc/hostname:/x"], "not a directory"),
    (["-v", "/tmp:relative"], "not absolute"),
    (["-v", "/tmp:/x:rx"], "mode must be ro or rw"),
    (["-v", "/tmp:/x", "-v", "/var:/x/"], "already a mount target"),
    (["-v", "/tmp"], "HOST_DIR:SANDBOX_PATH"),
    (["-v", "/tmp:/"], "over the root"),
    (["--tmpfs", "rel"], "not absolute"),
    (["--tmpfs", "/x:size=0"], "size"),
    (["--tmpfs", "/x:mode=1"], "PATH[:size=N]"),
    (["--tmpfs", "/x", "-v", "/tmp:/x"], "already a mount target"),
    (["--file-access", "bogus"], "--file-access: unknown mode 'bogus'"),
    (["--file-access-mounts", "Shared"], "--file-access-mounts: unknown mode 'Shared'"),
    (["--file-access", ""], "--file-access: unknown mode ''"),
    (["--file-access", "shared"], "--file-access shared needs --overlay none"),
    (["--file-access", "shared", "--overlay", "file"], "needs --overlay none"),
    # Found when the mount table is built (the Sentry has started, the program not).
    (["-v", "/tmp:/etc/passwd"], "cannot mount on /etc/passwd in the sandbox: Not a directory"),
    (["--tmpfs", "/proc/x"], "cannot mount on /proc/x"),
])
def test_bad_mount_options_exit_2_with_one_line(args, words):
    r = subprocess.run([*PYVISOR, "run", *args, "--", "/bin/true"], capture_output=True,
                       env=BASE_ENV, cwd="/", timeout=60)
    lines = r.stderr.decode().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("pyvisor: ") and words in lines[0]


def test_rootless_files_belong_to_the_invoking_user(sandbox, workdir, nobody_tree):
    """Run as an ordinary user (nobody): what the sandbox's root creates in a
    volume is the user's on the host, and chown to another id is refused."""
    prefix, py = as_nobody(nobody_tree)
    kvm_for_nobody(sandbox)
    _native, vol = _volume_dirs(workdir)
    os.chown(vol, NOBODY, NOBODY)
    os.chmod(workdir, 0o755)
    cmd = [*prefix, py, "-m", "pyvisor",
           "run", "--platform", sandbox.platform, "-v", "%s:%s" % (vol, MNT), "--cwd", MNT, "--",
           "/bin/sh", "-c", "echo x > f && mkdir d && stat -c %u:%g f d; "
           "chown 5 f 2>/dev/null || echo refused"]
    r = subprocess.run(cmd, capture_output=True, env=dict(BASE_ENV, PYTHONPATH=nobody_tree),
                       cwd="/", timeout=120)
    if r.returncode == 71:
        pytest.skip("unprivileged user namespaces are not allowed here")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b"0:0", b"0:0", b"refused"]      # root inside
    for name in ("f", "d"):
        st = os.lstat(os.path.join(vol, name))
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)        # the user outside


LONG_PATH = r"""
import errno, os, sys
base = sys.argv[1]
comps = []
path = base
while len(path) + 1 + 200 < 4095 - 60:
    comps.append("d%03d" % len(comps) + "x" * 196)
    path += "/" + comps[-1]
os.makedirs(path)
name = "f" * (4095 - len(path) - 1)
full = path + "/" + name
assert len(full) == 4095, len(full)
with open(full, "w") as f:
    f.write("deep")
print(open(full).read(), len(full.encode()))
try:
    open(full + "g", "w")
except OSError as e:
    print(errno.errorcode[e.errno])
print(len(comps), name)
"""


def test_4095_byte_paths(sandbox, workdir):
    """A path of PATH_MAX - 1 bytes works in a volume; one more is ENAMETOOLONG."""
    if not os.path.exists(PYTHON3):
        pytest.skip("no /usr/bin/python3")
    _native, vol = _volume_dirs(workdir)
    r = _run(sandbox, vol, [PYTHON3, "-c", LONG_PATH, MNT])
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.decode().splitlines()
    assert lines[:2] == ["deep 4095", "ENAMETOOLONG"]
    depth, name = lines[2].split()
    # On the host, walked one directory at a time (the host path is longer still).
    fd = os.open(vol, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(int(depth)):
            nfd = os.open("d%03d" % i + "x" * 196, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        leaf = os.open(name, os.O_RDONLY, dir_fd=fd)
        assert os.read(leaf, 10) == b"deep"
        os.close(leaf)
    finally:
        os.close(fd)


XATTRS = r"""
import errno, os, sys
p = sys.argv[1]
open(p, "w").close()
out = []
def rec(fn, *a):
    try:
        r = fn(*a)
    except OSError as e:
        r = errno.errorcode[e.errno]
    out.append(repr(r))
rec(os.setxattr, p, "user.a", b"one")
rec(os.setxattr, p, "user.b", b"x" * 1000)
rec(os.getxattr, p, "user.a")
rec(lambda: sorted(os.listxattr(p)))
rec(os.setxattr, p, "user.a", b"two", os.XATTR_CREATE)
rec(os.setxattr, p, "user.c", b"two", os.XATTR_REPLACE)
rec(os.setxattr, p, "user.a", b"2", os.XATTR_REPLACE)
rec(os.getxattr, p, "user.a")
rec(os.removexattr, p, "user.a")
rec(os.removexattr, p, "user.a")
rec(os.getxattr, p, "user.a")
rec(os.getxattr, p, "user.nope")
rec(os.setxattr, p, "user.big", b"x" * 70000)
rec(os.setxattr, p, "user.bad", b"x", 4)
rec(lambda: sorted(os.listxattr(p)))
print("\n".join(out))
"""


def test_xattrs_native_and_in_a_volume(sandbox, workdir):
    _native, vol = _python_both_ways(sandbox, workdir, XATTRS, "f")
    assert os.getxattr(os.path.join(vol, "f"), "user.b") == b"x" * 1000


def test_sqlite3_wal_database_the_host_reads(sandbox, workdir):
    """sqlite3(1) in WAL mode, one process: the database is whole on the host
    after it exits (the WAL checkpointed into it)."""
    sqlite = shutil.which("sqlite3")
    if sqlite is None:
        pytest.skip("sqlite3 is not installed")
    _native, vol = _volume_dirs(workdir)
    sql = ("pragma journal_mode=wal; create table t(x); with recursive c(i) as (select 1 "
           "union all select i+1 from c where i<5000) insert into t select i from c; "
           "select count(*), sum(x) from t;")
    got = _run(sandbox, vol, [sqlite, MNT + "/db", sql])
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"wal\n5000|12502500\n"
    host = subprocess.run([sqlite, os.path.join(vol, "db"),
                           "select count(*), sum(x) from t; pragma integrity_check;"],
                          capture_output=True, timeout=60)
    assert host.stdout == b"5000|12502500\nok\n"


MAKEFILE = "OBJS=main.o f1.o f2.o f3.o f4.o\nprog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n" \
           "%.o: %.c\n\t$(CC) -O1 -c -o $@ $<\n"


@pytest.mark.slow
def test_make_j2_leaves_its_objects_on_the_host(sandbox, workdir):
    if shutil.which("make") is None or shutil.which("gcc") is None:
        pytest.skip("make and gcc are needed")
    _native, vol = _volume_dirs(workdir)
    for i in range(1, 5):
        with open(os.path.join(vol, "f%d.c" % i), "w") as f:
            f.write("int f%d(void) { return %d; }\n" % (i, i))
    with open(os.path.join(vol, "main.c"), "w") as f:
        f.write("#include <stdio.h>\nint f1(void), f2(void), f3(void), f4(void);\n"
                "int main(void) { printf(\"%d\\n\", f1() + f2() + f3() + f4()); return 0; }\n")
    with open(os.path.join(vol, "Makefile"), "w") as f:
        f.write(MAKEFILE)
    got = sandbox.run(["make", "-j2", "-s"], options=["-v", "%s:/src" % vol, "--cwd", "/src"],
                      timeout=240)
    assert got.returncode == 0, got.stderr[-2000:]
    assert {"main.o", "f1.o", "f4.o", "prog"} <= set(os.listdir(vol))
    assert subprocess.run([os.path.join(vol, "prog")], capture_output=True).stdout == b"10\n"


def _wheel(path, name="hello_pv", version="1.0"):
    """A minimal pure-Python wheel (PEP 427), made here: no build tool, no index."""
    import base64
    import zipfile
    info = "%s-%s.dist-info" % (name, version)
    files = {name + "/__init__.py": b"GREETING = 'hello from a wheel'\n",
             info + "/METADATA": ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
                                  % (name, version)).encode(),
             info + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: pyvisor-tests\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = ["%s,sha256=%s,%d" % (p, base64.urlsafe_b64encode(hashlib.sha256(d).digest())
                                   .rstrip(b"=").decode(), len(d)) for p, d in files.items()]
    files[info + "/RECORD"] = ("\n".join(record + [info + "/RECORD,,"]) + "\n").encode()
    whl = os.path.join(path, "%s-%s-py3-none-any.whl" % (name, version))
    with zipfile.ZipFile(whl, "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
    return os.path.basename(whl)


VENV = "%s -m venv venv && venv/bin/pip install -q --no-index %s && echo installed"


def test_a_venv_and_pip_install_in_a_volume_work_on_the_host(sandbox, workdir):
    """python3 -m venv and pip install of a local wheel in a volume: the host
    imports the package from that venv, and the tree is the native run's."""
    native, vol = _volume_dirs(workdir)
    for d in (native, vol):
        whl = _wheel(d)
    want = sandbox.native(["/bin/sh", "-c", VENV % (PYTHON3, whl)], cwd=native, timeout=300)
    assert want.returncode == 0, want.stderr
    got = _run(sandbox, vol, ["/bin/sh", "-c", VENV % (PYTHON3, whl)], extra=())
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    assert got.stdout == want.stdout == b"installed\n"
    for d in (native, vol):
        r = subprocess.run([os.path.join(d, "venv", "bin", "python"), "-c",
                            "import hello_pv; print(hello_pv.GREETING)"], capture_output=True)
        assert r.stdout == b"hello from a wheel\n", (d, r.stderr)
    # The package's files (the dist-info records the wheel's path, which differs).
    pkg = lambda d: {k: v for k, v in _tree(os.path.join(d, "venv")).items()  # noqa: E731
                     if b"/hello_pv/" in b"/" + k and b"__pycache__" not in k}
    assert pkg(vol) == pkg(native) and pkg(vol)


RSYNC = shutil.which("rsync")


@pytest.mark.skipif(RSYNC is None, reason="rsync not installed (Debian package rsync)")
def test_rsync_between_two_volumes(sandbox, workdir):
    """rsync -a from one volume to another (one read-only): the copy on the host
    is the source tree, modes, times and links included, as a native rsync makes it."""
    src = os.path.join(workdir, "src")
    os.makedirs(os.path.join(src, "d", "e"))
    for i in range(50):
        with open(os.path.join(src, "d", "f%02d" % i), "wb") as f:
            f.write(os.urandom(100 * i))
    os.symlink("d/f01", os.path.join(src, "link"))
    os.link(os.path.join(src, "d", "f02"), os.path.join(src, "hard"))
    os.chmod(os.path.join(src, "d", "f03"), 0o741)
    os.utime(os.path.join(src, "d", "f04"), (1234567890, 1234567890))
    native, vol = _volume_dirs(workdir)
    want = sandbox.native([RSYNC, "-aH", src + "/", native + "/"])
    assert want.returncode == 0, want.stderr
    got = sandbox.run([RSYNC, "-aH", "/src/", "/dst/"],
                      options=["-v", "%s:/src:ro" % src, "-v", "%s:/dst" % vol], timeout=120)
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    assert _tree(vol) == _tree(native) == _tree(src)
    assert os.stat(os.path.join(vol, "d", "f04")).st_mtime == 1234567890
