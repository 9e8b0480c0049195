import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from digitocr.config import TrainConfig, preset
from digitocr.data.tensors import BatchOrder
from digitocr.inference import evaluate
from digitocr.registry import load_model
from digitocr.train import fit, lr_at, resume_config


def test_batch_order_is_stateless_and_covers_each_epoch():
    order = BatchOrder(n=10, batch_size=4, seed=1)
    stream = torch.cat([order.indices(i) for i in range(5)])  # 20 positions = two epochs
    assert sorted(stream[:10].tolist()) == list(range(10)) and sorted(stream[10:].tolist()) == list(range(10))
    assert torch.equal(BatchOrder(10, 4, 1).indices(3), order.indices(3))  # no hidden state
    assert not torch.equal(BatchOrder(10, 4, 2).indices(0), order.indices(0))


def test_onecycle_schedule_warms_up_then_anneals():
    cfg = preset("fast")
    lrs = [lr_at(s, cfg, 100) for s in range(100)]
    peak = int(np.argmax(lrs))
    assert lrs[0] < cfg.lr and abs(max(lrs) - cfg.lr) < 1e-12 and 0 < peak < 99
    assert lrs[-1] < lrs[0] and all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:], strict=False))


def test_loss_falls_on_a_small_batch(synthetic_dataset):
    cfg = TrainConfig(iterations=60, batch_size=32, lr=1e-3, precision="fp32", validation_size=0)
    model = fit(cfg, data=synthetic_dataset, progress=False, quiet=True).model
    assert evaluate(model, synthetic_dataset.test).accuracy > 0.9  # chance is 0.1


def _weights(run_dir):
    return load_model(run_dir).model.state_dict()


def test_resume_equals_one_unbroken_run(tmp_path, synthetic_dataset):
    """The notebook's cumulative optimize(): 100 then 900 iterations == 1000 at once, bitwise in fp32."""
    base = dict(batch_size=16, precision="fp32", checkpoint_every=0, seed=5)
    fit(TrainConfig(iterations=1000, **base), tmp_path / "once", synthetic_dataset, progress=False, quiet=True)
    fit(TrainConfig(iterations=100, **base), tmp_path / "split", synthetic_dataset, progress=False, quiet=True)
    cfg = resume_config(tmp_path / "split", {"iterations": 900})
    result = fit(cfg, tmp_path / "split", synthetic_dataset, progress=False, quiet=True)
    assert result.iterations == 1000
    once, split = _weights(tmp_path / "once"), _weights(tmp_path / "split")
    for k in once:
        torch.testing.assert_close(split[k], once[k], rtol=0, atol=1e-6)


def test_run_folder_records_config_metrics_environment(tmp_path, synthetic_dataset):
    fit(TrainConfig(iterations=150, batch_size=16, seed=3), tmp_path, synthetic_dataset, progress=False,
        quiet=True)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["model"]["num_filters2"] == 36 and cfg["schedule_iterations"] == 150
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics if "train_accuracy" in m] == [1, 101]
    assert metrics[-1]["split"] == "validation"
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["torch_threads"] >= 1


def test_changing_the_recipe_of_a_run_is_refused(tmp_path, synthetic_dataset):
    from digitocr.errors import DigitocrError

    fit(TrainConfig(iterations=5, batch_size=16), tmp_path, synthetic_dataset, progress=False, quiet=True)
    with pytest.raises(DigitocrError, match="lr"):
        resume_config(tmp_path, {"lr": 0.5})


def test_ctrl_c_saves_a_loadable_checkpoint(tmp_path, synthetic_dir):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "digitocr", "train", "--run", str(run), "--data-dir", str(synthetic_dir),
           "--validation-size", "100", "--iterations", "100000", "--batch-size", "16", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:  # wait until training is under way
        if "Optimization Iteration:    101" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "checkpoint saved" in out
    loaded = load_model(run)
    assert 101 <= loaded.iterations < 100_000
    # the same command would add 100,000 more; the message names the one that finishes this one
    assert f"Interrupted after iteration {loaded.iterations} of 100000" in out
    assert f"digitocr train --run {run} --until 100000" in out


def test_the_finishing_command_quotes_the_path_and_repeats_resume_settings():
    import argparse

    from digitocr.cli.train import finish_command

    args = argparse.Namespace(device="cpu", threads=1, precision=None, checkpoint_every=None, eval_every=None)
    assert finish_command(args, "runs/my run", 500) == \
        "digitocr train --run 'runs/my run' --until 500 --device cpu --threads 1"


def test_an_explicit_iterations_wins_over_epochs_even_when_equal_to_the_saved_count(tmp_path, synthetic_dataset):
    cfg = preset("fast", epochs=1, batch_size=16, validation_size=0)  # saved iterations: the default 10,000
    fit(dataclasses.replace(cfg, iterations=cfg.iterations, checkpoint_every=0), tmp_path, synthetic_dataset,
        progress=False, quiet=True)
    resumed = resume_config(tmp_path, {"iterations": cfg.iterations, "epochs": None})
    assert resumed.epochs is None and resumed.iterations == cfg.iterations  # not another epoch


@pytest.mark.slow
def test_seed_recipe_reaches_90_percent_after_1000_iterations(mnist):
    """The notebook reached 92.7% after 1,000 iterations."""
    result = fit(preset("seed", iterations=1000), data=mnist, progress=False, quiet=True)
    assert evaluate(result.model, mnist.test).accuracy >= 0.90


def test_a_diverged_run_keeps_its_last_good_checkpoint(tmp_path, synthetic_dataset):
    from digitocr.errors import DigitocrError

    base = dict(batch_size=16, checkpoint_every=0, validation_size=0)
    fit(TrainConfig(iterations=5, **base), tmp_path, synthetic_dataset, progress=False, quiet=True)
    good = (tmp_path / "checkpoint.safetensors").read_bytes()
    cfg = dataclasses.replace(resume_config(tmp_path, {"iterations": 20}), lr=1e30)  # as a hand-edited config
    with pytest.raises(DigitocrError, match=r"diverged.*iteration 5 is kept"):
        fit(cfg, tmp_path, synthetic_dataset, progress=False, quiet=True)
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == good
    assert load_model(tmp_path).iterations == 5

    def blow_up_after_12(done, model, seconds):  # a checkpoint at 10, then the weights go bad
        if done == 12:
            next(model.parameters()).data.fill_(float("nan"))
        return False

    periodic = resume_config(tmp_path, {"iterations": 20, "checkpoint_every": 10})
    with pytest.raises(DigitocrError, match=r"by iteration 20 .*iteration 10 is kept"):
        fit(periodic, tmp_path, synthetic_dataset, progress=False, quiet=True, hook=blow_up_after_12)
    assert load_model(tmp_path).iterations == 10


def test_metrics_of_a_killed_attempt_and_torn_lines_are_dropped(tmp_path, synthetic_dataset):
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 1, "train_accuracy": 0.5}\n{"iteration": 801, "tr')
    cfg = TrainConfig(iterations=150, batch_size=16, validation_size=0)
    fit(cfg, tmp_path, synthetic_dataset, progress=False, quiet=True)  # no checkpoint: a fresh run
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first = [r["iteration"] for r in records]
    assert [r["iteration"] for r in records if "train_accuracy" in r] == [1, 101] and 801 not in first  # this run's
    assert records[0]["invocation"]["iterations"] == 150 and records[0]["invocation"]["precision"] == "auto"
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 170, "tra')  # torn by a kill after the checkpoint at 150
    fit(resume_config(tmp_path, {"iterations": 10}), tmp_path, synthetic_dataset, progress=False, quiet=True)
    after = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in after[:len(first)]] == first  # every line parses: the torn one is gone
    assert max(r["iteration"] for r in after) <= 160 and after[len(first)]["invocation"]["iterations"] == 10
