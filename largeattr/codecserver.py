"""``largeattr codec-server``: the payload codec over HTTP, for the Web UI and the CLI.

Temporal's codec server protocol (docs.temporal.io/codec-server): ``POST /decode`` and
``POST /encode`` (also under a namespace segment, ``/{namespace}/decode``) take and return
``{"payloads": [...]}`` in proto3 JSON, where every bytes field is base64. The Web UI calls
it from the browser, so it answers CORS preflights for the UI's origins; it sends
``X-Namespace`` and, with "pass access token" on, ``Authorization``.

Who may see decoded data: with ``--token-file`` every request needs ``Authorization: Bearer
<token>`` (one token per line in the file), as ``temporal --codec-auth`` sends it. Without
tokens the server binds a loopback address only and refuses a ``Host`` that is not a
loopback name (a DNS-rebound page). A request from a page whose origin is not allowed is
refused outright (CORS alone would only hide the answer from it). The Web UI of a shared
cluster sends its users' OIDC tokens, which a token file cannot check: put this server
behind the UI's authenticating proxy there.

    largeattr codec-server --port 8081
    temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8081
    temporal workflow show -w ID --codec-endpoint http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from largeattr.codec import KEY_FILE_ENV, KEYS_ENV, EncryptionCodec, Keyring, new_key_entry
from largeattr.errors import InvalidInput, LargeAttrError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8081
#: The dev server's Web UI, under both names a browser may have typed.
DEFAULT_ORIGINS = ("http://127.0.0.1:8233", "http://localhost:8233")
#: A decode request is a page of history's payloads; inline blobs are at most 256 KiB each.
MAX_BODY = 64 * 1024 * 1024
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


@dataclass(frozen=True)
class CodecService:
    """What the server does, without HTTP: the codec, who may ask, for which namespaces."""

    codec: EncryptionCodec
    tokens: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset(DEFAULT_ORIGINS)

    def authorised(self, authorization: str | None) -> bool:
        if not self.tokens:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and any(
            hmac.compare_digest(token.encode(), known.encode()) for known in self.tokens
        )

    def transform(self, operation: str, body: bytes) -> bytes:
        """The JSON answer to one /encode or /decode request body."""
        payloads = Payloads()
        try:
            json_format.Parse(body, payloads)
        except (json_format.ParseError, UnicodeDecodeError) as err:
            raise InvalidInput(f'expected {{"payloads": [...]}} in proto3 JSON: {err}') from None
        step: Callable[[Payload], Payload] = (
            self.codec.encrypt if operation == "encode" else self.codec.decrypt
        )
        out = Payloads(payloads=[step(p) for p in payloads.payloads])
        return json_format.MessageToJson(out, indent=None).encode()


def _operation(path: str) -> tuple[str | None, str | None]:
    """(namespace segment or None, "encode"/"decode" or None) of a request path."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if not parts or parts[-1] not in ("encode", "decode") or len(parts) > 2:
        return None, None
    return (parts[0] if len(parts) == 2 else None), parts[-1]


class _Handler(BaseHTTPRequestHandler):
    service: CodecService  # set on the subclass make_server builds
    server_version = "largeattr-codec"

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        if origin and origin in self.service.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Vary", "Origin")

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._reply(status, json.dumps({"error": message}).encode())

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/health":
            self._reply(200, b"ok\n", "text/plain")
        else:
            self._error(405 if _operation(self.path)[1] else 404, "POST /encode or /decode")

    def do_POST(self) -> None:
        segment, operation = _operation(self.path)
        if operation is None:
            self._error(404, "POST /encode or /decode (or /{namespace}/decode)")
            return
        refused = self._refused_origin()
        if refused:
            self._error(403, refused)
            return
        if not self.service.authorised(self.headers.get("Authorization")):
            self._error(401, "a valid 'Authorization: Bearer <token>' header is required")
            return
        header = self.headers.get("X-Namespace")
        if header and segment and header != segment:
            self._error(400, f"X-Namespace {header!r} and the path's {segment!r} differ")
            return
        # A guard against decoding for the wrong namespace by mistake; who may decode at all
        # is the token's business.
        namespace = header or segment
        if self.service.namespaces and namespace not in self.service.namespaces:
            self._error(403, f"namespace {namespace!r} is not served by this codec server")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._error(400, "a Content-Length header with the body's size is required")
            return
        if length > MAX_BODY:
            self._error(413, f"request body over {MAX_BODY} bytes")
            return
        try:
            answer = self.service.transform(operation, self.rfile.read(length))
        except LargeAttrError as err:
            self._error(400, err.message)
            return
        self._reply(200, answer)

    def _refused_origin(self) -> str | None:
        """Why a request must be refused before anything else, if it must. CORS only stops a
        foreign page from *reading* the answer, so a page's POST is refused outright unless
        its origin is allowed; and without tokens, a Host that is not this machine's name is
        refused too (a DNS-rebound page is same-origin to its own name)."""
        origin = self.headers.get("Origin")
        if origin and origin not in self.service.origins:
            return f"origin {origin!r} may not use this codec server (see --cors-origin)"
        if not self.service.tokens:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            if host not in ("127.0.0.1", "localhost", "::1"):
                return f"host {host!r} is not a loopback name; use 127.0.0.1"
        return None

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def make_server(service: CodecService, host: str, port: int) -> ThreadingHTTPServer:
    """A bound (not yet serving) server; port 0 picks a free one."""
    handler = type("CodecHandler", (_Handler,), {"service": service})
    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
    server = server_class((host, port), handler)
    server.daemon_threads = True
    return server


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _lines(path: str, what: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidInput(f"cannot read the {what} {path}: {err.strerror or err}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def service_from_args(args: argparse.Namespace) -> CodecService:
    keyring = Keyring.from_file(args.key_file) if args.key_file else Keyring.from_env()
    if keyring is None:
        raise InvalidInput(
            f"no codec keys: pass --key-file, or set {KEY_FILE_ENV} or {KEYS_ENV} "
            "(the same keys the workers use)"
        )
    tokens = frozenset(_lines(args.token_file, "token file")) if args.token_file else frozenset()
    if args.token_file and not tokens:
        raise InvalidInput(f"the token file {args.token_file} holds no token")
    if not tokens and not _is_loopback(args.host):
        raise InvalidInput(
            f"refusing to serve decoded payloads on {args.host} to anyone who asks: pass "
            "--token-file, or bind a loopback address"
        )
    return CodecService(
        EncryptionCodec(keyring),
        tokens=tokens,
        namespaces=frozenset(args.namespace or ()),
        origins=frozenset(args.cors_origin or DEFAULT_ORIGINS),
    )


def serve_for_ui(ui_port: int) -> str | None:
    """A codec server in this process (a daemon thread) for the dev stack's Web UI on
    ``ui_port``, with the keyring the environment names; None when it names none."""
    keyring = Keyring.from_env()
    if keyring is None:
        return None
    origins = frozenset(f"http://{host}:{ui_port}" for host in ("127.0.0.1", "localhost"))
    return serve_in_background(CodecService(EncryptionCodec(keyring), origins=origins))[1]


def serve_in_background(
    service: CodecService, host: str = "127.0.0.1", port: int = 0
) -> tuple[ThreadingHTTPServer, str]:
    """A server serving from a daemon thread, and its URL; ``server.shutdown()`` stops it."""
    server = make_server(service, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


def cmd_codec_server(args: argparse.Namespace) -> int:
    server = make_server(service_from_args(args), args.host, args.port)
    url = f"http://{args.host}:{server.server_address[1]}"
    print(f"codec server on {url} (POST /encode, /decode)", flush=True)
    print(f"  Web UI: temporal server start-dev --ui-codec-endpoint {url}", flush=True)
    print(f"          or the UI's Settings > Codec Server: {url}", flush=True)
    print(f"  CLI:    temporal workflow show -w ID --codec-endpoint {url}", flush=True)
    with server:  # Ctrl-C ends serve_forever with KeyboardInterrupt (exit 130)
        server.serve_forever()
    return 0


def cmd_codec_key(args: argparse.Namespace) -> int:
    print(new_key_entry(args.id))
    return 0


def add_commands(commands: Any, common: Sequence[argparse.ArgumentParser]) -> None:
    server = commands.add_parser(
        "codec-server",
        help="serve the payload codec over HTTP so the Web UI and `temporal` can decode",
        parents=common,
    )
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=DEFAULT_PORT)
    server.add_argument(
        "--key-file", help=f"the codec keyring (default: ${KEY_FILE_ENV} or ${KEYS_ENV})"
    )
    server.add_argument(
        "--token-file",
        help="bearer tokens allowed to decode, one per line (required off loopback)",
    )
    server.add_argument(
        "--namespace", action="append", help="serve only this namespace (repeatable)"
    )
    server.add_argument(
        "--cors-origin",
        action="append",
        help="a Web UI origin allowed to call it (repeatable; default: "
        f"{', '.join(DEFAULT_ORIGINS)})",
    )
    server.set_defaults(run=cmd_codec_server)

    key = commands.add_parser(
        "codec-key",
        help="print a new keyring entry (ID=BASE64 of a random 256-bit key)",
        parents=common,
    )
    key.add_argument("--id", required=True, help="the key's name, e.g. 2026-12")
    key.set_defaults(run=cmd_codec_key)
