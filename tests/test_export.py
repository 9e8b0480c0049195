"""ONNX export: the exported graph against PyTorch (the reference), dynamic batches, the cache, the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from digitocr.checkpoint import save_checkpoint
from digitocr.classifier import TorchClassifier, load_classifier
from digitocr.cli import main
from digitocr.config import ModelConfig
from digitocr.export import OnnxClassifier, cached_export_path, onnx_session
from digitocr.model import build_model
from digitocr.registry import load_model

MODEL = os.environ.get("DIGITOCR_TEST_MODEL", "seed")  # a trained model, for the served-backend test
SYNTH_VALIDATION = "100"  # the synthetic set has 600 training images


def random_checkpoint(path, arch: str, seed: int = 0):
    """A freshly initialised network (BatchNorm statistics randomised too), saved as a checkpoint."""
    torch.manual_seed(seed)
    cfg = ModelConfig(arch=arch, widths=(8, 16, 32), channels=(4, 8, 12))
    model = build_model(cfg).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    save_checkpoint(path, model, {"model_config": asdict(cfg), "iterations": 0})
    return path


def torch_logits(checkpoint, x: np.ndarray) -> np.ndarray:
    model = load_model(checkpoint).model
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, synthetic_dir):
    """`digitocr export --json` of a seed-arch checkpoint, written where OnnxClassifier looks for its cache:
    (checkpoint, onnx file, the command's report)."""
    ckpt = random_checkpoint(tmp_path_factory.mktemp("seed") / "checkpoint.safetensors", "seed")
    out = cached_export_path(ckpt)
    argv = ["export", "--model", ckpt, "--out", out, "--data-dir", synthetic_dir,
            "--validation-size", SYNTH_VALIDATION, "--json"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main([str(a) for a in argv]) == 0
    return ckpt, out, json.loads(stdout.getvalue())


def test_export_command_checks_against_torch(exported):
    _, out, report = exported
    assert report["out"] == str(out) and out.is_file()
    assert report["images"] == 200  # the synthetic test split
    assert report["identical_predictions"] is True and report["prediction_mismatches"] == 0
    assert 0 <= report["max_abs_logit_diff"] < 1e-4
    assert report["opset"] >= 17


def test_an_onnx_model_with_another_interface_is_one_line(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from digitocr import export
    from digitocr.errors import DigitocrError

    wrong = tmp_path / "wrong.onnx"
    with monkeypatch.context() as m:
        m.setattr(export, "INPUT_NAME", "x")  # someone else's export: another input name
        export.export_onnx(build_model(ModelConfig()), wrong)
    with pytest.raises(DigitocrError, match="not a digitocr ONNX export"):
        export.OnnxClassifier.from_model(wrong)
    image = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(image)
    assert main(["read", str(image), "--model", str(wrong), "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs input 'images'" in err and "\n" not in err


def test_bad_check_arguments_leave_an_existing_export_alone(tmp_path, capsys):
    out = tmp_path / "good.onnx"
    out.write_bytes(b"an export that works")
    assert main(["export", "--model", "seed", "--out", str(out), "--images", str(tmp_path / "x")]) == 2
    assert "go together" in capsys.readouterr().err
    assert out.read_bytes() == b"an export that works"


def test_export_onto_a_folder_names_the_folder(tmp_path, capsys):
    assert main(["export", "--model", "seed", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{tmp_path}: Is a directory") and "\n" not in err and ".tmp" not in err
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


@pytest.mark.parametrize("arch", ["seed", "best", "simple"])
def test_onnx_matches_torch_with_a_dynamic_batch(tmp_path, arch, exported):
    if arch == "seed":
        ckpt, path, _ = exported
    else:
        ckpt = random_checkpoint(tmp_path / f"{arch}.safetensors", arch)
        path = Path(OnnxClassifier.from_model(ckpt).name)  # exported into the cache
    session = onnx_session(path, threads=1)
    (inp,) = session.get_inputs()
    assert inp.shape[1:] == [1, 28, 28] and not isinstance(inp.shape[0], int)  # the batch axis is symbolic
    rng = np.random.default_rng(0)
    for n in (1, 7, 64):
        x = rng.random((n, 1, 28, 28), dtype=np.float32)
        got = session.run(None, {inp.name: x})[0]
        want = torch_logits(ckpt, x)
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
        assert (got.argmax(1) == want.argmax(1)).all()


def test_onnx_classifier_keeps_the_classifier_contract(exported):
    ckpt, out, _ = exported
    before = out.stat().st_mtime_ns
    onnx = load_classifier(str(ckpt), backend="onnxruntime")
    assert isinstance(onnx, OnnxClassifier) and onnx.name == str(out)
    assert out.stat().st_mtime_ns == before  # the cached export was reused, not redone
    reference = TorchClassifier(load_model(ckpt), precision="fp32")
    crops = np.random.default_rng(1).random((5, 28, 28), dtype=np.float32)
    probs = onnx(crops)
    assert probs.shape == (5, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(probs, reference(crops), atol=1e-5)
    assert onnx(np.zeros((0, 28, 28), np.float32)).shape == (0, 10)
    assert OnnxClassifier.from_model(out).name == str(out)  # a .onnx file loads as it is


def test_new_weights_get_a_new_export(tmp_path):
    ckpt = random_checkpoint(tmp_path / "checkpoint.safetensors", "seed", seed=1)
    first = cached_export_path(ckpt)
    assert first.parent == tmp_path and first.name.startswith("checkpoint.")
    random_checkpoint(ckpt, "seed", seed=2)
    assert cached_export_path(ckpt) != first


def test_evaluate_with_onnxruntime_equals_torch(exported, synthetic_dir, capsys):
    ckpt = exported[0]
    common = ["evaluate", "--model", str(ckpt), "--data-dir", str(synthetic_dir),
              "--validation-size", SYNTH_VALIDATION, "--precision", "fp32", "--json"]
    results = []
    for backend in ("torch", "onnxruntime"):
        assert main([*common, "--backend", backend]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["confusion"] == results[1]["confusion"]
    assert results[0]["accuracy"] == results[1]["accuracy"]
    onnx_file = exported[1]  # the .onnx file itself, as README's `--backend onnxruntime` promises
    assert main([*common[:2], str(onnx_file), *common[3:], "--backend", "onnxruntime"]) == 0
    assert json.loads(capsys.readouterr().out)["confusion"] == results[0]["confusion"]


def test_server_with_the_onnxruntime_backend_reads_like_torch():
    from fastapi.testclient import TestClient
    from PIL import Image, ImageDraw

    from digitocr.serve import ServeSettings, create_app

    img = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(img).line([(50, 50), (150, 50), (90, 170)], fill=0, width=14)  # a "7"
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    png = buf.getvalue()
    bodies = []
    for backend in ("torch", "onnxruntime"):
        with TestClient(create_app(ServeSettings(model=MODEL, backend=backend, threads=1))) as c:
            bodies.append(c.post("/v1/read?crops=1", content=png).json())
            assert c.get("/v1/models").json()["serving"]["backend"] == backend
    assert bodies[0]["text"] == bodies[1]["text"] == "7"
    torch_probs, onnx_probs = (b["digits"][0]["probabilities"] for b in bodies)
    np.testing.assert_allclose(torch_probs, onnx_probs, atol=2e-2)  # torch may use bf16 where the CPU has it
