"""A real dnsmasq answering from records given by the test, on 127.0.0.1 and a free UDP+TCP port."""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tests.peers._common import LOOPBACK, ManagedProcess, free_port, log_says_address_in_use, port_accepts

Records = Mapping[str, str | Sequence[str]] | Sequence[str]

#: The records of the ``dns_server`` fixture (see its docstring for the answers they give).
DEFAULT_RECORDS: dict[str, str | list[str]] = {
    ".lokin.test": "127.0.0.1",
    "lokin.test": "127.0.0.1",
    "multi.lokin.test": ["127.0.0.1", "127.0.0.2", "127.0.0.3"],
    "v6.lokin.test": "::1",
    "alias.lokin.test": "CNAME lokin.test",
    "nx.test": "NXDOMAIN",
}
DEFAULT_HOSTS: dict[str, str | list[str]] = {"override.lokin.test": "127.0.0.5"}


@dataclass(eq=False)
class DnsPeer:
    """A running dnsmasq.

    Attributes:
        host: "127.0.0.1".
        port: its UDP and TCP port.
        server: "127.0.0.1:PORT", the form of ``--dns-server``.
        pid: the dnsmasq PID.
        log: its output (``--log-queries`` is on).
        args: the record options it was started with.
        hosts_file: the ``--addn-hosts`` file, if any.
    """

    host: str
    port: int
    server: str
    pid: int | None
    log: Path
    args: list[str] = field(default_factory=list)
    hosts_file: Path | None = None
    _proc: ManagedProcess | None = field(default=None, repr=False)

    def resolver(self, lifetime: float = 2.0) -> Any:
        """A ``dns.resolver.Resolver`` that asks only this server."""
        import dns.resolver

        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [self.host]
        res.port = self.port
        res.lifetime = lifetime
        res.timeout = lifetime
        return res

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def record_args(records: Records) -> list[str]:
    """Translate records into dnsmasq options.

    A sequence is taken as raw dnsmasq options ("--address=/lokin.test/127.0.0.1"). A mapping goes
    name -> value:

    * an IP or a list of IPs: ``--host-record`` per address (A and/or AAAA) plus ``--local=/name/``, so
      the other type gets an empty answer (NODATA) and subnames NXDOMAIN, instead of REFUSED;
    * ``"CNAME target"``: ``--cname=name,target`` (dnsmasq answers only if it knows the target);
    * ``"NXDOMAIN"``: ``--local=/name/``: the name and its subdomains do not exist;
    * a key starting with "." (".lokin.test"): ``--address=/lokin.test/IP`` plus ``--local=/lokin.test/``:
      the domain and every subdomain without a more specific record get IP, the other type NODATA.
    """
    if not isinstance(records, Mapping):
        return [str(r) for r in records]
    args: list[str] = []

    def local(domain: str) -> None:
        if f"--local=/{domain}/" not in args:
            args.append(f"--local=/{domain}/")

    for name, value in records.items():
        values = [value] if isinstance(value, str) else list(value)
        if name.startswith("."):
            args += [f"--address=/{name[1:]}/{v}" for v in values]
            local(name[1:])
        elif values == ["NXDOMAIN"]:
            local(name)
        elif len(values) == 1 and values[0].upper().startswith("CNAME "):
            args.append(f"--cname={name},{values[0].split(None, 1)[1]}")
        else:
            bad = [v for v in values if not _is_ip(v)]
            if bad:
                raise ValueError(f"record {name!r}: not an IP address: {bad}")
            args += [f"--host-record={name},{v}" for v in values]
            local(name)
    return args


def write_hosts(path: Path, hosts: Mapping[str, str | Sequence[str]]) -> Path:
    lines = ["# hosts-style overrides for the lokin-doctor test dnsmasq"]
    for name, value in hosts.items():
        for ip in [value] if isinstance(value, str) else value:
            lines.append(f"{ip}\t{name}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)
    return path


def start_dnsmasq(
    binary: str,
    directory: Path,
    records: Records,
    hosts: Mapping[str, str | Sequence[str]] | None = None,
    extra_args: Sequence[str] = (),
) -> DnsPeer:
    """Start dnsmasq per PEERS.md with ``records`` (see :func:`record_args`) and an optional hosts file."""
    directory.mkdir(parents=True, exist_ok=True)
    args = record_args(records) + list(extra_args)
    hosts_file = write_hosts(directory / "hosts", hosts) if hosts else None
    if hosts_file is not None:
        args.append(f"--addn-hosts={hosts_file}")
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    proc: ManagedProcess | None = None
    for attempt in range(3):
        port = free_port(udp=True)
        argv = [
            binary,
            "--keep-in-foreground",
            "--log-facility=-",
            "--log-queries",
            f"--port={port}",
            f"--listen-address={LOOPBACK}",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--conf-file=/dev/null",
            f"--pid-file={directory / 'dnsmasq.pid'}",
            f"--user={user}",
            f"--group={group}",
            *args,
        ]
        proc = ManagedProcess(argv, log=directory / f"dnsmasq-{attempt}.log", cwd=directory, name="dnsmasq")
        proc.start()
        if proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=10):
            break
        if not proc.alive() and log_says_address_in_use(proc.log) and attempt < 2:
            proc.stop()
            continue
        proc.fail_start(f"port {port} not accepting TCP")
    assert proc is not None
    return DnsPeer(
        host=LOOPBACK,
        port=port,
        server=f"{LOOPBACK}:{port}",
        pid=proc.pid,
        log=proc.log,
        args=args,
        hosts_file=hosts_file,
        _proc=proc,
    )
