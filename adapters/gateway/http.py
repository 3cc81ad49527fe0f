"""The SOAP gateway on the platform's HTTP server (entry point `soap` of the `govbus.http` group).

`govbus serve` hosts it beside the REST API: SOAP 1.1 at `/soap/exchange` and SOAP 1.2 at
`/soap/exchange12`, each with its WSDL at `?wsdl`. spyne is a WSGI application; a2wsgi runs it
in a pool of threads under uvicorn.

The WSDL is built once per endpoint. Its `soap:address` is then filled in per request with
the URL the client used (scheme, Host header, path), so that a client that knows nothing but
the WSDL URL, behind whatever name or port, posts back to where it fetched it from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from fastapi import FastAPI

    from bus.app import Context

log = logging.getLogger("govbus.gateway")

SOAP11_PATH = "/soap/exchange"
SOAP12_PATH = "/soap/exchange12"
WSGI_THREADS = 32  # concurrent SOAP calls; a Query holds its thread until the answer or the timeout

_PLACEHOLDER = "http://govbus-soap-address.invalid/"
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def install(app: FastAPI, context: Context) -> None:
    """Mount the SOAP endpoints on `app`. The gateway (`app.state.soap_gateway`) keeps one
    submitter, one credential cache and one nonce guard for the process."""
    try:
        from a2wsgi import WSGIMiddleware

        from adapters.gateway.service import ExchangeApplication, Gateway, WsgiApplication
    except ImportError as exc:  # spyne 2.14 does not import on Python 3.12+: keep the REST API up
        log.error("the SOAP gateway is not served: %s (spyne needs Python 3.11)", exc)
        return
    import spyne.const

    # spyne forces a full gc.collect() at most once a second after a call: 35-100 ms over the
    # platform's heap, a pause for every caller; reference counting frees a call's objects anyway
    spyne.const.MIN_GC_INTERVAL = float("inf")
    gateway = Gateway(context)
    limit = 2 * context.settings.xml.max_bytes + 64 * 1024  # the envelope travels escaped: it grows
    endpoints = SoapEndpoints({
        SOAP11_PATH: WsgiApplication(ExchangeApplication(gateway), max_content_length=limit),
        SOAP12_PATH: WsgiApplication(ExchangeApplication(gateway, soap12=True), max_content_length=limit),
    })
    asgi = WSGIMiddleware(endpoints, workers=WSGI_THREADS)  # type: ignore[arg-type]
    for path in endpoints.paths:
        app.add_route(path, asgi, methods=["GET", "POST"], include_in_schema=False)
    app.state.soap_gateway = gateway
    log.info("SOAP gateway at %s?wsdl (SOAP 1.1) and %s?wsdl (SOAP 1.2)", SOAP11_PATH, SOAP12_PATH)


class SoapEndpoints:
    """One WSGI application for the SOAP paths: the WSDL on GET ...?wsdl, spyne for the rest."""

    def __init__(self, servers: dict[str, Any]) -> None:
        """`servers`: spyne WsgiApplications by path."""
        self._servers = dict(servers)
        self._wsdl: dict[str, tuple[bytes, bytes]] = {}  # path -> the document around the address
        for path, server in servers.items():
            server.doc.wsdl11.build_interface_document(_PLACEHOLDER)
            document: bytes = server.doc.wsdl11.get_interface_document()
            before, found, after = document.partition(f'location="{_PLACEHOLDER}"'.encode())
            if not found or _PLACEHOLDER.encode() in after:
                raise RuntimeError("spyne's WSDL does not hold exactly one soap:address")
            self._wsdl[path] = (before, after)
        self._documents: dict[tuple[str, str], bytes] = {}

    @property
    def paths(self) -> list[str]:
        return list(self._servers)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")  # a2wsgi strips the app's root path, if any
        server = self._servers.get(path)
        if server is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no SOAP endpoint here\n"]
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("QUERY_STRING", "").split("=")[0].lower() == "wsdl":
            document = self.wsdl(path, _address(environ))
            start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(document)))])
            return [document]
        return server(environ, start_response)  # type: ignore[no-any-return]

    def wsdl(self, path: str, address: str) -> bytes:
        """The endpoint's WSDL with `soap:address` at `address`."""
        key = (path, address)
        document = self._documents.get(key)
        if document is None:
            before, after = self._wsdl[path]
            document = before + f"location={_quoted(address)}".encode() + after
            if len(self._documents) >= 256:  # every name a client used for us: bounded all the same
                self._documents.clear()
            self._documents[key] = document
        return document


def _address(environ: Environ) -> str:
    """The URL the client called, without the query: scheme, Host header (or the server's
    own name and port when the header is missing or not a host name), path."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST", "")
    if not _HOST.match(host) or len(host) > 255:
        host = f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
    return f"{scheme}://{host}{path}"


def _quoted(value: str) -> str:
    return '"' + escape(value, {'"': "&quot;"}) + '"'
