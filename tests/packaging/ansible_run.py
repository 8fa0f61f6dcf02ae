"""Running contrib/ansible/site.yml (the mailpreflight role) against this machine, for the packaging tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "contrib/ansible/site.yml"
STATUS = re.compile(r"^(ok|changed|skipping|fatal|failed): \[localhost\]")
RANK = {"skipping": 0, "ok": 1, "changed": 2, "failed": 3, "fatal": 3}


def tool(name: str) -> str | None:
    """ansible-playbook / ansible-lint of the test venv (the `test` extra), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def environment(tmp: Path) -> dict[str, str]:
    # ansible-lint runs ansible's other programs from PATH: the directory where ansible-playbook was found
    found = tool("ansible-playbook")
    ansible_bin = f"{Path(found).parent}:" if found else ""
    return {"PATH": f"{ansible_bin}{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
            "HOME": str(tmp), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-remote"), "ANSIBLE_RETRY_FILES_ENABLED": "0"}


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    tasks: dict[str, str]  # task name (without the role prefix) -> its status, the most significant of its items
    recap: dict[str, int]  # ok, changed, failed, skipped, ...


def run_site(extra_vars: Mapping[str, object], tmp: Path, check: bool = False) -> Run:
    playbook = tool("ansible-playbook")
    assert playbook, "ansible-playbook not found"
    # Debian's own python3 runs the modules (apt needs its python3-apt); no sudo: the tests run as root
    variables = {"ansible_python_interpreter": "/usr/bin/python3", "ansible_become": False, **extra_vars}
    argv = [playbook, "-i", "localhost,", "-c", "local", *(["--check", "--diff"] if check else []),
            "-e", json.dumps(variables), str(SITE)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=environment(tmp), cwd=tmp)
    tasks: dict[str, str] = {}
    current = ""
    for line in done.stdout.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            current = line.split("[", 1)[1].rsplit("]", 1)[0].split(" : ", 1)[-1]
        elif (status := STATUS.match(line)) and current:
            previous = tasks.get(current)
            if previous is None or RANK[status[1]] > RANK[previous]:
                tasks[current] = status[1]
    recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", done.stdout.rsplit("PLAY RECAP", 1)[-1])}
    return Run(done.returncode, done.stdout + done.stderr, tasks, recap)
