"""What the pipeline passes between its stages (docs/design.md, "Data model"): where a value came from,
commands found in a unit, their network dependencies, probe results, verdicts, findings, and the views the
renderers print. Frozen dataclasses and StrEnums only; no I/O, and no import from any other layer.

A package of small modules, one per stage (analysis, outcome, check, views, baseline, explain); everything is
imported from here: `from mailpreflight.model import Report`."""

from __future__ import annotations

from mailpreflight.model.analysis import (
    ANY_HOST,
    Confidence,
    Dependency,
    DepKind,
    Fate,
    FoundCommand,
    Role,
    Source,
    StatusFate,
)
from mailpreflight.model.baseline import (
    ChangeKind,
    ChangeView,
    DriftView,
    EntryType,
    FileRecord,
    HostRecord,
    TrackedFindingView,
)
from mailpreflight.model.check import (
    AuthPathView,
    CommandVerdict,
    PamLineView,
    PamView,
    Prediction,
    ProbeError,
    ProbeResult,
    ProbeStatus,
    Report,
    UnitVerdict,
)
from mailpreflight.model.explain import ExecRun, Explanation, Failure
from mailpreflight.model.outcome import Finding, Severity, Status
from mailpreflight.model.views import (
    CommandDepsView,
    ExecView,
    FirewallRule,
    SaChannelView,
    SaUpdateView,
    ScenarioView,
    ShowView,
    UnitDepsView,
)

__all__ = [
    "ANY_HOST",
    "AuthPathView",
    "ChangeKind",
    "ChangeView",
    "CommandDepsView",
    "CommandVerdict",
    "Confidence",
    "DepKind",
    "Dependency",
    "DriftView",
    "EntryType",
    "ExecRun",
    "ExecView",
    "Explanation",
    "Failure",
    "Fate",
    "FileRecord",
    "Finding",
    "FirewallRule",
    "FoundCommand",
    "HostRecord",
    "PamLineView",
    "PamView",
    "Prediction",
    "ProbeError",
    "ProbeResult",
    "ProbeStatus",
    "Report",
    "Role",
    "SaChannelView",
    "SaUpdateView",
    "ScenarioView",
    "Severity",
    "ShowView",
    "Source",
    "Status",
    "StatusFate",
    "TrackedFindingView",
    "UnitDepsView",
    "UnitVerdict",
]
