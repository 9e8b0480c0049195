"""Request bodies: refused above the byte limit before they are read, and turned into (bytes, name)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ImageError, ImageTooLargeError

IMAGE_FIELD = "image"  # the multipart field that carries the image
MULTIPART = "multipart/form-data"


def too_large_message(max_bytes: int, got: int | None = None) -> str:
    size = f"{got:,} bytes" if got is not None else "the request body"
    return f"{size} is more than the server's limit of {max_bytes:,} bytes"


class BodyLimit:
    """ASGI middleware: a declared Content-Length above `max_bytes` is answered 413 at once; a body that
    grows past it while streaming raises ImageTooLargeError inside the route (413 by the error handler)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _send_json(send, 413, {"error": too_large_message(self.max_bytes, int(declared))})
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ImageTooLargeError(too_large_message(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)


async def _send_json(send: Send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def image_from_request(request: Request, name: str | None = None) -> tuple[bytes, str | None]:
    """(encoded image, its name) from a multipart field `image` or from the raw body."""
    if request.headers.get("content-type", "").startswith(MULTIPART):
        form = await request.form(max_files=1, max_fields=8)
        try:
            upload = form.get(IMAGE_FIELD)
            if upload is None:
                raise ImageError(f"the multipart body has no {IMAGE_FIELD!r} field; send the image in it")
            if isinstance(upload, str):
                raise ImageError(f"the {IMAGE_FIELD!r} field holds text; send the image as a file")
            return await upload.read(), name or upload.filename
        finally:
            await form.close()
    data = await request.body()
    if not data:
        raise ImageError("the request has no image: send it as the body or in a multipart field 'image'")
    return data, name
