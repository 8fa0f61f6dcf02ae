"""The verbs: each parses nothing, calls the layers, renders, and returns a Status (docs/design.md)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mailpreflight.cli.env import Environment
from mailpreflight.cli.options import positive as _positive
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Status, UnitDepsView
from mailpreflight.render.escape import clean, clean_json

if TYPE_CHECKING:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.auth.check import AuthReport
    from mailpreflight.deps.analyze import UnitDeps
    from mailpreflight.firewall.guest import GuestRuleset
    from mailpreflight.units.loader import UnitLoader


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
    unknown = firewall.unknown_endpoints(results)
    addresses, when = firewall.resolve(rules) if args.resolve else (None, "")
    if args.format == "firewalld" and (names := firewall.unresolved_names(rules, addresses)):
        raise MailpreflightError(f"firewalld rules need addresses; {names[0]} is a name",
                                 hint="add --resolve to put the current addresses in")
    output = {"nft": render.render_nft, "iptables": render.render_iptables,
              "firewalld": render.render_firewalld}[args.format]
    env.out(output(rules, addresses, when, unknown), end="")
    for note in unknown:  # the list is incomplete: a policy-drop table built from it would break these
        env.say(f"firewall: warning: not in the list: {note}")
    return Status.WARNING if unknown else Status.OK


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
    from mailpreflight.firewall import guest as guestfw
    from mailpreflight.render import firewall as render

    uplink = args.guest_interface or ruleset.interfaces()[0]
    endpoints = guestfw.evaluate(ruleset, outside, resolvers, args.timeout, uplink)
    blocked = [e for e in endpoints if e["guest"] in ("blocked", "partly blocked")]
    if args.format == "json":
        return render.guest_json(text, ruleset.guest_path, ruleset.kind, uplink, resolvers, endpoints), len(blocked)
    return render.guest_text(text, ruleset.guest_path, ruleset.kind, uplink, endpoints), len(blocked)


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
    from mailpreflight.deps.analyze import analyze_names, iter_tree

    loader = UnitLoader(fs)
    # units named: all loaded first (an unknown one fails before any probe); a whole tree: each unit's probes
    # start as soon as it is analysed, while the next ones are
    named = analyze_names(loader, args.units, args.sa_version) if args.units else []
    auth = _auth(args, loader, named)
    options = CheckOptions(args.timeout, args.deadline, progress=progress_stream())
    report = check(named or iter_tree(loader, args.sa_version), options, resolver_for(resolv_conf), auth)
    colour = args.format == "text" and env.colour and not args.output
    if args.format == "json" and guest_fw is None and not args.output:  # streamed: a fleet's report is large
        for chunk in render.iter_json(report):
            env.out(chunk, end="")
        env.out()
        return report.status
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

    document = take(_root(args), _label(args), load_or_create(args.digest_key or default_key_path()), env.say)
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
    from mailpreflight.baseline.document import load_baseline
    from mailpreflight.render.drift import render_text, to_json

    baseline = load_baseline(args.baseline)
    result = drift.compare(args.baseline, baseline, _root(args), args.other_host, args.digest_key, env.say)
    env.out(json.dumps(to_json(result), indent=2, ensure_ascii=False) if args.format == "json"
            else render_text(result))
    return result.status


def _restore(args: argparse.Namespace, env: Environment) -> Status:
    from mailpreflight.baseline import drift
    from mailpreflight.baseline.digestkey import for_baseline
    from mailpreflight.baseline.document import load_baseline
    from mailpreflight.baseline.restore import restore

    baseline = load_baseline(args.baseline)
    fs = _root(args)
    drift.check_host(args.baseline, baseline, fs, args.other_host, env.say)
    digest = for_baseline(args.baseline, baseline, args.digest_key)
    if digest.key is None:
        env.say(f"{args.baseline}: taken before digest keys: its entries cannot be checked for changes made since")
    for path in args.paths:
        result = restore(fs, args.baseline, baseline, path, args.dry_run, digest=digest, allow_setid=args.allow_setid)
        if result.diff and (args.dry_run or result.changed):
            env.out(result.diff, end="" if result.diff.endswith("\n") else "\n")
        env.say(result.message)
    return Status.OK


def _root(args: argparse.Namespace) -> RootFS:
    """The tree the verb reads: "/", --root DIR, or a guest's disks opened for this run (--image, --domain)."""
    from mailpreflight.access.rootfs import RootFS

    if args.connect and not args.domain:
        raise MailpreflightError("--connect names the libvirt connection of --domain: give --domain NAME too")
    if args.image or args.domain:
        if args.root:
            raise MailpreflightError("--root and --image/--domain name two different systems: give one")
        if getattr(args, "opened", None) is None:
            from mailpreflight.access.image import open_guest, parse_key

            writes = args.verb == "restore" or (args.verb == "dropin" and args.action != "show")
            keys = [parse_key(spec) for spec in args.key]
            args.opened = args.resources.enter_context(open_guest(
                args.image, args.domain, keys, readonly=not writes or args.dry_run, connect=args.connect))
        args.root = args.opened  # from here on the guest is an offline root, as with --root
    fs = RootFS(args.root or "/")
    if args.root and not fs.is_dir("/"):
        raise MailpreflightError(f"--root {args.root}: not a directory")
    args.rootfs = fs  # cli/app.py reports the files it refused to read (FIFOs, devices, too big)
    return fs


def _label(args: argparse.Namespace) -> str:
    """How a baseline names the system it was taken of."""
    if args.image or args.domain:
        return f"domain:{args.domain}" if args.domain else "image:" + ",".join(args.image)
    return args.root or "/"


def _deps(args: argparse.Namespace, env: Environment) -> Status:
    """Streamed: each unit is written as soon as it is rendered (on every core for a whole tree, cli/fanout.py);
    units named on the command line are all loaded first, so that an unknown one fails before any output."""
    from mailpreflight.cli.fanout import framing_of, write_tree
    from mailpreflight.deps.analyze import analyze_names
    from mailpreflight.deps.view import unit_deps_view
    from mailpreflight.render.deps import JSON_FRAMING, TEXT_FRAMING, json_unit, text_unit
    from mailpreflight.units.loader import UnitLoader

    loader = UnitLoader(_root(args))
    unit_text, framing = (json_unit, JSON_FRAMING) if args.format == "json" else (text_unit, TEXT_FRAMING)

    escape = clean_json if args.format == "json" else clean

    def render(view: UnitDepsView) -> str:
        return escape(unit_text(view))  # escaped where it is rendered: in the workers, not in the writing parent

    if not args.units:
        return write_tree(loader, args.sa_version, render, framing, env)
    views = [unit_deps_view(result) for result in analyze_names(loader, args.units, args.sa_version)]
    statuses: list[Status] = []
    for chunk in framing_of([(view.status, render(view)) for view in views], framing, statuses):
        env.out(chunk, end="", painted=True)  # the units' text is clean() already; the framing is plain
    return Status.worst(statuses)


def _show(args: argparse.Namespace, env: Environment) -> Status:
    from mailpreflight.render.show import render_json, render_text
    from mailpreflight.units.loader import UnitLoader, exec_environment
    from mailpreflight.units.view import show_view

    loader = UnitLoader(_root(args))
    fs = loader.fs  # with the units generators make at boot (units/generators.py)
    unit = loader.load(args.unit)
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
    from mailpreflight.firewall import leftovers

    result = leftovers.cleanup(args.dry_run)
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
