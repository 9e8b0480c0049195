"""ONNX export, its equivalence check against PyTorch, and the onnxruntime backend of the classifier contract.

The exported graph takes `images` (N, 1, 28, 28) float32 in [0, 1] with a dynamic batch axis N and returns
`logits` (N, 10). `OnnxClassifier` wraps an onnxruntime session behind the same contract as
`classifier.TorchClassifier`: crops (N, 28, 28) -> (N, 10) probabilities.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .constants import DATA_ENV, DEFAULT_DATA_DIR, IMAGE_SIZE, NUM_CHANNELS, NUM_CLASSES
from .data.tensors import images_to_tensor
from .errors import DigitocrError
from .fsutil import atomic_write
from .inference import predict_logits
from .registry import PRETRAINED_DIR, load_model, resolve_model_path

log = logging.getLogger(__name__)

ONNX_OPSET = 18  # torch's exporter targets 18; onnxruntime >= 1.14 runs it
INPUT_NAME, OUTPUT_NAME = "images", "logits"
BATCH_AXIS = "batch"
ONNX_SUFFIX = ".onnx"
CACHE_SUBDIR = "onnx"  # exported copies of bundled or read-only checkpoints, under the digitocr cache
DIGEST_CHARS = 12  # of the checkpoint's SHA-256, in a cached export's name: new weights, new file
CHECK_BATCH = 2048  # images per call in the equivalence check
EXPORT_EXAMPLE_BATCH = 2  # traced with 2 so the batch axis cannot be specialised to 1


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int = ONNX_OPSET) -> Path:
    """Write `model` (eval mode, fp32, on the CPU) as ONNX with a dynamic batch axis; atomically."""
    path = Path(path)
    model = model.to("cpu", memory_format=torch.contiguous_format).float().eval()
    example = torch.zeros(EXPORT_EXAMPLE_BATCH, NUM_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    with warnings.catch_warnings(), quiet_exporter():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices are not ours to act on
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: batch},), verbose=False)
    if program is None:
        raise DigitocrError(f"{path}: torch.onnx.export returned no program")
    atomic_write(path, lambda tmp: program.save(tmp, external_data=False))
    return path


EXPORTER_LOGGERS = ("torch.onnx", "torch._export", "torch.export", "onnxscript")


@contextlib.contextmanager
def quiet_exporter():
    """The dynamo exporter logs progress and optional-op notices at WARNING; keep them out of the CLI."""
    loggers = [logging.getLogger(n) for n in EXPORTER_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session for an exported file; `threads` intra-op threads (None: its default)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise DigitocrError("--backend onnxruntime needs the onnxruntime package (pip install onnxruntime)") \
            from None
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise DigitocrError(f"{path}: not an ONNX model onnxruntime can load ({str(e).splitlines()[0]})") \
            from None


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:DIGEST_CHARS]


def cache_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser() / CACHE_SUBDIR


def cached_export_path(checkpoint: Path) -> Path:
    """Where the export of `checkpoint` is cached: beside it (run folders), else in the digitocr cache.

    The name holds the checkpoint's digest, so retrained weights never reuse a stale export.
    """
    name = f"{checkpoint.stem}.{file_digest(checkpoint)}{ONNX_SUFFIX}"
    bundled = checkpoint.resolve().parent == PRETRAINED_DIR.resolve()
    candidates = [] if bundled else [checkpoint.parent]
    candidates += [cache_dir(), Path(tempfile.gettempdir()) / f"digitocr-{CACHE_SUBDIR}"]
    for folder in candidates:
        if (folder / name).is_file():
            return folder / name
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder / name
    raise DigitocrError(f"{checkpoint}: no writable folder for its ONNX export (tried {candidates[0]})")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def check_interface(session, name: str) -> None:
    """An ONNX model made elsewhere must take and give what `digitocr export` writes; anything else is one
    line saying so, not onnxruntime's traceback at the first image."""
    inputs = session.get_inputs()
    shape = inputs[0].shape if len(inputs) == 1 else []
    fits = (len(shape) == 4 and inputs[0].name == INPUT_NAME and shape[1:] == [NUM_CHANNELS, IMAGE_SIZE, IMAGE_SIZE]
            and not isinstance(shape[0], int)  # a dynamic batch axis: the reader sends any number of crops
            and any(o.name == OUTPUT_NAME and len(o.shape) == 2 for o in session.get_outputs()))
    if not fits:
        raise DigitocrError(f"{name}: not a digitocr ONNX export: it needs input '{INPUT_NAME}' (N, 1, {IMAGE_SIZE}, "
                            f"{IMAGE_SIZE}) float32 with a dynamic batch and output '{OUTPUT_NAME}' (N, classes); "
                            "`digitocr export` writes one")


class OnnxClassifier:
    """An exported network behind the classifier contract. onnxruntime sessions are safe to call from
    several threads at once."""

    def __init__(self, session, name: str):
        check_interface(session, name)
        self.session = session
        self.path = name

    @classmethod
    def from_model(cls, spec: str | os.PathLike, threads: int | None = None) -> OnnxClassifier:
        """A .onnx file as it is; any other --model spec is exported once into the cache, then loaded."""
        if str(spec).endswith(ONNX_SUFFIX):
            if not Path(spec).is_file():
                raise DigitocrError(f"--model {spec}: no such ONNX file")
            return cls(onnx_session(spec, threads), str(spec))
        checkpoint = resolve_model_path(spec)
        path = cached_export_path(checkpoint)
        if not path.is_file():
            log.info("exporting %s to %s", checkpoint, path)
            export_onnx(load_model(checkpoint).model, path)
        return cls(onnx_session(path, threads), str(path))

    @property
    def name(self) -> str:
        return self.path

    @property
    def classes(self) -> int:
        size = self.session.get_outputs()[0].shape[1]
        return size if isinstance(size, int) else NUM_CLASSES

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, 1, 28, 28) float32 -> (N, 10) float32 logits."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops, dtype=np.float32)
        if len(crops) == 0:
            return np.empty((0, self.classes), np.float32)
        return softmax(self.logits(crops[:, None]))  # (N, 1, 28, 28) -> (N, 10)

    def __repr__(self) -> str:
        return f"OnnxClassifier({self.path!r})"


@dataclass
class Equivalence:
    """How an export compares with PyTorch fp32 on the same images."""

    total: int
    max_abs_diff: float  # largest |logit difference| over all images and classes
    mismatches: int  # images whose predicted class differs
    torch_images_per_s: float
    onnx_images_per_s: float

    @property
    def identical(self) -> bool:
        return self.mismatches == 0


def check_equivalence(model: nn.Module, session, images: np.ndarray) -> Equivalence:
    """Run PyTorch (fp32) and onnxruntime on the same (N, 28, 28) uint8 images and compare their logits."""
    x = images_to_tensor(images)  # (N, 1, 28, 28) in [0, 1]
    model = model.to("cpu").float().eval()
    t0 = time.perf_counter()
    ref = predict_logits(model, x, bf16=False, batch_size=CHECK_BATCH).numpy()
    t1 = time.perf_counter()
    xs = x.contiguous().numpy()
    got = np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: xs[i:i + CHECK_BATCH]})[0]
                          for i in range(0, len(xs), CHECK_BATCH)]) if len(xs) else np.empty((0, 10))
    t2 = time.perf_counter()
    diff = float(np.abs(ref - got).max()) if len(xs) else 0.0
    mismatches = int((ref.argmax(1) != got.argmax(1)).sum())
    return Equivalence(len(xs), diff, mismatches, len(xs) / max(t1 - t0, 1e-9), len(xs) / max(t2 - t1, 1e-9))


def evaluate_onnx(classifier: OnnxClassifier, split):
    """inference.evaluate's result for the onnxruntime backend: the same numbers from the same images."""
    from .inference import EVAL_BATCH, EvalResult
    from .metrics import accuracy, confusion_matrix

    xs = images_to_tensor(split.images).contiguous().numpy()  # (N, 1, 28, 28)
    t0 = time.perf_counter()
    pred = np.concatenate([classifier.logits(xs[i:i + EVAL_BATCH]).argmax(1)
                           for i in range(0, len(xs), EVAL_BATCH)]) if len(xs) else np.empty(0, np.int64)
    seconds = time.perf_counter() - t0
    correct = int((pred == split.labels).sum())
    return EvalResult(accuracy(pred, split.labels), correct, len(pred), pred,
                      confusion_matrix(pred, split.labels), seconds)
