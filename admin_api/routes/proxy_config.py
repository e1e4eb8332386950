"""``/proxy.pac`` and ``/wpad.dat``: the proxy auto-configuration file browsers can be given
(by policy, DHCP option 252 or the ``wpad`` DNS name) instead of a fixed proxy setting."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from aiohttp import web

from admin_api.context import state_of
from deployment.config import Config
from deployment.public_address import admin_public_url, proxy_public_address

routes = web.RouteTableDef()
PAC_TYPE = "application/x-ns-proxy-autoconfig"


def proxy_address(config: Config) -> str:
    """``host:port`` browsers use for the proxy (see
    :func:`deployment.public_address.proxy_public_address`): the port is always kept."""
    return proxy_public_address(config)


def pac_file(config: Config) -> str:
    """The PAC script. Everything goes through the proxy except plain host names, loopback and
    the admin service itself (the browser extension signs in there before it can answer the
    proxy's sign-in), plus any ``pac_direct_hosts``."""
    admin_host = urlsplit(admin_public_url(config)).hostname or ""
    direct = sorted({h.lower() for h in (admin_host, *config.pac_direct_hosts) if h})
    return f"""// esafety proxy auto-configuration for centre {config.centre_id}
function FindProxyForURL(url, host) {{
  host = host.toLowerCase();
  var direct = {json.dumps(direct)};
  if (isPlainHostName(host) || host === "localhost" || shExpMatch(host, "127.*")) {{
    return "DIRECT";
  }}
  for (var i = 0; i < direct.length; i++) {{
    if (host === direct[i] || dnsDomainIs(host, "." + direct[i])) {{
      return "DIRECT";
    }}
  }}
  return "PROXY {proxy_address(config)}";
}}
"""


def _pac_response(request: web.Request) -> web.Response:
    config = state_of(request).settings.config
    return web.Response(text=pac_file(config), content_type=PAC_TYPE,
                        headers={"Cache-Control": "max-age=300"})


@routes.get("/proxy.pac")
async def proxy_pac(request: web.Request) -> web.Response:
    return _pac_response(request)


@routes.get("/wpad.dat")
async def wpad_dat(request: web.Request) -> web.Response:
    return _pac_response(request)
