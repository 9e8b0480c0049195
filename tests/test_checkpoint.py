"""Checkpoints: round trip, tampering refused with a clear message, never unpickled, atomic under failure."""

import json
import os
import pickle
import struct
import subprocess

import pytest
import torch
from safetensors.torch import save_file

from digitocr.checkpoint import META_KEY, read_checkpoint, save_checkpoint
from digitocr.config import ModelConfig
from digitocr.errors import DigitocrError
from digitocr.fsutil import atomic_write_text, remove_stale_temp_files
from digitocr.model import build_model
from digitocr.registry import load_model

CFG = ModelConfig()


def _meta(**extra):
    return {"model_config": CFG.__dict__ | {"widths": list(CFG.widths)}, "iterations": 7, **extra}


def _save(path, model=None, **meta):
    model = model or build_model(CFG)
    save_checkpoint(path, model, _meta(**meta))
    return model


def test_round_trip_with_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = build_model(CFG)
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 1, 28, 28)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c.safetensors", model, _meta(), opt, torch.get_rng_state())
    tensors, meta = read_checkpoint(tmp_path / "c.safetensors")
    assert meta["iterations"] == 7 and "optimizer" in meta
    assert torch.equal(tensors["rng.torch"], torch.get_rng_state())
    loaded = load_model(tmp_path / "c.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)


def _tamper(path, mutate):
    tensors, meta = read_checkpoint(path)
    tensors = mutate(dict(tensors))
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta)})


@pytest.mark.parametrize("mutate, message", [
    (lambda t: {**t, "model.fc2.weight": torch.zeros(3, 3)}, "fc2.weight is"),
    (lambda t: {**t, "model.fc2.weight": t["model.fc2.weight"].double()}, "float64"),
    (lambda t: {k: v for k, v in t.items() if k != "model.conv1.bias"}, "missing"),
    (lambda t: {**t, "model.evil": torch.zeros(1)}, "unexpected"),
    (lambda t: {**t, "model.fc2.bias": torch.full((10,), float("nan"))}, "NaN"),
])
def test_tampered_tensors_are_refused(tmp_path, mutate, message):
    path = tmp_path / "c.safetensors"
    _save(path)
    _tamper(path, mutate)
    with pytest.raises(DigitocrError, match=message):
        load_model(path)


def test_not_safetensors_and_bad_headers(tmp_path):
    cases = {
        "empty": b"",
        "text": b"hello, I am not a checkpoint",
        "huge-header": struct.pack("<Q", 2**60) + b"{}",
        "bad-json": struct.pack("<Q", 5) + b"{nope",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DigitocrError, match="not a valid safetensors"):
            read_checkpoint(tmp_path / name)
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")  # an ONNX file's first bytes
    with pytest.raises(DigitocrError, match="read with --backend onnxruntime"):
        read_checkpoint(tmp_path / "model.onnx")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign"))
    with pytest.raises(DigitocrError, match="not a digitocr checkpoint"):
        read_checkpoint(tmp_path / "foreign")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "badmeta"), metadata={META_KEY: "{]"})
    with pytest.raises(DigitocrError, match="corrupt digitocr metadata"):
        read_checkpoint(tmp_path / "badmeta")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_never_executes_code(tmp_path):
    """A pickle whose unpickling would create a file is refused, and the file never appears."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"model.fc1.weight": _Payload(str(marker))}))
    torch.save({"x": _Payload(str(marker))}, tmp_path / "evil.pt")
    for path in (evil, tmp_path / "evil.pt"):
        with pytest.raises(DigitocrError):
            load_model(path)
    assert not marker.exists()


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    first = _save(path)
    before = path.read_bytes()

    def disk_full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("digitocr.checkpoint.save_file", disk_full)
    with pytest.raises(DigitocrError, match=r"No space left on device.*previous checkpoint is intact"):
        _save(path, first)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left behind


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 1 MiB file system (needs root and mount; skipped where that is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_full_disk_and_read_only_folder(small_tmpfs):
    path = small_tmpfs / "c.safetensors"
    small = ModelConfig(fc_size=8)  # 8 KB of weights: fits; the seed net's 1 MB does not
    model = build_model(small)
    save_checkpoint(path, model, {"model_config": small.__dict__ | {"widths": [1, 1, 1]}, "iterations": 1})
    before = path.read_bytes()
    with pytest.raises(DigitocrError, match="No space left on device"):
        _save(path)  # the full seed network (~1 MB) no longer fits beside the old file
    assert path.read_bytes() == before
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    with pytest.raises(DigitocrError, match="Read-only file system"):
        save_checkpoint(path, model, {"model_config": small.__dict__ | {"widths": [1, 1, 1]}, "iterations": 2})
    assert path.read_bytes() == before
    with pytest.raises(OSError) as e:  # the file being written is named, not its temp file
        atomic_write_text(small_tmpfs / "config.json", "{}")
    assert e.value.filename == str(small_tmpfs / "config.json")


def test_stale_temp_files_are_removed_and_a_folder_is_not_a_checkpoint(tmp_path):
    stale = tmp_path / ".checkpoint.safetensors.0123abcd.tmp"  # a kill -9 mid-write leaves one
    stale.write_bytes(b"x" * 100)
    other = tmp_path / ".notes.txt.0123abcd.tmp"
    other.write_bytes(b"y")
    remove_stale_temp_files(tmp_path / "checkpoint.safetensors")
    assert not stale.exists() and other.exists()
    with pytest.raises(DigitocrError, match="a folder, not a checkpoint file"):
        read_checkpoint(tmp_path)


def test_checkpoints_get_the_umask_mode_like_any_new_file(tmp_path):
    """safetensors re-creates the file it writes as 0600; shared run folders must stay readable by the group."""
    old = os.umask(0o022)
    try:
        _save(tmp_path / "c.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "c.safetensors").stat().st_mode & 0o777 == 0o644
