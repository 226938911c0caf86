"""One frozen description of a sandbox; the CLI and the API both build it."""

import os

from pyvisor.fields import FrozenFields
from pyvisor.sentry.mm.filestore import open_unlinked

PLATFORMS = ("ptrace", "kvm", "auto")
FORK_MODES = ("cow", "eager")
OVERLAY_MODES = ("memory", "file", "none")
DEFAULT_OVERLAY = "memory"
FILE_ACCESS_MODES = ("exclusive", "shared")


class SandboxConfig(FrozenFields):
    """Fields, all keyword arguments but argv:

    argv (bytes; argv[0] is looked up in the sandbox's PATH), env (bytes
    "K=V" entries, in order), cwd, rootfs, hostname, platform (ptrace, kvm,
    auto), strace, strace_file, debug, pin_cpu, confine (the Sentry's own
    seccomp filter, pyvisor/seccomp.py), strict_imports (fail the run when
    the confined Sentry imports a module it had not loaded:
    sentry/confined_imports.py), pids_limit, fork (copy-on-write for big
    private mappings, or "eager"), timeout (seconds after which the
    sandbox is ended, exit 124; None for none), memory (bytes of
    application memory and in-memory files, sentry/mm/account.py; None for
    no bound), overlay_size (bytes the root's in-memory upper layer may
    hold; None for tmpfs's default, or the host's free space in file mode),
    overlay (the root's writable layer: "memory", its data in the Sentry's
    memory; "file", its data in an unlinked host file in ``overlay_dir``,
    None for ``default_overlay_dir()``: sentry/mm/filestore.py; "none", no
    writable layer at all), volumes (a tuple of (host directory,
    sandbox path, read_only): host directories the Gofer serves, mounted
    over the root at their sandbox paths, writes reaching the host),
    tmpfs (a tuple of (sandbox path, size in bytes or None): in-memory
    file systems mounted there), read_only (Docker's --read-only: the
    root's layer is frozen once the mount points are made, so writes to
    the root are EROFS), file_access (how the root is cached: "exclusive",
    the host tree does not change under the sandbox, or "shared", names and
    attributes are revalidated on use: sentry/vfs/goferfs.py; shared needs
    overlay "none"), file_access_mounts (the same for volumes; default
    "shared"), extra (a dict for embedders).
    """

    __slots__ = ("argv", "env", "cwd", "rootfs", "hostname", "platform", "strace", "strace_file",
                 "debug", "pin_cpu", "confine", "strict_imports", "pids_limit", "fork", "timeout",
                 "memory", "overlay_size", "overlay", "overlay_dir", "volumes", "tmpfs",
                 "read_only", "file_access", "file_access_mounts", "extra")

    def __init__(self, argv, env=(), cwd="/", rootfs="/", hostname="pyvisor", platform="auto",
                 strace=False, strace_file=None, debug=False, pin_cpu=True, confine=True,
                 strict_imports=False, pids_limit=1024, fork="cow", timeout=None, memory=None,
                 overlay_size=None, overlay=DEFAULT_OVERLAY, overlay_dir=None, volumes=(),
                 tmpfs=(), read_only=False, file_access="exclusive", file_access_mounts="shared",
                 extra=None):
        self._set(argv=argv, env=env, cwd=cwd, rootfs=rootfs, hostname=hostname,
                  platform=platform, strace=strace, strace_file=strace_file, debug=debug,
                  pin_cpu=pin_cpu, confine=confine, strict_imports=strict_imports,
                  pids_limit=pids_limit, fork=fork, timeout=timeout,
                  memory=memory, overlay_size=overlay_size, overlay=overlay,
                  overlay_dir=overlay_dir, volumes=tuple(volumes), tmpfs=tuple(tmpfs),
                  read_only=read_only, file_access=file_access,
                  file_access_mounts=file_access_mounts,
                  extra={} if extra is None else extra)

    def _values(self):
        return super()._values()[:-1]     # extra is not compared

    def _check(self):
        if not self.argv:
            raise ValueError("no program to run")
        if self.pids_limit < 1:
            raise ValueError("--pids-limit must be at least 1")
        for name in ("memory", "overlay_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError("--%s must be above 0 bytes" % name.replace("_", "-"))
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError("--timeout must be above 0 seconds")
        if self.fork not in FORK_MODES:
            raise ValueError("unknown fork mode %r (have: %s)" % (self.fork, ", ".join(FORK_MODES)))
        if self.overlay not in OVERLAY_MODES:
            raise ValueError("unknown overlay mode %r (have: memory, file, file:DIR, none)"
                             % self.overlay)
        if self.overlay_dir is not None and self.overlay != "file":
            raise ValueError("an overlay directory is only for --overlay file")
        if self.overlay == "file":
            why = overlay_dir_problem(self.overlay_dir or default_overlay_dir())
            if why:
                raise ValueError(why)
        if not os.path.isdir(self.rootfs):
            raise ValueError("--rootfs %s: %s" % (self.rootfs, "not a directory"
                                                   if os.path.exists(self.rootfs)
                                                   else "no such directory"))
        for name in ("file_access", "file_access_mounts"):
            if getattr(self, name) not in FILE_ACCESS_MODES:
                raise ValueError("--%s: unknown mode %r (have: exclusive, shared)"
                                 % (name.replace("_", "-"), getattr(self, name)))
        if self.file_access == "shared" and self.overlay != "none":
            raise ValueError("--file-access shared needs --overlay none (an overlay's lower "
                             "layer must not change under it)")
        if self.platform not in PLATFORMS:
            raise ValueError("unknown platform %r (have: %s)" % (self.platform, ", ".join(PLATFORMS)))
        seen = set()
        for host, target, _read_only in self.volumes:
            if not os.path.isabs(host):
                raise ValueError("--volume: host path %r is not absolute" % host)
            if not os.path.exists(host):
                raise ValueError("--volume: host path %r does not exist" % host)
            if not os.path.isdir(host):
                raise ValueError("--volume: host path %r is not a directory" % host)
            _check_target("--volume", target, seen)
        for target, size in self.tmpfs:
            _check_target("--tmpfs", target, seen)
            if size is not None and size <= 0:
                raise ValueError("--tmpfs %s: size must be above 0 bytes" % target)


def _check_target(option, target, seen):
    """A mount's sandbox path: absolute, not the root, and not mounted on twice."""
    if not target.startswith("/"):
        raise ValueError("%s: sandbox path %r is not absolute" % (option, target))
    norm = os.path.normpath(target)
    if norm in ("/", "//"):
        raise ValueError("%s: cannot mount over the root / (use --rootfs)" % option)
    if norm in seen:
        raise ValueError("%s: %s is already a mount target" % (option, norm))
    seen.add(norm)


def parse_volume(spec):
    """``HOST_DIR:SANDBOX_PATH[:ro|rw]`` -> (absolute host dir, sandbox path,
    read_only); ValueError says what is wrong. rw is the default."""
    parts = spec.split(":")
    if len(parts) == 3:
        host, target, mode = parts
        if mode not in ("ro", "rw"):
            raise ValueError("--volume %s: mode must be ro or rw, got %r" % (spec, mode))
    elif len(parts) == 2:
        (host, target), mode = parts, "rw"
    else:
        raise ValueError("--volume wants HOST_DIR:SANDBOX_PATH[:ro|rw], got %r" % spec)
    if not host or not target:
        raise ValueError("--volume wants HOST_DIR:SANDBOX_PATH[:ro|rw], got %r" % spec)
    return os.path.abspath(host), os.path.normpath(target) if target.startswith("/") else target, \
        mode == "ro"


def parse_tmpfs(spec, parse_size):
    """``PATH[:size=N]`` -> (path, size or None); `parse_size` reads N."""
    target, sep, opts = spec.partition(":")
    size = None
    if sep:
        key, eq, value = opts.partition("=")
        if key != "size" or not eq:
            raise ValueError("--tmpfs wants PATH[:size=N], got %r" % spec)
        try:
            size = parse_size(value)
        except ValueError as e:
            raise ValueError("--tmpfs %s: %s" % (spec, e)) from None
    return os.path.normpath(target) if target.startswith("/") else target, size


def env_with(base, overrides):
    """``base`` (a mapping) as "K=V" bytes, with overrides ("K=V" strings) applied in order."""
    env = {os.fsencode(k): os.fsencode(v) for k, v in base.items()}   # str or bytes items
    for kv in overrides:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError("--env wants K=V, got %r" % kv)
        env[os.fsencode(k)] = os.fsencode(v)
    return tuple(k + b"=" + v for k, v in env.items())


def default_overlay_dir():
    """Where ``--overlay file`` keeps its file: $TMPDIR, else /var/tmp.

    /var/tmp, not /tmp: /tmp is often a tmpfs, whose pages are RAM again.
    """
    return os.environ.get("TMPDIR") or "/var/tmp"


def overlay_dir_problem(path):
    """None if the host directory ``path`` can hold the overlay's file, else why not (one line).

    Tried for real (an unlinked file made and closed): root passes every
    access(2) check, but not a read-only or procfs directory.
    """
    if not os.path.isdir(path):
        return "overlay directory %s: %s" % (
            path, "not a directory" if os.path.exists(path) else "no such directory")
    try:
        os.close(open_unlinked(path))
    except OSError as e:
        return "overlay directory %s: cannot create a file there: %s" % (path, os.strerror(e.errno))
    return None


def parse_overlay(text):
    """``--overlay`` MODE: (mode, dir) from memory, file, file:DIR or none."""
    mode, sep, where = text.partition(":")
    if sep and (mode != "file" or not where):
        raise ValueError("--overlay wants memory, file, file:DIR or none, got %r" % text)
    return mode, (os.path.abspath(where) if sep else None)
