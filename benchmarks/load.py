"""Serving benchmarks: a bounded HTTP load test of `digitocr serve` on loopback; the two backends compared.

    python benchmarks/load.py http --model seed                # 30 s per scenario, 32 clients
    python benchmarks/load.py backends --model seed

`http` starts `digitocr serve` on 127.0.0.1 (never another host), then runs each scenario: 32 keep-alive
clients send single-digit photos (or 8-digit pages), half as multipart uploads as the web page does, half as
raw bodies, with a few malformed and oversized requests mixed in. Every client stops after --duration seconds
or --max-requests requests, whichever comes first. Good requests must get 200 and bad ones their 4xx; anything
else is an error. Prints a markdown table (requests/s, p50/p99 latency, errors, the server's peak RSS).

`backends` compares torch and onnxruntime on the same network: batch throughput on the MNIST test set, and
single-image latency (one 28x28 crop through the classifier; one photo through Reader.read).

Photos are real handwriting from MNIST's test split, set on paper by tests/ocr_fixtures.py.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ocr_fixtures import Style, digit_pool, pick_digits, render

HOST = "127.0.0.1"  # loopback only: this load never leaves the machine
PHOTOS_PER_KIND = 40  # distinct images per scenario, cycled through
PAGE_DIGITS = 8
DIGIT_HEIGHT = 40  # px of MNIST's 20-px box on the photo
BAD_FRACTION = 0.05  # of requests that are malformed or oversized
SERVER_MAX_BYTES = 2 * 2**20  # the server's body limit during the test; oversized requests declare twice it
BOMB_SIDE = 6000  # a blank PNG of 6000x6000 = 36 MP: small on the wire, over the default pixel limit
REQUEST_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 120.0
WARMUP_REQUESTS = 50
RSS_SAMPLE_S = 0.1
LATENCY_CALLS = 2000  # single-crop latency samples per backend (and a quarter as many photo reads)
BATCH_REPEATS = 3  # whole-test-set passes per backend; the median is reported
PERCENTILES = (50, 99)


# ---- payloads ----

def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buf.getvalue()


def photos(mnist, digits: int, count: int, seed: int) -> list[tuple[bytes, str]]:
    """`count` photos of `digits`-digit numbers: lighting, noise, slight rotation; JPEG and PNG alternate."""
    rng = np.random.default_rng(seed)
    pool = digit_pool(mnist.test.labels)
    out = []
    for i in range(count):
        text = "".join(str(d) for d in rng.integers(0, 10, digits))
        tilt = float(rng.uniform(-3, 3))
        style = Style(height=DIGIT_HEIGHT, gradient=0.25, noise=0.02, rotation=tilt, seed=i)
        pixels = render(pick_digits(text, mnist.test.images, pool, rng), style)
        fmt = "JPEG" if i % 2 == 0 else "PNG"
        out.append((encode(pixels, fmt), text))
    return out


def http_request(body: bytes, content_type: str, path: str = "/v1/read",
                 declared: int | None = None) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if declared is None else declared}\r\n\r\n")
    return head.encode() + body


def multipart(body: bytes, filename: str) -> bytes:
    boundary = "digitocr-load-boundary"
    kind = "jpeg" if body[:2] == b"\xff\xd8" else "png"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/{kind}\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
    return http_request(part, f"multipart/form-data; boundary={boundary}")


@dataclass
class Payload:
    kind: str
    raw: bytes
    expect: int
    headers_only: bool = False  # oversized: send the headers, read the 413, never send the body


def good_payloads(images: list[tuple[bytes, str]], kind: str) -> list[Payload]:
    out = []
    for i, (data, _) in enumerate(images):
        raw = multipart(data, f"{kind}{i}.jpg") if i % 2 else http_request(data, "application/octet-stream")
        out.append(Payload(kind, raw, 200))
    return out


def bad_payloads(sample: bytes) -> list[Payload]:
    bomb = encode(np.full((BOMB_SIDE, BOMB_SIDE), 255, np.uint8), "PNG")
    return [
        Payload("bad:truncated", http_request(sample[: len(sample) // 2], "image/jpeg"), 400),
        Payload("bad:not-an-image", http_request(b"%PDF-1.4 not an image" * 20, "application/pdf"), 415),
        Payload("bad:too-many-pixels", http_request(bomb, "image/png"), 413),
        Payload("bad:too-large", http_request(b"", "image/jpeg", declared=2 * SERVER_MAX_BYTES), 413, True),
    ]


# ---- the client ----

@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)

    def add(self, kind: str, status: int | None, expect: int, seconds: float,
            error: str | None = None) -> None:
        self.statuses.setdefault(kind, {})
        self.statuses[kind][status or 0] = self.statuses[kind].get(status or 0, 0) + 1
        if status == expect and error is None:
            self.latencies.setdefault(kind, []).append(seconds)
        else:
            key = f"{kind}: {error or f'got {status}, expected {expect}'}"
            self.errors[key] = self.errors.get(key, 0) + 1


async def exchange(conn, payload: Payload) -> tuple[int, bool]:
    """Send one request, read the whole response: (status, the server closes the connection)."""
    reader, writer = conn
    writer.write(payload.raw)  # oversized requests are their headers alone
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length, close = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    await reader.readexactly(length)
    return status, close or payload.headers_only


async def client(port: int, good: list[Payload], bad: list[Payload], deadline: float, max_requests: int,
                 tally: Tally, seed: int, schedule: tuple[float, float] | None = None) -> None:
    """Closed loop (next request when the last one is answered), or open loop when `schedule` =
    (start, interval) is given: request k is due at start + k * interval, and its latency counts from
    then, so a slow answer that delays the next request is charged to it (no coordinated omission)."""
    rng = random.Random(seed)
    conn = None
    for k in range(max_requests):
        if time.monotonic() >= deadline:
            break
        payload = rng.choice(bad) if bad and rng.random() < BAD_FRACTION else rng.choice(good)
        t0 = time.perf_counter()
        if schedule is not None:
            due = schedule[0] + k * schedule[1]
            if due > t0:
                await asyncio.sleep(due - t0)
            t0 = due
        try:
            if conn is None:
                conn = await asyncio.open_connection(HOST, port)
            status, close = await asyncio.wait_for(exchange(conn, payload), REQUEST_TIMEOUT_S)
            tally.add(payload.kind, status, payload.expect, time.perf_counter() - t0)
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as e:
            tally.add(payload.kind, None, payload.expect, 0.0, type(e).__name__)
            close = True
        if close and conn is not None:
            conn[1].close()
            conn = None
    if conn is not None:
        conn[1].close()


async def run_clients(port: int, good, bad, clients: int, duration_s: float, max_requests: int,
                      rate: float | None = None) -> Tally:
    """`clients` keep-alive connections; with `rate` (requests/s in all) each sends on a fixed schedule,
    staggered so that the requests arrive evenly."""
    tally = Tally()
    deadline = time.monotonic() + duration_s
    start = time.perf_counter()

    def schedule(i: int) -> tuple[float, float] | None:
        return (start + i / rate, clients / rate) if rate else None

    await asyncio.gather(*(client(port, good, bad, deadline, max_requests, tally, seed=i, schedule=schedule(i))
                           for i in range(clients)))
    return tally


# ---- the server ----

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """A process and its children (uvicorn's worker processes)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid] + ([int(p) for p in children.read_text().split()] if children.exists() else [])


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self.stop.wait(RSS_SAMPLE_S)


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "digitocr", "serve", "--host", HOST, "--port", str(port),
           "--model", args.model, "--backend", args.backend, "--workers", str(args.workers),
           "--max-bytes", str(SERVER_MAX_BYTES)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"the server did not answer within {STARTUP_TIMEOUT_S:.0f} s")


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def http_benchmark(args: argparse.Namespace) -> int:
    from digitocr.data.datasets import load_dataset

    mnist = load_dataset("mnist", progress=False)
    scenarios = {"single": good_payloads(photos(mnist, 1, PHOTOS_PER_KIND, seed=1), "single"),
                 "page": good_payloads(photos(mnist, PAGE_DIGITS, PHOTOS_PER_KIND, seed=2), "page")}
    bad = bad_payloads(photos(mnist, 1, 1, seed=3)[0][0]) if args.bad else []
    load_before = os.getloadavg()[0]
    port = free_port()
    proc = start_server(args, port)
    sampler = RssSampler(proc.pid)
    sampler.start()
    rows, failed = [], False
    try:
        for name in args.scenarios.split(","):
            good = scenarios[name]
            asyncio.run(run_clients(port, good, [], min(args.clients, 8), 60, WARMUP_REQUESTS // 8 + 1))
            t0, cpu0, own0 = time.perf_counter(), tree_cpu_s(proc.pid), time.process_time()
            tally = asyncio.run(run_clients(port, good, bad, args.clients, args.duration, args.max_requests,
                                            args.rate))
            seconds, cpu_s = time.perf_counter() - t0, tree_cpu_s(proc.pid) - cpu0
            client_s = time.process_time() - own0
            ok = tally.latencies.get(name, [])
            bad_ok = sum(len(v) for k, v in tally.latencies.items() if k.startswith("bad:"))
            errors = sum(tally.errors.values())
            failed |= errors > 0
            total = sum(len(v) for v in tally.latencies.values()) + errors
            rows.append((name, len(ok) / seconds, percentile_ms(ok, 50), percentile_ms(ok, 99), len(ok),
                         bad_ok, errors, 1000 * cpu_s / max(total, 1), 1000 * client_s / max(total, 1)))
            for key, n in sorted(tally.errors.items()):
                print(f"  error x{n}: {key}", file=sys.stderr)
    finally:
        sampler.stop.set()
        sampler.join()
        proc.terminate()
        proc.wait(timeout=30)
    print(f"\n`digitocr serve --model {args.model} --backend {args.backend} --workers {args.workers}"
          f"{f' --threads {args.threads}' if args.threads else ''}`, {args.clients} clients, "
          f"{f'open loop at {args.rate:g} requests/s, ' if args.rate else 'closed loop, '}"
          f"{args.duration:g} s per scenario, {BAD_FRACTION:.0%} bad requests mixed in; "
          f"{platform.node() or 'this machine'}: {os.cpu_count()} CPUs, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after\n")
    print("| scenario | good reads/s | p50 ms | p99 ms | good | bad (all 4xx as expected) | errors | "
          "CPU ms / request: server, client | server peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rps, p50, p99, n, bad_ok, errors, cpu_ms, client_ms in rows:
        label = "1 digit" if name == "single" else f"{PAGE_DIGITS}-digit page"
        print(f"| {label} | {rps:,.0f} | {p50:.1f} | {p99:.1f} | {n:,} | {bad_ok:,} | {errors} | "
              f"{cpu_ms:.2f}, {client_ms:.2f} | {sampler.peak / 2**20:,.0f} MiB |")
    return 1 if failed else 0


# ---- backends side by side ----

def backend_benchmark(args: argparse.Namespace) -> int:
    """Both backends measured turn about, call by call, so a busy machine slows both alike."""
    import torch

    from digitocr.classifier import TorchClassifier
    from digitocr.data.datasets import load_dataset
    from digitocr.export import OnnxClassifier
    from digitocr.ocr import Reader
    from digitocr.registry import load_model

    mnist = load_dataset("mnist", progress=False)
    crops = mnist.test.images.astype(np.float32) / 255  # (10000, 28, 28)
    single_photos = [data for data, _ in photos(mnist, 1, PHOTOS_PER_KIND, seed=1)]
    print(f"\nModel `{args.model}`, torch precision {args.precision}; MNIST test set ({len(crops):,} images); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before\n")
    print("| backend | threads | batch images/s | 1 crop p50 ms | 1 crop p99 ms | 1 photo read p50 ms | "
          "1 photo read p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        backends = {"torch": TorchClassifier(load_model(args.model), precision=args.precision),
                    "onnxruntime": OnnxClassifier.from_model(args.model, threads=threads)}
        readers = {name: Reader(c) for name, c in backends.items()}
        batch = {name: [] for name in backends}
        one = {name: [] for name in backends}
        reads = {name: [] for name in backends}
        for classify in backends.values():
            classify(crops[:256])  # warm-up
        for _ in range(BATCH_REPEATS):
            for name, classify in backends.items():
                batch[name].append(len(crops) / timed(classify, crops))
        for i in range(LATENCY_CALLS):
            for name, classify in backends.items():
                one[name].append(timed(classify, crops[i % len(crops)][None]))
                if i % 4 == 0:
                    reads[name].append(timed(readers[name].read, single_photos[i // 4 % len(single_photos)]))
        for name in backends:
            cells = " | ".join(f"{percentile_ms(v[name], q):.2f}" for v in (one, reads) for q in PERCENTILES)
            print(f"| {name} | {threads} | {np.median(batch[name]):,.0f} | {cells} |")
    return 0


def timed(fn, *a) -> float:
    t0 = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    h = sub.add_parser("http", help="load test `digitocr serve` on loopback")
    h.add_argument("--model", default="best", help="(default: best)")
    h.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch", help="(default: torch)")
    h.add_argument("--workers", type=int, default=1, help="server processes (default: 1)")
    h.add_argument("--threads", type=int, default=None,
                   help="inference threads per process (default: the server's)")
    h.add_argument("--clients", type=int, default=32, help="concurrent keep-alive clients (default: 32)")
    h.add_argument("--rate", type=float, default=None,
                   help="open loop: requests/s in all, sent on a fixed schedule; latency counts from each "
                        "request's due time (default: closed loop, each client sends when answered)")
    h.add_argument("--duration", type=float, default=30.0, help="seconds per scenario (default: 30)")
    h.add_argument("--max-requests", type=int, default=20_000,
                   help="per client per scenario (default: 20000)")
    h.add_argument("--scenarios", default="single,page", help="comma-separated: single, page (default: both)")
    h.add_argument("--no-bad", dest="bad", action="store_false",
                   help="no malformed requests (default: mixed in)")
    b = sub.add_parser("backends", help="torch vs onnxruntime: batch throughput and single-image latency")
    b.add_argument("--model", default="best", help="(default: best)")
    b.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="torch's precision (default: auto, bf16 where the CPU has it)")
    args = p.parse_args()
    return http_benchmark(args) if args.mode == "http" else backend_benchmark(args)


if __name__ == "__main__":
    raise SystemExit(main())
