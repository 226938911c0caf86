"""Imports once the Sentry is confined.

After ``seccomp.install_sentry_filter()`` the Sentry cannot open(2), so an
import that reaches Python's path finder cannot read its file. Everything
the Sentry may need is loaded before the filter goes on
(``seccomp.preimport``, and ``socket.netstack.stage`` for netstack). A module missed
there used to fail only where it happened to be imported first, and only on
an interpreter whose start-up had not loaded it already (the installed
package failed where the source tree passed).

``guard()`` puts a finder in front of the path finder: a later import of a
module that is not already loaded, built in, frozen or staged raises
``LateImport`` (an ImportError, so the program's call fails as before) and
is recorded. In strict mode (``--debug``, or ``PYVISOR_STRICT_IMPORTS=1`` in
pyvisor's environment, as the tests set it) it is also reported on stderr at
once, and ``check()`` at the end of the run fails the sandbox with exit 70,
even where the caller caught the ImportError.
"""

import importlib.machinery
import sys


class LateImport(ImportError):
    """A module was imported after the Sentry's seccomp filter was installed."""


class ImportGuard:
    """A meta-path finder that refuses every import reaching the file system."""

    def __init__(self, strict):
        self.strict = strict
        self.names = []          # every module refused, in order

    def find_spec(self, name, path=None, target=None):
        self.names.append(name)
        if self.strict:
            sys.stderr.write("pyvisor: the Sentry imported %s after its seccomp filter was on\n" % name)
        raise LateImport("the confined Sentry cannot import %s: it was not loaded before its "
                         "seccomp filter" % name, name=name)

    def check(self):
        """Raise LateImport, in strict mode, when any import was refused."""
        if self.strict and self.names:
            raise LateImport("modules imported after the Sentry's seccomp filter: %s"
                             % ", ".join(self.names))


def guard(strict):
    """Install and return an ImportGuard just before the path finder (builtin,
    frozen and staged modules are still found by the finders ahead of it)."""
    g = ImportGuard(strict)
    path_finder = importlib.machinery.PathFinder
    where = next((i for i, f in enumerate(sys.meta_path) if f is path_finder), len(sys.meta_path))
    sys.meta_path.insert(where, g)
    return g
