"""Cause codes of the host layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.HOST

FIREWALL_DROPS_PORT = cause(
    "firewall.drops-port",
    L,
    N_(
        "a firewall rule (or a drop policy) of this machine drops new connections to the port: clients see tcp.timeout"
    ),
    N_(
        "allow the port in that chain (e.g. nft add rule inet filter input tcp dport PORT accept, or ufw allow PORT/tcp)"
    ),
    warn=True,
    doc="local-checks.md",
)
FIREWALL_REJECTS_PORT = cause(
    "firewall.rejects-port",
    L,
    N_(
        "a firewall rule of this machine rejects new connections to the port: clients see tcp.refused or an ICMP error"
    ),
    N_("allow the port in that chain before the reject rule (e.g. ufw allow PORT/tcp)"),
    warn=True,
    doc="local-checks.md",
)
PORT_LOOPBACK_ONLY = cause(
    "port.loopback-only",
    L,
    N_("the server listens on 127.0.0.1/::1 only, while the client uses another address of this machine"),
    N_(
        "bind the server to all interfaces (host '0.0.0.0' or '::'; lokin-doctor serve --host 0.0.0.0) or put a reverse proxy on this machine in front of it"
    ),
)
PORT_NOT_LISTENING = cause(
    "port.not-listening",
    L,
    N_("nothing listens on the port on this machine"),
    N_("start the WebSocket server on that port (node server.js, or lokin-doctor serve --port PORT)"),
    tags=(Tag.NOTHING_LISTENS,),
)
PORT_OWNER_UNKNOWN = cause(
    "port.owner-unknown",
    L,
    N_('something listens but this user cannot see its owner: "owner unknown, run as root to see it"'),
    N_("owner unknown, run as root (sudo lokin-doctor check-port) to see which process holds the port"),
    warn=True,
    fail=False,
)
PORT_UNEXPECTED_OWNER = cause(
    "port.unexpected-owner",
    L,
    N_(
        "the port is held by a program that is not the expected server (e.g. a static web server); `--process` names yours"
    ),
    N_(
        "if the handshake fails, another program holds the port: stop it or move the WebSocket server to a free port (and the client URL with it); if this is your server, pass --process to name it"
    ),
    warn=True,
    fail=False,
)
PORT_WRONG_ADDRESS = cause(
    "port.wrong-address",
    L,
    N_("the server listens on another address than the one the client uses"),
    N_(
        "bind the server to the address the clients use (or to all interfaces: '0.0.0.0' / '::'), or use one of the bound addresses in the client URL"
    ),
)
PROCESS_MULTIPLE = cause(
    "process.multiple",
    L,
    N_("several instances run; only one holds the port"),
    N_(
        "stop the extra instances (kill PID): a second server started on a taken port dies with EADDRINUSE or hangs; check how the server is started (pm2, systemd, nohup) so it runs once"
    ),
    warn=True,
    fail=False,
)
PROCESS_NOT_LISTENING = cause(
    "process.not-listening",
    L,
    N_("the server process runs but listens nowhere (still starting, EADDRINUSE, crashed in listen)"),
    N_("read the server's log for the listen error, free the port, and restart it"),
)
PROCESS_NOT_RUNNING = cause(
    "process.not-running",
    L,
    N_("no server process and nothing on the port"),
    N_("start it (`node server.js` / `lokin-doctor serve`), under pm2 or systemd"),
)
PROCESS_OWNER_UNKNOWN = cause(
    "process.owner-unknown",
    L,
    N_("something holds the port but no matching process is visible (run as root, or `--process`)"),
    N_(
        "owner unknown, run as root to see it (sudo lokin-doctor check-process), or pass --process to name your server's command line"
    ),
    warn=True,
    fail=False,
)
PROCESS_WRONG_PORT = cause(
    "process.wrong-port",
    L,
    N_("the server runs, but listens on another port (named)"),
    N_("fix the client URL or the server's port"),
)
SUPERVISOR_NO_RESTART = cause(
    "supervisor.no-restart",
    L,
    N_(
        "the supervisor would not restart the server: systemd Restart=no, pm2 autorestart off, or supervisord autorestart=false"
    ),
    N_("turn restarts on: Restart=always in the unit, pm2 --autorestart, or autorestart=true"),
    warn=True,
    fail=False,
    doc="local-checks.md",
)
SUPERVISOR_NODEMON = cause(
    "supervisor.nodemon",
    L,
    N_(
        "the server runs under nodemon, a development watcher that does not restart it after a crash or a reboot"
    ),
    N_("in production run it under systemd or pm2 (deploy/lokin-ws.service)"),
    warn=True,
    fail=False,
    doc="local-checks.md",
)
SUPERVISOR_NONE = cause(
    "supervisor.none",
    L,
    N_("nothing among the server's ancestors would restart it after a crash or a reboot"),
    N_("install the systemd unit (deploy/lokin-ws.service) or run it under pm2"),
    warn=True,
    fail=False,
    doc="local-checks.md",
)
SUPERVISOR_TERMINAL = cause(
    "supervisor.terminal",
    L,
    N_(
        "the server was started by hand from a terminal (a shell on a TTY, tmux, screen): it dies with the session"
    ),
    N_("install the systemd unit (deploy/lokin-ws.service) or run it under pm2"),
    warn=True,
    fail=False,
    doc="local-checks.md",
)
