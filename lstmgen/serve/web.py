"""What a public web server needs beyond Gradio: who a client is, same-site calls only, and bounds on what one sends.

- Who a client is (`client_key`): a signed-in Hugging Face user by their user name, else an address. Behind
  proxies (a Space) the address is the X-Forwarded-For hop that the first trusted proxy appended, counted
  from the right over every header line in order: a client can put anything at the front of that header
  (or in a header line of its own), but not at its end. Without a proxy it is the connection's own address.
- `SameSite`: the outermost ASGI middleware. It refuses calls from other websites' pages (a browser sends
  the visitor's cookie with them, so such a call would act as the visitor) and gives other sites no CORS
  answer, so their pages can neither send the visitor's credentials nor read a reply.
- `Gate`: names the client once per request (in a header only this process can sign, so Gradio's MCP
  server, which calls the app again over loopback with the caller's headers, keeps the caller's name), and
  bounds each client's uploads and deletes uploads no training used.
- `BodyLimit`: answers 413 to a request body over a byte limit, before the body is read (by its
  Content-Length) or as soon as it grows past the limit (chunked uploads), so a 100 MB request is never
  parsed into memory. Gradio has no such setting: `max_file_size` bounds uploads only.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

CLIENT_HEADER = b"x-lstmgen-client"  # "<client key>|<signature>", set by the Gate on every request
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
ACCOUNT_ROUTES = ("/login", "/logout")  # sign-in and sign-out: never started from another site's page
MAX_CLIENTS_TRACKED = 10_000  # upload windows kept at once (the oldest client's is dropped first)


def forwarded_hops(headers) -> list[str]:
    """Every X-Forwarded-For hop, over all its header lines in order (as RFC 9110 joins repeated lines).
    `headers`: ASGI's [(name, value)] bytes pairs, or anything with getlist / get_all."""
    if isinstance(headers, (list, tuple)):
        lines = [v.decode("latin-1") for k, v in headers if k.lower() == b"x-forwarded-for"]
    else:
        get_all = getattr(headers, "getlist", None) or getattr(headers, "get_all", None)
        lines = list(get_all("x-forwarded-for")) if get_all else []
    return [hop.strip() for line in lines for hop in line.split(",") if hop.strip()]


def client_address(hops: list[str], peer: str | None, trusted_proxies: int) -> str:
    """The client's address: with N trusted proxies, the N-th hop from the right of X-Forwarded-For (the one
    the outermost trusted proxy appended); with none, or a header shorter than that, the connection's peer."""
    if trusted_proxies > 0 and len(hops) >= trusted_proxies:
        return hops[-trusted_proxies]
    return peer or "unknown"


def trusted_proxy_count(setting: int) -> int:
    """The trusted_proxies setting (lstmgen.core.operator_settings.ServerLimits), where -1 means: one on a Hugging
    Face Space (its proxy), none elsewhere."""
    if setting >= 0:
        return setting
    return 1 if os.environ.get("SYSTEM") == "spaces" else 0


def signed_in_user(scope) -> str | None:
    """The Hugging Face user name of a visitor signed in with the Space's OAuth (Starlette's signed session)."""
    session = scope.get("session") if "session" in scope else None
    info = (session or {}).get("oauth_info") if isinstance(session, dict) else None
    user = (info or {}).get("userinfo", {}).get("preferred_username") if isinstance(info, dict) else None
    return user if isinstance(user, str) and user else None


def client_key(request) -> str:
    """Who made a request (a gr.Request or a Starlette request), as the Gate named them: "@user" for a
    signed-in visitor, else their address; "unknown" for a request that did not pass a Gate."""
    headers = getattr(request, "headers", None) or {}
    value = headers.get(CLIENT_HEADER.decode()) if hasattr(headers, "get") else None
    return (value or "unknown").split("|", 1)[0]


def _origin(headers: dict[bytes, bytes]) -> str | None:
    """The page a browser request came from: its Origin, else its Referer's origin; None from a script."""
    origin = headers.get(b"origin") or headers.get(b"referer")
    if not origin:
        return None
    parts = urlsplit(origin.decode("latin-1"))
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else "null"


class SameSite:
    """Calls from the app's own pages (the request's own host, `own_hosts`, `allowed_origins`, loopback) and
    from scripts only; another website's page gets 403 for anything but reading a page without cookies, and
    no access-control-allow-* headers on any answer."""

    def __init__(self, app, allowed_origins: str = "", own_hosts: tuple[str, ...] = ()):
        self.app = app
        self.allowed = {o.strip().rstrip("/").lower() for o in allowed_origins.split(",") if o.strip()}
        self.allowed |= {f"https://{host.lower()}" for host in own_hosts if host}

    def same_site(self, origin: str, host: str) -> bool:
        parts = urlsplit(origin)
        return (origin in self.allowed or parts.netloc == host.lower()
                or (parts.hostname or "") in LOOPBACK_HOSTS)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict((k.lower(), v) for k, v in scope["headers"])
        origin = _origin(headers)
        if origin is None or self.same_site(origin, headers.get(b"host", b"").decode("latin-1")):
            return await self.app(scope, receive, send)  # a script (no Origin), or the app's own page
        reads = scope["method"] in ("GET", "HEAD") and b"cookie" not in headers
        if not reads or scope["path"].startswith(ACCOUNT_ROUTES):
            return await _refuse(send, 403, "this app answers calls from its own pages only")
        return await self.app(scope, receive, _without_cors(send))


class Gate:
    """Names the client of every request and bounds their uploads (see the module's docstring). `limits`: the
    server's ServerLimits."""

    def __init__(self, app, limits):
        self.app, self.limits = app, limits
        self.proxies = trusted_proxy_count(limits.trusted_proxies)
        self._key = secrets.token_bytes(32)
        self._uploads: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()
        self._stored: collections.deque = collections.deque()  # (time, path) of each upload, oldest first
        self._lock = threading.Lock()
        self._sweeper = threading.Thread(target=self._sweep_uploads, name="upload-sweeper", daemon=True)
        self._sweeper.start()

    # ------------------------------------------------------------------ who the client is

    def _sign(self, key: str) -> str:
        return hmac.new(self._key, key.encode(), hashlib.sha256).hexdigest()[:32]

    def name_client(self, scope) -> str:
        """The client's key for this request; a key this Gate signed before (Gradio's MCP server calling the
        app again for its caller) is kept, anything else a client sends in its place is replaced."""
        headers = scope.get("headers") or []
        given = next((v.decode("latin-1") for k, v in headers if k.lower() == CLIENT_HEADER), "")
        key, _, signature = given.partition("|")
        if not (key and hmac.compare_digest(signature, self._sign(key))):
            user = signed_in_user(scope)
            peer = (scope.get("client") or (None,))[0]
            key = f"@{user}" if user else client_address(forwarded_hops(headers), peer, self.proxies)
        scope["headers"] = [(k, v) for k, v in headers if k.lower() != CLIENT_HEADER] + \
                           [(CLIENT_HEADER, f"{key}|{self._sign(key)}".encode("latin-1"))]
        return key

    # ------------------------------------------------------------------ uploads

    def upload_refusal(self, client: str, size: int) -> str | None:
        """Why this client may not upload `size` more bytes now, or None (and the upload is counted)."""
        now = time.monotonic()
        with self._lock:
            window = self._uploads.pop(client, None) or collections.deque()
            while window and window[0][0] < now - 60:
                window.popleft()
            self._uploads[client] = window
            while len(self._uploads) > MAX_CLIENTS_TRACKED:
                self._uploads.popitem(last=False)
            if len(window) >= self.limits.uploads_per_minute:
                return f"you uploaded {len(window)} files in the last minute; the limit is " \
                       f"{self.limits.uploads_per_minute}: wait a minute"
            if sum(n for _, n in window) + size > self.limits.upload_bytes_per_minute:
                return f"you uploaded more than {self.limits.upload_bytes_per_minute:,} bytes in the last minute: " \
                       "wait a minute"
            window.append((now, size))
        return None

    def _remember_uploads(self, body: bytes) -> None:
        try:
            paths = json.loads(body)
        except ValueError:
            return
        now = time.monotonic()
        with self._lock:
            self._stored.extend((now, p) for p in paths if isinstance(p, str))

    def _sweep_uploads(self) -> None:
        """Delete each upload `upload_keep_s` after it arrived (a training deletes the one it reads at once)."""
        while True:
            time.sleep(min(30.0, self.limits.upload_keep_s / 4))
            due = []
            with self._lock:
                while self._stored and self._stored[0][0] < time.monotonic() - self.limits.upload_keep_s:
                    due.append(self._stored.popleft()[1])
            for path in due:
                Path(path).unlink(missing_ok=True)
                try:
                    Path(path).parent.rmdir()  # Gradio keeps each upload in a folder of its own
                except OSError:
                    pass

    # ------------------------------------------------------------------ the middleware

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = self.name_client(scope)
        headers = dict((k.lower(), v) for k, v in scope["headers"])
        if scope["method"] == "POST" and scope["path"].endswith("/gradio_api/upload"):
            length = headers.get(b"content-length", b"0")
            refusal = self.upload_refusal(client, int(length) if length.isdigit() else 0)
            if refusal:
                return await _refuse(send, 429, refusal)
            return await self.app(scope, receive, self._recording(send))
        return await self.app(scope, receive, send)

    def _recording(self, send):
        body = bytearray()

        async def recording_send(message):
            if message["type"] == "http.response.body" and len(body) < 1_000_000:
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    self._remember_uploads(bytes(body))
            await send(message)

        return recording_send


def _without_cors(send):
    async def stripped(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [(k, v) for k, v in message.get("headers", [])
                                              if not k.lower().startswith(b"access-control-allow-")]}
        await send(message)

    return stripped


async def _refuse(send, status: int, message: str):
    body = json.dumps({"error": message, "detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse request bodies over `max_bytes` with HTTP 413 and a one-line JSON error."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _refuse(send, 413, f"the request is over the server's limit of {self.max_bytes:,} bytes")
        received = 0

        async def bounded_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                return {"type": "http.disconnect"}  # the app stops reading; nothing more is held
            return message

        return await self.app(scope, bounded_receive, send)
