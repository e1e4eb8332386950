"""A real OpenLDAP ``slapd`` for the directory-sync tests, run as the current user.

It listens on a free loopback port with a throwaway ``slapd.conf`` (the Debian schemas core,
cosine, inetorgperson and nis; one ``mdb`` database in a temporary folder, its ``rootdn`` and
``rootpw``) and is loaded with ``ldapadd``. Changes go through ``ldapmodify``, as an
administrator would make them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.proxy import free_port, stop_process

SUFFIX = "dc=centre,dc=example"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root secret for tests"
SERVICE_DN = f"cn=esafety,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service secret for tests"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"

_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {run}/slapd.pid
argsfile {run}/slapd.args
database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{root_dn}"
rootpw "{root_password}"
directory {db}
access to attrs=userPassword by anonymous auth by * none
access to * by users read by anonymous auth by * none
"""


def person(uid: str) -> str:
    return (f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
            f"cn: {uid.title()}\nsn: {uid.title()}\n\n")


def base_tree(*, learners: list[str], staff: list[str], it_support: list[str],
              people: list[str]) -> str:
    """The test tree: people under ``ou=people``; ``cn=Learners`` (groupOfNames, ``member``),
    ``cn=Staff`` (groupOfUniqueNames, ``uniqueMember``) and ``cn=IT Support`` (posixGroup,
    ``memberUid``) under ``ou=groups``; the sync's service account under ``ou=services``."""
    parts = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: centre\n"
             "o: Test Centre\n\n"]
    for unit in ("people", "groups", "services"):
        parts.append(f"dn: ou={unit},{SUFFIX}\nobjectClass: organizationalUnit\nou: {unit}\n\n")
    parts.append(f"dn: {SERVICE_DN}\nobjectClass: simpleSecurityObject\n"
                 f"objectClass: organizationalRole\ncn: esafety\n"
                 f"userPassword: {SERVICE_PASSWORD}\n\n")
    parts.extend(person(uid) for uid in people)
    parts.append(f"dn: cn=Learners,{GROUPS}\nobjectClass: groupOfNames\ncn: Learners\n"
                 + "".join(f"member: uid={uid},{PEOPLE}\n" for uid in learners) + "\n")
    parts.append(f"dn: cn=Staff,{GROUPS}\nobjectClass: groupOfUniqueNames\ncn: Staff\n"
                 + "".join(f"uniqueMember: uid={uid},{PEOPLE}\n" for uid in staff) + "\n")
    parts.append(f"dn: cn=IT Support,{GROUPS}\nobjectClass: posixGroup\ncn: IT Support\n"
                 "gidNumber: 5001\n" + "".join(f"memberUid: {uid}\n" for uid in it_support)
                 + "\n")
    return "".join(parts)


@dataclass
class LdapServer:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def _client(self, tool: str, ldif: str) -> None:
        result = subprocess.run(
            [tool, "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
            input=ldif.encode(), capture_output=True, timeout=20, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace')}")

    def add(self, ldif: str) -> None:
        """``ldapadd`` as the directory's administrator."""
        self._client("ldapadd", ldif)

    def modify(self, ldif: str) -> None:
        """``ldapmodify`` as the directory's administrator."""
        self._client("ldapmodify", ldif)

    def start(self) -> None:
        log = (self.folder / "slapd.log").open("ab")
        self.process = subprocess.Popen(
            ["/usr/sbin/slapd", "-f", str(self.folder / "slapd.conf"),
             "-h", f"{self.url}/", "-d", "0"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("slapd exited: " + (self.folder / "slapd.log").read_text(
                    errors="replace")[-3000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not start listening")

    def stop(self) -> None:
        stop_process(self.process, grace=5)
        self.process = None


@contextmanager
def ldap_server(folder: Path, tree: str) -> Iterator[LdapServer]:
    """A running ``slapd`` on a free loopback port, loaded with ``tree`` (LDIF)."""
    if shutil.which("slapd") is None and not Path("/usr/sbin/slapd").exists():
        raise RuntimeError("slapd is not installed (Debian package slapd)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "db").mkdir(exist_ok=True)
    (folder / "slapd.conf").write_text(_CONF.format(
        run=folder, suffix=SUFFIX, root_dn=ROOT_DN, root_password=ROOT_PASSWORD,
        db=folder / "db"))
    server = LdapServer(free_port(), folder)
    server.start()
    try:
        server.add(tree)
        yield server
    finally:
        server.stop()
