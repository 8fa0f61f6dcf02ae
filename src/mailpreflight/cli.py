"""Command line: parsing and dispatch, and the one place that maps results and errors to exit codes
(0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; a crash is UNKNOWN). See docs/design.md, "Command line"."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from mailpreflight import __version__
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Status
from mailpreflight.render.escape import clean

if TYPE_CHECKING:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.auth.check import AuthReport
    from mailpreflight.deps.analyze import UnitDeps
    from mailpreflight.firewall.guest import GuestRuleset
    from mailpreflight.units.loader import UnitLoader



@dataclass
class Environment:
    """What a verb may touch of the world it runs in (httpie's Environment): streams, whether stdout is a
    terminal, the clock and the process environment. Tests pass their own and run verbs in-process."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdout_isatty: bool | None = None  # None: ask stdout
    clock: Callable[[], float] = time.monotonic
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def colour(self) -> bool:
        if self.stdout_isatty is not None:
            return self.stdout_isatty
        isatty = getattr(self.stdout, "isatty", None)
        return bool(isatty and isatty())

    def out(self, text: str = "", end: str = "\n", painted: bool = False) -> None:
        """Print output; control characters are escaped (`painted`: the renderer escaped its own text and added
        colour sequences of its own)."""
        self.stdout.write((text if painted else clean(text)) + end)

    def say(self, message: str) -> None:
        """One line on stderr, as the tool speaks to the admin."""
        self.stderr.write(f"mailpreflight: {clean(message)}\n")

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
  mailpreflight cleanup                                 remove what a killed check --guest-firewall left

exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (monitoring-plugin convention)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailpreflight",
        description="Why will this systemd mail service fail to start? Find out before it bites.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an internal error, print the traceback")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    show = verbs.add_parser("show", help="the unit as systemd loads it: files, drop-ins, parsed Exec lines",
                            description="Show a unit as systemd would load it.")
    show.add_argument("unit", metavar="UNIT")
    _root_option(show)
    _format_option(show, ("text", "json"))
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
    _timeout_option(check, 5.0, "total per probe: DNS, connect, every read and redirect")
    check.add_argument("--deadline", type=float, default=60.0, metavar="S", help="for the whole check (default 60)")
    check.add_argument("--output", metavar="FILE", help="write the output there atomically (textfile collector)")
    check.add_argument("--resolv-conf", metavar="FILE", help="nameservers to probe with (default /etc/resolv.conf)")
    check.add_argument("--guest-dns", action="store_true", help="with --root: use the guest's resolv.conf")
    check.add_argument("--guest-firewall", action="store_true",
                       help="with --root, as root: classify every probe's packets by the guest's own nftables/iptables "
                            "rules (in a sealed namespace; nothing of the host changes)")
    check.add_argument("--guest-interface", metavar="NAME",
                       help="with --guest-firewall: the guest's outgoing interface as its rules name it (default: the "
                            "one they name, else eth0)")
    check.add_argument("--no-auth", action="store_true",
                       help="skip the mail-authentication checks (SASL/PAM paths of postfix, dovecot, cyrus)")
    dropin = verbs.add_parser("dropin", help="install/remove/show the drop-in that guards network ExecStartPre",
                              description="Make a unit's network ExecStartPre warn instead of fail, bounded in "
                                          "time: one drop-in in /etc/systemd/system/UNIT.d/.")
    dropin.add_argument("action", choices=("install", "remove", "show"))
    dropin.add_argument("unit", metavar="UNIT")
    _root_option(dropin)
    _timeout_option(dropin, 60.0, "the guard's bound")
    dropin.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    dropin.add_argument("--no-reload", action="store_true", help="do not ask systemd to daemon-reload")
    explain = verbs.add_parser("explain", help="why did the unit fail to start? systemd's record + a fresh check",
                               description="Explain the last start attempt of a unit from systemd's own record, "
                                           "the journal of that start and a fresh check of what it needs.")
    explain.add_argument("unit", metavar="UNIT")
    _format_option(explain, ("text", "json"))
    explain.add_argument("--backend", choices=("auto", "pystemd", "dbus-python"), default="auto")
    explain.add_argument("--user", action="store_true", help="a user manager (systemctl --user)")
    _timeout_option(explain, 5.0, "total per probe: DNS, connect, every read and redirect")
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
    _root_option(snapshot)
    snapshot.add_argument("--output", metavar="FILE", help="write it there atomically, mode 0600 (default: stdout)")
    _digest_key_option(snapshot, "made 0600 on first use")
    drift = verbs.add_parser("drift", help="what changed since a snapshot, and which findings each change causes",
                             description="Compare a root against a snapshot baseline: files deleted, added and "
                                         "changed (with a diff for text), and the mail-authentication findings "
                                         "each change causes.")
    _baseline_options(drift, "compare even though the baseline was taken on another host")
    _format_option(drift, ("text", "json"))
    restore = verbs.add_parser("restore", help="put files under /etc back as a snapshot recorded them",
                               description="Restore files under /etc (text, mode, owner, or a symlink's target) "
                                           "from a snapshot baseline, atomically; a differing file is kept as "
                                           "PATH.mailpreflight-backup first.")
    restore.add_argument("paths", nargs="+", metavar="PATH", help="as the guest sees it, e.g. /etc/pam.d/imap")
    _baseline_options(restore, "restore even though the baseline was taken on another host")
    restore.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    cleanup = verbs.add_parser("cleanup", help="remove what killed check --guest-firewall runs left behind",
                               description="Remove the network namespaces and state files of check "
                                           "--guest-firewall runs that were killed before they could clean up "
                                           "(SIGKILL, a crash), and what older versions left (a namespace, a NAT "
                                           "table). A run that is still going is left alone.")
    cleanup.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    verbs.add_parser("guard", help="run a command so that it can neither fail nor hang the unit (drop-ins use it)",
                     add_help=False)
    return parser


# --- option helpers: each option is defined once ----------------------------------------------------------------


def _root_option(parser: argparse.ArgumentParser) -> None:
    """Which system: the running one, an offline root, or a VM guest's disks (docs/use-preboot-guest.md)."""
    parser.add_argument("--root", metavar="DIR", help="an offline root, e.g. a mounted VM guest")
    parser.add_argument("--image", metavar="FILE", action="append", default=[],
                        help="a VM guest's disk image (qcow2, raw, vmdk...; repeat for each disk), opened with "
                             "libguestfs, read-only unless the verb writes")
    parser.add_argument("--domain", metavar="NAME", help="a libvirt domain: its disks, as --image")
    parser.add_argument("--key", metavar="DEVICE:key:PASS|DEVICE:file:PATH", action="append", default=[],
                        help="a LUKS key for an encrypted guest, as the virt tools take it (else asked on the "
                             "terminal)")


def _format_option(parser: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    parser.add_argument("--format", choices=formats, default=formats[0])


def _timeout_option(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    parser.add_argument("--timeout", type=float, default=default, metavar="S", help=f"{what} (default {default:g})")


def _baseline_options(parser: argparse.ArgumentParser, other_host: str) -> None:
    parser.add_argument("--baseline", metavar="FILE", required=True, help="a file written by `snapshot`")
    _root_option(parser)
    parser.add_argument("--other-host", action="store_true", help=other_host)
    _digest_key_option(parser, "the one of the host that took the baseline")


def _digest_key_option(parser: argparse.ArgumentParser, which: str) -> None:
    parser.add_argument("--digest-key", metavar="FILE", help=f"the host's key for content digests ({which}; "
                        "default /var/lib/mailpreflight/baseline.key, never the guest's)")


def _unit_selection(parser: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    """What deps, check and firewall share: which units, from which tree, how to print, which SpamAssassin."""
    parser.add_argument("units", nargs="*", metavar="UNIT", help="default: every service with a network dependency")
    _root_option(parser)
    _format_option(parser, formats)
    parser.add_argument("--sa-version", metavar="VERSION",
                        help="SpamAssassin version (e.g. 4.000001) instead of reading Mail/SpamAssassin.pm")


def _positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise MailpreflightError(f"--{name.replace('_', '-')} must be positive, not {value:g}")


# --- the verbs: each returns a Status, main() turns it into the exit code ------------------------------------------


def _dropin(args: argparse.Namespace, env: Environment) -> Status:
    from mailpreflight.fix import dropin
    from mailpreflight.units.loader import UnitLoader

    loader = UnitLoader(_root(args))
    if args.action == "show":
        text, current = dropin.show(loader, args.unit)
        env.out(text.rstrip("\n"))
        if current is not None:
            env.out(f"# {'current' if current else 'OUTDATED: the unit changed since; run `dropin install` again'}")
        return Status.OK if current in (True, None) else Status.WARNING
    _positive(timeout=args.timeout)
    change = (dropin.install(loader, args.unit, args.timeout, args.dry_run) if args.action == "install"
              else dropin.remove(loader, args.unit, args.dry_run))
    if change.diff:
        env.out(change.diff, end="")
    for message in change.messages:
        env.say(message)
    if change.changed and not args.root and not args.no_reload:
        from mailpreflight.live.backend import BackendError
        from mailpreflight.live.reload import daemon_reload

        try:
            daemon_reload()
        except BackendError as exc:  # the drop-in is written: say what to do, as before
            env.say(str(exc))
        else:
            env.say("systemd reloaded")
    return Status.OK


def _explain(args: argparse.Namespace, env: Environment) -> Status:
    import json

    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.deps.analyze import analyze
    from mailpreflight.live.backend import open_backend
    from mailpreflight.live.journal import journal
    from mailpreflight.predict import explain
    from mailpreflight.predict.judge import CheckOptions, check
    from mailpreflight.probes.dns import resolver_for
    from mailpreflight.probes.resolvconf import read_resolv_conf
    from mailpreflight.render import explain as render_explain

    backend = open_backend(args.backend, args.user)
    live = backend.unit(args.unit)
    loader = _live_loader(args.user, env)
    unit = report = None
    try:
        unit = loader.load(live.id)
        resolver = resolver_for(read_resolv_conf(RootFS("/"), required=True))
        report = check([analyze(unit, loader.fs)], CheckOptions(timeout=args.timeout, deadline=60), resolver)
    except (MailpreflightError, OSError) as exc:
        env.say(f"no fresh check: {exc}")
    result = explain.explain(live, unit, report, journal(live))
    env.out(json.dumps(render_explain.to_json(result), indent=2, ensure_ascii=False) if args.format == "json"
            else render_explain.render_text(result))
    return Status.OK if result.failure is None else Status.CRITICAL


def _live_loader(user: bool, env: Environment) -> UnitLoader:
    """The loader for the running system's manager, or for the calling user's (systemctl --user)."""
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.units.loader import UnitLoader

    if not user:
        return UnitLoader(RootFS("/"))
    import pwd

    from mailpreflight.units.searchpath import user_search_paths
    from mailpreflight.units.specifiers import user_manager

    me = pwd.getpwuid(os.getuid())
    who = {"u": me.pw_name, "U": str(me.pw_uid), "g": me.pw_name, "G": str(me.pw_gid), "s": me.pw_shell}
    return UnitLoader(RootFS("/"), user_search_paths(env.environ), user_manager(env.environ, who))


def _firewall(args: argparse.Namespace, env: Environment) -> Status:
    from mailpreflight.firewall import rules as firewall
    from mailpreflight.probes.resolvconf import read_resolv_conf
    from mailpreflight.render import firewall as render
    from mailpreflight.units.loader import UnitLoader

    fs = _root(args)
    results = _analyze(args, UnitLoader(fs))
    resolvers = read_resolv_conf(fs).nameservers
    rules = firewall.allow_list(results, resolvers)
    addresses, when = firewall.resolve(rules) if args.resolve else (None, "")
    if args.format == "firewalld" and (names := firewall.unresolved_names(rules, addresses)):
        raise MailpreflightError(f"firewalld rules need addresses; {names[0]} is a name",
                                 hint="add --resolve to put the current addresses in")
    output = {"nft": render.render_nft, "iptables": render.render_iptables,
              "firewalld": render.render_firewalld}[args.format]
    env.out(output(rules, addresses, when), end="")
    return Status.OK


def _guest_firewall_setup(args: argparse.Namespace, fs: RootFS, resolv_source: str, resolv_text: str,
                          nameservers: Sequence[str]) -> tuple[GuestRuleset, list[str]]:
    """Before any probe: the guest's rules (includes resolved inside the guest) and the resolvers its DNS
    packets go to; every reason it cannot work is said now, not after the probes."""
    from mailpreflight.firewall import guest as guestfw
    from mailpreflight.firewall import sandbox
    from mailpreflight.probes.resolvconf import parse_resolv_conf

    if not args.root:
        raise MailpreflightError("--guest-firewall needs --root", hint="add --root DIR, the guest's mounted root")
    if args.guest_interface and not sandbox.INTERFACE.fullmatch(args.guest_interface):
        raise MailpreflightError(f"--guest-interface {args.guest_interface!r} is not an interface name")
    if args.format not in ("text", "json"):
        raise MailpreflightError(f"--guest-firewall prints text or json, not {args.format}",
                                 hint="use --format text or --format json")
    ruleset = guestfw.find_ruleset(fs)
    sandbox.preflight(ruleset.loads())
    stub: list[str] | None = None
    if guestfw.STUB_RESOLVER in nameservers and not args.guest_dns:
        try:
            with open(guestfw.STUB_UPSTREAMS, encoding="utf-8", errors="replace") as handle:
                stub = list(parse_resolv_conf(handle.read(), guestfw.STUB_UPSTREAMS).nameservers)
        except OSError:
            stub = None
    return ruleset, guestfw.reachable_resolvers(nameservers, resolv_source, resolv_text, stub)


def _guest_firewall(args: argparse.Namespace, ruleset: GuestRuleset, resolvers: list[str],
                    outside: dict[str, object], text: str) -> tuple[str, int]:
    """Classify every packet of the host's probes behind the guest's own rules (a sealed namespace); the
    report with what they block, and how many endpoints they block."""
    import json

    from mailpreflight.firewall import guest as guestfw

    uplink = args.guest_interface or ruleset.interfaces()[0]
    endpoints = guestfw.evaluate(ruleset, outside, resolvers, args.timeout, uplink)
    blocked = [e for e in endpoints if e["guest"] in ("blocked", "partly blocked")]
    if args.format == "json":
        document = json.loads(text)
        document["guest_firewall"] = {"config": ruleset.guest_path, "kind": ruleset.kind, "interface": uplink,
                                      "resolvers": resolvers, "endpoints": endpoints}
        return json.dumps(document, indent=2, ensure_ascii=False), len(blocked)
    lines = [text, "", clean(f"behind the guest's own firewall ({ruleset.guest_path}, {ruleset.kind}; packets out of "
                             f"{uplink}):")]
    for e in endpoints:
        rule = e["blocking_rule"] or ("" if e["guest"] in ("passes", "not classified") else "a rule nft's tracer "
                                                                                          "did not name")
        note = f" (the guest's rules: {e['guest']})" if e["verdict"] == "unreachable anyway" else ""
        lines.append(clean(f"  {e['kind']:5} {e['target']:55} {e['verdict']}{note}" + (f"  <- {rule}" if rule else "")))
    if blocked:
        lines.append(f"  -> {len(blocked)} endpoint(s) the services need are blocked by the guest's own rules")
    return "\n".join(lines), len(blocked)


def _analyze(args: argparse.Namespace, loader: UnitLoader) -> list[UnitDeps]:
    """deps, check and firewall: the units named, or every service with a network dependency."""
    from mailpreflight.deps.analyze import analyze_names, analyze_tree

    return analyze_names(loader, args.units, args.sa_version) if args.units else analyze_tree(loader, args.sa_version)


def _check(args: argparse.Namespace, env: Environment) -> Status:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.access.safewrite import write_atomically
    from mailpreflight.predict.judge import CheckOptions, check
    from mailpreflight.probes.dns import resolver_for
    from mailpreflight.probes.resolvconf import read_resolv_conf
    from mailpreflight.probes.runner import progress_stream
    from mailpreflight.render import check as render
    from mailpreflight.units.loader import UnitLoader

    _positive(timeout=args.timeout, deadline=args.deadline)
    fs = _root(args)
    if args.guest_dns and not args.root:
        raise MailpreflightError("--guest-dns needs --root")
    if args.guest_interface and not args.guest_firewall:
        raise MailpreflightError("--guest-interface goes with --guest-firewall")
    if args.guest_dns:
        resolv_fs, resolv_path, resolv_source = fs, "/etc/resolv.conf", f"{args.root}/etc/resolv.conf"
        resolv_conf = read_resolv_conf(fs, source=resolv_source)
    else:
        resolv_source = args.resolv_conf or "/etc/resolv.conf"
        resolv_fs, resolv_path = RootFS("/"), os.path.abspath(resolv_source)
        resolv_conf = read_resolv_conf(resolv_fs, resolv_path, resolv_source, required=True)
    guest_fw = _guest_firewall_setup(args, fs, resolv_source, resolv_fs.read_text(resolv_path) or "",
                                     resolv_conf.nameservers) if args.guest_firewall else None
    loader = UnitLoader(fs)
    results = _analyze(args, loader)
    options = CheckOptions(args.timeout, args.deadline, progress=progress_stream())
    report = check(results, options, resolver_for(resolv_conf), _auth(args, loader, results))
    colour = args.format == "text" and env.colour and not args.output
    text = {"json": render.render_json, "nagios": render.render_nagios, "prometheus": render.render_prometheus,
            }.get(args.format, lambda r: render.render_text(r, colour=colour))(report)
    status = report.status
    if guest_fw is not None:  # what the guest's own rules block is a warning at least
        text, blocked = _guest_firewall(args, *guest_fw, render.to_json(report), text)
        status = Status.worst([status, Status.WARNING]) if blocked else status
    if args.output:
        try:
            write_atomically(args.output, text if text.endswith("\n") else text + "\n")
        except OSError as exc:  # a stale textfile must not look like a fresh one: fail loudly (exit 3)
            raise MailpreflightError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    else:
        env.out(text, painted=colour)
    return status


def _auth(args: argparse.Namespace, loader: UnitLoader, results: list[UnitDeps]) -> AuthReport | None:
    """The mail-authentication analysis for check: every login path, or those of the units asked for."""
    from mailpreflight.auth.check import analyze_auth

    if args.no_auth:
        return None
    report = analyze_auth(loader.fs, loader)
    return report.restricted_to({r.unit.id for r in results} | set(args.units)) if args.units else report


def _snapshot(args: argparse.Namespace, env: Environment) -> Status:
    import json

    from mailpreflight.access.safewrite import write_atomically
    from mailpreflight.baseline.digestkey import default_key_path, load_or_create
    from mailpreflight.baseline.snapshot import take

    document = take(_root(args), _label(args), load_or_create(args.digest_key or default_key_path()))
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    if not args.output:
        env.out(text, end="")
        return Status.OK
    try:
        write_atomically(args.output, text, mode=0o600)
    except OSError as exc:
        raise MailpreflightError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    env.say(f"baseline of {len(document['files'])} paths and {len(document['findings'])} finding(s) written to "
            f"{args.output}")
    return Status.OK


def _drift(args: argparse.Namespace, env: Environment) -> Status:
    import json

    from mailpreflight.baseline import drift

    baseline = drift.load_baseline(args.baseline)
    result = drift.compare(args.baseline, baseline, _root(args), args.other_host, args.digest_key)
    env.out(json.dumps(drift.to_json(result), indent=2, ensure_ascii=False) if args.format == "json"
            else drift.render_text(result))
    return result.status


def _restore(args: argparse.Namespace, env: Environment) -> Status:
    from mailpreflight.baseline import drift
    from mailpreflight.baseline.digestkey import for_baseline
    from mailpreflight.baseline.restore import restore

    baseline = drift.load_baseline(args.baseline)
    fs = _root(args)
    drift.check_host(args.baseline, baseline, fs, args.other_host)
    digest = for_baseline(args.baseline, baseline, args.digest_key)
    if digest.key is None:
        env.say(f"{args.baseline}: taken before digest keys: its entries cannot be checked for changes made since")
    for path in args.paths:
        result = restore(fs, args.baseline, baseline, path, args.dry_run, digest=digest)
        if result.diff and (args.dry_run or result.changed):
            env.out(result.diff, end="" if result.diff.endswith("\n") else "\n")
        env.say(result.message)
    return Status.OK


def _root(args: argparse.Namespace) -> RootFS:
    """The tree the verb reads: "/", --root DIR, or a guest's disks opened for this run (--image, --domain)."""
    from mailpreflight.access.rootfs import RootFS

    if args.image or args.domain:
        if args.root:
            raise MailpreflightError("--root and --image/--domain name two different systems: give one")
        if getattr(args, "opened", None) is None:
            from mailpreflight.access.image import open_guest, parse_key

            writes = args.verb == "restore" or (args.verb == "dropin" and args.action != "show")
            keys = [parse_key(spec) for spec in args.key]
            args.opened = args.resources.enter_context(open_guest(
                args.image, args.domain, keys, readonly=not writes or args.dry_run))
        args.root = args.opened  # from here on the guest is an offline root, as with --root
    fs = RootFS(args.root or "/")
    if args.root and not fs.is_dir("/"):
        raise MailpreflightError(f"--root {args.root}: not a directory")
    return fs


def _label(args: argparse.Namespace) -> str:
    """How a baseline names the system it was taken of."""
    if args.image or args.domain:
        return f"domain:{args.domain}" if args.domain else "image:" + ",".join(args.image)
    return args.root or "/"


def _deps(args: argparse.Namespace, env: Environment) -> Status:
    from mailpreflight.deps.view import deps_view
    from mailpreflight.render.deps import render_json, render_text
    from mailpreflight.units.loader import UnitLoader

    views = deps_view(_analyze(args, UnitLoader(_root(args))))
    env.out(render_json(views) if args.format == "json" else render_text(views))
    return Status.worst(view.status for view in views)


def _show(args: argparse.Namespace, env: Environment) -> Status:
    from mailpreflight.render.show import render_json, render_text
    from mailpreflight.units.loader import UnitLoader, exec_environment
    from mailpreflight.units.view import show_view

    fs = _root(args)
    unit = UnitLoader(fs).load(args.unit)
    exec_env = exec_environment(unit, fs) if args.expand_env else None
    if args.format == "json":
        env.out(render_json(show_view(unit, exec_env)))
    else:
        env.out(render_text(show_view(unit, exec_env, fs)))
    if unit.load_error:
        env.say(str(unit.load_error))
        return Status.CRITICAL
    return Status.OK


def _cleanup(args: argparse.Namespace, env: Environment) -> Status:
    from mailpreflight.firewall import sandbox

    result = sandbox.cleanup(args.dry_run)
    for line in result.removed:
        env.out(line)
    for line in result.live:
        env.out(f"left alone: {line}")
    for line in result.problems:
        env.say(line)
    if not (result.removed or result.live or result.problems):
        env.out("nothing to clean up")
    return Status.WARNING if result.problems else Status.OK


VERBS: dict[str, Callable[[argparse.Namespace, Environment], Status]] = {
    "show": _show, "deps": _deps, "check": _check, "dropin": _dropin, "explain": _explain, "firewall": _firewall,
    "snapshot": _snapshot, "drift": _drift, "restore": _restore, "cleanup": _cleanup}


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """The exit code of one run: the verb's Status, or UNKNOWN (3) for any error, a crash included."""
    env = env or Environment()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["guard"]:  # hot path at every service start: no parser, no other imports
        from mailpreflight.fix.guard import main as guard_main

        return guard_main(arguments[1:])  # guard's own exit protocol (docs/design.md, "Exit codes")
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # argparse: usage errors are UNKNOWN, --help/--version are OK
        return Status.OK.exit_code if exc.code == 0 else Status.UNKNOWN.exit_code
    handler = VERBS.get(args.verb)
    if handler is None:  # `guard` only ever comes first, and is handled above
        env.say(f"`{args.verb}` must be the first word")
        return Status.UNKNOWN.exit_code
    try:
        with contextlib.ExitStack() as resources:  # what a verb opens for the run (a guest's disks) is closed here
            args.resources = resources
            return handler(args, env).exit_code
    except MailpreflightError as exc:
        env.say(str(exc))
    except ModuleNotFoundError as exc:  # a broken or partial installation: say what is missing
        env.say(f"the Python module {exc.name!r} is missing; reinstall with `pip install mailpreflight` "
                f"(and the `live` extra for explain)")
    except KeyboardInterrupt as exc:  # also SIGTERM/SIGHUP during --guest-firewall (firewall/sandbox.py)
        env.say(str(exc) or "interrupted")
    except BrokenPipeError:
        return Status.OK.exit_code
    except Exception as exc:  # a crash is UNKNOWN, never WARNING: one line, the traceback with --debug
        if args.debug:
            traceback.print_exc(file=env.stderr)
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        place = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
        env.say(f"internal error{place}: {type(exc).__name__}: {exc} (run again with --debug for the traceback, "
                f"and report it)")
    return Status.UNKNOWN.exit_code
