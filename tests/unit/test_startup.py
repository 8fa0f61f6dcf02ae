"""What the root and the unit's sandbox decide about a start before any network (deps/startup.py,
predict/startup.py, units/sandbox.py); the same facts a booted Debian 12 guest showed (tests/vm/)."""

from __future__ import annotations

from pathlib import Path

from helpers import make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.analyze import analyze
from mailpreflight.deps.startup import early_death
from mailpreflight.model import CommandVerdict, Prediction
from mailpreflight.predict import startup
from mailpreflight.units.loader import UnitLoader
from mailpreflight.units.sandbox import sandbox_of

# the line of Debian's /usr/bin/sa-update that tells where its local rules (and keyring) live
SA_UPDATE = "#!/usr/bin/perl -T\nmy $LOCAL_RULES_DIR = '/etc/spamassassin';    # substituted at 'make' time\n"
SPAMD = ("[Service]\nType=simple\nRestart=always\nExecStartPre=/bin/sh -c \"sa-update || true\"\n"
         "ExecStart=/usr/sbin/spamd --pidfile=/run/spamd.pid\n{extra}")


def root(tmp_path: Path, extra: str = "", gpg: bool = True, **files: str) -> Path:
    tree = {"/usr/bin/sa-update": SA_UPDATE, "/usr/sbin/spamd": "", "/bin/sh": "",
            "/usr/share/perl5/Mail/SpamAssassin.pm": 'our $VERSION = "4.000001";\n',
            "/etc/resolv.conf": "nameserver 10.0.2.3\n",
            "/lib/systemd/system/spamd.service": SPAMD.format(extra=extra), **files}
    if gpg:
        tree["/usr/bin/gpg"] = ""
    return make_tree(tmp_path, tree)


def analyzed(tmp_path: Path):  # type: ignore[no-untyped-def]
    fs = RootFS(str(tmp_path))
    return analyze(UnitLoader(fs).load("spamd.service"), fs)


def sa_local(result):  # type: ignore[no-untyped-def]
    assert result.startup is not None
    [(_, local)] = result.startup.sa_update
    return local


def test_protect_system_full_makes_etc_read_only(tmp_path: Path) -> None:
    fs = RootFS(str(root(tmp_path, "ProtectSystem=full\nReadWritePaths=/etc/spamassassin/keys\n")))
    box = sandbox_of(UnitLoader(fs).load("spamd.service"))
    assert not box.writable("/etc/spamassassin/sa-update-keys")[0]
    assert box.writable("/etc/spamassassin/keys/x")[0]  # the longer ReadWritePaths= wins
    assert box.writable("/var/lib/spamassassin/4.000001")[0]
    assert "ProtectSystem=full" in box.writable("/etc/x")[1]


def test_strict_and_state_directory(tmp_path: Path) -> None:
    fs = RootFS(str(root(tmp_path, "ProtectSystem=strict\nStateDirectory=spamassassin\n")))
    box = sandbox_of(UnitLoader(fs).load("spamd.service"))
    assert not box.writable("/var/lib/other")[0] and box.writable("/var/lib/spamassassin/4.000001")[0]
    assert box.writable("/dev/null")[0]


def test_sealed_networks(tmp_path: Path) -> None:
    for setting in ("PrivateNetwork=yes", "IPAddressDeny=any\nIPAddressAllow=localhost",
                    "RestrictAddressFamilies=AF_UNIX"):
        path = tmp_path / setting.split("=")[0]
        fs = RootFS(str(root(path, setting + "\n")))
        assert sandbox_of(UnitLoader(fs).load("spamd.service")).network, setting
    for setting in ("PrivateNetwork=no", "IPAddressDeny=any\nIPAddressAllow=any", "RestrictAddressFamilies=AF_INET"):
        path = tmp_path / ("ok-" + setting.split("=")[0])
        fs = RootFS(str(root(path, setting + "\n")))
        assert sandbox_of(UnitLoader(fs).load("spamd.service")).network is None, setting


def test_debian_sandbox_kills_sa_update_before_the_network(tmp_path: Path) -> None:
    result = analyzed(root(tmp_path, "ProtectSystem=full\n"))
    local = sa_local(result)
    assert local.installed and local.gpghomedir == "/etc/spamassassin/sa-update-keys" and not local.keyring
    reason = early_death(local, result.startup)
    assert reason and "ProtectSystem=full" in reason and "Read-only file system" in reason
    assert "MP115" in {f.code for f in result.findings}
    assert not {"MP103", "MP104"} & {f.code for f in result.findings}  # it cannot hang


def test_read_only_keyring_hint_names_a_directory_that_exists(tmp_path: Path) -> None:
    # ReadWritePaths= of a missing path fails the unit (226/NAMESPACE): the keyring's nearest existing parent
    result = analyzed(root(tmp_path, "ProtectSystem=full\n", **{"/etc/spamassassin/local.cf": ""}))
    [hint] = [f.hint for f in result.findings if f.code == "MP115"]
    assert hint.startswith("add ReadWritePaths=/etc/spamassassin to the unit (systemctl edit spamd.service; ")
    assert "--gpghomedir" in hint


def test_an_existing_keyring_needs_no_write(tmp_path: Path) -> None:
    result = analyzed(root(tmp_path, "ProtectSystem=full\n", **{"/etc/spamassassin/sa-update-keys/trustdb.gpg": ""}))
    assert early_death(sa_local(result), result.startup) is None


def test_no_gpg_installed(tmp_path: Path) -> None:
    result = analyzed(root(tmp_path / "unknown", gpg=False))
    assert "gpg required but not found" in (early_death(sa_local(result), result.startup) or "")
    hints = {f.hint for f in result.findings if f.code == "MP115"}
    assert hints == {"apt-get install gpg (or zypper install gpg2)"}  # no os-release: both
    # the root's own package manager only: zypper is no command on Debian, nor apt-get on openSUSE
    for os_id, hint in (("debian", "apt-get install gpg"), ("opensuse-leap", "zypper install gpg2")):
        result = analyzed(root(tmp_path / os_id, gpg=False, **{"/etc/os-release": f"ID={os_id}\n",
                                                              "/usr/lib/systemd/system/spamd.service":
                                                              SPAMD.format(extra="")}))
        assert {f.hint for f in result.findings if f.code == "MP115"} == {hint}


def test_a_sketch_root_without_the_real_sa_update_claims_nothing(tmp_path: Path) -> None:
    result = analyzed(root(tmp_path, "ProtectSystem=full\n", gpg=False, **{"/usr/bin/sa-update": "# stub\n"}))
    local = sa_local(result)
    assert not local.installed and early_death(local, result.startup) is None


def verdict(result, exit_class: str) -> CommandVerdict:  # type: ignore[no-untyped-def]
    command = next(e.command for e in result.commands if e.command.tool == "sa-update")
    return CommandVerdict(command, Prediction.FAIL, exit_class, 1.0, "test")


def test_a_failed_run_leaves_spamd_without_rules(tmp_path: Path) -> None:
    result = analyzed(root(tmp_path))
    facts, local = result.startup, sa_local(result)
    assert facts.spamd and facts.spamd.updatedir == "/var/lib/spamassassin/4.000001"
    reason = startup.spamd_fails(facts, [(local, verdict(result, "4"))], "simple", "always")
    assert reason and "no rules were found" in reason and "Restart=always" in reason
    assert startup.spamd_fails(facts, [(local, verdict(result, "0"))], "simple", "always") is None
    assert startup.spamd_fails(facts, [(local, verdict(result, "255"))], "simple", "always") is None  # died first
    forking = startup.spamd_fails(facts, [(local, verdict(result, "4"))], "forking", "no")
    assert forking and "the start fails" in forking


def test_rules_already_there_or_dir_left_empty(tmp_path: Path) -> None:
    with_rules = analyzed(root(tmp_path / "a", **{"/var/lib/spamassassin/4.000001/updates_spamassassin_org.cf":
                                                  "# UPDATE version 1\n"}))
    assert startup.spamd_fails(with_rules.startup, [(sa_local(with_rules), verdict(with_rules, "4"))], "simple",
                               "always") is None
    empty = analyzed(root(tmp_path / "b", **{"/var/lib/spamassassin/4.000001/updates_spamassassin_org/x": ""}))
    assert "MP116" in {f.code for f in empty.findings}
    # the fix of spamd's predicted failure is the command that removes what makes it fail, not the guard's
    assert startup.spamd_fix(empty.startup) == ("rm -r /var/lib/spamassassin/4.000001 (it holds no rules; then spamd "
                                                "uses the packaged rules)")
    assert startup.spamd_fix(with_rules.startup) == ""


def test_missing_programs(tmp_path: Path) -> None:
    result = analyzed(root(tmp_path, "ExecStartPre=-/opt/venv/bin/mailpreflight guard -- true\n",
                           **{"/usr/sbin/spamd": {"symlink": "/nonexistent"}}))  # type: ignore[arg-type]
    codes = {f.code: f for f in result.findings}
    assert "skipping" in codes["MP114"].message and "/opt/venv/bin/mailpreflight" in codes["MP114"].message
    assert "203/EXEC" in codes["MP113"].message
    assert "dropin install" not in codes["MP114"].hint  # the unit's own line: no drop-in of ours to rebuild


def test_missing_program_of_our_dropin(tmp_path: Path) -> None:
    """A mailpreflight drop-in made on the host calls the host's path; in the guest, `dropin install --root`
    makes it again (the hint says so only for our drop-in: for any other line that command has nothing to do)."""
    result = analyzed(root(tmp_path, **{
        "/etc/systemd/system/spamd.service.d/zz-mailpreflight.conf":
            "[Service]\nExecStartPre=-/opt/venv/bin/mailpreflight guard -- true\n",
        "/etc/systemd/system/spamd.service.d/local.conf": "[Service]\nExecStartPre=-/usr/local/bin/x\n"}))
    hints = sorted(f.hint for f in result.findings if f.code == "MP114")
    assert len(hints) == 2 and "dropin install spamd.service --root" in hints[0] and "/opt/venv" in hints[0]
    assert "/usr/local/bin/x" in hints[1] and "dropin" not in hints[1]


def test_spamd_dns_wait_counts_only_when_systemd_waits(tmp_path: Path) -> None:
    facts = analyzed(root(tmp_path)).startup
    assert startup.spamd_start_wait(facts, "forking", dns_dropped=True) == 15.0
    assert startup.spamd_start_wait(facts, "simple", dns_dropped=True) == 0.0
    assert startup.spamd_start_wait(facts, "forking", dns_dropped=False) == 0.0
