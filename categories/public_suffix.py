"""Whether a name is a public suffix (``co.uk``, ``com``, ``github.io``), from the Public
Suffix List snapshot that tldextract ships (never fetched: the filter works offline).

A rule that covers a host and its subdomains must not be given a public suffix: ``co.uk``
would cover every site in the UK."""

from __future__ import annotations

import functools

import tldextract


@functools.cache
def _extract() -> tldextract.TLDExtract:
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None,
                                 include_psl_private_domains=True)


def is_public_suffix(host: str) -> bool:
    """True when ``host`` (a canonical host name) is itself a public suffix."""
    return _extract()(host).domain == ""
