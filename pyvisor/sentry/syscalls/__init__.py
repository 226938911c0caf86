"""The syscall handlers, one module per area (fs, mm, process, signal, time,
creds, sched, poll, eventfd, signalfd, timer, futex, xattr, net, misc), and
the one table that maps every number to its handler and support level
(table.py: read it to find any call).
"""
