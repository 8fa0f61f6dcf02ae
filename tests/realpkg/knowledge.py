#!/usr/bin/env python3
"""Write docs/packages.md: what mailpreflight reads of each package and what it says of it, computed by
running its own loader and analysis on the real Debian 12 root (debroot.py) and on the openSUSE Leap 15
trees of this repository. Nothing in the page is written by hand.

    .venv/bin/python tests/realpkg/knowledge.py > docs/packages.md

It builds a root from the package cache in a temporary directory (tests/realpkg/fetch fills the cache).
"""

from __future__ import annotations

import posixpath
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import debroot

from mailpreflight.access.rootfs import RootFS
from mailpreflight.auth.check import AuthReport, analyze_auth
from mailpreflight.deps.analyze import analyze
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Dependency
from mailpreflight.units.loader import LoadState, UnitLoader
from mailpreflight.units.searchpath import os_release, systemd_version

REPO = Path(__file__).resolve().parents[2]
OPENSUSE_TREES = [("units/examples/opensuse-leap15-mail", "the shipped example guest"),
                  *((f"tests/corpus/realistic/{p.name}/root", "loader corpus case")
                    for p in sorted((REPO / "tests/corpus/realistic").glob("opensuse-*")))]
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path")
QUIET_PREFIXES = ("log_", "$")  # lsb init-functions' messages; a command word the reader could not resolve
MAX_INNER = 15
# Packages whose own units are systemd's machinery, not mail: their part is told in one line.
PLUMBING = {
    "base-files": "/etc/os-release: the distribution (Debian 12), hence the search path with /lib/systemd/system",
    "systemd": "its system-generators: systemd-sysv-generator is modelled (units from /etc/init.d), the others "
               "(fstab, getty, cryptsetup, ...) are not; its own units are loaded like any other",
    "libsystemd-shared": "libsystemd-shared-NNN.so: the systemd version whose rules the loader applies",
    "libpam-runtime": "/etc/pam.d/common-*, other: the PAM stacks the mail logins end in (`check`, auth part)",
}


@dataclass
class Reads:
    found: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)


@contextmanager
def recording() -> Iterator[Reads]:
    """Every guest file RootFS reads (or looks for and does not find) while the block runs."""
    reads = Reads()
    original, original_head, original_optional = RootFS.read_bytes, RootFS.read_head, RootFS.read_optional

    def recorded(read: Callable[..., bytes]) -> Callable[..., bytes]:
        def read_recorded(self: RootFS, guest: str, *args: int) -> bytes:
            try:
                data = read(self, guest, *args)
            except FileNotFoundError:
                reads.absent.add(guest)
                raise
            reads.found.add(guest)
            return data
        return read_recorded

    def read_optional_recorded(self: RootFS, guest: str, *args: int) -> bytes | None:
        data = original_optional(self, guest, *args)
        (reads.absent if data is None else reads.found).add(guest)
        return data

    RootFS.read_bytes = recorded(original)  # type: ignore[method-assign]
    RootFS.read_head = recorded(original_head)  # type: ignore[method-assign]
    RootFS.read_optional = read_optional_recorded  # type: ignore[method-assign]
    try:
        yield reads
    finally:
        RootFS.read_bytes = original  # type: ignore[method-assign]
        RootFS.read_head = original_head  # type: ignore[method-assign]
        RootFS.read_optional = original_optional  # type: ignore[method-assign]


def enabled_by(loader: UnitLoader) -> dict[str, list[str]]:
    """unit name -> the .wants/.requires dirs naming it (the admin's, the vendor's, the generators')."""
    found: dict[str, list[str]] = {}
    for directory in loader.search_paths:
        for entry in loader.fs.listdir(directory):
            if entry.endswith((".wants", ".requires")):
                for name in loader.fs.listdir(f"{directory}/{entry}"):
                    found.setdefault(name, []).append(entry)
    return found


def dep_text(dep: Dependency) -> str:
    low = " (low confidence)" if dep.confidence.value == "low" else ""
    return f"{dep.kind.value} `{dep.target}` ({dep.role.value}; {dep.learned_from}){low}"


def describe_unit(loader: UnitLoader, name: str, enabled: dict[str, list[str]], auth: AuthReport,
                  owners: dict[str, str] | None = None) -> list[str]:
    try:
        unit = loader.load(name)
    except MailpreflightError as exc:
        return [f"- `{name}`: cannot be loaded: {exc}"]
    made = f", made by {unit.generated_by}" if unit.generated_by else ""
    wanted = sorted(set(enabled.get(unit.id, [])) | {w for n in unit.names for w in enabled.get(n, [])})
    boot = f"enabled ({', '.join(wanted)})" if wanted else "not enabled"
    if unit.masked:
        return [f"- `{unit.id}` (`{unit.fragment_path}`): masked"]
    lines = [f"- `{unit.id}` (`{unit.fragment_path}`{made}): {unit.load_state.value}, {boot}"]
    if unit.load_state is not LoadState.LOADED or not unit.id.endswith(".service"):
        return lines
    loader.fs.forget()  # the files every unit shares (system.conf, ...) are read for this unit too
    with recording() as reads:
        result = analyze(unit, loader.fs)
    commands = [entry.command for entry in result.commands]
    scripts = sorted({c.script for c in commands if c.script})
    tools = list(dict.fromkeys(c.tool for c in commands if not c.via))
    lines.append(f"  - start path: {', '.join(f'`{t}`' for t in tools) or 'nothing to run'}"
                 + (f"; scripts read and followed: {', '.join(f'`{s}`' for s in scripts)}" if scripts else ""))
    inner = list(dict.fromkeys(c.tool for c in commands if c.via and not c.tool.startswith(QUIET_PREFIXES)))
    if inner:
        shown = ", ".join(f"`{t}`" for t in inner[:MAX_INNER])
        lines.append(f"  - the scripts run: {shown}" + (f" and {len(inner) - MAX_INNER} more"
                                                         if len(inner) > MAX_INNER else ""))
    lines += [f"  - `{c.script}` {c.ends}" for c in commands if c.ends]
    own = {unit.fragment_path, *unit.dropin_paths}
    # a program's first bytes are read to tell a script from a binary: that is no configuration it reads
    programs = {c.argv[0] for c in commands if c.argv and not c.script}
    read = sorted(p for p in reads.found - own - set(scripts)
                  if not p.startswith(("/lib/", "/usr/lib/systemd/"))
                  and not (posixpath.basename(p) in {c.tool for c in commands} and p not in scripts
                           and (p in programs or not p.startswith("/etc/"))))
    if read:
        lines.append(f"  - reads: {', '.join(f'`{p}`' + _owner(p, owners) for p in read)}")
    absent = sorted(reads.absent - reads.found)
    if absent:
        lines.append(f"  - looks for, absent: {', '.join(f'`{p}`' for p in absent)}")
    deps = [dep_text(d) for entry in result.commands for d in entry.dependencies]
    lines.append(f"  - network: {'; '.join(dict.fromkeys(deps)) if deps else 'none found'}")
    for finding in result.findings:
        lines.append(f"  - {finding.code} ({finding.severity.value}): {finding.message.splitlines()[0]}")
    for path in auth.paths:
        if path.unit == unit.id:
            pam = f"PAM service `{path.pam_service}`" if path.pam_service else "no PAM"
            problem = f" — {path.problem}" if path.problem else ""
            lines.append(f"  - logins: {path.consumer}: {path.method}, {pam}{problem}")
    return lines


def _owner(path: str, owners: dict[str, str] | None) -> str:
    if owners is None:
        return ""
    owner = owners.get(path) or owners.get(posixpath.normpath(path.replace("/lib/", "/usr/lib/", 1)))
    return "" if owner is None else f" ({owner})"


def debian(build: debroot.Build) -> list[str]:
    root = build.root
    loader = UnitLoader(RootFS(root))
    enabled = enabled_by(loader)
    auth = analyze_auth(loader.fs, loader)
    owners = {path: package for package, paths in build.files.items() for path in paths}
    release = os_release(RootFS(root))
    lines = [f"## {release.get('PRETTY_NAME', 'Debian')}: the real packages", "",
             f"A root made of the packages below (systemd {systemd_version(RootFS(root))}), as `debroot.py` "
             "builds it: the files of each .deb (their default /etc included), merged /usr, and what their "
             "maintainer scripts enable on a fresh install, done by the real `systemctl --root enable` and "
             "`update-rc.d`. Configuration a postinst writes from debconf answers is not there (`/etc/postfix/"
             "main.cf`, `/etc/clamav/freshclam.conf`, exim4's `update-exim4.conf.conf`, `/etc/mailname`): "
             "\"looks for, absent\" below says where that matters.", "",
             "| package | version | units | init scripts |", "| --- | --- | --- | --- |"]
    for package in build.packages:
        files = build.files[package.name]
        units = [posixpath.basename(p) for p in files if p.startswith("/lib/systemd/system/")
                 and p.endswith(UNIT_SUFFIXES)]
        scripts = [posixpath.basename(p) for p in files if p.startswith("/etc/init.d/")]
        shown = f"{len(units)} (systemd's own)" if package.name == "systemd" else ", ".join(units) or "-"
        lines.append(f"| {package.name} | {package.version} | {shown} | {', '.join(scripts) or '-'} |")
    if build.overwritten:
        lines += ["", "Shipped by more than one package (the last one extracted wins, as listed): "
                  + "; ".join(f"`{p}` ({', '.join(n)})" for p, n in build.overwritten.items()
                              if not p.startswith("/usr/share/man/")) + "."]
    if build.not_enabled:
        lines += ["", "Left disabled on a fresh install by their postinst (`dh_installsystemd --no-enable`): "
                  + ", ".join(f"`{u}` ({p})" for p, u in build.not_enabled) + "."]
    if loader.generated is not None and loader.generated.notes:
        lines += ["", *[f"Generators: {note}" for note in loader.generated.notes]]
    generated_by_script = {f.source: f for f in (loader.generated.files if loader.generated else ())
                           if f.data is not None}
    for package in build.packages:
        lines += ["", f"### {package.name} {package.version}", ""]
        if package.name in PLUMBING:
            lines.append(f"- {PLUMBING[package.name]}")
            continue
        files = build.files[package.name]
        names = [posixpath.basename(p) for p in files
                 if p.startswith("/lib/systemd/system/") and p.endswith(UNIT_SUFFIXES)]
        described = False
        for name in names:
            if "@." in name:
                instances = sorted(n for n in loader.service_names() if n.startswith(name.split("@")[0] + "@")
                                   and n.endswith(name.rsplit(".", 1)[1]))
                lines.append(f"- `{name}`: a template; instances enabled at boot: "
                             + (", ".join(f"`{i}`" for i in instances) or "none"))
                for instance in instances:
                    lines += describe_unit(loader, instance, enabled, auth, owners)
                described = True
                continue
            lines += describe_unit(loader, name, enabled, auth, owners)
            described = True
        for path in files:
            if not path.startswith("/etc/init.d/"):
                continue
            made = generated_by_script.get(path)
            if made is None:
                lines.append(f"- `{path}`: not run by systemd (a unit of that name exists, or it is not an "
                             "executable file)")
                continue
            lines += describe_unit(loader, posixpath.basename(made.path), enabled, auth, owners)
            described = True
        for path in files:
            if path.startswith(("/lib/systemd/system-generators/", "/usr/lib/systemd/system-generators/")):
                lines.append(f"- `{path}`: a generator; "
                             + ("modelled (units/generators.py)" if path.endswith("postfix-instance-generator")
                                else "not modelled"))
                described = True
        if not described:
            lines.append("- no unit, no init script: read where a unit's start path or a login path leads to it")
    return lines


def opensuse() -> list[str]:
    lines = ["## openSUSE Leap 15: trees of this repository", "",
             "openSUSE's packages are not reachable from here: these are hand-made trees modelled on what Leap 15 "
             "ships (`units/examples/opensuse-leap15-mail`, `tests/corpus/realistic/opensuse-*`; see their "
             "READMEs), not the packages themselves. The loader corpus cases hold unit files and little else: what "
             "is said below of a missing program (MP113, MP114) is true of these trees, not of openSUSE. What "
             "mailpreflight reads and says of them:"]
    for relative, what in OPENSUSE_TREES:
        root = REPO / relative
        loader = UnitLoader(RootFS(str(root)))
        enabled = enabled_by(loader)
        auth = analyze_auth(loader.fs, loader)
        lines += ["", f"### `{relative}` ({what})", ""]
        for name in loader.service_names():
            lines += describe_unit(loader, name, enabled, auth)
    return lines


def render(build: debroot.Build) -> str:
    header = ["# What mailpreflight knows about each package", "",
              "Generated by `tests/realpkg/knowledge.py` (do not edit; regenerate with `.venv/bin/python "
              "tests/realpkg/knowledge.py > docs/packages.md`). For every unit a package ships, or a generator "
              "makes of it: where the loader finds it and whether it is enabled at boot, what its start path "
              "runs (shell scripts are read and followed, never run), which files the analysis reads or looks "
              "for, the network endpoints `deps` claims (`role`: needed to start, or at run time; where it was "
              "learned), the findings, and the mail logins `check` follows to PAM. Paths are the guest's.", ""]
    return "\n".join([*header, *debian(build), "", *opensuse()]) + "\n"


def without_versions(text: str) -> str:
    """The page with the package versions blanked: what the freshness test compares (a point release that
    changes nothing else must not make the page wrong)."""
    text = re.sub(r"^(### \S+) .*$", r"\1", text, flags=re.M)
    return re.sub(r"^\| (\S+) \| [^|]+ \|", r"| \1 | - |", text, flags=re.M)


def main() -> int:
    packages = debroot.fetch()
    with tempfile.TemporaryDirectory(prefix="mp-knowledge-") as tmp:
        build = debroot.build_root(Path(tmp) / "root", packages)
        text = render(build).replace(build.root, "ROOT")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
