"""Platforms: ways of running application code. ``make_platform`` picks one by name."""

PLATFORM_NAMES = ("ptrace", "kvm", "auto")


def kvm_usable():
    """(True, "") if the KVM platform can run here, else (False, why in one sentence)."""
    try:
        from pyvisor.platform.kvm import kvm_usable as usable
    except ImportError as e:
        return False, "the KVM platform is not built (%s)" % e
    return usable()


def hardware_virtualization():
    """True if the CPU advertises VMX or SVM (KVM runs guests natively, not nested under PVM)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split()
                    return "vmx" in flags or "svm" in flags
    except OSError:
        pass
    return False


def auto_choice():
    """("kvm"|"ptrace", why): KVM only where it is usable *and* has hardware virtualisation.

    Measured here (bench/, ../shared/limits/RESULTS.md): under a nested,
    page-table-based backend such as kvm_pvm every guest exit costs about
    25 µs, against about 10-15 µs for a pinned ptrace round trip, so ptrace
    wins there; on VMX/SVM a KVM exit costs around 1 µs and KVM wins.
    """
    if not hardware_virtualization():
        return "ptrace", "no vmx/svm in /proc/cpuinfo (nested KVM backend: exits cost more than ptrace stops)"
    ok, why = kvm_usable()
    if not ok:
        return "ptrace", "KVM unusable: " + why
    return "kvm", "KVM with hardware virtualisation"


def make_platform(name, memfile, pin_cpu=True):
    """The platform called ``name`` over ``memfile``.

    "auto" follows ``auto_choice()``. Raises
    ValueError for an unknown name and OSError if "kvm" is asked for and
    cannot run (the message says why).
    """
    if name not in PLATFORM_NAMES:
        raise ValueError("unknown platform %r (have: %s)" % (name, ", ".join(PLATFORM_NAMES)))
    if name == "auto":
        name, _why = auto_choice()
    if name == "kvm":
        ok, why = kvm_usable()
        if not ok:
            raise OSError("KVM platform unusable: %s" % why)
        from pyvisor.platform.kvm import KvmPlatform
        return KvmPlatform(memfile, pin_cpu=pin_cpu)
    from pyvisor.platform.ptrace import PtracePlatform
    return PtracePlatform(memfile, pin_cpu=pin_cpu)
