"""The Debian package on a CLEAN Debian 12: what its Depends bring is all it needs.

test_deb.py installs the .deb on this machine, which has the dependencies installed already (./bootstrap), so a
library missing from Depends would go unnoticed there. Here mmdebstrap makes a minimal bookworm root
(--variant=apt: Essential packages and apt, no python3), `apt-get install --no-install-recommends ./the.deb` runs
inside it, and the installed tool runs there with nothing but what apt pulled in: every Depends package is new in
the root, the program's interpreter is Debian's python3 from it, every module of the package and every library
the source imports (except python3-guestfs, a Recommends) import, and `--version`, `show`, `deps` and
`dropin install` work on the example guest as the checkout does (the drop-in naming /usr/bin/mailpreflight).

The root is built once per run (a module fixture) in a temporary directory (removed afterwards); only the Debian
mirror is contacted ($MAILPREFLIGHT_VM_MIRROR, as tests/vm; default http://deb.debian.org/debian): nothing the tool
runs here probes the network. The host's dpkg/apt state is never touched: mmdebstrap runs in a private mount
namespace, each command in the root in its own mount and PID namespace with its own /proc, so no mount outlives a
command, whatever happens. Measured on the 2-core machine on 2026-12-05 (load ~2 from other work), four runs: the
module takes 37-47 s, almost all of it the first test's setup (34 s in the timed run: the .deb build ~6 s when this
module is the first to ask for it, then mmdebstrap: bookworm's Essential set and apt, and apt-get installing the
.deb with 60 more packages, ~300 MB on disk); the six tests themselves take ~1.5 s and removing the root ~1 s.

Needs root, Debian's mmdebstrap (./bootstrap installs it) and the mirror; skips, saying why, elsewhere."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailpreflight import __version__

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "units/examples/opensuse-leap15-mail"
PROGRAM = "/usr/bin/mailpreflight"
MIRROR = os.environ.get("MAILPREFLIGHT_VM_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# Debian's default PATH for root: /usr/local first, where a decoy goes
ROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
            "HOME": "/root", "PYTHONDONTWRITEBYTECODE": "1"}
# what the source imports that Debian does not install with the package: the Recommends, used lazily
OPTIONAL_IMPORTS = {"guestfs": "python3-guestfs (Recommends; --image/--domain)"}
GUEST = "/srv/example"  # the example guest, copied into the root (the package does not ship it)
BUILD_TIMEOUT = 1800


def _mirror_problem() -> str | None:
    url = f"{MIRROR.rstrip('/')}/dists/{SUITE}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10):
            return None
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts; ValueError: not a URL
        return f"the Debian mirror cannot be reached ({url}: {exc}; set MAILPREFLIGHT_VM_MIRROR)"


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root: mmdebstrap --mode=root builds a Debian 12 root, the tool runs in it with chroot"
    if not Path("/etc/debian_version").exists():
        return "not a Debian system"
    for tool in ("mmdebstrap", "unshare", "chroot", "dpkg-deb"):
        if shutil.which(tool, path=HOST_PATH) is None:
            return f"{tool} not found (./bootstrap installs mmdebstrap)"
    return _mirror_problem()


def run(argv: list[str], timeout: float = 120, env: dict[str, str] | None = None,
        cwd: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@dataclass(frozen=True)
class CleanRoot:
    path: Path
    deb: Path
    apt_output: str  # what `apt-get install ./the.deb` printed inside the root
    new: tuple[str, ...]  # the packages apt-get said it installs ("The following NEW packages...")

    def run(self, argv: list[str], env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """argv inside the root: its own mount and PID namespace with a fresh /proc (gone with the command),
        a clean environment."""
        variables = [f"{k}={v}" for k, v in (env or ROOT_ENV).items()]
        return run(["unshare", "--mount", "--pid", "--fork", f"--mount-proc={self.path}/proc",
                    "chroot", str(self.path), "env", "-i", *variables, *argv], timeout=timeout,
                   env={"PATH": HOST_PATH, "LC_ALL": "C.UTF-8"}, cwd="/")


def _new_packages(apt_output: str) -> tuple[str, ...]:
    match = re.search(r"^The following NEW packages will be installed:\n((?:  .*\n)+)", apt_output, re.M)
    return tuple(match[1].split()) if match else ()


def _mounts_under(path: Path) -> list[str]:
    prefix = f"{path}/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [p for p in points if p == str(path) or p.startswith(prefix)]


def _mmdebstrap(argv: list[str], log: Path) -> int:
    """mmdebstrap in a private mount namespace (whatever it mounts is gone when it ends, also when it is
    killed); its whole process group is killed on timeout."""
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", *argv], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, "PATH": HOST_PATH, "LC_ALL": "C.UTF-8"})
        try:
            return process.wait(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise


@pytest.fixture(scope="module")
def clean_root(request: pytest.FixtureRequest) -> Iterator[CleanRoot]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    deb: Path = request.getfixturevalue("built_deb")  # built once per session (conftest.py)
    work = Path(tempfile.mkdtemp(prefix="mailpreflight-clean-root-"))
    root = work / "root"
    try:
        inside = f"/tmp/mailpreflight-deb/{deb.name}"  # where the .deb is in the root while apt installs it
        apt_log = work / "apt-install.log"
        started = time.monotonic()
        rc = _mmdebstrap(["mmdebstrap", "--mode=root", "--variant=apt", "--dpkgopt=force-unsafe-io",
                          f"--customize-hook=mkdir \"$1/tmp/mailpreflight-deb\" && "
                          f"cp {shlex.quote(str(deb))} \"$1\"{shlex.quote(inside)}",
                          # the user's command on a clean machine (README), without the Recommends: Depends only
                          f"--customize-hook=chroot \"$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y "
                          f"--no-install-recommends {shlex.quote(inside)} >{shlex.quote(str(apt_log))} 2>&1",
                          "--customize-hook=rm -r \"$1/tmp/mailpreflight-deb\"",
                          SUITE, str(root), MIRROR], work / "mmdebstrap.log")
        apt_output = apt_log.read_text(errors="replace") if apt_log.exists() else ""
        log = (work / "mmdebstrap.log").read_text(errors="replace")
        assert rc == 0, f"mmdebstrap exit {rc} after {time.monotonic() - started:.0f} s:\n{log[-3000:]}\n" \
                        f"apt-get install of the .deb in the root:\n{apt_output[-3000:]}"
        yield CleanRoot(root, deb, apt_output, _new_packages(apt_output))
    finally:
        leftover = _mounts_under(work)
        for point in reversed(leftover):  # none expected: every mount was in a namespace of its own
            run(["umount", "--lazy", point], env={"PATH": HOST_PATH})
        # --one-file-system: never into a mount that is still there
        run(["rm", "-rf", "--one-file-system", str(work)], timeout=600, env={"PATH": HOST_PATH})
        assert not leftover, f"mounts were left under {work}: {leftover}"


def _depends(deb: Path) -> list[str]:
    """The package names of the .deb's Depends (each alternative's first; without :any and versions)."""
    field = run(["dpkg-deb", "--field", str(deb), "Depends"], env={"PATH": HOST_PATH}).stdout
    return [re.split(r"[\s:(]", item.split("|")[0].strip(), maxsplit=1)[0] for item in field.split(",")]


def _third_party_imports() -> set[str]:
    """Every module the source imports that is neither the standard library nor mailpreflight."""
    found: set[str] = set()
    for path in (REPO / "src/mailpreflight").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            found.update(n for n in names if n.split(".")[0] not in sys.stdlib_module_names | {"mailpreflight"})
    return found


# ------------------------------------------------------------------------------- what apt installed
def test_apt_installed_the_depends_into_a_root_without_them(clean_root: CleanRoot) -> None:
    depends = _depends(clean_root.deb)
    assert "python3" in depends, depends
    # each one new: the root did not have it, so what runs below runs on what the Depends brought
    assert "mailpreflight" in clean_root.new, clean_root.apt_output[-3000:]
    assert set(depends) <= set(clean_root.new), (set(depends) - set(clean_root.new), clean_root.apt_output[-3000:])
    status = clean_root.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", "mailpreflight",
                             *depends])
    assert status.returncode == 0, status.stderr
    assert all(line.split()[1] == "ii" for line in status.stdout.splitlines()), status.stdout
    # Depends only: the Recommends (libguestfs's appliance) is not there
    assert "python3-guestfs" not in clean_root.new
    assert clean_root.run(["dpkg-query", "-W", "python3-guestfs"]).stdout.strip() in ("", "python3-guestfs")


def test_program_runs_on_debian_python3(clean_root: CleanRoot) -> None:
    shebang = (clean_root.path / PROGRAM.lstrip("/")).read_text().splitlines()[0]
    assert shebang == "#!/usr/bin/python3", shebang
    owner = clean_root.run(["dpkg-query", "-S", "/usr/bin/python3"])
    assert owner.returncode == 0 and owner.stdout.split(":")[0] in clean_root.new, owner.stdout + owner.stderr
    version = clean_root.run(["mailpreflight", "--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"mailpreflight {__version__}"


IMPORT_ALL = """
import importlib, json, pkgutil, sys
import mailpreflight
failed = {}
for module in [*sys.argv[1:], *(m.name for m in pkgutil.walk_packages(mailpreflight.__path__, "mailpreflight."))]:
    if module.endswith(".__main__"):
        continue
    try:
        importlib.import_module(module)
    except Exception as exc:
        failed[module] = repr(exc)
print(json.dumps({"file": mailpreflight.__file__, "failed": failed, "python": list(sys.version_info[:2])}))
"""


def test_every_module_and_library_imports(clean_root: CleanRoot) -> None:
    imports = _third_party_imports()
    optional = {name for name in imports if name.split(".")[0] in OPTIONAL_IMPORTS}
    assert optional == set(OPTIONAL_IMPORTS), optional  # the Recommends is still imported (lazily) somewhere
    needed = sorted(imports - optional)
    assert {"dns.query", "requests", "dbus"} <= set(needed), needed
    done = clean_root.run(["python3", "-c", IMPORT_ALL, *needed])
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["file"] == "/usr/lib/python3/dist-packages/mailpreflight/__init__.py", result
    assert result["python"] >= [3, 11], result
    assert not result["failed"], f"not importable with only the package's Depends installed (a Debian package " \
                                 f"missing from Depends in packaging/deb/debian/control?): {result['failed']}"
    # and the Recommends is really absent: the lazy import is what keeps the rest working without it
    absent = clean_root.run(["python3", "-c", "import guestfs"])
    assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, absent.stderr


# ------------------------------------------------------------------------------------ the tool at work
@pytest.fixture(scope="module")
def example(clean_root: CleanRoot) -> str:
    target = clean_root.path / GUEST.lstrip("/")
    shutil.copytree(EXAMPLE, target, symlinks=True)
    return GUEST


def _checkout(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The same command run from this checkout on the host (the venv's libraries), for comparison."""
    return run([sys.executable, "-m", "mailpreflight", *args],
               env={"PATH": HOST_PATH, "LC_ALL": "C.UTF-8", "PYTHONPATH": str(REPO / "src"),
                    "PYTHONDONTWRITEBYTECODE": "1"}, cwd="/")


def test_show_on_the_example_guest(clean_root: CleanRoot, example: str) -> None:
    done = clean_root.run(["mailpreflight", "show", "--root", example, "spamd.service", "--format", "json"])
    assert done.returncode == 0, done.stdout + done.stderr
    shown = json.loads(done.stdout)
    here = _checkout(["show", "--root", str(EXAMPLE), "spamd.service", "--format", "json"])
    assert here.returncode == 0, here.stderr
    assert shown == json.loads(here.stdout)
    assert [c["argv"] for c in shown["exec"]["ExecStartPre"]] == [["/bin/bash", "-c", "sa-update || true"]]


def test_deps_on_the_example_guest(clean_root: CleanRoot, example: str) -> None:
    done = clean_root.run(["mailpreflight", "deps", "--root", example])
    # 2: the example's spamd has the critical sa-update risk on purpose (README, bootstrap's demo)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "spamd.service" in done.stdout and "CRITICAL" in done.stdout and "sa-update" in done.stdout
    # word for word what the checkout says (Debian's python3 and libraries, not the venv's)
    here = _checkout(["deps", "--root", str(EXAMPLE)])
    assert here.returncode == 2 and done.stdout == here.stdout, here.stdout + here.stderr


def test_dropin_install_names_usr_bin(clean_root: CleanRoot) -> None:
    guest = clean_root.path / "srv/guest-dropin"
    shutil.copytree(EXAMPLE, guest, symlinks=True)
    # the guest has the package too (a drop-in written into a guest calls only what the guest has: its own
    # /usr/bin/mailpreflight here; fix/inguest.py)
    (guest / "usr/bin/mailpreflight").write_text("#!/usr/bin/python3\n")
    (guest / "usr/bin/mailpreflight").chmod(0o755)
    # another mailpreflight first on the root's PATH (/usr/local/bin, as pipx puts it): the drop-in must still
    # name the program that wrote it, /usr/bin/mailpreflight
    decoy = clean_root.path / "usr/local/bin/mailpreflight"
    decoy.write_text("#!/bin/sh\nexit 99\n")
    decoy.chmod(0o755)
    try:
        done = clean_root.run(["mailpreflight", "dropin", "install", "spamd.service", "--root", "/srv/guest-dropin"])
        assert done.returncode == 99  # the decoy: PATH really comes first
        done = clean_root.run([PROGRAM, "dropin", "install", "spamd.service", "--root", "/srv/guest-dropin"])
    finally:
        decoy.unlink()
    assert done.returncode == 0, done.stdout + done.stderr
    text = (guest / "etc/systemd/system/spamd.service.d/zz-mailpreflight.conf").read_text()
    assert f"# Installed by mailpreflight {__version__};" in text
    assert f'ExecStartPre=-{PROGRAM} guard --timeout 60 -- /bin/bash -c "sa-update || true"\n' in text, text
    # and the guard it names runs the wrapped command there (and tolerates its failure: the unit starts anyway)
    guarded = clean_root.run([PROGRAM, "guard", "--timeout", "5", "--", "/bin/sh", "-c", "exit 7"])
    assert guarded.returncode == 0 and "sh exited 7" in guarded.stderr, guarded.stdout + guarded.stderr
