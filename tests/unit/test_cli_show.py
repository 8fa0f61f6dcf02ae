"""`mailpreflight show` as an admin runs it: the console script, its output, its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import make_tree

EXAMPLE = Path(__file__).resolve().parents[2] / "units" / "examples" / "opensuse-leap15-mail"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailpreflight", *args], capture_output=True, text=True,
                          timeout=60)


def test_show_example_json_contract() -> None:
    proc = run("show", "--root", str(EXAMPLE), "spamd.service", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    for key in ("name", "fragment_path", "dropin_paths", "masked", "load_error", "exec"):
        assert key in shown
    assert shown["name"] == "spamd.service"
    assert shown["fragment_path"] == "/usr/lib/systemd/system/spamd.service"  # as the guest sees it
    assert shown["dropin_paths"] == ["/etc/systemd/system/spamd.service.d/10-local.conf"]
    pre = shown["exec"]["ExecStartPre"]
    assert [c["argv"] for c in pre] == [["/bin/bash", "-c", "sa-update || true"]]
    assert pre[0]["ignore_failure"] is False and pre[0]["prefixes"] == []
    assert pre[0]["source"].startswith("/usr/lib/systemd/system/spamd.service:")
    assert str(EXAMPLE) not in proc.stdout


def test_show_example_text_is_cat_then_commands() -> None:
    proc = run("show", "--root", str(EXAMPLE), "spamd")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# /usr/lib/systemd/system/spamd.service\n")
    assert "# /etc/systemd/system/spamd.service.d/10-local.conf" in proc.stdout
    assert 'ExecStartPre       /bin/bash -c "sa-update || true"' in proc.stdout


def test_expand_env_reads_the_guests_sysconfig() -> None:
    proc = run("show", "--root", str(EXAMPLE), "spamd", "--format", "json", "--expand-env")
    shown = json.loads(proc.stdout)
    start = shown["exec"]["ExecStart"][0]
    assert "$SPAMD_ARGS" in start["argv"]
    assert "$SPAMD_ARGS" not in start["argv_expanded"]
    assert "SPAMD_ARGS" in shown["exec_environment"]["variables"]


def test_masked_unit() -> None:
    proc = run("show", "--root", str(EXAMPLE), "amavis.service", "--format", "json")
    shown = json.loads(proc.stdout)
    assert proc.returncode == 0 and shown["masked"] is True and shown["exec"] == {}


def test_unknown_unit_lists_dirs_and_exits_unknown(tmp_path: Path) -> None:
    proc = run("show", "--root", str(tmp_path), "nope.service")
    assert proc.returncode == 3
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0] and "/etc/systemd/system" in lines[0]


def test_bad_setting_names_file_and_line(tmp_path: Path) -> None:
    make_tree(tmp_path, {"/etc/systemd/system/x.service": "[Service]\nExecStart=/bin/echo 'open\n"})
    proc = run("show", "--root", str(tmp_path), "x.service")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "/etc/systemd/system/x.service:2: Unbalanced quoting" in proc.stderr


def test_usage_errors_are_unknown() -> None:
    assert run("show").returncode == 3
    assert run("frobnicate").returncode == 3
    assert run("--version").returncode == 0


def test_missing_root_is_one_line(tmp_path: Path) -> None:
    proc = run("show", "--root", str(tmp_path / "absent"), "spamd")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
