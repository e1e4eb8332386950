"""The proxy auto-configuration file, evaluated by a real JavaScript engine (Node) with the
standard PAC helper functions, as a browser would."""

from __future__ import annotations

import json
import subprocess

from deployment.config import ListenSettings
from deployment.listen_address import parse_listen
from tests.harness.api import ApiFactory

PAC_HELPERS = """
function isPlainHostName(h) { return h.indexOf('.') === -1; }
function dnsDomainIs(h, d) { return h.length >= d.length && h.substring(h.length - d.length) === d; }
function shExpMatch(s, p) {
  var re = new RegExp('^' + p.replace(/[.+^${}()|[\\]\\\\]/g, '\\\\$&').replace(/\\*/g, '.*')
                                 .replace(/\\?/g, '.') + '$');
  return re.test(s);
}
"""


def evaluate(pac: str, hosts: list[str]) -> dict[str, str]:
    script = PAC_HELPERS + pac + f"""
var hosts = {json.dumps(hosts)};
var out = {{}};
hosts.forEach(function (h) {{ out[h] = FindProxyForURL('https://' + h + '/', h); }});
console.log(JSON.stringify(out));
"""
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


async def test_pac_sends_the_web_through_the_proxy_and_the_admin_direct(
        make_api: ApiFactory) -> None:
    api = await make_api(admin_public_url="http://esafety.centre.example:8090",
                         proxy_public_address="proxy.centre.example:3128",
                         pac_direct_hosts=("intranet.centre.example",))
    for path in ("/proxy.pac", "/wpad.dat"):
        async with api.client.get(path) as response:
            assert response.status == 200
            assert response.content_type == "application/x-ns-proxy-autoconfig"
            pac = await response.text()
        answers = evaluate(pac, ["www.bbc.co.uk", "casino.example", "esafety.centre.example",
                                 "hr.intranet.centre.example", "printer", "localhost",
                                 "127.0.0.1", "evil-esafety.centre.example.attacker.test"])
        assert answers["www.bbc.co.uk"] == "PROXY proxy.centre.example:3128"
        assert answers["casino.example"] == "PROXY proxy.centre.example:3128"
        assert answers["evil-esafety.centre.example.attacker.test"].startswith("PROXY")
        assert answers["esafety.centre.example"] == "DIRECT"
        assert answers["hr.intranet.centre.example"] == "DIRECT"
        assert answers["printer"] == answers["localhost"] == answers["127.0.0.1"] == "DIRECT"


async def test_pac_defaults_to_the_admin_host_and_the_proxy_port(make_api: ApiFactory) -> None:
    api = await make_api(admin_public_url="http://filter.centre.example:8090",
                         listen=ListenSettings(proxy=parse_listen(":8080")))
    async with api.client.get("/proxy.pac") as response:
        pac = await response.text()
    assert evaluate(pac, ["example.org"])["example.org"] == "PROXY filter.centre.example:8080"
