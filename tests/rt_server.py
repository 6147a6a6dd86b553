"""A real Request Tracker 5 server on loopback, for the RT connector's live tests.

Uses Debian's request-tracker5 (installed by .ci/install-rt.sh): a fresh SQLite database in a
temporary folder, a queue with the bridge's custom fields, a bridge user and an agent user with auth
tokens, and `rt-server` on a free loopback port. Nothing outside the temporary folder is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

RT_LIB = Path("/usr/share/request-tracker5/lib")
RT_SERVER = Path("/usr/share/request-tracker5/libexec/rt-server")
SETUP_DATABASE = ("rt-setup-database-5", "rt-setup-database")
QUEUE = "Bridge"
CUSTOM_FIELDS = ("Conversation ID", "Channel")

SITE_CONFIG = """
Set($rtname, 'bridge-test');
Set($Organization, 'bridge.test');
Set($DatabaseType, 'SQLite');
Set($DatabaseName, '{db}');
Set($WebPath, '');
Set($WebDomain, '127.0.0.1');
Set($WebPort, {port});
Set($WebBaseURL, 'http://127.0.0.1:{port}');
Set($LogToSTDERR, 'error');
Set($LogToSyslog, undef);
Set($LogToFile, undef);
Set($LogDir, '{dir}');
Set($MasonDataDir, '{dir}/mason');
Set($MasonSessionDir, '{dir}/session');
Set($CorrespondAddress, 'rt@bridge.test');
Set($CommentAddress, 'rt-comment@bridge.test');
# Outgoing mail is written to a file in LogDir, never sent.
Set($MailCommand, 'mbox');
# Cheap token hashing: RT checks the token's bcrypt hash on every request (cost 12 by default).
Set($BcryptCost, 4);
1;
"""

# Run with RT's own libraries: the queue, its custom fields, two users with rights and tokens.
SETUP_SCRIPT = r"""
use strict; use warnings;
use lib '%(lib)s';
use RT;
RT::LoadConfig(); RT::Init();
my $sys = RT->SystemUser;
my ($ok, $msg);
my $q = RT::Queue->new($sys);
($ok, $msg) = $q->Create(Name => '%(queue)s');
die "queue: $msg" unless $ok;
for my $name (%(fields)s) {
    my $cf = RT::CustomField->new($sys);
    ($ok, $msg) = $cf->Create(Name => $name, Type => 'FreeformSingle', LookupType => 'RT::Queue-RT::Ticket');
    die "custom field: $msg" unless $ok;
    ($ok, $msg) = $cf->AddToObject($q);
    die "custom field on queue: $msg" unless $ok;
}
for my $name ('bridge', 'agent') {
    my $u = RT::User->new($sys);
    ($ok, $msg) = $u->Create(Name => $name, EmailAddress => "$name\@bridge.test", Privileged => 1,
                             RealName => ($name eq 'agent' ? 'Alice Agent' : 'Handover Bridge'));
    die "user: $msg" unless $ok;
    for my $right (qw(SeeQueue ShowTicket CreateTicket ReplyToTicket CommentOnTicket ModifyTicket
                      OwnTicket TakeTicket ShowTicketComments SeeCustomField ModifyCustomField)) {
        ($ok, $msg) = $u->PrincipalObj->GrantRight(Right => $right, Object => $q);
        die "right $right: $msg" unless $ok;
    }
    my $token = RT::AuthToken->new($sys);
    my ($id, $m, $secret) = $token->Create(Owner => $u->id, Description => "tests ($name)");
    die "token: $m" unless $id;
    print "$name=$secret\n";
}
"""


def rt_missing_reason() -> str | None:
    """Why a real RT cannot be started here, or None if it can."""
    if not RT_SERVER.exists() or not (RT_LIB / "RT.pm").exists():
        return "Request Tracker 5 is not installed (run .ci/install-rt.sh)"
    if not any(shutil.which(name) or Path("/usr/sbin", name).exists() for name in SETUP_DATABASE):
        return "rt-setup-database is missing (request-tracker5 incomplete)"
    if shutil.which("perl") is None:
        return "perl is missing"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RtServer:
    directory: Path
    port: int
    bridge_token: str
    agent_token: str
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/REST/2.0"

    def as_agent(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"token {self.agent_token}"
        return session

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_rt(timeout: float = 60.0) -> RtServer:
    """Initialise a fresh database, set it up and start rt-server; the caller must stop() it."""
    directory = Path(tempfile.mkdtemp(prefix="rt-test-"))
    (directory / "mason").mkdir()
    (directory / "session").mkdir()
    (directory / "site.d").mkdir()
    port = free_port()
    config = directory / "RT_SiteConfig.pm"
    config.write_text(SITE_CONFIG.format(db=directory / "rt.db", port=port, dir=directory))
    env = {
        **os.environ,
        "RT_SITE_CONFIG": str(config),
        # An empty folder: the Debian package's own RT_SiteConfig.d is not read.
        "RT_SITE_CONFIG_DIR": str(directory / "site.d"),
    }
    setup_db = next(
        (
            shutil.which(n) or str(Path("/usr/sbin", n))
            for n in SETUP_DATABASE
            if shutil.which(n) or Path("/usr/sbin", n).exists()
        ),
    )
    try:
        subprocess.run(
            [setup_db, "--action", "init", "--skip-create"],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        script = SETUP_SCRIPT % {
            "lib": RT_LIB,
            "queue": QUEUE,
            "fields": ", ".join(f"'{f}'" for f in CUSTOM_FIELDS),
        }
        out = subprocess.run(
            ["perl", "-e", script], env=env, check=True, capture_output=True, text=True, timeout=120
        ).stdout
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"RT setup failed: {exc.stderr[-2000:]}") from exc
    tokens = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    log = open(directory / "server.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [str(RT_SERVER), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = RtServer(directory, port, tokens["bridge"], tokens["agent"], process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = (directory / "server.log").read_text(errors="replace")[-2000:]
            server.stop()
            raise RuntimeError(f"rt-server exited: {text}")
        try:
            answer = requests.get(
                f"{server.api}/rt", headers={"Authorization": f"token {server.bridge_token}"}, timeout=2
            )
            if answer.status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"rt-server did not answer on port {port} within {timeout:.0f} s")
