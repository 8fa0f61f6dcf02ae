"""amavisd's config read statically (deps/amavis.py): the Perl that matters, what is too dynamic, the file
order. The real Debian files and amavisd's own Amavis::Conf are the oracle in
tests/integration/test_real_debian_fixes.py; here the grammar's corners."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.amavis import _statements, read_config
from mailpreflight.model import FoundCommand, Source

AMAVISD = FoundCommand("amavisd", ("/usr/sbin/amavisd", "foreground"), "ExecStart", Source("/u", 1), False)


def config(tmp_path: Path, files: dict[str, str], command: FoundCommand = AMAVISD) -> tuple[bool | None, str]:
    for path, text in files.items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    setting = read_config(RootFS(str(tmp_path)), command).network_tests
    return setting.value, setting.where


PACKAGE = "/usr/share/amavis/conf.d/20-package"
MODE = "/etc/amavis/conf.d/15-content_filter_mode"
USER = "/etc/amavis/conf.d/50-user"


@pytest.mark.parametrize(("files", "expected"), [
    ({PACKAGE: "@bypass_spam_checks_maps  = (1);  # DISABLE anti-spam code by default\n1;\n"},
     (False, f"{PACKAGE}:1")),
    ({PACKAGE: "@bypass_spam_checks_maps = (1);\n",
      MODE: "#@bypass_spam_checks_maps = (\n#   \\%bypass_spam_checks, \\@bypass_spam_checks_acl);\n"},
     (False, f"{PACKAGE}:1")),  # commented out: still off
    ({PACKAGE: "@bypass_spam_checks_maps = (1);\n",
      MODE: "@bypass_spam_checks_maps = (\n   \\%bypass_spam_checks, \\@bypass_spam_checks_acl);\n"},
     (True, f"{MODE}:1")),  # the later file wins
    ({PACKAGE: "@bypass_spam_checks_maps = (1);\n", USER: "@bypass_spam_checks_maps = (0);\n"},
     (True, f"{USER}:1")),
    ({USER: "@bypass_spam_checks_maps = ('0');\n$sa_local_tests_only = 1;\n"}, (False, f"{USER}:2")),
    ({USER: "@spam_scanners = ();\n"}, (False, f"{USER}:1")),
    ({USER: "=pod\n@bypass_spam_checks_maps = (1);\n=cut\n$x = 'a;b # not a comment';\n"},
     (True, "amavisd default")),
    ({USER: "__END__\n@bypass_spam_checks_maps = (1);\n"}, (True, "amavisd default")),
    ({USER: "$banned_filename_re = new_RE(qr'^\\.(exe|com)$'i, qr{[;#]}x);\n@bypass_spam_checks_maps = (1);\n"},
     (False, f"{USER}:2")),  # quote-like operators hold ; and #
])
def test_read_statically(tmp_path: Path, files: dict[str, str], expected: tuple[bool | None, str]) -> None:
    assert config(tmp_path, files) == expected


@pytest.mark.parametrize("text", [
    "@bypass_spam_checks_maps = (-e '/etc/amavis/off');\n",  # a value known only when it runs
    "if (-e '/etc/amavis/off') { @bypass_spam_checks_maps = (1); }\n",  # inside a block
    "push @bypass_spam_checks_maps, 1;\n",
    "@bypass_spam_checks_maps = @my_maps;\n",
    "$sa_local_tests_only = $ENV{LOCAL};\n",
    "include_config_files('/etc/amavis/local.conf');\n",  # amavisd runs it there: not followed
])
def test_too_dynamic_is_unknown(tmp_path: Path, text: str) -> None:
    value, where = config(tmp_path, {USER: text})
    assert value is None and where == f"{USER}:1"


def test_files_of_the_command_line_and_upstream(tmp_path: Path) -> None:
    files = {"/etc/amavisd.conf": "@bypass_spam_checks_maps = (1);\n", "/srv/a.conf": "$sa_local_tests_only = 0;\n",
             USER: "@bypass_spam_checks_maps = (1);\n"}
    explicit = FoundCommand("amavisd", ("/usr/sbin/amavisd", "-c", "/srv/a.conf"), "ExecStart", Source("/u", 1),
                            False)
    assert config(tmp_path, files, explicit) == (True, "amavisd default")  # only -c's file is read
    upstream = tmp_path / "upstream"
    assert config(upstream, {"/etc/amavisd.conf": "@bypass_spam_checks_maps = (1);\n"}) == (
        False, "/etc/amavisd.conf:1")


def test_run_parts_names_only(tmp_path: Path) -> None:
    assert config(tmp_path, {USER: "@bypass_spam_checks_maps = (0);\n",
                             "/etc/amavis/conf.d/60-local.conf": "@bypass_spam_checks_maps = (1);\n",
                             "/etc/amavis/conf.d/70-x.dpkg-old": "@bypass_spam_checks_maps = (1);\n"}) == (
        True, f"{USER}:1")  # names with a dot are not run-parts names: amavisd never reads them


def test_statement_lines() -> None:
    text = "use strict;\n\n# c\n@a = (1,\n  2);\n$x = { k => 1 }\n$y = 1;\n"
    assert [line for line, _ in _statements(text)] == [1, 4, 6, 7]
