"""The Linux x86-64 ABI as plain data: syscall numbers (numbers.py, generated
by tools/gen_numbers.py) and the flag constants more than one layer reads
(flags.py) and reading a register as a C int (ints.py). Every layer may
import this package; it imports nothing of
pyvisor (outside this package).
"""

from pyvisor.abi.numbers import NAMES


def name_of(number):
    """A syscall's name for logs and --strace; "syscall_N" if unknown."""
    return NAMES.get(number, "syscall_%d" % number)
