#!/usr/bin/env python3
"""CHANGELOG.md -> debian/changelog, so that the project keeps one changelog.

    packaging/deb/changelog.py CHANGELOG.md VERSION 'Name <email>' DISTRIBUTION > debian/changelog

Each `## VERSION (YYYY-MM-DD)` section becomes one entry, each `- ` item (with its indented continuation
lines) one `  * ` line, wrapped. Exits 2 with the reason when the file has no such section or the newest
one is not VERSION (the version in src/mailpreflight/__init__.py): the package must never carry a
changelog that does not describe it.
"""

from __future__ import annotations

import datetime
import re
import sys
import textwrap

HEADING = re.compile(r"^## (?P<version>\S+) \((?P<date>\d{4}-\d{2}-\d{2})\)\s*$")


def parse(text: str) -> list[tuple[str, datetime.date, list[str]]]:
    entries: list[tuple[str, datetime.date, list[str]]] = []
    for line in text.splitlines():
        heading = HEADING.match(line)
        if heading:
            day = datetime.date.fromisoformat(heading["date"])
            entries.append((heading["version"], day, []))
        elif line.startswith("## "):
            raise ValueError(f"heading not in the form '## VERSION (YYYY-MM-DD)': {line!r}")
        elif not entries or not line.strip():
            continue
        elif line.startswith("- "):
            entries[-1][2].append(line[2:].strip())
        elif line.startswith("  ") and entries[-1][2]:
            entries[-1][2][-1] += " " + line.strip()
        else:
            raise ValueError(f"{entries[-1][0]}: not a '- ' item or its indented continuation: {line!r}")
    for version, _, items in entries:
        if not items:
            raise ValueError(f"{version}: no '- ' items")
    return entries


def render(entries: list[tuple[str, datetime.date, list[str]]], maintainer: str, distribution: str) -> str:
    out = []
    for version, day, items in entries:
        out.append(f"mailpreflight ({version}) {distribution}; urgency=medium")
        out.append("")
        for item in items:
            out.append(textwrap.fill(item, width=78, initial_indent="  * ", subsequent_indent="    ",
                                     break_on_hyphens=False, break_long_words=False))
        stamp = datetime.datetime.combine(day, datetime.time(12, 0), datetime.UTC)
        out.append("")
        out.append(f" -- {maintainer}  {stamp.strftime('%a, %d %b %Y %H:%M:%S +0000')}")
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    path, version, maintainer, distribution = argv[1:]
    try:
        with open(path, encoding="utf-8") as handle:
            entries = parse(handle.read())
    except (OSError, ValueError) as exc:
        print(f"changelog.py: {path}: {exc}", file=sys.stderr)
        return 2
    if not entries:
        print(f"changelog.py: {path} has no '## VERSION (YYYY-MM-DD)' section", file=sys.stderr)
        return 2
    if entries[0][0] != version:
        print(f"changelog.py: the newest section of {path} is {entries[0][0]}, but the version is {version}: "
              f"add a '## {version} (YYYY-MM-DD)' section", file=sys.stderr)
        return 2
    sys.stdout.write(render(entries, maintainer, distribution))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
