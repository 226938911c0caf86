"""Import layers, read from the source (tests/importgraph.py).

netstack is a library below the Sentry: it has its own error type
(netstack/errors.py) and never imports the Sentry or a platform, and inside
it the stack knows its sockets only through the ``Endpoint`` interface
(stack.py), so stack.py does not import socket.py, not even in a function.
"""

import importgraph

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
