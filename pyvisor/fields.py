"""Value semantics for plain slotted classes (configs, stat results, credentials).

Not dataclasses: importing dataclasses (inspect, ast and dis come with it)
and generating each class cost the Sentry's start-up 15-20 ms, and a class
with an explicit ``__init__`` is as fast to build on hot paths (a Stat per
stat(2)). A subclass lists its fields in ``__slots__`` and sets them all in
its ``__init__``.
"""


class Fields:
    """Compared, printed and copied field by field, in ``__slots__`` order."""

    __slots__ = ()

    def _values(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None       # mutable, unless a subclass says otherwise

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__,
                           ", ".join("%s=%r" % (n, getattr(self, n)) for n in self.__slots__))

    def replace(self, **changes):
        """A copy with ``changes`` applied (dataclasses.replace)."""
        new = object.__new__(self.__class__)
        for name in self.__slots__:
            object.__setattr__(new, name, changes.pop(name) if name in changes else getattr(self, name))
        if changes:
            raise TypeError("%s has no field %r" % (type(self).__name__, next(iter(changes))))
        new._check()
        return new

    def _check(self):
        """Validation a subclass adds; ``__init__`` and ``replace`` call it."""


class FrozenFields(Fields):
    """Fields that cannot be assigned after ``__init__`` (which uses ``_set``)."""

    __slots__ = ()

    def _set(self, **values):
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self._check()

    def __setattr__(self, name, value):
        raise AttributeError("%s is frozen: cannot assign %r" % (type(self).__name__, name))

    __delattr__ = __setattr__

    def __hash__(self):
        return hash(self._values())
