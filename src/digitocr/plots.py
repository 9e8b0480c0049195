"""Every figure, as pure functions from arrays (or a model) to a matplotlib Figure.

Figures are built with the object API on an Agg canvas: no pyplot, so no global figure list to leak and
no GUI backend switched under a user who imports this from a notebook. The looks follow the notebook's
helpers: images in 'binary', filters in 'seismic' (red positive, blue negative), nearest interpolation.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from .data.datasets import Split
from .data.tensors import images_to_tensor
from .errors import DigitocrError
from .metrics import error_indices

GRID = 3  # samples and errors: a 3x3 grid, as the notebook's plot_images
NUM_SHOWN = GRID * GRID
DPI = 100
PANEL_INCHES = 1.6  # each samples/errors panel: the 3x3 grid is about 5 inches square
SMALL_PANEL_INCHES = 1.0  # each filter/activation panel: grids hold up to 64 of them
COLORBAR_INCHES = 1.0  # extra width for a colorbar beside a grid
CONFUSION_INCHES = (6.0, 5.0)
IMAGE_INCHES = (3.0, 3.0)
CURVE_INCHES = (9.0, 3.5)  # accuracy and loss side by side
IMAGE_CMAP = "binary"  # ink dark on white
FILTER_CMAP = "seismic"  # diverging: blue < 0 < red
CONFUSION_CMAP = "Blues"
GRID_SPACING = 0.3  # hspace/wspace between panels, as the notebook's plot_images
TEXT_DARK_FRACTION = 0.5  # confusion counts above this fraction of the max are written in white
NUM_CONV_SHOWN = 2  # the notebook visualises its two conv layers


def _figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: rendering needs no backend selection
    return fig


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _grid_axes(fig: Figure, n_panels: int, side: int) -> list[Axes]:
    """`side` x `side` axes, ticks removed; those beyond `n_panels` hidden."""
    axes = fig.subplots(side, side, squeeze=False).ravel().tolist()
    for i, ax in enumerate(axes):
        _bare(ax)
        if i >= n_panels:
            ax.set_axis_off()
    return axes


def label_text(true: int, pred: int | None = None) -> str:
    """The notebook's caption under each image."""
    return f"True: {true}" if pred is None else f"True: {true}, Pred: {pred}"


def images_figure(images: np.ndarray, cls_true: Sequence[int],
                  cls_pred: Sequence[int] | None = None) -> Figure:
    """Up to nine (H, W) images in a 3x3 grid with 'True: t[, Pred: p]' under each (plot_images)."""
    images = images[:NUM_SHOWN]
    fig = _figure(GRID * PANEL_INCHES, GRID * PANEL_INCHES)
    fig.subplots_adjust(hspace=GRID_SPACING, wspace=GRID_SPACING)
    if len(images) == 0:
        fig.text(0.5, 0.5, "No images to show.", ha="center", va="center")
    for i, ax in enumerate(_grid_axes(fig, len(images), GRID)):
        if i < len(images):
            ax.imshow(images[i], cmap=IMAGE_CMAP)
            ax.set_xlabel(label_text(int(cls_true[i]), None if cls_pred is None else int(cls_pred[i])))
    return fig


def samples_figure(split: Split, pred: np.ndarray | None = None) -> Figure:
    """The first nine images of a split, with their predictions when given."""
    return images_figure(split.images[:NUM_SHOWN], split.labels[:NUM_SHOWN],
                         None if pred is None else pred[:NUM_SHOWN])


def errors_figure(split: Split, pred: np.ndarray) -> Figure:
    """The first nine misclassified images of a split, in dataset order (the notebook's example errors)."""
    idx = error_indices(pred, split.labels)[:NUM_SHOWN]
    return images_figure(split.images[idx], split.labels[idx], pred[idx])


def confusion_figure(cm: np.ndarray) -> Figure:
    """The (C, C) confusion matrix (rows true, columns predicted) as an image with counts and a colorbar."""
    n = cm.shape[0]
    fig = _figure(*CONFUSION_INCHES)
    ax = fig.subplots()
    im = ax.imshow(cm, interpolation="nearest", cmap=CONFUSION_CMAP)
    fig.colorbar(im, ax=ax)
    ticks = np.arange(n)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_yticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    dark = TEXT_DARK_FRACTION * max(int(cm.max()), 1)
    for r in range(n):
        for c in range(n):
            ax.text(c, r, str(int(cm[r, c])), ha="center", va="center", fontsize="x-small",
                    color="white" if cm[r, c] > dark else "black")
    return fig


def shown_network(model: nn.Module) -> tuple[nn.Module, str]:
    """The network whose filters and activations a figure shows, and a note for its title: the model itself,
    or an ensemble's first member (an ensemble has no conv layers of its own)."""
    members = getattr(model, "members", None)
    if members is None:
        return model, ""
    return members[0], f" (ensemble member 1 of {len(members)})"


def conv_weights(model: nn.Module) -> list[np.ndarray]:
    """Weights (out, in, kh, kw) of the first two Conv2d modules, found generically for any network."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)][:NUM_CONV_SHOWN]
    if len(convs) < NUM_CONV_SHOWN:
        raise DigitocrError(f"the model has {len(convs)} conv layers; filter figures need {NUM_CONV_SHOWN}")
    return [c.weight.detach().float().cpu().numpy() for c in convs]


def check_input_channel(weights: np.ndarray, input_channel: int) -> None:
    n_in = weights.shape[1]
    if not 0 <= input_channel < n_in:
        raise DigitocrError(f"--input-channel {input_channel}: this layer has input channels 0 to {n_in - 1}")


def filters_figure(weights: np.ndarray, input_channel: int = 0, title: str | None = None) -> Figure:
    """One panel per filter of a conv layer (out, in, kh, kw), for one input channel; one symmetric colour
    scale for the whole figure so the same colour means the same weight in every panel."""
    check_input_channel(weights, input_channel)
    w = weights[:, input_channel]  # (out, kh, kw)
    w_max = float(np.abs(w).max()) or 1.0  # all-zero weights: any non-empty range will do
    side = math.ceil(math.sqrt(len(w)))
    fig = _figure(side * SMALL_PANEL_INCHES + COLORBAR_INCHES, side * SMALL_PANEL_INCHES)
    axes = _grid_axes(fig, len(w), side)
    im = None
    for ax, kernel in zip(axes, w, strict=False):
        im = ax.imshow(kernel, vmin=-w_max, vmax=w_max, interpolation="nearest", cmap=FILTER_CMAP)
    fig.colorbar(im, ax=axes)
    if title:
        fig.suptitle(title)
    return fig


def pick_image(split: Split, index: int) -> np.ndarray:
    """Image `index` (H, W) of a split, or a DigitocrError naming the valid range."""
    if not 0 <= index < len(split):
        raise DigitocrError(f"--image-index {index}: the test split has images 0 to {len(split) - 1}")
    return split.images[index]


@torch.inference_mode()
def activation_maps(model: nn.Module, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of the two conv blocks for one (H, W) uint8 image: (C1, H1, W1) and (C2, H2, W2)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = images_to_tensor(image[None], device)  # (1, 1, 28, 28)
    c1, c2 = model.conv_layers(x)  # seed: (1, 16, 14, 14), (1, 36, 7, 7)
    model.train(was_training)
    return c1[0].float().cpu().numpy(), c2[0].float().cpu().numpy()


def activations_figure(maps: np.ndarray, title: str | None = None) -> Figure:
    """One panel per channel of a (C, H, W) activation, in 'binary' (plot_conv_layer)."""
    side = math.ceil(math.sqrt(len(maps)))
    fig = _figure(side * SMALL_PANEL_INCHES, side * SMALL_PANEL_INCHES)
    for ax, channel in zip(_grid_axes(fig, len(maps), side), maps, strict=False):
        ax.imshow(channel, interpolation="nearest", cmap=IMAGE_CMAP)
    if title:
        fig.suptitle(title)
    return fig


def image_figure(image: np.ndarray, caption: str | None = None) -> Figure:
    """One (H, W) image with nearest interpolation (plot_image)."""
    fig = _figure(*IMAGE_INCHES)
    ax = fig.subplots()
    ax.imshow(image, interpolation="nearest", cmap=IMAGE_CMAP)
    _bare(ax)
    if caption:
        ax.set_xlabel(caption)
    return fig


def training_curve_figure(records: Sequence[dict]) -> Figure:
    """Accuracy and loss against iteration from metrics.jsonl records: per-batch training lines (with
    `train_accuracy`) and validation lines (`split` == 'validation')."""
    train = [r for r in records if "train_accuracy" in r]
    val = [r for r in records if r.get("split") == "validation"]
    fig = _figure(*CURVE_INCHES)
    acc_ax, loss_ax = fig.subplots(1, 2)
    if train:
        its = [r["iteration"] for r in train]
        acc_ax.plot(its, [r["train_accuracy"] for r in train], marker=".", label="training batch")
        loss_ax.plot(its, [r["loss"] for r in train], marker=".", color="tab:red")
    if val:
        acc_ax.plot([r["iteration"] for r in val], [r["accuracy"] for r in val], "o", color="tab:green",
                    label="validation")
    acc_ax.set(xlabel="iteration", ylabel="accuracy", ylim=(0, 1), title="Accuracy")
    loss_ax.set(xlabel="iteration", ylabel="cross-entropy", title="Training loss")
    if train and min(r["loss"] for r in train) > 0:
        loss_ax.set_yscale("log")
    if train or val:
        acc_ax.legend(loc="lower right")
    else:
        acc_ax.text(0.5, 0.5, "No metrics recorded.", ha="center", va="center", transform=acc_ax.transAxes)
    acc_ax.grid(alpha=0.3)
    loss_ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def filter_figures(model: nn.Module, input_channel: int = 0) -> dict[str, Figure]:
    """Filters of the first two conv layers (the second for one input channel), by file stem."""
    network, note = shown_network(model)
    w1, w2 = conv_weights(network)  # seed: (16, 1, 5, 5), (36, 16, 5, 5)
    return {"filters_conv1": filters_figure(w1, 0, f"Conv layer 1 filters{note}"),
            "filters_conv2": filters_figure(w2, input_channel,
                                            f"Conv layer 2 filters, input channel {input_channel}{note}")}


def activation_figures(model: nn.Module, split: Split, index: int) -> dict[str, Figure]:
    """Image `index` of a split and the two conv blocks' outputs for it, by file stem."""
    image = pick_image(split, index)
    network, note = shown_network(model)
    c1, c2 = activation_maps(network, image)
    return {"image": image_figure(image, f"image {index}, {label_text(int(split.labels[index]))}"),
            "activations_conv1": activations_figure(c1, f"Conv block 1 outputs{note}"),
            "activations_conv2": activations_figure(c2, f"Conv block 2 outputs{note}")}


def image_axes(fig: Figure) -> list[Axes]:
    """The axes of a figure that show an image (colorbars and hidden panels excluded)."""
    return [ax for ax in fig.axes if ax.images]


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a figure as PNG, creating the folder; returns the path."""
    from .fsutil import atomic_write

    path = Path(path)
    data = figure_png(fig)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path

