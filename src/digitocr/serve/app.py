"""The app factory: a model loaded once, a pool of readers, JSON errors, the API routes and the page.

`create_app(settings)` loads the model itself; `create_app(reader)` serves a Reader you already have (tests,
notebooks). Nothing is loaded at import time.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import DigitocrError
from .limits import BodyLimit
from .pool import ReaderPool
from .routes import STATIC_DIR, router
from .settings import ServeSettings
from .workers import ProcessReaderPool

log = logging.getLogger(__name__)


def build_readers(settings: ServeSettings, count: int | None = None) -> list[Any]:
    """`count` Readers (default: one per inference thread), each with its own networks, all with the server's
    networks and image limits, read as `digitocr read` with the same options would."""
    import torch

    from ..classifier import load_classifier
    from ..ocr import Reader

    threads = count or settings.inference_threads()
    torch.set_num_threads(1)  # parallelism comes from the pool's threads or processes, one core each

    def load(spec: str | None, role: str) -> Any:
        """One network on the server's backend, with one intra-op thread (onnxruntime's pool would spin on
        the other cores); errors name the option, as `digitocr read`'s do."""
        if spec is None:
            return None
        try:
            return load_classifier(spec, settings.backend, precision=settings.precision, threads=1)
        except DigitocrError as e:
            raise DigitocrError(str(e).replace("--model ", f"{role} ", 1)) from None

    limits = dict(max_pixels=settings.max_pixels, max_bytes=settings.max_bytes, min_confidence=settings.min_confidence)
    verifier, second = helper_networks(settings)
    readers = []
    for _ in range(threads):
        model = load(settings.model, "--model")
        # one network that both reads and verifies is passed as one object: Reader then reads with its verdicts
        verify = model if verifier == settings.model else load(verifier, "--verifier")
        readers.append(Reader(model=model, verifier=verify, second=load(second, "--second"), **limits))
    return readers


def helper_networks(settings: ServeSettings) -> tuple[str | None, str | None]:
    """The verifier and second network a server's Readers hold, as `digitocr read` resolves them: no bundled
    verifier in the package reads with the model's confidence; "auto" picks the second network; a network
    is not its own second opinion."""
    from ..ocr import VERIFIER, second_opinion
    from ..registry import bundled_models

    verifier = settings.verifier
    if verifier == VERIFIER and VERIFIER not in bundled_models():
        verifier = None
    second = second_opinion(settings.model, settings.second)
    return verifier, None if second == settings.model else second


def create_app(reader_or_settings: Any = None, **overrides: Any) -> FastAPI:
    """The server for a ServeSettings (default: defaults), or for a Reader (or a list of Readers, one per
    inference thread) you already have. `overrides` replace settings fields, e.g. timeout_s=0.5."""
    if reader_or_settings is None or isinstance(reader_or_settings, ServeSettings):
        settings = dataclasses.replace(reader_or_settings or ServeSettings(), **overrides)
        if settings.workers > 1:
            return build_app(settings, ProcessReaderPool(settings.to_json(), settings.workers, settings.max_waiting))
        readers = build_readers(settings)
    else:
        readers = list(reader_or_settings) if isinstance(reader_or_settings, list | tuple) \
            else [reader_or_settings]
        first, defaults = readers[0], ServeSettings()
        name = getattr(getattr(first, "classifier", None), "name", "custom")
        settings = dataclasses.replace(defaults, model=str(name), threads=len(readers),
                                       verifier=network_name(getattr(first, "verifier", None)),
                                       second=network_name(getattr(first, "second", None)),
                                       max_bytes=getattr(first, "max_bytes", defaults.max_bytes),
                                       max_pixels=getattr(first, "max_pixels", defaults.max_pixels))
        settings = dataclasses.replace(settings, **overrides)
    return build_app(settings, ReaderPool(readers, settings.max_waiting))


def network_name(network: Any) -> str | None:
    """What /v1/models calls a Reader's helper network: its name (a file), "custom" when it has none, or None."""
    return None if network is None else str(getattr(network, "name", "custom"))


def build_app(settings: ServeSettings, pool: ReaderPool | ProcessReaderPool) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.close()

    # FastAPIOffline: the /docs and /redoc pages load Swagger UI and ReDoc from files installed with the package,
    # not from a CDN, so they work on machines without internet
    app = FastAPIOffline(title="digitocr", version=__version__, lifespan=lifespan,
                         description="Read handwritten digits from photos, scans and drawings.")
    app.state.settings = settings
    app.state.pool = pool
    app.add_middleware(BodyLimit, max_bytes=settings.max_bytes)
    add_error_handlers(app)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    """Every error is {"error": "one sentence"} with a fitting status; no tracebacks leave the server."""

    @app.exception_handler(DigitocrError)
    async def _user_error(request: Request, exc: DigitocrError) -> JSONResponse:
        return error_response(exc.http_status, str(exc))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, "internal server error; the server log has the details")
