"""Issue 14, the parts a fast test can prove (the timings themselves are benchmarks: benchmarks/load.py, check.py,
guard.py): the loader reads the search path once per run, per-root facts are read once per run, and the streamed
`deps` output is the same document whether one process or several render it."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import jsonschema
import pytest

from bigroot import generate
from helpers import make_tree
from mailpreflight.access.bounded import GuestFileRefused
from mailpreflight.access.ledger import READ_TOTAL_LIMIT
from mailpreflight.access.rootfs import RootFS
from mailpreflight.cli import fanout
from mailpreflight.cli.env import Environment
from mailpreflight.deps.analyze import _as_tuples, _endpoints, analyze, analyze_tree, iter_tree
from mailpreflight.deps.base import RuleContext
from mailpreflight.deps.saupdate import SaUpdateRule, _worst_cases
from mailpreflight.deps.view import deps_view, unit_deps_view
from mailpreflight.model import Status, UnitDepsView
from mailpreflight.render.deps import (
    JSON_FRAMING,
    json_document,
    json_unit,
    render_json,
    render_text,
    text_document,
    text_unit,
    unit_json,
)
from mailpreflight.render.escape import clean, clean_json
from mailpreflight.units.loader import UnitLoader

SCHEMA = json.loads((Path(__file__).parents[2] / "docs/schemas/deps.schema.json").read_text())
UNITS = 120


@dataclass(frozen=True)
class CountingFS(RootFS):
    """RootFS that counts the calls made to it (each is at least one system call)."""

    calls: Counter[str] = field(default_factory=Counter, compare=False, hash=False, repr=False)
    reads: Counter[str] = field(default_factory=Counter, compare=False, hash=False, repr=False)

    def lstat(self, guest: str):  # type: ignore[no-untyped-def]
        self.calls["lstat"] += 1
        return super().lstat(guest)

    def chase(self, guest: str, follow_last: bool = True) -> str | None:
        self.calls["chase"] += 1
        return super().chase(guest, follow_last)

    def listdir(self, guest: str) -> list[str]:
        self.calls["listdir"] += 1
        return super().listdir(guest)

    def is_dir(self, guest: str) -> bool:
        self.calls["is_dir"] += 1
        return super().is_dir(guest)

    def read_bytes(self, guest: str, limit: int = 64 * 1024 * 1024) -> bytes:
        self.reads[guest] += 1
        return super().read_bytes(guest, limit)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("bigroot")
    names = generate(path, UNITS)
    (path / "etc/default").mkdir()
    os.mkfifo(path / "etc/default/svc1")  # mf-1-worker's EnvironmentFile=: the read gate refuses it
    return path, names


def test_the_loader_reads_the_search_path_once(root: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    path, names = root
    syscalls: Counter[str] = Counter()

    def counted(name: str, real: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            try:
                result = real(*args, **kwargs)
            except OSError:
                syscalls[name + " missing"] += 1
                raise
            syscalls[name] += 1
            return result
        return call

    for name in ("lstat", "stat", "listdir", "readlink"):
        monkeypatch.setattr(os, name, counted(name, getattr(os, name)))
    fs = CountingFS(str(path))
    loader = UnitLoader(fs, run_generators=False)  # keeps CountingFS (no generator in this root anyway)
    units = [loader.load(name) for name in loader.service_names()]
    monkeypatch.undo()
    assert len(units) == len(names) and sum(u.masked for u in units) >= 1
    assert any(len(u.names) > 1 for u in units)  # the aliases are there
    loaded = [u for u in units if not u.masked]
    assert all(u.load_error is None for u in loaded)
    assert all("/usr/lib/systemd/system/service.d/10-all.conf" in u.dropin_paths for u in units)
    dropin_dirs = {p.rsplit("/", 1)[0] for u in units for p in u.dropin_paths}
    # every directory listed once: the search path, each drop-in directory, and what specifiers read at start
    listed = syscalls["listdir"] + syscalls["listdir missing"]
    assert listed <= len(loader.search_paths) + len(dropin_dirs) + 4, syscalls
    # no probing: before issue 14 every search directory and drop-in directory was tried per unit and name (11
    # lstat calls of missing paths per unit here, 171 lstat calls per unit in all on the tree)
    assert syscalls["lstat missing"] / len(units) < 0.5, syscalls
    # what is left is the read gate resolving each file it opens, and the index's one look at it
    files = sum(1 + len(u.dropin_paths) for u in loaded)
    lstats = syscalls["lstat"] + syscalls["lstat missing"] + syscalls["stat"] + syscalls["stat missing"]
    assert lstats / files < 2.5, (lstats, files, syscalls)
    # a drop-in every unit has is read once; a unit file once per unit it is the file of (an alias or an instance
    # loads it again), every other file once
    assert fs.reads["/usr/lib/systemd/system/service.d/10-all.conf"] == 1
    assert fs.reads["/etc/systemd/system/mf-.service.d/90-prefix.conf"] == 1
    fragments = Counter(u.fragment_path for u in loaded)
    assert all(count <= max(fragments[path], 1) or path == "/etc/os-release" for path, count in fs.reads.items())


def test_index_answers_as_rootfs_does(root: tuple[Path, list[str]]) -> None:
    """The index only remembers what RootFS says: the same unit, file for file, as a loader without it."""
    path, names = root
    loader = UnitLoader(RootFS(str(path)))
    for name in names[::7]:
        unit = loader.load(name)
        fresh = UnitLoader(RootFS(str(path))).load(name)
        assert unit == fresh
        fs = RootFS(str(path))
        for file in (unit.fragment_path or "", *unit.dropin_paths):
            assert loader.index.chase(file) == fs.chase(file)
            assert loader.index.is_null_or_empty(file) == fs.is_null_or_empty(file)
            assert loader.index.lstat(file) == fs.lstat(file)


def test_per_root_facts_are_read_once(root: tuple[Path, list[str]]) -> None:
    """SpamAssassin's version and install, resolv.conf, MIRRORED.BY: as often for 60 units as for one."""
    path, _ = root

    def reads(count: int) -> Counter[str]:
        fs = CountingFS(str(path))
        loader = UnitLoader(fs, run_generators=False)
        results = [analyze(loader.load(name), fs) for name in loader.service_names()[:count]]
        assert sum(1 for r in results for e in r.commands if e.plan is not None) >= count
        return fs.reads

    one, many = reads(1), reads(60)
    for shared in ("/usr/share/perl5/Mail/SpamAssassin.pm", "/etc/resolv.conf", "/usr/bin/sa-update",
                   "/var/lib/spamassassin/4.000001/updates_spamassassin_org/MIRRORED.BY",
                   "/var/lib/spamassassin/4.000001/updates_example_org/MIRRORED.BY"):
        assert 1 <= many[shared] <= max(one[shared], 1) + 1, (shared, one[shared], many[shared])
    assert many["/usr/share/perl5/Mail/SpamAssassin.pm"] == 1
    assert many["/etc/resolv.conf"] == 1


def test_what_the_analysis_remembers_stays_bounded_however_many_distinct_units(tmp_path: Path) -> None:
    """A hostile tree of units that each name their own program, PATH, --updatedir, keyring and channel: what a
    run remembers (RootFS.memo, deps/base.py kept()) does not grow with them."""
    from mailpreflight.deps.base import KEPT

    units = {}
    for i in range(3 * KEPT):
        units[f"/etc/systemd/system/h{i}.service"] = (
            "[Service]\nType=oneshot\nUser=root\n"
            f"Environment=PATH=/opt/p{i}/bin:/usr/bin\n"
            f'ExecStartPre=/bin/sh -c "/opt/s{i}/sa-update --updatedir /var/lib/sa{i} --gpghomedir /etc/k{i} '
            f'--channel c{i}.example.org || true"\n'
            f"ExecStart=/opt/d{i}/daemon{i}\n")
    make_tree(tmp_path, units)
    fs = RootFS(str(tmp_path))
    loader = UnitLoader(fs, run_generators=False)
    for name in loader.service_names():
        analyze(loader.load(name), fs)
    kinds = fs._memo
    assert len(kinds) < 2 * KEPT, sorted(map(str, kinds))[:20]
    for key, value in kinds.items():
        if isinstance(value, dict):
            assert len(value) <= KEPT, key


def without_age(units: list[dict[str, object]]) -> list[dict[str, object]]:
    """The units with MIRRORED.BY's age zeroed (counted to when each run opened the tree)."""
    for unit in units:
        for command in unit["commands"]:  # type: ignore[attr-defined]
            for channel in command.get("sa_update", {}).get("channels", []):
                channel["mirrored_by_age_s"] = 0
    return units


def _serial(path: Path) -> list[tuple[Status, str]]:
    """(status, JSON text) of each unit `deps` reports of the tree, rendered in this process."""
    return [(view.status, json_unit(view))
            for view in map(unit_deps_view, iter_tree(UnitLoader(RootFS(str(path)))))]


def test_streamed_json_is_the_whole_document(root: tuple[Path, list[str]]) -> None:
    path, _ = root
    serial = _serial(path)
    assert len(serial) > UNITS / 2
    assert all("\n" not in text for _, text in serial)  # one unit a line
    document = json.loads("".join(json_document(text for _, text in serial)))
    jsonschema.validate(document, SCHEMA)
    # the same JSON as the whole document rendered at once
    whole = json.loads(render_json(deps_view(analyze_tree(UnitLoader(RootFS(str(path)))))))
    assert without_age(whole["units"]) == without_age(document["units"])


def test_a_unit_put_together_from_pieces_is_the_json_of_its_document(root: tuple[Path, list[str]]) -> None:
    """json_unit() encodes the lists a fleet's units share once and puts each unit's text together from pieces:
    the text is exactly json.dumps() of unit_json(), the unit's document."""
    path, _ = root
    views = [unit_deps_view(result) for result in analyze_tree(UnitLoader(RootFS(str(path))))]
    assert len(views) > UNITS / 2
    for view in views:
        assert json_unit(view) == json.dumps(unit_json(view), ensure_ascii=False)
    # a string of the unit's own that encodes like the hole a shared list's text goes into
    for name in ("\x00", 'x"\x00'):
        view = replace(views[0], name=name)
        assert json_unit(view) == json.dumps(unit_json(view), ensure_ascii=False)


def test_what_a_fleets_sa_updates_share_is_what_each_would_get_afresh(root: tuple[Path, list[str]]) -> None:
    """sa-update's dependencies, their split into endpoints and mentions, and its worst cases are remembered for a
    fleet's units and handed out as the same tuples (looked up by their identity, not hashed again): each is what
    the unit's own plan gives when nothing is remembered."""
    path, _ = root
    fs = RootFS(str(path))
    results = analyze_tree(UnitLoader(fs))
    by_line: dict[tuple[str, ...], set[int]] = {}
    checked = 0
    for result in results:
        context = RuleContext.of(result.unit, fs)
        for entry in result.commands:
            if entry.plan is None:
                continue
            fresh = SaUpdateRule._plan_dependencies(entry.plan, entry.command, context.role(entry.command))
            assert (entry.dependencies, entry.mentions) == _as_tuples(_endpoints(fresh))
            assert entry.plan.worst == tuple(_worst_cases(entry.plan))
            by_line.setdefault(entry.command.argv, set()).add(id(entry.dependencies))
            checked += 1
    assert checked > UNITS / 2
    assert all(len(ids) == 1 for ids in by_line.values()), by_line  # one tuple per command line


def test_a_fleets_sa_updates_share_one_plan_dated_when_the_run_opened_the_tree(root: tuple[Path, list[str]]) -> None:
    """The units running the same sa-update line share one plan (and so one view and one JSON text of it): the
    mirror lists' ages are counted to when the run opened the tree (RootFS.opened), the same for every unit, and
    a plan made afresh at that moment is equal to it."""
    from mailpreflight.deps.saupdate import plan

    path, _ = root
    fs = RootFS(str(path))
    results = analyze_tree(UnitLoader(fs))
    plans: dict[tuple[str, ...], set[int]] = {}
    for result in results:
        for entry in result.commands:
            if entry.plan is not None:
                plans.setdefault(entry.command.argv, set()).add(id(entry.plan))
                for channel in entry.plan.channels:
                    mtime = os.stat(path / channel.mirrored_by.lstrip("/")).st_mtime
                    assert channel.mirrored_by_age == max(0.0, fs.opened - mtime)
    assert len(plans) == 4 and all(len(ids) == 1 for ids in plans.values()), plans  # the lines bigroot writes
    entry = next(e for r in results for e in r.commands if e.plan is not None)
    assert plan(entry.command, RootFS(str(path)), now=fs.opened) == entry.plan
    views = [unit_deps_view(result) for result in results]
    assert len({id(c.sa_update) for v in views for c in v.commands if c.sa_update is not None}) == 4  # a view a plan
    for view in views[:20]:  # the plan's text, encoded once, is the unit's own
        assert json.loads(json_unit(view)) == unit_json(view)


def test_a_program_in_a_directory_that_is_not_there_is_not_there(tmp_path: Path) -> None:
    """deps/base.py chased() answers a path in a directory that does not resolve without looking further (a fleet's
    daemons in the missing /usr/sbin of an offline root): always what RootFS.chase() says, links and all."""
    from mailpreflight.deps.base import chased

    make_tree(tmp_path, {"/usr/bin/x": "#!/bin/sh\n", "/bin": {"symlink": "usr/bin"},
                         "/opt/loop": {"symlink": "loop"}, "/opt/up": {"symlink": "../usr"},
                         "/opt/gone": {"symlink": "/nowhere"}, "/etc/file": "x\n"})
    fs, fresh = RootFS(str(tmp_path)), RootFS(str(tmp_path))
    paths = ["/usr/bin/x", "/bin/x", "/usr/sbin/x", "/usr/sbin/y", "/opt/loop/x", "/opt/up/bin/x", "/opt/gone/x",
             "/opt/up/sbin/x", "/etc/file/x", "/usr/bin/../bin/x", "/usr/sbin/../bin/x", "/dev/null", "/x", "x",
             "/usr//bin/x", "/usr/bin/", "/usr/./bin/x"]
    for path in paths * 2:
        assert chased(fs, path) == fresh.chase(path), path
    assert chased(fs, "/bin/x") == "/usr/bin/x" and chased(fs, "/usr/sbin/x") is None


def test_json_text_is_escaped_as_clean_escapes_it(root: tuple[Path, list[str]]) -> None:
    """clean_json() (deps --format json) passes ASCII JSON without DEL as it is, without clean()'s look at every
    character: the same text as clean() for the fleet's units and for strings holding controls of every kind."""
    path, _ = root
    texts = [json_unit(unit_deps_view(result)) for result in analyze_tree(UnitLoader(RootFS(str(path))))]
    hostile = ["\x7f", "a\x1b[2J", "\x00\x07\x08\r", "\x85\x9b", "\udcff", "é", "tab\tand\nnewline", "plain"]
    texts += [json.dumps({"name": text, "argv": [text, "x"]}, ensure_ascii=False) for text in hostile]
    for text in texts:
        assert clean_json(text) == clean(text)
    with_del = texts[-len(hostile)]
    assert clean_json(with_del) != with_del and clean_json(texts[0]) is texts[0]  # DEL is escaped; the rest kept


def test_streamed_text_is_the_listing_rendered_at_once(root: tuple[Path, list[str]]) -> None:
    path, _ = root
    views = deps_view(analyze_tree(UnitLoader(RootFS(str(path)), version=252))[:5])
    assert "".join(text_document(text_unit(v) for v in views)) == render_text(views)
    assert render_text(views).count("\n\n") == len(views) - 1
    assert render_text(()) == "no unit with network dependencies found\n"
    assert json.loads(render_json(())) == {"schema_version": 1, "units": []}


def test_deps_command_in_worker_processes_writes_each_unit_once(root: tuple[Path, list[str]]) -> None:
    """The whole command, forked workers and all (in a process of its own: a test process may have threads), as a
    pipe sees it: the document once, each unit once, the same units as one process renders."""
    path, _ = root
    code = ("import sys; from mailpreflight.cli import fanout, main; fanout.PARALLEL_MIN_UNITS = 1; "
            "fanout.SLICE = 7; fanout.WORKERS = 2; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "deps", "--root", str(path), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr  # MP113: the daemons are not installed in this root
    document = json.loads(done.stdout)
    names = [unit["name"] for unit in document["units"]]
    assert len(names) == len(set(names)) > UNITS / 2 and names == sorted(names)  # an aliased unit once too
    assert done.stdout.count('"schema_version"') == 1
    # what the read gate refused in a worker is reported by the command, once
    assert done.stderr.count("etc/default/svc1: ") == 1 and "FIFO" in done.stderr, done.stderr
    # each mirror list's age is counted to when the run opened the tree, in every worker alike
    ages: dict[str, set[float]] = {}
    for unit in document["units"]:
        for command in unit["commands"]:
            for channel in command.get("sa_update", {}).get("channels", []):
                ages.setdefault(channel["mirrored_by"], set()).add(channel["mirrored_by_age_s"])
    assert len(ages) == 2 and all(len(seen) == 1 for seen in ages.values()), ages
    serial = [json.loads(text) for _, text in _serial(path)]
    assert without_age(document["units"]) == without_age(serial)


def _deps_in_workers(path: Path, *argv: str, setup: str = "", workers: int = 2, slice_size: int = 7,
                     stdout: IO[str] | None = None) -> subprocess.CompletedProcess[str]:
    """`deps --root path` in a process of its own (a test process may have threads: the workers are forked), with
    `workers` workers (1: all in one process) over slices of `slice_size` names, `setup` run before; its output
    captured, or written to `stdout`. When it has ended, no process of it is left (its own process group)."""
    code = ("import sys; from mailpreflight.cli import fanout, main; fanout.PARALLEL_MIN_UNITS = 1; "
            f"fanout.SLICE = {slice_size}; fanout.WORKERS = {workers}\n{setup}\nsys.exit(main(sys.argv[1:]))")
    argv = (sys.executable, "-c", code, "deps", "--root", str(path), *argv)
    with subprocess.Popen(argv, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        out, err = process.communicate(timeout=120)
        with pytest.raises(ProcessLookupError):
            os.killpg(process.pid, 0)  # no worker left behind
    return subprocess.CompletedProcess(argv, process.returncode, out or "", err)


def _masked(text: str) -> str:
    return re.sub(r'"mirrored_by_age_s": [0-9.e+-]+', '"mirrored_by_age_s": 0', text)


@pytest.mark.parametrize("output_format", ["json", "text"])
@pytest.mark.parametrize(("workers", "slice_size"), [(2, 7), (2, 1), (3, 5), (2, 250)])
def test_workers_write_the_bytes_one_process_writes(root: tuple[Path, list[str]], tmp_path: Path,
                                                     output_format: str, workers: int, slice_size: int) -> None:
    """The workers write their slices themselves, in turn: to a file (here) or a pipe, the same bytes as one
    process, whatever the number of workers and the size of the slices (one name a slice: most slices have no
    unit with a network dependency, and the turn passes over them)."""
    path, _ = root
    serial = _deps_in_workers(path, "--format", output_format, workers=1)
    with open(tmp_path / "out", "w") as out:
        to_file = _deps_in_workers(path, "--format", output_format, workers=workers, slice_size=slice_size,
                                   stdout=out)
    to_pipe = _deps_in_workers(path, "--format", output_format, workers=workers, slice_size=slice_size)
    assert serial.returncode == to_file.returncode == to_pipe.returncode == 2, to_file.stderr  # MP113
    assert serial.stderr == to_file.stderr == to_pipe.stderr  # the FIFO refused, once
    expected = _masked(serial.stdout)
    assert _masked((tmp_path / "out").read_text()) == expected
    assert _masked(to_pipe.stdout) == expected


def test_workers_write_to_a_stream_without_a_descriptor(root: tuple[Path, list[str]]) -> None:
    """A verb's stdout may be any text stream (tests pass StringIO): the workers' units reach it in order."""
    path, _ = root
    setup = ("import io; from mailpreflight.cli.env import Environment; out = io.StringIO(); "
             "code = main(sys.argv[1:], Environment(stdout=out)); sys.stdout.write(out.getvalue()); sys.exit(code)")
    streamed = _deps_in_workers(path, "--format", "json", setup=setup)
    serial = _deps_in_workers(path, "--format", "json", workers=1)
    assert streamed.returncode == 2 and _masked(streamed.stdout) == _masked(serial.stdout)


SLOW_WORKER = """
import os, time
real_render = fanout._render
slow = None
def _render(loader, names, *rest):
    global slow
    if slow is None:  # the first worker to get here is the slow one (a CPU that other work keeps busy)
        try:
            os.close(os.open({marker!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            slow = True
        except FileExistsError:
            slow = False
    with open({log!r}, "a") as log:
        log.write(f"{{os.getpid()}} {{slow}}\\n")
    if slow:
        time.sleep(0.2)
    return real_render(loader, names, *rest)
fanout._render = _render
"""


def test_a_slow_worker_takes_fewer_slices(root: tuple[Path, list[str]], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices go to whichever worker is free, not a fixed share to each: a worker on a CPU that other work keeps
    busy renders fewer of them (the other is held back only by the order of the output: it renders at most PENDING
    slices ahead). The output is still the same bytes, in name order."""
    path, _ = root
    log = tmp_path / "slices"
    done = _deps_in_workers(path, setup=SLOW_WORKER.format(marker=str(tmp_path / "slow"), log=str(log)),
                            slice_size=5)
    serial = _deps_in_workers(path, workers=1)
    assert done.returncode == serial.returncode == 2 and _masked(done.stdout) == _masked(serial.stdout)
    taken = Counter(line.split()[1] for line in log.read_text().splitlines())
    monkeypatch.setattr(fanout, "SLICE", 5)
    assert sum(taken.values()) == len(fanout._slices(UnitLoader(RootFS(str(path))).service_names(), 2))
    assert taken["False"] >= 1.5 * taken["True"] > 0, taken  # a fixed share: as many each


FAIL_IN_WORKER = """
real_render = fanout._render
def _render(loader, names, *rest):
    if "mf-30-worker.service" in names:
        {action}
    return real_render(loader, names, *rest)
fanout._render = _render
"""


def test_a_worker_that_fails_ends_the_run_as_an_internal_error(root: tuple[Path, list[str]]) -> None:
    """An exception in a worker: exit 3 with the one line of any crash, saying where in the worker it happened —
    not a hang of the other workers, which wait for a turn that never comes (they are killed)."""
    path, _ = root
    done = _deps_in_workers(path, setup=FAIL_IN_WORKER.format(action='raise ValueError("boom")'))
    assert done.returncode == 3
    assert re.search(r"mailpreflight: internal error at <string>:\d+: ValueError: boom \(run again", done.stderr)
    debug = _deps_in_workers(path, setup='sys.argv.insert(1, "--debug")' + FAIL_IN_WORKER.format(
        action='raise ValueError("boom")'))
    assert "in deps worker" in debug.stderr  # and its traceback there
    assert re.search(r'File "<string>", line \d+, in _render\nValueError: boom', debug.stderr), debug.stderr


def test_a_worker_that_is_killed_ends_the_run_and_no_process_is_left(root: tuple[Path, list[str]]) -> None:
    """A worker killed (the OOM killer) sends nothing: exit 3, saying so, and no worker is left behind."""
    path, _ = root
    done = _deps_in_workers(path, setup=FAIL_IN_WORKER.format(action="os.kill(os.getpid(), 9)").replace(
        "real_render =", "import os; real_render ="))
    assert done.returncode == 3
    assert re.search(r"deps worker \d ended without its result \(killed by signal 9 \(SIGKILL\); out of memory\? "
                     r"see `journalctl -k -g oom`\)", done.stderr), \
        done.stderr


def test_a_reader_that_goes_away_stops_the_workers(root: tuple[Path, list[str]]) -> None:
    """`deps | head`: the workers get EPIPE, the run ends at once with 0, as in one process, and nothing is left."""
    path, _ = root
    code = ("import sys; from mailpreflight.cli import fanout, main; fanout.PARALLEL_MIN_UNITS = 1; "
            "fanout.SLICE = 3; fanout.WORKERS = 2; sys.exit(main(sys.argv[1:]))")
    process = subprocess.Popen([sys.executable, "-c", code, "deps", "--root", str(path), "--format", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.read(100)
    process.stdout.close()
    assert process.wait(timeout=60) == 0
    assert process.stderr.read() == b""
    process.stderr.close()
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # no worker of it left


def _gone(group: int, within: float = 10.0) -> bool:
    """Has every process of the group ended (and been reaped) within `within` seconds?"""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_workers_end_with_their_parent(root: tuple[Path, list[str]], tmp_path: Path) -> None:
    """A parent killed outright (SIGKILL, the OOM killer) leaves no worker waiting for a turn for ever: each dies
    with it (PR_SET_PDEATHSIG), the one waiting for a turn too."""
    path, _ = root
    setup = FAIL_IN_WORKER.format(action="os.kill(os.getppid(), 9); time.sleep(30)").replace(
        "real_render =", "import os, time; real_render =")
    code = ("import sys; from mailpreflight.cli import fanout, main; fanout.PARALLEL_MIN_UNITS = 1; "
            f"fanout.SLICE = 3; fanout.WORKERS = 2\n{setup}\nsys.exit(main(sys.argv[1:]))")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-c", code, "deps", "--root", str(path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    assert process.wait(timeout=60) == -9
    assert _gone(process.pid), "a worker outlived its parent"
    assert time.monotonic() - started < 20  # not the sleeping worker's 30 s


def test_ctrl_c_as_a_worker_is_forked_ends_the_run_once(root: tuple[Path, list[str]]) -> None:
    """SIGINT reaching a worker right after the fork, before it is at work (Ctrl-C goes to the whole process
    group): the worker reports it and exits; it never runs the parent's code after the fork (which would say
    things twice and close the parent's resources)."""
    path, _ = root
    setup = "import os, signal; os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGINT))"
    done = _deps_in_workers(path, setup=setup)
    assert done.returncode == 3 and done.stderr == "mailpreflight: interrupted\n", done.stderr


def test_an_error_that_does_not_pickle_back_is_still_said(root: tuple[Path, list[str]]) -> None:
    """An exception whose pickle does not load back (its __init__ takes other arguments than its args): the
    parent still says what it was and where, not that the worker sent nothing."""
    path, _ = root
    setup = ("class Odd(Exception):\n    def __init__(self, a, b):\n        super().__init__(f'{a}/{b}')\n"
             + FAIL_IN_WORKER.format(action="raise Odd('x', 'y')"))
    done = _deps_in_workers(path, setup=setup)
    assert done.returncode == 3
    assert re.search(r"internal error at <string>:\d+: RuntimeError: Odd: x/y \(run again", done.stderr), done.stderr


def test_guest_file_refusals_travel_from_a_worker_unchanged() -> None:
    refused = GuestFileRefused("/etc/default/svc1", "a FIFO: not read", errno.EFBIG)
    back = pickle.loads(pickle.dumps(refused))
    assert (type(back), back.guest, back.reason, back.errno, str(back)) == (
        GuestFileRefused, refused.guest, refused.reason, refused.errno, str(refused))


def test_an_output_encoding_with_a_byte_order_mark_is_written_by_one_process(root: tuple[Path, list[str]]) -> None:
    """utf-16 starts every encoded piece with a byte-order mark: such an output is written in one process, the
    same bytes as ever (the workers encode a slice each)."""
    path, _ = root

    def raw(workers: int) -> bytes:
        code = ("import sys; from mailpreflight.cli import fanout, main; fanout.PARALLEL_MIN_UNITS = 1; "
                f"fanout.SLICE = 7; fanout.WORKERS = {workers}; sys.exit(main(sys.argv[1:]))")
        done = subprocess.run([sys.executable, "-c", code, "deps", "--root", str(path)], capture_output=True,
                              timeout=120, env={**os.environ, "PYTHONIOENCODING": "utf-16"})
        assert done.returncode == 2, done.stderr
        return done.stdout

    one, two = raw(1), raw(2)
    assert one == two and len(one) > 10_000
    assert "".join(["a", "b"]).encode("utf-16") != "a".encode("utf-16") + "b".encode("utf-16")  # a mark each


def test_the_workers_draw_one_read_budget_as_they_read() -> None:
    """The run's read budget is one for all the workers (the board's), drawn as each reads: what a worker wants,
    and ahead of it never more than an eighth of what is left; never more than there is, whoever asks."""
    board = fanout._Board(3, 2, (1000, 100))
    try:
        assert board.draw(10, 0) == (10 + 1000 // 8, 0)  # 865 left
        assert board.draw(0, 5) == (0, 5 + 100 // 8)  # 83 left
        assert board.draw(900, 0) == (865, 0)  # all there is, not more
        assert board.draw(1, 200) == (0, 83)
        assert board.draw(1, 1) == (0, 0)
        counters = fanout._Board._COUNTERS.unpack_from(board.memory, 0)
        assert counters[3:] == (0, 0)
    finally:
        board.close()


def test_a_worker_reads_and_lists_out_of_the_shared_budget(tmp_path: Path) -> None:
    """RootFS in a worker: each read and listing draws what it needs from the run's budget; when that is spent,
    the read is refused as in one process (the message names the run's 64 MiB, which is still the total)."""
    for index in range(3):
        make_tree(tmp_path, {f"etc/conf.d/{index}.conf": "x" * 60})
    for index in range(30):
        make_tree(tmp_path, {f"etc/many/{index:03}": ""})
    pool = [130, 40]  # bytes, entries the run has left

    def draw(nbytes: int, entries: int) -> tuple[int, int]:
        granted = (min(pool[0], nbytes), min(pool[1], entries))
        pool[0] -= granted[0]
        pool[1] -= granted[1]
        return granted

    fs = RootFS(str(tmp_path))
    fs.draw_budget(draw)
    assert fs.budget() == (0, 0)
    assert fs.read_bytes("/etc/conf.d/0.conf") == fs.read_bytes("/etc/conf.d/1.conf") == b"x" * 60
    with pytest.raises(GuestFileRefused, match="this run already read 64 MiB from the root"):
        fs.read_bytes("/etc/conf.d/2.conf")  # 10 bytes left: not the 61 it asks for
    assert len(fs.listdir("/etc/many")) == 30 and len(fs.listdir("/etc/many")) == 10
    assert "not listed in full: this run already listed" in str(fs.refusals[-1])
    assert pool == [0, 0]


@pytest.mark.parametrize(("count", "slice_size", "workers"), [(10_107, 250, 2), (1000, 250, 4), (7, 250, 2),
                                                            (50, 7, 2), (50, 1, 2), (0, 250, 2)])
def test_the_slices_cover_every_name_once_and_shrink_towards_the_end(count: int, slice_size: int, workers: int,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout, "SLICE", slice_size)
    names = [f"u{i}.service" for i in range(count)]
    slices = fanout._slices(names, workers)
    assert [name for part in slices for name in part] == names
    sizes = [len(part) for part in slices]
    assert all(0 < size <= slice_size for size in sizes)
    assert sizes == sorted(sizes, reverse=True) or sizes[:-1] == sorted(sizes[:-1], reverse=True)
    if count > 4 * workers * slice_size:
        assert sizes[0] == slice_size and sizes[-2] <= max(1, slice_size // 10)


@pytest.mark.parametrize(("cpus", "idle", "total", "load", "usable"), [
    (2, 10, 20, 1.9, 2),  # the other CPU idle while the index was built: two workers, whatever the load average
    (2, 1, 20, 0.0, 1),  # the other CPU busy with other work now: one process
    (4, 10, 40, 0.0, 2),  # two of four busy elsewhere, one idle: this process's CPU and that one
    (4, 30, 40, 0.0, 4),
    (2, 0, 3, 0.0, 2),  # under two ticks a CPU: too short to tell, the load average decides
    (2, 0, 3, 2.0, 1),
])
def test_workers_go_by_what_the_cpus_did_just_now(cpus: int, idle: int, total: int, load: float, usable: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle CPUs are measured while the index is built (/proc/stat), not by the load average: that still counts a
    run that ended a moment ago, and the next would use one CPU of two idle ones."""
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert fanout._usable_cpus(set(range(cpus)), (1000, 5000), (1000 + idle, 5000 + total)) == usable
    assert fanout._usable_cpus(set(range(cpus)), None, None) == max(1, min(cpus, int(cpus - max(load - 1, 0) + .5)))


def test_cpu_times_are_read_for_the_cpus_this_process_may_use() -> None:
    cpus = fanout._cpus()
    first = fanout._cpu_times(cpus)
    if first is None:
        pytest.skip("no /proc/stat here: the load average decides")
    sum(range(300_000))
    later = fanout._cpu_times(cpus)
    assert later is not None and 0 <= first[0] <= first[1] and later[1] >= first[1] and later[0] >= first[0]
    assert fanout._cpu_times({10**6}) is None  # a CPU that is not there: nothing to measure


def test_the_read_budget_goes_to_the_units_not_to_shared_files(root: tuple[Path, list[str]]) -> None:
    """The run's read budget (64 MiB) is spent on each unit's own files: SpamAssassin's install, sa-update, its
    MIRRORED.BY are read once, whatever the number of units (main at 50a4e95 read them again for each unit and
    refused every unit after the 186th of issue 14's tree)."""
    path, _ = root

    def spent(count: int) -> tuple[int, int, int]:
        fs = RootFS(str(path))
        loader = UnitLoader(fs, run_generators=False)
        units = [loader.load(name) for name in loader.service_names()[:count]]
        results = [analyze(unit, fs) for unit in units]
        assert sum(1 for r in results for e in r.commands if e.plan is not None) >= 0.9 * count  # some masked
        own = sum((path / p.lstrip("/")).stat().st_size for u in units if not u.masked
                  for p in (u.fragment_path or "", *u.dropin_paths) if p and (path / p.lstrip("/")).is_file())
        return READ_TOTAL_LIMIT - fs._ledger.bytes_left, own, len(units)

    one, own_one, _ = spent(1)
    many, own_many, units = spent(UNITS)
    shared = one - own_one
    assert shared > 10_000  # SpamAssassin.pm and sa-update are real-sized here
    # all the units cost their own files, a few small files each (environment files, scripts), and the shared once
    assert many - own_many < shared + 512 * units, (one, own_one, many, own_many, units)


def test_the_root_is_held_open_only_while_units_are_rendered(root: tuple[Path, list[str]]) -> None:
    """deps over a tree opens the root once for all its reads (RootFS.holding_root) and lets it go when the last
    unit is written, or when the run stops early: a guest's FUSE mount is unmounted right after the run."""
    path, _ = root

    def root_fds() -> int:
        return sum(os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(path)
                   for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))

    loader = UnitLoader(RootFS(str(path)))
    seen: list[tuple[int, bool]] = []

    def render(view: UnitDepsView) -> str:
        seen.append((root_fds(), bool(loader.fs._held)))
        return json_unit(view)

    out = io.StringIO()
    status = fanout.write_tree(loader, None, render, JSON_FRAMING, Environment(stdout=out), min_units=10**9)
    assert status is Status.CRITICAL and len(seen) > UNITS / 2 and set(seen) == {(1, True)}
    assert root_fds() == 0 and not loader.fs._held

    def failing(view: UnitDepsView) -> str:
        raise ValueError("a renderer that fails")  # the run stops early: an error in the verb

    with pytest.raises(ValueError, match="a renderer that fails"):
        fanout.write_tree(loader, None, failing, JSON_FRAMING, Environment(stdout=io.StringIO()), min_units=10**9)
    assert root_fds() == 0 and not loader.fs._held
