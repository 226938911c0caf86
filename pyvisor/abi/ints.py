"""A syscall argument arrives as a 64-bit register value; these read it as
the C type the call declares (int, long, unsigned int)."""

MASK64 = (1 << 64) - 1


def s32(v):
    """Register value as a signed 32-bit int (fds, flags, whence)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def s64(v):
    """Register value as a signed 64-bit int (offsets, times)."""
    v &= MASK64
    return v - (1 << 64) if v & (1 << 63) else v


def u32(v):
    return v & 0xFFFFFFFF
