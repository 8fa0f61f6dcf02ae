"""model/fastinit.py: a frozen dataclass's cheaper __init__ makes the same instance as the dataclass's own."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field

import pytest

import mailpreflight
from mailpreflight.model.fastinit import fast_init


@dataclass(frozen=True)
class _Base:
    a: str
    b: int = 2


@fast_init
@dataclass(frozen=True)
class _Every(_Base):
    c: tuple[str, ...] = ()
    d: dict[str, str] = field(default_factory=dict)
    e: list[int] = field(default_factory=list, init=False)
    f: str = field(default="f", init=False)
    g: int = field(default=7, kw_only=True)


@fast_init
@dataclass(frozen=True)
class _PostInit:
    a: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", self.a.upper())


@fast_init
@dataclass(frozen=True, slots=True)
class _Slots:
    a: str


def _same(cls: type, *args: object, **kwargs: object) -> None:
    made = cls(*args, **kwargs)
    own = object.__new__(cls)
    cls.__init__.__dataclass_init__(own, *args, **kwargs)
    assert made == own and vars(made) == vars(own)


def test_every_kind_of_field_is_made_as_the_dataclass_makes_it() -> None:
    _same(_Every, "x")
    _same(_Every, "x", 3, ("y",), {"k": "v"}, g=9)
    one, two = _Every("x"), _Every("x")
    assert one.d is not two.d and one.e is not two.e  # a new object from each factory, each time
    assert one.f == "f" and one.e == [] and one.g == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        _Every("x", 3, (), {}, 9)  # type: ignore[misc] # g stays keyword-only
    with pytest.raises(TypeError):
        _Every()  # type: ignore[call-arg]
    assert hash(_Every("x", g=1).a) == hash("x")


def test_classes_it_cannot_treat_the_same_way_are_left_alone() -> None:
    assert _PostInit("a").a == "A"
    assert not hasattr(_PostInit.__init__, "__dataclass_init__")
    assert not hasattr(_Slots.__init__, "__dataclass_init__")


def _project_classes() -> list[type]:
    found = []
    for module in pkgutil.walk_packages(mailpreflight.__path__, "mailpreflight."):
        if module.name.endswith("__main__"):
            continue
        try:
            loaded = importlib.import_module(module.name)
        except ImportError:  # an optional binding (dbus, pystemd) not installed here
            continue
        found += [obj for obj in vars(loaded).values() if isinstance(obj, type) and obj.__module__ == module.name
                  and hasattr(obj.__dict__.get("__init__"), "__dataclass_init__")]
    return found


def test_the_project_classes_keep_their_signatures() -> None:
    classes = _project_classes()
    assert len(classes) >= 15  # the hot ones: Source, Assignment, Dependency, ExecCommand, FoundCommand, ...
    for cls in classes:
        fast, own = inspect.signature(cls.__init__), inspect.signature(cls.__init__.__dataclass_init__)
        assert [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in fast.parameters.values()] == \
            [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in own.parameters.values()], cls
        plain = {p.name: p.default for p in own.parameters.values() if p.default is not inspect.Parameter.empty
                 and type(p.default).__name__ != "_HAS_DEFAULT_FACTORY_CLASS"}
        assert {n: d for n, d in ((p.name, p.default) for p in fast.parameters.values()) if n in plain} == plain, cls
