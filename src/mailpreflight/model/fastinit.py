"""A cheaper __init__ for the frozen dataclasses a run makes by the hundred thousand (docs/design.md, "Performance").

A frozen dataclass's generated __init__ stores each field through object.__setattr__ (its own __setattr__ refuses);
that is half the cost of making one. `fast_init` gives such a class an __init__ that stores the fields straight into
the instance's __dict__: the same signature, defaults and default factories, the same instance, still frozen
afterwards (assignment keeps raising FrozenInstanceError). Classes it cannot treat the same way — with slots, a
__post_init__ or InitVar fields — are returned unchanged. tests/unit/test_fastinit.py compares every class it is
applied to with the dataclass's own __init__.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

_T = TypeVar("_T")
_FACTORY = object()  # "no argument given" for a field whose default comes from a factory


def fast_init(cls: type[_T]) -> type[_T]:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" in cls.__dict__ or hasattr(cls, "__post_init__"):
        return cls
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if any(isinstance(f.type, dataclasses.InitVar) or str(f.type).startswith("InitVar") for f in fields):
        return cls
    if any(f.name in ("self", "_fields_of_self") or f.name.startswith(("_factory_", "_default_")) for f in fields):
        return cls  # a name the generated code uses itself
    names: dict[str, Any] = {"_FACTORY": _FACTORY}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = ["    _fields_of_self = self.__dict__"]
    for f in fields:
        has_factory = f.default_factory is not dataclasses.MISSING
        if has_factory:
            names[f"_factory_{f.name}"] = f.default_factory
        if f.default is not dataclasses.MISSING:
            names[f"_default_{f.name}"] = f.default
        if not f.init:
            if has_factory:  # a plain default stays the class attribute, as the dataclass leaves it
                body.append(f"    _fields_of_self[{f.name!r}] = _factory_{f.name}()")
            continue
        param = f.name + ("=_FACTORY" if has_factory else f"=_default_{f.name}"
                          if f.default is not dataclasses.MISSING else "")
        (keyword if f.kw_only else positional).append(param)
        if has_factory:
            body.append(f"    _fields_of_self[{f.name!r}] = _factory_{f.name}() if {f.name} is _FACTORY else {f.name}")
        else:
            body.append(f"    _fields_of_self[{f.name!r}] = {f.name}")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({signature}):\n" + "\n".join(body) + "\n"
    exec(source, names)
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__dataclass_init__ = cls.__init__  # the dataclass's own, for the tests
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
