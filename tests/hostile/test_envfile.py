"""An environment file of 200,000 assignments (4 MiB) is read in linear time, with systemd's semantics: the
fast path (whole simple lines, runs of plain characters) reads every input like the character-by-character
state machine the corpus (tests/corpus/cases/envfile.json) pins to systemd."""

from __future__ import annotations

import random
import time

from hostile_roots import LOOPBACK, Guest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailpreflight.units.environ import parse_env_file

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
