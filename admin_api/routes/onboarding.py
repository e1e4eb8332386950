"""``/onboarding``: the centre's certificate and how to make devices trust it and use the proxy.

Public (a device being set up has no account), one server-rendered page with the admin UI's
stylesheet and no script or image. The certificate is read from the data directory the proxy
shares (only ``mitmproxy-ca-cert.pem``, never the key file), with its subject and fingerprints
so a technician can compare them with what a device shows. ``http://mitm.it/`` through the
proxy is redirected here.
"""

from __future__ import annotations

import asyncio
from html import escape

from aiohttp import web

from admin_api.context import state_of
from admin_api.errors import error_response
from admin_api.routes.proxy_config import proxy_address
from admin_api.web.content_security import UI_PAGE
from deployment.ca_certificate import CACertificate, CAError, mark_offered, read_ca_certificate
from deployment.config import Config
from deployment.public_address import admin_public_url

routes = web.RouteTableDef()

PEM_NAME = "esafety-ca.pem"
DER_NAME = "esafety-ca.der"
PEM_TYPE = "application/x-pem-file"
DER_TYPE = "application/x-x509-ca-cert"
NO_CA = ("The proxy has not made the centre's certificate yet. Start the proxy once "
         "(esafety up, or esafety proxy) on this server, then reload this page.")

_PAGE = """<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Set up a device – {centre}</title>
<link rel="stylesheet" href="/static/css/admin.css">
</head>
<body>
<a class="skip-link" href="#main">Skip to main content</a>
<header class="site-header">
  <div class="site-header__inner">
    <span class="site-name">esafety</span>
    <span class="site-tagline">Web filter for {centre}</span>
  </div>
</header>
<main id="main" tabindex="-1">
<h1>Set up a device for the centre's web filter</h1>
<p class="lead">Devices need two things: to trust the centre's certificate, so that the filter
can show its block page on secure sites, and to send their web traffic through the filter.</p>
{certificate}
<h2 id="trust">Trust the certificate</h2>
<p>Install it as a <strong>trusted root certificate authority</strong>. Only install a
certificate whose fingerprint matches the one on this page.</p>
<h3 class="heading-small">Windows (Group Policy)</h3>
<ol class="list">
<li>Download the certificate (<code>{der_name}</code>).</li>
<li>In Group Policy Management, edit a policy linked to the devices' organisational unit.</li>
<li>Go to Computer Configuration › Policies › Windows Settings › Security Settings › Public
Key Policies › Trusted Root Certification Authorities, choose Import, and select the file.</li>
<li>Devices pick it up at their next policy refresh (<code>gpupdate /force</code> to check
one now).</li>
</ol>
<h3 class="heading-small">Windows and macOS (Microsoft Intune)</h3>
<ol class="list">
<li>In the Intune admin centre, go to Devices › Configuration › Create › New policy.</li>
<li>Choose the platform, then the <em>Trusted certificate</em> profile, and upload
<code>{der_name}</code>.</li>
<li>Assign the profile to the devices' group.</li>
</ol>
<h3 class="heading-small">Chromebooks (Google Admin)</h3>
<ol class="list">
<li>In the Google Admin console, go to Devices › Networks › Certificates.</li>
<li>Choose the organisational unit, add the certificate (<code>{pem_name}</code>) and tick
<em>Chromebook</em> under <em>Certificate authority</em>.</li>
</ol>
<h3 class="heading-small">macOS (one Mac)</h3>
<ol class="list">
<li>Open <code>{pem_name}</code>: it is added to Keychain Access.</li>
<li>In the System keychain, open the certificate, expand Trust and set <em>When using this
certificate</em> to <em>Always Trust</em>.</li>
</ol>
<h3 class="heading-small">iPhone and iPad</h3>
<ol class="list">
<li>Open this page in Safari and download the certificate; allow the profile download.</li>
<li>In Settings › General › VPN &amp; Device Management, install the downloaded profile.</li>
<li>In Settings › General › About › Certificate Trust Settings, turn on full trust for the
certificate. (Managed iPads: deploy it as a certificate payload from your device management
service instead.)</li>
</ol>
<h3 class="heading-small">Android</h3>
<ol class="list">
<li>Download the certificate.</li>
<li>In Settings › Security › Encryption &amp; credentials › Install a certificate, choose
<em>CA certificate</em> and select the file. (Managed devices: push it from your device
management service.) Some apps do not use certificates added by a user.</li>
</ol>
<h2 id="proxy">Send web traffic through the filter</h2>
<p>Give devices the proxy auto-configuration address (by Group Policy, Intune, Google Admin,
DHCP option 252, or in the device's network settings under <em>Automatic proxy
configuration</em>):</p>
<p class="url"><code data-field="pac-url">{pac_url}</code></p>
<p>Or set the proxy by hand: <code data-field="proxy-address">{proxy}</code> for both web and
secure web traffic.</p>
<p class="hint">The certificate is only used by this centre's web filter. Remove it from a
device that leaves the centre.</p>
</main>
</body>
</html>
"""

_CERTIFICATE = """<h2 id="certificate">The centre's certificate</h2>
<dl class="summary-list">
<div class="summary-list__row"><dt>Subject</dt><dd data-field="subject">{subject}</dd></div>
<div class="summary-list__row"><dt>SHA-256 fingerprint</dt>
<dd class="url" data-field="sha256"><code>{sha256}</code></dd></div>
<div class="summary-list__row"><dt>SHA-1 fingerprint</dt>
<dd class="url" data-field="sha1"><code>{sha1}</code></dd></div>
<div class="summary-list__row"><dt>Valid until</dt>
<dd data-field="valid-until">{valid_until}</dd></div>
</dl>
{legacy}<p class="button-group">
<a class="button" href="/onboarding/{pem_name}" download>Download the certificate (PEM)</a>
<a class="button button--secondary" href="/onboarding/{der_name}" download>Download the
certificate (DER, for Windows and Intune)</a>
</p>
"""

_LEGACY = """<p class="notice">This certificate was made by an earlier version of the filter
and carries the name of the software it uses (mitmproxy). It still works; devices that trust it
need nothing new.</p>
"""

_MISSING = """<h2 id="certificate">The centre's certificate</h2>
<p class="notice" data-field="no-certificate">{message}</p>
"""


async def _certificate(request: web.Request) -> CACertificate | None:
    """The CA certificate, None when the proxy has not made one; an unreadable one is an
    error for the administrator, never a traceback."""
    return await asyncio.to_thread(read_ca_certificate, state_of(request).settings.data_dir)


def render_onboarding(config: Config, ca: CACertificate | None, problem: str = "") -> str:
    if ca is None:
        certificate = _MISSING.format(message=escape(problem or NO_CA))
    else:
        certificate = _CERTIFICATE.format(
            subject=escape(ca.subject), sha256=escape(ca.sha256), sha1=escape(ca.sha1),
            valid_until=escape(f"{ca.not_after:%d %B %Y}"),
            legacy="" if ca.branded else _LEGACY, pem_name=PEM_NAME, der_name=DER_NAME)
    return _PAGE.format(centre=escape(config.centre_name), certificate=certificate,
                        pem_name=PEM_NAME, der_name=DER_NAME,
                        pac_url=escape(f"{admin_public_url(config)}/proxy.pac"),
                        proxy=escape(proxy_address(config)))


@routes.get("/onboarding")
async def onboarding_page(request: web.Request) -> web.Response:
    problem = ""
    try:
        ca = await _certificate(request)
    except CAError as exc:
        ca, problem = None, f"The centre's certificate cannot be read: {exc}."
    request[UI_PAGE] = True  # the UI's policy: its stylesheet from 'self', nothing else
    return web.Response(text=render_onboarding(state_of(request).settings.config, ca, problem),
                        content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def _download(request: web.Request, der: bool) -> web.Response:
    try:
        ca = await _certificate(request)
    except CAError as exc:
        return error_response(500, "certificate_unreadable", str(exc))
    if ca is None:
        return error_response(404, "no_certificate", NO_CA)
    name = DER_NAME if der else PEM_NAME
    # Handed to a device: from now on the CA is never replaced (not even by a first set-up).
    await asyncio.to_thread(mark_offered, state_of(request).settings.data_dir)
    return web.Response(body=ca.der if der else ca.pem,
                        content_type=DER_TYPE if der else PEM_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-cache"})


@routes.get(f"/onboarding/{PEM_NAME}")
async def onboarding_certificate_pem(request: web.Request) -> web.Response:
    return await _download(request, der=False)


@routes.get(f"/onboarding/{DER_NAME}")
async def onboarding_certificate_der(request: web.Request) -> web.Response:
    return await _download(request, der=True)
