#!/usr/bin/env python3
"""Generate docs/syscalls.md from the syscall table (pyvisor/sentry/syscalls/table.py).

Usage:
    python tools/gen_syscalls_doc.py [--output PATH] [--check]

With --check nothing is written; the exit status is 1 when the page is not
what the table would generate (the tests run the same comparison).
"""

import argparse
import sys
from pathlib import Path

from pyvisor.sentry.syscalls.table import LEVELS, PARTIAL, ROWS, SUPPORTED, UNIMPLEMENTED

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "syscalls.md"

_TITLE = {SUPPORTED: "Supported", PARTIAL: "Partial", UNIMPLEMENTED: "Unimplemented (ENOSYS)"}


def render(rows=ROWS):
    """The page's text for ``rows`` (Syscall values, in number order)."""
    counts = {level: sum(1 for r in rows if r.level == level) for level in LEVELS}
    out = [
        "# System calls (Linux x86-64)",
        "",
        "GENERATED FILE, DO NOT EDIT: produced by tools/gen_syscalls_doc.py from",
        "`pyvisor/sentry/syscalls/table.py`, the table the Sentry dispatches by.",
        "",
        "%d calls: %d supported, %d partially supported, %d unimplemented (ENOSYS)."
        % (len(rows), counts[SUPPORTED], counts[PARTIAL], counts[UNIMPLEMENTED]),
        "A supported call does what Linux does (a handler's docstring names the",
        "man-page rules it keeps); a partial one says what it leaves out.",
        "",
        "| Number | Name | Support | Notes |",
        "|---:|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r.number):
        out.append("| %d | %s | %s | %s |" % (r.number, r.name, _TITLE[r.level],
                                             r.note.replace("|", "\\|")))
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    ap.add_argument("--check", action="store_true", help="compare, do not write")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print("%s is not current: run tools/gen_syscalls_doc.py" % args.output, file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
