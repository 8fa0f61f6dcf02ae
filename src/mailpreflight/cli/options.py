"""The command line's parser: every option defined once (docs/design.md, "Command line")."""

from __future__ import annotations

import argparse

from mailpreflight import __version__
from mailpreflight.errors import MailpreflightError

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
    restore.add_argument("--allow-setid", action="store_true",
                         help="also restore set-uid, set-gid and sticky bits the baseline records (dropped otherwise)")
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


def positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise MailpreflightError(f"--{name.replace('_', '-')} must be positive, not {value:g}")
