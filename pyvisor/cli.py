"""`pyvisor run|...`: argument parsing, nothing else."""

import argparse
import os
import sys

EX_USAGE, EX_SOFTWARE, EX_OSERR, EX_NOEXEC, EX_NOTFOUND = 2, 70, 71, 126, 127


def _parser():
    from pyvisor import __version__
    p = argparse.ArgumentParser(prog="pyvisor", description="Run a Linux program in a pyvisor sandbox.")
    p.add_argument("--version", action="version", version="pyvisor " + __version__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run PROGRAM in a new sandbox",
                         usage="pyvisor run [options] -- PROGRAM [ARGS...]")
    run.add_argument("--platform", default="auto", choices=["auto", "ptrace", "kvm"],
                     help="how system calls are caught: ptrace, kvm, or auto (the faster here; default)")
    run.add_argument("--strace", nargs="?", const="-", default=None, metavar="FILE",
                     help="print each system call, as strace does, to stderr or FILE")
    run.add_argument("--debug", action="store_true", help="log decisions and tracebacks to stderr")
    run.add_argument("--rootfs", default="/", metavar="DIR", help="host directory served read-only as / (default: /)")
    run.add_argument("-v", "--volume", action="append", default=[], metavar="HOST_DIR:PATH[:ro|rw]",
                     help="mount the host directory HOST_DIR at PATH in the sandbox, served by "
                          "the Gofer; writes reach the host (rw, the default) or are refused "
                          "with EROFS (ro); repeatable")
    run.add_argument("--tmpfs", action="append", default=[], metavar="PATH[:size=N]",
                     help="mount an in-memory file system at PATH (size in bytes, suffixes k, "
                          "m, g; default: half of RAM); repeatable")
    run.add_argument("--read-only", action="store_true",
                     help="no writable overlay over the root: writes to it fail with EROFS "
                          "(volumes and --tmpfs stay writable)")
    run.add_argument("--file-access", default="exclusive", metavar="MODE",
                     help="how the root is cached: exclusive (the host does not change it "
                          "under the sandbox; default) or shared (names and attributes are "
                          "checked with the host on every use; needs --overlay none)")
    run.add_argument("--file-access-mounts", default="shared", metavar="MODE",
                     help="how volumes are cached: shared (the default: a change made on the "
                          "host, or by another sandbox, is seen at once) or exclusive")
    run.add_argument("--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    run.add_argument("--cwd", default=None, metavar="DIR", help="working directory inside the sandbox")
    run.add_argument("--hostname", default="pyvisor", help="the sandbox's host name (default: pyvisor)")
    run.add_argument("--pids-limit", type=int, default=1024, metavar="N",
                     help="most tasks (processes and threads) the sandbox may hold (default: 1024)")
    run.add_argument("--no-pin", dest="pin_cpu", action="store_false",
                     help="do not pin the Sentry and the stub to one CPU")
    run.add_argument("--fork", default="cow", choices=["cow", "eager"],
                     help="how fork copies private memory: copy-on-write for mappings of 64 KiB "
                          "and more (default), or all at once (for measurement)")
    run.add_argument("--memory", type=_bytes, default=None, metavar="BYTES",
                     help="most memory the sandbox may hold: application pages and in-memory "
                          "files together (suffixes k, m, g; default: no bound)")
    run.add_argument("--overlay-size", type=_bytes, default=None, metavar="BYTES",
                     help="most data the in-memory overlay over the root may hold (ENOSPC past "
                          "it; default: half of RAM, as tmpfs)")
    run.add_argument("--overlay", default=None, metavar="MODE",
                     help="the root's writable layer: memory (file data in the Sentry's memory), "
                          "file (in an unlinked file in $TMPDIR or /var/tmp on the host), "
                          "file:DIR (in DIR), or none (a read-only root: EROFS); default: "
                          "memory")
    run.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                     help="end the sandbox after SECONDS and exit 124, as timeout(1) does")
    run.add_argument("program", nargs=argparse.REMAINDER, help="PROGRAM [ARGS...]")
    # Declared here, not in pyvisor.bench, so that `pyvisor run` never imports it.
    bench = sub.add_parser("bench", help="measure syscall overhead and workloads against native")
    bench.add_argument("--quick", action="store_true",
                       help="fewer and shorter runs (CI smoke, under 2 minutes)")
    bench.add_argument("--platform", action="append", default=None, metavar="NAME",
                       choices=["native", "native-1cpu", "ptrace", "kvm", "runsc", "runsc-1cpu"],
                       help="measure only this platform (repeatable; default: every one that "
                            "runs here: native, native-1cpu, ptrace, kvm, runsc, runsc-1cpu, "
                            "or with --quick native, ptrace, runsc; native is always "
                            "measured)")
    bench.add_argument("--json", metavar="FILE",
                       help="write pytest-benchmark-compatible JSON to FILE")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="write a log-scale bar chart to FILE.png (needs matplotlib)")
    bench.add_argument("--markdown", metavar="FILE", help="write the table as markdown to FILE")
    bench.add_argument("--compare", metavar="BASELINE",
                       help="compare each ratio to native with BASELINE's; exit 1 when one "
                            "is more than 25%% slower")
    bench.add_argument("--only", action="append", default=None, metavar="FIGURE",
                       help="measure only this figure (repeatable), e.g. getpid")
    p.commands = {"run": run, "bench": bench}   # for their own usage messages
    return p


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(text):
    """A size: a whole number of bytes, or with a k, m, g or t suffix (powers of 1024)."""
    return _size(text, argparse.ArgumentTypeError)


def _size(text, error=ValueError):
    t = text.strip().lower()
    unit = t[-1:] if t[-1:] in _UNITS and not t[-1:].isdigit() else ""
    number = t[:len(t) - len(unit)]
    if not number.isdigit() or int(number) == 0:
        raise error("wants a size in bytes above 0 (e.g. 512m), got %r" % text)
    return int(number) * _UNITS[unit]


def _seconds(text):
    """A --timeout value: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError("wants a number of seconds above 0, got %r" % text)
    return value


def _caller_environ():
    """The environment we were started with.

    os.environ may hold what Python itself added (PEP 538 sets LC_CTYPE when
    the locale is C); /proc/self/environ still shows the original block.
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return os.environ
    env = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep and k:
            env[k] = v
    return env


def _cmd_run(args):
    from pyvisor.config import (DEFAULT_OVERLAY, SandboxConfig, env_with, parse_overlay,
                                parse_tmpfs, parse_volume)

    prog = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not prog:
        sys.stderr.write("usage: pyvisor run [options] -- PROGRAM [ARGS...]\n"
                         "pyvisor: error: no PROGRAM given\n")
        return EX_USAGE
    cwd = args.cwd
    if cwd is None:
        cwd = os.getcwd() if args.rootfs == "/" else "/"
    try:
        overlay, overlay_dir = parse_overlay(args.overlay or DEFAULT_OVERLAY)
        volumes = tuple(parse_volume(v) for v in args.volume)
        tmpfs = tuple(parse_tmpfs(t, lambda n: _size(n, ValueError)) for t in args.tmpfs)
        config = SandboxConfig(
            argv=tuple(os.fsencode(a) for a in prog), env=env_with(_caller_environ(), args.env),
            cwd=cwd, rootfs=os.path.abspath(args.rootfs), hostname=args.hostname,
            platform=args.platform, strace=args.strace is not None,
            strace_file=None if args.strace in (None, "-") else args.strace,
            debug=args.debug, strict_imports=args.debug or os.environ.get(
                "PYVISOR_STRICT_IMPORTS") == "1", pin_cpu=args.pin_cpu, pids_limit=args.pids_limit,
            fork=args.fork, timeout=args.timeout, memory=args.memory,
            overlay_size=args.overlay_size, overlay=overlay, overlay_dir=overlay_dir,
            volumes=volumes, tmpfs=tmpfs, read_only=args.read_only,
            file_access=args.file_access, file_access_mounts=args.file_access_mounts)
    except ValueError as e:
        sys.stderr.write("pyvisor: %s\n" % e)
        return EX_USAGE
    if config.platform == "kvm":
        from pyvisor.platform import kvm_usable
        ok, why = kvm_usable()
        if not ok:
            sys.stderr.write("pyvisor: the kvm platform cannot run here: %s\n" % why)
            return EX_USAGE
    from pyvisor import confine
    try:
        # The sandbox runs as PID 1 of fresh namespaces; this process waits
        # for it and exits with its status (confine.py).
        return confine.run_confined(lambda: _run_sentry(config))
    except confine.ConfinementError as e:
        sys.stderr.write("pyvisor: %s\n" % e)
        return EX_OSERR


def _run_sentry(config):
    """The Sentry's side of `pyvisor run`: the sandbox's exit code, or a report and 70."""
    from pyvisor.sentry.boot import run_sandbox
    from pyvisor.sentry.errors import UsageError
    from pyvisor.sentry.kernel import LaunchError
    from pyvisor.sentry.task import SentryCrash
    try:
        return run_sandbox(config)
    except UsageError as e:
        sys.stderr.write("pyvisor: %s\n" % e)
        return EX_USAGE
    except LaunchError as e:
        sys.stderr.write("pyvisor: %s: %s\n" % (os.fsdecode(e.path), os.strerror(e.errno)))
        return EX_NOTFOUND if e.errno == 2 else EX_NOEXEC
    except SentryCrash as e:
        sys.stderr.write(e.report(config.debug) + "\n")
        return EX_SOFTWARE
    except Exception as e:   # noqa: BLE001 - any other Sentry failure: one report, code 70
        import traceback
        sys.stderr.write("pyvisor: Sentry failure: %s: %s\n" % (type(e).__name__, e))
        if config.debug:
            traceback.print_exc()
        return EX_SOFTWARE


def main(argv=None):
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # A misspelt option of a command gets that command's usage, not the top level's.
        parser.commands[args.command].error("unrecognized arguments: %s" % " ".join(extra))
    if args.command == "run":
        code = _cmd_run(args)
    elif args.command == "bench":
        from pyvisor.bench import main as bench_main
        code = bench_main(args)
    else:
        code = EX_USAGE
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
