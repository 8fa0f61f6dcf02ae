"""A generated offline root of N services shaped like issue 14's: a Debian 12 tree (merged /usr: /lib is a link
to usr/lib), half the services in /etc/systemd/system, half in /usr/lib/systemd/system, a third with a drop-in
(a sixth with two), each with `ExecStartPre=/bin/bash -c "sa-update ... || true"`; plus aliases, masks, a
template with instances, a dashed-prefix drop-in and a type-level `service.d/`, so that every lookup the loader
does is exercised. SpamAssassin's files (Mail/SpamAssassin.pm, sa-update, a MIRRORED.BY) are there, so that the
per-root work of the analysis is real. Used by benchmarks/load.py, benchmarks/check.py and tests/unit/test_scale.py.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

SA_PM = Path("/usr/share/perl5/Mail/SpamAssassin.pm")
SA_UPDATE = Path("/usr/bin/sa-update")

UNIT = """[Unit]
Description=Generated mail filter {i} for %n
After=network-online.target
Wants=network-online.target

[Service]
Type={type}
EnvironmentFile=-/etc/default/svc{i}
Environment="MODE=fast lane" LEVEL={i}
ExecStartPre=/bin/bash -c "sa-update{args} || true"
ExecStartPre=-/usr/bin/test -d %t/svc{i}
ExecStart=/usr/sbin/daemon{i} --pidfile=%t/d{i}.pid $OPTIONS \\
    --name '%p instance' --escape "\\x41\\t"
ExecReload=/bin/kill -HUP $MAINPID
TimeoutStartSec={timeout}

[Install]
WantedBy=multi-user.target
"""
DROPIN = "[Service]\nExecStartPre=\nExecStartPre=/bin/bash -c \"sa-update --channel updates.example.org || true\"\n" \
         "TimeoutStartSec=120\n"
MIRRORED_BY = "# generated\nhttp://sa-mirror1.example.org/ weight=5\nhttps://sa-mirror2.example.org/ weight=1\n"


def write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    os.chmod(target, mode)


def generate(root: Path, count: int, seed: int = 14) -> list[str]:
    """Write the tree; return the service names a full `deps` reports on (every non-template service)."""
    rng = random.Random(seed)
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    os.symlink("usr/lib", root / "lib")
    os.symlink("usr/bin", root / "bin")
    write(root, "/etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')
    write(root, "/etc/hostname", "mail1\n")
    write(root, "/etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    write(root, "/etc/resolv.conf", "nameserver 192.0.2.53\noptions timeout:2 attempts:2\n")
    write(root, "/usr/lib/systemd/libsystemd-shared-252.so", "")
    sa_pm = SA_PM.read_text(errors="replace") if SA_PM.exists() else "package Mail::SpamAssassin;\n" \
        "our $VERSION = \"4.000001\";\n"
    write(root, "/usr/share/perl5/Mail/SpamAssassin.pm", sa_pm)
    sa_update = SA_UPDATE.read_text(errors="replace") if SA_UPDATE.exists() else \
        "#!/usr/bin/perl -T\nmy $LOCAL_RULES_DIR = '/etc/spamassassin';\n"
    write(root, "/usr/bin/sa-update", sa_update, 0o755)
    for program in ("bash", "gpg", "curl", "test", "kill"):
        write(root, f"/usr/bin/{program}", "#!/bin/false\n", 0o755)
    write(root, "/etc/spamassassin/sa-update-keys/trustdb.gpg", "placeholder\n")
    write(root, "/var/lib/spamassassin/4.000001/updates_spamassassin_org/MIRRORED.BY", MIRRORED_BY)
    write(root, "/var/lib/spamassassin/4.000001/updates_example_org/MIRRORED.BY", MIRRORED_BY)
    names = []
    for i in range(count):
        name = f"mf-{i}-worker.service"
        directory = "/etc/systemd/system" if i % 2 == 0 else "/usr/lib/systemd/system"
        kind = rng.choice(["forking", "simple", "notify"])
        args = rng.choice(["", " --nogpg", " --channel updates.spamassassin.org"])
        write(root, f"{directory}/{name}", UNIT.format(i=i, type=kind, args=args, timeout=rng.choice([90, 300])))
        if i % 3 == 0:
            write(root, f"/etc/systemd/system/{name}.d/50-local.conf", DROPIN)
            if i % 6 == 0:
                write(root, f"/etc/systemd/system/{name}.d/10-env.conf", "[Service]\nEnvironment=EXTRA=1\n")
        names.append(name)
    # the rarer shapes: aliases (both directions), masks, a template and its instances, dashed prefixes
    for i in range(0, count, 97):
        os.symlink(f"/usr/lib/systemd/system/mf-{i + 1}-worker.service",
                   root / f"etc/systemd/system/mfalias-{i}-worker.service")
        names.append(f"mfalias-{i}-worker.service")
    for i in range(5, count, 211):
        target = root / f"etc/systemd/system/mf-{i}-worker.service"
        if target.exists():
            target.unlink()
        os.symlink("/dev/null", target)
    write(root, "/usr/lib/systemd/system/filter@.service", UNIT.format(i="@", type="simple", args="", timeout=90))
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir()
    for i in range(3):
        os.symlink("/usr/lib/systemd/system/filter@.service", wants / f"filter@{i}.service")
        names.append(f"filter@{i}.service")  # instances a .wants/ link enables are units of the tree too
    write(root, "/etc/systemd/system/mf-.service.d/90-prefix.conf", "[Service]\nEnvironment=PREFIX=1\n")
    write(root, "/usr/lib/systemd/system/service.d/10-all.conf", "[Service]\nEnvironment=ALL=1\n")
    return sorted(names)
