"""Every pyvisor process is confined as gVisor confines its own (DESIGN.md, invariant 6).

While a program sleeps in the sandbox, the test reads /proc of each
process of the run (found as descendants of the `pyvisor run` process):
the Sentry, the Gofer and, on ptrace, each stub.

What "no capabilities on the host" means here, precisely: each process is
in a user namespace other than the host's (the test's own), so whatever
capabilities it holds act only in that namespace and its descendants
(user_namespaces(7)); and in that namespace its effective and permitted
sets are empty (the Gofer's hold CAP_DAC_READ_SEARCH alone), so it holds
none there either. /proc/PID/status shows the sets relative to the
process's own namespace, which is why both checks are needed.
"""

import os
import select
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import NOBODY, TESTS_DIR, as_nobody, end_process, kvm_for_nobody

HERE = TESTS_DIR
NAMESPACES = ("user", "pid", "mnt", "ipc", "uts", "net")
CAP_DAC_READ_SEARCH = 1 << 2
ST_RDONLY = 1


def _status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def _ppid_and_comm(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        stat = f.read()
    comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode()
    return int(stat[stat.rindex(b")") + 2:].split()[1]), comm


def _descendants(root):
    """{pid: (ppid, comm, cmdline)} of every live descendant of root."""
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                ppid, comm = _ppid_and_comm(int(name))
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            procs[int(name)] = (ppid, comm, cmd)
    found, frontier = {}, {root}
    while frontier:
        kids = {p for p, (pp, _, _) in procs.items() if pp in frontier and p not in found}
        for p in kids:
            found[p] = procs[p]
        frontier = kids
    return found


def _roles(runner_pid):
    """The Sentry, the Gofer and the stubs of one run: (sentry, gofer, [stubs])."""
    procs = _descendants(runner_pid)
    sentries = [p for p, (pp, _, _) in procs.items() if pp == runner_pid]
    assert len(sentries) == 1, procs
    sentry = sentries[0]
    gofers = [p for p, (pp, _, cmd) in procs.items() if pp == sentry and "pyvisor.gofer" in cmd]
    assert len(gofers) == 1, procs
    stubs = [p for p, (_, comm, _) in procs.items() if comm == "_stub"]
    return sentry, gofers[0], stubs


def _wait_ready(proc, timeout=30):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready and proc.stdout.readline() == b"ready\n", proc.stderr.read() if proc.poll() else ""


def _check_confined(pid, role, served_root, caps=0):
    """The assertions of the module's docstring for one process."""
    for ns in NAMESPACES:
        assert os.readlink("/proc/%d/ns/%s" % (pid, ns)) != os.readlink("/proc/self/ns/" + ns), \
            "%s %d shares the host's %s namespace" % (role, pid, ns)
    st = _status(pid)
    assert st["NoNewPrivs"] == "1", (role, st)
    assert int(st["CapEff"], 16) == caps, (role, st["CapEff"])
    assert int(st["CapPrm"], 16) == caps, (role, st["CapPrm"])
    assert int(st["CapAmb"], 16) == 0, (role, st["CapAmb"])
    root = "/proc/%d/root" % pid
    if served_root is None:
        # An empty, read-only file system of its own: nothing to find, nothing to make.
        assert os.listdir(root) == [], (role, os.listdir(root))
        assert os.stat(root).st_dev != os.stat("/").st_dev
        assert os.statvfs(root).f_flag & ST_RDONLY
    else:
        assert os.path.samestat(os.stat(root), os.stat(served_root)), role
    return st


def _sentry_caps(platform):
    """CAP_SYS_PTRACE under Yama's ptrace_scope 2 on ptrace (confine.sentry_capabilities), else none."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = int(f.read())
    except OSError:
        scope = 0
    return 1 << 19 if platform == "ptrace" and scope == 2 else 0


def _check_no_host_proc(pid, role):
    """No fd of the process leads into the host's procfs (whose ``..`` would reach every host process)."""
    host_proc = os.stat("/proc").st_dev
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            st = os.stat(os.path.join(fd_dir, fd))
        except OSError:
            continue
        assert st.st_dev != host_proc, (role, fd, os.readlink(os.path.join(fd_dir, fd)))


def _confined_run(command, env, sleeper, served_root, stubs_expected, sentry_caps=0):
    """Start a sleeping program, check every process of the run, end it with SIGTERM."""
    proc = subprocess.Popen(command + [sleeper, "30"], env=env, cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_ready(proc)
        sentry, gofer, stubs = _roles(proc.pid)
        st = _check_confined(sentry, "Sentry", None, caps=sentry_caps)
        assert st["Seccomp"] == "2"
        assert int(st["CapBnd"], 16) == sentry_caps
        assert st["NSpid"].split()[-1] == "1", "the Sentry is not its pid namespace's init"
        st = _check_confined(gofer, "Gofer", served_root, caps=CAP_DAC_READ_SEARCH)
        assert st["Seccomp"] == "2"
        _check_no_host_proc(gofer, "Gofer")
        _check_no_host_proc(sentry, "Sentry")
        assert int(st["CapBnd"], 16) == CAP_DAC_READ_SEARCH
        assert bool(stubs) == stubs_expected, stubs
        for p in stubs:
            st = _check_confined(p, "stub", None)
            assert int(st["CapBnd"], 16) == 0
            assert st["Seccomp"] == "2" and st["Seccomp_filters"] == "1"   # seccomp.stub_filter
        # All in one set of namespaces.
        ns = {os.readlink("/proc/%d/ns/pid" % p) for p in [sentry, gofer] + stubs}
        assert len(ns) == 1
        proc.send_signal(signal.SIGTERM)       # passed on by `pyvisor run` to the program
        out, err = proc.communicate(timeout=30)
    finally:
        end_process(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert b"woke" not in out


def test_every_process_is_confined(sandbox, build_c):
    sleeper = build_c(os.path.join(HERE, "c", "sleeper.c"), static=True)
    before = sandbox.children()
    _confined_run(sandbox.command([]), sandbox.env, sleeper, "/",
                  sandbox.platform == "ptrace", _sentry_caps(sandbox.platform))
    sandbox.assert_no_leftovers(before)


def test_gofer_root_is_the_rootfs(sandbox, build_c, workdir):
    rootfs = os.path.join(workdir, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    sleeper = build_c(os.path.join(HERE, "c", "sleeper.c"), static=True)
    shutil.copy(sleeper, os.path.join(rootfs, "bin", "sleeper"))
    before = sandbox.children()
    _confined_run(sandbox.command([], options=["--rootfs", rootfs]), sandbox.env,
                  "/bin/sleeper", rootfs, sandbox.platform == "ptrace", _sentry_caps(sandbox.platform))
    sandbox.assert_no_leftovers(before)


def test_program_still_sees_root_pid_1_and_host_files(sandbox, workdir):
    path = os.path.join(workdir, "note")
    with open(path, "wb") as f:
        f.write(b"served by the Gofer\n")
    os.chmod(path, 0o600)
    out = sandbox.run(["/bin/sh", "-c", 'echo $$; id -u; id -g; cat "$0"', path])
    assert (out.returncode, out.stdout) == (0, b"1\n0\n0\nserved by the Gofer\n"), out.stderr


# -- rootless: the same, run by an ordinary user -------------------------------------


def _rootless_command(sandbox, py, options=()):
    return [py, "-m", "pyvisor", "run", "--platform", sandbox.platform, *options, "--"]


def test_rootless_run(sandbox, workdir, nobody_tree):
    prefix, py = as_nobody(nobody_tree)
    kvm_for_nobody(sandbox)
    os.chmod(workdir, 0o755)
    path = os.path.join(workdir, "note")
    with open(path, "wb") as f:
        f.write(b"readable by all\n")
    os.chmod(path, 0o644)
    env = dict(sandbox.env, PYTHONPATH=nobody_tree)
    before = sandbox.children()
    out = subprocess.run(prefix + _rootless_command(sandbox, py) +
                         ["/bin/sh", "-c", 'echo $$; id -u; cat "$0"; cat /etc/shadow', path],
                         env=env, cwd="/", capture_output=True, timeout=60)
    sandbox.assert_no_leftovers(before)
    # uid 0 in the sandbox, but the host's /etc/shadow stays the host's: not ours to read.
    assert out.stdout == b"1\n0\nreadable by all\n", out.stderr
    assert b"Permission denied" in out.stderr
    assert out.returncode == 1


def test_rootless_every_process_is_confined(sandbox, build_c, nobody_tree):
    prefix, py = as_nobody(nobody_tree)
    kvm_for_nobody(sandbox)
    sleeper = build_c(os.path.join(HERE, "c", "sleeper.c"), static=True)
    os.chmod(os.path.dirname(sleeper), 0o755)
    env = dict(sandbox.env, PYTHONPATH=nobody_tree)
    before = sandbox.children()
    proc = subprocess.Popen(prefix + _rootless_command(sandbox, py) + [sleeper, "30"], env=env,
                            cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_ready(proc)
        sentry, gofer, stubs = _roles(proc.pid)
        for p in [sentry, gofer] + stubs:
            with open("/proc/%d/uid_map" % p) as f:
                assert f.read().split() == ["0", str(NOBODY), "1"]
            assert _status(p)["Uid"].split() == [str(NOBODY)] * 4
        _check_confined(sentry, "Sentry", None, caps=_sentry_caps(sandbox.platform))
        _check_confined(gofer, "Gofer", "/", caps=CAP_DAC_READ_SEARCH)
        _check_no_host_proc(gofer, "Gofer")
        for p in stubs:
            _check_confined(p, "stub", None)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        end_process(proc)
    sandbox.assert_no_leftovers(before)
    assert proc.returncode == 128 + signal.SIGTERM


def test_root_maps_every_id_to_itself(sandbox, build_c):
    """As root, ids are mapped unchanged: files keep their owners in the sandbox."""
    if os.geteuid() != 0:
        pytest.skip("runs as root")
    sleeper = build_c(os.path.join(HERE, "c", "sleeper.c"), static=True)
    before = sandbox.children()
    proc = sandbox.popen([sleeper, "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_ready(proc)
        sentry, _, _ = _roles(proc.pid)
        with open("/proc/%d/uid_map" % sentry) as f:
            assert f.read().split() == ["0", "0", "4294967295"]
        with open("/proc/%d/gid_map" % sentry) as f:
            assert f.read().split() == ["0", "0", "4294967295"]
    finally:
        proc.kill()         # the Sentry dies with it (PR_SET_PDEATHSIG), and the rest with the Sentry
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    sandbox.assert_no_leftovers(before)


def test_refused_user_namespace_is_one_line(sandbox):
    """Where user namespaces are refused, pyvisor says so and runs nothing (exit 71).

    A user namespace's own limit on nested ones is set to 0 (user.max_user_namespaces
    is per namespace), so the host's setting is untouched."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) not installed")
    inner = "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\""
    out = subprocess.run([unshare, "--user", "--map-root-user", "sh", "-c", inner, "sh"]
                         + sandbox.command(["/bin/echo", "ran"]),
                         env=sandbox.env, cwd="/", capture_output=True, timeout=60)
    if out.returncode != 71 and b"max_user_namespaces" in out.stderr:
        pytest.skip("cannot lower user.max_user_namespaces here: %r" % out.stderr)
    assert out.returncode == 71, out
    assert out.stdout == b""
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyvisor: cannot create a user namespace"), lines


@pytest.mark.parametrize("how", ["kill", "killpg"])
def test_a_signal_sent_from_outside_arrives_once(sandbox, build_c, how):
    """`pyvisor run` relays a signal sent to it; a kill of its whole process
    group also reaches the Sentry directly. The program sees it once, as
    natively (the relayed copy is a real-time signal, never merged)."""
    prog = build_c(os.path.join(HERE, "c", "sigcount.c"), static=True)
    before = sandbox.children()
    for argv in ([prog, "1"], sandbox.command([prog, "1"])):
        proc = subprocess.Popen(argv, env=sandbox.env, cwd="/", stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            _wait_ready(proc)
            (os.killpg if how == "killpg" else os.kill)(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            end_process(proc)
        assert (proc.returncode, out) == (0, b"count 1\n"), (argv[0], err)
    sandbox.assert_no_leftovers(before)


def test_sentry_memory_is_closed_to_its_namespace(sandbox, build_c):
    """A process in the sandbox's user namespace with the Gofer's ids and no
    capabilities (what a compromised Gofer is) cannot open the Sentry's
    /proc/PID/mem: the Sentry is not dumpable. A stub's it can (the control:
    a stub must stay dumpable to be traced by a Sentry without capabilities)."""
    nsenter, setpriv = shutil.which("nsenter"), shutil.which("setpriv")
    if os.geteuid() != 0 or nsenter is None or setpriv is None:
        pytest.skip("needs root, nsenter(1) and setpriv(1)")
    sleeper = build_c(os.path.join(HERE, "c", "sleeper.c"), static=True)
    before = sandbox.children()
    proc = sandbox.popen([sleeper, "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_ready(proc)
        sentry, gofer, stubs = _roles(proc.pid)
        probe = ("import sys\n"
                 "for pid in sys.argv[1:]:\n"
                 "    try:\n"
                 "        open('/proc/%s/mem' % pid, 'rb').close(); print(pid, 'open')\n"
                 "    except PermissionError:\n"
                 "        print(pid, 'denied')\n")
        out = subprocess.run([nsenter, "-t", str(sentry), "-U", setpriv, "--bounding-set", "-all",
                              "--inh-caps", "-all", "--", sys.executable, "-S", "-c", probe,
                              str(sentry)] + [str(p) for p in stubs[:1]],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        expect = ["%d denied" % sentry] + ["%d open" % p for p in stubs[:1]]
        assert out.stdout.split("\n")[:-1] == expect, out
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    sandbox.assert_no_leftovers(before)
