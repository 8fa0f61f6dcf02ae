"""Which `include`s does nft really open? Asked of the real nft (`nft -c -f` in a throwaway network namespace):
every text in which nft tries to open the include's file must have that include found by
nftinclude.include_keywords — the guard that keeps nft from ever reading a host file for a guest."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpreflight.firewall.nftinclude import include_keywords

pytestmark = pytest.mark.skipif(shutil.which("nft") is None or shutil.which("unshare") is None,
                                reason="needs nft (nftables) and unshare (util-linux)")
FRAGMENTS = ["include", " ", "\t", "\n", ";", "#", '"', '"/a"', "x", "5", "\\\n", "{", "}", "table inet t ",
             "chain c ", ":", "-", ".", "$", "*", "define v = 1", "fe80::1", "1.2.3.4", "comment ", "/", "_", "0x"]


def nft_opens(text: str, directory: Path) -> bool:
    """Whether `nft -c -f` tries to open the file the text's `"/a"` names (a path that does not exist)."""
    marker = f"/nonexistent-mailpreflight-{uuid.uuid4().hex}.nft"
    path = directory / f"{uuid.uuid4().hex}.nft"
    path.write_text(text.replace('"/a"', f'"{marker}"'))
    done = subprocess.run(["unshare", "--net", "nft", "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=30)
    if "Operation not permitted" in done.stderr and "unshare" in done.stderr:
        pytest.skip("needs root (unshare --net)")
    # only these say nft looked for the file: a syntax error merely quotes the line that names it
    return f"File not found: {marker}" in done.stderr or f'Could not open file "{marker}"' in done.stderr


@pytest.mark.parametrize("text, opens", [
    ('include "/a"\n', True),
    ('table inet t {\n include "/a"\n}\n', True),
    ('junk ;include "/a"\n', True),  # after a syntax error, nft goes on at the next ";" or line
    ('foo\n bar baz\ninclude "/a"\n', True),
    ('x\ninclude \\\n "/a"\n', True),  # a line continuation
    ('define v = 1\ninclude "/a"\n', True),
    ('x include "/a"\n', False),
    ('5include "/a"\n', False),
    ('fe80::1include "/a"\n', False),
    ('"a\ninclude" include "/a"\n', False),
    ('# include "/a"\n', False),
    ('comment "include "/a"\n', False),
    ('noinclude "/a"\n', False),
    ('" include "/a"\n', False),
])
def test_known_cases(text: str, opens: bool, tmp_path: Path) -> None:
    assert nft_opens(text, tmp_path) == opens  # what nft 1.0.x does
    if opens:
        assert include_keywords(text), text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=12))
def test_every_include_nft_opens_is_found(tmp_path: Path, fragments: list[str]) -> None:
    text = "".join(fragments) + '\ninclude "/a"\n' if fragments[-1] == "#" else "".join(fragments)
    if nft_opens(text, tmp_path):
        assert include_keywords(text), repr(text)


def test_the_oracle_sees_an_open(tmp_path: Path) -> None:
    """Without this, the property above could pass with an nft that never says what it opens."""
    assert nft_opens('include "/a"\n', tmp_path)
    assert not nft_opens('# include "/a"\n', tmp_path)
