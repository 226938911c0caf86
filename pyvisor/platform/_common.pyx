# cython: language_level=3
"""The Python face of ``_common.pxd``: ``ExitKind``, the exit kinds the
platforms' C halves return, declared once there (platform/base.py re-exports
them as ints)."""
