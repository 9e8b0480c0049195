"""The API: /v1/read, /v1/classify, /v1/models, /healthz, and the drawing page at /."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from PIL import Image

from ..constants import PIXEL_MAX
from ..errors import DigitocrError
from .limits import IMAGE_FIELD, image_from_request

router = APIRouter()
STATIC_DIR = Path(__file__).parent / "static"  # the drawing page: plain HTML, JS and CSS, no build step

# OpenAPI: the image comes as a multipart file field or as the raw body.
IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": [IMAGE_FIELD],
                                       "properties": {IMAGE_FIELD: {"type": "string", "format": "binary"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}}}
ERRORS = {status: {"description": text, "content": {"application/json": {"example": {"error": "..."}}}}
          for status, text in [(400, "undecodable image or bad request"), (413, "too many bytes or pixels"),
                               (415, "not an image type digitocr reads"), (408, "the upload was too slow"),
                               (503, "too many requests waiting"), (504, "reading took too long")]}


class UploadTimeoutError(DigitocrError):
    """The body did not arrive within the request's time limit (HTTP 408)."""

    http_status = 408


def json_response(payload: Any) -> Response:
    return Response(json.dumps(payload), media_type="application/json")


async def receive_image(request: Request, name: str | None) -> tuple[bytes, str | None, float]:
    """(image bytes, name, seconds left of the request's time limit)."""
    timeout_s = request.app.state.settings.timeout_s
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            data, label = await image_from_request(request, name)
    except TimeoutError:
        raise UploadTimeoutError(f"the upload took longer than the server's limit of {timeout_s:g} s") \
            from None
    return data, label, timeout_s - (time.perf_counter() - start)


def png_data_url(crop: np.ndarray) -> str:
    """A (28, 28) float crop in [0, 1] (white ink on black, as the network sees it) -> data:image/png URL."""
    pixels = np.clip(np.asarray(crop, np.float32) * PIXEL_MAX + 0.5, 0, PIXEL_MAX).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def probabilities(probs: np.ndarray) -> list[float]:
    return [round(float(p), 6) for p in probs]


def read_payload(reader: Any, data: bytes, name: str | None, crops: bool) -> dict[str, Any]:
    """`read --json`'s object; with crops, each digit also gets its 28x28 input and 10 probabilities.

    Runs on a pool thread: decoding, reading and PNG encoding all stay off the event loop.
    """
    result = reader.read(data, name=name)
    payload = result.to_dict()
    if crops and result.digits:
        probs = getattr(result, "probabilities", None)
        if probs is None:  # the classifier is deterministic: its answer for the same crops is the same
            probs = reader.classifier(result.crops)  # (N, 10)
        for entry, crop, p in zip(payload["digits"], result.crops, probs, strict=True):
            entry["probabilities"] = probabilities(p)
            entry["crop"] = png_data_url(crop)
    return payload


@router.post("/v1/read", summary="Read the digits in an image", openapi_extra=IMAGE_BODY, responses=ERRORS)
async def read(request: Request,
               crops: bool = Query(False, description="also return each digit's 28x28 input (PNG data URL) "
                                                       "and its 10 class probabilities"),
               name: str | None = Query(None, description="a name for the image in the result and errors")):
    """Send an image (multipart field `image`, or the raw body); get `digitocr read --json`'s object."""
    data, label, left_s = await receive_image(request, name)
    pool, limit_s = request.app.state.pool, request.app.state.settings.timeout_s
    payload = await pool.run(lambda reader: read_payload(reader, data, label, crops), left_s, limit_s)
    return json_response(payload)


@router.post("/v1/classify", summary="Classify one digit image", openapi_extra=IMAGE_BODY, responses=ERRORS)
async def classify(request: Request):
    """The whole image is one digit: returns the predicted digit, its confidence and all 10 probabilities."""
    data, _, left_s = await receive_image(request, None)
    limit_s = request.app.state.settings.timeout_s
    probs = await request.app.state.pool.run(lambda reader: reader.classify(data), left_s, limit_s)
    digit = int(np.argmax(probs))
    return json_response({"digit": digit, "confidence": round(float(probs[digit]), 6),
                          "probabilities": probabilities(probs)})


@router.get("/v1/models", summary="The bundled models and the one being served")
async def models(request: Request):
    from ..registry import bundled_models, model_card

    settings = request.app.state.settings
    return {"serving": {"model": settings.model, "backend": settings.backend,
                        "threads": request.app.state.pool.size},
            "models": [{"name": name, "card": model_card(name)} for name in bundled_models()]}


@router.get("/healthz", summary="Liveness: the model is loaded and the server answers")
async def healthz(request: Request):
    return {"status": "ok", "model": request.app.state.settings.model}


@router.get("/", include_in_schema=False)
async def index():
    return FileResponse(STATIC_DIR / "index.html")
