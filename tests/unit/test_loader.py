"""Finding units under a root: search order, masks, aliases, templates, drop-ins (systemd 252 rules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import make_tree
from mailpreflight.access.rootfs import READ_LIMIT, RootFS
from mailpreflight.errors import MailpreflightError, UnitNotFoundError
from mailpreflight.units.loader import LoadState, UnitLoader
from mailpreflight.units.searchpath import system_search_paths, systemd_version

SIMPLE = "[Service]\nExecStart=/bin/true\n"
USR = "/usr/lib/systemd/system"
ETC = "/etc/systemd/system"


def loader(root: Path) -> UnitLoader:
    return UnitLoader(RootFS(str(root)), search_paths=system_search_paths(split_usr=True), version=252)


def test_etc_overrides_usr(tmp_path: Path) -> None:
    make_tree(tmp_path, {f"{USR}/a.service": SIMPLE, f"{ETC}/a.service": "[Service]\nExecStart=/bin/etc\n"})
    unit = loader(tmp_path).load("a.service")
    assert unit.fragment_path == f"{ETC}/a.service"
    assert unit.exec["ExecStart"][0].argv == ("/bin/etc",)


def test_debian_lib_before_usr_lib(tmp_path: Path) -> None:
    make_tree(tmp_path, {f"{USR}/a.service": SIMPLE, "/lib/systemd/system/a.service": SIMPLE})
    assert loader(tmp_path).load("a").fragment_path == "/lib/systemd/system/a.service"


@pytest.mark.parametrize("target", ["/dev/null", "../../../dev/null"])
def test_mask_by_dev_null_link(tmp_path: Path, target: str) -> None:
    make_tree(tmp_path, {f"{USR}/a.service": SIMPLE, f"{ETC}/a.service": {"symlink": target}})
    unit = loader(tmp_path).load("a.service")
    assert unit.load_state is LoadState.MASKED and unit.masked
    assert unit.fragment_path == f"{ETC}/a.service"
    assert unit.exec == {}


def test_mask_by_empty_file(tmp_path: Path) -> None:
    make_tree(tmp_path, {f"{USR}/a.service": SIMPLE, f"{ETC}/a.service": ""})
    assert loader(tmp_path).load("a.service").masked


def test_an_empty_file_masks_as_its_read_tells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed regular fragment is not lstat()ed for its size: its read says it is empty. The drop-ins of a masked
    unit are still listed, and none is read; a fragment that cannot be read is an error, not a mask, and is read
    once."""
    make_tree(tmp_path, {f"{ETC}/a.service": "", f"{ETC}/a.service.d/x.conf": "[Service]\nExecStart=/bin/x\n",
                         f"{ETC}/b.service": "#\n"})
    with open(tmp_path / ETC.lstrip("/") / "c.service", "wb") as big:
        big.truncate(READ_LIMIT + 1)  # more than the gate reads: refused
    units = loader(tmp_path)
    read: list[str] = []
    read_bytes = type(units.fs).read_bytes

    def counted(fs: RootFS, guest: str, limit: int = READ_LIMIT) -> bytes:
        read.append(guest)
        return read_bytes(fs, guest, limit)

    monkeypatch.setattr(type(units.fs), "read_bytes", counted)
    a = units.load("a.service")
    assert a.load_state is LoadState.MASKED and a.dropin_paths == (f"{ETC}/a.service.d/x.conf",) and a.exec == {}
    assert not units.load("b.service").masked  # a comment only: not empty
    c = units.load("c.service")
    assert c.load_state is LoadState.ERROR and not c.masked and "larger than" in str(c.load_error)
    assert read.count(f"{ETC}/c.service") == 1 and f"{ETC}/a.service.d/x.conf" not in read


def test_absolute_link_resolves_inside_root_never_outside(tmp_path: Path) -> None:
    # /etc/passwd exists on the host; inside the root it does not: the link must not reach the host.
    make_tree(tmp_path, {f"{ETC}/a.service": {"symlink": "/opt/units/a.service"},
                         "/opt/units/a.service": "[Service]\nExecStart=/opt/bin/a\n",
                         f"{ETC}/b.service": {"symlink": "/../../../../etc/passwd"}})
    fs_loader = loader(tmp_path)
    unit = fs_loader.load("a.service")
    assert unit.fragment_path == f"{ETC}/a.service"  # a linked unit file is reported by its link
    assert unit.exec["ExecStart"][0].path == "/opt/bin/a"
    with pytest.raises(MailpreflightError):
        fs_loader.load("b.service")


def test_alias_symlink_shares_dropins(tmp_path: Path) -> None:
    make_tree(tmp_path, {
        f"{USR}/spamd.service": SIMPLE,
        f"{ETC}/spamassassin.service": {"symlink": f"{USR}/spamd.service"},
        f"{ETC}/spamassassin.service.d/10-a.conf": "[Service]\nExecStartPre=/bin/a\n",
        f"{ETC}/spamd.service.d/20-b.conf": "[Service]\nExecStartPre=/bin/b\n",
    })
    unit = loader(tmp_path).load("spamassassin.service")
    assert unit.id == "spamd.service"
    assert set(unit.names) == {"spamd.service", "spamassassin.service"}
    assert [c.path for c in unit.exec["ExecStartPre"]] == ["/bin/a", "/bin/b"]


def test_instance_uses_template_and_both_dropin_dirs(tmp_path: Path) -> None:
    make_tree(tmp_path, {
        f"{USR}/postfix@.service": "[Service]\nExecStart=/usr/sbin/postmulti -i %i -p start %I %j\n",
        f"{USR}/postfix@.service.d/10-t.conf": "[Service]\nExecStartPre=/bin/t\n",
        f"{ETC}/postfix@-.service.d/20-i.conf": "[Service]\nExecStartPre=/bin/i\n",
    })
    unit = loader(tmp_path).load("postfix@-.service")
    assert unit.id == "postfix@-.service"
    assert unit.fragment_path == f"{USR}/postfix@.service"
    assert unit.exec["ExecStart"][0].argv == ("/usr/sbin/postmulti", "-i", "-", "-p", "start", "/", "postfix")
    assert [c.path for c in unit.exec["ExecStartPre"]] == ["/bin/t", "/bin/i"]


def test_template_itself_is_refused(tmp_path: Path) -> None:
    make_tree(tmp_path, {f"{USR}/postfix@.service": SIMPLE})
    with pytest.raises(MailpreflightError, match="template"):
        loader(tmp_path).load("postfix@.service")


def test_dropin_same_name_higher_dir_hides_lower_and_order_is_by_name(tmp_path: Path) -> None:
    make_tree(tmp_path, {
        f"{USR}/a.service": SIMPLE,
        f"{USR}/a.service.d/50-x.conf": "[Service]\nExecStartPre=/bin/usr-x\n",
        f"{USR}/a.service.d/10-y.conf": "[Service]\nExecStartPre=/bin/usr-y\n",
        f"{ETC}/a.service.d/50-x.conf": "[Service]\nExecStartPre=/bin/etc-x\n",
        "/run/systemd/system/a.service.d/30-z.conf": "[Service]\nExecStartPre=/bin/run-z\n",
        f"{USR}/service.d/99-all.conf": "[Service]\nExecStartPre=/bin/all\n",
    })
    unit = loader(tmp_path).load("a.service")
    assert unit.dropin_paths == (f"{USR}/a.service.d/10-y.conf", "/run/systemd/system/a.service.d/30-z.conf",
                                 f"{ETC}/a.service.d/50-x.conf", f"{USR}/service.d/99-all.conf")
    order = [c.path for c in unit.exec["ExecStartPre"]]
    assert order == ["/bin/usr-y", "/bin/run-z", "/bin/etc-x", "/bin/all"]


def test_masked_dropin_name(tmp_path: Path) -> None:
    make_tree(tmp_path, {
        f"{USR}/a.service": SIMPLE,
        f"{USR}/a.service.d/50-x.conf": "[Service]\nExecStartPre=/bin/usr-x\n",
        f"{ETC}/a.service.d/50-x.conf": {"symlink": "/dev/null"},
    })
    unit = loader(tmp_path).load("a.service")
    assert unit.dropin_paths == (f"{ETC}/a.service.d/50-x.conf",)  # listed, as systemd 252 does
    assert "ExecStartPre" not in unit.exec


def test_dashed_prefix_dropins(tmp_path: Path) -> None:
    make_tree(tmp_path, {
        f"{USR}/foo-bar-baz.service": SIMPLE,
        f"{ETC}/foo-.service.d/10-a.conf": "[Service]\nEnvironment=A=1\n",
        f"{ETC}/foo-bar-.service.d/20-b.conf": "[Service]\nEnvironment=B=2\n",
    })
    unit = loader(tmp_path).load("foo-bar-baz.service")
    assert [(n, v) for n, v, _ in unit.environment] == [("A", "1"), ("B", "2")]


def test_empty_assignment_resets_exec_list(tmp_path: Path) -> None:
    make_tree(tmp_path, {
        f"{USR}/a.service": "[Service]\nExecStartPre=/bin/one\nExecStartPre=/bin/two\nExecStart=/bin/true\n",
        f"{ETC}/a.service.d/override.conf": "[Service]\nExecStartPre=\nExecStartPre=-/bin/three\n",
    })
    unit = loader(tmp_path).load("a.service")
    assert [(c.path, c.ignore_failure) for c in unit.exec["ExecStartPre"]] == [("/bin/three", True)]
    assert str(unit.exec["ExecStartPre"][0].source) == f"{ETC}/a.service.d/override.conf:3"


def test_not_found_lists_directories(tmp_path: Path) -> None:
    with pytest.raises(UnitNotFoundError, match="/etc/systemd/system"):
        loader(tmp_path).load("nothing.service")


def test_bad_exec_line_is_bad_setting_with_file_and_line(tmp_path: Path) -> None:
    make_tree(tmp_path, {f"{USR}/a.service": "[Service]\n\nExecStart=/bin/echo \"unbalanced\n"})
    unit = loader(tmp_path).load("a.service")
    assert unit.load_state is LoadState.BAD_SETTING
    assert str(unit.load_error).startswith(f"{USR}/a.service:3: ")


def test_name_without_suffix_means_service(tmp_path: Path) -> None:
    make_tree(tmp_path, {f"{USR}/spamd.service": SIMPLE})
    assert loader(tmp_path).load("spamd").id == "spamd.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_system_search_path_matches_systemd_analyze() -> None:
    listed = subprocess.run(["systemd-analyze", "unit-paths"], capture_output=True, text=True, check=True)
    ours = system_search_paths(split_usr=Path("/lib/systemd/system").exists())
    assert listed.stdout.split() == ours


@pytest.mark.parametrize(("service", "expected", "timeout"), [
    ("[Service]\nExecStart=/bin/true\n", ("simple", "no Type=, ExecStart= set"), 90.0),
    ("[Service]\nBusName=org.example.A\nExecStart=/bin/true\n", ("dbus", "no Type=, BusName= set"), 90.0),
    # no ExecStart=: systemd makes it oneshot, whose start has no timeout unless one is set
    ("[Service]\nExecStartPre=/bin/true\nExecStop=/bin/true\n", ("oneshot", "no Type=, BusName= or ExecStart="),
     float("inf")),
    ("[Service]\nType=notify\nType=\nExecStart=/bin/true\n", ("simple", "no Type=, ExecStart= set"), 90.0),
    ("[Service]\nType=forking\nExecStart=/bin/true\n", ("forking", "/etc/systemd/system/a.service:2"), 90.0),
    ("[Service]\nType=oneshot\nExecStart=/bin/true\nTimeoutStartSec=7\n",
     ("oneshot", "/etc/systemd/system/a.service:2"), 7.0),
])
def test_service_type_as_systemd_settles_it(tmp_path: Path, service: str, expected: tuple[str, str],
                                            timeout: float) -> None:
    from mailpreflight.units.timeouts import start_timeout
    from mailpreflight.units.unit import service_type

    make_tree(tmp_path, {f"{ETC}/a.service": service})
    unit = loader(tmp_path).load("a.service")
    assert tuple(service_type(unit)) == expected
    assert start_timeout(unit, RootFS(str(tmp_path))).seconds == timeout


def test_service_type_of_a_unit_that_did_not_load(tmp_path: Path) -> None:
    from mailpreflight.units.unit import service_type

    make_tree(tmp_path, {f"{ETC}/a.service": {"symlink": "/dev/null"}, f"{ETC}/b.socket": "[Socket]\nListenStream=1\n"})
    assert tuple(service_type(loader(tmp_path).load("a.service"))) == ("", "a.service is masked")
    assert service_type(loader(tmp_path).load("b.socket")).name == ""


@pytest.mark.parametrize("directory", ["usr/lib/x86_64-linux-gnu/systemd", "usr/lib/aarch64-linux-gnu/systemd",
                                       "usr/lib/systemd", "usr/lib64/systemd"])
def test_systemd_version_from_the_shared_library(tmp_path: Path, directory: str) -> None:
    """Debian's libsystemd-shared lives in the multiarch dir; a version read elsewhere would be a guess."""
    (tmp_path / directory).mkdir(parents=True)
    (tmp_path / directory / "libsystemd-shared-257.so").write_bytes(b"\x7fELF")
    assert systemd_version(RootFS(str(tmp_path))) == 257
    (tmp_path / "bare").mkdir()
    assert systemd_version(RootFS(str(tmp_path / "bare"))) == 252  # nothing to tell: systemd 252 assumed
