"""`mailpreflight explain UNIT`: the last start attempt as systemd recorded it — which command failed and how
— with the journal of that invocation, a fresh check, and a diagnosis in plain words with the fix.

Pure analysis of what it is given: systemd's record and the journal come from live/ (backend.py, journal.py),
the presentation is render/explain.py."""

from __future__ import annotations

import signal

from mailpreflight.deps.discover import START_PATH_KEYS
from mailpreflight.live.backend import CLD_DUMPED, CLD_EXITED, CLD_KILLED, LiveUnit
from mailpreflight.model import ExecRun, Explanation, Failure, Report
from mailpreflight.units.loader import Unit

SYSTEMD_EXIT = {  # systemd.exec(5) "Process Exit Codes"
    200: "could not change to the working directory", 203: "could not execute the program (missing or not "
    "executable)", 209: "could not set up standard output", 216: "could not look up the group",
    217: "could not look up the user (User= does not exist)", 226: "could not set up the namespace (sandboxing)",
    233: "could not create RuntimeDirectory=", 243: "could not load credentials",
}
TOOL_EXIT = {
    "sa-update": {1: "no new rules were published (a normal day)", 2: "the new rules failed lint",
                  3: "some channels failed to update", 4: "every channel failed (network, DNS, mirrors)"},
    "freshclam": {1: "the databases are up to date", 52: "a network problem", 53: "cannot read the database from "
                  "the mirror", 54: "the mirrors are not in sync (try later)", 56: "a configuration file error",
                  57: "an error while updating"},
}


def find_failure(live: LiveUnit) -> Failure | None:
    """The first start-path command that failed in the last attempt, as systemd recorded it."""
    for key in START_PATH_KEYS:
        for index, run in enumerate(live.exec.get(key, ())):
            if run.start_us == 0:
                continue
            seconds = (run.exit_us - run.start_us) / 1e6 if run.exit_us >= run.start_us > 0 else None
            if run.code == CLD_EXITED and run.status != 0 and not run.ignore:
                cause = "not-found" if run.status == 203 else "exit-code"
                return Failure(key, index, run, cause, seconds)
            if run.code in (CLD_KILLED, CLD_DUMPED) or (run.exit_us == 0 and live.result == "timeout"):
                cause = "timeout" if live.result == "timeout" else "core-dump" if run.code == CLD_DUMPED else "signal"
                if cause != "timeout" and run.ignore:
                    continue
                return Failure(key, index, run, cause, seconds)
    return None


def meaning(run: ExecRun, cause: str) -> str:
    tool = run.argv[0].rsplit("/", 1)[-1] if run.argv else ""
    if cause in ("exit-code", "not-found"):
        if run.status in SYSTEMD_EXIT:
            return f"systemd: {SYSTEMD_EXIT[run.status]}"
        inner = next((w for w in run.argv if w.split()[0:1] and w.split()[0].rsplit("/", 1)[-1] in TOOL_EXIT), "")
        for name in (tool, inner.split()[0].rsplit("/", 1)[-1] if inner else ""):
            if name in TOOL_EXIT:
                known = TOOL_EXIT[name].get(run.status) or ("an error" if run.status >= 4 else "")
                return f"{name} exit {run.status}: {known}"
        return f"exit status {run.status}"
    if cause in ("signal", "core-dump", "timeout"):
        return f"killed by {signal_name(run.status)}"
    return ""


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def differences(live: LiveUnit, unit: Unit | None) -> tuple[str, ...]:
    """Where systemd's loaded state differs from the files now (a reload is missing, runtime changes)."""
    found = []
    if live.need_daemon_reload:
        found.append("systemd says the unit files changed since it loaded them: run `systemctl daemon-reload`")
    if unit is None:
        return tuple(found)
    if unit.fragment_path and live.fragment_path and unit.fragment_path != live.fragment_path:
        found.append(f"systemd uses {live.fragment_path}, the files say {unit.fragment_path}")
    if tuple(unit.dropin_paths) != live.dropin_paths:
        found.append(f"drop-ins: systemd has {list(live.dropin_paths)}, the files have {list(unit.dropin_paths)}")
    for key in START_PATH_KEYS:
        ours = [list(c.argv) for c in unit.exec.get(key, ())]
        theirs = [list(r.argv) for r in live.exec.get(key, ())]
        if ours != theirs:
            found.append(f"{key}: systemd runs {theirs}, the files now say {ours}")
    return tuple(found)


def explain(live: LiveUnit, unit: Unit | None, report: Report | None, journal_lines: tuple[str, ...]) -> Explanation:
    failure = find_failure(live)
    diffs = differences(live, unit)
    if failure is None:
        state = f"{live.active_state}/{live.sub_state}" + (f", result {live.result}" if live.result else "")
        risks = [f"{f.code}: {f.message}" for f in (report.findings if report else ())]
        diagnosis = f"{live.id}'s last start did not fail ({state})."
        if risks:
            diagnosis += " Risks that can still make it fail: " + "; ".join(risks[:4])
        return Explanation(live.id, None, "ok", None, None, "", journal_lines, diffs, report, diagnosis)
    run = failure.run
    what = meaning(run, failure.cause)
    command = " ".join(run.argv)
    status = run.status if failure.cause in ("exit-code", "not-found") else None
    sig = signal_name(run.status) if failure.cause in ("signal", "core-dump", "timeout") and run.code else None
    took = f" after {failure.seconds:.1f} s" if failure.seconds is not None else ""
    parts = [f"{live.id} failed to start in {failure.key}[{failure.index}] `{command}`: "]
    if failure.cause == "timeout":
        limit = f"{live.timeout_start_s:g} s" if live.timeout_start_s else "its start timeout"
        parts.append(f"it was still running when TimeoutStartSec={limit} ran out and was {what}{took} "
                     "(Result=timeout). A '-' prefix or `|| true` does not help against a timeout.")
    elif failure.cause == "not-found":
        parts.append(f"{what} ({run.path}).")
    else:
        parts.append(f"{what}{took}.")
    verdict = next((c for u in (report.units if report else ()) for c in u.commands
                    if c.command.key == failure.key), None)
    if verdict is not None:
        parts.append(f" A fresh check of what it needs: {verdict.predicted.value}, expected exit "
                     f"{verdict.predicted_exit} in ~{verdict.predicted_seconds:.0f} s ({verdict.reason}).")
    fixes = _fixes(live, report, failure)
    if fixes:
        parts.append(" Fix: " + "; ".join(fixes) + ".")
    if diffs:
        parts.append(" Note: " + "; ".join(diffs) + ".")
    return Explanation(live.id, failure, failure.cause, status, sig, what, journal_lines, diffs, report,
                       "".join(parts))


def _fixes(live: LiveUnit, report: Report | None, failure: Failure) -> list[str]:
    fixes: list[str] = []
    codes = {f.code for f in (report.findings if report else ())}
    network = any(not p.ok for p in (report.probes if report else ()))
    if failure.key in ("ExecStartPre", "ExecCondition") and (network or codes & {"MP101", "MP102", "MP103"}):
        fixes.append(f"`mailpreflight dropin install {live.id}` (the update warns instead of failing, bounded in "
                     "time)")
    if network:
        fixes.append("allow what the failed probes above need in the outgoing firewall (DNS to the resolvers, "
                     "HTTP to the mirrors)")
    if codes & {"MP110", "MP111", "MP112"}:
        fixes.append("add Wants= and After=network-online.target")
    if failure.cause == "not-found":
        fixes.append(f"install the program or correct the path {failure.run.path}")
    return fixes
