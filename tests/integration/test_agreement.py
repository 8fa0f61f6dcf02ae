"""`mailpreflight show` must agree with systemd itself: the same units are loaded into a real systemd
(user manager, real D-Bus) and our JSON is compared with its D-Bus properties, through both bindings.

What the user manager can express is compared: Exec* argv/path/ignore flag/prefix flags, FragmentPath,
DropInPaths, LoadState (masked, bad-setting), Id. The system search path is mapped onto the user
manager's directories of the same rank (/etc/systemd/system -> ~/.config/systemd/user, ...).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from systemd_lab import UserManagerLab

from helpers import CORPUS, corpus_cases
from mailpreflight.access.rootfs import RootFS
from mailpreflight.render.show import unit_to_json
from mailpreflight.units.execline import EXEC_KEYS, PREFIX_FLAGS
from mailpreflight.units.loader import UnitLoader
from mailpreflight.units.searchpath import user_search_paths
from mailpreflight.units.specifiers import user_manager
from mailpreflight.units.view import show_view

BINDINGS = ("pystemd", "dbus-python")


def lab_dirs(lab: UserManagerLab) -> dict[str, Path]:
    """System unit dirs -> the user manager's dirs of the same rank."""
    env = lab.env
    return {
        "/etc/systemd/system.control": Path(env["XDG_CONFIG_HOME"], "systemd/user.control"),
        "/run/systemd/system.control": Path(env["XDG_RUNTIME_DIR"], "systemd/user.control"),
        "/etc/systemd/system": Path(env["XDG_CONFIG_HOME"], "systemd/user"),
        "/run/systemd/system": Path(env["XDG_RUNTIME_DIR"], "systemd/user"),
        "/usr/local/lib/systemd/system": Path(env["XDG_DATA_HOME"], "systemd/user"),
        "/lib/systemd/system": Path(env["XDG_DATA_HOME"], "systemd/user"),
        "/usr/lib/systemd/system": Path(env["XDG_DATA_HOME"], "systemd/user"),
    }


@pytest.fixture
def lab(systemd_lab: UserManagerLab) -> Iterator[UserManagerLab]:
    """The lab, with every unit dir emptied of what the test wrote, and reloaded, afterwards."""
    dirs = set(lab_dirs(systemd_lab).values())
    before = {d: set(os.listdir(d)) if d.exists() else set() for d in dirs}
    yield systemd_lab
    for directory in dirs:
        if not directory.exists():
            continue
        for entry in set(os.listdir(directory)) - before[directory]:
            path = directory / entry
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    systemd_lab.reload()


def our_loader(lab: UserManagerLab) -> UnitLoader:
    me = pwd.getpwuid(os.getuid())
    user = {"u": me.pw_name, "U": str(me.pw_uid), "g": me.pw_name, "G": str(me.pw_gid), "s": me.pw_shell}
    return UnitLoader(RootFS("/"), search_paths=lab.unit_paths(), manager=user_manager(lab.env, user, {}))


def install_tree(lab: UserManagerLab, root: Path) -> None:
    """Copy the unit dirs of a guest root into the lab; absolute links into unit dirs are re-pointed."""
    mapping = lab_dirs(lab)
    for system_dir, user_dir in mapping.items():
        source = root / system_dir.lstrip("/")
        if not source.is_dir() or source.is_symlink():
            continue
        for path in sorted(source.rglob("*")):
            target = user_dir / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                link = os.readlink(path)
                for old, new in mapping.items():
                    if link.startswith(old + "/"):
                        link = str(new) + link[len(old):]
                if not target.exists() and not target.is_symlink():
                    os.symlink(link, target)
            elif path.is_file() and not target.exists():
                shutil.copyfile(path, target)


def write_units(lab: UserManagerLab, tree: dict[str, str | dict[str, str]]) -> None:
    mapping = lab_dirs(lab)
    for guest, content in tree.items():
        system_dir = next(d for d in sorted(mapping, key=len, reverse=True) if guest.startswith(d + "/"))
        path = mapping[system_dir] / guest[len(system_dir) + 1:]
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            os.symlink(content["symlink"], path)
        else:
            path.write_bytes(content.encode("utf-8", "surrogateescape"))


def systemd_view(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": props["Id"],
        "load_state": props["LoadState"],
        "fragment_path": props["FragmentPath"] or None,
        "dropin_paths": props["DropInPaths"],
        "exec": {k: [{"path": c["path"], "argv": c["argv"], "ignore": c["ignore"], "flags": sorted(c["flags"])}
                     for c in v] for k, v in props["exec"].items() if v},
    }


def our_view(lab: UserManagerLab, name: str) -> dict[str, Any]:
    shown = unit_to_json(show_view(our_loader(lab).load(name)))
    # "@" has no D-Bus flag: systemd expresses it only through argv.
    flags = {p: f for p, f in PREFIX_FLAGS.items() if p != "@"}
    exec_ = {} if shown["load_state"] != "loaded" else {
        key: [{"path": c["path"], "argv": c["argv"], "ignore": c["ignore_failure"],
               "flags": sorted(flags[p] for p in c["prefixes"] if p in flags)} for c in cmds]
        for key, cmds in shown["exec"].items()}
    return {"id": shown["name"], "load_state": shown["load_state"], "fragment_path": shown["fragment_path"],
            "dropin_paths": shown["dropin_paths"], "exec": exec_}


def assert_agree(lab: UserManagerLab, name: str) -> dict[str, Any]:
    ours = our_view(lab, name)
    for binding in BINDINGS:
        theirs = systemd_view(lab.properties(name, binding))
        assert ours == theirs, f"{name} via {binding}"
    return ours


def test_search_path_is_systemds(systemd_lab: UserManagerLab) -> None:
    env = {**systemd_lab.env, **{k: v for k, v in os.environ.items() if k in ("XDG_DATA_DIRS", "XDG_CONFIG_DIRS")}}
    assert user_search_paths(env) == systemd_lab.unit_paths()


REALISTIC = sorted(p for p in (CORPUS / "realistic").iterdir() if (p / "expect.json").exists())


@pytest.mark.parametrize("case", REALISTIC, ids=[p.name for p in REALISTIC])
def test_realistic_units_agree(lab: UserManagerLab, case: Path) -> None:
    name = json.loads((case / "expect.json").read_text())["unit"]
    install_tree(lab, case / "root")
    lab.reload()
    assert_agree(lab, name)


EXEC_CASES = [c for c in corpus_cases("execline.json") if not c.get("expand")]


def test_execline_corpus_agrees(lab: UserManagerLab) -> None:
    """Every Exec= case of the corpus, as a real unit: same argv, flags, or the same refusal."""
    names = []
    for index, case in enumerate(EXEC_CASES):
        unit = case.get("unit", "foo.service")
        stem, _, suffix = unit.rpartition(".")
        prefix, at, instance = stem.partition("@")
        name = f"mpx{index}-{prefix}{at}{instance}.{suffix}"
        template = f"mpx{index}-{prefix}@.{suffix}" if at else name
        write_units(lab, {f"/etc/systemd/system/{template}":
                          f"[Service]\nType=oneshot\nExecStart={case['value']}\n"})
        names.append((case["id"], name))
    lab.reload()
    mismatches = []
    for case_id, name in names:
        try:
            assert_agree(lab, name)
        except AssertionError as exc:
            mismatches.append(f"{case_id}: {exc}")
    assert not mismatches, "\n".join(mismatches)


LOADER_CASES: dict[str, tuple[str, dict[str, str | dict[str, str]]]] = {
    "alias-dropins": ("mpa-alias.service", {
        "/usr/lib/systemd/system/mpa-real.service": "[Service]\nExecStart=/bin/true\n",
        "/etc/systemd/system/mpa-alias.service": {"symlink": "@DATA@/mpa-real.service"},
        "/etc/systemd/system/mpa-alias.service.d/10-a.conf": "[Service]\nExecStartPre=/bin/a\n",
        "/etc/systemd/system/mpa-real.service.d/20-b.conf": "[Service]\nExecStartPre=-/bin/b\n",
    }),
    "instance-template-prefix": ("mpi-web-x@a\\x2db-c.service", {
        "/usr/lib/systemd/system/mpi-web-x@.service":
            "[Service]\nExecStart=/bin/echo %n %N %p %P %i %I %j %J %f %%\n",
        "/usr/lib/systemd/system/mpi-web-x@.service.d/10-t.conf": "[Service]\nExecStartPre=/bin/t\n",
        "/etc/systemd/system/mpi-web-x@a\\x2db-c.service.d/20-i.conf": "[Service]\nExecStartPre=/bin/i\n",
        "/etc/systemd/system/mpi-web-.service.d/30-p.conf": "[Service]\nExecStartPre=/bin/p\n",
        "/etc/systemd/system/mpi-@a\\x2db-c.service.d/40-q.conf": "[Service]\nExecStartPre=/bin/q\n",
    }),
    "dropin-hiding-and-masking": ("mph.service", {
        "/usr/lib/systemd/system/mph.service": "[Service]\nExecStartPre=/bin/one\nExecStart=/bin/true\n",
        "/usr/lib/systemd/system/mph.service.d/50-x.conf": "[Service]\nExecStartPre=/bin/usr-x\n",
        "/etc/systemd/system/mph.service.d/50-x.conf": "[Service]\nExecStartPre=/bin/etc-x\n",
        "/usr/lib/systemd/system/mph.service.d/60-m.conf": "[Service]\nExecStartPre=/bin/masked\n",
        "/etc/systemd/system/mph.service.d/60-m.conf": {"symlink": "/dev/null"},
        "/run/systemd/system/mph.service.d/10-reset.conf": "[Service]\nExecStartPre=\nExecStartPre=/bin/r\n",
        "/etc/systemd/system.control/mph.service.d/70-c.conf": "[Service]\nExecStartPost=/bin/c\n",
    }),
    "masked": ("mpm.service", {
        "/usr/lib/systemd/system/mpm.service": "[Service]\nExecStart=/bin/true\n",
        "/etc/systemd/system/mpm.service": {"symlink": "/dev/null"},
        "/etc/systemd/system/mpm.service.d/x.conf": "[Service]\nExecStartPre=/bin/x\n",
    }),
    "masked-empty": ("mpe.service", {
        "/usr/lib/systemd/system/mpe.service": "[Service]\nExecStart=/bin/true\n",
        "/etc/systemd/system/mpe.service": "",
    }),
    "linked-file": ("mpl.service", {
        "/etc/systemd/system/mpl.service": {"symlink": "@WORK@/elsewhere/mpl.service"},
    }),
    "bad-setting": ("mpb.service", {
        "/etc/systemd/system/mpb.service": "[Service]\nExecStart=/bin/echo \"unbalanced\n",
    }),
    "dropin-error-only-skips-that-dropin": ("mpd.service", {
        "/etc/systemd/system/mpd.service": "[Service]\nExecStart=/bin/true\n",
        "/etc/systemd/system/mpd.service.d/10-bad.conf": "[Service]\nExecStartPre=/bin/a\n"
                                                          "ExecStartPre=/bin/x \"oops\nExecStartPre=/bin/lost\n",
        "/etc/systemd/system/mpd.service.d/20-good.conf": "[Service]\nExecStartPre=/bin/b\n",
    }),
    "continuations-and-comments": ("mpc.service", {
        "/etc/systemd/system/mpc.service": "[Service]\nExecStart=/bin/sh -c 'echo a \\\n# inside\n  b' \\\n"
                                           "  ; /bin/echo \\; \"x\\ty\" %t/%u\n",
    }),
}


@pytest.mark.parametrize("case", sorted(LOADER_CASES))
def test_loader_cases_agree(lab: UserManagerLab, case: str) -> None:
    name, tree = LOADER_CASES[case]
    data_dir = str(lab_dirs(lab)["/usr/lib/systemd/system"])
    work = Path(lab.env["HOME"]).parent
    (work / "elsewhere").mkdir(exist_ok=True)
    (work / "elsewhere" / "mpl.service").write_text("[Service]\nExecStart=/bin/linked\n")
    resolved: dict[str, str | dict[str, str]] = {
        path: {"symlink": spec["symlink"].replace("@DATA@", data_dir).replace("@WORK@", str(work))}
        if isinstance(spec, dict) else spec for path, spec in tree.items()}
    write_units(lab, resolved)
    lab.reload()
    ours = assert_agree(lab, name)
    if case == "dropin-error-only-skips-that-dropin":
        assert ours["load_state"] == "loaded"
        assert [c["path"] for c in ours["exec"]["ExecStartPre"]] == ["/bin/a", "/bin/b"]


def test_exec_keys_are_the_contract() -> None:
    assert EXEC_KEYS == ("ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload",
                         "ExecStop", "ExecStopPost")
