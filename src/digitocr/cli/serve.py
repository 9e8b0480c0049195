"""digitocr serve: the HTTP API and the drawing page (FastAPI + uvicorn), on loopback unless asked."""

from __future__ import annotations

import argparse
import logging

from .common import add_reader_args, port_number, positive_float, positive_int

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..serve.settings import (
        DEFAULT_HOST,
        DEFAULT_MAX_BYTES,
        DEFAULT_PORT,
        DEFAULT_TIMEOUT_S,
        default_workers,
    )

    p = sub.add_parser("serve", help="HTTP API (/v1/read, /v1/classify, /docs) and a page to draw digits on")
    add_reader_args(p)
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on; 0.0.0.0 opens it to the network (default: {DEFAULT_HOST})")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"(default: {DEFAULT_PORT})")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="inference processes, each loading the model once and taking the next waiting request "
                        "on one core; 1 runs inference on threads of the server process "
                        f"(default: {default_workers()}, one per core, or 1 when --threads is given)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="inference threads in the server process, for --workers 1 (default: CPU cores)")
    p.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds a request may take, upload included (default: {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--max-bytes", type=positive_int, default=DEFAULT_MAX_BYTES,
                   help=f"largest request body (default: {DEFAULT_MAX_BYTES:,})")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..errors import DigitocrError
    from ..serve.app import create_app, helper_networks
    from ..serve.settings import ServeSettings, default_workers

    workers = args.workers or (1 if args.threads else default_workers())
    if workers > 1 and args.threads:
        raise DigitocrError("--threads is for --workers 1 (inference on threads of one process); "
                            "with several workers each has one core")
    settings = ServeSettings(model=args.model, verifier=args.verifier, second=args.second, backend=args.backend,
                             precision=args.precision,
                             host=args.host, port=args.port, workers=workers, threads=args.threads,
                             timeout_s=args.timeout, max_bytes=args.max_bytes, max_pixels=args.max_pixels,
                             min_confidence=args.min_confidence)
    check_address(args.host, args.port)
    app = create_app(settings)  # load the model before listening: a bad --model fails here, in one line
    pool = f"{workers} worker processes" if workers > 1 else f"{settings.inference_threads()} inference thread(s)"
    verifier, second = helper_networks(settings)
    print(f"digitocr serve: http://{args.host}:{args.port}/ (API docs at /docs), model {args.model} "
          f"(verifier {verifier or 'none'}, second {second or 'none'}), backend {args.backend}, {pool}",
          flush=True)  # only once it can serve
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def check_address(host: str, port: int) -> None:
    """Fail in one line, before the banner and the model load, when the address cannot be listened on (port
    taken, host unknown or not this machine's); uvicorn would log its own error and exit 3."""
    import socket

    from ..errors import DigitocrError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind((host, port))
    except OSError as e:
        raise DigitocrError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
