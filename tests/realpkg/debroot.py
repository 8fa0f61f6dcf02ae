"""The real-package corpus: Debian 12 mail packages fetched with `apt-get download`, built into a root.

A root is built as a Debian 12 system would look after installing the packages, without running anything of
theirs: `dpkg-deb -x` of every package (their files and their default /etc, conffiles included), /usr merged as
on every bookworm system, then what their maintainer scripts do to enable services, done by the real programs:
- `deb-systemd-helper enable 'U'` (dh_installsystemd; not when it is guarded by `debian-installed`, i.e.
  `--no-enable`: that runs on upgrades only) and `systemctl enable U` (systemd's own postinst)
  -> `systemctl --root=ROOT enable U` (this machine's systemd 252);
- `update-rc.d NAME defaults|defaults-disabled` (dh_installinit) -> this machine's update-rc.d with
  DPKG_ROOT=ROOT (its own way of working on a chroot from outside: S01/K01 links from the LSB header).
Of the rest of what maintainer scripts do, only base-passwd's preinst is run (with DPKG_ROOT: it writes
/etc/passwd and /etc/group). Not in the root: configuration a postinst writes from debconf answers (postfix's
main.cf, freshclam.conf, exim4's update-exim4.conf.conf, /etc/mailname), the system users packages add
(clamav, debian-spamd, postfix, ...), the alternatives links update-alternatives makes (/usr/bin/awk, ...).
Shared libraries are there only when a listed package ships them: the root is for reading, not for running.

The .debs are cached outside the repository: $MAILPREFLIGHT_DEB_CACHE, else
${XDG_CACHE_HOME:-/var/cache}/mailpreflight-debs. `tests/realpkg/fetch` fills the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ESSENTIAL = ("base-passwd", "bash", "bsdutils", "coreutils", "dash", "debianutils", "diffutils", "dpkg", "findutils",
             "grep", "gzip", "hostname", "init-system-helpers", "libc-bin", "login", "ncurses-bin", "perl-base", "sed",
             "sysvinit-utils", "tar", "util-linux", "mawk")
# Debian 12 package names (checked with `apt-cache show` on bookworm). Extraction order decides files that two
# packages ship (sendmail, /etc/pam.d/imap): the later package's file wins, as `build.json` records.
PACKAGES = (
    "base-files",  # /etc/os-release, /etc/debian_version: the loader reads which distribution it is
    # Essential: yes — on every Debian system (the programs units run: /bin/true, chown, bash, sh, find, ...)
    *ESSENTIAL,
    "systemd",  # its units and its generators (systemd-sysv-generator)
    "libsystemd-shared",  # /usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so: the loader reads the version
    # Priority: required (the PAM modules the mail logins end in) and what apt installs with spamassassin
    # (perl: sa-update's interpreter; gpg, gpgv: sa-update checks the rules' signatures; gnupg is Recommended)
    "libpam-runtime", "libpam-modules", "libpam-modules-bin", "perl", "gpg", "gpgv",
    "sssd-common",
    "courier-base", "courier-authdaemon", "courier-mta", "courier-imap",
    "exim4-base", "exim4-config", "exim4-daemon-light",
    "postfix",
    "dovecot-core", "dovecot-imapd",
    "cyrus-common", "cyrus-imapd",
    "sasl2-bin",
    "spamassassin", "spamd", "sa-compile", "razor", "pyzor",
    "clamav-base", "clamav-freshclam", "clamav-daemon",
    "amavisd-new",
    "opendkim", "opendmarc", "postgrey", "rspamd", "redis-server", "redis-tools", "unbound",
    "fetchmail", "getmail6", "mailman3",
)
MERGED_USR = ("bin", "sbin", "lib", "lib64")  # bookworm: /bin -> usr/bin, ... (usrmerge)
_DSH_ENABLE = re.compile(r"deb-systemd-helper enable '([^']+)'")
# dh_installsystemd --no-enable: the enable above only runs when the unit was installed before (an upgrade)
_DSH_UPGRADE_ONLY = re.compile(r"deb-systemd-helper debian-installed '([^']+)'")
_SYSTEMCTL_ENABLE = re.compile(r"^\s*systemctl \$\{DPKG_ROOT:\+--root=\"\$DPKG_ROOT\"\} enable (\S+)", re.M)
_UPDATE_RC_D = re.compile(r"update-rc\.d (?:-f )?([\w.+-]+) (defaults-disabled|defaults)\b")


def cache_dir() -> Path:
    explicit = os.environ.get("MAILPREFLIGHT_DEB_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or "/var/cache") / "mailpreflight-debs"


class CorpusUnavailable(Exception):
    """The packages are not in the cache and cannot be downloaded: tests skip with this message."""


@dataclass
class Package:
    name: str
    version: str
    file: str  # in the cache
    sha256: str


@dataclass
class Build:
    """What was done to make the root (written to its parent as build.json)."""

    root: str
    packages: list[Package]
    enabled: list[tuple[str, str]] = field(default_factory=list)  # (package, `systemctl enable` unit)
    not_enabled: list[tuple[str, str]] = field(default_factory=list)  # enabled by the postinst on upgrades only
    rc_links: list[tuple[str, str, str]] = field(default_factory=list)  # (package, script, defaults[-disabled])
    overwritten: dict[str, list[str]] = field(default_factory=dict)  # file -> packages shipping it, winner last
    files: dict[str, list[str]] = field(default_factory=dict)  # package -> guest paths it ships (no dirs)
    log: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def manifest_path(cache: Path) -> Path:
    return cache / "manifest.json"


def read_manifest(cache: Path) -> list[Package] | None:
    """The cached packages, if every one of PACKAGES is there and intact."""
    try:
        data = json.loads(manifest_path(cache).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    packages = [Package(**entry) for entry in data.get("packages", [])]
    if sorted(p.name for p in packages) != sorted(PACKAGES):
        return None
    for package in packages:
        path = cache / package.file
        if not path.is_file() or _sha256(path) != package.sha256:
            return None
    order = {name: index for index, name in enumerate(PACKAGES)}
    return sorted(packages, key=lambda p: order[p.name])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(cache: Path | None = None, log: list[str] | None = None) -> list[Package]:
    """Download what is missing with `apt-get download` (the machine's own apt sources), write the manifest.

    Raises CorpusUnavailable when apt cannot get them (no registry, package unknown)."""
    cache = cache or cache_dir()
    cached = read_manifest(cache)
    if cached is not None:
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    have = {}
    for path in cache.glob("*.deb"):
        fields = _deb_fields(path)
        if fields:
            have[fields[0]] = (fields[1], path)
    candidates = _candidates(list(PACKAGES))
    missing = [name for name in PACKAGES if name not in have or have[name][0] != candidates.get(name)]
    if missing:
        # apt-get download names files pkg_version_arch.deb with the epoch's ':' as %3a; it writes to the cwd.
        try:
            result = _run(["apt-get", "download", "-q", *(f"{n}={candidates[n]}" if n in candidates else n
                                                             for n in missing)], cwd=cache, timeout=900)
        except subprocess.TimeoutExpired as exc:
            raise CorpusUnavailable(f"`apt-get download` into {cache} took more than 15 minutes; run "
                                    "tests/realpkg/fetch where the Debian mirror is reachable") from exc
        if log is not None:
            log.append(result.stdout + result.stderr)
        if result.returncode != 0:
            raise CorpusUnavailable(
                f"`apt-get download` of {len(missing)} package(s) into {cache} failed "
                f"({_last_line(result.stderr)}); run tests/realpkg/fetch where the Debian mirror is reachable")
        for path in cache.glob("*.deb"):
            fields = _deb_fields(path)
            if fields and fields[0] in missing and fields[1] == candidates.get(fields[0], fields[1]):
                have[fields[0]] = (fields[1], path)
    absent = [name for name in PACKAGES if name not in have]
    if absent:
        raise CorpusUnavailable(f"not downloaded: {', '.join(absent)}")
    packages = [Package(name, have[name][0], have[name][1].name, _sha256(have[name][1])) for name in PACKAGES]
    manifest_path(cache).write_text(json.dumps({"packages": [asdict(p) for p in packages]}, indent=1) + "\n",
                                    encoding="utf-8")
    return packages


def _candidates(names: list[str]) -> dict[str, str]:
    """apt's candidate version of each package (what `apt-get download NAME` would fetch)."""
    result = _run(["apt-cache", "policy", *names])
    versions: dict[str, str] = {}
    current = None
    for line in result.stdout.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
        elif current and line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version != "(none)":
                versions[current] = version
    return versions


def _deb_fields(path: Path) -> tuple[str, str] | None:
    result = _run(["dpkg-deb", "--showformat=${Package}\t${Version}", "--show", str(path)])
    if result.returncode != 0 or "\t" not in result.stdout:
        return None
    name, version = result.stdout.strip().split("\t", 1)
    return name, version


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def build_root(dest: Path, packages: list[Package], cache: Path | None = None) -> Build:
    """Extract and enable every package into `dest` (created; must not exist or be empty)."""
    cache = cache or cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    build = Build(str(dest), packages)
    owners: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="mp-control-") as control_dir:
        controls = Path(control_dir)
        for package in packages:
            deb = cache / package.file
            _check(_run(["dpkg-deb", "-x", str(deb), str(dest)]), f"dpkg-deb -x {deb}")
            _check(_run(["dpkg-deb", "-e", str(deb), str(controls / package.name)]), f"dpkg-deb -e {deb}")
            names = _check(_run(["dpkg-deb", "-c", str(deb)]), f"dpkg-deb -c {deb}").stdout
            shipped = []
            for line in names.splitlines():
                parts = line.split(None, 5)
                if len(parts) == 6 and not parts[0].startswith("d"):
                    guest = parts[5].split(" -> ", 1)[0].removeprefix(".")
                    shipped.append(guest)
                    owners.setdefault(guest, []).append(package.name)
            build.files[package.name] = shipped
        build.overwritten = {path: names for path, names in sorted(owners.items()) if len(names) > 1}
        _merge_usr(dest)
        _base_passwd(dest, controls / "base-passwd" / "preinst", build)
        for package in packages:
            postinst = controls / package.name / "postinst"
            text = postinst.read_text(encoding="utf-8", errors="replace") if postinst.exists() else ""
            for script, action in _UPDATE_RC_D.findall(text):
                if (dest / "etc/init.d" / script).exists():
                    _update_rc_d(dest, script, action, build)
                    build.rc_links.append((package.name, script, action))
            upgrade_only = set(_DSH_UPGRADE_ONLY.findall(text))
            for unit in [*_DSH_ENABLE.findall(text), *_SYSTEMCTL_ENABLE.findall(text)]:
                if unit in upgrade_only:
                    build.not_enabled.append((package.name, unit))
                    continue
                _enable(dest, unit, build)
                build.enabled.append((package.name, unit))
    (dest.parent / "build.json").write_text(build.to_json() + "\n", encoding="utf-8")
    return build


def _check(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {_last_line(result.stderr)}")
    return result


def _merge_usr(root: Path) -> None:
    """What usrmerge does: move /bin, /sbin, /lib, /lib64 into /usr and leave symlinks. Two packages shipping
    the same path in both places would make usrmerge stop too: that is an error here."""
    for name in MERGED_USR:
        top, usr = root / name, root / "usr" / name
        if top.is_symlink() or not top.exists():
            if not top.exists() and not top.is_symlink():
                usr.mkdir(parents=True, exist_ok=True)
                top.symlink_to(f"usr/{name}")
            continue
        usr.mkdir(parents=True, exist_ok=True)
        _move_tree(top, usr)
        top.rmdir()
        top.symlink_to(f"usr/{name}")


def _move_tree(source: Path, target: Path) -> None:
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and destination.is_dir() and not destination.is_symlink():
            _move_tree(entry, destination)
            entry.rmdir()
        elif destination.exists() or destination.is_symlink():
            raise RuntimeError(f"merging /usr: {entry} and {destination} both exist")
        else:
            entry.rename(destination)


def _base_passwd(root: Path, preinst: Path, build: Build) -> None:
    """base-passwd's own preinst, as dpkg runs it on a fresh install, told to work on the root (DPKG_ROOT)."""
    if not preinst.exists():
        return
    result = _run(["sh", str(preinst), "install"], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                         "DPKG_ROOT": str(root)})
    build.log.append(f"base-passwd preinst install: exit {result.returncode} {result.stderr.strip()}")
    _check(result, f"DPKG_ROOT={root} sh {preinst} install")


def _enable(root: Path, unit: str, build: Build) -> None:
    """The real `systemctl --root=ROOT enable UNIT` (SysV scripts are update-rc.d's business: skipped)."""
    env = {**os.environ, "SYSTEMCTL_SKIP_SYSV": "1"}
    result = _run(["systemctl", f"--root={root}", "enable", unit], env=env)
    build.log.append(f"systemctl --root enable {unit}: exit {result.returncode} {result.stderr.strip()}")
    _check(result, f"systemctl --root={root} enable {unit}")


def _update_rc_d(root: Path, script: str, action: str, build: Build) -> None:
    """This machine's update-rc.d, told to work on the root from outside (DPKG_ROOT: no reload, no chroot)."""
    executable = shutil.which("update-rc.d") or "/usr/sbin/update-rc.d"
    env = {**os.environ, "DPKG_ROOT": str(root)}
    result = _run([executable, script, action], env=env)
    build.log.append(f"update-rc.d {script} {action}: exit {result.returncode} {result.stderr.strip()}")
    _check(result, f"DPKG_ROOT={root} update-rc.d {script} {action}")


def tools_missing() -> str | None:
    """Why a root cannot be built on this machine, or None."""
    for tool in ("apt-get", "apt-cache", "dpkg-deb", "systemctl"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    if shutil.which("update-rc.d") is None and not os.path.exists("/usr/sbin/update-rc.d"):
        return "`update-rc.d` (init-system-helpers) is not installed"
    return None


def linked_copy(root: Path, dest: Path) -> Path:
    """A copy of a root that shares the files (hard links): cheap, and writing a NEW file into it leaves the
    original alone (never write into a copied file: unlink it first)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _check(_run(["cp", "-al", str(root), str(dest)]), f"cp -al {root} {dest}")
    return dest
