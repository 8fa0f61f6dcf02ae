"""Units that generators make at boot, for an offline root: what the guest's systemd would find in
/run/systemd/generator and /run/systemd/generator.late once its generators have run.

Offline, /run is empty: without this, Debian's exim4.service (from /etc/init.d/exim4), saslauthd.service,
the fetchmail daemon and postfix@-.service would be "not found" or never analysed. Two generators are
modelled, each only when the guest has it installed (and not masked or overridden, see `_installed`):

- systemd-sysv-generator (systemd 252, src/sysv-generator/sysv-generator.c; a deliberate copy of its rules):
  every executable regular file in /etc/init.d whose name (".sh" dropped, unit_name_mangle()d) has no unit
  file of its own in the search path (generator dirs excluded; a mask or any entry counts) becomes NAME in
  /run/systemd/generator.late: Description= "LSB: " + Short-Description (else the chkconfig "description:",
  else Description), Before=/After= from Required-Start, Should-Start, X-Start-Before, X-Start-After
  ($network -> network-online.target, also Wants=; $named -> nss-lookup.target; $remote_fs ->
  remote-fs.target; $time -> time-sync.target; $portmap -> rpcbind.target; $local_fs, $syslog dropped;
  another $x -> x.target; a plain name -> name.service), Provides: a service name becomes an alias link, a
  $target Before=/Wants=; Type=forking, Restart=no, TimeoutSec=5min, IgnoreSIGPIPE=no, KillMode=process,
  GuessMainPID=no, RemainAfterExit=yes (no when a chkconfig "pidfile:" gives PIDFile=), SuccessExitStatus=5 6
  with an LSB header, ExecStart=SCRIPT start, ExecStop=SCRIPT stop, ExecReload=SCRIPT reload when a "usage"
  line offers reload. An S link in /etc/rc1.d..rc5.d adds Before= and a .wants link of rescue.target (1),
  multi-user.target (2-4), graphical.target (5); for scripts without an LSB header, start priorities order
  them (fix_order()).
- Debian's postfix-instance-generator (a shell script of the postfix package): postfix.service.wants/ in
  /run/systemd/generator gets postfix@-.service, and for every word of `postconf -h
  multi_instance_directories` (the raw value: no $expansion, split by the shell on blanks only — a comma
  stays part of the word), postfix@NAME.service with NAME = that directory's `multi_instance_name` ("" when
  it has none or no main.cf), all links to /lib/systemd/system/postfix@.service. A name that cannot be a link
  (a "/" in it) or is there already makes `ln` fail and the script (set -e) stop: later instances are missing.

Other generators (fstab, getty, ...) are not modelled: nothing of mail depends on them. Where systemd's own
order is a hash order (two scripts providing the same alias; fix_order()'s lists), names are taken sorted.
`tests/realpkg/test_generators_real.py` runs the real generators on the real Debian packages and compares.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from mailpreflight.access.rootfs import DEV_NULL, READ_LIMIT, Absent, NotOnDisk, RootFS
from mailpreflight.units.unitname import parse_unit_name

if TYPE_CHECKING:
    from mailpreflight.units.loader import Unit

SYSV = "systemd-sysv-generator"
POSTFIX = "postfix-instance-generator"
NORMAL_DIR = "/run/systemd/generator"
EARLY_DIR = "/run/systemd/generator.early"
LATE_DIR = "/run/systemd/generator.late"
OUTPUT_DIRS = (EARLY_DIR, NORMAL_DIR, LATE_DIR)
_OUTPUT_PARENTS = frozenset({"/run", "/run/systemd"})
_OUTPUT_PREFIXES = tuple(d + "/" for d in OUTPUT_DIRS)
GENERATOR_PATHS = ("/run/systemd/system-generators", "/etc/systemd/system-generators",
                   "/usr/local/lib/systemd/system-generators", "/lib/systemd/system-generators",
                   "/usr/lib/systemd/system-generators")
EXIT_NOTINSTALLED, EXIT_NOTCONFIGURED = 5, 6
POSTFIX_TEMPLATE = "/lib/systemd/system/postfix@.service"
@dataclass(frozen=True)
class GeneratedFile:
    """One entry a generator writes: a unit file (`data`) or a symlink (`link`, its target as written)."""

    path: str  # guest path, under /run/systemd/generator*
    generator: str
    source: str | None  # what it was made from (the init script, the main.cf naming an instance)
    data: bytes | None = None
    link: str | None = None


@dataclass(frozen=True)
class Generated:
    """Everything the modelled generators produce for one tree, and what they could not model."""

    files: tuple[GeneratedFile, ...]
    notes: tuple[str, ...] = ()
    by_path: dict[str, GeneratedFile] = field(default_factory=dict, compare=False, repr=False)
    dirs: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_path.update({f.path: f for f in self.files})
        parents = set(OUTPUT_DIRS)
        for entry in self.files:
            parent = posixpath.dirname(entry.path)
            while parent not in parents and parent.startswith("/run/systemd/generator"):
                parents.add(parent)
                parent = posixpath.dirname(parent)
        object.__setattr__(self, "dirs", frozenset(parents))

    def made_by(self, unit_id: str, fragment: str | None) -> str | None:
        """The generator a unit owes its existence to: the one that wrote its fragment, or, for an instance
        of a template, the one whose .wants/.requires link names it (postfix@-.service)."""
        made = self.by_path.get(fragment) if fragment else None
        if made is not None:
            return made.generator
        parsed = parse_unit_name(unit_id)
        if parsed is None or not parsed.is_instance:
            return None
        for entry in self.files:
            if entry.link is not None and posixpath.basename(entry.path) == unit_id and \
                    posixpath.basename(posixpath.dirname(entry.path)).endswith((".wants", ".requires")):
                return entry.generator
        return None


def at_boot(fs: RootFS, search_paths: Iterable[str]) -> Generated | None:
    """What the guest's generators would write at its next boot; None for a live system (its /run holds the
    real output) or a search path that is not the system manager's (no generator dirs in it)."""
    paths = tuple(search_paths)
    if not fs.is_offline or LATE_DIR not in paths or NORMAL_DIR not in paths:
        return None
    notes: list[str] = []
    files: list[GeneratedFile] = []
    native_dirs = tuple(p for p in paths if p not in OUTPUT_DIRS)
    if _installed(fs, SYSV, notes):
        from mailpreflight.units.sysv import sysv_units  # units/sysv.py builds on this module's types

        files += sysv_units(fs, native_dirs)
    if _installed(fs, POSTFIX, notes):
        files += postfix_instances(fs, notes)
    return Generated(tuple(files), tuple(notes))


def with_generated(fs: RootFS, generated: Generated | None) -> RootFS:
    """The tree as the loader should read it: the generator dirs replaced by `generated`."""
    if generated is None:
        return fs
    return fs.sharing_ledger(GeneratedFS(fs.root, generated=generated))  # one budget, one list of refusals


def mark(unit: Unit, generated: Generated | None) -> Unit:
    """Record on a loaded unit which generator made it (None: a unit file of its own)."""
    made = generated.made_by(unit.id, unit.fragment_path) if generated is not None else None
    return replace(unit, generated_by=made) if made else unit


def _installed(fs: RootFS, name: str, notes: list[str]) -> bool:
    """conf_files_list_strv() over the generator dirs: the first dir with a usable entry of that name decides.
    A mask (/dev/null, empty) stops it; an admin's own version is not the program modelled here."""
    for directory in GENERATOR_PATHS:
        path = posixpath.join(directory, name)
        resolved = fs.chase(path)
        if resolved is None:
            continue  # absent or dangling: systemd looks further
        if fs.is_null_or_empty(path):
            return False
        info = fs.lstat(resolved)
        if info is None or not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o111:
            continue
        if directory.startswith(("/etc/", "/usr/local/", "/run/")):
            notes.append(f"{path} replaces the packaged {name}: its output is not modelled")
            return False
        return True
    return False


# -- postfix-instance-generator ---------------------------------------------------------------------------------
def postfix_instances(fs: RootFS, notes: list[str]) -> list[GeneratedFile]:
    """Debian's /lib/systemd/system-generators/postfix-instance-generator (postfix 3.7), step by step."""
    want_dir = f"{NORMAL_DIR}/postfix.service.wants"
    files = [GeneratedFile(f"{want_dir}/postfix@-.service", POSTFIX, "/etc/postfix/main.cf", link=POSTFIX_TEMPLATE)]
    directories = _postconf(fs, "/etc/postfix", "multi_instance_directories")
    made = {"postfix@-.service"}
    for word in (directories or "").split():
        # `postconf -o inet_interfaces= -hc DIR multi_instance_name`: a fatal error prints nothing
        name = _postconf(fs, word, "multi_instance_name") or ""
        link = f"postfix@{name}.service"
        if "/" in name or link in made:
            why = "contains '/'" if "/" in name else "is there already"
            notes.append(f"{word}/main.cf: multi_instance_name gives {link}, which {why}: ln fails and "
                         f"{POSTFIX} stops (set -e); instances listed after it get no unit")
            break
        made.add(link)
        files.append(GeneratedFile(f"{want_dir}/{link}", POSTFIX, posixpath.join(word, "main.cf"),
                                   link=POSTFIX_TEMPLATE))
    return files


def _postconf(fs: RootFS, config_dir: str, name: str) -> str | None:
    """`postconf -h NAME` with `-c config_dir`: the last setting's raw value (postconf(1) does not expand
    $names without -x); "" when unset (both parameters default to empty); None when main.cf cannot be read
    (postconf exits fatal and prints nothing)."""
    if not config_dir.startswith("/"):
        return None  # postconf -c wants an absolute path: "-c requires absolute pathname"
    text = fs.read_text(posixpath.join(config_dir, "main.cf"))
    if text is None:
        return None
    value = ""
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            if current == name:
                value = f"{value} {stripped}".strip()
            continue
        key, equals, rest = line.partition("=")
        current = key.strip() if equals else None
        if current == name:
            value = rest.strip()
    return value


# -- the tree as the loader reads it ----------------------------------------------------------------------------
class GeneratedFS(RootFS):
    """A RootFS whose /run/systemd/generator{,.early,.late} hold what `Generated` lists (whatever the guest's
    own /run has there: systemd empties them at boot). Everything else is the guest's tree, read as RootFS
    reads it; links out of the generated dirs (postfix@-.service -> /lib/...) are followed into it."""

    def __init__(self, root: str, generated: Generated) -> None:
        super().__init__(root)
        object.__setattr__(self, "generated", generated)

    generated: Generated

    @staticmethod
    def _owned(guest: str) -> bool:
        return guest.startswith("/run/systemd/generator") and (
            guest in OUTPUT_DIRS or guest.startswith(_OUTPUT_PREFIXES))

    # RootFS resolves every path through these two (chase(), lstat(), readlink()): the generated entries take
    # part in link resolution exactly as files on disk would.
    def _lstat(self, guest: str) -> os.stat_result | None:
        if not self._owned(guest):
            found = super()._lstat(guest)
            if found is None and guest in _OUTPUT_PARENTS:  # an unpopulated root: /run/systemd comes at boot
                now = int(time.time())
                return os.stat_result((stat.S_IFDIR | 0o755, 0, 0, 2, 0, 0, 0, now, now, now))
            return found
        now = int(time.time())
        entry = self.generated.by_path.get(guest)
        if entry is not None and entry.link is not None:
            return os.stat_result((stat.S_IFLNK | 0o777, 0, 0, 1, 0, 0, len(entry.link), now, now, now))
        if entry is not None:
            size = len(entry.data or b"")
            return os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, size, now, now, now))
        if guest in self.generated.dirs:
            return os.stat_result((stat.S_IFDIR | 0o755, 0, 0, 2, 0, 0, 0, now, now, now))
        return None

    def _readlink(self, guest: str) -> str | None:
        if not self._owned(guest):
            return super()._readlink(guest)
        entry = self.generated.by_path.get(guest)
        return entry.link if entry is not None else None

    def listdir(self, guest: str, limit: int | None = None) -> list[str]:
        """`limit` is accepted for RootFS's signature; the guest's own dirs are listed with its default."""
        resolved = self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return []
        if not self._owned(resolved):
            return super().listdir(resolved)
        if resolved not in self.generated.dirs:
            return []
        prefix = resolved.rstrip("/") + "/"
        names = {p[len(prefix):].split("/", 1)[0] for p in (*self.generated.by_path, *self.generated.dirs)
                 if p.startswith(prefix)}
        return sorted(names)

    def scan(self, guest: str, limit: int | None = None) -> list[tuple[str, int]]:
        """listdir() with each entry's file type, as this tree has them (the loader's index reads unit dirs so). A
        directory of the guest's own is RootFS's to list (in one call when its path holds no link); one that
        leads into the generated dirs is refused there with NotOnDisk and listed here."""
        if not self._owned(guest):
            try:
                return super().scan(guest) if limit is None else super().scan(guest, limit)
            except NotOnDisk:
                pass
        resolved = self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return []
        if not self._owned(resolved):
            return super().scan(resolved) if limit is None else super().scan(resolved, limit)
        found = []
        for name in self.listdir(resolved):
            info = self.lstat(posixpath.join(resolved, name))
            found.append((name, stat.S_IFMT(info.st_mode) if info is not None else 0))
        return found

    # Below, RootFS is handed the path resolved here: resolving it again costs one lstat, not a walk.
    def is_dir(self, guest: str) -> bool:
        resolved = self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return False
        if self._owned(resolved):
            return resolved in self.generated.dirs
        return super().is_dir(resolved)

    def is_null_or_empty(self, guest: str) -> bool:
        resolved = self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return resolved == DEV_NULL
        if self._owned(resolved):
            entry = self.generated.by_path.get(resolved)
            return entry is not None and entry.data is not None and not entry.data
        return super().is_null_or_empty(resolved)

    def _pin_plain(self, guest: str) -> tuple[int, os.stat_result] | Literal[Absent.ABSENT] | None:
        """The gate's one-call way only for the guest's own files: these dirs are made here, not read from disk."""
        return None if self._owned(guest) else super()._pin_plain(guest)

    def _on_disk(self, resolved: str) -> bool:
        return not self._owned(resolved)

    # A path of the guest's own is read by RootFS (in one call when it holds no link); one that leads into the
    # generated dirs through a link is refused there with NotOnDisk and answered here.
    def read_head(self, guest: str, size: int) -> bytes:
        if not self._owned(guest):
            try:
                return super().read_head(guest, size)
            except NotOnDisk:
                pass
        resolved = self.chase(guest)
        if resolved is None or not self._owned(resolved):
            return super().read_head(guest, size)
        return self.read_bytes(resolved)[:size]

    def read_optional(self, guest: str, limit: int = READ_LIMIT) -> bytes | None:
        if not self._owned(guest):
            try:
                return super().read_optional(guest, limit)
            except NotOnDisk:
                pass
        try:
            return self.read_bytes(guest, limit)
        except FileNotFoundError:
            return None

    def read_bytes(self, guest: str, limit: int | None = None) -> bytes:
        if not self._owned(guest):
            try:
                return super().read_bytes(guest) if limit is None else super().read_bytes(guest, limit)
            except NotOnDisk:
                pass
        resolved = self.chase(guest)
        if resolved is None or not self._owned(resolved):
            return super().read_bytes(guest) if limit is None else super().read_bytes(guest, limit)
        entry = self.generated.by_path.get(resolved)
        if entry is None or entry.data is None:
            raise (IsADirectoryError if resolved in self.generated.dirs else FileNotFoundError)(guest)
        if limit is not None and len(entry.data) > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", guest)
        return entry.data


