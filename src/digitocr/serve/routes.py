"""The API: /v1/read, /v1/classify, /v1/models, /healthz, and the drawing page at /."""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from ..errors import DigitocrError
from .limits import IMAGE_FIELD, image_from_request
from .tasks import classify_payload, read_payload

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
                               (422, "/v1/classify: the image has no ink to classify"),
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


@router.post("/v1/read", summary="Read the digits in an image", openapi_extra=IMAGE_BODY, responses=ERRORS)
async def read(request: Request,
               crops: bool = Query(False, description="also return each digit's 28x28 input (PNG data URL) "
                                                       "and its 10 class probabilities"),
               name: str | None = Query(None, description="a name for the image in the result and errors")):
    """Send an image (multipart field `image`, or the raw body); get `digitocr read --json`'s object."""
    data, label, left_s = await receive_image(request, name)
    pool, limit_s = request.app.state.pool, request.app.state.settings.timeout_s
    payload = await pool.run(partial(read_payload, data=data, name=label, crops=crops), left_s, limit_s)
    return json_response(payload)


@router.post("/v1/classify", summary="Classify one digit image", openapi_extra=IMAGE_BODY, responses=ERRORS)
async def classify(request: Request,
                   name: str | None = Query(None, description="a name for the image in errors")):
    """The whole image is one digit: returns the predicted digit, its confidence and all 10 probabilities."""
    data, label, left_s = await receive_image(request, name)
    limit_s = request.app.state.settings.timeout_s
    task = partial(classify_payload, data=data, name=label)
    return json_response(await request.app.state.pool.run(task, left_s, limit_s))


@router.get("/v1/models", summary="The bundled models and the one being served")
async def models(request: Request):
    from ..registry import bundled_models, model_card
    from .app import helper_networks

    settings = request.app.state.settings
    verifier, second = helper_networks(settings)
    return {"serving": {"model": settings.model, "verifier": verifier, "second": second, "backend": settings.backend,
                        **request.app.state.pool.describe()},
            "models": [{"name": name, "card": model_card(name)} for name in bundled_models()]}


@router.get("/healthz", summary="Liveness: the model is loaded and the server answers")
@router.head("/healthz", include_in_schema=False)  # what many health checkers send; one entry in the docs
async def healthz(request: Request):
    return {"status": "ok", "model": request.app.state.settings.model}


@router.get("/", include_in_schema=False)
async def index():
    return FileResponse(STATIC_DIR / "index.html")
