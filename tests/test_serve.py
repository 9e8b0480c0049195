"""The HTTP API: every route, every error, against the real Reader (the bundled seed model)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from digitocr.errors import DigitocrError
from digitocr.ocr import Reader
from digitocr.serve import ServeSettings, create_app
from digitocr.serve.pool import ReaderPool, ServerBusyError

MODEL = os.environ.get("DIGITOCR_TEST_MODEL", "seed")  # a bundled model unless a test run names another
SEVEN = [(50, 50), (150, 50), (90, 170)]  # a "7" as one polyline on a 200x200 page


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def drawn(strokes: list[list[tuple[int, int]]], size=(200, 200)) -> bytes:
    """Dark strokes on white, like the web page's canvas."""
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    for s in strokes:
        draw.line(s, fill=0, width=14, joint="curve")
    return png_bytes(img)


class SlowReader:
    """A Reader that takes `delay_s` longer than it needs: to trip the server's time limit."""

    def __init__(self, reader: Reader, delay_s: float):
        self.reader, self.delay_s = reader, delay_s
        self.classifier = reader.classifier
        self.max_bytes, self.max_pixels = reader.max_bytes, reader.max_pixels

    def read(self, image, name=None):
        time.sleep(self.delay_s)
        return self.reader.read(image, name=name)

    def classify(self, image, name=None):
        time.sleep(self.delay_s)
        return self.reader.classify(image, name)


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader(MODEL, max_bytes=200_000, max_pixels=2_000_000)


@pytest.fixture(scope="module")
def client(reader):
    with TestClient(create_app(reader)) as c:
        yield c


def test_read_multipart_and_raw_body_agree_with_the_reader(client, reader):
    png = drawn([SEVEN])
    by_form = client.post("/v1/read", files={"image": ("seven.png", png, "image/png")})
    raw = client.post("/v1/read", content=png, headers={"content-type": "image/png"})
    assert by_form.status_code == raw.status_code == 200
    assert by_form.json()["text"] == "7"
    assert by_form.json()["file"] == "seven.png"
    assert raw.json() == {**by_form.json(), "file": None}
    assert by_form.json() == reader.read(png, name="seven.png").to_dict()  # the same JSON as `read --json`


def test_min_confidence_marks_digits_as_read_does(client):
    png = drawn([[(60, 60), (140, 140)], [(140, 60), (60, 140)]])  # an X: read as some digit, but not surely
    [digit] = client.post("/v1/read", content=png).json()["digits"]
    assert digit["confidence"] < 0.99
    threshold = digit["confidence"] + 1e-3  # just above this digit's confidence
    with TestClient(create_app(ServeSettings(model=MODEL, threads=1, min_confidence=threshold))) as strict:
        body = strict.post("/v1/read", content=png).json()
    assert body["text"] == "?" and body["digits"][0]["low_confidence"] is True


def test_read_with_crops_returns_what_the_network_saw(client, reader):
    png = drawn([SEVEN, [(215, 45), (215, 170)]], size=(270, 200))  # "71"
    body = client.post("/v1/read?crops=1&name=pad.png", content=png).json()
    result = reader.read(png)
    assert body["text"] == result.text == "71"
    assert body["file"] == "pad.png"
    for entry, crop, probs in zip(body["digits"], result.crops, result.probabilities, strict=True):
        assert entry["digit"] == int(np.argmax(entry["probabilities"]))
        assert sum(entry["probabilities"]) == pytest.approx(1, abs=1e-4)
        np.testing.assert_allclose(entry["probabilities"], probs, atol=1e-5)
        header, data = entry["crop"].split(",", 1)
        assert header == "data:image/png;base64"
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))), np.float32) / 255
        assert img.shape == (28, 28)
        np.testing.assert_allclose(img, crop, atol=1 / 255 + 1e-6)


def test_classify_returns_ten_probabilities(client, reader):
    png = drawn([SEVEN])
    body = client.post("/v1/classify", files={"image": ("7.png", png, "image/png")}).json()
    assert body["digit"] == 7
    assert len(body["probabilities"]) == 10
    np.testing.assert_allclose(body["probabilities"], reader.classify(png), atol=1e-5)
    assert body["confidence"] == max(body["probabilities"])
    for blank in (Image.new("L", (64, 64), 255), Image.new("L", (1, 1), 0)):  # read() gives "" for these
        assert_error(client.post("/v1/classify", content=png_bytes(blank)), 422, "no ink")
    # errors name the image as /v1/read's do: by its upload's file name, or ?name=
    blank = png_bytes(Image.new("L", (64, 64), 255))
    assert_error(client.post("/v1/classify", files={"image": ("empty-box.png", blank, "image/png")}), 422,
                 "empty-box.png")
    assert_error(client.post("/v1/classify?name=field-7", content=blank), 422, "field-7")


def test_models_health_docs_and_page(client):
    from digitocr.registry import bundled_models, model_card

    models = client.get("/v1/models").json()
    assert [m["name"] for m in models["models"]] == list(bundled_models())
    assert all(m["card"] == model_card(m["name"]) for m in models["models"])
    assert models["serving"]["threads"] == 1
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.head("/healthz").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/read", "/v1/classify", "/v1/models", "/healthz"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str) and message
    for w in words:
        assert w in message


def test_body_over_the_byte_limit_is_413(client):
    big = b"\x89PNG" + bytes(300_000)
    assert_error(client.post("/v1/read", content=big), 413, "300,004 bytes", "200,000")

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(40):
            yield bytes(10_000)

    assert_error(client.post("/v1/read", content=chunks()), 413, "200,000")
    assert_error(client.post("/v1/read", files={"image": ("big.png", big, "image/png")}), 413)


def test_image_over_the_pixel_limit_is_413(client):
    huge = png_bytes(Image.new("L", (2000, 1500), 255))  # 3 MP of white compresses to a few kB
    assert len(huge) < 200_000
    assert_error(client.post("/v1/read", content=huge), 413, "2000x1500", "2,000,000")
    assert_error(client.post("/v1/classify", content=huge), 413)


def test_unsupported_type_is_415(client):
    assert_error(client.post("/v1/read", content=b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), 415, "PNG")
    buf = io.BytesIO()
    Image.new("L", (16, 16)).save(buf, format="ICO")  # PIL reads it, digitocr does not
    assert_error(client.post("/v1/read", content=buf.getvalue()), 415)


def test_undecodable_or_missing_image_is_400(client):
    png = drawn([SEVEN])
    assert_error(client.post("/v1/read", content=png[: len(png) // 2]), 400, "truncated")
    assert_error(client.post("/v1/read", content=b""), 400, "no image")
    assert_error(client.post("/v1/read", files={"photo": ("x.png", png, "image/png")}), 400, "'image'")
    text_field = client.post("/v1/read", data={"image": "not a file"}, files={"note": ("n.txt", b"hi")})
    assert_error(text_field, 400, "text")
    assert_error(client.post("/v1/read?crops=maybe", content=png), 400, "crops")


def test_unknown_route_and_method_are_json(client):
    assert_error(client.get("/v2/read"), 404)
    assert_error(client.get("/v1/read"), 405)


def test_slow_reads_time_out_with_504(reader):
    app = create_app(SlowReader(reader, delay_s=1.0), timeout_s=0.2)
    with TestClient(app) as c:
        t0 = time.perf_counter()
        assert_error(c.post("/v1/read", content=drawn([SEVEN])), 504, "0.2 s")
        assert time.perf_counter() - t0 < 0.9  # answered at the limit, not when the reader finished
        assert_error(c.post("/v1/classify", content=drawn([SEVEN])), 504)


def test_pool_refuses_work_beyond_its_queue(reader):
    pool = ReaderPool([SlowReader(reader, delay_s=0.3)], max_waiting=2)

    async def three_at_once():
        jobs = [pool.run(lambda r: r.classify(drawn([SEVEN])), timeout_s=5) for _ in range(3)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    try:
        outcomes = asyncio.run(three_at_once())
    finally:
        pool.close()
    assert sum(isinstance(o, ServerBusyError) for o in outcomes) == 1
    assert sum(isinstance(o, np.ndarray) for o in outcomes) == 2
    assert ServerBusyError.http_status == 503


def test_settings_build_one_reader_per_thread():
    app = create_app(ServeSettings(model=MODEL, threads=2, max_bytes=1000))
    with TestClient(app) as c:
        assert c.get("/v1/models").json()["serving"] == {"model": MODEL, "verifier": "reader", "second": None,
                                                          "backend": "torch", "workers": 1, "threads": 2}
        assert_error(c.post("/v1/read", content=bytes(2000)), 413, "1,000")
        readers = app.state.pool.readers
        assert len(readers) == 2 and readers[0].classifier is not readers[1].classifier


def test_a_slow_upload_is_cut_off_with_408(reader):
    """Through uvicorn itself (TestClient buffers whole bodies): headers, a trickle, then silence."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(reader, timeout_s=0.3), log_level="warning"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        with socket.create_connection(sock.getsockname(), timeout=5) as conn:
            conn.sendall(b"POST /v1/read HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 1000\r\n\r\n" + bytes(10))
            response = conn.recv(4096).decode()
        head, _, body = response.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 408")
        assert "0.3 s" in json.loads(body)["error"]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_everything_from_the_server(client, page):
    """The docs pages work offline: every script, style and icon they name is served by digitocr itself."""
    import re

    html = client.get(page)
    assert html.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from another host"
        assert client.get(asset).status_code == 200, asset


def test_worker_processes_read_and_survive_a_killed_worker(reader):
    """`--workers 2`: inference in two processes; a worker killed while idle costs no request and is replaced."""
    import signal

    app = create_app(ServeSettings(model=MODEL, workers=2))
    png = drawn([SEVEN])
    with TestClient(app) as c:
        assert c.get("/v1/models").json()["serving"] == {"model": MODEL, "verifier": "reader", "second": None,
                                                          "backend": "torch", "workers": 2, "threads": 1}
        bodies = [c.post("/v1/read", content=png).json() for _ in range(4)]
        assert all(b == reader.read(png).to_dict() for b in bodies)
        assert_error(c.post("/v1/read", content=png[: len(png) // 2]), 400)  # errors cross the process boundary
        pids = app.state.pool.pids
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        c.get("/healthz")  # a turn of the server's loop: it learns of the death from the process sentinel
        assert wait_until(lambda: pids[0] not in app.state.pool.pids, 10)
        assert all(c.post("/v1/read", content=png).json()["text"] == "7" for _ in range(6))  # the other one reads
        assert wait_until(lambda: len(app.state.pool.pids) == 2, 60), "the dead worker was not replaced"
        workers = app.state.pool.pids
        assert pids[0] not in workers and pids[1] in workers
        assert c.post("/v1/read", content=png).json()["text"] == "7"
    assert not any(alive(pid) for pid in workers), "worker processes outlived the server's shutdown"


def exit_worker(reader) -> None:
    """A task that kills the worker process reading it (as the OOM killer would)."""
    os._exit(3)


def test_a_worker_dying_mid_request_fails_only_that_request():
    from digitocr.serve.pool import WorkerDiedError
    from digitocr.serve.tasks import read_payload
    from digitocr.serve.workers import ProcessReaderPool

    pool = ProcessReaderPool(ServeSettings(model=MODEL, workers=2).to_json(), 2, max_waiting=16)
    read_seven = partial(read_payload, data=drawn([SEVEN]), name=None, crops=False)

    async def scenario():
        dying = asyncio.ensure_future(pool.run(exit_worker, timeout_s=60))
        reads = [pool.run(read_seven, timeout_s=60) for _ in range(6)]
        outcomes = await asyncio.gather(dying, *reads, return_exceptions=True)
        deadline = time.monotonic() + 60
        while len(pool.pids) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return outcomes, await pool.run(read_seven, timeout_s=60)

    try:
        outcomes, after = asyncio.run(scenario())
        assert len(pool.pids) == 2
    finally:
        pool.close()
    assert isinstance(outcomes[0], WorkerDiedError) and WorkerDiedError.http_status == 503
    assert [o["text"] for o in outcomes[1:]] == ["7"] * 6
    assert after["text"] == "7"


def echo(reader, data: bytes) -> bytes:
    """A task whose request and answer are both as large as its payload."""
    return data[::-1]


def test_worker_pipes_carry_messages_larger_than_the_pipe_buffer():
    """uvicorn runs on uvloop, which makes the watched pipe non-blocking: a multi-MB upload or an answer with
    many crops used to stop partway through the pipe and wedge the workers for good (every later request 504)."""
    uvloop = pytest.importorskip("uvloop")
    from digitocr.serve.tasks import read_payload
    from digitocr.serve.workers import ProcessReaderPool

    pool = ProcessReaderPool(ServeSettings(model=MODEL, workers=2).to_json(), 2, max_waiting=16)
    payload = os.urandom(3_000_000)  # ~50x a pipe's 64 KiB buffer

    async def scenario():
        answers = await asyncio.gather(*(pool.run(partial(echo, data=payload), timeout_s=60) for _ in range(4)))
        return answers, await pool.run(partial(read_payload, data=drawn([SEVEN]), name=None, crops=False), 60)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            answers, after = runner.run(scenario())
    finally:
        pool.close()
    assert all(a == payload[::-1] for a in answers)
    assert after["text"] == "7"


def alive(pid: int) -> bool:
    """A live process (not a zombie waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_worker_processes_report_a_bad_model_in_one_line():
    with pytest.raises(DigitocrError) as e:
        create_app(ServeSettings(model="no-such-model", workers=2))
    assert "no-such-model" in str(e.value) and "\n" not in str(e.value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "digitocr", "serve", "--model", MODEL, "--port", str(port), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), port


def wait_for_health(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                assert json.load(r)["status"] == "ok"
            return
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the server did not start within 60 s"
            time.sleep(0.2)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the worker processes")
def test_workers_exit_when_the_server_is_killed_hard():
    """SIGKILL leaves no shutdown to run: the inference processes notice their parent is gone and exit."""
    proc, port = start_server("--workers", "2")
    try:
        wait_for_health(proc, port)
        children = [int(pid) for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert len(children) >= 2  # the two workers (and multiprocessing's resource tracker)
    finally:
        proc.kill()
        proc.wait(timeout=20)
    assert wait_until(lambda: not any(alive(pid) for pid in children), 15), "workers outlived a killed server"


def test_serve_command_end_to_end(tmp_path):
    proc, port = start_server("--threads", "1")
    try:
        wait_for_health(proc, port)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/read", data=drawn([SEVEN]), method="POST",
                                     headers={"content-type": "image/png"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.load(r)["text"] == "7"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_with_a_bad_model_says_only_that(capsys):
    from digitocr.cli import main

    assert main(["serve", "--model", "no-such-model", "--workers", "1", "--port", str(free_port())]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no "serving at ..." banner for a server that never starts
    assert "no-such-model" in err and len(err.strip().splitlines()) == 1


def test_threads_with_several_workers_is_refused_in_one_line(capsys):
    from digitocr.cli import main

    assert main(["serve", "--workers", "2", "--threads", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--threads" in err and "\n" not in err


def test_the_server_reads_as_digitocr_read_does():
    """The server's Readers ask the second network exactly where `digitocr read` would: with the default
    classifier, and not with another."""
    from digitocr.serve.app import build_readers

    default, = build_readers(ServeSettings(), count=1)
    other, = build_readers(ServeSettings(model="best"), count=1)
    assert "best.safetensors" in repr(default.second) and other.second is None
    assert default.verifier is not None and other.verifier is not None


def test_the_server_takes_read_s_network_options():
    """--verifier and --second mean on the server what they mean to `digitocr read`: 'none' switches a helper
    off, a spec loads that network, the model as its own verifier reads with the verifier's verdicts."""
    from digitocr.serve.app import build_readers

    bare, = build_readers(ServeSettings(verifier=None, second=None), count=1)
    assert bare.verifier is None and bare.second is None
    asked, = build_readers(ServeSettings(model=MODEL, second="best"), count=1)
    assert "best.safetensors" in repr(asked.second)
    alone, = build_readers(ServeSettings(model=MODEL, verifier=MODEL), count=1)
    assert alone._reads_with_verifier and alone.second is None
    from digitocr.runtime import BF16_CPU_FLAGS, cpu_flags

    fp32, = build_readers(ServeSettings(precision="fp32"), count=1)
    assert not fp32.classifier.fn.bf16 and not fp32.verifier.fn.bf16
    if any(f in cpu_flags() for f in BF16_CPU_FLAGS):  # auto is fp32 on CPUs without AMX: bf16 must be asked
        bf16, = build_readers(ServeSettings(precision="bf16"), count=1)
        assert bf16.classifier.fn.bf16 and bf16.verifier.fn.bf16
    with TestClient(create_app(ServeSettings(second="photo", threads=1))) as c:  # photo is not its own second
        assert c.get("/v1/models").json()["serving"]["second"] is None
    with TestClient(create_app(ServeSettings(model=MODEL, verifier=None, threads=1))) as c:
        serving = c.get("/v1/models").json()["serving"]
        assert serving["verifier"] is None and serving["second"] is None


@pytest.mark.parametrize("flag", ["--verifier", "--second"])
def test_serve_with_a_bad_helper_network_names_its_flag(capsys, flag):
    from digitocr.cli import main

    assert main(["serve", "--model", MODEL, flag, "no-such-model", "--workers", "1", "--port", str(free_port())]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert f"{flag} " in err and "no-such-model" in err
