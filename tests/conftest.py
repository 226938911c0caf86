"""Shared fixtures for tests that run real programs in a sandbox.

The sandbox is invoked the way a user does: a subprocess running
``python -m pyvisor run [OPTIONS] -- PROGRAM [ARGS...]``.

Two facts about the sandbox shape these fixtures:

- ``workdir`` is a directory below ``/var/tmp``, which the Gofer serves from
  the host root, so the tests do not depend on how the sandbox's ``/tmp``
  is set up.
- Every run must leave no stub or Gofer process behind. The test process
  makes itself a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER), so any
  process a run leaves behind is re-parented to us when ``pyvisor`` exits,
  and ``SandboxRunner`` can find it exactly, without guessing from names
  (other people may be running sandboxes on this machine at the same time).
"""

import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

# The tests' own files (C probes in c/, scripts in py/) and the repository
# around them, wherever a test module sits below tests/.
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)

PR_SET_CHILD_SUBREAPER = 36
BUSYBOX = "/bin/busybox"
# The pyvisor these tests exercise is the one they import. Installed (as CI
# and users have it), the sandbox runs through its console script, from
# outside any source tree, with no PYTHONPATH: as a user types it. From a
# source tree with in-place extensions (development), PYTHONPATH names that
# tree, so that `python -m pyvisor` runs the same code and not an older
# installed copy.
_PKG_DIR = os.path.dirname(os.path.abspath(importlib.util.find_spec("pyvisor").origin))
SOURCE_TREE = os.path.exists(os.path.join(os.path.dirname(_PKG_DIR), "setup.py"))


def _console_script():
    near = os.path.join(os.path.dirname(sys.executable), "pyvisor")
    return near if os.access(near, os.X_OK) else shutil.which("pyvisor")


PYVISOR = ([sys.executable, "-m", "pyvisor"] if SOURCE_TREE or _console_script() is None
           else [_console_script()])
# A fixed environment, so sandbox and native runs see the same one.
# PYVISOR_STRICT_IMPORTS: a module the confined Sentry imports without
# having loaded it first fails the run (pyvisor/sentry/confined_imports.py).
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C", "PYVISOR_STRICT_IMPORTS": "1"}
if SOURCE_TREE:
    BASE_ENV["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(_PKG_DIR)]
        + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))


def _set_subreaper(on):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _children(parent=None):
    """Map pid -> (state, comm, cmdline) of the processes whose parent is
    ``parent`` (default: us), in the order they started."""
    me, found = parent or os.getpid(), {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").strip()
        except OSError:
            continue        # exited while we looked
        comm = stat[stat.index(b"(") + 1:stat.rindex(b")")]
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[1]) == me:
            start = int(fields[19])
            found[int(name)] = (start, (fields[0].decode(), comm.decode(),
                                        cmdline.decode(errors="replace")))
    return {pid: info for pid, (_start, info) in sorted(found.items(), key=lambda kv: kv[1][0])}


children_of = _children


def end_process(proc):
    """Kill proc if it still runs, reap it and close its pipes (a test's finally)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


class SandboxRunner:
    """Runs programs under ``pyvisor run`` and natively, and checks for leaks."""

    env = BASE_ENV

    def __init__(self, platform="ptrace"):
        self.platform = platform

    @staticmethod
    def children():
        """The pids of our current children (pass to assert_no_leftovers)."""
        return set(_children())

    def command(self, argv, options=()):
        return [*PYVISOR, "run", "--platform", self.platform, *options, "--", *argv]

    def run(self, argv, options=(), input=b"", env=None, cwd="/", timeout=60):
        """Run argv in a sandbox; returns CompletedProcess with bytes output.

        cwd is "/" unless given, so a run does not depend on where pytest was
        started (a caller's cwd below /tmp does not exist in the sandbox).
        Asserts that the run left no process behind.
        """
        before = set(_children())
        proc = subprocess.run(self.command(argv, options), input=input, capture_output=True,
                              env=BASE_ENV if env is None else env, cwd=cwd, timeout=timeout)
        self.assert_no_leftovers(before)
        return proc

    def popen(self, argv, options=(), **kwargs):
        kwargs.setdefault("env", BASE_ENV)
        kwargs.setdefault("cwd", "/")
        return subprocess.Popen(self.command(argv, options), **kwargs)

    @staticmethod
    def native(argv, input=b"", env=None, cwd="/", timeout=60):
        return subprocess.run(argv, input=input, capture_output=True,
                              env=BASE_ENV if env is None else env, cwd=cwd, timeout=timeout)

    @staticmethod
    def assert_no_leftovers(before, grace=3.0):
        """Wait up to `grace` s for processes re-parented to us since `before`
        (a set of pids) to exit; reap them; fail naming any that remain."""
        deadline = time.monotonic() + grace
        while True:
            alive = {}
            for pid, info in _children().items():
                if pid in before:
                    continue
                if info[0] == "Z":
                    os.waitpid(pid, os.WNOHANG)     # an orphan that died: reap it
                else:
                    alive[pid] = info
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for pid in alive:                           # don't leave them to the next test
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert not alive, "processes left behind by the run: %r" % alive


@pytest.fixture(scope="module", params=["ptrace", "kvm"])
def sandbox(request):
    """A SandboxRunner for each platform; the test process is a subreaper while
    the module runs (only then, so orphans of other tests' processes still go
    to init). The kvm runs skip, with the reason, where KVM cannot run."""
    if request.param == "kvm":
        from pyvisor.platform import kvm_usable
        ok, why = kvm_usable()
        if not ok:
            pytest.skip("kvm platform: " + why)
    _set_subreaper(True)
    yield SandboxRunner(request.param)
    _set_subreaper(False)


@pytest.fixture
def workdir():
    """A fresh directory that is visible inside the sandbox (not below /tmp)."""
    base = "/var/tmp" if os.access("/var/tmp", os.W_OK) else os.path.expanduser("~")
    path = tempfile.mkdtemp(prefix="pyvisor-test-", dir=base)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox():
    if not os.access(BUSYBOX, os.X_OK):
        pytest.skip("%s not installed (Debian package busybox-static)" % BUSYBOX)
    return BUSYBOX


@pytest.fixture(scope="session")
def build_c():
    """build_c(src_path, static=True, extra=()) -> path of the built program.

    Programs are built below /var/tmp so the sandbox can see them."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed")
    outdir = tempfile.mkdtemp(prefix="pyvisor-cbuild-", dir="/var/tmp")

    def build(src, static=True, extra=()):
        name = os.path.splitext(os.path.basename(src))[0] + ("-static" if static else "-dyn")
        out = os.path.join(outdir, name)
        if not os.path.exists(out):
            cmd = [gcc, "-O1", "-Wall", "-o", out, src, *extra] + (["-static"] if static else [])
            subprocess.run(cmd, check=True, capture_output=True)
        return out

    yield build
    shutil.rmtree(outdir, ignore_errors=True)


# --- an ordinary user (rootless runs) -----------------------------------------

NOBODY = 65534


@pytest.fixture(scope="session")
def nobody_tree(tmp_path_factory):
    """A copy of the pyvisor these tests import (installed or built in
    place) where uid 65534 can read it: an installed copy may sit below a
    home directory closed to other users (/root)."""
    import pyvisor
    base = tempfile.mkdtemp(prefix="pyvisor-nobody-", dir="/var/tmp")
    shutil.copytree(os.path.dirname(os.path.abspath(pyvisor.__file__)),
                    os.path.join(base, "pyvisor"), ignore=shutil.ignore_patterns("__pycache__"))
    for d, _dirs, _files in os.walk(base):
        os.chmod(d, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def as_nobody(tree):
    """A command prefix that runs as uid/gid 65534, and an interpreter that
    user can run with the pyvisor in ``tree``."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv(1) to become an ordinary user")
    prefix = [setpriv, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
    for py in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(prefix + ["env", "PYTHONPATH=" + tree, py, "-c",
                                         "import pyvisor._fastpath"],
                               capture_output=True, cwd="/")
        if probe.returncode == 0:
            return prefix, py
    pytest.skip("no Python that uid %d can run with this tree's extensions" % NOBODY)


def kvm_for_nobody(sandbox):
    if sandbox.platform == "kvm":
        st = os.stat("/dev/kvm")
        if not st.st_mode & 0o006:
            pytest.skip("/dev/kvm is not open to uid %d (kvm needs the kvm group or an ACL)"
                        % NOBODY)


@pytest.fixture(autouse=True, scope="session")
def _neutral_cwd(tmp_path_factory):
    """Run every test outside the source tree.

    CI installs the package and runs pytest from the checkout, whose
    ``pyvisor/`` has no compiled extensions: a ``python -m pyvisor…``
    subprocess started there would import that copy and fail.
    """
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(old)
