"""A two-namespace network lab for running the real sa-update against a fake SpamAssassin update channel.

    [mail ns: 198.18.X.2] --veth-- [inet ns: .1 DNS (dnsmasq) + mirrors.lab.test, .3 mirror1, .4 mirror2]

Isolation: both namespaces are created empty, the veth pair is created *inside* them, and neither has a
default route, so no packet can reach the host's root namespace or leave the machine.  Addresses come from
198.18.0.0/15 (RFC 2544 benchmarking).  They exist only inside the lab's own namespaces, so two labs with the
same X would not even clash; X still differs per lab so that logs are unambiguous.

sa-update facts used here (line numbers: sa-update.raw 4.0.1):
- TXT `<reversed SA version>.<channel>` gives the revision (l.548-553); TXT `mirrors.<channel>` the URL of
  MIRRORED.BY (l.557-567, 664-674); mirror hosts are looked up with Net::DNS A/AAAA (l.1789-1808), the files
  are fetched with curl (l.1631-1641): `<rev>.tar.gz` then, in GPG mode, `<rev>.tar.gz.asc` (l.804-828).
- The channel's cache is `<updatedir>/<channel, [^A-Za-z0-9-] -> _>/MIRRORED.BY` (l.480-484, 504) and the
  installed revision the leading `# UPDATE version N` line of `<updatedir>/<channel>.cf` (l.507-526).
- `--gpgkey` adds a trusted signer (l.322-333), `--gpghomedir` the keyring, `--import` fills it (l.383-386).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import io
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SA_UPDATE = "/usr/bin/sa-update"
CHANNEL = "updates.spamassassin.org"
CHANNEL_DIR = "updates_spamassassin_org"  # l.481: tr/A-Za-z0-9-/_/cs
LAB_RULE_FILE = "70_mailpreflight_lab.cf"
LAB_RULES = (
    "body     MPL_LAB_TEST /mailpreflight-lab-test-string/\n"
    "describe MPL_LAB_TEST mailpreflight network lab rule\n"
    "score    MPL_LAB_TEST 0.1\n"
)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # perl -T refuses writable PATH dirs
MIRROR_HOSTS = ("mirror1", "mirror2")  # -> .3, .4 (the DNS server and mirrors.lab.test keep .1)
SCENARIOS = ("open", "dns-drop-local", "dns-drop-upstream", "http-drop", "http-reject", "mirror1-drop")
REQUIRED_TOOLS = ("ip", "nft", "dnsmasq", "gpg", "gpgconf", "curl", "perl", "openssl")

_counter = itertools.count()
_ETC_NETNS = Path("/etc/netns")
_ETC_NETNS_PREEXISTED = _ETC_NETNS.exists()  # leave a system's own /etc/netns alone


class NetLabError(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    timed_out: bool = False


@dataclass(frozen=True)
class Records:
    """What the lab's DNS knows.  None = the record does not exist (NXDOMAIN)."""

    revision: str | None = "1913500"
    mirrors_url: str | None = "http://mirrors.lab.test/MIRRORED.BY"
    mirrored_by: tuple[str, ...] = MIRROR_HOSTS  # the mirrors MIRRORED.BY lists, served over HTTP
    https_hosts: tuple[str, ...] = ()  # of those, listed as https:// and served with an untrusted certificate


@dataclass(frozen=True)
class SigningKey:
    """A throwaway GPG key (no passphrase) that signs the lab's rules, standing in for the ASF release key."""

    gnupghome: Path
    fingerprint: str
    pubkey: Path

    @classmethod
    def create(cls, directory: Path) -> SigningKey:
        home = directory / "gnupg"
        home.mkdir(mode=0o700, parents=True)
        _gpg(home, "--quick-gen-key", "mailpreflight lab <lab@lab.test>", "ed25519", "sign", "never")
        listing = _gpg(home, "--with-colons", "--list-secret-keys")
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        pubkey = directory / "lab-pubkey.asc"
        pubkey.write_text(_gpg(home, "--armor", "--export", fingerprint))
        return cls(home, fingerprint, pubkey)

    def sign(self, path: Path) -> Path:
        asc = path.with_name(path.name + ".asc")
        _gpg(self.gnupghome, "--local-user", self.fingerprint, "--armor", "--detach-sign", "--output", str(asc),
             str(path))
        return asc

    def close(self) -> None:
        stop_gpg_agent(self.gnupghome)


def _gpg(home: Path, *args: str) -> str:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def stop_gpg_agent(home: Path) -> None:
    # key generation and signing start a gpg-agent for that homedir; it would outlive the test
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30)


@functools.cache
def sa_version_label() -> str:
    """SpamAssassin's version as sa-update puts it in DNS: 4.000001 -> "1.0.4" (l.257-267)."""
    out = subprocess.run(["perl", "-MMail::SpamAssassin", "-e", "print $Mail::SpamAssassin::VERSION"],
                         check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    major, rest = out.split(".")
    return ".".join(reversed([str(int(major)), str(int(rest[:3])), str(int(rest[3:6]))]))


def unavailable_reason() -> str | None:
    """Why this machine cannot host a NetLab, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t, path=PATH) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (apt: iproute2 nftables dnsmasq-base gnupg curl)"
    if not os.access(SA_UPDATE, os.X_OK):
        return f"{SA_UPDATE} not found (apt: spamassassin)"
    probe = f"mpl-probe-{os.getpid()}-{next(_counter)}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if added.returncode != 0:
        return f"`ip netns add` failed: {added.stderr.strip()}"
    nft = subprocess.run(["ip", "netns", "exec", probe, "nft", "list", "ruleset"], capture_output=True, text=True,
                         timeout=30)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    if nft.returncode != 0:
        return f"nftables unusable in a namespace: {nft.stderr.strip()}"
    return None


def mirrored_by_text(hosts: Sequence[str], https: Sequence[str] = ()) -> str:
    # format: l.725-756 (one URL per line, key=value options, trailing / stripped); equal weights, so the
    # first mirror tried is a coin toss (choose_mirror, l.1756-1785)
    return "# mailpreflight lab\n" + "".join(
        f"{'https' if h in https else 'http'}://{h}.lab.test/ weight=5\n" for h in hosts)


def write_guest_root(root: Path, spamd_service: str, *, resolv_conf: str | None = None) -> Path:
    """A small guest tree for `mailpreflight --root`: this host's SpamAssassin version (the one the lab's TXT
    names are made for), curl as sa-update's downloader, Debian's identity, and the given spamd.service."""
    for directory in ("usr/share/perl5/Mail", "usr/bin", "etc/systemd/system"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "usr/share/perl5/Mail/SpamAssassin.pm").write_text(
        Path("/usr/share/perl5/Mail/SpamAssassin.pm").read_text(errors="replace"))
    (root / "usr/bin/curl").write_text("#!/bin/false\n")  # a placeholder: the lab runs the host's curl
    (root / "etc/os-release").write_text("ID=debian\nVERSION_ID=12\n")
    (root / "etc/systemd/system/spamd.service").write_text(spamd_service)
    if resolv_conf is not None:
        (root / "etc/resolv.conf").write_text(resolv_conf)
    return root


def rules_tarball() -> bytes:
    # flat archive: sa-update extracts entries by name into its temp dir and skips only "/" (l.1346-1356)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = LAB_RULES.encode()
        info = tarfile.TarInfo(LAB_RULE_FILE)
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class NetLab:
    """Context manager: builds the lab on enter, tears everything down on exit (also after errors)."""

    def __init__(self, workdir: Path, *, records: Records | None = None,
                 signing_key: SigningKey | None = None) -> None:
        self.workdir = workdir
        self.records = records or Records()
        self.signing_key = signing_key  # None: the lab makes (and later stops) its own
        n = next(_counter)
        self.mail_ns = f"mpl-mail-{os.getpid()}-{n}"
        self.inet_ns = f"mpl-inet-{os.getpid()}-{n}"
        x = (os.getpid() * 7 + n) % 256
        self.net = f"198.18.{x}"
        self.dns_addr = f"{self.net}.1"  # dnsmasq and mirrors.lab.test (serves MIRRORED.BY)
        self.mail_addr = f"{self.net}.2"
        self.mirror_addrs = {h: f"{self.net}.{3 + i}" for i, h in enumerate(MIRROR_HOSTS)}
        self.docroot = self.workdir / "htdocs"
        self.gpghomedir = self.workdir / "sa-update-keys"
        self.sa_version = sa_version_label()
        self._own_key = self.signing_key is None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._namespaces: list[str] = []
        self._netns_etc = _ETC_NETNS / self.mail_ns
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> NetLab:
        atexit.register(self.close)  # last resort if the interpreter exits without __exit__
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for ns in (self.mail_ns, self.inet_ns):
            _sh("ip", "netns", "add", ns)
            self._namespaces.append(ns)
        # created inside the mail ns, peer moved straight into the inet ns: the pair never touches the host
        _sh("ip", "-n", self.mail_ns, "link", "add", "vmail", "type", "veth", "peer", "name", "vinet",
            "netns", self.inet_ns)
        _sh("ip", "-n", self.mail_ns, "addr", "add", f"{self.mail_addr}/24", "dev", "vmail")
        for addr in (self.dns_addr, *self.mirror_addrs.values()):
            _sh("ip", "-n", self.inet_ns, "addr", "add", f"{addr}/24", "dev", "vinet")
        for ns, dev in ((self.mail_ns, "vmail"), (self.inet_ns, "vinet")):
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "link", "set", dev, "up")
        # `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc/*: sa-update's Net::DNS and curl's libc
        # resolver both read this resolv.conf (nsswitch "files" finds nothing for lab.test in /etc/hosts)
        for _ in range(3):  # another lab's close() may rmdir an empty /etc/netns between our two mkdirs
            with contextlib.suppress(FileNotFoundError):
                self._netns_etc.mkdir(parents=True, exist_ok=True)
                break
        (self._netns_etc / "resolv.conf").write_text(f"nameserver {self.dns_addr}\n")
        if self.signing_key is None:
            self.signing_key = SigningKey.create(self.workdir / "signer")
        self._write_docroot()
        self._start_dnsmasq()
        self._start_http()
        if self.records.https_hosts:
            self._start_https()
        imported = self.run([SA_UPDATE, "--gpghomedir", str(self.gpghomedir), "--import",
                             str(self.signing_key.pubkey)], timeout=120)
        if imported.returncode != 0:
            raise NetLabError(f"sa-update --import failed: {imported.stderr}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for proc in reversed(self._procs):
            _stop(proc)
        # a namespace lives on while a process is inside it: kill every straggler (sa-update, curl) by pid
        for ns in self._namespaces:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self._netns_etc, ignore_errors=True)
        if not _ETC_NETNS_PREEXISTED:
            with contextlib.suppress(OSError):  # only succeeds once empty, i.e. after the last lab
                _ETC_NETNS.rmdir()
        stop_gpg_agent(self.gpghomedir)
        if self._own_key and self.signing_key is not None:
            self.signing_key.close()

    # -- servers ---------------------------------------------------------------------------------------------
    def _write_docroot(self) -> None:
        assert self.signing_key is not None
        self.docroot.mkdir(parents=True, exist_ok=True)
        (self.docroot / "MIRRORED.BY").write_text(
            mirrored_by_text(self.records.mirrored_by, self.records.https_hosts))
        rev = self.records.revision
        if rev is None:
            return
        tarball = self.docroot / f"{rev}.tar.gz"
        tarball.write_bytes(rules_tarball())
        # "<hex>  <file>" like sha256sum; sa-update reads only the leading hex (l.866-869, 881-884)
        for algo in ("sha256", "sha512"):
            digest = hashlib.new(algo, tarball.read_bytes()).hexdigest()
            tarball.with_name(f"{tarball.name}.{algo}").write_text(f"{digest}  {tarball.name}\n")
        self.signing_key.sign(tarball)

    def _start_dnsmasq(self) -> None:
        r = self.records
        argv = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", f"--listen-address={self.dns_addr}",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}", f"--log-facility={self.workdir / 'dnsmasq.log'}",
            "--log-queries",
            "--user=root",  # dnsmasq's default user could not write the log in pytest's 0700 tmp dirs
            "--local=/#/",  # every name not configured below is NXDOMAIN: nothing is ever forwarded
            f"--host-record=mirrors.lab.test,{self.dns_addr}",
            *(f"--host-record={h}.lab.test,{a}" for h, a in self.mirror_addrs.items()),
        ]
        if r.revision is not None:
            argv.append(f"--txt-record={self.sa_version}.{CHANNEL},{r.revision}")
        if r.mirrors_url is not None:
            argv.append(f"--txt-record=mirrors.{CHANNEL},{r.mirrors_url}")
        self._spawn_inet("dnsmasq", argv, udp_port=53)

    def _start_http(self) -> None:
        # 0.0.0.0 in the inet ns = exactly the lab's addresses (.1 mirrors.lab.test, .3 mirror1, .4 mirror2)
        argv = [sys.executable, "-m", "http.server", "--bind", "0.0.0.0", "--directory", str(self.docroot), "80"]
        self._spawn_inet("http", argv, tcp_port=80)

    def _start_https(self) -> None:
        """The same files over HTTPS with a self-signed certificate no client trusts (a broken mirror)."""
        key, cert = self.workdir / "tls-key.pem", self.workdir / "tls-cert.pem"
        _sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=untrusted.lab.test", "-keyout", str(key), "-out", str(cert))
        server = (
            "import functools, http.server, ssl, sys\n"
            "handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n"
            "srv = http.server.ThreadingHTTPServer(('0.0.0.0', 443), handler)\n"
            "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[2], sys.argv[3])\n"
            "srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n"
            "srv.serve_forever()\n")
        self._spawn_inet("https", [sys.executable, "-c", server, str(self.docroot), str(cert), str(key)],
                         tcp_port=443)

    def _spawn_inet(self, name: str, argv: list[str], *, udp_port: int = 0, tcp_port: int = 0) -> None:
        log = self.workdir / f"{name}.out"
        with log.open("wb") as out:
            # `ip netns exec` execs the command, so popen.pid is the server itself
            popen = subprocess.Popen(["ip", "netns", "exec", self.inet_ns, *argv], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(popen)
        deadline = time.monotonic() + 15
        while not _listening(popen.pid, udp_port, tcp_port):
            if popen.poll() is not None or time.monotonic() > deadline:
                raise NetLabError(f"{name} did not start: {log.read_text(errors='replace')}")
            time.sleep(0.05)

    # -- running things in the mail namespace ----------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": PATH, "HOME": str(self.workdir), "LANG": "C.UTF-8", **extra}

    def run(self, argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> Result:
        """Run argv in the mail namespace; on timeout the whole process group is killed."""
        start = time.monotonic()
        proc = subprocess.Popen(["ip", "netns", "exec", self.mail_ns, *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.workdir,
                                env=dict(env) if env is not None else self.env(), start_new_session=True)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return Result(proc.returncode, time.monotonic() - start, out, err, timed_out)

    def sa_update(self, args: Sequence[str], updatedir: Path, timeout: float = 400,
                  env: Mapping[str, str] | None = None) -> Result:
        """The real sa-update, trusting only the lab key, never touching /var/lib/spamassassin."""
        assert self.signing_key is not None
        argv = [SA_UPDATE, "--gpgkey", self.signing_key.fingerprint, "--gpghomedir", str(self.gpghomedir),
                "--updatedir", str(updatedir), *args]
        return self.run(argv, timeout, env)

    @staticmethod
    def seed_updatedir(updatedir: Path, *, mirrors: Sequence[str] | None = None, age: float = 0.0,
                       version: int | str | None = None) -> None:
        """Pre-seed the channel cache: MIRRORED.BY listing `mirrors` with mtime now-`age` seconds
        (sa-update refreshes it past 7 days, l.170, 655), and/or the installed `# UPDATE version`."""
        if mirrors is not None:
            path = updatedir / CHANNEL_DIR / "MIRRORED.BY"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(mirrored_by_text(mirrors))
            mtime = time.time() - age
            os.utime(path, (mtime, mtime))
        if version is not None:
            updatedir.mkdir(parents=True, exist_ok=True)
            (updatedir / f"{CHANNEL_DIR}.cf").write_text(f"# UPDATE version {version}\n")

    # -- firewalls -------------------------------------------------------------------------------------------
    def firewall(self, scenario: str) -> None:
        """Replace both namespaces' nftables rulesets with `scenario` (one of SCENARIOS)."""
        mirror1 = self.mirror_addrs["mirror1"]
        mail_out: dict[str, str] = {
            # output-chain drop: sendto() fails at once with EPERM
            "dns-drop-local": "udp dport 53 drop\n tcp dport 53 drop",
            "http-drop": "tcp dport { 80, 443 } drop",
            "http-reject": "tcp dport { 80, 443 } reject with tcp reset",
            "mirror1-drop": f"ip daddr {mirror1} drop",
        }
        # upstream drop: the queries leave the host and vanish, as with a perimeter firewall
        inet_in = {"dns-drop-upstream": "udp dport 53 drop\n tcp dport 53 drop"}
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown firewall scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        self._nft(self.mail_ns, "output", mail_out.get(scenario, ""))
        self._nft(self.inet_ns, "input", inet_in.get(scenario, ""))

    def _nft(self, ns: str, hook: str, rules: str) -> None:
        ruleset = (f"flush ruleset\ntable inet mpl {{\n chain {hook} {{\n"
                   f"  type filter hook {hook} priority 0; policy accept;\n {rules}\n }}\n}}\n")
        done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, text=True,
                              capture_output=True, timeout=30)
        if done.returncode != 0:
            raise NetLabError(f"nft in {ns} failed: {done.stderr}\n{ruleset}")


def _sh(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetLabError(f"{' '.join(argv)}: {done.stderr.strip()}")


def _listening(pid: int, udp_port: int, tcp_port: int) -> bool:
    # /proc/<pid>/net/* shows the sockets of *that process's* namespace: no need to enter it
    def bound(table: str, port: int, state: str) -> bool:
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            return False
        return any(f[1].endswith(f":{port:04X}") and f[3] == state for f in (ln.split() for ln in lines))

    return (not udp_port or bound("udp", udp_port, "07")) and (not tcp_port or bound("tcp", tcp_port, "0A"))


def _stop(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=5)
