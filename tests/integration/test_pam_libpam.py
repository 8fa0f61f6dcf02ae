"""`mailpreflight.auth.pam.resolve` must agree with the real libpam of this machine.

Each scenario writes a tiny PAM configuration into a fake root (root/etc/pam.d, root/usr/lib/pam.d, and
empty placeholders in root/lib/x86_64-linux-gnu/security for the modules that exist), reads it with our
static resolver, and runs the real libpam on the same files: a child in a private mount namespace
(`unshare --mount --propagation private`) bind-mounts the fake pam.d directories over the host's and calls
pam_start("svc", "nobody"), pam_authenticate and pam_acct_mgmt through ctypes. The host's modules are the
real ones (pam_permit.so succeeds, pam_deny.so fails, neither needs a conversation); the conversation
function answers PAM_CONV_ERR. The host's own /etc/pam.d is never touched outside the namespace, and the
child checks that the bind mounts are in place before it calls libpam.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpreflight.access.rootfs import RootFS
from mailpreflight.auth.pam import CONFIG_DIRS, PamLine, PamService, resolve

HOST_MODULE_DIR = "/lib/x86_64-linux-gnu/security"
PRESENT = ("pam_permit.so", "pam_deny.so")  # on the host and, as placeholders, in every fake root
MISSING = "pam_nonexistent_xyz.so"  # neither on the host nor in any fake root

# Linux-PAM's return codes (security/_pam_types.h)
PAM_SUCCESS = 0
PAM_PERM_DENIED = 6  # also what a "must fail" line (missing include target) and an empty stack give
PAM_AUTH_ERR = 7  # pam_deny.so
PAM_ABORT = 26  # pam_start refuses the configuration
PAM_MODULE_UNKNOWN = 28  # a module that cannot be loaded

DENY_ALL = "auth required pam_deny.so\naccount required pam_deny.so\n"
PERMIT_ALL = "auth required pam_permit.so\naccount required pam_permit.so\n"

CHILD = r"""
import ctypes, json, os, sys

service, mounts = sys.argv[1], json.loads(sys.argv[2])
for fake, real in mounts:  # never let libpam read the host's own configuration
    if not os.path.samefile(fake, real):
        sys.exit(f"{fake} is not mounted on {real}")
lib = ctypes.CDLL("libpam.so.0")
CONV = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)

class PamConv(ctypes.Structure):
    _fields_ = [("conv", CONV), ("appdata_ptr", ctypes.c_void_p)]

PAM_CONV_ERR = 19
callback = CONV(lambda num_msg, msg, resp, appdata: PAM_CONV_ERR)
conv = PamConv(callback, None)
lib.pam_start.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(PamConv),
                          ctypes.POINTER(ctypes.c_void_p)]
for name in ("pam_authenticate", "pam_acct_mgmt", "pam_end"):
    getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int]
handle = ctypes.c_void_p()
result = {"start": lib.pam_start(service.encode(), b"nobody", ctypes.byref(conv), ctypes.byref(handle)),
          "auth": None, "account": None}
if result["start"] == 0:
    result["auth"] = lib.pam_authenticate(handle, 0)
    result["account"] = lib.pam_acct_mgmt(handle, 0)
    lib.pam_end(handle, result["account"])
print(json.dumps(result))
"""

# bind every fake config dir over the host's, then run the child; a failed mount: no libpam at all
SHELL = 'while [ $# -gt 3 ]; do mount --bind "$1" "$2" || exit 97; shift 2; done; exec "$1" -I -c "$2" "$3" "$MOUNTS"'


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (bind mounts in a private mount namespace)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare/mount (util-linux) not found"
    try:
        ctypes.CDLL("libpam.so.0")
    except OSError as e:
        return f"libpam.so.0 not loadable ({e})"
    for directory in ("/etc/pam.d", "/usr/lib/pam.d"):
        if not os.path.isdir(directory):
            return f"{directory} is not a directory on the host (nothing to bind over)"
    for module in PRESENT:
        if not os.path.isfile(f"{HOST_MODULE_DIR}/{module}"):
            return f"{HOST_MODULE_DIR}/{module} missing (install libpam-modules)"
    if os.path.exists(f"{HOST_MODULE_DIR}/{MISSING}"):
        return f"{HOST_MODULE_DIR}/{MISSING} exists on the host"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot create a mount namespace: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module", autouse=True)
def libpam_available() -> Iterator[None]:
    reason = _skip_reason()
    if reason:
        pytest.skip(f"real libpam oracle unavailable: {reason}")
    yield


def make_root(tmp_path: Path, etc: dict[str, str], usr: dict[str, str] | None = None) -> Path:
    """A fake root: /etc/pam.d and /usr/lib/pam.d with these files, and the PRESENT modules."""
    root = tmp_path / "root"
    for directory, files in (("etc/pam.d", etc), ("usr/lib/pam.d", usr or {})):
        (root / directory).mkdir(parents=True)
        for name, text in files.items():
            (root / directory / name).write_text(text)
    if os.path.exists("/etc/debian_version"):  # the real libpam here carries Debian's include patch: say so
        (root / "etc/debian_version").write_text("12\n")
    modules = root / HOST_MODULE_DIR.lstrip("/")
    modules.mkdir(parents=True)
    for module in PRESENT:
        (modules / module).touch()
    return root


def libpam(root: Path, service: str) -> dict[str, int | None]:
    """pam_start/pam_authenticate/pam_acct_mgmt return codes of the real libpam on root's pam.d dirs."""
    mounts = []
    for directory in CONFIG_DIRS:
        if os.path.isdir(directory):  # a dir the host lacks is not read by libpam either
            fake = root / directory.lstrip("/")
            fake.mkdir(parents=True, exist_ok=True)
            mounts.append((str(fake), directory))
    args = [arg for pair in mounts for arg in pair]
    env = {**os.environ, "MOUNTS": json.dumps(mounts)}
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", SHELL, "sh",
                           *args, sys.executable, CHILD, service], capture_output=True, text=True, timeout=30,
                          env=env)
    assert done.returncode == 0, f"libpam child failed ({done.returncode}): {done.stderr}"
    return json.loads(done.stdout)


def codes(start: int, auth: int | None = None, account: int | None = None) -> dict[str, int | None]:
    return {"start": start, "auth": auth, "account": account}


def ours(root: Path, service: str = "svc") -> PamService:
    return resolve(RootFS(str(root)), service)


def only_line(service: PamService, pam_type: str) -> PamLine:
    stack = service.stack(pam_type)
    assert len(stack) == 1, stack
    return stack[0]


# 1
def test_service_file_wins_over_other(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"svc": PERMIT_ALL, "other": DENY_ALL})
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS)
    service = ours(root)
    assert service.file == "/etc/pam.d/svc"
    assert not service.fell_back
    assert "auth" not in service.from_other and "account" not in service.from_other
    assert service.modules("auth") == ("pam_permit.so",)
    assert service.problems == ()


# 2
def test_no_service_file_falls_back_to_other(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"other": "auth required pam_deny.so\n"})
    # account: `other` has no account line -> an empty stack, which libpam denies too
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_AUTH_ERR, PAM_PERM_DENIED)
    service = ours(root)
    assert service.fell_back
    assert service.other_file == "/etc/pam.d/other"
    assert service.modules("auth") == ("pam_deny.so",)
    assert service.stack("account") == ()


# 3
def test_other_is_used_type_by_type(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"svc": "account required pam_permit.so\n", "other": DENY_ALL})
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_AUTH_ERR, PAM_SUCCESS)
    service = ours(root)
    assert service.file == "/etc/pam.d/svc"
    assert "auth" in service.from_other
    assert "account" not in service.from_other
    assert service.modules("auth") == ("pam_deny.so",)
    assert service.modules("account") == ("pam_permit.so",)


# 4
def test_etc_shadows_usr_lib(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"svc": DENY_ALL}, usr={"svc": PERMIT_ALL})
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_AUTH_ERR, PAM_AUTH_ERR)
    service = ours(root)
    assert service.file == "/etc/pam.d/svc"
    assert "/usr/lib/pam.d/svc" in service.shadowed
    assert service.modules("auth") == ("pam_deny.so",)


def test_usr_lib_used_without_etc(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"other": DENY_ALL}, usr={"svc": PERMIT_ALL})
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS)
    service = ours(root)
    assert service.file == "/usr/lib/pam.d/svc"
    assert not service.fell_back
    assert service.modules("auth") == ("pam_permit.so",)


# 5
@pytest.mark.parametrize(
    ("first", "auth", "fatal", "silent"),
    [
        (f"auth required {MISSING}", PAM_MODULE_UNKNOWN, True, False),
        (f"auth optional {MISSING}", PAM_SUCCESS, False, False),
        (f"-auth required {MISSING}", PAM_MODULE_UNKNOWN, True, True),  # `-` only silences the log
    ],
    ids=["required", "optional", "dash-required"],
)
def test_missing_module(tmp_path: Path, first: str, auth: int, fatal: bool, silent: bool) -> None:
    text = f"{first}\nauth required pam_permit.so\naccount required pam_permit.so\n"
    root = make_root(tmp_path, {"svc": text, "other": DENY_ALL})
    assert libpam(root, "svc") == codes(PAM_SUCCESS, auth, PAM_SUCCESS)
    service = ours(root)
    missing = [line for line in service.stack("auth") if line.module_name == MISSING]
    assert len(missing) == 1
    assert missing[0].silent is silent
    assert missing[0].module_path is None
    assert [(p.kind, p.type, p.fatal) for p in service.problems] == [("missing-module", "auth", fatal)]


# 6
def test_missing_include_target_fails_that_type(tmp_path: Path) -> None:
    text = "auth include does-not-exist\naccount required pam_permit.so\n"
    root = make_root(tmp_path, {"svc": text, "other": DENY_ALL})
    # PAM_PERM_DENIED, not pam_deny's PAM_AUTH_ERR: the auth stack is the service's own failing one, not other's
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_PERM_DENIED, PAM_SUCCESS)
    service = ours(root)
    assert [(p.kind, p.type, p.fatal) for p in service.problems] == [("missing-include", "auth", True)]
    assert "auth" not in service.from_other
    assert service.stack("auth") == ()


# 7
def test_include_takes_only_its_type(tmp_path: Path) -> None:
    common = "auth required pam_permit.so\naccount required pam_deny.so\n"
    svc = "auth include common\naccount required pam_permit.so\n"
    root = make_root(tmp_path, {"svc": svc, "common": common, "other": DENY_ALL})
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS)
    service = ours(root)
    assert service.modules("account") == ("pam_permit.so",)
    assert only_line(service, "account").source == "/etc/pam.d/svc:2"
    auth = only_line(service, "auth")
    assert auth.source == "/etc/pam.d/common:1"
    assert auth.via == ("/etc/pam.d/svc",)


# 8
def test_at_include_takes_every_type(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"svc": "@include common\n", "common": PERMIT_ALL, "other": DENY_ALL})
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS)
    service = ours(root)
    assert service.modules("auth") == ("pam_permit.so",)
    assert service.modules("account") == ("pam_permit.so",)
    assert "auth" not in service.from_other and "account" not in service.from_other
    for line in service.stack("auth") + service.stack("account"):
        assert line.via == ("/etc/pam.d/svc",)
        assert line.source.startswith("/etc/pam.d/common:")
    assert service.problems == ()


@pytest.mark.parametrize(
    "usr",
    [{}, {"missing-file": PERMIT_ALL}],  # Debian's @include looks only in /etc/pam.d
    ids=["nowhere", "only-in-usr-lib"],
)
def test_at_include_missing_target_refuses_everything(tmp_path: Path, usr: dict[str, str]) -> None:
    root = make_root(tmp_path, {"svc": "@include missing-file\n", "other": PERMIT_ALL}, usr=usr)
    assert libpam(root, "svc") == codes(PAM_ABORT)
    service = ours(root)
    problems = [p for p in service.problems if p.kind == "missing-include"]
    assert [(p.type, p.fatal, p.path) for p in problems] == [(None, True, "/etc/pam.d/missing-file")]


# 9
@pytest.mark.parametrize(
    "auth_line",
    [
        "auth required pam_permit.so # trailing",
        "auth required \\\npam_permit.so",
        "AUTH REQUIRED pam_permit.so",
        "auth [success=ok default=bad] pam_permit.so",
    ],
    ids=["trailing-comment", "continuation", "upper-case", "bracket-control"],
)
def test_syntax(tmp_path: Path, auth_line: str) -> None:
    # each line is one working line only if parsed right; misread, the auth stack would fail
    root = make_root(tmp_path, {"svc": f"{auth_line}\naccount required pam_permit.so\n", "other": DENY_ALL})
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS)
    service = ours(root)
    line = only_line(service, "auth")
    assert line.module == "pam_permit.so"
    assert line.args == ()
    assert line.source == "/etc/pam.d/svc:1"
    assert line.decisive
    assert "auth" not in service.from_other
    assert service.problems == ()


# 10
@pytest.mark.parametrize("requested", ["SVC", "some/dir/Svc"])
def test_service_name_is_lowercased_basename(tmp_path: Path, requested: str) -> None:
    root = make_root(tmp_path, {"svc": PERMIT_ALL, "other": DENY_ALL})
    assert libpam(root, requested) == codes(PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS)
    service = ours(root, requested)
    assert service.name == "svc"
    assert service.file == "/etc/pam.d/svc"


# 11
def test_neither_service_nor_other(tmp_path: Path) -> None:
    root = make_root(tmp_path, {})
    assert libpam(root, "svc") == codes(PAM_ABORT)
    service = ours(root)
    assert not service.usable
    assert service.file is None and service.other_file is None


# found by this oracle: Debian's include/substack look only in /etc/pam.d, like its @include
@pytest.mark.parametrize("control", ["include", "substack"])
def test_include_target_only_in_usr_lib(tmp_path: Path, control: str) -> None:
    svc = f"auth {control} common\naccount {control} common\n"
    root = make_root(tmp_path, {"svc": svc, "other": DENY_ALL}, usr={"common": PERMIT_ALL})
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_PERM_DENIED, PAM_PERM_DENIED)
    service = ours(root)
    assert [(p.kind, p.type, p.fatal) for p in service.problems] == [("missing-include", "auth", True),
                                                                      ("missing-include", "account", True)]


# found by this oracle: blank and comment lines inside a continuation are skipped
@pytest.mark.parametrize("between", ["# a note", "", "   "], ids=["comment", "empty", "blank"])
def test_continuation_skips_comment_and_blank_lines(tmp_path: Path, between: str) -> None:
    svc = f"auth required \\\n{between}\npam_permit.so\naccount required pam_permit.so\n"
    root = make_root(tmp_path, {"svc": svc, "other": DENY_ALL})
    assert libpam(root, "svc") == codes(PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS)
    service = ours(root)
    assert only_line(service, "auth").module == "pam_permit.so"
    # libpam 1.6 ends the line at the blank/comment line instead: said, as a warning, never as fatal
    assert [(p.kind, p.source, p.fatal) for p in service.problems] == [("bad-line", "/etc/pam.d/svc:2", False)]


# found by this oracle: a file ending inside a continuation is refused as a whole
def test_dangling_continuation_aborts(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"svc": "account required pam_permit.so\nauth required pam_permit.so\\",
                                "other": PERMIT_ALL})
    assert libpam(root, "svc") == codes(PAM_ABORT)
    assert [(p.kind, p.type, p.fatal) for p in ours(root).problems] == [("bad-line", None, True)]
