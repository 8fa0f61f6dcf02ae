"""What the pipeline passes between its stages (docs/design.md, "Data model"): where a value came from,
commands found in a unit, their network dependencies, probe results, verdicts, findings, and the views the
renderers print. Frozen dataclasses and StrEnums only; no I/O, and no import from any other layer.

A package of small modules, one per stage (analysis, outcome, check, views, baseline, explain); everything is
imported from here (`from mailpreflight.model import Report`; `X as X` is the explicit re-export). A name's module
is imported when the name is first asked for (PEP 562 `__getattr__`): `show` needs neither the check's nor the
baseline's types, and each module of dataclasses costs milliseconds to import (docs/design.md, "Performance")."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailpreflight.model.analysis import ANY_HOST as ANY_HOST
    from mailpreflight.model.analysis import Confidence as Confidence
    from mailpreflight.model.analysis import Dependency as Dependency
    from mailpreflight.model.analysis import DepKind as DepKind
    from mailpreflight.model.analysis import Fate as Fate
    from mailpreflight.model.analysis import FoundCommand as FoundCommand
    from mailpreflight.model.analysis import Role as Role
    from mailpreflight.model.analysis import Source as Source
    from mailpreflight.model.analysis import StatusFate as StatusFate
    from mailpreflight.model.baseline import ChangeKind as ChangeKind
    from mailpreflight.model.baseline import ChangeView as ChangeView
    from mailpreflight.model.baseline import DriftView as DriftView
    from mailpreflight.model.baseline import EntryType as EntryType
    from mailpreflight.model.baseline import FileRecord as FileRecord
    from mailpreflight.model.baseline import HostRecord as HostRecord
    from mailpreflight.model.baseline import TrackedFindingView as TrackedFindingView
    from mailpreflight.model.check import AuthPathView as AuthPathView
    from mailpreflight.model.check import CommandVerdict as CommandVerdict
    from mailpreflight.model.check import PamLineView as PamLineView
    from mailpreflight.model.check import PamView as PamView
    from mailpreflight.model.check import Prediction as Prediction
    from mailpreflight.model.check import ProbeError as ProbeError
    from mailpreflight.model.check import ProbeResult as ProbeResult
    from mailpreflight.model.check import ProbeStatus as ProbeStatus
    from mailpreflight.model.check import Report as Report
    from mailpreflight.model.check import UnitVerdict as UnitVerdict
    from mailpreflight.model.explain import ExecRun as ExecRun
    from mailpreflight.model.explain import Explanation as Explanation
    from mailpreflight.model.explain import Failure as Failure
    from mailpreflight.model.outcome import Finding as Finding
    from mailpreflight.model.outcome import Severity as Severity
    from mailpreflight.model.outcome import Status as Status
    from mailpreflight.model.views import CommandDepsView as CommandDepsView
    from mailpreflight.model.views import ExecView as ExecView
    from mailpreflight.model.views import FirewallRule as FirewallRule
    from mailpreflight.model.views import SaChannelView as SaChannelView
    from mailpreflight.model.views import SaUpdateView as SaUpdateView
    from mailpreflight.model.views import ScenarioView as ScenarioView
    from mailpreflight.model.views import ShowView as ShowView
    from mailpreflight.model.views import UnitDepsView as UnitDepsView

_MODULE_OF = {
    'ANY_HOST': 'analysis',
    'Confidence': 'analysis',
    'Dependency': 'analysis',
    'DepKind': 'analysis',
    'Fate': 'analysis',
    'FoundCommand': 'analysis',
    'Role': 'analysis',
    'Source': 'analysis',
    'StatusFate': 'analysis',
    'ChangeKind': 'baseline',
    'ChangeView': 'baseline',
    'DriftView': 'baseline',
    'EntryType': 'baseline',
    'FileRecord': 'baseline',
    'HostRecord': 'baseline',
    'TrackedFindingView': 'baseline',
    'AuthPathView': 'check',
    'CommandVerdict': 'check',
    'PamLineView': 'check',
    'PamView': 'check',
    'Prediction': 'check',
    'ProbeError': 'check',
    'ProbeResult': 'check',
    'ProbeStatus': 'check',
    'Report': 'check',
    'UnitVerdict': 'check',
    'ExecRun': 'explain',
    'Explanation': 'explain',
    'Failure': 'explain',
    'Finding': 'outcome',
    'Severity': 'outcome',
    'Status': 'outcome',
    'CommandDepsView': 'views',
    'ExecView': 'views',
    'FirewallRule': 'views',
    'SaChannelView': 'views',
    'SaUpdateView': 'views',
    'ScenarioView': 'views',
    'ShowView': 'views',
    'UnitDepsView': 'views',
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # asked once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
