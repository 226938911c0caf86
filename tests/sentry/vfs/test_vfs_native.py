"""Differential test: the same file-system operations natively on a host
temp dir and through our syscall handlers on the sandbox's /tmp tmpfs.
Results (return value or errno) must be the same. Linux is the spec."""

import ctypes
import errno
import os

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.syscalls.table import ROWS
from pyvisor.sentry.vfs.testing import make_env

MASK = (1 << 64) - 1
HANDLERS = {r.name: r.handler for r in ROWS}
libc = ctypes.CDLL(None, use_errno=True)

# (syscall name, args) where "P:..." is a path under the test root and "B" an output buffer.
OPS = [
    ("mkdir", "P:d", 0o755), ("mkdir", "P:d", 0o755), ("mkdir", "P:d/", 0o755),
    ("mkdir", "P:nope/x", 0o755), ("mkdir", "P:d/.", 0o755), ("mkdir", "P:d/..", 0o755),
    ("open", "P:f", os.O_CREAT | os.O_WRONLY, 0o644), ("open", "P:f", os.O_CREAT | os.O_EXCL, 0o644),
    ("open", "P:f/", os.O_RDONLY, 0), ("open", "P:f/", os.O_CREAT, 0o644),
    ("open", "P:g/", os.O_CREAT, 0o644), ("open", "P:d", os.O_WRONLY, 0),
    ("open", "P:d", os.O_RDONLY | os.O_CREAT, 0o644), ("open", "P:f", os.O_DIRECTORY, 0),
    ("open", "P:f", os.O_PATH | os.O_DIRECTORY, 0), ("open", "P:d", os.O_PATH | os.O_DIRECTORY, 0),
    ("open", "P:f/x", os.O_RDONLY, 0), ("open", "P:missing", os.O_RDONLY, 0),
    ("open", "P:d/../f", os.O_RDONLY, 0), ("open", "P:", os.O_RDONLY, 0),
    ("symlink", "T:f", "P:lf"), ("symlink", "T:d", "P:ld"), ("symlink", "T:nowhere", "P:dang"),
    ("symlink", "T:loop", "P:loop"), ("symlink", "T:f", "P:lf"), ("symlink", "T:x", "P:f"),
    ("open", "P:lf", os.O_RDONLY | os.O_NOFOLLOW, 0), ("open", "P:ld/", os.O_RDONLY, 0),
    ("open", "P:loop", os.O_RDONLY, 0), ("open", "P:loop/x", os.O_RDONLY, 0),
    ("open", "P:dang", os.O_RDONLY, 0), ("open", "P:dang", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600),
    ("open", "P:lf", os.O_CREAT | os.O_EXCL, 0o600), ("open", "P:ld", os.O_DIRECTORY, 0),
    ("open", "P:lf/", os.O_RDONLY, 0), ("open", "P:d/nested/deeper", os.O_CREAT | os.O_WRONLY, 0o600),
    ("open", "P:lf", os.O_PATH | os.O_NOFOLLOW, 0),
    ("open", "P:lf", os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, 0),
    ("open", "P:ld", os.O_PATH | os.O_DIRECTORY, 0),
    ("readlink", "P:lf", "B", 64), ("readlink", "P:f", "B", 64), ("readlink", "P:missing", "B", 64),
    ("readlink", "P:lf", "B", 0),
    ("unlink", "P:d"), ("unlink", "P:missing"), ("unlink", "P:f/"), ("unlink", "P:ld/"),
    ("rmdir", "P:f"), ("rmdir", "P:d/."), ("rmdir", "P:d/.."), ("rmdir", "P:ld"),
    ("link", "P:f", "P:hard"), ("link", "P:f", "P:hard"), ("link", "P:d", "P:hd"),
    ("link", "P:missing", "P:x"), ("link", "P:lf", "P:hardlink-to-link"),
    ("mkdir", "P:d/sub", 0o755), ("open", "P:d/sub/file", os.O_CREAT | os.O_WRONLY, 0o600),
    ("rename", "P:d", "P:d/sub/inside"), ("rename", "P:f", "P:d"), ("rename", "P:d", "P:f"),
    ("mkdir", "P:e", 0o755), ("rename", "P:e", "P:d"), ("rename", "P:missing", "P:z"),
    ("rename", "P:f", "P:f"), ("rename", "P:f", "P:hard"), ("rename", "P:f/", "P:z"),
    ("rename", "P:e", "P:e2/"), ("rename", "P:hard", "P:renamed"), ("rename", "P:d/.", "P:x"),
    ("rmdir", "P:d"), ("unlink", "P:d/sub/file"), ("rmdir", "P:d/sub"),
    ("truncate", "P:f", 10), ("truncate", "P:d", 10), ("truncate", "P:f", -1),
    ("truncate", "P:missing", 0),
    ("access", "P:f", 0), ("access", "P:f", 1), ("access", "P:d", 1), ("access", "P:f", 8),
    ("access", "P:missing", 0), ("chmod", "P:f", 0o755), ("access", "P:f", 1),
    ("chdir", "P:f"), ("chdir", "P:missing"),
    ("mknod", "P:fifo", 0o010644, 0), ("mknod", "P:fifo", 0o010644, 0),
    ("mknod", "P:bad", 0o170644, 0),
    ("open", "P:" + "x" * 256, os.O_RDONLY, 0), ("mkdir", "P:" + "y" * 255, 0o755),
    ("unlinkat", "D", "P:e", 0x200), ("unlinkat", "D", "P:f", 0x200),
    ("unlinkat", "D", "P:f", 0x1),
]


def run_native(root, ops=OPS):
    out = []
    buf = ctypes.create_string_buffer(256)
    for op in ops:
        name, args = op[0], []
        for a in op[1:]:
            if isinstance(a, str) and a.startswith("P:"):
                args.append(os.path.join(root, a[2:]).encode() + (b"/" if a.endswith("/") else b""))
            elif isinstance(a, str) and a.startswith("T:"):
                args.append(a[2:].encode())
            elif a == "B":
                args.append(buf)
            elif a == "D":
                args.append(-100)
            else:
                args.append(a)
        r = getattr(libc, name)(*args)
        e = ctypes.get_errno() if r < 0 else 0
        if name == "open" and r >= 0:
            os.close(r)
        out.append((name, "ok" if r >= 0 else errno.errorcode[e]))
        ctypes.set_errno(0)
    return out


def host_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def run_ours(root):
    """Returns (results, vfs, task) so the final state can be inspected."""
    k, vfs, t = make_env()
    vfs.mkdir(t, root, 0o755)
    return run_ours_in(t, root, OPS), vfs, t


def run_ours_in(t, root, ops):
    t.fs.umask = host_umask()
    out = []
    buf = t.alloc(256)
    for op in ops:
        name, args = op[0], []
        for a in op[1:]:
            if isinstance(a, str) and a.startswith("P:"):
                p = root + b"/" + a[2:].encode()
                args.append(t.cstr(p))
            elif isinstance(a, str) and a.startswith("T:"):
                args.append(t.cstr(a[2:].encode()))
            elif a == "B":
                args.append(buf)
            elif a == "D":
                args.append(-100)
            else:
                args.append(a)
        try:
            HANDLERS[name](t, *[x & MASK for x in args])
            res = "ok"
        except SyscallError as exc:
            res = errno.errorcode[exc.errno]
        out.append((name, res))
    return out


FINAL = ["d", "e2", "f", "lf", "ld", "dang", "renamed", "hardlink-to-link", "fifo",
         "y" * 255]


def _shape(mode, nlink, size, dir_nlink=True):
    # Directory sizes are filesystem-specific; everything else must agree.
    is_dir = mode & 0o170000 == 0o040000
    return (mode, nlink if dir_nlink or not is_dir else None, None if is_dir else size)


def test_same_results_as_linux(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    native = run_native(str(root))
    ours, vfs, t = run_ours(b"/tmp/root")
    for name in FINAL:
        try:
            h = os.lstat(root / name)
            host = _shape(h.st_mode, h.st_nlink, h.st_size)
        except FileNotFoundError:
            host = "ENOENT"
        try:
            st = vfs.stat(t, b"/tmp/root/" + name.encode(), follow=False)
            mine = _shape(st.st_mode, st.st_nlink, st.st_size)
        except SyscallError as e:
            mine = errno.errorcode[e.errno]
        assert mine == host, name
    diffs = [(i, OPS[i], n, o) for i, (n, o) in enumerate(zip(native, ours)) if n != o]
    assert not diffs, "\n".join("%d %r: linux %s, ours %s" % (i, op, n[1], o[1])
                                for i, op, n, o in diffs)


# --- the same against the overlay: lower files served by a real Gofer ----------

def seed(root):
    os.makedirs(os.path.join(root, "d", "sub"))
    os.mkdir(os.path.join(root, "e"))
    for rel, data in (("f", b"lower f"), ("d/sub/file", b"deep"), ("d/x", b"x")):
        with open(os.path.join(root, rel), "wb") as fh:
            fh.write(data)
    os.symlink("f", os.path.join(root, "lf"))
    os.symlink("d", os.path.join(root, "ld"))


OVERLAY_OPS = [
    ("open", "P:f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), ("unlink", "P:f"),
    ("open", "P:lf", os.O_RDONLY, 0), ("unlink", "P:f"),
    ("open", "P:f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), ("open", "P:lf", os.O_RDONLY, 0),
    ("rmdir", "P:d"), ("rmdir", "P:e"), ("rmdir", "P:e"), ("mkdir", "P:e", 0o700),
    ("rmdir", "P:e"), ("unlink", "P:d/x"), ("rmdir", "P:d"), ("rmdir", "P:d/sub"),
    ("unlink", "P:d/sub/file"), ("rmdir", "P:d/sub"), ("rmdir", "P:ld/"), ("open", "P:ld/x", 0, 0),
    ("mkdir", "P:ld/sub", 0o755), ("rename", "P:lf", "P:lf2"), ("readlink", "P:lf2", "B", 64),
    ("link", "P:f", "P:f2"), ("truncate", "P:f2", 3), ("chmod", "P:f", 0o640),
    ("access", "P:f", 1), ("rename", "P:f2", "P:d/sub/moved"), ("unlink", "P:d/sub/moved"),
    ("symlink", "T:gone", "P:lf"), ("open", "P:lf", os.O_CREAT | os.O_WRONLY, 0o644),
    ("unlink", "P:gone"), ("unlink", "P:lf"), ("unlink", "P:lf"),
]
OVERLAY_FINAL = ["f", "f2", "e", "d", "d/sub", "d/sub/moved", "lf", "lf2", "ld", "gone"]


def test_overlay_same_results_as_linux(tmp_path):
    import socket
    import threading
    from pyvisor.gofer.client import GoferClient
    from pyvisor.gofer.server import serve

    native_root, lower_root = tmp_path / "native", tmp_path / "lower"
    seed(str(native_root))
    seed(str(lower_root))
    native = run_native(str(native_root), OVERLAY_OPS)

    a, b = socket.socketpair()
    th = threading.Thread(target=serve, args=(b, str(lower_root)), daemon=True)
    th.start()
    client = GoferClient(a)
    try:
        k, vfs, t = make_env(gofer_root=client)
        # The lower tree is the sandbox root: paths are "/" + name.
        ours = run_ours_in(t, b"", OVERLAY_OPS)
        for name in OVERLAY_FINAL:
            try:
                h = os.lstat(native_root / name)
                # Merged directories report nlink 1, as Linux overlayfs does.
                host = _shape(h.st_mode, h.st_nlink, h.st_size, dir_nlink=False)
            except FileNotFoundError:
                host = "ENOENT"
            try:
                st = vfs.stat(t, b"/" + name.encode(), follow=False)
                mine = _shape(st.st_mode, st.st_nlink, st.st_size, dir_nlink=False)
            except SyscallError as e:
                mine = errno.errorcode[e.errno]
            assert mine == host, name
    finally:
        client.close()
        th.join(5)
        b.close()
    diffs = [(i, OVERLAY_OPS[i], n, o) for i, (n, o) in enumerate(zip(native, ours)) if n != o]
    assert not diffs, "\n".join("%d %r: linux %s, ours %s" % (i, op, n[1], o[1])
                                for i, op, n, o in diffs)
