"""What a public web server needs beyond Gradio: who a visitor is, and a bound on what they may send.

- `client_address(request)`: the visitor's address, for "one training per visitor". Behind a proxy (a
  Hugging Face Space) it is the last entry of X-Forwarded-For, the one the proxy in front of the app
  appended: a client can put anything at the front of that header, but not at its end.
- `BodyLimit`: an ASGI middleware that answers 413 to a request body over a byte limit, before the body
  is read (by its Content-Length) or as soon as it grows past the limit (chunked uploads), so a 100 MB
  request is never parsed into memory. Gradio has no such setting: `max_file_size` bounds uploads only.
"""

from __future__ import annotations

import json


def client_address(request) -> str:
    """The visitor's address from a gr.Request (or a Starlette request); "unknown" without one."""
    headers = getattr(request, "headers", None) or {}
    forwarded = headers.get("x-forwarded-for", "") if hasattr(headers, "get") else ""
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    if hops:
        return hops[-1]
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


class BodyLimit:
    """Refuse request bodies over `max_bytes` with HTTP 413 and a one-line JSON error."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        received = 0

        async def bounded_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                return {"type": "http.disconnect"}  # the app stops reading; nothing more is held
            return message

        return await self.app(scope, bounded_receive, send)

    async def _refuse(self, send):
        body = json.dumps({"error": f"the request is over the server's limit of {self.max_bytes:,} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
