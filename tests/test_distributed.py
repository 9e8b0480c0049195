"""torchrun with 2 CPU processes (gloo) trains like one process with the same global batch."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from digitocr.registry import load_model

STEPS, BATCH = 300, 32


def _args(run, data_dir):
    return ["-m", "digitocr", "train", "--run-dir", str(run), "--data-dir", str(data_dir), "--validation-size", "100",
            "--iterations", str(STEPS), "--batch-size", str(BATCH), "--lr", "0.001", "--precision", "fp32",
            "--threads", "1", "--no-progress"]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path, synthetic_dir):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, *_args(tmp_path / "single", synthetic_dir)],
                            capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2",
                          *_args(tmp_path / "ddp", synthetic_dir)], capture_output=True, text=True, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    # rank 0 alone prints the notebook's lines, once per 100 steps
    assert ddp.stdout.count("Optimization Iteration:") == STEPS // 100
    assert ddp.stdout.count("Saved ") == 1  # and the closing line, once
    a, b = load_model(tmp_path / "single"), load_model(tmp_path / "ddp")
    assert b.iterations == STEPS
    for k, v in a.model.state_dict().items():  # same math, different summation order
        torch.testing.assert_close(b.model.state_dict()[k], v, rtol=1e-3, atol=1e-4)
    env_json = (tmp_path / "ddp" / "environment.json").read_text()
    assert '"world_size": 2' in env_json
    # resume under torchrun continues from rank 0's checkpoint
    more = [torchrun, "--standalone", "--nproc-per-node", "2", *_args(tmp_path / "ddp", synthetic_dir)]
    more[more.index(str(STEPS))] = "100"
    resumed = subprocess.run(more, capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("Continuing ") == 1
    assert load_model(tmp_path / "ddp").iterations == STEPS + 100
