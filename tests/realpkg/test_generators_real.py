"""units/generators.py against the real generators: the guest's own systemd-sysv-generator (systemd 252, from the
systemd .deb) and Debian's postfix-instance-generator (a shell script of the postfix .deb, with the package's
postconf), run as they would run at the guest's boot (guestview.py), on the real Debian 12 packages and on
roots written to reach every rule of sysv-generator.c. What they write must be what we model, byte for byte,
and both outputs loaded by our loader must give the same units."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import guestview
import pytest
from debroot import linked_copy

from mailpreflight.access.rootfs import RootFS
from mailpreflight.render.show import unit_to_json
from mailpreflight.units import generators
from mailpreflight.units.loader import UnitLoader
from mailpreflight.units.view import show_view

SYSV_GENERATOR = "/lib/systemd/system-generators/systemd-sysv-generator"
POSTFIX_GENERATOR = "/lib/systemd/system-generators/postfix-instance-generator"
HOST_SYSV_GENERATOR = Path("/lib/systemd/system-generators/systemd-sysv-generator")


def real_output(root: Path, program: str, tmp: Path) -> tuple[dict[str, bytes | str], str]:
    """Run the guest's generator; its output as guest path -> file bytes, or the link target (str)."""
    out = tmp / "out"
    done = guestview.run_generator(root, program, out, tmp)
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(out):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            guest = "/run/systemd/" + str(path.relative_to(out))
            if path.is_symlink():
                found[guest] = os.readlink(path)
            elif path.is_file():
                found[guest] = path.read_bytes()
    return found, f"exit {done.returncode}: {done.stderr[-2000:]}"


def our_output(root: Path, only: str) -> dict[str, bytes | str]:
    loader = UnitLoader(RootFS(str(root)))
    assert loader.generated is not None
    return {f.path: (f.data if f.data is not None else f.link or "") for f in loader.generated.files
            if f.generator == only}


def shown(loader: UnitLoader, name: str) -> dict[str, Any]:
    unit = loader.load(name)
    data = unit_to_json(show_view(unit))
    data.pop("generated_by")
    # everything systemd would act on: [Unit] dependencies, [Service] type, timeouts, exit statuses (as sets:
    # dependencies are, and fix_order() writes its Before=/After= in hash order)
    data["settings"] = sorted({(a.section, a.key, a.value) for a in unit.assignments})
    return data


def compare_loaded(root: Path, real: dict[str, bytes | str], tmp: Path | None, names: list[str], only: str) -> None:
    """Our loader on the real output (files in a copy's /run, generators off) and on our own output (the
    generated dirs replaced, whatever /run holds). `tmp` None: the root is the test's own, write into it."""
    copy = linked_copy(root, tmp / "copy") if tmp is not None else root
    for guest, content in real.items():
        path = copy / guest.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.symlink_to(content)
        else:
            path.write_bytes(content)
    theirs = UnitLoader(RootFS(str(copy)), run_generators=False)
    ours = UnitLoader(RootFS(str(root)))
    for name in names:
        assert json.dumps(shown(ours, name), indent=1) == json.dumps(shown(theirs, name), indent=1), name
        assert ours.load(name).generated_by == only
    # the default selection of deps/check/firewall: the same services (the other generator's aside)
    assert [n for n in ours.service_names() if ours.load(n).generated_by in (None, only)] == theirs.service_names()


# -- the real packages ---------------------------------------------------------------------------------------------
def test_sysv_generator_on_debian12(debian_root: Path, guest_view: None, tmp_path: Path) -> None:
    real, how = real_output(debian_root, SYSV_GENERATOR, tmp_path)
    ours = our_output(debian_root, generators.SYSV)
    assert {p: c for p, c in real.items()} == ours, how
    # Debian 12's mail packages that still ship only an init script (the rest have units of their own)
    units = sorted(p.rsplit("/", 1)[1] for p, c in ours.items() if isinstance(c, bytes))
    assert units == ["exim4.service", "fetchmail.service", "saslauthd.service"]
    compare_loaded(debian_root, real, tmp_path, units, generators.SYSV)


def test_postfix_instance_generator_on_debian12(debian_root: Path, guest_view: None, tmp_path: Path) -> None:
    """As installed (no main.cf yet: the postinst writes it): postconf fails, only the default instance."""
    real, how = real_output(debian_root, POSTFIX_GENERATOR, tmp_path)
    ours = our_output(debian_root, generators.POSTFIX)
    assert real == ours, how
    assert ours == {"/run/systemd/generator/postfix.service.wants/postfix@-.service":
                    "/lib/systemd/system/postfix@.service"}
    compare_loaded(debian_root, real, tmp_path, ["postfix@-.service"], generators.POSTFIX)


MAIN_CF_CASES = {
    "two-instances": ("multi_instance_enable = yes\nmulti_instance_directories = /etc/postfix-out\n"
                      "  /etc/postfix-in\n",
                      {"postfix-out": "multi_instance_name = postfix-out\n",
                       "postfix-in": "# the name\nmulti_instance_name = postfix-in\nmulti_instance_name = in\n"}),
    # the shell splits on blanks only: "/etc/postfix-out," is no directory, postconf fails, the name is ""
    "comma-separated": ("multi_instance_directories = /etc/postfix-out, /etc/postfix-in\n",
                        {"postfix-out": "multi_instance_name = postfix-out\n",
                         "postfix-in": "multi_instance_name = postfix-in\n"}),
    # two instances with the same name: the second `ln` fails and the script stops (set -e)
    "duplicate-name": ("multi_instance_directories = /etc/postfix-a /etc/postfix-b /etc/postfix-c\n",
                       {"postfix-a": "multi_instance_name = x\n", "postfix-b": "multi_instance_name = x\n",
                        "postfix-c": "multi_instance_name = c\n"}),
    # no $expansion without -x: "$dirs" is the word, no such directory
    "unexpanded": ("dirs = /etc/postfix-a\nmulti_instance_directories = $dirs\n",
                   {"postfix-a": "multi_instance_name = a\n"}),
    "no-name": ("multi_instance_directories = /etc/postfix-a\n", {"postfix-a": "myhostname = a\n"}),
}


@pytest.mark.parametrize("case", sorted(MAIN_CF_CASES))
def test_postfix_instance_generator_configured(debian_root: Path, guest_view: None, tmp_path: Path,
                                               case: str) -> None:
    """Debian's main.cf (the postinst's starting point, /usr/share/postfix/main.cf.debian) plus instances."""
    main_cf, instances = MAIN_CF_CASES[case]
    root = linked_copy(debian_root, tmp_path / "root")
    base = (debian_root / "usr/share/postfix/main.cf.debian").read_text(encoding="utf-8")
    (root / "etc/postfix/main.cf").write_text(base + main_cf, encoding="utf-8")  # a new file: not linked
    for name, text in instances.items():
        (root / "etc" / name).mkdir()
        (root / "etc" / name / "main.cf").write_text(text, encoding="utf-8")
    real, how = real_output(root, POSTFIX_GENERATOR, tmp_path / "run")
    ours = our_output(root, generators.POSTFIX)
    assert real == ours, how
    assert ("exit 1" in how) == (case == "duplicate-name"), how
    names = sorted(p.rsplit("/", 1)[1] for p in ours if p.endswith(".service") and "@." not in p)
    compare_loaded(root, real, None, names, generators.POSTFIX)


# -- every rule of sysv-generator.c, on scripts written for it ----------------------------------------------------
LSB = "### BEGIN INIT INFO\n{}### END INIT INFO\n"
SCRIPTS: dict[str, str] = {
    # LSB header: facilities, a target and a service alias in Provides, quoting, multi-line description
    "mta": "#!/bin/sh\n" + LSB.format(
        "# Provides:          mta mail-transport-agent $mail-transport-agent\n"
        "# Required-Start:    $remote_fs $syslog $named $network $time $portmap $local_fs\n"
        "# Should-Start:      postgresql 'my sql' foo.sh bar\\ baz $all\n"
        "# X-Start-Before:    $network other\n"
        "# X-Start-After:     late.sh\n"
        "# Default-Start:     2 3 4 5\n# Default-Stop:      0 1 6\n"
        "# Description:       first line\n#  second line\n#\tthird line\n# not a continuation\n")
    + 'case "$1" in start) ;; *) echo "Usage: $0 {start|stop|reload|restart}" ;; esac\n',
    # no short description: the long one; usage continued on a second line offers reload
    "longdesc": "#!/bin/sh\n" + LSB.format("# Description: only long\n#  and more\n# Provides: $network\n")
    + 'echo "Usage: $0 {start|stop|\\\n  reload}"\n',
    # chkconfig style (no LSB header): description with continuation, pidfile, start priorities ordering
    "old-a": "#!/bin/sh\n# chkconfig: 2345 20 80\n# description: an old script \\\n#   continued\n"
             "# pidfile: /run/old-a.pid\n",
    "old-b.sh": "#!/bin/sh\n# description: 100% old\n# pidfile: relative.pid\n",
    "mixed": "#!/bin/sh\n" + LSB.format("# Short-Description: has LSB\n"),
    "odd name": "#!/bin/sh\n" + LSB.format("# Short-Description: blank in the name\n"),
    "weird.target": "#!/bin/sh\n# a name that is a unit name already\n",
    "no-header": "#!/bin/sh\nexit 0\n",
    "native": "#!/bin/sh\n" + LSB.format("# Short-Description: has a unit file\n"),
    "masked": "#!/bin/sh\n# its unit is masked\n",
    "aliased": "#!/bin/sh\n# an alias of another unit has its name\n",
    "exim4.dpkg-old": "#!/bin/sh\n# a backup\n",
    ".hidden": "#!/bin/sh\n",
    "backup~": "#!/bin/sh\n",
}


def edge_root(root: Path) -> Path:
    for name in ("bin", "sbin", "lib"):  # merged /usr, as every Debian 12 system
        (root / "usr" / name).mkdir(parents=True)
        (root / name).symlink_to(f"usr/{name}")
    init = root / "etc/init.d"
    init.mkdir(parents=True)
    for name, text in SCRIPTS.items():
        (init / name).write_text(text, encoding="utf-8")
        (init / name).chmod(0o755)
    (init / "not-executable").write_text("#!/bin/sh\n", encoding="utf-8")
    (init / "linked").symlink_to("mixed")  # followed: a unit of its own name
    (init / "dangling").symlink_to("nowhere")
    links = {"rc2.d": ["S20old-a", "S30old-b.sh", "S01mta", "S05mixed", "K01longdesc", "S99native"],
             "rc1.d": ["S01old-a"], "rc3.d": ["S20old-a", "S1x-bad"], "rc5.d": ["S01mta", "S02odd name"],
             "rc0.d": ["S01mixed"], "rc4.d": ["S01.hidden", "Sab"]}
    for directory, names in links.items():
        (root / "etc" / directory).mkdir()
        for name in names:
            (root / "etc" / directory / name).symlink_to(f"../init.d/{name[3:]}")
    units = root / "lib/systemd/system"
    units.mkdir(parents=True)
    (units / "native.service").write_text("[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    (units / "real.service").write_text("[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    etc_units = root / "etc/systemd/system"
    etc_units.mkdir(parents=True)
    (etc_units / "masked.service").symlink_to("/dev/null")
    (etc_units / "aliased.service").symlink_to("/lib/systemd/system/real.service")
    # the guest's systemd has the generator (the host's copy: systemd 252, the same build as the .deb's)
    generator = root / SYSV_GENERATOR.lstrip("/")
    generator.parent.mkdir(parents=True)
    shutil.copy2(HOST_SYSV_GENERATOR, generator)
    generator.chmod(generator.stat().st_mode | stat.S_IXUSR)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n', encoding="utf-8")
    return root


def test_sysv_generator_rules(guest_view: None, tmp_path: Path) -> None:
    if not HOST_SYSV_GENERATOR.exists():
        pytest.skip(f"{HOST_SYSV_GENERATOR} is not installed (systemd-sysv)")
    root = edge_root(tmp_path / "root")
    real, how = real_output(root, SYSV_GENERATOR, tmp_path / "run")
    ours = our_output(root, generators.SYSV)
    assert set(real) == set(ours), how
    for path in real:
        # fix_order() appends in hash order: compare the lines of a file as a multiset, the rest exactly
        theirs, mine = real[path], ours[path]
        if isinstance(theirs, bytes) and isinstance(mine, bytes):
            assert sorted(theirs.splitlines()) == sorted(mine.splitlines()), path
            assert [line for line in theirs.splitlines() if not line.startswith((b"Before=", b"After="))] == \
                [line for line in mine.splitlines() if not line.startswith((b"Before=", b"After="))], path
        else:
            assert theirs == mine, path
    generated = sorted(p.rsplit("/", 1)[1] for p, c in ours.items() if isinstance(c, bytes))
    assert "native.service" not in generated and "masked.service" not in generated
    assert "aliased.service" not in generated and "exim4.dpkg-old.service" not in generated
    compare_loaded(root, real, None, [n for n in generated if n.endswith(".service")], generators.SYSV)
