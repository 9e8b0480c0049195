"""End to end through digitocr.cli.main, on the synthetic IDX dataset (no network)."""

import json
import shutil

import numpy as np
import pytest

from digitocr.cli import main
from digitocr.data.idx import write_idx


def run_cli(capsys, *args):
    """(exit code, stdout, stderr), whether the error came from argparse (SystemExit) or from the command."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, synthetic_dir):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--run", str(run), "--data-dir", str(synthetic_dir), "--validation-size", "100",
                 "--iterations", "120", "--batch-size", "32", "--lr", "0.001", "--no-progress"]) == 0
    return run


def test_train_prints_the_notebooks_lines_and_continues(capsys, trained_run, synthetic_dir):
    code, out, _ = run_cli(capsys, "train", "--run", trained_run, "--data-dir", synthetic_dir,
                           "--iterations", "100", "--no-progress")
    assert code == 0
    assert "Continuing" in out
    assert "Optimization Iteration:    201, Training Accuracy:" in out  # continues at 121..220
    assert "Time usage: 0:00:" in out and "(220 iterations)" in out
    lines = (trained_run / "metrics.jsonl").read_text()
    code, out, _ = run_cli(capsys, "train", "--run", trained_run, "--data-dir", synthetic_dir,
                           "--until", "220", "--no-progress")
    assert code == 0 and "(220 iterations)" in out  # --until is idempotent
    assert (trained_run / "metrics.jsonl").read_text() == lines  # and a run that trains nothing records nothing


def test_evaluate_text_and_json(capsys, trained_run, synthetic_dir):
    code, out, _ = run_cli(capsys, "evaluate", "--model", trained_run, "--data-dir", synthetic_dir,
                           "--validation-size", "100")
    assert code == 0 and out.startswith("Accuracy on Test-Set: ") and "/ 200)" in out
    code, out, _ = run_cli(capsys, "evaluate", "--model", trained_run, "--data-dir", synthetic_dir, "--json",
                           "--split", "validation", "--validation-size", "100")
    result = json.loads(out)
    assert result["total"] == 100 and result["iterations"] >= 120
    assert sum(map(sum, result["confusion"])) == 100 and result["correct"] == round(result["accuracy"] * 100)


def test_evaluate_and_plot_a_run_on_the_data_it_trained_on(capsys, trained_run, tmp_path):
    code, out, _ = run_cli(capsys, "evaluate", "--model", trained_run, "--json", "--split", "validation")
    assert code == 0 and json.loads(out)["total"] == 100  # the run's data and validation size, not MNIST's
    code, out, _ = run_cli(capsys, "evaluate", "--model", trained_run / "checkpoint.safetensors", "--json",
                           "--split", "validation")
    assert code == 0 and json.loads(out)["total"] == 100  # its checkpoint file, inside the run folder
    code, out, _ = run_cli(capsys, "plot", "samples", "--model", trained_run, "--out", tmp_path)
    assert code == 0 and (tmp_path / "samples.png").is_file()


def test_a_loose_checkpoint_names_its_dataset(tmp_path):
    import argparse

    from digitocr.checkpoint import save_checkpoint
    from digitocr.cli.common import data_args_for_model
    from digitocr.config import ModelConfig
    from digitocr.model import build_model

    def args() -> argparse.Namespace:
        return argparse.Namespace(dataset=None, data_dir=None, validation_size=None)

    for dataset, expected in (("fashion-mnist", "fashion-mnist"), ("custom", None)):  # a custom folder: unnamed
        path = tmp_path / f"{dataset}.safetensors"
        save_checkpoint(path, build_model(ModelConfig()), {"model_config": ModelConfig().__dict__, "iterations": 1,
                                                          "dataset": dataset})
        assert data_args_for_model(args(), str(path)).dataset == expected
    assert data_args_for_model(args(), "seed").dataset is None  # a bundled name: the defaults


def test_bad_training_values_exit_2_with_one_line(capsys, tmp_path, trained_run, synthetic_dir):
    data = ["--data-dir", synthetic_dir, "--validation-size", "100", "--no-progress"]
    code, _, err = run_cli(capsys, "train", "--run", tmp_path / "a", *data, "--batch-size", "1000000000")
    _assert_one_line_error(code, err, "larger than the training split (500 images)")
    for length in (["--iterations", "10"], ["--epochs", "0.5"]):
        code, _, err = run_cli(capsys, "train", "--run", tmp_path / "u", *data, "--until", "50", *length)
        _assert_one_line_error(code, err, "--until sets how long to train")
    code, _, err = run_cli(capsys, "train", "--run", tmp_path / "b", *data, "--seed", str(2**63 - 1))
    _assert_one_line_error(code, err, "choose a seed from 0 to 4294967295")
    for device in ("mps", "meta"):
        code, _, err = run_cli(capsys, "train", "--run", tmp_path / "c", *data, "--device", device)
        _assert_one_line_error(code, err, "digitocr runs on cpu or cuda")
    for key, value, message in (("lr", -1, "lr=-1 is out of range"), ("schedule", "cosine", "choose one of"),
                                ("batch_size", 0, "batch_size=0 is out of range")):
        run = tmp_path / f"edited-{key}"
        shutil.copytree(trained_run, run)
        config = json.loads((run / "config.json").read_text()) | {key: value}
        (run / "config.json").write_text(json.dumps(config))
        code, _, err = run_cli(capsys, "train", "--run", run, "--iterations", "1", "--no-progress")
        _assert_one_line_error(code, err, message)
    wide = tmp_path / "d32"  # a dataset of 32x32 images: evaluate and plot refuse it in one line (as train does)
    wide.mkdir()
    for name, shape in (("train-images-idx3-ubyte", (30, 32, 32)), ("t10k-images-idx3-ubyte", (10, 32, 32))):
        write_idx(wide / name, np.zeros(shape, np.uint8))
    for name, n in (("train-labels-idx1-ubyte", 30), ("t10k-labels-idx1-ubyte", 10)):
        write_idx(wide / name, np.zeros(n, np.uint8))
    for command in (["evaluate", "--model", trained_run], ["plot", "samples", "--model", trained_run]):
        code, _, err = run_cli(capsys, *command, "--data-dir", wide, "--validation-size", "5")
        _assert_one_line_error(code, err, "images are 32x32")


def test_evaluate_any_idx_pair(capsys, trained_run, synthetic_dir):
    code, out, _ = run_cli(capsys, "evaluate", "--model", trained_run,
                           "--images", synthetic_dir / "t10k-images-idx3-ubyte",
                           "--labels", synthetic_dir / "t10k-labels-idx1-ubyte", "--json")
    assert code == 0 and json.loads(out)["total"] == 200


def test_summary_prints_layer_table(capsys):
    code, out, _ = run_cli(capsys, "summary")
    assert code == 0 and "(36, 7, 7)" in out and "(1764)" in out and "242,062" in out


def _assert_one_line_error(code, err, needle):
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err and needle in err, err


@pytest.mark.parametrize("args, needle", [
    (["train", "--iterations", "-3"], "must be 0 or more"),
    (["train", "--lr", "fast"], "expected a number"),
    (["train", "--preset", "nope"], "invalid choice"),
    (["train", "--lr", "inf"], "finite"),
    (["train", "--epochs", "nan"], "finite"),
    (["train", "--epochs", "1", "--iterations", "5"], "not allowed with"),
    (["serve", "--port", "70000"], "TCP port"),
    (["evaluate", "--model", "/no/such/model"], "no such run folder"),
    (["evaluate", "--split", "everything"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, args, needle):
    code, _, err = run_cli(capsys, *args)
    _assert_one_line_error(code, err, needle)


def test_bad_files_exit_2_with_one_line(capsys, tmp_path, trained_run, synthetic_dir):
    bogus = tmp_path / "model.safetensors"
    bogus.write_bytes(b"not a checkpoint at all")
    code, _, err = run_cli(capsys, "evaluate", "--model", bogus)
    _assert_one_line_error(code, err, "not a valid safetensors")
    broken = tmp_path / "images"
    broken.write_bytes((synthetic_dir / "t10k-images-idx3-ubyte").read_bytes()[:1000])
    code, _, err = run_cli(capsys, "evaluate", "--model", trained_run, "--images", broken,
                           "--labels", synthetic_dir / "t10k-labels-idx1-ubyte")
    _assert_one_line_error(code, err, "truncated")
    code, _, err = run_cli(capsys, "evaluate", "--model", trained_run, "--images", broken)
    _assert_one_line_error(code, err, "go together")
    code, _, err = run_cli(capsys, "train", "--run", tmp_path / "r", "--data-dir", tmp_path / "missing")
    _assert_one_line_error(code, err, "not a directory")
    code, _, err = run_cli(capsys, "fetch", "--data-dir", tmp_path / "missing")
    _assert_one_line_error(code, err, "not a directory")
    code, _, err = run_cli(capsys, "evaluate", "--model", trained_run, "--data-dir", synthetic_dir,
                           "--split", "validation", "--validation-size", "0")
    _assert_one_line_error(code, err, "split is empty")


def test_labels_outside_the_ten_classes_and_empty_files_exit_2(capsys, tmp_path, trained_run, synthetic_dir):
    from digitocr.data.idx import read_idx, write_idx

    images = tmp_path / "images"
    write_idx(images, np.zeros((2, 28, 28), np.uint8))
    labels = tmp_path / "labels"
    write_idx(labels, np.array([3, 11], np.uint8))
    code, _, err = run_cli(capsys, "evaluate", "--model", trained_run, "--images", images, "--labels", labels)
    _assert_one_line_error(code, err, "classes 0 to 9, found 11")
    write_idx(images, np.zeros((0, 28, 28), np.uint8))
    write_idx(labels, np.zeros(0, np.uint8))
    code, _, err = run_cli(capsys, "evaluate", "--model", trained_run, "--images", images, "--labels", labels)
    _assert_one_line_error(code, err, "holds no images")
    custom = tmp_path / "custom"  # a dataset folder whose training labels run past 9
    custom.mkdir()
    for f in synthetic_dir.iterdir():
        (custom / f.name).write_bytes(f.read_bytes())
    train_labels = custom / "train-labels-idx1-ubyte"
    write_idx(train_labels, np.full(len(read_idx(train_labels)), 25, np.uint8))
    code, _, err = run_cli(capsys, "train", "--run", tmp_path / "r", "--data-dir", custom, "--iterations", "1")
    _assert_one_line_error(code, err, "classes 0 to 9, found 25")


@pytest.mark.parametrize("change", [["--lr", "0.5"], ["--preset", "best"], ["--dataset", "fashion-mnist"]])
def test_run_of_another_recipe_is_not_silently_changed(capsys, trained_run, synthetic_dir, change):
    code, _, err = run_cli(capsys, "train", "--run", trained_run, "--data-dir", synthetic_dir, *change)
    _assert_one_line_error(code, err, "start a new --run")


@pytest.mark.parametrize("damage", ["{bad", "[]", '{"preset": "seed", "lr": "fast"}'])
def test_a_damaged_run_config_is_one_line(capsys, tmp_path, trained_run, synthetic_dir, damage):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "config.json").write_text(damage)
    code, _, err = run_cli(capsys, "train", "--run", run, "--data-dir", synthetic_dir, "--iterations", "1")
    _assert_one_line_error(code, err, "config.json: not a readable training config")


def test_a_relative_data_dir_is_stored_absolute(capsys, tmp_path, synthetic_dir, monkeypatch):
    """Trained from one folder with a relative --data-dir, the run continues from another."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copytree(synthetic_dir, tmp_path / "a" / "data")
    monkeypatch.chdir(tmp_path / "a")
    code, _, _ = run_cli(capsys, "train", "--run", "../r", "--data-dir", "data/", "--validation-size", "100",
                         "--iterations", "3", "--no-progress")
    assert code == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["data_dir"] == str(tmp_path / "a" / "data")
    monkeypatch.chdir(tmp_path / "b")
    for extra in ([], ["--data-dir", "../a/data"]):  # the saved path, or the same folder named from here
        code, out, err = run_cli(capsys, "train", "--run", "../r", *extra, "--iterations", "2", "--no-progress")
        assert code == 0, err
    assert "(7 iterations)" in out
    config = json.loads((tmp_path / "r" / "config.json").read_text()) | {"data_dir": "data"}
    (tmp_path / "r" / "config.json").write_text(json.dumps(config))  # as runs before the change stored it
    monkeypatch.chdir(tmp_path / "a")
    code, out, err = run_cli(capsys, "train", "--run", "../r", "--data-dir", "data", "--iterations", "1",
                             "--no-progress")
    assert code == 0 and "(8 iterations)" in out, err


def test_an_interrupted_scheduled_run_continues_to_the_end_of_its_schedule(capsys, tmp_path, synthetic_dir):
    """`fast` is one-cycle over 1 epoch here (16 steps of 32): stopped at step 6, the same command trains the
    10 steps left, not 16 more past the schedule; run again, it trains nothing."""
    from digitocr.config import preset
    from digitocr.train import fit

    run = tmp_path / "fast"
    cfg = preset("fast", epochs=1, batch_size=32, data_dir=str(synthetic_dir), dataset="custom", validation_size=100)
    assert fit(cfg, run, progress=False, quiet=True, hook=lambda it, model, s: it >= 6).iterations == 6
    same_command = ["train", "--preset", "fast", "--run", run, "--data-dir", synthetic_dir, "--no-progress"]
    code, out, _ = run_cli(capsys, *same_command)
    assert code == 0 and "(16 iterations)" in out
    code, out, _ = run_cli(capsys, *same_command)
    assert code == 0 and "has finished its onecycle schedule (16 iterations)" in out


@pytest.mark.parametrize("host", ["127.0.0.1", "no-such-host.invalid"])
def test_serve_on_a_taken_port_or_unknown_host_is_one_line(capsys, host):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, out, err = run_cli(capsys, "serve", "--host", host, "--port", taken.getsockname()[1])
    _assert_one_line_error(code, err, "cannot listen on")
    assert out == ""  # no banner claiming a URL that does not answer
