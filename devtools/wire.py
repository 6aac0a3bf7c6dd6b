"""A counting HTTPS proxy in front of the local Cosmos DB: what the app sends, counted on the wire.

The SDK's own telemetry (or a transport policy inside the SDK) can miss what the SDK adds or hides;
this proxy sees every HTTP request the app's client puts on the network, whatever sent it. It ends
TLS with a throw-away self-signed certificate (the app only skips verification for an endpoint on
this machine, see ``CosmosSettings.is_local``), forwards each request unchanged to the emulator and
the answer unchanged back (but for the database account, whose endpoints it names as its own, as a
gateway in front of an account would), and records ``(method, path)``. Dev, tests and the benchmark only.

    async with CountingProxy("https://127.0.0.1:8081") as proxy:
        settings = ... COSMOS_ENDPOINT=proxy.endpoint ...
        before = len(proxy.requests); ...; sent = proxy.requests[before:]
"""

from __future__ import annotations

import datetime
import json
import ssl
import tempfile
from pathlib import Path
from types import TracebackType

import aiohttp
from aiohttp import web

#: Headers that belong to one connection, not to the request or answer (RFC 9110 §7.6.1), and those the
#: proxy sets again itself.
_NOT_FORWARDED = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})


class CountingProxy:
    """Forwards to ``upstream`` (the emulator's endpoint) and records every request it forwards."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[tuple[str, str]] = []
        self.endpoint = ""
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._certificates = tempfile.TemporaryDirectory(prefix="wire-proxy-")

    async def __aenter__(self) -> CountingProxy:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=False), auto_decompress=False, skip_auto_headers=("User-Agent",)
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=_server_context(Path(self._certificates.name)))
        await site.start()
        port = self._runner.addresses[0][1]
        self.endpoint = f"https://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()
        self._certificates.cleanup()

    def count_since(self, mark: int) -> int:
        return len(self.requests) - mark

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._client is not None
        body = await request.read()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED]
        self.requests.append((request.method, request.path))
        async with self._client.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body, allow_redirects=False
        ) as answer:
            data = await answer.read()
            if request.method == "GET" and request.path == "/" and answer.status == 200:
                data = self._through_proxy(data)
            forwarded = [(k, v) for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED]
            response = web.Response(status=answer.status, body=data)
            for name, value in forwarded:
                response.headers.add(name, value)
            return response

    def _through_proxy(self, account: bytes) -> bytes:
        """The database account names the endpoints the SDK then talks to: this proxy's, so it sees them all."""
        document = json.loads(account)
        for kind in ("writableLocations", "readableLocations"):
            for location in document.get(kind, []):
                location["databaseAccountEndpoint"] = self.endpoint + "/"
        return json.dumps(document).encode()


def _server_context(directory: Path) -> ssl.SSLContext:
    """TLS for 127.0.0.1 with a certificate made now, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "proxy.crt", directory / "proxy.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context
