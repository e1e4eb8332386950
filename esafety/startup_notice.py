"""What ``esafety up`` prints once it is ready: where things are, and what to do now.

A short plain-text block on standard output (the logs go to standard error): the admin UI's
address, the proxy address browsers use, the PAC file's address, and the certificate devices
must trust with the command that exports it. Every address is the configured public one
(``admin_public_url``, ``proxy_public_address``), as the PAC file and the block page use.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from deployment.ca_certificate import CERT_FILE, ca_dir
from deployment.config import Config
from deployment.instance import Instance, default_data_dir
from deployment.public_address import admin_public_url, proxy_public_address

PAC_PATH = "/proxy.pac"
"""The PAC file's route (admin_api.routes.proxy_config)."""


def ca_certificate_file(instance: Instance) -> Path:
    """The proxy CA's certificate (public; its key stays beside it, 0600)."""
    return ca_dir(instance.data_dir) / CERT_FILE


def esafety_command(instance: Instance, *args: str) -> str:
    """An ``esafety`` command line for this deployment, as an administrator types it: with
    ``--data-dir`` when the data directory is not the default one."""
    words = ["esafety"]
    if instance.data_dir.resolve() != default_data_dir().resolve():
        words += ["--data-dir", str(instance.data_dir)]
    if instance.config.path is not None:
        words += ["--config", str(instance.config.path)]
    return " ".join(shlex.quote(word) for word in [*words, *args])


def public_admin_url(config: Config) -> str:
    return admin_public_url(config).rstrip("/")


def next_steps(instance: Instance, extra_lines: Sequence[str] = ()) -> str:
    """The block ``esafety up`` ends its start-up output with. ``extra_lines`` (such as a
    one-time set-up link) are printed, indented like the rest, before the last line."""
    config = instance.config
    admin = public_admin_url(config)
    rows = [
        ("Admin UI", f"{admin}/"),
        ("Proxy", proxy_public_address(config)),
        ("PAC file", f"{admin}{PAC_PATH}"),
        ("CA certificate", str(ca_certificate_file(instance))),
    ]
    width = max(len(name) for name, _value in rows) + 2
    lines = ["", "esafety is running.", ""]
    lines += [f"  {name + ':':{width}}{value}" for name, value in rows]
    export = esafety_command(instance, "ca", "export", "--out", "esafety-ca.pem")
    lines.append(f"  {'':{width}}(or: {export})")
    lines += [f"  {line}" for line in extra_lines]
    lines += ["", "Next: have devices trust the CA certificate, and point browsers at the proxy "
              "(or give them the PAC file).", ""]
    return "\n".join(lines) + "\n"
