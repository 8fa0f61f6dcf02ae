"""`--image` and `--domain` on three real guest disk layouts (tests/vm/imagelab.py): plain qcow2, LVM with /usr on
its own LV, LVM on LUKS. Each run is the real command line, one libguestfs appliance per run (under TCG here);
each asserts what only the guest's disk holds was read (the layout's name in the unit, the guest's resolver and
SpamAssassin version from the /usr LV) and that the image is byte-for-byte unchanged afterwards.

--domain goes through libvirt's test driver (`--connect test:///.../node.xml`): a <node> file describing domains
whose disks are the images, no libvirt daemon needed.

Off unless MAILPREFLIGHT_VM_TESTS=1 (as the booted suite): ~1 min to build the disks once (cached in
/var/cache/mailpreflight-vm), then 10-30 s per run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import imagelab
import pytest

pytestmark = pytest.mark.skipif(imagelab.unavailable_reason() is not None,
                                reason=imagelab.unavailable_reason() or "")

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "mailpreflight"]
LUKS_DEVICE = "/dev/sda1"
FRAGMENT = "/lib/systemd/system/spamd.service"  # /lib is the guest's link to usr/lib


@pytest.fixture(scope="session")
def disks(tmp_path_factory: pytest.TempPathFactory) -> imagelab.Disks:
    return imagelab.disks(tmp_path_factory.mktemp("layouts"))


@pytest.fixture(scope="session")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "luks.key"
    path.write_text(imagelab.PASSPHRASE + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def env(fallback: bool = False) -> dict[str, str]:
    """The code of this checkout; TCG forced unless `fallback` (then the code's own KVM-then-TCG retry runs)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    if fallback:
        environment.pop("LIBGUESTFS_BACKEND_SETTINGS", None)
    else:
        environment.setdefault("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
    return environment


def run(images: list[Path], *argv: str, fallback: bool = False) -> subprocess.CompletedProcess[str]:
    """One run of the command line; the images it reads must be unchanged afterwards (read-only)."""
    before = {image: imagelab.sha256(image) for image in images}
    done = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=600, env=env(fallback),
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    for image, digest in before.items():
        assert imagelab.sha256(image) == digest, f"{image} changed during {' '.join(argv)}"
    return done


def image_args(disks: imagelab.Disks, layout: str) -> list[str]:
    return ["--image", str(disks.path(layout))]


def check_json(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    # 0/1/2: the verdict depends on this host's network (no route here: nxdomain); 3 would be a failed check
    assert done.returncode in (0, 1, 2), done.stderr
    report = json.loads(done.stdout)
    [unit] = report["units"]
    assert unit["name"] == "spamd.service"
    [command] = unit["commands"]
    assert command["key"] == "ExecStartPre"
    assert command["argv"] == imagelab.SA_UPDATE.split()
    assert command["source"] == f"{FRAGMENT}:9"
    # the revision asked for is the guest's SpamAssassin's (3.4.6, on the /usr LV), not the host's
    assert "dns TXT 6.4.3.updates.spamassassin.org" in command["probes"]
    return report  # type: ignore[no-any-return]


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("mailpreflight: "), lines
    return lines[0]


# --- --image: plain, LVM, LUKS ----------------------------------------------------------------------------------


def test_plain_qcow2_check_show_deps(disks: imagelab.Disks) -> None:
    image = disks.path("plain")
    # check without forcing TCG: where KVM is not usable the code retries with TCG on its own
    check_json(run([image], "check", *image_args(disks, "plain"), "spamd.service", "--no-auth", "--format", "json",
                   fallback=True))

    shown = run([image], "show", *image_args(disks, "plain"), "spamd.service")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"# {FRAGMENT}\n"), shown.stdout
    assert "Description=Perl-based spam filter using text analysis (mp-plain)" in shown.stdout
    assert f"ExecStartPre={imagelab.SA_UPDATE}" in shown.stdout

    deps = run([image], "deps", *image_args(disks, "plain"), "spamd.service", "--format", "json")
    assert deps.returncode in (0, 1, 2), deps.stderr
    [unit] = json.loads(deps.stdout)["units"]
    [command] = [c for c in unit["commands"] if c["key"] == "ExecStartPre"]
    resolvers = {(d["target"], d["learned_from"]) for d in command["dependencies"] if d["kind"] in ("udp", "tcp")}
    assert resolvers == {("192.0.2.53:53", "/etc/resolv.conf")}  # the guest's resolv.conf, not the host's
    assert command["sa_update"]["version"] == imagelab.SA_VERSION
    assert command["sa_update"]["version_source"] == "/usr/share/perl5/Mail/SpamAssassin.pm:2"


def test_lvm_usr_on_its_own_lv_as_fstab_says(disks: imagelab.Disks, tmp_path: Path) -> None:
    """spamd.service and SpamAssassin live on the usr LV: found only if /usr was mounted per the guest's fstab."""
    image = disks.path("lvm")
    check_json(run([image], "check", *image_args(disks, "lvm"), "spamd.service", "--no-auth", "--format", "json"))

    output = tmp_path / "baseline.json"
    snap = run([image], "snapshot", *image_args(disks, "lvm"), "--output", str(output))
    assert snap.returncode == 0, snap.stderr
    text = output.read_text(encoding="utf-8")
    assert "Debian GNU/Linux 12 (bookworm) mp-lvm" in text  # os-release's PRETTY_NAME, from the root LV
    assert "(mp-lvm)" in text  # the unit's Description, from the usr LV


def test_luks_key_as_passphrase(disks: imagelab.Disks) -> None:
    """LVM on LUKS, the key given inline for every device (test_domain_luks_running_is_read gives it as a file)."""
    check_json(run([disks.path("luks")], "check", *image_args(disks, "luks"), "--key",
                   f"all:key:{imagelab.PASSPHRASE}", "spamd.service", "--no-auth", "--format", "json"))


def test_luks_without_a_key_says_which_key_to_give(disks: imagelab.Disks) -> None:
    done = run([disks.path("luks")], "check", *image_args(disks, "luks"), "spamd.service", "--no-auth")
    line = one_line_error(done)
    assert f"{LUKS_DEVICE} is LUKS-encrypted and no key was given" in line, line
    assert f"--key {LUKS_DEVICE}:file:" in line, line


def test_luks_with_a_wrong_key_says_so(disks: imagelab.Disks) -> None:
    done = run([disks.path("luks")], "check", *image_args(disks, "luks"), "--key", f"{LUKS_DEVICE}:key:not it",
               "spamd.service", "--no-auth")
    line = one_line_error(done)
    assert f"{LUKS_DEVICE}: the LUKS key does not open it" in line, line
    assert f"--key {LUKS_DEVICE}:" in line, line


# --- --domain through libvirt's test driver ---------------------------------------------------------------------


DOMAIN = """  <domain type='test'>
    <name>{name}</name>
    <memory>1048576</memory>
    <os><type>hvm</type></os>
    <devices>
      <disk type='file' device='disk'>
        <driver name='qemu' type='{format}'/>
        <source file='{source}'/>
        <target dev='vda' bus='virtio'/>
      </disk>
    </devices>{state}
  </domain>
"""


@pytest.fixture(scope="session")
def libvirt_node(disks: imagelab.Disks, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A test-driver URI whose node holds mp-plain (shut off) and mp-luks (running), on the session's images."""
    node = tmp_path_factory.mktemp("libvirt") / "node.xml"
    domains = [DOMAIN.format(name="mp-plain", format="qcow2", source=disks.path("plain"),
                             state="\n    <test:runstate>5</test:runstate>"),  # 5: VIR_DOMAIN_SHUTOFF
               DOMAIN.format(name="mp-luks", format="qcow2", source=disks.path("luks"), state="")]
    node.write_text("<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\n" + "".join(domains)
                    + "</node>\n", encoding="utf-8")
    return f"test://{node}"


def test_domain_plain(disks: imagelab.Disks, libvirt_node: str) -> None:
    check_json(run([disks.path("plain")], "check", "--domain", "mp-plain", "--connect", libvirt_node,
                   "spamd.service", "--no-auth", "--format", "json"))


def test_domain_luks_running_is_read(disks: imagelab.Disks, libvirt_node: str, keyfile: Path) -> None:
    """A running domain is read (read-only, as the virt tools do), its LUKS key given as a file."""
    shown = run([disks.path("luks")], "show", "--domain", "mp-luks", "--connect", libvirt_node,
                "--key", f"{LUKS_DEVICE}:file:{keyfile}", "spamd.service")
    assert shown.returncode == 0, shown.stderr
    assert "Description=Perl-based spam filter using text analysis (mp-luks)" in shown.stdout


@pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh is not installed (apt-get install libvirt-clients)")
def test_domain_running_refuses_a_write(disks: imagelab.Disks, libvirt_node: str) -> None:
    done = run([disks.path("luks")], "dropin", "install", "spamd.service", "--domain", "mp-luks", "--connect",
               libvirt_node)
    line = one_line_error(done)
    assert "the domain mp-luks is running" in line, line
    assert f"virsh -c {libvirt_node} shutdown mp-luks" in line, line


def test_domain_unknown_names_connect(libvirt_node: str) -> None:
    line = one_line_error(run([], "show", "--domain", "no-such-guest", "--connect", libvirt_node, "spamd.service"))
    assert "--domain no-such-guest: no libvirt domain called" in line, line
    assert "--connect URI" in line, line


# --- a write into an image a running qemu holds ------------------------------------------------------------------


@pytest.fixture
def running_qemu(disks: imagelab.Disks, tmp_path: Path) -> Iterator[Path]:
    """A copy of the plain image held open by a paused qemu (-S: no guest code runs), as a running guest's is."""
    image = tmp_path / "running.qcow2"
    shutil.copyfile(disks.path("plain"), image)
    qemu = subprocess.Popen(["qemu-system-x86_64", "-S", "-accel", "tcg", "-machine", "pc", "-nodefaults",
                             "-display", "none", "-m", "64", "-monitor", "none", "-serial", "none",
                             "-drive", f"file={image},format=qcow2,if=virtio"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while f":{image.stat().st_ino} " not in Path("/proc/locks").read_text() or qemu.poll() is not None:
            assert qemu.poll() is None, qemu.communicate()[0]
            assert time.monotonic() < deadline, "qemu took no lock on the image within 60 s"
            time.sleep(0.1)
        yield image
    finally:
        qemu.send_signal(signal.SIGTERM)
        qemu.wait(timeout=30)


def test_write_into_an_image_a_qemu_holds_is_refused(running_qemu: Path) -> None:
    done = run([running_qemu], "dropin", "install", "spamd.service", "--image", str(running_qemu))
    line = one_line_error(done)
    assert f"{running_qemu} is locked by another process (a running qemu?)" in line, line
    assert "shut the guest down first" in line, line
