"""Find and load a unit the way systemd 252 does: fragment, aliases, masks, templates, drop-ins.

Sources: unit_file_build_name_map() and unit_file_find_fragment() in unit-file.c,
unit_file_find_dropin_paths() in dropin.c, conf_files_list_strv() in conf-files.c, unit_load_fragment().
What a loaded unit is: units/unit.py; how a file's settings are applied: units/settings.py.
"""

from __future__ import annotations

import errno
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailpreflight.access.bounded import GuestFileRefused
from mailpreflight.access.globbing import has_glob_magic
from mailpreflight.access.rootfs import READ_LIMIT, RootFS
from mailpreflight.errors import MailpreflightError, UnitNotFoundError
from mailpreflight.model import Source
from mailpreflight.model.fastinit import fast_init
from mailpreflight.units import environ, generators
from mailpreflight.units.execline import ExecCommand
from mailpreflight.units.index import SearchIndex
from mailpreflight.units.machineid import PATH as MACHINE_ID_PATH
from mailpreflight.units.machineid import read_machine_id
from mailpreflight.units.searchpath import os_release, search_paths_for, systemd_version
from mailpreflight.units.settings import Settings, verify_service
from mailpreflight.units.specifiers import (
    Expander,
    ManagerContext,
    host_facts_from_files,
    host_facts_live,
    system_manager,
)
from mailpreflight.units.syntax import (
    SECTIONS_BY_TYPE,
    Diagnostic,
    LogLevel,
    ParsedFile,
    parse_unit_file,
)
from mailpreflight.units.unit import EnvironmentFileRef, LoadState, Unit
from mailpreflight.units.unitname import UnitName, dropin_unit_names, is_unit_name, parse_unit_name

# Unit, LoadState and EnvironmentFileRef live in units/unit.py; importing them from here keeps working.
__all__ = ["ALIASABLE_TYPES", "FOLLOW_MAX", "TEMPLATABLE_TYPES", "EnvironmentFileRef", "ExecEnvironment", "LoadState",
           "Unit", "UnitLoader", "exec_environment", "expand_command"]

FOLLOW_MAX = 8
PARSED_DROPINS_KEPT = 256  # parsed drop-ins kept per run: the ones many units share (service.d/, dashed prefixes)
ALIASABLE_TYPES = frozenset({"service", "socket", "target", "device", "timer", "path"})
TEMPLATABLE_TYPES = frozenset({"service", "socket", "target", "timer", "path"})


@dataclass
class _NameMap:
    """Every unit name in the search path -> absolute fragment path, or the alias name it points to."""

    ids: dict[str, str] = field(default_factory=dict)
    aliases_of: dict[str, list[str]] = field(default_factory=dict)
    entries: set[str] = field(default_factory=set)  # search-dir entries *.d, *.wants, *.requires (dirs or not)
    # NAME -> (index of the search dir, its entry NAME.d) for every such entry, in search-path order
    dropin_dirs: dict[str, list[tuple[int, str]]] = field(default_factory=dict)


class UnitLoader:
    """Loads units from one tree. Build it once and load many units: the search path is read once (units/index.py)
    and the name map built once; a loader sees the tree as it was when it first looked."""

    def __init__(self, fs: RootFS | None = None, search_paths: Iterable[str] | None = None,
                 manager: ManagerContext | None = None, version: int | None = None,
                 run_generators: bool = True) -> None:
        self.fs = fs or RootFS("/")
        self.version = version if version is not None else systemd_version(self.fs)
        self.search_paths = tuple(search_paths) if search_paths is not None else tuple(
            search_paths_for(self.fs, self.version))
        # An offline root's /run is empty: what its generators would write there at boot is read instead.
        self.generated = generators.at_boot(self.fs, self.search_paths) if run_generators else None
        self.fs = generators.with_generated(self.fs, self.generated)
        self.machine_id_problem: str | None = None  # a bad /etc/machine-id: %m is unknown, and why
        self.manager = manager or system_manager(self._host_facts())
        self._map: _NameMap | None = None
        self.index = SearchIndex(self.fs, self.search_paths)
        self._type_dropin_dirs: dict[str, tuple[str, ...]] = {}
        self._services: tuple[str, ...] | None = None
        self._service_set: frozenset[str] | None = None
        self._parsed: dict[tuple[str, frozenset[str] | None], ParsedFile] = {}

    def _host_facts(self) -> dict[str, str]:
        machine_id = read_machine_id(self.fs)  # validated: a guest's raw value never becomes %m
        self.machine_id_problem = machine_id.problem
        if not self.fs.is_offline:
            return host_facts_live(machine_id.value)
        hostname = (self.fs.read_text("/etc/hostname") or "").strip() or None
        return host_facts_from_files(hostname, machine_id.value, os_release(self.fs))

    # -- the name map ---------------------------------------------------------------------------
    def _name_map(self) -> _NameMap:
        if self._map is None:
            self._map = self._build_name_map()
        return self._map

    def _build_name_map(self) -> _NameMap:
        result = _NameMap()
        aliases: list[str] = []  # the entries that name another unit (the others map to their own file)
        for position, directory in enumerate(self.search_paths):
            prefix = directory.rstrip("/") + "/"  # posixpath.join(directory, entry), 10,000 times cheaper
            for entry, kind in self.index.entries(directory):
                if entry.endswith((".wants", ".requires", ".d")):  # never a unit name: no unit type ends so
                    result.entries.add(prefix + entry)
                    if entry.endswith(".d"):
                        result.dropin_dirs.setdefault(entry[:-2], []).append((position, prefix + entry))
                    continue
                if entry in result.ids or not is_unit_name(entry):
                    continue
                # a file or directory as the listing says (most entries): itself; anything else is looked at
                target = prefix + entry if kind in _PLAIN else self._classify_link(directory, entry, prefix + entry)
                if target is not None:
                    result.ids[entry] = target
                    if not target.startswith("/"):
                        aliases.append(entry)
        # An entry that maps to a path maps to its own (_classify_link: the file, a link to a file outside the search
        # path, a mask): its name is the path's last part, and it is no alias. Only the others are looked at.
        for name in aliases:
            fragment = self._resolve(result.ids, name)
            if fragment is None:
                continue
            destination = posixpath.basename(fragment)
            if destination == name:
                continue  # an alias of itself, through others: nothing to record
            dest_name, src_name = parse_unit_name(destination), parse_unit_name(name)
            if dest_name and dest_name.is_template and src_name and src_name.is_instance:
                destination = dest_name.with_instance(src_name.instance or "")
            # A name is its own alias: _add_names() adds it anyway, so only real aliases are kept, and only
            # those need the mask test (the other names' files are not even looked at until loaded).
            if destination != name and not self.index.is_null_or_empty(fragment):
                result.aliases_of.setdefault(destination, []).append(name)
        return result

    def _classify_link(self, directory: str, entry: str, path: str) -> str | None:
        """Map entry (at `path`): a path for a file or a link leaving the search path (linked file, mask), or the
        name an alias points to; None to skip it (self-alias, invalid alias)."""
        if not self.index.is_link(path):
            return path
        raw = self.index.readlink(path)
        if raw is None:
            return None
        target = self.fs.normalize_link(directory, raw)
        inside = any(target.startswith(d.rstrip("/") + "/") for d in self.search_paths)
        if not inside:
            return path
        destination = posixpath.basename(target)
        if destination == entry or not _alias_is_valid(entry, destination):
            return None
        return destination

    @staticmethod
    def _resolve(ids: dict[str, str], name: str) -> str | None:
        """unit_ids_map_get(): follow aliases (at most 8 hops) to a fragment path."""
        current: str | None = None
        for _ in range(FOLLOW_MAX):
            target = ids.get(current or name)
            if target is None:
                if current is None:
                    return None
                parsed = parse_unit_name(current)
                template = parsed.template if parsed and parsed.is_instance else None
                target = ids.get(template) if template else None
                if target is None:
                    return None
            if target.startswith("/"):
                return target
            current = target
        return None

    def service_names(self) -> list[str]:
        """Every loadable (non-template) service name in the search path, and every instance a .wants/ or
        .requires/ link enables (getty@tty1.service, postfix@-.service), sorted; worked out once per loader."""
        if self._services is None:
            self._services = tuple(self._find_service_names())
        return list(self._services)

    def is_service_name(self, name: str) -> bool:
        """Is `name` one of service_names() (a set of them made once: `deps` asks for each slice of a tree)."""
        if self._service_set is None:
            self.service_names()
            self._service_set = frozenset(self._services or ())
        return name in self._service_set

    def _find_service_names(self) -> list[str]:
        names = set()
        for name in self._name_map().ids:
            if is_plain_or_instance_service(name):
                names.add(name)
        for entry in self._name_map().entries:
            if entry.endswith((".wants", ".requires")):
                for name in self.index.listdir(entry):
                    parsed = parse_unit_name(name)
                    if parsed is not None and parsed.type == "service" and parsed.is_instance:
                        names.add(name)
        return sorted(names)

    # -- loading --------------------------------------------------------------------------------
    def load(self, requested: str, skip_dropins: frozenset[str] = frozenset()) -> Unit:
        """Load one unit. Raises MailpreflightError for an invalid name, UnitNotFoundError if absent.

        `skip_dropins`: guest paths of drop-ins to leave out (the unit as it would be without them).
        """
        name = _mangle(requested)
        parsed = parse_unit_name(name)
        if parsed is None:
            raise MailpreflightError(f"{requested!r} is not a valid unit name",
                                     hint="names look like spamd.service or postfix@-.service")
        if parsed.is_template:
            raise MailpreflightError(f"{name} is a template, not a unit",
                                     hint=f"name an instance, e.g. {parsed.with_instance('NAME')}")
        names_map = self._name_map()
        fragment, names = self._find_fragment(parsed, names_map)
        if fragment is None:
            raise UnitNotFoundError(
                f"unit {name} not found; searched {', '.join(self.search_paths)}"
                + (f" under {self.fs.root}" if self.fs.is_offline else ""))
        base = parse_unit_name(posixpath.basename(fragment))
        unit_id = base.with_instance(parsed.instance or "") if base and base.is_template else (
            posixpath.basename(fragment))
        id_name = parse_unit_name(unit_id) or parsed
        # A regular file its directory's listing showed is there and no link; whether it is empty (a mask) its read
        # tells (_parse), without an lstat of its own. Anything else is looked at first.
        listed_file = self.index.kind(fragment) == stat.S_IFREG
        if not listed_file and (self.index.lstat(fragment) is None or self.index.chase(fragment) is None):
            raise UnitNotFoundError(f"unit {name}: {fragment} is a link to a file that does not exist"
                                    + (f" under {self.fs.root}" if self.fs.is_offline else ""))
        all_names = tuple(sorted(names | {unit_id}))
        dropins = tuple(p for p in self._dropin_paths(unit_id, sorted(names - {unit_id}), parsed.type)
                        if p not in skip_dropins)
        if not listed_file and self.index.is_null_or_empty(fragment):
            # systemd still lists the drop-ins of a masked unit, but reads none of its settings.
            return generators.mark(self._unit(requested, id_name, all_names, LoadState.MASKED, fragment, dropins,
                                              None), self.generated)
        return generators.mark(self._parse(requested, id_name, all_names, fragment, dropins, listed_file),
                               self.generated)

    def _find_fragment(self, parsed: UnitName, names_map: _NameMap) -> tuple[str | None, set[str]]:
        names: set[str] = set()
        self._add_names(parsed, parsed.name, None, names, names_map)
        fragment = self._resolve(names_map.ids, parsed.name)
        if fragment is None and parsed.is_instance and parsed.template:
            fragment = self._resolve(names_map.ids, parsed.template)
        if fragment is not None and posixpath.basename(fragment) != parsed.name:
            base = posixpath.basename(fragment)
            self._add_names(parsed, base, base, names, names_map)
        return fragment, {n for n in names if not (parse_unit_name(n) or parsed).is_template}

    def _add_names(self, parsed: UnitName, name: str, fragment_base: str | None, names: set[str],
                   names_map: _NameMap) -> None:
        names.add(name)
        for alias in names_map.aliases_of.get(name, []):
            alias_name = parse_unit_name(alias)
            if parsed.is_instance and alias_name and alias_name.is_template:
                instance_name = alias_name.with_instance(parsed.instance or "")
                other = self._resolve(names_map.ids, instance_name)
                if other and fragment_base and posixpath.basename(other) != fragment_base:
                    continue  # that instance has a fragment of its own: not an alias of ours
                names.add(instance_name)
            else:
                names.add(alias)

    def _dropin_paths(self, unit_id: str, aliases: list[str], unit_type: str) -> tuple[str, ...]:
        dropin_dirs = self._name_map().dropin_dirs
        directories: list[str] = []
        for name in [unit_id, *aliases]:
            # each search dir in turn, and in it each of the name's drop-in names in turn (unit_file_find_dirs())
            found = sorted((position, rank, path) for rank, candidate in enumerate(dropin_unit_names(name))
                           for position, path in dropin_dirs.get(candidate, ()))
            for _, _, path in found:
                resolved = self.index.chase(path)
                if resolved and resolved not in directories:
                    directories.append(resolved)
        directories += [d for d in self._type_dropins(unit_type) if d not in directories]
        # conf_files_list_strv() without CONF_FILES_FILTER_MASKED: the first dir with a name wins; a
        # /dev/null link or empty file there masks that name further down and is listed, but adds nothing.
        chosen: dict[str, str] = {}
        for directory in directories:
            for entry, path in self.index.conf_files(directory):
                if entry not in chosen:
                    chosen[entry] = path
        return tuple(chosen[name] for name in sorted(chosen))

    def _type_dropins(self, unit_type: str) -> tuple[str, ...]:
        """The type-level drop-in directories (`service.d/`) of every search directory, resolved: the same for
        every unit of that type."""
        found = self._type_dropin_dirs.get(unit_type)
        if found is None:
            entries = self._name_map().entries
            dirs: list[str] = []
            for search_dir in self.search_paths:
                path = f"{search_dir}/{unit_type}.d"
                if path in entries or self.index.is_dir(path):
                    resolved = self.index.chase(path)
                    if resolved and resolved not in dirs:
                        dirs.append(resolved)
            found = self._type_dropin_dirs[unit_type] = tuple(dirs)
        return found

    def _read_parsed(self, path: str, sections: frozenset[str] | None, dropin: bool) -> ParsedFile:
        """A file read and parsed; a drop-in many units share (service.d/, a dashed prefix) is read and parsed once
        per run (the loader's snapshot of the tree). Raises OSError."""
        key = (path, sections)
        parsed = self._parsed.get(key) if dropin else None
        if parsed is None:
            parsed = parse_unit_file(self.fs.read_bytes(path), path, sections)
            if dropin:
                if len(self._parsed) >= PARSED_DROPINS_KEPT:
                    self._parsed.pop(next(iter(self._parsed)))
                self._parsed[key] = parsed
        return parsed

    def _parse(self, requested: str, id_name: UnitName, names: tuple[str, ...], fragment: str,
               dropins: tuple[str, ...], empty_masks: bool = False) -> Unit:
        """Read the fragment, then each drop-in, applying settings in order as systemd does.

        A fatal problem in the fragment stops loading (LoadState error or bad-setting). In a drop-in,
        systemd ignores config_parse()'s failure: only the rest of that drop-in is lost. `empty_masks`: the
        fragment's emptiness was not looked at yet (a regular file: empty, it masks the unit).
        """
        sections = SECTIONS_BY_TYPE.get(id_name.type)
        first: ParsedFile | OSError | None = None  # the fragment, read for the mask test: parsed, or why it is not
        if empty_masks:
            try:
                data = self.fs.read_bytes(fragment)
            except OSError as exc:
                first = exc  # said below, as any file that cannot be read
            else:
                if not data:  # null_or_empty(): systemd lists the drop-ins of a masked unit but reads none of them
                    return self._unit(requested, id_name, names, LoadState.MASKED, fragment, dropins, None)
                first = parse_unit_file(data, fragment, sections)
        settings = Settings(Expander(id_name, self.manager), self.version, id_name.type)
        state, failure = LoadState.LOADED, None
        for path in (fragment, *dropins):
            try:
                if first is None or path != fragment:
                    parsed = self._read_parsed(path, sections, path != fragment)
                elif isinstance(first, OSError):
                    raise first
                else:
                    parsed = first
            except OSError as exc:
                problem = Diagnostic(LogLevel.ERROR, f"cannot read: {exc.strerror or exc}", Source(path, 0))
                if path == fragment:
                    state, failure = LoadState.ERROR, problem
                    break
                settings.diagnostics.append(problem)
                continue
            fatal = settings.apply(parsed.assignments)
            settings.diagnostics.extend(d for d in parsed.diagnostics if d is not parsed.fatal)
            if fatal is None and parsed.fatal is not None:
                fatal = (parsed.fatal, LoadState.ERROR)
            if fatal is None:
                continue
            if path == fragment:
                (failure, state) = fatal
                settings.diagnostics.append(failure)
                break
            settings.diagnostics.append(Diagnostic(
                LogLevel.WARNING, f"{fatal[0].message}; systemd skips the rest of this drop-in",
                fatal[0].source))
        if state is LoadState.LOADED and id_name.type == "service":
            failure = verify_service(settings, fragment)
            if failure is not None:
                state = LoadState.BAD_SETTING
                settings.diagnostics.append(failure)
        return self._unit(requested, id_name, names, state, fragment, dropins, failure, settings)

    def _unit(self, requested: str, id_name: UnitName, names: tuple[str, ...], state: LoadState,
              fragment: str | None, dropins: tuple[str, ...], failure: Diagnostic | None,
              settings: Settings | None = None) -> Unit:
        settings = settings or Settings(Expander(id_name, self.manager), self.version, id_name.type)
        diagnostics = list(settings.diagnostics)
        unknown = settings.expander.unknown_seen
        if unknown:
            letters = " ".join(f"%{c}" for c in sorted(unknown))
            diagnostics.append(Diagnostic(
                LogLevel.WARNING, f"{letters} depend on the running host and were left unexpanded",
                Source(fragment or "", 0)))
            if "m" in unknown and self.machine_id_problem:
                diagnostics.append(Diagnostic(LogLevel.WARNING, self.machine_id_problem, Source(MACHINE_ID_PATH, 0)))
        return Unit(
            requested=requested, id=id_name.name, names=names, load_state=state, fragment_path=fragment,
            dropin_paths=dropins, assignments=tuple(settings.kept),
            exec={k: tuple(v) for k, v in settings.exec_lists.items() if v},
            environment=tuple((n, v, src) for n, (v, src) in settings.env.items()),
            environment_files=tuple(settings.env_files),
            diagnostics=tuple(diagnostics), load_error=failure, search_paths=self.search_paths,
            systemd_version=self.version,
        )



def is_plain_or_instance_service(name: str) -> bool:
    """For a name the name map took (unitname.is_unit_name: valid): is it a service and no template? What
    parse_unit_name() says, without parsing (and remembering) each of a tree's 10,000 names before the workers
    start: the type is what follows the last dot, a template's first `@` ends its stem (`getty@.service`)."""
    return name.endswith(".service") and name.find("@") != len(name) - 9


_PLAIN = (stat.S_IFREG, stat.S_IFDIR)  # entries _classify_link() maps to themselves without looking further


def _mangle(name: str) -> str:
    """Like systemctl: a name without a unit type suffix means a service."""
    return name if parse_unit_name(name) or "." in name.rpartition("@")[2] else f"{name}.service"


def _alias_is_valid(source: str, destination: str) -> bool:
    """unit_validate_alias_symlink_and_warn()."""
    src, dst = parse_unit_name(source), parse_unit_name(destination)
    if src is None or dst is None or src.type not in ALIASABLE_TYPES or src.type != dst.type:
        return False
    if src.instance is not None and src.type not in TEMPLATABLE_TYPES:
        return False
    src_kind = "plain" if src.instance is None else "template" if src.is_template else "instance"
    dst_kind = "plain" if dst.instance is None else "template" if dst.is_template else "instance"
    if not (src_kind == dst_kind or (src_kind == "instance" and dst_kind == "template")):
        return False
    return not (dst_kind == "instance" and src.instance != dst.instance)


@fast_init
@dataclass(frozen=True)
class ExecEnvironment:
    """What a service's processes get from Environment= and EnvironmentFile=, read from the tree now."""

    variables: tuple[tuple[str, str], ...]
    problems: tuple[Diagnostic, ...]  # errors make systemd fail the start (Result=resources)


ENV_FILES_TOTAL = 16 * 1024 * 1024  # bytes of all of one unit's environment files together


def exec_environment(unit: Unit, fs: RootFS) -> ExecEnvironment:
    """Environment= then EnvironmentFile= (files win, as in systemd.exec(5)); file paths may be globs, expanded
    inside the root (never on the host's filesystem), capped in matches, work and total bytes."""
    file_env: dict[str, str] = {}
    problems: list[Diagnostic] = []
    budget = ENV_FILES_TOTAL
    for ref in unit.environment_files:
        if has_glob_magic(ref.path):
            expanded = fs.glob(ref.path)
            guest_paths = list(expanded.paths)
            if expanded.problem:
                problems.append(Diagnostic(LogLevel.WARNING, f"EnvironmentFile={expanded.problem} (the variables "
                                           "those files set are not known)", ref.source))
            elif not guest_paths and not ref.optional:
                problems.append(Diagnostic(LogLevel.ERROR, f"no file matches EnvironmentFile={ref.path}",
                                           ref.source))
        else:
            guest_paths = [ref.path]
        for guest in guest_paths:
            try:
                read = fs.read_optional if ref.optional else fs.read_bytes  # optional: None when not there
                data = read(guest, min(READ_LIMIT, budget))
            except OSError as exc:
                if not ref.optional or isinstance(exc, GuestFileRefused):
                    why = exc.strerror or str(exc)
                    if isinstance(exc, GuestFileRefused) and budget < READ_LIMIT and exc.errno == errno.EFBIG:
                        why = f"the unit's environment files hold more than {ENV_FILES_TOTAL // 1024 // 1024} MiB"
                    problems.append(Diagnostic(
                        LogLevel.ERROR if not ref.optional else LogLevel.WARNING,
                        f"EnvironmentFile={guest} cannot be read ({why})"
                        + (": the start will fail" if not ref.optional else ""), ref.source))
                continue
            if data is None:
                continue
            budget -= len(data)
            parsed = environ.parse_env_file(data, unit.systemd_version)
            problems.extend(Diagnostic(LogLevel.WARNING, message, Source(guest, line))
                            for line, message in parsed.warnings)
            if parsed.error:
                problems.append(Diagnostic(LogLevel.ERROR, parsed.error[1] + ": the start will fail",
                                           Source(guest, parsed.error[0])))
                continue
            file_env.update(parsed.env)  # a later file's value replaces, keeping the first position
    variables = environ.merge([(n, v) for n, v, _ in unit.environment], file_env.items())
    return ExecEnvironment(tuple(variables), tuple(problems))


def expand_command(command: ExecCommand, variables: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """argv as the process will see it; the `:` prefix turns expansion off."""
    if ":" in command.prefixes:
        return command.argv
    return tuple(environ.expand_argv(command.argv, variables))
