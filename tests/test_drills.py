"""Failure drills: training killed with SIGKILL at random moments resumes to the same weights."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from digitocr.registry import load_model

TOTAL, EVERY, KILLS = 400, 25, 10


def _train_cmd(run, data_dir):
    return [sys.executable, "-m", "digitocr", "train", "--run", str(run), "--data-dir", str(data_dir),
            "--validation-size", "100", "--until", str(TOTAL), "--batch-size", "16", "--precision", "fp32",
            "--checkpoint-every", str(EVERY), "--no-progress", "--threads", "1"]


@pytest.mark.slow
def test_kill_9_at_random_moments_resumes_to_identical_weights(tmp_path, synthetic_dir):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(_train_cmd(tmp_path / "clean", synthetic_dir), check=True, capture_output=True, env=env)
    rng = random.Random(1234)
    run = tmp_path / "killed"
    seen = []
    for _ in range(KILLS):
        proc = subprocess.Popen(_train_cmd(run, synthetic_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, text=True)
        for line in proc.stdout:  # wait until it is training, then kill it at a random moment
            if "Optimization Iteration" in line or "Saved" in line:
                break
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (run / "checkpoint.safetensors").exists():
            seen.append(load_model(run).iterations)  # never corrupt: loads every time
    done = subprocess.run(_train_cmd(run, synthetic_dir), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert seen == sorted(seen) and len(set(seen)) > 1  # progress was made across kills
    clean, resumed = load_model(tmp_path / "clean"), load_model(run)
    assert resumed.iterations == clean.iterations == TOTAL
    for k, v in clean.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    leftovers = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [] or all(n.startswith(".") for n in leftovers)
