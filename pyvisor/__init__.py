"""pyvisor: a gVisor-style application kernel in Python and Cython."""

__version__ = "0.1.0"
