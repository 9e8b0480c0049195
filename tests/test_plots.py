"""Figures: panel layout, labels, colour scales, PNG output, and `digitocr plot` end to end."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import N_TEST, N_VAL, random_split, run_cli
from digitocr import plots
from digitocr.cli import main
from digitocr.config import ModelConfig
from digitocr.constants import NUM_CLASSES, PIXEL_MAX
from digitocr.data.datasets import CUSTOM
from digitocr.errors import DigitocrError
from digitocr.model import build_model

SEED_CONV1, SEED_CONV2 = 16, 36  # the notebook's filter counts
FIGURE_FILES = ("samples", "errors", "confusion", "filters_conv1", "filters_conv2", "image",
                "activations_conv1", "activations_conv2")


def test_samples_grid_is_3x3_with_notebook_labels():
    rng = np.random.default_rng(1)
    split = random_split(rng, 12)
    fig = plots.samples_figure(split)
    shown = plots.image_axes(fig)
    assert len(shown) == plots.NUM_SHOWN == 9
    assert [ax.get_xlabel() for ax in shown] == [f"True: {t}" for t in split.labels[:9]]
    pred = (split.labels + 1) % NUM_CLASSES
    labels = [ax.get_xlabel() for ax in plots.image_axes(plots.samples_figure(split, pred))]
    assert labels == [f"True: {t}, Pred: {p}" for t, p in zip(split.labels[:9], pred[:9], strict=True)]
    assert len(plots.image_axes(plots.images_figure(split.images[:4], split.labels[:4]))) == 4


def test_errors_are_the_first_nine_misclassified_in_order():
    rng = np.random.default_rng(2)
    split = random_split(rng, 30)
    pred = split.labels.copy()
    wrong = np.array([1, 3, 4, 8, 10, 11, 15, 20, 21, 25, 29])
    pred[wrong] = (pred[wrong] + 1) % NUM_CLASSES
    shown = plots.image_axes(plots.errors_figure(split, pred))
    assert len(shown) == 9
    first = wrong[:9]
    assert [ax.get_xlabel() for ax in shown] == [f"True: {split.labels[i]}, Pred: {pred[i]}" for i in first]
    for ax, i in zip(shown, first, strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), split.images[i])
    assert plots.image_axes(plots.errors_figure(split, split.labels)) == []  # no errors, no panels


def test_confusion_figure_has_ticks_and_colorbar():
    cm = np.arange(NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)
    fig = plots.confusion_figure(cm)
    (ax,) = plots.image_axes(fig)
    np.testing.assert_array_equal(ax.images[0].get_array(), cm)
    assert list(ax.get_xticks()) == list(range(NUM_CLASSES)) == list(ax.get_yticks())
    assert len(fig.axes) == 2  # the matrix and its colorbar


@pytest.mark.parametrize("layer, channel, n_panels", [(0, 0, SEED_CONV1), (1, 5, SEED_CONV2)])
def test_seed_filters_panels_and_symmetric_scale(layer, channel, n_panels):
    torch.manual_seed(0)
    weights = plots.conv_weights(build_model(ModelConfig()))[layer]
    fig = plots.filters_figure(weights, channel)
    shown = plots.image_axes(fig)
    assert len(shown) == n_panels
    w_max = np.abs(weights[:, channel]).max()
    assert {ax.images[0].get_clim() for ax in shown} == {(-w_max, w_max)}  # one symmetric scale
    assert all(ax.images[0].get_cmap().name == plots.FILTER_CMAP for ax in shown)
    np.testing.assert_array_equal(shown[3].images[0].get_array(), weights[3, channel])


def test_filters_found_generically_in_bestnet():
    w1, w2 = plots.conv_weights(build_model(ModelConfig(arch="best")))
    width = ModelConfig().widths[0]
    assert w1.shape[:2] == (width, 1) and w2.shape[:2] == (width, width)
    assert len(plots.image_axes(plots.filters_figure(w2, width - 1))) == width
    with pytest.raises(DigitocrError, match="input-channel"):
        plots.filters_figure(w2, width)


@pytest.mark.parametrize("arch", ["seed", "best"])
def test_activations_match_the_conv_blocks(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch))
    split = random_split(np.random.default_rng(3), 2)
    c1, c2 = plots.activation_maps(model, plots.pick_image(split, 1))
    assert model.training  # put back in the mode it was in
    if arch == "seed":  # reference: the notebook's blocks, written out
        x = torch.from_numpy(split.images[1:2]).float().div(PIXEL_MAX).unsqueeze(1)  # (1, 1, 28, 28)
        ref1 = F.relu(F.max_pool2d(model.conv1(x), 2))
        ref2 = F.relu(F.max_pool2d(model.conv2(ref1), 2))
        np.testing.assert_allclose(c1, ref1[0].detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(c2, ref2[0].detach().numpy(), atol=1e-5)
        figs = plots.activation_figures(model, split, 1)
        assert [len(plots.image_axes(figs[k])) for k in ("image", "activations_conv1", "activations_conv2")] \
            == [1, SEED_CONV1, SEED_CONV2]  # one input image
    else:  # best: (32, 12, 12) after stage 1, (64, 4, 4) after stage 2
        assert c1.shape[0] == ModelConfig().widths[0] and c2.shape[0] == ModelConfig().widths[1]
    with pytest.raises(DigitocrError, match="image-index"):
        plots.pick_image(split, 2)


def test_an_ensemble_shows_its_first_members_filters_and_activations():
    from digitocr.ensemble import Ensemble

    torch.manual_seed(0)
    first, second = build_model(ModelConfig(arch="seed")), build_model(ModelConfig(arch="seed"))
    ensemble = Ensemble([first, second])
    split = random_split(np.random.default_rng(3), 2)
    figs = plots.activation_figures(ensemble, split, 1)
    np.testing.assert_allclose(plots.activation_maps(first, split.images[1])[0], plots.activation_maps(
        plots.shown_network(ensemble)[0], split.images[1])[0])
    assert "member 1 of 2" in figs["activations_conv1"]._suptitle.get_text()
    filters = plots.filter_figures(ensemble)
    assert len(plots.image_axes(filters["filters_conv1"])) == SEED_CONV1
    assert "member 1 of 2" in filters["filters_conv2"]._suptitle.get_text()


def test_training_curve_and_png_bytes():
    records = [{"iteration": 1, "train_accuracy": 0.1, "loss": 2.3},
               {"iteration": 101, "train_accuracy": 0.6, "loss": 1.2},
               {"iteration": 101, "split": "validation", "accuracy": 0.7}]
    fig = plots.training_curve_figure(records)
    acc_ax = fig.axes[0]
    assert [len(line.get_xdata()) for line in acc_ax.get_lines()] == [2, 1]
    png = plots.figure_png(fig)
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]
    plots.figure_png(plots.training_curve_figure([]))  # an empty history still draws


def test_plot_cli_all_writes_every_png(tiny_run, tmp_path, capsys):
    data_dir, run_dir, _ = tiny_run
    out = tmp_path / "figs"
    rc = main(["plot", "all", "--model", str(run_dir), "--data-dir", str(data_dir), "--dataset", CUSTOM,
               "--validation-size", str(N_VAL), "--out", str(out), "--threads", "1", "--precision", "fp32",
               "--image-index", str(N_TEST - 1), "--input-channel", str(SEED_CONV1 - 1)])
    printed = capsys.readouterr().out
    assert rc == 0
    for name in FIGURE_FILES:
        path = out / f"{name}.png"
        assert str(path) in printed
        with Image.open(path) as im:
            im.verify()
            assert im.format == "PNG"
    assert "Accuracy on Test-Set:" in printed and "<- predicted" in printed


@pytest.mark.parametrize("extra, message", [
    (["samples", "--image-index", str(N_TEST)], "--image-index"),
    (["filters", "--input-channel", str(SEED_CONV1)], "--input-channel"),
    (["activations", "--image-index", "-1"], "--image-index"),
    (["nonsense"], "invalid choice"),
])
def test_plot_cli_bad_args_exit_2_with_one_line(tiny_run, tmp_path, capsys, extra, message):
    data_dir, run_dir, _ = tiny_run
    rc = run_cli(["plot", *extra, "--model", str(run_dir), "--data-dir", str(data_dir), "--dataset", CUSTOM,
                  "--validation-size", str(N_VAL), "--out", str(tmp_path), "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not list(tmp_path.glob("*.png"))
