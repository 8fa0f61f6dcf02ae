"""`mailpreflight deps` output: JSON (schema in docs/schemas/deps.schema.json) or a readable listing.
A pure function of the UnitDepsView data (docs/design.md).

Both are streamed (docs/design.md, "Performance"): each unit is rendered on its own (`json_unit`, `text_unit`:
JSON by the C encoder, one unit per line) and `json_document`/`text_document` put the pieces together as they
come (`framed`, after the `Framing` of each format), so a run over thousands of units never holds the whole
document.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from mailpreflight.model import Dependency, Finding, FoundCommand, SaUpdateView, ScenarioView, UnitDepsView

SCHEMA_VERSION = 1
_Item = TypeVar("_Item")


def finding_json(finding: Finding) -> dict[str, Any]:
    return {"code": finding.code, "severity": finding.severity.value, "unit": finding.unit,
            "message": finding.message, "hint": finding.hint, "evidence": list(finding.evidence)}


def status_fates_json(command: FoundCommand) -> dict[str, Any]:
    """`status_fates` when the script looks at the command's exit status itself (else nothing: additive)."""
    if not command.status_fates:
        return {}
    return {"status_fates": [{"low": f.low, "high": f.high, "fate": f.fate.value, "exit_status": f.exit_status,
                              "where": f.where} for f in command.status_fates]}


def _dependency_json(d: Dependency) -> dict[str, Any]:
    return {"kind": d.kind.value, "target": d.target, "role": d.role.value, "learned_from": d.learned_from,
            "confidence": d.confidence.value, "note": d.note}


# unit_json() and json_unit() build the same document (_document): json_unit() with each part a fleet's units
# share (the lists of dependencies the analysis remembered, and the sa-update plan: issue 14) left as a hole its
# text, encoded once per part, is put into.
def _document(result: UnitDepsView, shared: Callable[[tuple[Any, ...], Callable[[Any], dict[str, Any]]], Any],
              shared_one: Callable[[Any, Callable[[Any], dict[str, Any]]], Any]) -> dict[str, Any]:
    commands = []
    for entry in result.commands:
        command = entry.command
        item: dict[str, Any] = {
            "tool": command.tool, "argv": list(command.argv), "key": command.key, "source": str(command.source),
            "tolerated": command.tolerated, "tolerated_why": list(command.tolerated_why), "via": list(command.via),
            "user": command.user,
            "dependencies": shared(entry.dependencies, _dependency_json),
            "mentioned": shared(entry.mentions, _dependency_json),
            **status_fates_json(command),
        }
        if command.ends:
            item["ends"] = command.ends
        if entry.sa_update is not None:
            item["sa_update"] = shared_one(entry.sa_update, _sa_update_json)
        commands.append(item)
    return {"name": result.name, "fragment_path": result.fragment_path, "generated_by": result.generated_by,
            "start_timeout_s": result.start_timeout_s, "start_timeout_from": result.start_timeout_from,
            "commands": commands, "findings": [finding_json(f) for f in result.findings]}


def _sa_update_json(plan: SaUpdateView) -> dict[str, Any]:
    return {"version": plan.version, "version_source": plan.version_source, "updatedir": plan.updatedir,
            "downloader": plan.downloader,
            "channels": [{"channel": c.channel, "mirrored_by": c.mirrored_by, "mirrors": c.mirrors,
                          "mirrored_by_age_s": c.mirrored_by_age_s, "installed_revision": c.installed_revision}
                         for c in plan.channels],
            "worst_cases": _listed(plan.worst_cases, _scenario_json)}


def _scenario_json(s: ScenarioView) -> dict[str, Any]:
    return {"scenario": s.name, "seconds": s.seconds, "exit_status": s.exit_status, "detail": s.detail}


def _listed(items: tuple[_Item, ...], item_json: Callable[[_Item], dict[str, Any]]) -> list[dict[str, Any]]:
    return [item_json(item) for item in items]


def _alone(item: _Item, item_json: Callable[[_Item], dict[str, Any]]) -> dict[str, Any]:
    return item_json(item)


def unit_json(result: UnitDepsView) -> dict[str, Any]:
    return _document(result, _listed, _alone)


_encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(..., ensure_ascii=False), the encoder made once
# The JSON text of the parts the units of a fleet share (tuples, sa-update plans), by the identity of the part. Each
# entry holds its part, so no other object can take its id meanwhile.
_TEXTS: dict[int, tuple[object, str]] = {}
_TEXTS_KEPT = 64
_HOLE = "\x00"  # where a shared list's text goes; encoded, _HOLE_TEXT
_HOLE_TEXT = _encode(_HOLE)


def _shared_text(items: tuple[_Item, ...], item_json: Callable[[_Item], dict[str, Any]]) -> str:
    if not items:
        return "[]"
    return _text_of(items, lambda: [item_json(item) for item in items])


def _text_of(shared: object, document: Callable[[], Any]) -> str:
    """The JSON text of `document()`, which is all of `shared`'s, encoded once for that object."""
    found = _TEXTS.get(id(shared))
    if found is not None and found[0] is shared:
        return found[1]
    text = _encode(document())
    if len(_TEXTS) >= _TEXTS_KEPT:
        del _TEXTS[next(iter(_TEXTS))]
    _TEXTS[id(shared)] = (shared, text)
    return text


def json_unit(result: UnitDepsView) -> str:
    """One unit as compact JSON text (no indent), the C encoder's text of unit_json(result) in one call, the lists
    a fleet's units share encoded once each: their holes in the unit's text are filled with it afterwards."""
    texts: list[str] = []

    def hole(items: tuple[_Item, ...], item_json: Callable[[_Item], dict[str, Any]]) -> str:
        texts.append(_shared_text(items, item_json))
        return _HOLE

    def hole_one(item: _Item, item_json: Callable[[_Item], dict[str, Any]]) -> str:
        texts.append(_text_of(item, lambda: item_json(item)))
        return _HOLE

    parts = _encode(_document(result, hole, hole_one)).split(_HOLE_TEXT)
    if len(parts) != len(texts) + 1:  # a string of the unit's own is the hole's text: encoded the plain way
        return _encode(unit_json(result))
    return "".join([piece for pair in zip(parts, texts, strict=False) for piece in pair] + [parts[-1]])


@dataclass(frozen=True)
class Framing:
    """What goes around and between units already rendered (json_unit, text_unit): the document is `head`, then
    each unit with `first` (the first) or `between` (the others) before it and `after` it, then `tail` — or
    `empty` when there was no unit. The workers of `deps` put their slices together with it (cli/fanout.py)."""

    head: str
    first: str
    between: str
    after: str
    tail: str
    empty: str

    def units(self, texts: list[str], written_before: int) -> str:
        """Consecutive units of the document, `written_before` units having been written before them."""
        if not texts:
            return ""
        return ((self.between if written_before else self.first) + (self.after + self.between).join(texts)
                + self.after)


JSON_FRAMING = Framing(f'{{"schema_version": {SCHEMA_VERSION}, "units": [', "\n", ",\n", "", "\n]}\n", "\n]}\n")
TEXT_FRAMING = Framing("", "", "\n", "\n", "", "no unit with network dependencies found\n")


def framed(units: Iterable[str], framing: Framing) -> Iterator[str]:
    """The document around units already rendered, piece by piece as they come."""
    yield framing.head
    written = 0
    for unit in units:
        yield framing.units([unit], written)
        written += 1
    yield framing.tail if written else framing.empty


def json_document(units: Iterable[str]) -> Iterator[str]:
    """The document around units already encoded by json_unit, one unit a line, piece by piece."""
    return framed(units, JSON_FRAMING)


def render_json(results: Iterable[UnitDepsView]) -> str:
    return "".join(json_document(json_unit(r) for r in results))


def text_unit(result: UnitDepsView) -> str:
    """One unit's block of the readable listing (no trailing newline)."""
    lines: list[str] = []
    timeout = f"{result.start_timeout_s:.0f} s" if result.start_timeout_s is not None else "none"
    made = f", made by {result.generated_by}" if result.generated_by else ""
    lines.append(f"{result.name}  ({result.fragment_path}{made}; start timeout {timeout})")
    for entry in result.commands:
        command = entry.command
        tolerance = f"tolerated: {', '.join(command.tolerated_why)}" if command.tolerated else "must succeed"
        lines.append(f"  {command.key:13} {command.tool:14} {command.source}  [{tolerance}]")
        if command.via:
            lines.append(f"  {'':13} via {' > '.join(command.via)}")
        if command.ends:
            lines.append(f"  {'':13} the script {command.ends}")
        if command.status_fates:
            lines.append(f"  {'':13} the script on its exit status: {', '.join(map(str, command.status_fates))}")
        for dep in entry.dependencies:
            lines.append(f"      {dep.kind.value:5} {dep.target:55} {dep.role.value:7} {dep.learned_from}")
        for dep in entry.mentions:
            lines.append(f"      {dep.kind.value:5} {dep.target:55} mentioned, not contacted: {dep.note}")
    for finding in result.findings:
        lines.append(f"  {finding.severity.value.upper():8} {finding.code} {finding.message}")
        lines.append(f"  {'':8}       fix: {finding.hint}")
        lines.extend(f"  {'':8}       - {e}" for e in finding.evidence)
    return "\n".join(lines)


def text_document(units: Iterable[str]) -> Iterator[str]:
    """The listing of units already rendered by text_unit, a blank line between them, piece by piece."""
    return framed(units, TEXT_FRAMING)


def render_text(results: Iterable[UnitDepsView]) -> str:
    return "".join(text_document(text_unit(r) for r in results))
