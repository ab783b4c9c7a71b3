"""nginx behind the :class:`~lokin_doctor.proxies.base.ProxyReader` contract: an adapter over
:mod:`~lokin_doctor.proxies.nginx.conf` and :mod:`~lokin_doctor.proxies.nginx.findings`.

The ``nginx`` check (:mod:`lokin_doctor.proxies.nginx.check`) keeps its own flow, codes and corrected
location block; this adapter gives the same reading in the common shape (a :class:`~base.Route`, findings
with ``file:line``, the current text and the corrected text), for code that handles every proxy alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lokin_doctor.proxies import base
from lokin_doctor.proxies.nginx import conf as nc
from lokin_doctor.proxies.nginx import findings as nf

if TYPE_CHECKING:
    from lokin_doctor.context import Context


class NginxReader:
    kind = "nginx"
    title = "nginx"

    def recognise(self, path: str) -> bool:
        from lokin_doctor.settings import _nginx_config_problem

        return _nginx_config_problem(path) is None

    def find_running(self, port_pids: set[int]) -> base.Running | None:
        from lokin_doctor.proxies.nginx.check import _nginx_masters, master_config

        masters = _nginx_masters(port_pids)
        if not masters:
            return None
        m = masters[0]
        exe, _prefix, conf = master_config(m["title"], m["cwd"])
        return base.Running(
            "nginx",
            m["pid"],
            tuple(m["title"]),
            conf or "/etc/nginx/nginx.conf",
            f"nginx master pid {m['pid']}",
            m["cwd"],
            exe,
        )

    def load(self, path: str, running: base.Running | None = None) -> nc.Config:
        try:
            return nc.load(path)
        except nc.ConfigError as exc:
            raise base.ConfigError(str(exc)) from None

    def route(
        self, config: nc.Config, *, host: str, port: int, path: str, address: str | None, secure: bool
    ) -> base.Route | None:
        analysis = nf.analyse(config, port=port, host=host, path=path, address=address)
        return _route(analysis, host, address) if analysis is not None else None

    def findings(self, route: base.Route, facts: base.Facts) -> list[base.Finding]:
        analysis, host, address = route.detail
        again = nf.analyse(
            analysis.config,
            port=analysis.listen.port,
            host=host,
            path=analysis.path,
            address=address,
            facts=nf.Facts(
                listening_ports=facts.listening_ports,
                ws_ports=facts.ws_ports,
                other_ports=facts.other_ports,
                ping_interval=facts.ping_interval,
                ping_source=facts.ping_source,
                is_local=facts.is_local,
            ),
        )
        analysis = again or analysis
        ws_port = next(iter(facts.ws_ports)) if facts.ws_ports and len(facts.ws_ports) == 1 else None
        anchor = analysis.location or analysis.server
        current = "\n".join(d.text() + ";" for d in anchor.block or ())
        out = []
        for f in analysis.findings:
            code = _cause(f.code)
            corrected = nf.fixed_block(analysis, {f.code}, ws_port)
            out.append(
                base.Finding(
                    code, f.severity, f.file, f.line, f.message, current, corrected, base.ADVICE, f.seconds
                )
            )
        return out

    def version(self, running: base.Running | None, timeout: float) -> tuple[int, ...] | None:
        exe = (running.binary if running else None) or "nginx"
        out = base.run_quiet([exe, "-v"], timeout)
        return base.parse_version(out[2]) if out else None

    async def live(self, ctx: Context, config: Any, running: base.Running | None) -> dict[str, Any]:
        return {}

    def hint_reload(self) -> str:
        return "nginx -t && nginx -s reload"


def _cause(code: str) -> Any:
    from lokin_doctor import causes

    return causes.require(code)


def _route(analysis: nf.Analysis, host: str, address: str | None) -> base.Route:
    anchor = analysis.location or analysis.server
    return base.Route(
        "nginx",
        analysis.describe(),
        (analysis.server_reason, analysis.location_reason),
        anchor.file,
        anchor.line,
        tuple(base.Upstream(u.host, u.port, u.scheme) for u in analysis.upstreams),
        analysis.path,
        (analysis, host, address),
    )


READER = NginxReader()
