"""Import layers, read from the source (tests/importgraph.py).

netstack is a library below the Sentry: it has its own error type
(netstack/errors.py) and never imports the Sentry or a platform, and inside
it the stack knows its sockets only through the ``Endpoint`` interface
(stack.py), so stack.py does not import socket.py, not even in a function.
"""

import re
from pathlib import Path

import pytest

import importgraph
from conftest import REPO_ROOT

NETSTACK = "pyvisor.netstack"
FORBIDDEN_BELOW_NETSTACK = ("pyvisor.sentry", "pyvisor.platform")


def _under(name, pkg):
    return name == pkg or name.startswith(pkg + ".")


def test_netstack_imports_neither_sentry_nor_platform():
    mods = importgraph.modules()
    ours = [m for m in mods if _under(m, NETSTACK)]
    assert "pyvisor.netstack.socket" in ours and "pyvisor.netstack.link.tap" in ours
    bad = sorted((m, i) for m in ours for i in importgraph.imports_of(m, mods[m])
                 if any(_under(i, p) for p in FORBIDDEN_BELOW_NETSTACK))
    assert bad == []


def test_nothing_netstack_reaches_leads_to_sentry_or_platform():
    """Transitively too: no netstack module reaches the Sentry through
    another package."""
    mods = importgraph.modules()
    reach = importgraph.reachable([m for m in mods if _under(m, NETSTACK)], mods)
    assert sorted(m for m in reach if any(_under(m, p) for p in FORBIDDEN_BELOW_NETSTACK)) == []


def test_stack_does_not_import_socket():
    mods = importgraph.modules()
    imports = importgraph.imports_of("pyvisor.netstack.stack", mods["pyvisor.netstack.stack"])
    assert "pyvisor.netstack.stack" in mods and imports
    assert not any(_under(i, "pyvisor.netstack.socket") for i in imports)
    # Nor by a detour through another netstack module.
    reach = importgraph.reachable(["pyvisor.netstack.stack"], mods)
    assert "pyvisor.netstack.socket" not in reach


def test_the_checks_see_a_forbidden_import(tmp_path):
    """The parser finds imports inside functions and relative ones: the two
    shapes the old netstack used to reach the Sentry and socket.py."""
    src = tmp_path / "stack.py"
    src.write_text("def f():\n    from .socket import TCPSocket\n"
                   "def g():\n    from ..sentry.errors import SyscallError\n")
    got = importgraph.imports_of("pyvisor.netstack.stack", str(src))
    assert "pyvisor.netstack.socket" in got and "pyvisor.sentry.errors" in got


# --- pyvisor.abi underneath all; the kernel above no syscall handler ----------

ABI = "pyvisor.abi"
SYSCALLS = "pyvisor.sentry.syscalls"
# The kernel gets its syscall table from start-up (sentry/boot.py), so it and
# the task's dispatch import nothing of the handler layer, its package included.
ABOVE_NOTHING = ("pyvisor.sentry.kernel", "pyvisor.sentry.task", "pyvisor.sentry.vfs",
                 "pyvisor.sentry.mm", "pyvisor.sentry.auth", "pyvisor.sentry.limits")


def _bad_imports(prefix, forbidden):
    mods = importgraph.modules()
    ours = [m for m in mods if _under(m, prefix)]
    assert ours, prefix
    return sorted((m, i) for m in ours for i in importgraph.imports_of(m, mods[m])
                  if any(_under(i, p) for p in forbidden))


def test_abi_imports_nothing_of_pyvisor():
    mods = importgraph.modules()
    assert {"pyvisor.abi.numbers", "pyvisor.abi.flags", "pyvisor.abi.structs"} <= set(mods)
    bad = _bad_imports(ABI, ("pyvisor",))
    assert [(m, i) for m, i in bad if not _under(i, ABI)] == []


def test_kernel_vfs_mm_import_no_syscall_handler():
    for pkg in ABOVE_NOTHING:
        assert _bad_imports(pkg, (SYSCALLS,)) == [], pkg


def test_only_startup_imports_the_handler_layer():
    """Wider than the above: outside sentry/syscalls/ itself, only the
    start-up (sentry/boot.py, which builds the table) imports it."""
    mods = importgraph.modules()
    bad = sorted((m, i) for m in mods if not _under(m, SYSCALLS) and m != "pyvisor.sentry.boot"
                 for i in importgraph.imports_of(m, mods[m]) if _under(i, SYSCALLS))
    assert bad == []


def test_startup_hands_the_table_in():
    mods = importgraph.modules()
    assert SYSCALLS + ".table.build_table" in importgraph.imports_of("pyvisor.sentry.boot",
                                                               mods["pyvisor.sentry.boot"])


def test_seccomp_imports_nothing_of_the_sentry():
    assert _bad_imports("pyvisor.seccomp", ("pyvisor.sentry",)) == []
    # Nor through another module: seccomp <-> sentry is no circle.
    reach = importgraph.reachable(["pyvisor.seccomp"])
    assert "pyvisor.abi.numbers" in reach
    assert sorted(m for m in reach if _under(m, "pyvisor.sentry")) == []


def test_the_layer_checks_see_a_handler_import(tmp_path):
    """The shapes the kernel and vfs used to reach the handlers: a function-
    level absolute import and a relative one."""
    src = tmp_path / "vfs.py"
    src.write_text("from ..syscalls._util import AT_FDCWD\n"
                   "def f():\n    from pyvisor.sentry.syscalls import process as P\n")
    got = importgraph.imports_of("pyvisor.sentry.vfs.vfs", str(src))
    assert "pyvisor.sentry.syscalls._util" in got and "pyvisor.sentry.syscalls.process" in got


# --- platform, gofer and mm below the Sentry; a README in every package -------

@pytest.mark.parametrize("pkg,forbidden", [
    ("pyvisor.platform", ("pyvisor.sentry",)),                  # knows no syscalls
    ("pyvisor.gofer", ("pyvisor.sentry", "pyvisor.platform")),  # a 9P peer of diod
    ("pyvisor.sentry.mm", ("pyvisor.sentry.vfs", SYSCALLS)),     # files hand it their pages
    ("pyvisor.bench", ("pyvisor.sentry",)),                      # measures from outside
])
def test_lower_packages_reach_nothing_above(pkg, forbidden):
    mods = importgraph.modules()
    start = [m for m in mods if _under(m, pkg)]
    assert start, pkg
    assert _bad_imports(pkg, forbidden) == []
    reach = importgraph.reachable(start, mods)
    assert sorted(m for m in reach if any(_under(m, p) for p in forbidden)) == []


def test_every_package_says_what_it_owns():
    """A README.md at the top of each package (pyvisor/X, and the Sentry's
    own pyvisor/sentry/X): what it owns, what it may import. Read from the
    source tree: READMEs are not installed."""
    root = Path(REPO_ROOT) / "pyvisor"
    packages = [p.parent for p in root.glob("*/__init__.py")]
    packages += [p.parent for p in (root / "sentry").glob("*/__init__.py")]
    assert root / "sentry" / "vfs" in packages and root / "netstack" in packages
    missing = [str(p.relative_to(root.parent)) for p in packages if not (p / "README.md").exists()]
    assert missing == []


# --- the Gofer's process handle; sockets in one place; no import circles ----------


def test_the_kernel_holds_the_gofer_process_handle_from_gofer():
    mods = importgraph.modules()
    assert "pyvisor.gofer.process" in importgraph.imports_of("pyvisor.sentry.kernel",
                                                             mods["pyvisor.sentry.kernel"])


def test_sockets_live_in_sentry_socket():
    """Every socket file and the netstack glue are in sentry/socket/; the
    handlers (syscalls/net.py) reach them there, and the VFS does not; they
    reach the kernel through the task they are given, never by import."""
    mods = importgraph.modules()
    for name in ("unix", "inet", "sockfs", "netstack"):
        assert "pyvisor.sentry.socket." + name in mods
    for old in ("pyvisor.sentry.inet", "pyvisor.sentry.vfs.unix", "pyvisor.sentry.vfs.inet",
                "pyvisor.sentry.vfs.sockfs"):
        assert old not in mods
    assert _bad_imports("pyvisor.sentry.vfs", ("pyvisor.sentry.socket",)) == []
    assert _bad_imports("pyvisor.sentry.socket",
                        (SYSCALLS, "pyvisor.sentry.kernel", "pyvisor.platform")) == []


def test_no_import_circle_between_pyvisor_modules():
    """No two pyvisor modules import each other, directly or through others,
    counting imports inside functions too."""
    graph = importgraph.graph()
    assert "pyvisor.sentry.vfs.mount" in graph["pyvisor.sentry.vfs.file"]
    assert importgraph.circles(graph) == []


def test_the_circle_check_sees_a_circle(tmp_path):
    """The vfs circle that was: file -> mount (in a function) -> inode -> file;
    and a two-module one beside a module outside it."""
    (tmp_path / "file.py").write_text("def path(vd):\n    from .mount import vd_path\n")
    (tmp_path / "mount.py").write_text("from .inode import VDentry\n")
    (tmp_path / "inode.py").write_text("from .file import RegularFile\n")
    names = {"pyvisor.sentry.vfs." + n: str(tmp_path / (n + ".py")) for n in ("file", "mount", "inode")}
    got = importgraph.circles(importgraph.graph(names))
    assert got == [sorted(names)]
    assert importgraph.circles({"a": {"b"}, "b": {"a", "c"}, "c": set(), "d": {"d"}}) == [["a", "b"]]


# --- the platform knows no syscalls and no Sentry; the C halves cimport down --

PLATFORM = "pyvisor.platform"
PLATFORM_C = ("pyvisor._fastpath.pyx", "pyvisor._kvm.pyx", "pyvisor.platform._common.pyx",
              "pyvisor.platform._common.pxd")


def test_platform_reaches_neither_sentry_nor_netstack():
    """Transitively: the platform serves contexts, not tasks (the Sentry
    hands it what it may answer itself, as numbers; platform/_common.pxd)."""
    mods = importgraph.modules()
    reach = importgraph.reachable([m for m in mods if _under(m, PLATFORM)], mods)
    assert "pyvisor.platform.ptrace" in reach and "pyvisor.platform.kvm" in reach
    assert sorted(m for m in reach if _under(m, "pyvisor.sentry") or _under(m, NETSTACK)) == []


def test_cython_cimports_follow_the_layers():
    """The platforms' C halves share one .pxd (platform/_common.pxd) and
    netstack's share netstack/_wire.pxd; neither cimports anything above."""
    srcs = importgraph.cython_sources()
    ours = {n: {i for i in importgraph.cimports_of(p) if _under(i, "pyvisor")}
            for n, p in srcs.items()}
    for name in PLATFORM_C:
        assert ours[name] <= {"pyvisor.platform._common"}, name
    assert ours["pyvisor._fastpath.pyx"] == ours["pyvisor._kvm.pyx"] == {"pyvisor.platform._common"}
    net = {n: c for n, c in ours.items() if _under(n, NETSTACK)}
    assert net["pyvisor.netstack._checksum.pyx"] == net["pyvisor.netstack._frames.pyx"] \
        == {"pyvisor.netstack._wire"}
    assert all(all(_under(i, NETSTACK) for i in c) for c in net.values()), net


def test_the_drawing_in_architecture_md_names_what_exists():
    """Every module and package the layer drawing names is there, and every
    package below pyvisor/ and pyvisor/sentry/ is in the drawing."""
    text = (Path(REPO_ROOT) / "docs" / "architecture.md").read_text()
    drawing = text.split("```")[1]
    root = Path(REPO_ROOT) / "pyvisor"
    named = set(re.findall(r"(?<![\w/])(?:[a-z_/]+\.(?:pyx|pxd|py)\b|[a-z_]{3,}(?:/[a-z_]+)*/)",
                           drawing))
    assert "sentry/syscalls/" in named and "gofer/process.py" in named
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if "__pycache__" not in p.parts]
    here = set()
    for n in named:
        # A bare name ("task.py" after "sentry/kernel.py") is one of its neighbours'.
        n = n.rstrip("/")
        assert any(f == n or f.endswith("/" + n) for f in files), n
        here.add(n)
    packages = {p.parent.name for p in root.glob("*/__init__.py")}
    packages |= {"sentry/" + p.parent.name for p in (root / "sentry").glob("*/__init__.py")}
    missing = [p for p in packages
               if not any(h == p or h.startswith(p + "/") for h in here)]
    assert sorted(missing) == []
