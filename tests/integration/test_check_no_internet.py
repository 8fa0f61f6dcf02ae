"""`check --root units/examples/...` on a host with no internet: a namespace whose resolver knows no outside
name and that has no route out. The answer must be clear and right: spamd still starts (its sa-update
fails fast and `|| true` covers the exit code), the dead endpoints are named, the risks are listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from netlab import NetLab, Records, unavailable_reason

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "units/examples/opensuse-leap15-mail"
MAILPREFLIGHT = REPO / ".venv/bin/mailpreflight"


@pytest.fixture(scope="module")
def offline_lab(tmp_path_factory: pytest.TempPathFactory) -> NetLab:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network lab unavailable: {reason}")
    lab = NetLab(tmp_path_factory.mktemp("offline"), records=Records(revision=None, mirrors_url=None))
    lab.__enter__()
    yield lab  # type: ignore[misc]
    lab.close()


def test_example_guest_without_internet(offline_lab: NetLab) -> None:
    done = offline_lab.run([str(MAILPREFLIGHT), "check", "--root", str(EXAMPLE), "--format", "json",
                            "--timeout", "2"], timeout=120)
    assert done.returncode == 1, done.stderr  # WARNING: everything starts, endpoints are dead, risks remain
    report = json.loads(done.stdout)
    units = {u["name"]: u for u in report["units"]}
    assert units["spamd.service"]["start"]["predicted"] == "ok"
    sa = next(c for c in units["spamd.service"]["commands"] if c["tool"] == "sa-update")
    assert (sa["predicted"], sa["predicted_exit"]) == ("fail", "4")
    assert sa["predicted_seconds"] < 10  # NXDOMAIN is quick; only a black hole makes sa-update hang
    assert "nxdomain" in sa["reason"]
    codes = {f["code"] for f in report["findings"]}
    assert {"MP103", "MP202"} <= codes  # the hang risk stays; runtime endpoints are dead
    assert report["elapsed_s"] < 20
    text = offline_lab.run([str(MAILPREFLIGHT), "check", "--root", str(EXAMPLE), "spamd.service", "--timeout",
                            "2"], timeout=120)
    assert "spamd.service: start ok" in text.stdout
    assert "TXT 5.4.3.updates.spamassassin.org" in text.stdout
