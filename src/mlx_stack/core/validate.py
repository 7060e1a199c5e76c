"""One validator for the mappings mlx-stack reads from files (pure, no I/O).

:class:`Fields` gives typed access to one mapping by field name and raises the caller's
error with the field's path: ``stack.yaml: tiers[0].port: expected int, found str``.
The caller decides the error type and how file and field are named (:func:`in_file`
for the ``<file>: <field>: <problem>`` form of catalog files, stack.yaml and its
``routing:`` section); :func:`is_int` and :func:`is_number` are the type checks every
parser shares (a YAML or JSON boolean is never a number).

Used by ``core.catalog``, ``core.stack``, ``core.routing`` and ``core.bench_result``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NoReturn, TypeGuard, TypeVar, cast, overload

T = TypeVar("T")
# (where, problem) -> the exception to raise; ``where`` is the field's path, e.g. ``tiers[0].port``.
ErrorFactory = Callable[[str, str], Exception]
Kind = type[T] | tuple[type[T], ...]


def in_file(source: str, error: Callable[..., Exception], hint: str) -> ErrorFactory:
    """Errors of the form ``<source>: <where>: <problem>`` with ``hint``."""
    return lambda where, problem: error(f"{source}: {where}: {problem}", hint=hint)


def is_int(value: object) -> TypeGuard[int]:
    """A whole number (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or a float (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def from_text(text: str, kind: type) -> object:
    """``text`` (typed on the command line) as an ``int`` or ``float`` when ``kind`` is one
    and it parses; otherwise the text itself, so the validator names the problem."""
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            return text
    return text


def _matches(value: object, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


class Fields:
    """Typed access to one mapping; every error names the field by its path.

    ``prefix`` is the path of the mapping itself (``"tiers[0]."``); ``top`` names the
    mapping when the path is empty; ``bool_as`` is how a boolean found where another
    type was expected is named (``bool`` / ``a boolean``).
    """

    def __init__(self, data: object, prefix: str = "", *, error: ErrorFactory,
                 top: str = "(top level)", bool_as: str = "bool"):
        self.prefix, self.error, self.top, self.bool_as = prefix, error, top, bool_as
        if not isinstance(data, dict):
            self.fail("", f"expected a mapping, found {type(data).__name__}")
        # string keys, as json_types.as_object assumes (a YAML key may be a number: the
        # fields are looked up by name, and unknown() names any other key with str())
        self.data: dict[str, object] = cast("dict[str, object]", data)

    def where(self, name: str) -> str:
        return f"{self.prefix}{name}" or self.top

    def fail(self, name: str, problem: str) -> NoReturn:
        raise self.error(self.where(name), problem)

    def has(self, name: str) -> bool:
        """The field is present and not null."""
        return self.data.get(name) is not None

    def peek(self, name: str, kind: Kind[T]) -> T | None:
        """The field's value when it has type ``kind``, else None (no error)."""
        value = self.data.get(name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        return cast(T, value) if _matches(value, kinds) else None

    def _typed(self, name: str, kind: Kind[T], what: str | None) -> T:
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not _matches(value, kinds):
            found = self.bool_as if isinstance(value, bool) else type(value).__name__
            self.fail(name, f"expected {what or ' or '.join(k.__name__ for k in kinds)}, found {found}")
        return cast(T, value)

    def get(self, name: str, kind: Kind[T], *, what: str | None = None) -> T:
        """A required field of type ``kind`` (``what`` names the type in the error)."""
        if not self.has(name):
            self.fail(name, "missing")
        return self._typed(name, kind, what)

    @overload
    def optional(self, name: str, kind: Kind[T], default: None = None, *,
                 what: str | None = None) -> T | None: ...

    @overload
    def optional(self, name: str, kind: Kind[T], default: T, *, what: str | None = None) -> T: ...

    def optional(self, name: str, kind: Kind[T], default: T | None = None, *,
                 what: str | None = None) -> T | None:
        """A field of type ``kind`` that may be absent or null (then ``default``)."""
        if not self.has(name):
            return default
        return self._typed(name, kind, what)

    def _number(self, name: str, required: bool) -> float | int | None:
        if required:
            return self.get(name, (float, int), what="float")
        return self.optional(name, (float, int), what="float")

    def number(self, name: str, lo: float, hi: float, *, required: bool = True) -> float | None:
        """A number from ``lo`` to ``hi`` (as a float)."""
        value = self._number(name, required)
        if value is not None and not lo <= value <= hi:
            self.fail(name, f"expected a number from {lo:g} to {hi:g}, found {value}")
        return None if value is None else float(value)

    def integer(self, name: str, lo: int, hi: int, *, required: bool = True) -> int | None:
        """A whole number from ``lo`` to ``hi``."""
        value = self.get(name, int) if required else self.optional(name, int)
        if value is not None and not lo <= value <= hi:
            self.fail(name, f"expected a whole number from {lo} to {hi}, found {value}")
        return value

    def choice(self, name: str, choices: Iterable[str]) -> str:
        """A required string, one of ``choices``."""
        options = tuple(choices)
        value = self.get(name, str)
        if value not in options:
            self.fail(name, f"expected one of {', '.join(options)}, found {value!r}")
        return value

    def sub(self, name: str) -> Fields:
        """A required nested mapping, its fields named ``<name>.<field>``."""
        return self.nested(name, cast("dict[str, object]", self.get(name, dict)))

    def optional_sub(self, name: str) -> Fields | None:
        value = cast("dict[str, object] | None", self.optional(name, dict))
        return None if value is None else self.nested(name, value)

    def nested(self, name: str, data: object) -> Fields:
        """Fields of ``data`` (an item of this mapping) named ``<name>.<field>``."""
        return Fields(data, f"{self.prefix}{name}.", error=self.error, top=self.top, bool_as=self.bool_as)

    def unknown(self, allowed: Iterable[str], *, list_known: bool = False) -> None:
        """Fail on the first field (in sorted order) not in ``allowed``."""
        known = set(allowed)
        extra = sorted((k for k in self.data if k not in known), key=str)  # YAML keys may be numbers
        if extra:
            tail = "; known: " + ", ".join(sorted(known)) if list_known else ""
            self.fail(str(extra[0]), "unknown field" + tail)
