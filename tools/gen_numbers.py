#!/usr/bin/env python3
"""Generate pyvisor/abi/numbers.py from the kernel's unistd_64.h.

Usage:
    python tools/gen_numbers.py [--header PATH] [--output PATH] [--check]

The output holds `NAMES = {nr: "name"}` and one constant per call
(`NR_read = 0`, ...). With --check nothing is written; the exit status is 1
when the output file is not what the header would generate (for CI).
"""

import argparse
import re
import sys
from pathlib import Path

DEFAULT_HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "pyvisor" / "abi" / "numbers.py"

# Only plain "#define __NR_name <decimal>" lines define a call number; other
# macros in the header (include guards) are ignored.
_DEFINE = re.compile(r"^\s*#\s*define\s+__NR_([A-Za-z0-9_]+)\s+([0-9]+)\s*$")

_HEADER = '''\
"""x86-64 Linux system call numbers.

GENERATED FILE, DO NOT EDIT: produced by tools/gen_numbers.py from
asm/unistd_64.h. Regenerate with `python tools/gen_numbers.py`.
"""

'''


def parse(header_text):
    """Return [(nr, name)] sorted by number from the text of unistd_64.h.

    Raises ValueError if the header defines no calls or one number twice.
    """
    calls = {}
    for line in header_text.splitlines():
        m = _DEFINE.match(line)
        if not m:
            continue
        name, nr = m.group(1), int(m.group(2))
        if nr in calls:
            raise ValueError("syscall number %d defined twice (%s, %s)" % (nr, calls[nr], name))
        calls[nr] = name
    if not calls:
        raise ValueError("no __NR_ definitions found")
    return sorted(calls.items())


def generate(header_text):
    """Return the source of numbers.py for the given unistd_64.h text."""
    calls = parse(header_text)
    out = [_HEADER]
    for nr, name in calls:
        out.append("NR_%s = %d\n" % (name, nr))
    out.append("\nNAMES = {\n")
    for nr, name in calls:
        out.append("    %d: %r,\n" % (nr, name))
    out.append("}\n")
    return "".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--header", type=Path, default=DEFAULT_HEADER)
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if the output is stale")
    args = ap.parse_args(argv)
    text = generate(args.header.read_text())
    if args.check:
        current = args.output.read_text() if args.output.exists() else None
        if current != text:
            print("%s is stale; run tools/gen_numbers.py" % args.output, file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
