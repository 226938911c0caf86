"""The import graph of the pyvisor package, read from its source with ast.

Every ``import`` and ``from ... import`` statement counts, wherever it
stands (module level or inside a function); relative imports are resolved.
"""

import ast
import os
import re

import pyvisor

PKG_DIR = os.path.dirname(os.path.abspath(pyvisor.__file__))
SOURCE_PKG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyvisor")


def modules():
    """Map each module name below pyvisor to its source path."""
    found = {}
    root = os.path.dirname(PKG_DIR)
    for dirpath, _dirs, files in os.walk(PKG_DIR):
        for fn in files:
            if fn.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, fn), root)[:-3]
                name = rel.replace(os.sep, ".")
                found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = \
                    os.path.join(dirpath, fn)
    return found


def imports_of(name, path):
    """The absolute names that module ``name`` imports (for ``from X import
    Y``, both X and X.Y: Y may be a module)."""
    is_pkg = path.endswith("__init__.py")
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base[:len(base) - node.level + 1]
                mod = ".".join(parts + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            out.update("%s.%s" % (mod, a.name) for a in node.names)
    return out


def cython_sources():
    """Map each .pyx/.pxd below the source tree's pyvisor/ to its path, named
    like a module (pyvisor/platform/_common.pxd -> "pyvisor.platform._common.pxd").
    Read from the checkout beside tests/: an installed package has no .pyx."""
    found = {}
    root = os.path.dirname(SOURCE_PKG_DIR)
    for dirpath, _dirs, files in os.walk(SOURCE_PKG_DIR):
        for fn in files:
            if fn.endswith((".pyx", ".pxd")):
                rel = os.path.relpath(os.path.join(dirpath, fn), root)
                found[rel.replace(os.sep, ".")] = os.path.join(dirpath, fn)
    return found


_CIMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+cimport\b|cimport\s+([\w.]+))", re.M)


def cimports_of(path):
    """The modules a .pyx/.pxd cimports (absolute names as written)."""
    with open(path) as f:
        return {a or b for a, b in _CIMPORT.findall(f.read())}


def reachable(start, graph_modules=None):
    """The pyvisor modules that the modules in ``start`` import, transitively
    (``start`` included)."""
    mods = graph_modules or modules()
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m in seen or m not in mods:
            continue
        seen.add(m)
        todo.extend(i for i in imports_of(m, mods[m]) if i in mods)
        # Importing a.b.c runs a and a.b first.
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return seen


def graph(graph_modules=None):
    """Each pyvisor module -> the pyvisor modules it imports (itself left out;
    the implicit run of a parent package's __init__ is not an edge)."""
    mods = graph_modules or modules()
    return {m: {i for i in imports_of(m, mods[m]) if i in mods and i != m} for m in mods}


def circles(edges):
    """The import circles of ``edges`` (name -> imported names): each strongly
    connected set of two or more modules, sorted, as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def stdlib_top(name):
    """The top-level name of an import that is not pyvisor's, else None."""
    top = name.split(".")[0]
    return None if top == "pyvisor" else top


__all__ = ["modules", "imports_of", "cython_sources", "cimports_of", "reachable", "graph",
           "circles", "stdlib_top", "PKG_DIR"]
