"""Several "hosts" on one machine: Linux network namespaces joined by a bridge, each with its own
address, for tests that run the bridge as a deployment would (web and worker processes on different
hosts, sharing PostgreSQL and Redis over the network).

The root namespace holds the bridge device (`GATEWAY`) and the test process, which runs the vendor
fakes and one TCP relay per host in front of PostgreSQL and one in front of Redis. Each host reaches
the database only through its own relay, so a test can cut one host off from the database (its
connections reset, new ones refused) and restore it. Where namespaces cannot be made (no `ip`, not
root), every host is 127.0.0.1 and the relays still separate them: `Network.isolated` says which.

Addresses are 10.231.<n>.0/24 inside namespaces this module creates and deletes; nothing leaves
the machine.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

from tests.procs import ROOT, BridgeProcess


def _ip(*args: str, ns: str | None = None) -> None:
    command = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(command, check=True, capture_output=True, timeout=20)


class Relay:
    """A TCP relay from `listen` to `target` that can be cut (connections reset, new ones refused)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        self.address = self.server.getsockname()[:2]
        self.cut_until = 0.0
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if time.monotonic() < self.cut_until:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self.lock:
                self.connections.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self.lock:
            self.connections.discard(source)
            self.connections.discard(sink)

    def cut(self, seconds: float) -> None:
        """Reset every open connection and refuse new ones for `seconds`."""
        self.cut_until = time.monotonic() + seconds
        with self.lock:
            connections, self.connections = list(self.connections), set()
        for sock in connections:
            _reset(sock)

    def close(self) -> None:
        self.server.close()
        self.cut(0)


def _reset(sock: socket.socket) -> None:
    """Abort a connection: RST to the peer. shutdown() first, since close() alone does not end a
    connection that another thread is blocked reading (the peer would never hear of it)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class Host:
    name: str
    address: str
    namespace: str | None
    network: Network
    db_relay: Relay | None = None
    processes: list[BridgeProcess] = field(default_factory=list)

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv] if self.namespace else argv


class Network:
    """Hosts on one machine; `isolated` is True when each is a network namespace of its own."""

    def __init__(self) -> None:
        self.tag = f"{os.getpid() % 10000:04d}"
        self.subnet = 100 + os.getpid() % 100
        self.gateway = f"10.231.{self.subnet}.1"
        self.bridge = f"hb{self.tag}br"
        self.hosts: list[Host] = []
        self.relays: list[Relay] = []
        self.isolated = False
        self.closed = False
        self.why_not = ""
        if shutil.which("ip") is None or os.geteuid() != 0:
            self.why_not = "no `ip` command or not root"
            self.gateway = "127.0.0.1"
            return
        self._remove_leftovers()
        atexit.register(self.close)
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            self.isolated = True
        except (subprocess.CalledProcessError, OSError) as exc:
            self.why_not = f"cannot make a bridge device: {getattr(exc, 'stderr', b'') or exc}"
            self.gateway = "127.0.0.1"
            with contextlib.suppress(Exception):
                _ip("link", "del", self.bridge)

    def _remove_leftovers(self) -> None:
        """Namespaces and the bridge of an earlier run with the same tag that was killed before it
        could clean up (the tag comes from the process id, so this is rare)."""
        listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
        for line in listing.stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(f"hb{self.tag}"):
                pids = subprocess.run(
                    ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
                )
                for pid in pids.stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), 9)
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    def relay(self, target: tuple[str, int]) -> Relay:
        relay = Relay((self.gateway, 0), target)
        self.relays.append(relay)
        return relay

    def add_host(self, name: str, *, database: tuple[str, int] | None = None) -> Host:
        index = len(self.hosts) + 10
        if self.isolated:
            namespace = f"hb{self.tag}{name}"
            outside, inside = f"hb{self.tag}{index}a", f"hb{self.tag}{index}b"
            address = f"10.231.{self.subnet}.{index}"
            _ip("netns", "add", namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            _ip("addr", "add", f"{address}/24", "dev", inside, ns=namespace)
            _ip("link", "set", inside, "up", ns=namespace)
            _ip("link", "set", "lo", "up", ns=namespace)
            _ip("route", "add", "default", "via", self.gateway, ns=namespace)
        else:
            namespace, address = None, "127.0.0.1"
        host = Host(name, address, namespace, self)
        if database is not None:
            host.db_relay = self.relay(database)
        self.hosts.append(host)
        return host

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for host in self.hosts:
            for process in host.processes:
                process.kill()
        for relay in self.relays:
            relay.close()
        if self.isolated:
            for host in self.hosts:
                with contextlib.suppress(Exception):
                    _ip("netns", "del", host.namespace)
            with contextlib.suppress(Exception):
                _ip("link", "del", self.bridge)


class HostProcess(BridgeProcess):
    """A bridge process (`manage.py ...` or another Python module) started inside a host."""

    def __init__(self, host: Host, argv: list[str], env: dict[str, str], log_dir, name: str) -> None:
        super().__init__(argv, env, log_dir, name)
        self.host = host
        host.processes.append(self)

    def start(self) -> HostProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.host.command(self.args),
            cwd=str(ROOT),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self
