"""Hosts of their own for roles under test: a network namespace joined to the root namespace
by a veth pair, and the faults of that link (:func:`namespace`); or several namespaces on one
switch, the root namespace plugged in too, each of which can be cut off (:func:`network`).

The namespace, its veth pair and its addresses (private, 10.231.N.0/29) are made by the test
under names derived from its PID and removed by name on exit, even after a failure; what a
killed run left behind (its PID gone) is removed before a new namespace is made. Needs root
and iproute2.

Faults:
- :meth:`Link.partition`: what the namespace sends to one address of the root side is
  dropped silently (its neighbour entry names a MAC nobody has), as on a dead link: open
  connections hang, new ones time out. Everything else still flows.
- delay: this kernel has no netem, so the namespace reaches the servers through
  :class:`Relays`, TCP relays in the root namespace (one address each, so that one server can
  be partitioned alone) that hold every chunk of data for ``delay_s``, each way.
"""

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAME = re.compile(r"^chunkcast-(\d+)-(\d+)$")
NOBODY_MAC = "02:00:00:00:0d:ad"  # locally administered, on no interface
EXTRA_HOSTS = (3, 4, 5, 6)  # the root side's addresses besides .1 (.2 is the namespace's)


class NetnsUnavailable(RuntimeError):
    """Not root, no iproute2, or the kernel refuses namespaces."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Link:
    """A namespace and its veth pair: ``host_if`` (root side, ``{subnet}.1`` and the extra
    addresses) and ``ns_if`` (inside, ``{subnet}.2``)."""

    namespace: str
    host_if: str
    ns_if: str
    subnet: str  # the first three octets

    @property
    def ns_address(self) -> str:
        return f"{self.subnet}.2"

    @property
    def host_addresses(self) -> tuple[str, ...]:
        """The root side's addresses, each of which the namespace reaches over the link."""
        return (f"{self.subnet}.1", *(f"{self.subnet}.{n}" for n in EXTRA_HOSTS))

    def exec_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: same PID)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    @contextlib.contextmanager
    def partition(self, address: str) -> Iterator[None]:
        """Drop, silently, what the namespace sends to ``address`` until the block ends."""
        _ip("-n", self.namespace, "neigh", "replace", address, "lladdr", NOBODY_MAC, "dev",
            self.ns_if, "nud", "permanent")
        try:
            yield
        finally:  # the real neighbour is looked up again on the next packet
            _ip("-n", self.namespace, "neigh", "del", address, "dev", self.ns_if, check=False)


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _remove(namespace: str, host_if: str) -> None:
    """By name; what is already gone is fine. Deleting the namespace deletes the veth end
    inside it, and with it the pair, but only once nothing runs in it any more."""
    _ip("netns", "del", namespace, check=False)
    _ip("link", "del", host_if, check=False)


def _host_if(pid: int, n: int) -> str:
    return f"cc{pid}h{n}"  # at most 15 characters: "cc" + 7 + "h" + 5


def remove_leftovers() -> None:
    """Namespaces (and their veth) of earlier runs whose process is gone."""
    listed = _ip("netns", "list", check=False).stdout.split()
    for name in listed:
        match = NAME.match(name)
        if match and not _pid_alive(int(match[1])):
            _remove(name, _host_if(int(match[1]), int(match[2])))


def _free_subnet() -> str:
    used = _ip("-o", "-4", "addr", "show").stdout + _ip("-4", "route", "show", "table",
                                                         "all").stdout
    for third in range(1, 255):
        subnet = f"10.231.{third}"
        if f"{subnet}." not in used:
            return subnet
    raise NetnsUnavailable("no free 10.231.N.0/29 subnet")


def check_available() -> None:
    """Raise :class:`NetnsUnavailable` unless namespaces can be made here."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("iproute2 (ip) is not installed")


@contextlib.contextmanager
def namespace() -> Iterator[Link]:
    """A new namespace joined to this one by a veth pair with its addresses, removed on
    exit (stop what runs inside first: a namespace lives as long as its processes)."""
    check_available()
    remove_leftovers()
    pid, n = os.getpid(), 1 + secrets.randbelow(99_999)
    link = Link(f"chunkcast-{pid}-{n}", _host_if(pid, n), "ccns", _free_subnet())
    try:
        try:
            _ip("netns", "add", link.namespace)
        except RuntimeError as exc:
            raise NetnsUnavailable(str(exc)) from exc
        _ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if, "netns",
            link.namespace)
        for address in link.host_addresses:
            _ip("addr", "add", f"{address}/29", "dev", link.host_if)
        _ip("link", "set", link.host_if, "up")
        _ip("-n", link.namespace, "addr", "add", f"{link.ns_address}/29", "dev", link.ns_if)
        _ip("-n", link.namespace, "link", "set", link.ns_if, "up")
        _ip("-n", link.namespace, "link", "set", "lo", "up")
        yield link
    finally:
        _remove(link.namespace, link.host_if)


class Relays:
    """TCP relays in a thread of their own: each listens on an address the namespace reaches
    and forwards to the server on the same port of 127.0.0.1, holding every chunk of data
    ``delay_s`` seconds each way (set it from any thread; 0 forwards at once). A server that
    closes a connection has its client's connection closed too; while a server is down its
    relay should refuse connections, as the server's own port does (:meth:`refusing`)."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relays",
                                        daemon=True)
        self._thread.start()
        self._addresses: dict[int, str] = {}
        self._listening: dict[int, asyncio.Server] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task on the relays' loop, referred to until it is done: a relay whose client
        has gone is referred to by nothing else, and a pending task that is garbage
        collected is destroyed mid-flight (its coroutine closed inside a ``finally``)."""
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def add(self, address: str, port: int) -> None:
        """Relay ``address:port`` to ``127.0.0.1:port``."""
        self._addresses[port] = address
        self._listen(port)

    def _listen(self, port: int) -> None:
        async def listen() -> asyncio.Server:
            return await asyncio.start_server(
                lambda r, w: self._spawn(self._serve(r, w, port)), self._addresses[port], port)

        self._listening[port] = asyncio.run_coroutine_threadsafe(listen(), self._loop).result()

    @contextlib.contextmanager
    def refusing(self, port: int) -> Iterator[None]:
        """No new connection to ``port`` until the block ends (open ones go on)."""
        listening = self._listening.pop(port)
        self._loop.call_soon_threadsafe(listening.close)
        try:
            yield
        finally:
            self._listen(port)

    def close(self) -> None:
        async def shutdown() -> None:
            for listening in self._listening.values():
                listening.close()
            # Until none is left: a cancelled task may leave one it started (a pipe's
            # sender), or a connection accepted meanwhile may start one.
            while others := asyncio.all_tasks() - {asyncio.current_task()}:
                for task in others:
                    task.cancel()
                await asyncio.gather(*others, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter,
                     target_port: int) -> None:
        try:
            await self._relay(client_in, client_out, target_port)
        except asyncio.CancelledError:  # the relays are closing: so is the connection
            client_out.transport.abort()

    async def _relay(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter,
                     target_port: int) -> None:
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_out.transport.abort()
            return
        pipes = [self._spawn(self._pipe(client_in, server_out)),
                 self._spawn(self._pipe(server_in, client_out))]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            for out in (client_out, server_out):
                out.transport.abort()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """What ``source`` reads, written to ``sink`` ``delay_s`` after it was read, in order;
        the end of ``source`` is passed on as a half-close once everything before it is."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)  # the delay itself
                if not data:
                    if sink.can_write_eof():
                        sink.write_eof()
                    return
                sink.write(data)
                await sink.drain()

        sender = self._spawn(send())
        try:
            while data := await source.read(65536):
                queue.put_nowait((loop.time() + self.delay_s, data))
            queue.put_nowait((loop.time() + self.delay_s, b""))
            await sender
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


@contextlib.contextmanager
def relays() -> Iterator[Relays]:
    """:class:`Relays`, closed on exit."""
    running = Relays()
    try:
        yield running
    finally:
        running.close()


# --- several hosts on one switch ---------------------------------------------------------------

SWITCH_IF = "br0"
HOST_IF = "eth0"  # each host's own end of its cable
FIRST_HOST = 10  # hosts get .10, .11, …; this namespace (the clients' host) gets .1


@dataclass(frozen=True)
class Host:
    """A namespace plugged into the switch by a cable (a veth pair): ``address`` on its
    ``eth0`` (no route beyond the switch), ``port`` the cable's end on the switch."""

    name: str
    namespace: str
    address: str
    switch: str
    port: str

    def exec_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run on this host (``ip netns exec`` execs it: same PID)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    @property
    def prefix(self) -> tuple[str, ...]:
        """What a program is started through to run on this host."""
        return tuple(self.exec_argv([]))

    def cut(self) -> None:
        """Pull the cable: the switch drops whatever goes to or comes from this host,
        silently (open connections hang, new ones time out), until :meth:`reconnect`."""
        _ip("-n", self.switch, "link", "set", self.port, "down")

    def reconnect(self) -> None:
        _ip("-n", self.switch, "link", "set", self.port, "up")


@dataclass(frozen=True)
class Network:
    """Hosts on one switch (a bridge in a namespace of its own) on ``{subnet}.0/24``; this
    namespace is plugged in too, at :attr:`client_address` (the clients' host)."""

    subnet: str  # the first three octets
    switch: str
    hosts: dict[str, Host]

    @property
    def client_address(self) -> str:
        return f"{self.subnet}.1"

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]


def _free_lan() -> str:
    used = _ip("-o", "-4", "addr", "show").stdout + _ip("-4", "route", "show", "table",
                                                         "all").stdout
    for third in range(0, 255):
        subnet = f"10.77.{third}"
        if f"{subnet}." not in used:
            return subnet
    raise NetnsUnavailable("no free 10.77.N.0/24 subnet")


def _plug(switch: str, port: str, peer: str, peer_namespace: str | None) -> None:
    """A cable from the switch's ``port`` to ``peer`` (in ``peer_namespace``, or here)."""
    if peer_namespace:
        _ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name", peer, "netns",
            peer_namespace)
    else:
        _ip("link", "add", peer, "type", "veth", "peer", "name", port, "netns", switch)
    _ip("-n", switch, "link", "set", port, "master", SWITCH_IF)
    _ip("-n", switch, "link", "set", port, "up")


@contextlib.contextmanager
def network(*names: str) -> Iterator[Network]:
    """A switch with one host per name (each a namespace of its own, with its loopback) and
    this namespace plugged in; all of it removed on exit (stop what runs on the hosts first).
    Names follow :func:`namespace`'s, so what a killed run left is removed the same way."""
    check_available()
    remove_leftovers()
    pid, first = os.getpid(), 1 + secrets.randbelow(99_999 - len(names))
    switch = f"chunkcast-{pid}-{first}"
    uplink = _host_if(pid, first)  # this namespace's end of its cable
    made: list[str] = []
    try:
        try:
            _ip("netns", "add", switch)
        except RuntimeError as exc:
            raise NetnsUnavailable(str(exc)) from exc
        made.append(switch)
        subnet = _free_lan()
        _ip("-n", switch, "link", "add", SWITCH_IF, "type", "bridge")
        _ip("-n", switch, "link", "set", SWITCH_IF, "up")
        hosts = {}
        for n, name in enumerate(names, start=1):
            host = Host(name, f"chunkcast-{pid}-{first + n}", f"{subnet}.{FIRST_HOST + n - 1}",
                        switch, f"p{n}")
            _ip("netns", "add", host.namespace)
            made.append(host.namespace)
            _plug(switch, host.port, HOST_IF, host.namespace)
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", HOST_IF)
            _ip("-n", host.namespace, "link", "set", HOST_IF, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
            hosts[name] = host
        _plug(switch, "p0", uplink, None)
        _ip("addr", "add", f"{subnet}.1/24", "dev", uplink)
        _ip("link", "set", uplink, "up")
        yield Network(subnet, switch, hosts)
    finally:
        for made_namespace in reversed(made):  # the cables go with the switch's namespace
            _ip("netns", "del", made_namespace, check=False)
        _ip("link", "del", uplink, check=False)
