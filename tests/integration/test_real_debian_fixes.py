"""Issue 18, item 3: mailpreflight on what Debian 12 really ships (the .debs, extracted with `dpkg-deb -x`; see
tests/realdebs.py), each fix checked against the real programs where one can say: nft and iptables-restore load
the firewall output, dash runs spamassassin-maint, amavisd's own Amavis::Conf reads its config, freshclam reads
(or misses) its config file. Network traffic: none (the checks run in a network namespace of their own)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.amavis import config_files
from mailpreflight.deps.shell import read_shell
from mailpreflight.model import FoundCommand, Source
from realdebs import deb, extract

SPAM = ("base-files", "spamassassin", "spamd", "razor", "pyzor")
MAINT = "/usr/sbin/spamassassin-maint"


def mailpreflight(*args: str, namespace: bool = False, hosts: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as an admin runs it; with `namespace`, in a network namespace of its own (nothing leaves), with
    `hosts` bind-mounted over /etc/hosts there (names resolve without DNS)."""
    argv = [sys.executable, "-m", "mailpreflight", *args]
    if namespace or hosts:
        needs_root()
        script = (f"mount --bind {hosts} /etc/hosts && " if hosts else "") + 'exec "$@"'
        argv = ["unshare", "--net", "--mount", "sh", "-c", script, "sh", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)


def needs_root() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare: the checks run in network (and mount) namespaces of their own")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Debian 12 mail server's package files: spamassassin, spamd (with gpg, which Debian recommends), postfix
    with the main.cf its postinst writes for "Internet Site" (no relayhost), postgrey, amavisd-new, clamav-freshclam
    (no freshclam.conf: its postinst writes that)."""
    root = extract(tmp_path_factory.mktemp("debian12") / "root", *SPAM, "gpg", "postfix", "postgrey",
                   "amavisd-new", "clamav-base", "clamav-freshclam")
    postinst_main_cf(root)
    return root


def postinst_main_cf(root: Path) -> None:
    """What postfix's postinst does for "Internet Site" with no relay host: cp main.cf.debian, then
    `postconf -e` of the debconf answers — run with the package's own postconf."""
    etc = root / "etc/postfix"
    shutil.copy(root / "usr/share/postfix/main.cf.debian", etc / "main.cf")
    answers = ["smtpd_relay_restrictions=permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
               "myhostname=mail.example.org", "mydestination=$myhostname, mail.example.org, localhost",
               "relayhost=", "mynetworks=127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128", "mailbox_size_limit=0",
               "recipient_delimiter=+", "inet_interfaces=all", "inet_protocols=all"]
    done = subprocess.run([str(root / "usr/sbin/postconf"), "-c", str(etc), "-e", *answers], capture_output=True,
                          text=True, check=False, env={"LD_LIBRARY_PATH": str(root / "usr/lib/postfix")})
    if done.returncode != 0:
        pytest.skip(f"the package's postconf does not run here: {done.stderr.strip()}")
    assert re.search(r"^relayhost =\s*$", (etc / "main.cf").read_text(), re.M)


def copy(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(pristine, root, symlinks=True)
    return root


def schema(name: str) -> dict[str, object]:
    return json.loads((Path(__file__).resolve().parents[2] / "docs/schemas" / name).read_text())  # type: ignore[no-any-return]


def deps_json(root: Path, *units: str) -> dict[str, dict[str, object]]:
    done = mailpreflight("deps", "--root", str(root), "--format", "json", *units)
    assert done.returncode in (0, 1, 2), done.stderr
    document = json.loads(done.stdout)
    jsonschema.validate(document, schema("deps.schema.json"))
    return {u["name"]: u for u in document["units"]}


def endpoints(unit: dict[str, object]) -> list[str]:
    return [d["target"] for c in unit["commands"] for d in c["dependencies"]]  # type: ignore[attr-defined,index]


def mentioned(unit: dict[str, object]) -> list[dict[str, str]]:
    return [d for c in unit["commands"] for d in c["mentioned"]]  # type: ignore[attr-defined,index]


def names_in(ruleset: str) -> set[str]:
    """Host names a ruleset names (nft `ip daddr NAME`, iptables `-d NAME`)."""
    words = re.findall(r"(?:ip6? daddr|-d) (\S+)", ruleset)
    return {w for w in words if not re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+|@\S+", w)}


def hosts_file(tmp_path: Path, names: set[str]) -> Path:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"192.0.2.{i} {n}\n" for i, n in enumerate(sorted(names), 1)))
    return hosts


def loads(ruleset: str, kind: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Does the real nft (`nft -c -f`) or iptables-restore (`--test`) accept it? In a network namespace of our
    own (nft -c needs CAP_NET_ADMIN there), names resolved from a hosts file."""
    needs_root()
    program = {"nft": ["nft", "-c", "-f"], "iptables": ["iptables-restore", "--test"]}[kind]
    if shutil.which(program[0]) is None:
        pytest.skip(f"{program[0]} is not installed")
    path = tmp_path / f"rules.{kind}"
    path.write_text(ruleset)
    hosts = hosts_file(tmp_path, names_in(ruleset))
    return subprocess.run(["unshare", "--net", "--mount", "sh", "-c", f'mount --bind {hosts} /etc/hosts && exec "$@"',
                           "sh", *program, str(path)], capture_output=True, text=True, check=False, timeout=60)


# --- (a) an unexpanded variable is never an endpoint ----------------------------------------------------------------

def test_spamassassin_maint_proxy_variables_are_no_endpoints(pristine: Path) -> None:
    unit = deps_json(pristine, "spamassassin-maintenance.service")["spamassassin-maintenance.service"]
    assert not [t for t in endpoints(unit) if "$" in t]
    proxies = {d["target"]: d["note"] for d in mentioned(unit) if d["target"].startswith("$")}
    assert set(proxies) == {"$http_proxy", "$https_proxy"}  # env -i ... http_proxy="$http_proxy" (l.87)
    assert all("not known here" in note for note in proxies.values())


@pytest.mark.parametrize("units", [(), ("postfix@-.service", "spamassassin-maintenance.service", "spamd.service",
                                         "amavis.service", "postgrey.service", "clamav-freshclam.service")])
def test_firewall_output_loads_in_nft_and_iptables(pristine: Path, tmp_path: Path, units: tuple[str, ...]) -> None:
    for kind in ("nft", "iptables"):
        done = mailpreflight("firewall", "--root", str(pristine), "--format", kind, *units)
        assert done.returncode in (0, 1), done.stderr
        assert not [line for line in done.stdout.splitlines() if "$" in line and not line.lstrip().startswith("#")]
        checked = loads(done.stdout, kind, tmp_path)
        assert checked.returncode == 0, f"{kind} refuses the output:\n{checked.stderr}\n{done.stdout}"


# --- (b) the allow-list is complete, or says what it lacks ---------------------------------------------------------

def test_direct_delivery_is_an_explicit_rule(pristine: Path) -> None:
    done = mailpreflight("firewall", "--root", str(pristine), "--format", "nft", "postfix@-.service")
    assert done.returncode == 0, done.stderr  # postfix alone: nothing unknown
    lines = done.stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.strip().startswith("tcp dport 25 accept"))
    assert "direct delivery (no relayhost)" in lines[rule - 1] and "to any host" in lines[rule - 1]
    assert "postfix@-.service postmulti" in lines[rule]
    unit = deps_json(pristine, "postfix@-.service")["postfix@-.service"]
    assert {"MX *", "*:25"} <= set(endpoints(unit))


def test_relayhost_means_no_direct_delivery(pristine: Path, tmp_path: Path) -> None:
    root = copy(pristine, tmp_path)
    main_cf = root / "etc/postfix/main.cf"
    main_cf.write_text(re.sub(r"^relayhost =.*$", "relayhost = [smtp.example.net]:587", main_cf.read_text(),
                              flags=re.M))
    done = mailpreflight("firewall", "--root", str(root), "--format", "nft", "postfix@-.service")
    assert "tcp dport 25 accept" not in done.stdout
    assert "ip daddr smtp.example.net tcp dport 587 accept" in done.stdout


def test_unknown_sa_update_mirrors_are_said(pristine: Path, tmp_path: Path) -> None:
    """A fresh install has no cached MIRRORED.BY: every format says so in a comment, stderr says what to do,
    and the exit status is 1 (the list is incomplete)."""
    for kind in ("nft", "iptables", "firewalld"):
        extra = ("--resolve",) if kind == "firewalld" else ()
        hosts = hosts_file(tmp_path, {"discovery.razor.cloudmark.com", "public.pyzor.org"})
        done = mailpreflight("firewall", "--root", str(pristine), "--format", kind, *extra,
                             "spamassassin-maintenance.service", hosts=hosts if extra else None)
        assert done.returncode == 1, done.stderr
        comment = [line for line in done.stdout.splitlines() if "NOT IN THIS LIST" in line]
        assert len(comment) == 1 and comment[0].startswith("# "), done.stdout
        assert "MIRRORED.BY" in comment[0] and "mirrors.updates.spamassassin.org" in comment[0]
        assert "runuser -u debian-spamd -- /usr/bin/sa-update --gpghomedir /var/lib/spamassassin/sa-update-keys" \
            in done.stderr and "then run this `mailpreflight firewall` again" in done.stderr
        if kind == "firewalld":
            assert subprocess.run(["sh", "-n"], input=done.stdout, text=True, check=False).returncode == 0


def test_cached_mirrored_by_completes_the_list(pristine: Path, tmp_path: Path) -> None:
    root = copy(pristine, tmp_path)
    channel = root / "var/lib/spamassassin/4.000001/updates_spamassassin_org"
    channel.mkdir(parents=True)
    (channel / "MIRRORED.BY").write_text("# mirror list as sa-update caches it\n"
                                         "https://sa-update.example.org/ weight=5\n")
    done = mailpreflight("firewall", "--root", str(root), "--format", "nft", "spamassassin-maintenance.service")
    assert done.returncode == 0 and done.stderr == "" and "NOT IN THIS LIST" not in done.stdout
    assert "ip daddr sa-update.example.org tcp dport 443 accept" in done.stdout


# --- (c) the script's exit logic decides the oneshot's verdict -----------------------------------------------------

def test_spamassassin_maint_fates_match_dash(pristine: Path, tmp_path: Path) -> None:
    """The real script, run by the real dash, with sa-update (through a start-stop-daemon stand-in) exiting each
    status: its exit status is what the static reading says."""
    dash = shutil.which("dash") or ""
    if not (Path("/usr/bin/sa-update").is_file() and dash):
        pytest.skip("needs dash and a /usr/bin/sa-update on this machine (the script tests `-x /usr/bin/sa-update`)")
    text = (pristine / MAINT.lstrip("/")).read_text()
    sa_update = next(c for c in read_shell(text, {"PATH": "/usr/bin:/bin"}).commands
                     if "/usr/bin/sa-update" in c.argv and c.argv[0] == "env")  # l.87, not `test -x` (l.82)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "env").symlink_to(shutil.which("env") or "/usr/bin/env")
    status_file = tmp_path / "status"
    (stubs / "start-stop-daemon").write_text(
        f'#!/bin/sh\ncase "$*" in *"--exec /usr/bin/sa-update"*) read s < {status_file}; exit $s;; esac\nexit 0\n')
    (stubs / "gpg").write_text("#!/bin/sh\nexit 0\n")
    for stub in ("start-stop-daemon", "gpg"):
        (stubs / stub).chmod(0o755)
    for status in (0, 1, 2, 3, 4, 64, 255):
        status_file.write_text(f"{status}\n")
        real = subprocess.run([dash, str(pristine / MAINT.lstrip("/"))], env={"PATH": str(stubs)}, cwd=tmp_path,
                              capture_output=True, text=True, check=False, timeout=30)
        fate = next(f for f in sa_update.status_fates if f.low <= status <= f.high)
        expected = fate.script_exit(status)
        assert real.returncode == (0 if expected is None else expected), (status, str(fate), real.stderr)


def check_json(root: Path, *units: str) -> dict[str, object]:
    done = mailpreflight("check", "--root", str(root), "--no-auth", "--timeout", "2", "--format", "json", *units,
                         namespace=True)
    assert done.returncode in (0, 1, 2), done.stderr
    document = json.loads(done.stdout)
    jsonschema.validate(document, schema("check.schema.json"))
    return document  # type: ignore[no-any-return]


def test_maintenance_fails_when_sa_update_exits_4(pristine: Path) -> None:
    """No network (a namespace of its own): sa-update exits 4, the script's `*) exit 1` fails the oneshot."""
    report = check_json(pristine, "spamassassin-maintenance.service")
    unit = report["units"][0]  # type: ignore[index]
    sa_update = next(c for c in unit["commands"] if c["tool"] == "sa-update")
    assert (sa_update["predicted"], sa_update["predicted_exit"]) == ("fail", "4")
    assert unit["start"]["predicted"] == "fail"
    assert f"on exit 4 the script exits 1 ({MAINT}:93)" in unit["start"]["reason"]
    assert report["status"] == "critical"
    finding = next(f for f in report["findings"] if f["code"] == "MP201")  # type: ignore[union-attr]
    assert finding["hint"].startswith("systemctl edit spamassassin-maintenance.service")


def test_maintenance_without_gpg_never_runs_sa_update(pristine: Path, tmp_path: Path) -> None:
    """`command -v gpg > /dev/null || exit 0` (l.83): without gpg the script ends there, successfully."""
    root = copy(pristine, tmp_path)
    (root / "usr/bin/gpg").unlink()
    unit = deps_json(root, "spamassassin-maintenance.service")["spamassassin-maintenance.service"]
    assert not [c for c in unit["commands"] if c["tool"] == "sa-update"]  # type: ignore[attr-defined]
    script = next(c for c in unit["commands"] if c["tool"] == "spamassassin-maint")  # type: ignore[attr-defined]
    assert script["ends"] == (f"exits 0 at {MAINT}:83: `command -v gpg` fails in this tree — nothing after it runs")
    report = check_json(root, "spamassassin-maintenance.service")
    assert report["units"][0]["start"]["predicted"] == "ok"  # type: ignore[index]


def test_unreadable_status_check_is_unknown_and_a_warning(pristine: Path, tmp_path: Path) -> None:
    root = copy(pristine, tmp_path)
    script = root / MAINT.lstrip("/")
    script.write_text(script.read_text().replace("case $? in", "rc=$?\nlogger \"sa-update: $rc\"\ncase $rc in"))
    report = check_json(root, "spamassassin-maintenance.service")
    unit = report["units"][0]  # type: ignore[index]
    assert unit["start"]["predicted"] == "unknown" and "not read statically" in unit["start"]["reason"]
    assert report["status"] == "warning"
    finding = next(f for f in report["findings"] if f["code"] == "MP204")  # type: ignore[union-attr]
    assert finding["severity"] == "warning" and finding["hint"].startswith("read what the script does")
    line = int(re.search(r"sed -n '(\d+),", finding["hint"])[1])  # type: ignore[index]
    assert "rc=$?" in script.read_text().splitlines()[line - 1]


# --- (d) only what a command will contact is an endpoint ------------------------------------------------------------

def test_postgrey_reply_text_is_mentioned_not_contacted(pristine: Path) -> None:
    unit = deps_json(pristine, "postgrey.service")["postgrey.service"]
    assert endpoints(unit) == []
    [url] = mentioned(unit)
    assert url["target"] == "https://postgrey.schweikert.ch/help/%H.html" and "not contacted" in url["note"]
    report = check_json(pristine)  # every unit of the tree with a network dependency
    assert "postgrey.service" not in [u["name"] for u in report["units"]]  # type: ignore[union-attr]
    assert not [p for p in report["probes"] if "schweikert" in p["target"]]  # type: ignore[union-attr]
    named = check_json(pristine, "postgrey.service")
    assert named["probes"] == []


# --- (e) amavis: its config decides whether SpamAssassin (and Razor/Pyzor) runs -----------------------------------

def amavis_oracle(root: Path, tmp_path: Path, files: tuple[str, ...]) -> str:
    """amavisd's own Amavis::Conf (from the package) reads the files and answers with amavisd's test
    (Amavis.pm l.7305-7316). 30-template_localization is left out: it reads /etc/amavis on this machine."""
    perl = tmp_path / "perl"
    extract(perl, "libnet-libidn2-perl", "libunix-syslog-perl")
    lib = next(perl.glob("usr/lib/*/perl5/*"))
    version = subprocess.run(["perl", "-e", 'print "$^V"'], capture_output=True, text=True, check=False).stdout
    if not version.startswith(f"v{lib.name}"):
        pytest.skip(f"this perl is {version}, the packages' XS modules are for perl {lib.name}")
    script = tmp_path / "oracle.pl"
    script.write_text(
        "use Exporter;\nuse Amavis::Conf qw(:platform :confvars :sa c cr ca);\n"
        "Amavis::Conf::include_config_files(map { /^(.*)$/s; $1 } @ARGV);\n"
        "my $b = \\@Amavis::Conf::bypass_spam_checks_maps; my $s = \\@Amavis::Conf::spam_scanners;\n"
        "my $loads = !@$s ? 0 : (@$b && !ref($b->[0]) && $b->[0]) ? 0 : 1;\n"
        "printf \"loads_spamassassin=%d local=%d\\n\", $loads, $Amavis::Conf::sa_local_tests_only ? 1 : 0;\n")
    paths = [str(root / f.lstrip("/")) for f in files if not f.endswith("30-template_localization")]
    done = subprocess.run(["perl", "-T", "-I", str(root / "usr/share/perl5"), "-I", str(lib), str(script), *paths],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def amavis_files(root: Path) -> tuple[str, ...]:
    command = FoundCommand("amavisd", ("/usr/sbin/amavisd", "foreground"), "ExecStart", Source("/x", 1), False)
    return config_files(RootFS(str(root)), command)


def test_amavis_reads_its_files_as_run_parts_lists_them(pristine: Path) -> None:
    real = []
    for directory in ("usr/share/amavis/conf.d", "etc/amavis/conf.d"):
        listed = subprocess.run(["run-parts", "--list", str(pristine / directory)], capture_output=True, text=True,
                                check=True).stdout.split()
        real += ["/" + str(Path(p).relative_to(pristine)) for p in listed]
    assert list(amavis_files(pristine)) == real


def test_amavis_default_has_no_spam_checks_hence_no_razor_pyzor(pristine: Path, tmp_path: Path) -> None:
    unit = deps_json(pristine, "amavis.service")["amavis.service"]
    assert endpoints(unit) == [] and mentioned(unit) == []
    assert amavis_oracle(pristine, tmp_path, amavis_files(pristine)) == "loads_spamassassin=0 local=0"


def test_amavis_documented_uncommenting_turns_them_on(pristine: Path, tmp_path: Path) -> None:
    root = copy(pristine, tmp_path)
    mode = root / "etc/amavis/conf.d/15-content_filter_mode"
    lines = mode.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("#@bypass_spam_checks_maps"))
    lines[start:start + 2] = [line[1:] for line in lines[start:start + 2]]  # "uncomment the following lines"
    mode.write_text("".join(lines))
    unit = deps_json(root, "amavis.service")["amavis.service"]
    deps = {d["target"]: d for c in unit["commands"] for d in c["dependencies"]}  # type: ignore[attr-defined]
    assert {"discovery.razor.cloudmark.com:2703", "public.pyzor.org:24441"} <= set(deps)
    assert all(d["confidence"] == "high" for d in deps.values())
    assert amavis_oracle(root, tmp_path, amavis_files(root)) == "loads_spamassassin=1 local=0"
    # $sa_local_tests_only = 1 in 50-user (later) turns the network tests off again
    user = root / "etc/amavis/conf.d/50-user"
    user.write_text(user.read_text().replace("#------------ Do not modify",
                                             "$sa_local_tests_only = 1;\n#------------ Do not modify"))
    assert endpoints(deps_json(root, "amavis.service")["amavis.service"]) == []
    assert amavis_oracle(root, tmp_path, amavis_files(root)) == "loads_spamassassin=1 local=1"


def test_amavis_dynamic_config_is_unknown(pristine: Path, tmp_path: Path) -> None:
    root = copy(pristine, tmp_path)
    user = root / "etc/amavis/conf.d/50-user"
    user.write_text(user.read_text().replace(
        "#------------ Do not modify", "@bypass_spam_checks_maps = (-e '/etc/amavis/no-spam-checks');\n"
                                        "#------------ Do not modify"))
    unit = deps_json(root, "amavis.service")["amavis.service"]
    assert endpoints(unit) == []  # never probed, never allowed
    assert {"discovery.razor.cloudmark.com:2703", "public.pyzor.org:24441"} <= {d["target"] for d in mentioned(unit)}
    finding = next(f for f in unit["findings"] if f["code"] == "MP122")  # type: ignore[attr-defined]
    assert "/etc/amavis/conf.d/50-user:" in finding["message"] and finding["hint"].startswith("read the assignment")


# --- (f) freshclam without its config file ------------------------------------------------------------------------

def freshclam(root: Path, tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    """The package's freshclam (with libclamav12 from the archive), in a network namespace of its own."""
    needs_root()
    libs = extract(tmp_path / "libs", "libclamav12", "libmspack0")
    program = root / "usr/bin/freshclam"
    env = {"LD_LIBRARY_PATH": ":".join(str(p) for p in libs.glob("usr/lib/*"))}
    missing = subprocess.run(["ldd", str(program)], capture_output=True, text=True, env=env, check=False).stdout
    if "not found" in missing:
        pytest.skip(f"the package's freshclam lacks libraries here: {missing}")
    return subprocess.run(["unshare", "--net", str(program), f"--config-file={config}"], capture_output=True,
                          text=True, env=env, check=False, timeout=60)


def test_freshclam_without_config_fails_its_start(pristine: Path, tmp_path: Path) -> None:
    assert not (pristine / "etc/clamav/freshclam.conf").exists()  # not shipped: the postinst writes it
    real = freshclam(pristine, tmp_path, str(pristine / "etc/clamav/freshclam.conf"))
    units = deps_json(pristine)  # selected without being named
    for name, outcome in (("clamav-freshclam.service", "the service fails right after it starts"),
                          ("clamav-freshclam-once.service", "the start fails")):
        finding = next(f for f in units[name]["findings"] if f["code"] == "MP121")  # type: ignore[attr-defined]
        assert finding["severity"] == "critical" and outcome in finding["message"]
        assert f"exits {real.returncode}" in finding["message"] and real.returncode == 2
        assert "ERROR: Can't open/parse the config file /etc/clamav/freshclam.conf" in finding["message"]
        assert real.stderr.strip().endswith(f"ERROR: Can't open/parse the config file {pristine}"
                                            "/etc/clamav/freshclam.conf")
        assert finding["hint"] == "dpkg-reconfigure clamav-freshclam (its postinst writes the file from the " \
                                  "debconf answers)"
    report = check_json(pristine, "clamav-freshclam.service", "clamav-freshclam-once.service")
    starts = {u["name"]: u["start"] for u in report["units"]}  # type: ignore[union-attr]
    assert {name: start["predicted"] for name, start in starts.items()} == {
        "clamav-freshclam.service": "fail", "clamav-freshclam-once.service": "fail"}
    assert "exits 2" in starts["clamav-freshclam-once.service"]["reason"] and report["probes"] == []


def test_freshclam_with_its_config(pristine: Path, tmp_path: Path) -> None:
    """With the file the postinst writes (its default answers), the endpoints come back; without a mirror in it,
    freshclam exits 9 — checked with the real one."""
    root = copy(pristine, tmp_path)
    conf = root / "etc/clamav/freshclam.conf"
    conf.write_text("DatabaseOwner clamav\nUpdateLogFile /var/log/clamav/freshclam.log\nLogSyslog false\n"
                    "DatabaseDirectory /var/lib/clamav\nDNSDatabaseInfo current.cvd.clamav.net\n"
                    "ConnectTimeout 30\nReceiveTimeout 0\nDatabaseMirror db.local.clamav.net\n"
                    "DatabaseMirror database.clamav.net\nChecks 24\n")
    unit = deps_json(root, "clamav-freshclam-once.service")["clamav-freshclam-once.service"]
    assert "https://database.clamav.net" in endpoints(unit)
    assert not [f for f in unit["findings"] if f["code"] == "MP121"]  # type: ignore[attr-defined]
    conf.write_text("DatabaseDirectory /var/lib/clamav\n")
    real = freshclam(root, tmp_path, str(conf))
    finding = next(f for f in deps_json(root, "clamav-freshclam-once.service")["clamav-freshclam-once.service"][
        "findings"] if f["code"] == "MP121")  # type: ignore[attr-defined]
    assert real.returncode == 9 and f"exits {real.returncode}" in finding["message"]
    assert "No DatabaseMirror or PrivateMirror servers set" in real.stderr and \
        "No DatabaseMirror or PrivateMirror servers set" in finding["message"]


def test_cache_is_outside_the_repository() -> None:
    assert Path(__file__).resolve().parents[2] not in deb("postgrey").resolve().parents
