"""A real MIT Kerberos KDC for tests: a realm, its database, principals and keytabs, all in a
temporary directory, and ``krb5kdc`` in the foreground on a free loopback port.

The ``krb5.conf`` turns off DNS canonicalisation and reverse lookups (so ``HTTP@localhost`` is
``HTTP/localhost@REALM``, the name curl asks for when the proxy is ``http://localhost:PORT``)
and allows one second of clock skew, so a ticket that has expired is refused at once."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.proxy import free_port, stop_process

REALM = "ESAFETY.TEST"
MASTER_PASSWORD = "kdc master password"


@dataclass(frozen=True)
class Kdc:
    """A running KDC, and the files clients and services of its realm need."""

    directory: Path
    realm: str
    port: int
    krb5_conf: Path
    kdc_conf: Path

    def env(self, ccache: Path | None = None) -> dict[str, str]:
        """Environment for a Kerberos client or service of this realm (and only this one)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("KRB5") and "proxy" not in k.lower()}
        env["KRB5_CONFIG"] = str(self.krb5_conf)
        env["KRB5_KDC_PROFILE"] = str(self.kdc_conf)
        env["KRB5RCACHEDIR"] = str(self.directory)
        if ccache is not None:
            env["KRB5CCNAME"] = f"FILE:{ccache}"
        return env

    def kadmin(self, query: str) -> str:
        done = subprocess.run(["kadmin.local", "-r", self.realm, "-q", query],
                              capture_output=True, text=True, env=self.env(), timeout=30)
        if done.returncode != 0 or "error" in done.stderr.lower():
            raise RuntimeError(f"kadmin.local {query!r} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def add_user(self, name: str, password: str, max_life: str = "") -> str:
        """Add ``name@REALM`` with ``password``; returns the principal."""
        life = f"-maxlife {max_life} " if max_life else ""
        self.kadmin(f'addprinc {life}-pw "{password}" {name}')
        return f"{name}@{self.realm}"

    def add_service(self, principal: str, keytab: Path) -> str:
        """Add the service ``principal`` (``HTTP/host``) with a random key, written to
        ``keytab``; returns the full principal."""
        self.kadmin(f"addprinc -randkey {principal}")
        self.kadmin(f"ktadd -k {keytab} {principal}")
        return f"{principal}@{self.realm}"

    def kinit(self, principal: str, password: str, ccache: Path, lifetime: str = "") -> None:
        """Get ``principal``'s ticket-granting ticket into ``ccache`` (``kinit``)."""
        args = ["kinit", "-c", f"FILE:{ccache}"]
        if lifetime:
            args += ["-l", lifetime]
        done = subprocess.run([*args, principal], input=password + "\n", capture_output=True,
                              text=True, env=self.env(ccache), timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"kinit {principal} failed: {done.stdout}{done.stderr}")


    def kinit_keytab(self, principal: str, keytab: Path, ccache: Path) -> None:
        """Get a ticket as ``principal`` from its key in ``keytab`` (as a computer does)."""
        done = subprocess.run(["kinit", "-k", "-t", str(keytab), "-c", f"FILE:{ccache}",
                               principal], capture_output=True, text=True,
                              env=self.env(ccache), timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"kinit -k {principal} failed: {done.stdout}{done.stderr}")


def _write_config(directory: Path, realm: str, port: int) -> tuple[Path, Path]:
    krb5_conf = directory / "krb5.conf"
    krb5_conf.write_text(f"""[libdefaults]
    default_realm = {realm}
    dns_lookup_realm = false
    dns_lookup_kdc = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 1
    clockskew = 1
    default_ccache_name = FILE:{directory}/default-ccache

[realms]
    {realm} = {{
        kdc = 127.0.0.1:{port}
    }}

[domain_realm]
    localhost = {realm}
    .test = {realm}
""")
    kdc_conf = directory / "kdc.conf"
    kdc_conf.write_text(f"""[kdcdefaults]
    kdc_listen = 127.0.0.1:{port}
    kdc_tcp_listen = 127.0.0.1:{port}

[realms]
    {realm} = {{
        database_name = {directory}/principal
        key_stash_file = {directory}/stash
        acl_file = {directory}/kadm5.acl
        max_life = 10h
        max_renewable_life = 0
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{directory}/kdc.log
    admin_server = FILE:{directory}/kadmin.log
    default = FILE:{directory}/krb5.log
""")
    (directory / "kadm5.acl").write_text("")
    return krb5_conf, kdc_conf


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"krb5kdc exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"krb5kdc did not listen: {log.read_text(errors='replace')[-2000:]}")


@contextmanager
def running_kdc(directory: Path, realm: str = REALM) -> Iterator[Kdc]:
    """A new realm in ``directory`` with its KDC running; stopped on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    krb5_conf, kdc_conf = _write_config(directory, realm, port)
    kdc = Kdc(directory, realm, port, krb5_conf, kdc_conf)
    created = subprocess.run(["kdb5_util", "create", "-s", "-r", realm, "-P", MASTER_PASSWORD],
                             capture_output=True, text=True, env=kdc.env(), timeout=60)
    if created.returncode != 0:
        raise RuntimeError(f"kdb5_util create failed: {created.stdout}{created.stderr}")
    log = directory / "krb5kdc.out"
    with log.open("ab") as out:
        process = subprocess.Popen(["krb5kdc", "-n", "-r", realm], env=kdc.env(),
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(process, port, log)
        yield kdc
    finally:
        stop_process(process, grace=5)
