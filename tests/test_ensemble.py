import json

import numpy as np
import pytest
import torch

from digitocr.checkpoint import read_checkpoint, save_checkpoint
from digitocr.classifier import load_classifier
from digitocr.cli import main
from digitocr.config import ModelConfig
from digitocr.ensemble import ENSEMBLE_FILE, Ensemble, pack
from digitocr.errors import DigitocrError
from digitocr.model import build_model
from digitocr.registry import load_model

SMALL = {"seed": ModelConfig(init="default"), "best": ModelConfig(arch="best", widths=(8, 16, 32)),
         "simple": ModelConfig(arch="simple", kernel=7, channels=(4, 8, 12))}


def _members(k: int, arch: str = "seed") -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [build_model(SMALL[arch]).eval() for _ in range(k)]


def _member_files(tmp_path, members) -> list:
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"m{i}.safetensors")
        save_checkpoint(paths[-1], m, {"model_config": m.cfg.__dict__, "iterations": 7, "seed": i})
    return paths


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_ensemble_probabilities_are_the_mean_of_its_members(arch):
    members = _members(3, arch)
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        reference = torch.stack([m(x).softmax(1) for m in members]).mean(0)  # (6, 10)
        got = Ensemble(members).eval()(x).softmax(1)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-6)


def test_packed_ensemble_loads_as_a_model_and_as_a_classifier(tmp_path):
    members = _members(3)
    out = tmp_path / "ens.safetensors"
    pack(_member_files(tmp_path, members), out)
    tensors, meta = read_checkpoint(out)
    assert len(meta["ensemble"]["members"]) == 3 and not any(k.startswith("optimizer.") for k in tensors)

    loaded = load_model(out)
    assert loaded.members == 3 and isinstance(loaded.model, Ensemble)
    crops = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    probs = load_classifier(str(out), precision="fp32")(crops)  # the OCR/server contract: (N, 10) probs
    x = torch.from_numpy(crops).unsqueeze(1)
    with torch.no_grad():
        reference = torch.stack([m(x).softmax(1) for m in members]).mean(0).numpy()
    assert probs.shape == (5, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, reference, rtol=1e-5, atol=1e-6)


def test_one_member_packs_to_a_plain_weights_only_checkpoint(tmp_path):
    out = tmp_path / "one.safetensors"
    pack(_member_files(tmp_path, _members(1)), out)
    tensors, meta = read_checkpoint(out)
    assert "ensemble" not in meta and all(k.startswith("model.") for k in tensors)
    assert load_model(out).members == 1


def test_an_ensemble_cannot_be_packed_into_another(tmp_path):
    out = tmp_path / "ens.safetensors"
    pack(_member_files(tmp_path, _members(2)), out)
    with pytest.raises(DigitocrError, match="already an ensemble"):
        pack([out, out], tmp_path / "nested.safetensors")


@pytest.fixture
def restore_threads():
    """Training with --threads 1 sets torch's process-wide thread count; put it back for later tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_train_ensemble_end_to_end_then_evaluate(tmp_path, synthetic_dir, capsys, restore_threads):
    """`train --ensemble 2` trains member-0/1 with seeds 0/1; a second call keeps them; evaluate reads it."""
    run = tmp_path / "ens"
    argv = ["train", "--preset", "fast", "--ensemble", "2", "--run", str(run), "--data-dir", str(synthetic_dir),
            "--validation-size", "100", "--iterations", "40", "--batch-size", "32", "--no-progress",
            "--threads", "1"]  # one thread: on a busy machine, two spin-waiting threads run 10x slower
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Validation accuracy: members " in out and "(2 members;" in out
    assert (run / ENSEMBLE_FILE).exists() and (run / "member-1" / "checkpoint.safetensors").exists()
    seeds = [m["seed"] for m in read_checkpoint(run / ENSEMBLE_FILE)[1]["ensemble"]["members"]]
    assert seeds == [0, 1]
    assert main(argv) == 0  # idempotent: both members have finished their schedules
    assert capsys.readouterr().out.count("is trained (40 iterations); kept") == 2
    mixed = [a if a != "2" else "3" for a in argv] + ["--lr", "0.05"]
    assert main(mixed) == 2  # a third member with another recipe is refused, not mixed in
    err = capsys.readouterr().err
    assert "member-0 was trained with lr=" in err and len(err.strip().splitlines()) == 1
    assert not (run / "member-2").exists()
    assert main(["evaluate", "--model", str(run), "--data-dir", str(synthetic_dir), "--validation-size", "100",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.9  # chance is 0.1
    assert main(["evaluate", "--model", str(run), "--split", "validation", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 100  # the members' data, found without --data-dir
    assert load_model(run).members == 2
    one = [a if a != "2" else "1" for a in argv[:argv.index("--run") + 1]] + [str(tmp_path / "one")] \
        + argv[argv.index("--run") + 2:]
    assert main(one) == 0  # K = 1: its one member is the model
    out = capsys.readouterr().out
    assert "Validation accuracy: members" not in out and "Validation accuracy: " in out and "(1 member;" in out


def test_half_packed_file_is_half_the_size_and_loads_as_it_was_measured(tmp_path):
    members = _members(2)
    paths = _member_files(tmp_path, members)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    pack(paths, full)
    returned = pack(paths, half, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half).model
    want = returned.state_dict()  # the weights pack() returned: what a card measures
    assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), load_model(full).model(x), rtol=1e-2, atol=1e-2)


def test_members_of_different_architectures_pack_and_load(tmp_path):
    """Diverse ensembles (BENCHMARKS.md): seed, best and simple networks in one file, each rebuilt as itself."""
    members = [_members(1, arch)[0] for arch in sorted(SMALL)]
    out = tmp_path / "mixed.safetensors"
    pack(_member_files(tmp_path, members), out)
    loaded = load_model(out)
    assert loaded.members == 3
    assert [type(m).__name__ for m in loaded.model.members] == ["BestNet", "SeedNet", "SimpleNet"]
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        reference = torch.stack([m(x).softmax(1) for m in members]).mean(0)
        torch.testing.assert_close(loaded.model(x.contiguous(memory_format=torch.channels_last)).softmax(1),
                                   reference, rtol=1e-4, atol=1e-5)
