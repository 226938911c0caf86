"""File access modes (--file-access for the root, --file-access-mounts for
volumes): in shared mode a running program sees what the host does to the
files under it — created, changed (contents and size, through stat, read
and a fresh mmap), renamed, removed — as a native program does; in
exclusive mode the program still works (seeing the host's changes is not
required). Each program waits for a go line on stdin between the host's
changes; its output at each step is compared with the same program run
natively on the same kind of directory. (Bad values of the options:
test_volume_programs.test_bad_mount_options_exit_2_with_one_line.)
"""

import os
import shutil
import subprocess

import pytest

from conftest import BASE_ENV, TESTS_DIR

MNT = "/mnt/vol"
# At each go line: the names here, then each file's size and contents.
LOOP = (r'while read step; do ls | tr "\n" " "; echo; '
        r'for f in *; do echo "$f $(wc -c < $f) $(cat $f)"; done; echo END; done')


def _host_changes(d):
    """What the host does between steps, in order (one callable per step)."""
    def write(name, text):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return [
        lambda: None,
        lambda: write("b", "a new file\n"),
        lambda: write("a", "new contents, and longer\n"),
        lambda: os.rename(os.path.join(d, "b"), os.path.join(d, "c")),
        lambda: os.unlink(os.path.join(d, "a")),
        lambda: os.mkdir(os.path.join(d, "sub")),
    ]


def _drive(proc, d, changes):
    """Runs the host's `changes` on directory d, one before each go line;
    the program's output for each step."""
    steps = []
    for change in changes(d):
        change()
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        out = []
        while True:
            line = proc.stdout.readline()
            if not line or line == b"END\n":
                break
            out.append(line)
        steps.append(b"".join(out))
    proc.stdin.close()
    return steps, proc.wait(timeout=60)


def _fresh(workdir, name):
    d = os.path.join(workdir, name)
    os.mkdir(d)
    with open(os.path.join(d, "a"), "w") as f:
        f.write("hello\n")
    return d


def _native(argv, d, changes=_host_changes):
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=d,
                            env=BASE_ENV)
    return _drive(proc, d, changes)


def _sandboxed(sandbox, argv, d, options, cwd=MNT, changes=_host_changes):
    before = sandbox.children()
    proc = sandbox.popen(argv, ["--cwd", cwd, *options], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        steps, code = _drive(proc, d, changes)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    sandbox.assert_no_leftovers(before)
    return steps, code, err


@pytest.mark.parametrize("mode", [None, "shared"])
def test_shared_volume_sees_host_changes(sandbox, workdir, busybox, mode):
    """Volumes are shared unless told otherwise."""
    argv = [busybox, "sh", "-c", LOOP]
    want, code = _native(argv, _fresh(workdir, "native"))
    assert code == 0
    vol = _fresh(workdir, "vol")
    options = ["-v", vol + ":" + MNT] + (["--file-access-mounts", mode] if mode else [])
    got, code, err = _sandboxed(sandbox, argv, vol, options)
    assert code == 0, err
    assert got == want
    assert want[3] == b"a c \na 25 new contents, and longer\nc 11 a new file\n"


def test_shared_volume_file_contents_through_stat_read_and_mmap(sandbox, workdir, build_c):
    """A file rewritten on the host (new size, new data): stat, read and a
    new private mapping (the page cache) all show the new version."""
    probe = build_c(os.path.join(TESTS_DIR, "c", "watch_file.c"))
    want, code = _native([probe, "a"], _fresh(workdir, "native"))
    assert code == 0
    vol = _fresh(workdir, "vol")
    got, code, err = _sandboxed(sandbox, [probe, "a"], vol, ["-v", vol + ":" + MNT])
    assert code == 0, err
    assert got == want
    assert want[2] == (b"size 25 read new contents, and longer\n"
                       b"mmap new contents, and longer\n")
    assert want[4] == b"stat No such file or directory\n"


def test_exclusive_volume_still_works(sandbox, workdir, busybox, build_c):
    """Exclusive mode may keep showing what it cached; the program runs to
    its end, its first look is right, and its own writes reach the host."""
    vol = _fresh(workdir, "vol")
    argv = [busybox, "sh", "-c", LOOP + "; echo written > mine"]
    got, code, err = _sandboxed(sandbox, argv, vol,
                                ["-v", vol + ":" + MNT, "--file-access-mounts", "exclusive"])
    assert code == 0, err
    assert got[0] == b"a \na 6 hello\n"
    assert len(got) == len(_host_changes(vol))
    with open(os.path.join(vol, "mine")) as f:
        assert f.read() == "written\n"


def test_shared_root_sees_host_changes(sandbox, workdir, busybox):
    """--file-access shared on the root (served as is: --overlay none)."""
    argv = ["/bin/busybox", "sh", "-c", LOOP]
    want, code = _native([busybox, "sh", "-c", LOOP], _fresh(workdir, "native"))
    assert code == 0
    root = os.path.join(workdir, "root")
    for sub in ("bin", "dev", "proc", "data"):
        os.makedirs(os.path.join(root, sub))
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    for tool in ("sh", "ls", "tr", "wc", "cat"):
        os.symlink("busybox", os.path.join(root, "bin", tool))
    data = os.path.join(root, "data")
    with open(os.path.join(data, "a"), "w") as f:
        f.write("hello\n")
    got, code, err = _sandboxed(sandbox, argv, data,
                                ["--rootfs", root, "--overlay", "none", "--file-access", "shared",
                                 "--env", "PATH=/bin"], cwd="/data")
    assert code == 0, err
    assert got == want


def _dir_changes(d):
    """Changes to the directory a file is in: replaced, removed, made again."""
    def write(text):
        with open(os.path.join(d, "d", "a"), "w") as f:
            f.write(text)
    return [
        lambda: None,
        lambda: (os.rename(os.path.join(d, "d"), os.path.join(d, "old")),
                 os.mkdir(os.path.join(d, "d")), write("in the new directory\n")),
        lambda: (os.unlink(os.path.join(d, "d", "a")), os.rmdir(os.path.join(d, "d"))),
        lambda: (os.mkdir(os.path.join(d, "d")), write("again\n")),
    ]


def test_shared_volume_sees_a_directory_replaced(sandbox, workdir, build_c):
    """The directory on the path is renamed away and another made in its
    place, then removed, then made again: each look follows the host."""
    probe = build_c(os.path.join(TESTS_DIR, "c", "watch_file.c"))
    dirs = []
    for name in ("native", "vol"):
        d = _fresh(workdir, name)
        os.mkdir(os.path.join(d, "d"))
        os.rename(os.path.join(d, "a"), os.path.join(d, "d", "a"))
        dirs.append(d)
    want, code = _native([probe, "d/a"], dirs[0], _dir_changes)
    assert code == 0
    got, code, err = _sandboxed(sandbox, [probe, MNT + "/d/a"], dirs[1],
                                ["-v", dirs[1] + ":" + MNT], changes=_dir_changes)
    assert code == 0, err
    assert got == want
    assert want[1] == b"size 21 read in the new directory\nmmap in the new directory\n"
    assert want[2] == b"stat No such file or directory\n"


def _exec_changes(d):
    """A program rewritten in place (same inode: the page cache's old copy
    must go), then replaced by another file."""
    prog = os.path.join(d, "prog")
    return [
        lambda: None,
        lambda: shutil.copyfile("/bin/false", prog),
        lambda: (shutil.copyfile("/bin/true", prog + ".new"), os.chmod(prog + ".new", 0o755),
                 os.replace(prog + ".new", prog)),
    ]


def test_shared_volume_execs_the_programs_current_contents(sandbox, workdir, busybox):
    argv = [busybox, "sh", "-c", "while read step; do ./prog; echo $?; echo END; done"]
    dirs = []
    for name in ("native", "vol"):
        d = _fresh(workdir, name)
        shutil.copy("/bin/true", os.path.join(d, "prog"))
        dirs.append(d)
    want, code = _native(argv, dirs[0], _exec_changes)
    assert code == 0 and want == [b"0\n", b"1\n", b"0\n"]
    got, code, err = _sandboxed(sandbox, argv, dirs[1], ["-v", dirs[1] + ":" + MNT],
                                changes=_exec_changes)
    assert code == 0, err
    assert got == want
