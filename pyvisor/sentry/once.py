"""Per-object state made on first use: once, by whichever thread asks first."""

import threading

_lock = threading.RLock()      # re-entrant: a maker may make another thing once


def made_once(owner, attr, make):
    """``owner.<attr>``, set to ``make()`` the first time it is asked for.

    Double-checked under one lock, so two threads asking together get the
    same object and ``make`` runs once. For the kernel's lazily started
    services (the netstack driver, the timer thread, the unix name space)
    and a thread group's pidfd WaitQueue.
    """
    value = getattr(owner, attr, None)
    if value is None:
        with _lock:
            value = getattr(owner, attr, None)
            if value is None:
                value = make()
                setattr(owner, attr, value)
    return value
