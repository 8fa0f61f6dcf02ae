"""An environment file of 200,000 assignments (4 MiB), or of long runs of blanks, is read in linear time,
with systemd's semantics: the fast path (whole simple lines, runs of plain characters, runs of blanks) reads
every input like the character-by-character state machine the corpus (tests/corpus/cases/envfile.json) pins
to systemd."""

from __future__ import annotations

import random
import time

from hostile_roots import LOOPBACK, Guest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailpreflight.units.environ import expand_argv, parse_env_file

UNIT = "/etc/systemd/system/fetchy.service"


def test_200k_assignments_in_linear_time(guest: Guest) -> None:
    lines = [f"VARIABLE_{i:06}=value_{i:06}_{'x' * 4}\n" for i in range(200_000)]
    data = "".join(lines).encode()
    assert 4 * 1024 * 1024 <= len(data) <= 8 * 1024 * 1024
    started = time.perf_counter()
    result = parse_env_file(data)
    elapsed = time.perf_counter() - started
    assert len(result.env) == 200_000 and result.env[-1] == ("VARIABLE_199999", "value_199999_xxxx")
    assert elapsed < 2.0, f"{elapsed:.2f} s for 200,000 assignments"  # 0.2 s here; was minutes (quadratic)
    redefined = parse_env_file(data + b"VARIABLE_000000=again\n")
    assert redefined.env[0] == ("VARIABLE_000000", "again") and len(redefined.env) == 200_000  # kept in place
    guest.write("/etc/sysconfig/huge", data)
    guest.write(UNIT, LOOPBACK.replace("[Service]\n", "[Service]\nEnvironmentFile=/etc/sysconfig/huge\n"))
    shown = guest.run("show", "fetchy", "--expand-env", "--format", "json", bound=20)
    assert shown.returncode == 0 and '"VARIABLE_199999": "value_199999_xxxx"' in shown.stdout


TRICKY = st.text(alphabet=st.sampled_from(list("AB_=#; \t\r\n\\'\"$`x1é\ufffe")), max_size=60)


@settings(max_examples=1500, deadline=None)
@given(TRICKY, st.sampled_from([252, 254]))
def test_fast_path_reads_like_the_state_machine(text: str, version: int) -> None:
    """The linear reader's shortcuts (whole simple lines, runs of plain characters) against the character-by-
    character state machine the corpus tests (tests/corpus/cases/envfile.json) pin to systemd."""
    data = text.encode("utf-8", "surrogatepass")
    assert parse_env_file(data, version) == parse_env_file(data, version, fast=False)


def test_fast_path_on_a_random_realistic_file() -> None:
    rng = random.Random(17)
    pieces = ["A=1", "B = two words ", "C='quoted # not a comment'", 'D="x\\"y\\\\z\\$"', "# comment\\",
              "E=trailing\\", "  F=\tval\t ", "=nokey", "G", "H=a\\ b", "I=\"multi\nline\"", "; semi", ""]
    text = "\n".join(rng.choice(pieces) for _ in range(5000))
    for version in (252, 254):
        assert parse_env_file(text.encode(), version) == parse_env_file(text.encode(), version, fast=False)


def test_long_runs_of_blanks_in_linear_time() -> None:
    """Blanks before a key were skipped one at a time, each after a failed try of the whole-line patterns that
    scanned the rest of the run: a line of 40,000 spaces took 16 s (the fuzz campaign's hang). Now one step."""
    small = b"A=1\n" + b" \t" * 500 + b"\r\n \n" + b" " * 300 + b"B=  \t 2\nC\n" + b" " * 700
    assert parse_env_file(small) == parse_env_file(small, fast=False)
    assert parse_env_file(small).env == (("A", "1"), ("B", "2"))
    assert parse_env_file(small).warnings == ((6, "Missing '=' after 'C', ignoring line"),)
    mib = 1024 * 1024
    for data in (b"A=1\n" + b" " * (4 * mib) + b"\n",  # the campaign's input, a hundred times longer
                 b"A=1\n" + b" \t" * (2 * mib) + b"\nB=2\n",
                 b"\r\n" * (2 * mib) + b"B=2",
                 b"A=" + b" " * (4 * mib) + b"'x'\n"):  # blanks after `=`, before a quoted value
        started = time.perf_counter()
        result = parse_env_file(data)
        elapsed = time.perf_counter() - started
        assert elapsed < 2.0, f"{elapsed:.2f} s for {len(data):,} bytes"  # 0.01 s here
        assert result.warnings == () and result.error is None
        assert dict(result.env) in ({"A": "1"}, {"A": "1", "B": "2"}, {"B": "2"}, {"A": "x"})


def _replace_braced_reference(word: str, values: dict[str, str]) -> str:
    """The expansion of `${NAME}` as it was before the lookups were kept (each `${` searched the rest)."""
    out: list[str] = []
    pos = 0
    while pos < len(word):
        if word.startswith("$$", pos):
            out.append("$")
            pos += 2
        elif word.startswith("${", pos):
            close, colon = word.find("}", pos + 2), word.find(":", pos + 2)
            if close < 0 or 0 <= colon < close:
                out.append("${")
                pos += 2
                continue
            out.append(values.get(word[pos + 2:close], ""))
            pos = close + 1
        else:
            out.append(word[pos])
            pos += 1
    return "".join(out)


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("${}:$A_b ")), max_size=40))
def test_braced_expansion_reads_as_before(word: str) -> None:
    values = {"A": "1", "b": "two words", "A_b": "$x", "": "empty name"}
    assert expand_argv([f"/bin/x{word}"], values.items()) == [f"/bin/x{_replace_braced_reference(word, values)}"]


def test_many_unclosed_references_in_linear_time() -> None:
    """A word of `${` without a `}` (an Exec line may be 1 MiB) took 5.6 s: each searched the rest of the word."""
    for word in ("${" * (512 * 1024), "${a:" * (256 * 1024) + "}", "${A}:" * (200 * 1024)):
        started = time.process_time()
        expanded = expand_argv(["/bin/x", word], [("A", "1")])
        elapsed = time.process_time() - started
        assert elapsed < 1.5, f"{elapsed:.2f} s"  # 0.13 s here
        assert expanded == ["/bin/x", _replace_braced_reference(word, {"A": "1"})]
    assert expand_argv(["${" * 3 + "A}${A:-x}"], [("A", "1")]) == ["${A:-x}"]  # the name is `${${A`
