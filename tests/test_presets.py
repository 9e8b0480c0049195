import dataclasses

import pytest
import torch

from digitocr.config import PRESETS, AugmentConfig, ModelConfig, TrainConfig, preset
from digitocr.data.tensors import BatchOrder
from digitocr.errors import DigitocrError
from digitocr.inference import evaluate, even_batch_size, predict_logits
from digitocr.model import build_model, count_parameters
from digitocr.registry import load_model
from digitocr.train import EpochBatches, fit, iterations_for, resume_config

SEED_NET_PARAMETERS = 242_062  # the notebook's network


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves_and_round_trips_through_json(name):
    cfg = preset(name)
    assert cfg.preset == name and iterations_for(cfg, 55_000) > 0
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # what config.json in a run folder holds
    model = build_model(cfg.model).eval()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_fast_preset_trains_the_notebooks_network():
    cfg = preset("fast")
    assert cfg.model.arch == "seed" and count_parameters(build_model(cfg.model)) == SEED_NET_PARAMETERS
    assert cfg.eval_every == 0 and not cfg.augment  # nothing but training inside the timed loop


def test_unknown_preset_is_one_clear_error():
    with pytest.raises(DigitocrError, match="unknown preset 'fastest'"):
        preset("fastest")


def test_old_configs_without_the_new_fields_still_load():
    d = TrainConfig().to_dict()
    del d["augmentation"], d["model"]["init"]
    cfg = TrainConfig.from_dict(d)
    assert cfg.augmentation == AugmentConfig() and cfg.model.init == "notebook"


def test_default_init_differs_from_the_notebooks_but_not_the_network():
    torch.manual_seed(0)
    notebook = build_model(ModelConfig())
    torch.manual_seed(0)
    default = build_model(ModelConfig(init="default"))
    assert count_parameters(default) == SEED_NET_PARAMETERS
    assert (notebook.conv1.bias == 0.05).all() and not (default.conv1.bias == 0.05).all()


@pytest.mark.parametrize("n,batch", [(10, 4), (12, 4), (7, 10), (5, 1)])
def test_epoch_batches_serve_exactly_batch_orders_batches(n, batch):
    """Slicing a once-per-epoch shuffled copy must give the same batches as indexing per step."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 28, 28).contiguous()
    y = torch.arange(n)
    order = BatchOrder(n, batch, seed=3)
    batches = EpochBatches(x, y, order)
    for it in range(3 * n):
        idx = order.indices(it)
        bx, by = batches(it)
        assert torch.equal(by, y[idx]) and torch.equal(bx, x[idx])


@pytest.fixture
def restore_threads():
    """Training with --threads 1 sets torch's process-wide thread count; put it back for later tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_fast_preset_learns_the_synthetic_digits(synthetic_dataset, restore_threads):
    cfg = preset("fast", iterations=40, batch_size=32, threads=1)
    cfg = dataclasses.replace(cfg, epochs=None)
    result = fit(cfg, data=synthetic_dataset, progress=False, quiet=True)
    assert result.iterations == 40
    assert evaluate(result.model, synthetic_dataset.test).accuracy > 0.9  # chance is 0.1


@pytest.mark.parametrize("n", [1, 255, 256, 257, 5_000, 10_000])
def test_evaluation_batches_cover_every_image_in_one_shape_where_they_can(n):
    size = even_batch_size(n, 256)
    sizes = [min(size, n - i) for i in range(0, n, size)]
    assert sum(sizes) == n and max(sizes) <= 256 and len(set(sizes[:-1])) <= 1
    if n % len(sizes) == 0:
        assert len(set(sizes)) == 1  # 10,000 test images: 40 batches of 250, one oneDNN kernel set


def test_batched_prediction_equals_one_big_batch():
    torch.manual_seed(0)
    model = build_model(ModelConfig(init="default")).eval()
    x = torch.rand(300, 1, 28, 28)
    with torch.no_grad():
        reference = model(x)
    torch.testing.assert_close(predict_logits(model, x, batch_size=64), reference, rtol=1e-4, atol=1e-5)


def test_fast_preset_resumes_bitwise_in_fp32(tmp_path, synthetic_dataset, restore_threads):
    """The fast path (epoch slices, fused Adam on channels_last weights): 30 + 30 steps == 60 steps."""
    base = dict(batch_size=32, precision="fp32", checkpoint_every=0, threads=1)
    cfg = dataclasses.replace(preset("fast", iterations=60, **base), epochs=None)
    fit(cfg, tmp_path / "once", synthetic_dataset, progress=False, quiet=True)
    first = dataclasses.replace(cfg, iterations=30, schedule_iterations=60)
    fit(first, tmp_path / "split", synthetic_dataset, progress=False, quiet=True)
    fit(resume_config(tmp_path / "split", {"iterations": 30}), tmp_path / "split", synthetic_dataset,
        progress=False, quiet=True)
    once, split = (load_model(tmp_path / d).model.state_dict() for d in ("once", "split"))
    assert all(torch.equal(once[k], split[k]) for k in once)
