"""The package as users get it, and the Sentry's imports once it is confined.

CI installs pyvisor as the README says and runs these tests from the
checkout: the sandbox must then be the installed console script, run from
outside the source tree with no PYTHONPATH (tests/conftest.py). Once the
Sentry's seccomp filter is on it cannot read a module's file: every module
it may import must be loaded first (sentry/confined_imports.py).
"""

import os
import subprocess
import sys
import textwrap

from conftest import BASE_ENV, PYVISOR, SOURCE_TREE
import importgraph
from pyvisor.sentry.socket import netstack as sentry_net


def test_runner_uses_the_installed_package():
    if os.environ.get("CI"):
        assert not SOURCE_TREE, "CI must test the installed package, not the source tree"
    if not SOURCE_TREE:
        assert os.path.basename(PYVISOR[0]) == "pyvisor" and len(PYVISOR) == 1, PYVISOR
        assert "PYTHONPATH" not in BASE_ENV


def test_readme_socket_example(tmp_path):
    """The README's socket line, from a directory that is no source tree."""
    code = 'import socket; s = socket.create_server(("127.0.0.1", 0)); print(s.getsockname()[0])'
    r = subprocess.run([*PYVISOR, "run", "--platform", "ptrace", "--cwd", "/", "--",
                        "python3", "-c", code],
                       cwd=tmp_path, env=BASE_ENV, capture_output=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, b"127.0.0.1\n"), r.stderr.decode()
    assert b"after its seccomp filter" not in r.stderr


def _run_python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=BASE_ENV,
                          capture_output=True, text=True, timeout=60, cwd="/")


def test_guard_refuses_and_records_late_imports():
    r = _run_python("""
        import sys
        from pyvisor.sentry import confined_imports as ci
        builtin = next(n for n in sys.builtin_module_names if n not in sys.modules)
        g = ci.guard(strict=True)
        __import__(builtin)                    # built in: no file to read
        try:
            import colorsys
        except ci.LateImport as e:
            print("refused", e.name)
        print(g.names)
        try:
            g.check()
        except ci.LateImport as e:
            print("check:", e)
        lax = ci.ImportGuard(strict=False)
        lax.names.append("x")
        lax.check()
        print("lax ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "refused colorsys", "['colorsys']",
        "check: modules imported after the Sentry's seccomp filter: colorsys", "lax ok"]
    assert "the Sentry imported colorsys after its seccomp filter was on" in r.stderr


def test_netstack_stdlib_imports_are_staged():
    """Every standard module that a netstack module the Sentry can reach
    imports is in socket/netstack.py's NETSTACK_STDLIB (imported for real before the filter),
    staged as code (hashlib), or built into the interpreter."""
    mods = importgraph.modules()
    sentry = [m for m in mods if m.startswith("pyvisor.sentry")]
    reach = importgraph.reachable(sentry, mods)
    netstack = sorted(m for m in reach if m.startswith("pyvisor.netstack"))
    assert "pyvisor.netstack.tcp" in netstack and "pyvisor.netstack.stack" in netstack
    available = set(sentry_net.NETSTACK_STDLIB) | set(sentry_net._STDLIB_MODULES) | set(sys.builtin_module_names)
    missing = {}
    for m in netstack:
        for name in importgraph.imports_of(m, mods[m]):
            top = importgraph.stdlib_top(name)
            if top is not None and top not in available:
                missing.setdefault(top, []).append(m)
    assert not missing, "stdlib modules netstack imports but socket/netstack.py's stage() does not load: %r" % missing
