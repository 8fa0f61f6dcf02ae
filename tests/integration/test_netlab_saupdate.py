"""Ground truth: what the real sa-update (Debian 12, 4.0.1) does behind each firewall, in a NetLab.

These exit statuses and durations are what mailpreflight's predictions (`predicted_exit`,
`predicted_seconds`) are checked against.  Every selected case runs at the same time, each in its own NetLab,
so the measurement takes as long as its slowest case (dns-drop-upstream, ~150 s), not the sum; it is started in
the background as soon as the session's tests are collected (tests/integration/conftest.py), so that the tests
before this module run during its waits.  Deselecting a case
(`-k "not upstream"`) also keeps it from running.

The measured table is printed to the terminal when the runs finish (no `-s` needed) and written as JSON to
`<pytest basetemp>/netlab_saupdate.json` (e.g. /tmp/pytest-of-root/pytest-current/netlab_saupdate.json);
each lab's logs (dnsmasq queries, HTTP requests) stay in `<basetemp>/netlab0/<case>/`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from netlab import (
    CHANNEL_DIR,
    LAB_RULE_FILE,
    MIRROR_HOSTS,
    SA_UPDATE,
    NetLab,
    Records,
    Result,
    SigningKey,
    unavailable_reason,
    write_guest_root,
)

F = TypeVar("F", bound=Callable[..., Any])
MAILPREFLIGHT = Path(__file__).resolve().parents[2] / ".venv/bin/mailpreflight"
REVISION = Records().revision
WEEK = 7 * 24 * 3600


@dataclass(frozen=True)
class Case:
    firewall: str
    records: Records = field(default_factory=Records)
    cached_mirrors: tuple[str, ...] | None = None  # pre-seeded MIRRORED.BY
    cache_age: float = 0.0  # its age in seconds
    installed: str | None = None  # pre-seeded `# UPDATE version`
    runs: int = 1  # sa-update runs in a row, same updatedir


CASES: dict[str, Case] = {
    "open": Case("open", runs=2),
    "no-version-txt": Case("open", Records(revision=None)),
    "no-channel-records": Case("open", Records(revision=None, mirrors_url=None)),
    "current-http-drop": Case("http-drop", installed=REVISION),
    "dns-drop-local": Case("dns-drop-local"),
    "http-reject": Case("http-reject"),
    "http-reject-cached": Case("http-reject", cached_mirrors=MIRROR_HOSTS),
    "http-drop": Case("http-drop"),
    "http-drop-cached": Case("http-drop", cached_mirrors=MIRROR_HOSTS),
    "http-drop-stale-cache": Case("http-drop", cached_mirrors=MIRROR_HOSTS, cache_age=WEEK + 3600),
    "mirror1-drop": Case("mirror1-drop"),
    "dns-drop-upstream": Case("dns-drop-upstream"),
    "mirrored-by-missing": Case("open", Records(mirrors_url="http://mirrors.lab.test/MISSING.BY")),
    "https-bad-cert": Case("open", Records(https_hosts=MIRROR_HOSTS)),
}


def case(name: str) -> Callable[[F], F]:
    """Ties a test to the case it asserts; the fixture runs only the cases of selected tests."""
    def mark(fn: F) -> F:
        fn.netlab_case = name  # type: ignore[attr-defined]
        return fn
    return mark


@dataclass
class Outcome:
    results: list[Result] = field(default_factory=list)
    updatedir: Path | None = None
    error: BaseException | None = None
    check: dict[str, Any] | None = None  # `mailpreflight check --format json`, run just before sa-update

    def get(self) -> list[Result]:
        if self.error is not None:
            raise self.error
        return self.results


def mirrors_tried(result: Result) -> list[str]:
    # -vv prints "fetching <url>" before every download (l.1611); verbosity changes nothing else
    return re.findall(rf"^fetching http://(\w+)\.lab\.test/{REVISION}\.tar\.gz$", result.stdout, re.M)


def guest_root(workdir: Path, lab: NetLab) -> Path:
    """The guest `check` reads: spamd runs sa-update the openSUSE way, with the lab's GPG options; its
    update dir inside the root is the very directory the real sa-update then uses."""
    assert lab.signing_key is not None
    return write_guest_root(workdir / "root", (
        "[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n"
        f'ExecStartPre=/bin/bash -c "sa-update --gpgkey {lab.signing_key.fingerprint} --gpghomedir '
        f'{lab.gpghomedir} --updatedir /var/lib/sa-lab -vv || true"\nExecStart=/usr/sbin/spamd\n'))


def _run_case(name: str, spec: Case, workdir: Path, key: SigningKey) -> Outcome:
    outcome = Outcome(updatedir=workdir / "root/var/lib/sa-lab")
    assert outcome.updatedir is not None
    try:
        with NetLab(workdir / "lab", records=spec.records, signing_key=key) as lab:
            root = guest_root(workdir, lab)
            lab.seed_updatedir(outcome.updatedir, mirrors=spec.cached_mirrors, age=spec.cache_age,
                               version=spec.installed)
            lab.firewall(spec.firewall)
            checked = lab.run([str(MAILPREFLIGHT), "check", "--root", str(root), "spamd.service", "--format",
                               "json", "--timeout", "3"], timeout=120)
            outcome.check = json.loads(checked.stdout) if checked.stdout.strip() else {"stderr": checked.stderr}
            for _ in range(spec.runs):
                outcome.results.append(lab.sa_update(["-vv"], outcome.updatedir))
    except Exception as e:  # reported by that case's test, not by every test
        outcome.error = e
    return outcome


def _wanted_cases(items: list[pytest.Item]) -> set[str]:
    """The cases the selected tests of this module need (a test without a case of its own needs them all)."""
    wanted: set[str] = set()
    for item in items:
        if Path(str(item.path)).name != Path(__file__).name:
            continue
        named = getattr(getattr(item, "function", None), "netlab_case", None)
        param = getattr(getattr(item, "callspec", None), "params", {}).get("name")
        if named or param:
            wanted.add(named or param)
        else:
            return set(CASES)
    return wanted


def _measure(wanted: list[str], base: Path) -> dict[str, Outcome]:
    key = SigningKey.create(base / "signer")  # one key (gpg-agent) for all labs; each lab imports it
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(wanted))) as pool:
            futures = {n: pool.submit(_run_case, n, CASES[n], base / n, key) for n in wanted}
            return {n: f.result() for n, f in futures.items()}
    finally:
        key.close()


# Started when the session's tests are collected (tests/integration/conftest.py): the labs spend nearly all their
# ~160 s waiting on timeouts, so the tests before this module run meanwhile instead of after it.
_early: tuple[list[str], Path, Future[dict[str, Outcome]]] | None = None


def start_early(session: pytest.Session) -> None:
    global _early
    wanted = sorted(_wanted_cases(session.items))
    factory = getattr(session.config, "_tmp_path_factory", None)
    if _early is not None or not wanted or factory is None or unavailable_reason():
        return  # measured() does it in the module, or skips
    base = factory.mktemp("netlab")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlab-early")
    _early = (wanted, base, pool.submit(_measure, wanted, base))
    pool.shutdown(wait=False)


@pytest.fixture(scope="module")
def measured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network lab unavailable: {reason}")
    wanted = sorted(_wanted_cases(request.session.items))
    if _early is not None and _early[0] == wanted:
        outcomes = _early[2].result()
    else:
        outcomes = _measure(wanted, tmp_path_factory.mktemp("netlab"))
    _report(request, tmp_path_factory.getbasetemp() / "netlab_saupdate.json", outcomes)
    yield outcomes


def _report(request: pytest.FixtureRequest, path: Path, outcomes: dict[str, Outcome]) -> None:
    record: dict[str, Any] = {}
    lines = [f"sa-update ground truth (real {SA_UPDATE}; JSON: {path}):",
             f"  {'case':<22} {'firewall':<18} run  exit  seconds  mirrors tried"]
    for name, outcome in outcomes.items():
        if outcome.error is not None:
            record[name] = {"error": repr(outcome.error)}
            lines.append(f"  {name:<22} ERROR {outcome.error!r}")
            continue
        record[name] = {"case": asdict(CASES[name]), "runs": [
            {**asdict(r), "mirrors_tried": mirrors_tried(r)} for r in outcome.results]}
        for i, r in enumerate(outcome.results, 1):
            tried = ",".join(mirrors_tried(r)) or "-"
            lines.append(f"  {name:<22} {CASES[name].firewall:<18} {i:>3}  {r.returncode:>4}  {r.seconds:7.1f}  "
                         f"{tried}{'  TIMED OUT' if r.timed_out else ''}")
    path.write_text(json.dumps(record, indent=2, default=str))
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        print("\n".join(lines))
        return
    with capman.global_and_fixture_disabled():  # show the table without -s
        print("\n" + "\n".join(lines))


def _one(measured: dict[str, Outcome], name: str, run: int = 0) -> Result:
    result = measured[name].get()[run]
    assert not result.timed_out, result
    return result


def _installed(outcome: Outcome) -> bool:
    assert outcome.updatedir is not None
    cf = outcome.updatedir / f"{CHANNEL_DIR}.cf"
    return (outcome.updatedir / CHANNEL_DIR / LAB_RULE_FILE).is_file() and cf.read_text().startswith(
        f"# UPDATE version {REVISION}\n")


# -- one test per case: (exit status, seconds) ---------------------------------------------------------------

@case("open")
def test_open_installs_then_reports_nothing_new(measured: dict[str, Outcome]) -> None:
    first, second = _one(measured, "open", 0), _one(measured, "open", 1)
    assert first.returncode == 0, first
    assert first.seconds < 15
    assert _installed(measured["open"])
    assert second.returncode == 1, second  # "no update" on a normal day: a bare ExecStartPre would fail
    assert second.seconds < 15


@case("no-version-txt")
def test_no_version_txt_but_mirrors_txt_is_no_update(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "no-version-txt")
    assert (r.returncode, r.stderr) == (1, ""), r  # l.557-563: silent "no updates available"
    assert r.seconds < 15


@case("no-channel-records")
def test_no_channel_records_fails_the_channel(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "no-channel-records")
    assert r.returncode == 4, r
    assert "no 'mirrors.updates.spamassassin.org' record found" in r.stderr
    assert r.seconds < 15


@case("current-http-drop")
def test_current_version_needs_no_http(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "current-http-drop")
    assert r.returncode == 1, r  # l.571-575: installed >= DNS revision, HTTP never tried
    assert r.seconds < 15


@case("dns-drop-local")
def test_dns_drop_local(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "dns-drop-local")
    assert r.returncode == 4, r
    assert 5 <= r.seconds <= 20


@case("http-reject")
def test_http_reject(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "http-reject")
    assert r.returncode == 4, r
    assert r.seconds < 10


@case("http-reject-cached")
def test_http_reject_with_cached_mirrors(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "http-reject-cached")
    assert r.returncode == 4, r
    assert 2 <= r.seconds < 12  # one 2 s sleep between the two mirrors (l.796)
    assert sorted(mirrors_tried(r)) == sorted(MIRROR_HOSTS)


@case("http-drop")
def test_http_drop_no_cache(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "http-drop")
    assert r.returncode == 4, r
    assert 30 <= r.seconds <= 45  # curl --connect-timeout 30 for MIRRORED.BY, then the channel fails


@case("http-drop-cached")
def test_http_drop_with_fresh_cached_mirrors(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "http-drop-cached")
    assert r.returncode == 4, r
    assert 62 <= r.seconds <= 77  # 30 s per mirror + 2 s between them
    assert sorted(mirrors_tried(r)) == sorted(MIRROR_HOSTS)


@case("http-drop-stale-cache")
def test_http_drop_with_stale_cached_mirrors(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "http-drop-stale-cache")
    assert r.returncode == 4, r
    assert "unable to refresh mirrors file" in r.stderr  # l.699-702: goes on with the old file
    assert 92 <= r.seconds <= 107  # 30 s refresh + 2 x 30 s mirrors + 2 s: past the 90 s start timeout


@case("mirror1-drop")
def test_mirror1_drop_falls_over_to_mirror2(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "mirror1-drop")
    assert r.returncode == 0, r  # degraded, not failed
    assert _installed(measured["mirror1-drop"])
    tried = mirrors_tried(r)
    if tried == ["mirror1", "mirror2"]:  # coin toss (equal weights): the dead mirror first
        assert 32 <= r.seconds <= 47
    else:
        assert tried == ["mirror2"], r
        assert r.seconds < 15


@case("dns-drop-upstream")
def test_dns_drop_upstream_slow(measured: dict[str, Outcome]) -> None:
    """SLOW (~150 s): two TXT queries x Net::DNS 5+10+20+40 s, then the channel fails."""
    r = _one(measured, "dns-drop-upstream")
    assert r.returncode == 4, r
    assert 150 <= r.seconds <= 170


# -- check's prediction against what the real sa-update then did, case by case -----------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_check_predicts_what_sa_update_does(measured: dict[str, Outcome], name: str) -> None:
    outcome = measured[name]
    real = outcome.get()[0]
    assert outcome.check is not None and "units" in outcome.check, outcome.check
    command = next(c for c in outcome.check["units"][0]["commands"] if c["tool"] == "sa-update")
    assert command["predicted_exit"] == str(real.returncode), (command, real)
    assert command["predicted"] == ("fail" if real.returncode >= 3 else "degraded" if name == "mirror1-drop"
                                    else "ok"), command
    # predicted_seconds is the worst case (e.g. the dead mirror first); runs here carry ~3 s of start-up
    assert real.seconds <= command["predicted_seconds"] + 6 + 0.1 * real.seconds, (command, real)
    if name != "mirror1-drop" or len(mirrors_tried(real)) == 2:
        assert command["predicted_seconds"] <= real.seconds + 2, (command, real)


def test_check_sees_the_start_timeout(measured: dict[str, Outcome]) -> None:
    """`|| true` covers sa-update's exit 4, not its 150 s behind an upstream DNS drop (> 90 s)."""
    for name in ("dns-drop-upstream", "http-drop-stale-cache"):
        unit = measured[name].check["units"][0]  # type: ignore[index]
        assert unit["start"]["predicted"] == "fail", unit
        assert "Result=timeout" in unit["start"]["reason"]
    for name in ("http-drop-cached", "dns-drop-local", "http-reject", "https-bad-cert"):
        assert measured[name].check["units"][0]["start"]["predicted"] == "ok", name  # type: ignore[index]


@case("mirrored-by-missing")
def test_mirrored_by_missing(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "mirrored-by-missing")
    assert r.returncode == 4, r  # the mirror list URL answers 404 and nothing is cached
    assert r.seconds < 15


@case("https-bad-cert")
def test_https_mirrors_with_an_untrusted_certificate(measured: dict[str, Outcome]) -> None:
    r = _one(measured, "https-bad-cert")
    assert r.returncode == 4, r  # curl refuses both mirrors' certificates
    assert r.seconds < 20
    probes = measured["https-bad-cert"].check["probes"]  # type: ignore[index]
    assert any(p["error"] == "tls" for p in probes)
