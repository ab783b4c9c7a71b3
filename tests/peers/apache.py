"""A real Apache httpd (Debian's apache2 2.4) in the foreground, without a2enmod: ``apache2 -f
DIR/apache2.conf -DFOREGROUND`` with ``ServerRoot``, ``PidFile``, ``ErrorLog`` and the runtime directory in
DIR, ``LoadModule`` lines pointing at /usr/lib/apache2/modules, ``Listen 127.0.0.1:PORT``, and the site in
``DIR/sites/site.conf`` (read through ``IncludeOptional sites/*.conf``). ``apache2 -t`` checks it first.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.peers.proxysite import ProxySite, fill, start_site

MODULES_DIR = "/usr/lib/apache2/modules"
#: What every test site loads; mod_proxy_http upgrades by itself from 2.4.47 (upgrade=websocket).
BASE_MODULES = ("mpm_event", "authz_core", "proxy", "proxy_http")

MAIN = """ServerRoot {dir}
ServerName localhost
Listen 127.0.0.1:{port}
PidFile {dir}/apache2.pid
DefaultRuntimeDir {dir}
Mutex file:{dir} default
ErrorLog {dir}/error.log
LogLevel warn
{user}
{modules}
{main_extra}
IncludeOptional sites/*.conf
"""


def module_lines(names: Sequence[str]) -> str:
    return "\n".join(f"LoadModule {n}_module {MODULES_DIR}/mod_{n}.so" for n in names)


def _user() -> str:
    return "User nobody\nGroup nogroup" if os.geteuid() == 0 else ""


def check_config(binary: str, path: Path) -> None:
    out = subprocess.run(
        [binary, "-t", "-f", str(path)], capture_output=True, text=True, timeout=20, check=False
    )
    if out.returncode != 0:
        pytest.fail(f"apache2 -t -f {path} refused it:\n{out.stdout}{out.stderr}", pytrace=False)


def start_apache(
    binary: str,
    directory: Path,
    site: str,
    *,
    modules: Sequence[str] = BASE_MODULES,
    main_extra: str = "",
    **more: object,
) -> ProxySite:
    """``site`` (the sites/site.conf text; ``{port}``, ``{dir}`` and ``more`` filled in) in a real httpd."""
    main = directory / "apache2.conf"
    site_file = directory / "sites" / "site.conf"

    def write(port: int) -> dict[Path, str]:
        text = MAIN.replace("{user}", _user()).replace("{modules}", module_lines(modules))
        text = text.replace("{main_extra}", main_extra)
        return {main: fill(text, port, directory, **more), site_file: fill(site, port, directory, **more)}

    return start_site(
        "apache2",
        directory,
        write,
        lambda port, path: [binary, "-f", str(path), "-DFOREGROUND"],
        check=lambda path: check_config(binary, path),
    )
