"""The bridge's outgoing HTTP clients (network server, EarthRanger, SMS gateway, signed webhook, e-mail
aside) share one TLS context: httpx builds one per client by reading the whole certificate store, about
30 ms of CPU each, and a bridge opens two clients at start-up, a test run thousands."""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The certificate store's context, made once per process as httpx makes its own (certifi's
    bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set before the first client). A context is
    shared by threads safely; none of its settings is changed after it is made."""
    return httpx.create_ssl_context()


def client(**options: Any) -> httpx.Client:
    """An httpx client verifying servers with the shared context (`options` as `httpx.Client` takes)."""
    return httpx.Client(verify=tls_context(), **options)
