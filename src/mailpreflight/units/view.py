"""What `show` hands to its renderers: a loaded unit as a ShowView (docs/design.md)."""

from __future__ import annotations

from mailpreflight.access.rootfs import RootFS
from mailpreflight.model import ExecView, ShowView
from mailpreflight.units.execline import EXEC_KEYS
from mailpreflight.units.loader import ExecEnvironment, Unit, expand_command


def show_view(unit: Unit, env: ExecEnvironment | None = None, fs: RootFS | None = None) -> ShowView:
    """`fs`: read the fragment and drop-ins too (the `systemctl cat` part of the text form)."""
    files: list[tuple[str, str]] = []
    if fs is not None and not unit.masked:
        files = [(path, fs.read_text(path) or "") for path in (unit.fragment_path, *unit.dropin_paths)
                 if path is not None]
    return ShowView(
        name=unit.id, requested=unit.requested, names=tuple(unit.names), load_state=unit.load_state.value,
        fragment_path=unit.fragment_path, dropin_paths=tuple(unit.dropin_paths), masked=unit.masked,
        load_error=str(unit.load_error) if unit.load_error else None,
        exec_keys=tuple(key for key in EXEC_KEYS if key in unit.exec),
        exec=tuple(ExecView(key, c.path, tuple(c.argv), c.ignore_failure, tuple(c.prefixes), c.source,
                            tuple(expand_command(c, env.variables)) if env is not None else None)
                   for key in EXEC_KEYS if key in unit.exec for c in unit.exec[key]),
        environment=tuple((n, v, s) for n, v, s in unit.environment),
        environment_files=tuple((f.path, f.optional, f.source) for f in unit.environment_files),
        warnings=tuple(str(d) for d in unit.diagnostics if d is not unit.load_error),
        diagnostics=tuple(f"{d.severity.value}: {d}" for d in (*unit.diagnostics, *(env.problems if env else ()))),
        systemd_version=unit.systemd_version, files=tuple(files),
        exec_environment=tuple(env.variables) if env is not None else None,
        exec_environment_problems=tuple(str(p) for p in env.problems) if env is not None else (),
        generated_by=unit.generated_by)
