"""What `deps` hands to its renderers: the analysis of each unit as model views (docs/design.md)."""

from __future__ import annotations

from collections.abc import Iterable

from mailpreflight.deps.analyze import UnitDeps
from mailpreflight.deps.base import by_identity
from mailpreflight.deps.saupdate import SaUpdatePlan, Scenario
from mailpreflight.model import CommandDepsView, SaChannelView, SaUpdateView, ScenarioView, UnitDepsView

_SCENARIOS: dict[int, tuple[object, tuple[ScenarioView, ...]]] = {}  # a fleet's sa-updates have a few
_PLANS: dict[int, tuple[object, SaUpdateView]] = {}


def sa_update_view(plan: SaUpdatePlan) -> SaUpdateView:
    """The view of a plan, made once for the plan a fleet's units share (saupdate.plan()): render/deps.py then
    encodes it once too."""
    return by_identity(_PLANS, plan, lambda: _sa_update_view(plan))


def _sa_update_view(plan: SaUpdatePlan) -> SaUpdateView:
    return SaUpdateView(
        version=plan.sa_version, version_source=plan.version_source, updatedir=plan.updatedir,
        downloader=plan.downloader,
        channels=tuple(SaChannelView(c.channel, c.mirrored_by, len(c.mirrors), c.mirrored_by_age,
                                     c.installed_revision) for c in plan.channels),
        worst_cases=_scenario_views(plan.worst))


def _scenario_views(scenarios: tuple[Scenario, ...]) -> tuple[ScenarioView, ...]:
    return by_identity(_SCENARIOS, scenarios,
                       lambda: tuple(ScenarioView(s.name, s.seconds, s.exit_status, s.detail) for s in scenarios))


def unit_deps_view(result: UnitDeps) -> UnitDepsView:
    return UnitDepsView(
        name=result.unit.id, fragment_path=result.unit.fragment_path,
        start_timeout_s=result.timeout.seconds if result.timeout.limited else None,
        start_timeout_from=result.timeout.learned_from,
        commands=tuple(CommandDepsView(entry.command, tuple(entry.dependencies),
                                       sa_update_view(entry.plan) if entry.plan is not None else None,
                                       tuple(entry.mentions))
                       for entry in result.commands),
        findings=tuple(result.findings), generated_by=result.unit.generated_by)


def deps_view(results: Iterable[UnitDeps]) -> tuple[UnitDepsView, ...]:
    return tuple(unit_deps_view(result) for result in results)
