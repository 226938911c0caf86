"""Locks on files in a volume reach the host (through Tlock/Tgetlock to the
Gofer): a host process holding a POSIX lock makes the sandbox's F_SETLK
fail with EAGAIN, F_GETLK report it, F_SETLKW and flock(2) wait until the
host releases it; two sandboxes sharing a volume exclude each other.

flock(2) in the sandbox is a whole-file lock on the host (as Linux's 9p
and NFS clients make it), so a host process's lockf meets it; a host
process's own flock(2) does not (on the host, flock and fcntl locks are
independent, as with NFS).
"""

import errno
import fcntl
import os
import subprocess
import time

MNT = "/mnt/vol"
PYTHON3 = "/usr/bin/python3"

def _reap(p):
    """Kill a sandbox a failed test left running."""
    if p.poll() is None:
        p.kill()
        p.wait()


SANDBOXED = r"""
import errno, fcntl, os, signal, struct, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
def setlk(cmd, type_, start=0, length=0):
    return fcntl.fcntl(fd, cmd, struct.pack("hhqqi4x", type_, 0, start, length, 0))
try:
    setlk(fcntl.F_SETLK, fcntl.F_WRLCK)
    print("setlk granted")
except OSError as e:
    print("setlk", errno.errorcode[e.errno])
try:
    setlk(fcntl.F_SETLK, fcntl.F_RDLCK, 200, 10)
    print("read lock past the host's range granted")
except OSError as e:
    print("read lock past", errno.errorcode[e.errno])
setlk(fcntl.F_SETLK, fcntl.F_UNLCK)
t, w, s, l, pid = struct.unpack("hhqqi4x", setlk(fcntl.F_GETLK, fcntl.F_WRLCK))
print("getlk", {0: "F_RDLCK", 1: "F_WRLCK", 2: "F_UNLCK"}[t], s, l, pid)
fd2 = os.open(path, os.O_RDWR)
try:
    fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("flock granted")
except OSError as e:
    print("flock", errno.errorcode[e.errno])
sys.stdout.flush()
class Alarm(Exception):
    pass
def on_alarm(*_):
    raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
t0 = time.monotonic()
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    setlk(fcntl.F_SETLKW, fcntl.F_WRLCK)
    print("setlkw not interrupted")
except Alarm:
    print("setlkw interrupted by a signal")
setlk(fcntl.F_SETLKW, fcntl.F_WRLCK)
print("setlkw waited", time.monotonic() - t0 > 0.6)
setlk(fcntl.F_SETLK, fcntl.F_UNLCK)
fcntl.flock(fd2, fcntl.LOCK_EX)
print("flock granted after", flush=True)
sys.stdin.readline()          # the host tries the file while the flock is held
"""


def test_host_lock_excludes_sandbox(sandbox, workdir):
    vol = os.path.join(workdir, "vol")
    os.mkdir(vol)
    path = os.path.join(vol, "f")
    with open(path, "wb") as f:
        f.write(b"x" * 100)
    script = os.path.join(vol, "probe.py")
    with open(script, "w") as f:
        f.write(SANDBOXED)
    held = os.open(path, os.O_RDWR)
    fcntl.lockf(held, fcntl.LOCK_EX, 100, 0)         # bytes 0..99, POSIX, by this process
    p = sandbox.popen([PYTHON3, MNT + "/probe.py", MNT + "/f"],
                      options=["-v", "%s:%s" % (vol, MNT)],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = [p.stdout.readline().decode() for _ in range(4)]
        time.sleep(1.0)                               # the sandbox waits in F_SETLKW
        fcntl.lockf(held, fcntl.LOCK_UN, 100, 0)
        first += [p.stdout.readline().decode() for _ in range(3)]
        # the sandbox's flock is a whole-file lock on the host: a host
        # process's lockf of any byte is refused while it is held
        try:
            fcntl.lockf(held, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 50)
            refused = None
        except OSError as e:
            refused = e.errno
        out, err = p.communicate(b"\n", timeout=120)
    finally:
        os.close(held)
        _reap(p)
    assert p.returncode == 0, err.decode()
    assert refused == errno.EAGAIN, refused
    assert "".join(first).splitlines() + out.decode().splitlines() == [
        "setlk EAGAIN",
        "read lock past the host's range granted",
        "getlk F_WRLCK 0 100 0",   # the holder is outside: pid 0 (fs/locks.c locks_translate_pid)
        "flock EAGAIN",
        "setlkw interrupted by a signal",
        "setlkw waited True",
        "flock granted after",
    ], err.decode()
    # Every lock went with the sandbox: the host can take the file whole.
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


APPENDER = r"""
import fcntl, os, sys, time
path, who, use_flock = sys.argv[1], sys.argv[2], sys.argv[3] == "flock"
fd = os.open(path, os.O_RDWR)
# both start together, so that their appends interleave: the host holds
# the gate until both wait for it
gate = os.open(os.path.join(os.path.dirname(path), "gate"), os.O_RDONLY)
print("ready", flush=True)
fcntl.lockf(gate, fcntl.LOCK_SH)
for i in range(200):
    if use_flock:
        fcntl.flock(fd, fcntl.LOCK_EX)
    else:
        fcntl.lockf(fd, fcntl.LOCK_EX)
    # read-modify-write at the end, not O_APPEND: only the lock keeps the
    # two sandboxes from writing over each other's lines
    end = os.lseek(fd, 0, os.SEEK_END)
    os.pwrite(fd, b"%s %03d\n" % (who.encode(), i), end)
    if use_flock:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
    time.sleep(0.002)     # room for the other, which polls the host
"""


def _two_sandboxes(sandbox, workdir, kind):
    vol = os.path.join(workdir, "vol-" + kind)
    os.mkdir(vol)
    path = os.path.join(vol, "log")
    open(path, "wb").close()
    with open(os.path.join(vol, "append.py"), "w") as f:
        f.write(APPENDER)
    gate = os.path.join(vol, "gate")
    open(gate, "wb").close()
    held = os.open(gate, os.O_RDWR)
    fcntl.lockf(held, fcntl.LOCK_EX)
    procs = [sandbox.popen([PYTHON3, MNT + "/append.py", MNT + "/log", who, kind],
                           options=["-v", "%s:%s" % (vol, MNT)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for who in ("a", "b")]
    try:
        for p in procs:
            assert p.stdout.readline() == b"ready\n", p.stderr.read().decode()
        time.sleep(0.3)
        fcntl.lockf(held, fcntl.LOCK_UN)
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err.decode()
    finally:
        os.close(held)
        for p in procs:
            _reap(p)
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == 400
    # they did run together (else nothing was excluded)
    switches = sum(1 for x, y in zip(lines, lines[1:]) if x[:1] != y[:1])
    assert switches >= 1, switches
    for who in (b"a", b"b"):
        assert [ln for ln in lines if ln.startswith(who + b" ")] == \
            [b"%s %03d" % (who, i) for i in range(200)]


def test_two_sandboxes_exclude_each_other_posix(sandbox, workdir):
    _two_sandboxes(sandbox, workdir, "lockf")


def test_two_sandboxes_exclude_each_other_flock(sandbox, workdir):
    _two_sandboxes(sandbox, workdir, "flock")


RO_PROBE = r"""
import errno, fcntl, os
fd = os.open("/mnt/vol/f", os.O_RDONLY)
fcntl.lockf(fd, fcntl.LOCK_SH)
print("shared lock granted")
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("flock LOCK_EX granted")
except OSError as e:
    print("flock LOCK_EX", errno.errorcode[e.errno])
"""


def test_read_only_volume_locks(sandbox, workdir):
    """On a :ro volume the host file is open read-only: shared locks are
    taken, an exclusive flock is EBADF (a whole-file write lock on the host,
    which needs a writable file: as flock(2) over NFS)."""
    vol = os.path.join(workdir, "ro")
    os.mkdir(vol)
    with open(os.path.join(vol, "f"), "wb") as f:
        f.write(b"data")
    with open(os.path.join(vol, "probe.py"), "w") as f:
        f.write(RO_PROBE)
    r = sandbox.run([PYTHON3, MNT + "/probe.py"], options=["-v", "%s:%s:ro" % (vol, MNT)],
                    timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"shared lock granted\nflock LOCK_EX EBADF\n"


UNION_PROBE = r"""
import fcntl, os, struct, sys
F_OFD_SETLK = 37
fds = [os.open("/mnt/vol/f", os.O_RDWR) for _ in range(3)]
def ofd(i, type_, start, length):
    fcntl.fcntl(fds[i], F_OFD_SETLK, struct.pack("hhqqi4x", type_, 0, start, length, 0))
def step(msg):
    print(msg, flush=True)
    sys.stdin.readline()
ofd(0, fcntl.F_RDLCK, 0, 10)
ofd(1, fcntl.F_RDLCK, 5, 10)
ofd(2, fcntl.F_WRLCK, 20, 10)
step("held")
ofd(0, fcntl.F_UNLCK, 0, 10)          # [5, 15) stays: the other description holds it
step("one reader gone")
ofd(1, fcntl.F_UNLCK, 0, 0)
ofd(2, fcntl.F_RDLCK, 20, 10)         # a downgrade, which the host cannot refuse
step("downgraded")
"""


def _host_view(fd):
    """For bytes 2, 7, 12, 17, 25: "w" if the host may write-lock it, "r" if
    only read-lock, "-" if neither."""
    out = ""
    for b in (2, 7, 12, 17, 25):
        for kind, mark in ((fcntl.LOCK_EX, "w"), (fcntl.LOCK_SH, "r")):
            try:
                fcntl.lockf(fd, kind | fcntl.LOCK_NB, 1, b)
            except OSError:
                continue
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, b)
            out += mark
            break
        else:
            out += "-"
    return out


def test_the_host_holds_the_union_of_the_sandbox_locks(sandbox, workdir):
    """Several descriptions' overlapping locks in one sandbox: the host holds
    their union, and an unlock by one keeps what another still holds."""
    vol = os.path.join(workdir, "union")
    os.mkdir(vol)
    with open(os.path.join(vol, "f"), "wb") as f:
        f.write(b"z" * 64)
    with open(os.path.join(vol, "probe.py"), "w") as f:
        f.write(UNION_PROBE)
    p = sandbox.popen([PYTHON3, MNT + "/probe.py"], options=["-v", "%s:%s" % (vol, MNT)],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fd = os.open(os.path.join(vol, "f"), os.O_RDWR)
    seen = []
    try:
        for _ in range(3):
            line = p.stdout.readline().decode().strip()
            seen.append((line, _host_view(fd)))
            p.stdin.write(b"\n")
            p.stdin.flush()
        _, err = p.communicate(timeout=120)
        seen.append(("exited", _host_view(fd)))
    finally:
        os.close(fd)
        _reap(p)
    assert p.returncode == 0, err.decode()
    assert seen == [("held", "rrrw-"), ("one reader gone", "wrrw-"),
                    ("downgraded", "wwwwr"), ("exited", "wwwww")], err.decode()


def test_root_locks_stay_in_the_sandbox(sandbox, workdir):
    """The root's files (here with --read-only: the Gofer's tree itself)
    are locked in the sandbox only: an exclusive flock of a read-only fd is
    granted as on a local file system, and a host holder does not meet it."""
    path = os.path.join(workdir, "rootfile")
    with open(path, "wb") as f:
        f.write(b"data")
    held = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(held, fcntl.LOCK_EX)
        r = sandbox.run([PYTHON3, "-c", "import fcntl, os; fd = os.open(%r, os.O_RDONLY); "
                         "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('granted')" % path],
                        options=["--read-only"], timeout=120)
    finally:
        os.close(held)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"granted\n"
