"""Command line. The only place that turns errors into exit codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailpreflight import __version__
from mailpreflight.errors import MailpreflightError

if TYPE_CHECKING:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.auth.check import AuthReport
    from mailpreflight.deps.analyze import UnitDeps
    from mailpreflight.units.loader import UnitLoader

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
EXAMPLES = """examples:
  mailpreflight check                                   will the mail services start? (probes the network)
  mailpreflight check --root /mnt/guest spamd.service   the same for a mounted VM guest, before booting it
  mailpreflight deps --root /mnt/guest                  what every service needs from the network (no traffic)
  mailpreflight show spamd.service --format json        the unit exactly as systemd loads it
  mailpreflight dropin install spamd.service --dry-run  the fix: network ExecStartPre warns instead of fails
  mailpreflight explain spamd.service                   why did the last start fail?
  mailpreflight firewall --format nft --resolve         the outgoing allow-list the services need
  mailpreflight snapshot --output /root/mail-baseline.json   record what mail depends on, before an upgrade
  mailpreflight drift --baseline /root/mail-baseline.json --root /mnt/guest   what the upgrade changed
  mailpreflight restore --baseline /root/mail-baseline.json /etc/pam.d/imap   put a deleted file back

exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (monitoring-plugin convention)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailpreflight",
        description="Why will this systemd mail service fail to start? Find out before it bites.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    show = verbs.add_parser("show", help="the unit as systemd loads it: files, drop-ins, parsed Exec lines",
                            description="Show a unit as systemd would load it.")
    show.add_argument("unit", metavar="UNIT")
    show.add_argument("--root", metavar="DIR", help="an offline root, e.g. a mounted VM guest")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.add_argument("--expand-env", action="store_true",
                      help="also show argv with $VARS expanded from Environment= and EnvironmentFile=")
    deps = verbs.add_parser("deps", help="network endpoints each unit's start path needs, and the risks (static)",
                            description="Find the network dependencies and start-up risks of units, without any "
                                        "network traffic.")
    _unit_selection(deps, formats=("text", "json"))
    check = verbs.add_parser("check", help="probe what the units need and predict whether they will start",
                             description="Probe every network dependency of the units' start paths, concurrently "
                                         "under one deadline, and predict whether each unit will start.")
    _unit_selection(check, formats=("text", "json", "nagios", "prometheus"))
    check.add_argument("--timeout", type=float, default=5.0, metavar="S", help="per probe (default 5)")
    check.add_argument("--deadline", type=float, default=60.0, metavar="S", help="for the whole check (default 60)")
    check.add_argument("--output", metavar="FILE", help="write the output there atomically (textfile collector)")
    check.add_argument("--resolv-conf", metavar="FILE", help="nameservers to probe with (default /etc/resolv.conf)")
    check.add_argument("--guest-dns", action="store_true", help="with --root: use the guest's resolv.conf")
    check.add_argument("--guest-firewall", action="store_true",
                       help="with --root, as root: probe again behind the guest's own nftables/iptables rules")
    check.add_argument("--no-auth", action="store_true",
                       help="skip the mail-authentication checks (SASL/PAM paths of postfix, dovecot, cyrus)")
    dropin = verbs.add_parser("dropin", help="install/remove/show the drop-in that guards network ExecStartPre",
                              description="Make a unit's network ExecStartPre warn instead of fail, bounded in "
                                          "time: one drop-in in /etc/systemd/system/UNIT.d/.")
    dropin.add_argument("action", choices=("install", "remove", "show"))
    dropin.add_argument("unit", metavar="UNIT")
    dropin.add_argument("--root", metavar="DIR", help="an offline root, e.g. a mounted VM guest")
    dropin.add_argument("--timeout", type=float, default=60.0, metavar="S", help="the guard's bound (default 60)")
    dropin.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    dropin.add_argument("--no-reload", action="store_true", help="do not ask systemd to daemon-reload")
    explain = verbs.add_parser("explain", help="why did the unit fail to start? systemd's record + a fresh check",
                               description="Explain the last start attempt of a unit from systemd's own record, "
                                           "the journal of that start and a fresh check of what it needs.")
    explain.add_argument("unit", metavar="UNIT")
    explain.add_argument("--format", choices=("text", "json"), default="text")
    explain.add_argument("--backend", choices=("auto", "pystemd", "dbus-python"), default="auto")
    explain.add_argument("--user", action="store_true", help="a user manager (systemctl --user)")
    explain.add_argument("--timeout", type=float, default=5.0, metavar="S", help="per probe (default 5)")
    firewall = verbs.add_parser("firewall", help="the outgoing allow-list the mail units need (nft, iptables, "
                                "firewalld)", description="Print firewall rules that allow exactly what the units' "
                                "start and runtime dependencies need, DNS included.")
    _unit_selection(firewall, formats=("nft", "iptables", "firewalld"))
    firewall.add_argument("--resolve", action="store_true",
                          help="put the current addresses of host names into the rules (with the time)")
    snapshot = verbs.add_parser("snapshot", help="record a baseline of what the mail services depend on",
                                description="Record hashes, owners, modes and the text of small world-readable "
                                            "config files that mail depends on (PAM, SASL, postfix, dovecot, "
                                            "cyrus, SpamAssassin, ClamAV, fetchmail, sssd/LDAP, units), and the "
                                            "mail-authentication findings of the moment.")
    snapshot.add_argument("--root", metavar="DIR", help="an offline root, e.g. a mounted VM guest")
    snapshot.add_argument("--output", metavar="FILE", help="write it there atomically, mode 0600 (default: stdout)")
    drift = verbs.add_parser("drift", help="what changed since a snapshot, and which findings each change causes",
                             description="Compare a root against a snapshot baseline: files deleted, added and "
                                         "changed (with a diff for text), and the mail-authentication findings "
                                         "each change causes.")
    drift.add_argument("--baseline", metavar="FILE", required=True, help="a file written by `snapshot`")
    drift.add_argument("--root", metavar="DIR", help="an offline root, e.g. a mounted VM guest")
    drift.add_argument("--format", choices=("text", "json"), default="text")
    drift.add_argument("--other-host", action="store_true",
                       help="compare even though the baseline was taken on another host")
    restore = verbs.add_parser("restore", help="put files under /etc back as a snapshot recorded them",
                               description="Restore files under /etc (text, mode, owner, or a symlink's target) "
                                           "from a snapshot baseline, atomically; a differing file is kept as "
                                           "PATH.mailpreflight-backup first.")
    restore.add_argument("paths", nargs="+", metavar="PATH", help="as the guest sees it, e.g. /etc/pam.d/imap")
    restore.add_argument("--baseline", metavar="FILE", required=True, help="a file written by `snapshot`")
    restore.add_argument("--root", metavar="DIR", help="an offline root, e.g. a mounted VM guest")
    restore.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    restore.add_argument("--other-host", action="store_true",
                         help="restore even though the baseline was taken on another host")
    restore.add_argument("--allow-setid", action="store_true",
                         help="also restore set-uid, set-gid and sticky bits the baseline records (dropped otherwise)")
    verbs.add_parser("guard", help="run a command so that it can neither fail nor hang the unit (drop-ins use it)",
                     add_help=False)
    return parser


def _dropin(args: argparse.Namespace) -> int:
    from mailpreflight.fix import dropin
    from mailpreflight.units.loader import UnitLoader

    loader = UnitLoader(_root(args))
    if args.action == "show":
        text, current = dropin.show(loader, args.unit)
        print(text.rstrip("\n"))
        if current is not None:
            print(f"# {'current' if current else 'OUTDATED: the unit changed since; run `dropin install` again'}")
        return OK if current in (True, None) else WARNING
    if args.timeout <= 0:
        raise MailpreflightError("--timeout must be positive")
    change = (dropin.install(loader, args.unit, args.timeout, args.dry_run) if args.action == "install"
              else dropin.remove(loader, args.unit, args.dry_run))
    if change.diff:
        print(change.diff, end="")
    for message in change.messages:
        print(f"mailpreflight: {message}", file=sys.stderr)
    if change.changed and not args.root and not args.no_reload:
        from mailpreflight.live.reload import daemon_reload

        problem = daemon_reload()
        print(f"mailpreflight: {problem}" if problem else "mailpreflight: systemd reloaded", file=sys.stderr)
    return OK


def _explain(args: argparse.Namespace) -> int:
    import os

    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.deps.analyze import analyze
    from mailpreflight.live.backend import open_backend
    from mailpreflight.predict import explain
    from mailpreflight.predict.judge import CheckOptions, check
    from mailpreflight.probes.dns import read_resolv_conf
    from mailpreflight.units.loader import UnitLoader
    from mailpreflight.units.searchpath import user_search_paths
    from mailpreflight.units.specifiers import user_manager

    backend = open_backend(args.backend, args.user)
    live = backend.unit(args.unit)
    if args.user:
        import pwd

        me = pwd.getpwuid(os.getuid())
        who = {"u": me.pw_name, "U": str(me.pw_uid), "g": me.pw_name, "G": str(me.pw_gid), "s": me.pw_shell}
        loader = UnitLoader(RootFS("/"), user_search_paths(os.environ), user_manager(os.environ, who))
    else:
        loader = UnitLoader(RootFS("/"))
    unit = report = None
    try:
        unit = loader.load(live.id)
        with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as handle:
            resolver = read_resolv_conf(handle.read(), "/etc/resolv.conf")
        report = check([analyze(unit, loader.fs)], CheckOptions(timeout=args.timeout, deadline=60), resolver)
    except (MailpreflightError, OSError) as exc:
        print(f"mailpreflight: no fresh check: {exc}", file=sys.stderr)
    result = explain.explain(live, unit, report, explain.journal(live))
    if args.format == "json":
        import json

        print(json.dumps(explain.to_json(result), indent=2, ensure_ascii=False))
    else:
        print(explain.render_text(result))
    return OK if result.failure is None else CRITICAL


def _firewall(args: argparse.Namespace) -> int:
    from mailpreflight.deps.analyze import analyze_names, analyze_tree
    from mailpreflight.firewall import rules as firewall
    from mailpreflight.probes.dns import read_resolv_conf
    from mailpreflight.units.loader import UnitLoader

    fs = _root(args)
    loader = UnitLoader(fs)
    results = analyze_names(loader, args.units, args.sa_version) if args.units else analyze_tree(
        loader, args.sa_version)
    resolvers = read_resolv_conf(fs.read_text("/etc/resolv.conf") or "", "/etc/resolv.conf").nameservers
    rules = firewall.allow_list(results, resolvers)
    addresses, when = firewall.resolve(rules) if args.resolve else (None, "")
    render = {"nft": firewall.render_nft, "iptables": firewall.render_iptables,
              "firewalld": firewall.render_firewalld}[args.format]
    print(render(rules, addresses, when), end="")
    return OK


def _guest_firewall(args: argparse.Namespace, fs: RootFS, outside: dict[str, object], text: str) -> str:
    """Probe again from a namespace that holds the guest's own outgoing rules; add what they block."""
    import json

    from mailpreflight.firewall import guest as guestfw

    if not args.root:
        raise MailpreflightError("--guest-firewall needs --root")
    ruleset = guestfw.find_ruleset(fs)
    argv = [*args.units, "--root", args.root, "--timeout", str(args.timeout), "--deadline", str(args.deadline)]
    with guestfw.guest_namespace(ruleset) as namespace:
        inside = guestfw.check_inside(namespace, argv)
    endpoints = guestfw.compare(outside, inside)
    if args.format == "json":
        document = json.loads(text)
        document["guest_firewall"] = {"config": ruleset.guest_path, "kind": ruleset.kind, "endpoints": endpoints}
        return json.dumps(document, indent=2, ensure_ascii=False)
    blocked = [e for e in endpoints if e["verdict"].startswith("blocked")]
    lines = [text, "", f"behind the guest's own firewall ({ruleset.guest_path}, {ruleset.kind}):"]
    lines += [f"  {e['kind']:5} {e['target']:55} {e['verdict']}"
              + (f"  <- {e['blocking_rule']}" if e["blocking_rule"] else "") for e in endpoints]
    if blocked:
        lines.append(f"  -> {len(blocked)} endpoint(s) the services need are blocked by the guest's own rules")
    return "\n".join(lines)


def _unit_selection(parser: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    """What deps and check share: which units, from which tree, how to print, which SpamAssassin."""
    parser.add_argument("units", nargs="*", metavar="UNIT", help="default: every service with a network dependency")
    parser.add_argument("--root", metavar="DIR", help="an offline root, e.g. a mounted VM guest")
    parser.add_argument("--format", choices=formats, default=formats[0])
    parser.add_argument("--sa-version", metavar="VERSION",
                        help="SpamAssassin version (e.g. 4.000001) instead of reading Mail/SpamAssassin.pm")


def _check(args: argparse.Namespace) -> int:
    from mailpreflight.access.safewrite import write_atomically
    from mailpreflight.deps.analyze import analyze_names, analyze_tree
    from mailpreflight.predict.judge import CheckOptions, check
    from mailpreflight.probes.dns import read_resolv_conf
    from mailpreflight.probes.runner import progress_stream
    from mailpreflight.render import check as render
    from mailpreflight.units.loader import UnitLoader

    if args.timeout <= 0 or args.deadline <= 0:
        raise MailpreflightError("--timeout and --deadline must be positive")
    fs = _root(args)
    if args.guest_dns and not args.root:
        raise MailpreflightError("--guest-dns needs --root")
    if args.guest_dns:
        resolv_text, resolv_source = fs.read_text("/etc/resolv.conf") or "", f"{args.root}/etc/resolv.conf"
    else:
        resolv_source = args.resolv_conf or "/etc/resolv.conf"
        try:
            with open(resolv_source, encoding="utf-8", errors="replace") as handle:
                resolv_text = handle.read()
        except OSError as exc:
            raise MailpreflightError(f"cannot read {resolv_source}: {exc.strerror}") from exc
    loader = UnitLoader(fs)
    results = analyze_names(loader, args.units, args.sa_version) if args.units else analyze_tree(
        loader, args.sa_version)
    options = CheckOptions(args.timeout, args.deadline, progress=progress_stream())
    report = check(results, options, read_resolv_conf(resolv_text, resolv_source), _auth(args, loader, results))
    text = {"json": render.render_json, "nagios": render.render_nagios, "prometheus": render.render_prometheus,
            }.get(args.format, lambda r: render.render_text(r, colour=sys.stdout.isatty() and not args.output))(report)
    if args.guest_firewall:
        text = _guest_firewall(args, fs, render.to_json(report), text)
    if args.output:
        try:
            write_atomically(args.output, text if text.endswith("\n") else text + "\n")
        except OSError as exc:  # a stale textfile must not look like a fresh one: fail loudly (exit 3)
            raise MailpreflightError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    else:
        print(text)
    return render.EXIT[report.status]


def _auth(args: argparse.Namespace, loader: UnitLoader, results: list[UnitDeps]) -> AuthReport | None:
    """The mail-authentication analysis for check: every login path, or those of the units asked for."""
    from mailpreflight.auth.check import analyze_auth

    if args.no_auth:
        return None
    report = analyze_auth(loader.fs, loader)
    return report.restricted_to({r.unit.id for r in results} | set(args.units)) if args.units else report


def _snapshot(args: argparse.Namespace) -> int:
    import json

    from mailpreflight.access.safewrite import write_atomically
    from mailpreflight.baseline.snapshot import take

    document = take(_root(args), args.root or "/")
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    if not args.output:
        print(text, end="")
        return OK
    try:
        write_atomically(args.output, text, mode=0o600)
    except OSError as exc:
        raise MailpreflightError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    print(f"mailpreflight: baseline of {len(document['files'])} paths and {len(document['findings'])} finding(s) "
          f"written to {args.output}", file=sys.stderr)
    return OK


def _drift(args: argparse.Namespace) -> int:
    import json

    from mailpreflight.baseline import drift

    baseline = drift.load_baseline(args.baseline)
    result = drift.compare(args.baseline, baseline, _root(args), args.other_host)
    print(json.dumps(drift.to_json(result), indent=2, ensure_ascii=False) if args.format == "json"
          else drift.render_text(result))
    return result.status


def _restore(args: argparse.Namespace) -> int:
    from mailpreflight.baseline import drift
    from mailpreflight.baseline.restore import restore

    baseline = drift.load_baseline(args.baseline)
    fs = _root(args)
    drift.check_host(args.baseline, baseline, fs, args.other_host)
    for path in args.paths:
        result = restore(fs, args.baseline, baseline, path, args.dry_run, allow_setid=args.allow_setid)
        if result.diff and (args.dry_run or result.changed):
            print(result.diff, end="" if result.diff.endswith("\n") else "\n")
        print(f"mailpreflight: {result.message}", file=sys.stderr)
    return OK


def _root(args: argparse.Namespace) -> RootFS:
    from mailpreflight.access.rootfs import RootFS

    fs = RootFS(args.root or "/")
    if args.root and not fs.is_dir("/"):
        raise MailpreflightError(f"--root {args.root}: not a directory")
    args.rootfs = fs  # main() reports the files it refused to read (FIFOs, devices, too big)
    return fs


def _deps(args: argparse.Namespace) -> int:
    from mailpreflight.deps.analyze import analyze_names, analyze_tree
    from mailpreflight.render.deps import exit_status, render_json, render_text
    from mailpreflight.units.loader import UnitLoader

    loader = UnitLoader(_root(args))
    results = analyze_names(loader, args.units, args.sa_version) if args.units else analyze_tree(
        loader, args.sa_version)
    print(render_json(results) if args.format == "json" else render_text(results))
    return exit_status(results)


def _show(args: argparse.Namespace) -> int:
    from mailpreflight.render.show import render_json, render_text
    from mailpreflight.units.loader import UnitLoader, exec_environment

    fs = _root(args)
    unit = UnitLoader(fs).load(args.unit)
    env = exec_environment(unit, fs) if args.expand_env else None
    print(render_json(unit, env) if args.format == "json" else render_text(unit, fs, env))
    if unit.load_error:
        print(f"mailpreflight: {unit.load_error}", file=sys.stderr)
        return CRITICAL
    return OK


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["guard"]:  # hot path at every service start: no parser, no other imports
        from mailpreflight.fix.guard import main as guard_main

        return guard_main(arguments[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # argparse: usage errors are UNKNOWN, --help/--version are OK
        return OK if exc.code == 0 else UNKNOWN
    verbs = {"show": _show, "deps": _deps, "check": _check, "dropin": _dropin, "explain": _explain,
             "firewall": _firewall, "snapshot": _snapshot, "drift": _drift, "restore": _restore}
    handler = verbs.get(args.verb)
    if handler is None:  # `guard` only ever comes first, and is handled above
        print(f"mailpreflight: `{args.verb}` must be the first word", file=sys.stderr)
        return UNKNOWN
    try:
        return handler(args)
    except MailpreflightError as exc:
        print(f"mailpreflight: {exc}", file=sys.stderr)
        return UNKNOWN
    except ModuleNotFoundError as exc:  # a broken or partial installation: say what is missing
        print(f"mailpreflight: the Python module {exc.name!r} is missing; reinstall with "
              f"`pip install mailpreflight` (and the `live` extra for explain)", file=sys.stderr)
        return UNKNOWN
    except KeyboardInterrupt:
        return UNKNOWN
    except BrokenPipeError:
        return OK
    finally:
        refused: RootFS | None = getattr(args, "rootfs", None)
        if refused is not None:
            for refusal in refused.refusals:
                print(f"mailpreflight: warning: {refused.host(refusal.path)}: {refusal.reason}", file=sys.stderr)
