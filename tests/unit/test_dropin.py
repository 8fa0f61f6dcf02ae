"""`dropin`: generated Exec text round-trips through systemd's rules; install is atomic, idempotent, backed up
and reversible; nothing is written outside /etc or through a symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.errors import MailpreflightError
from mailpreflight.fix import dropin
from mailpreflight.model import Source
from mailpreflight.units.execline import parse_exec
from mailpreflight.units.loader import UnitLoader
from mailpreflight.units.specifiers import Expander, system_manager
from mailpreflight.units.unitname import parse_unit_name

PROGRAM = "/opt/mailpreflight/bin/mailpreflight"
SPAMD = ('[Service]\nExecStartPre=/usr/bin/mkdir -p /run/spamd\nExecStartPre=/bin/bash -c "sa-update || true"\n'
         "ExecStart=/usr/sbin/spamd\n")
DROPIN = "/etc/systemd/system/spamd.service.d/zz-mailpreflight.conf"


def parse_back(line: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    name = parse_unit_name("x.service")
    assert name is not None
    result = parse_exec("ExecStartPre", line, Source("/x", 1), Expander(name, system_manager({})), [])
    assert result.error is None and len(result.commands) == 1, (line, result)
    return result.commands[0].argv, result.commands[0].prefixes


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                        max_size=12), max_size=6))
def test_generated_exec_text_parses_back_to_the_same_argv(argv: list[str]) -> None:
    words = [PROGRAM, "guard", "--", *argv]
    parsed, prefixes = parse_back(dropin.exec_line("-", words))
    assert list(parsed) == words and prefixes == ("-",)


@pytest.mark.parametrize("word", ["%n", "$SPAMD_ARGS", "${X}", ";", "a;b", "\\", '"', "'", "", " ", "\\;", "%%"])
def test_tricky_words(word: str) -> None:
    assert parse_back(dropin.exec_line("", ["/bin/x", word]))[0] == ("/bin/x", word)


def root(tmp_path: Path, unit: str = SPAMD, **extra: object) -> UnitLoader:
    """A guest with coreutils' timeout, and mailpreflight where PROGRAM says (what the drop-in calls must
    exist in the root it runs in: MP114)."""
    make_tree(tmp_path, {"/etc/os-release": "ID=opensuse-leap\n", "/usr/lib/systemd/system/spamd.service": unit,
                         PROGRAM: "", "/usr/bin/timeout": "", **extra})
    for program in (PROGRAM, "/usr/bin/timeout"):
        (tmp_path / program.lstrip("/")).chmod(0o755)
    return UnitLoader(RootFS(str(tmp_path)))


def test_install_wraps_only_the_network_command(tmp_path: Path) -> None:
    change = dropin.install(root(tmp_path), "spamd", 100, dry_run=False, program=PROGRAM)
    assert change.changed and change.path == DROPIN
    text = (tmp_path / DROPIN.lstrip("/")).read_text()
    assert text.startswith(dropin.MARKER)
    unit = UnitLoader(RootFS(str(tmp_path))).load("spamd")
    pre = unit.exec["ExecStartPre"]
    assert [c.argv for c in pre] == [("/usr/bin/mkdir", "-p", "/run/spamd"),
                                     (PROGRAM, "guard", "--timeout", "100", "--", "/bin/bash", "-c",
                                      "sa-update || true")]
    assert pre[1].prefixes == ("-",) and pre[0].prefixes == ()
    assert {a.value for a in unit.values("Unit", "Wants")} == {"network-online.target"}
    # 100 s guard + 5 s grace + 3 s of the guard's diagnosis + margin does not fit the default 90 s: raised
    assert unit.last("Service", "TimeoutStartSec").value == "118"  # type: ignore[union-attr]
    assert "/usr/lib/systemd/system/spamd.service:3" in text  # says what it changed, from where


def test_install_is_idempotent_and_remove_restores(tmp_path: Path) -> None:
    loader_args = (tmp_path,)
    dropin.install(root(*loader_args), "spamd", 60, dry_run=False, program=PROGRAM)
    before = (tmp_path / DROPIN.lstrip("/")).read_text()
    again = dropin.install(UnitLoader(RootFS(str(tmp_path))), "spamd", 60, dry_run=False, program=PROGRAM)
    assert not again.changed and (tmp_path / DROPIN.lstrip("/")).read_text() == before
    gone = dropin.remove(UnitLoader(RootFS(str(tmp_path))), "spamd", dry_run=False)
    assert gone.changed and not (tmp_path / DROPIN.lstrip("/")).exists()
    assert not (tmp_path / "etc/systemd/system/spamd.service.d").exists()


def test_a_previous_file_of_the_same_name_is_kept_and_restored(tmp_path: Path) -> None:
    mine = "[Service]\nNice=5\n"
    loader = root(tmp_path, **{DROPIN: mine})
    change = dropin.install(loader, "spamd", 60, dry_run=False, program=PROGRAM)
    assert any("kept as" in m for m in change.messages)
    assert (tmp_path / (DROPIN.lstrip("/") + dropin.BACKUP_SUFFIX)).read_text() == mine
    dropin.remove(UnitLoader(RootFS(str(tmp_path))), "spamd", dry_run=False)
    assert (tmp_path / DROPIN.lstrip("/")).read_text() == mine
    assert not (tmp_path / (DROPIN.lstrip("/") + dropin.BACKUP_SUFFIX)).exists()


def test_dry_run_prints_a_diff_and_writes_nothing(tmp_path: Path) -> None:
    change = dropin.install(root(tmp_path), "spamd", 30, dry_run=True, program=PROGRAM)
    assert not change.changed and change.diff.startswith("--- /dev/null\n+++ b" + DROPIN)
    assert "+ExecStartPre=-/opt/mailpreflight/bin/mailpreflight guard --timeout 30 --" in change.diff
    assert not (tmp_path / DROPIN.lstrip("/")).exists()


def test_refuses_symlinks_and_warns_about_later_dropins(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    loader = root(tmp_path, **{"/etc/systemd/system/spamd.service.d": {"symlink": "/elsewhere"}})
    with pytest.raises(MailpreflightError, match="symlink"):
        dropin.install(loader, "spamd", 60, dry_run=False, program=PROGRAM)
    assert os.listdir(tmp_path / "elsewhere") == []
    other = tmp_path / "b"
    loader = root(other, **{"/etc/systemd/system/spamd.service.d/zzz-late.conf": "[Service]\nNice=1\n"})
    change = dropin.install(loader, "spamd", 60, dry_run=True, program=PROGRAM)
    assert any("zzz-late.conf sorts after" in m for m in change.messages)


def test_show_tells_whether_the_dropin_is_current(tmp_path: Path) -> None:
    dropin.install(root(tmp_path), "spamd", 60, dry_run=False, program=PROGRAM)
    text, current = dropin.show(UnitLoader(RootFS(str(tmp_path))), "spamd", program=PROGRAM)
    assert current is True and text.startswith(dropin.MARKER)
    vendor = tmp_path / "usr/lib/systemd/system/spamd.service"
    vendor.write_text(vendor.read_text().replace("sa-update || true", "sa-update -v || true"))
    _, current = dropin.show(UnitLoader(RootFS(str(tmp_path))), "spamd", program=PROGRAM)
    assert current is False  # the vendor unit changed on upgrade


def test_nothing_to_guard(tmp_path: Path) -> None:
    with pytest.raises(MailpreflightError, match="nothing to guard"):
        dropin.install(root(tmp_path, "[Service]\nExecStart=/usr/sbin/spamd\n"), "spamd", 60, False, PROGRAM)


def test_remove_leaves_foreign_files_alone(tmp_path: Path) -> None:
    loader = root(tmp_path, **{DROPIN: "[Service]\nNice=5\n"})
    with pytest.raises(MailpreflightError, match="not written by mailpreflight"):
        dropin.remove(loader, "spamd", dry_run=False)


def test_reload_reports_instead_of_failing_when_systemd_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailpreflight.live.backend import BackendError
    from mailpreflight.live.reload import daemon_reload

    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/mailpreflight-test-bus")
    with pytest.raises(BackendError, match="run `systemctl daemon-reload` yourself"):
        daemon_reload()


def test_cli_dropin_cycle(tmp_path: Path) -> None:
    import subprocess
    import sys

    root(tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mailpreflight", "dropin", *args, "--root", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)

    dry = cli("install", "spamd", "--dry-run")
    # inside a root without mailpreflight at a standard path: coreutils' timeout, no host path (fix/inguest.py)
    assert dry.returncode == 0 and "+ExecStartPre=-/usr/bin/timeout --kill-after=5 60 /bin/bash -c" in dry.stdout
    assert sys.executable.rsplit("/", 2)[0] not in dry.stdout and "written form:" in dry.stderr
    assert not (tmp_path / DROPIN.lstrip("/")).exists()
    assert cli("install", "spamd").returncode == 0 and (tmp_path / DROPIN.lstrip("/")).exists()
    shown = cli("show", "spamd")
    assert shown.returncode == 0 and shown.stdout.rstrip().endswith("# current")
    assert cli("remove", "spamd").returncode == 0 and not (tmp_path / DROPIN.lstrip("/")).exists()
    missing = cli("install", "nothere")
    assert missing.returncode == 3 and "Traceback" not in missing.stderr


def test_unchanged_lines_keep_their_prefixes_and_argv0(tmp_path: Path) -> None:
    unit = ("[Service]\nExecStartPre=@/usr/bin/install x-install -d /run/spamd\nExecStartPre=+-/bin/true\n"
            "ExecStartPre=/bin/bash -c \"sa-update || true\"\nExecStart=/usr/sbin/spamd\n")
    dropin.install(root(tmp_path, unit), "spamd", 60, dry_run=False, program=PROGRAM)
    pre = UnitLoader(RootFS(str(tmp_path))).load("spamd").exec["ExecStartPre"]
    assert [(c.path, c.argv, c.prefixes) for c in pre[:2]] == [
        ("/usr/bin/install", ("x-install", "-d", "/run/spamd"), ("@",)), ("/bin/true", ("/bin/true",), ("+", "-"))]
