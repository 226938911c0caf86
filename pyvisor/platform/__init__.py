"""Platforms: ways of running application code. ``make_platform`` picks one by name."""

PLATFORM_NAMES = ("ptrace", "kvm", "auto")


def kvm_usable():
    """(True, "") if the KVM platform can run here, else (False, why in one sentence)."""
    try:
        from pyvisor.platform.kvm import kvm_usable as usable
    except ImportError as e:
        return False, "the KVM platform is not built (%s)" % e
    return usable()


def make_platform(name, memfile, pin_cpu=True):
    """The platform called ``name`` over ``memfile``.

    "auto" is KVM where ``kvm_usable()`` says yes, else ptrace. Raises
    ValueError for an unknown name and OSError if "kvm" is asked for and
    cannot run (the message says why).
    """
    if name not in PLATFORM_NAMES:
        raise ValueError("unknown platform %r (have: %s)" % (name, ", ".join(PLATFORM_NAMES)))
    if name == "auto":
        name = "kvm" if kvm_usable()[0] else "ptrace"
    if name == "kvm":
        ok, why = kvm_usable()
        if not ok:
            raise OSError("KVM platform unusable: %s" % why)
        from pyvisor.platform.kvm import KvmPlatform
        return KvmPlatform(memfile, pin_cpu=pin_cpu)
    from pyvisor.platform.ptrace import PtracePlatform
    return PtracePlatform(memfile, pin_cpu=pin_cpu)
