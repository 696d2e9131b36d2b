"""The book's figures: training curves, Fig. 4 (effective kernel sizes) and Fig. 5 (predictions).

matplotlib, seaborn and :mod:`aafcore.datasets` (torch) are imported when a figure is drawn (not
to dodge a cycle: so that ``from aafcore import report`` stays quick for the tables and the tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

__all__ = ["plot_training", "plot_predictions", "plot_kernel_sizes"]


def plot_training(log: pd.DataFrame, class_names_: list[str] | None = None, window: int = 25):
    """Loss curves (total, cross-entropy, auxiliary; running mean over ``window`` steps), the
    learning rate and, for AAF, the effective kernel size of every class over the steps."""
    import matplotlib.pyplot as plt

    has_aaf = "effective_kernel_size" in log.columns and log["effective_kernel_size"].notna().any()
    fig, axes = plt.subplots(1, 3 if has_aaf else 2, figsize=(13 if has_aaf else 9, 3.2))
    smooth = log[["loss", "ce", "aux"]].rolling(window, min_periods=1).mean()
    for col in ("loss", "ce", "aux"):
        axes[0].plot(log["step"], smooth[col], label=col)
    axes[0].set(xlabel="step", ylabel="loss", title=f"losses (running mean of {window})")
    axes[0].legend()
    axes[1].plot(log["step"], log["lr"])
    axes[1].set(xlabel="step", ylabel="learning rate", title="poly schedule (backbone)")
    if has_aaf:
        rows = log[log["effective_kernel_size"].notna()]
        values = np.array(rows["effective_kernel_size"].tolist())
        for c in range(values.shape[1]):
            label = class_names_[c] if class_names_ else str(c)
            axes[2].plot(rows["step"], values[:, c], label=label)
        axes[2].set(xlabel="step", ylabel="effective kernel size", title="AAF edge term: Σ_k w_k·k")
        axes[2].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _load_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def plot_predictions(dataset, prediction_dirs: dict[str, Path], ids: list[str] | None = None, max_images: int = 4):
    """A grid: image, ground truth, then one column per entry of ``prediction_dirs`` (label ->
    directory of palette PNGs ``<id>.png``), for the ids found in every directory (Fig. 5)."""
    import matplotlib.pyplot as plt

    from aafcore.datasets import colorize   # imports torch: only when plotting predictions

    available = [set(p.stem for p in Path(d).glob("*.png")) for d in prediction_dirs.values()]
    common = sorted(set.intersection(*available)) if available else []
    ids = [i for i in (ids or common) if i in common][:max_images]
    if not ids:
        raise FileNotFoundError("no prediction PNGs common to " + ", ".join(str(d) for d in prediction_dirs.values()))
    index = {ident: i for i, ident in enumerate(dataset.ids)}
    cols = 2 + len(prediction_dirs)
    fig, axes = plt.subplots(len(ids), cols, figsize=(2.1 * cols, 2.1 * len(ids)), squeeze=False)
    for r, ident in enumerate(ids):
        image, label, _ = dataset.load_raw(index[ident])
        panels = [("image", image), ("ground truth", colorize(label, dataset.palette))]
        panels += [(name, _load_png(Path(d) / f"{ident}.png")) for name, d in prediction_dirs.items()]
        for c, (title, picture) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
        axes[r, 0].set_ylabel(ident, fontsize=8)
    fig.tight_layout()
    return fig


def plot_kernel_sizes(frame: pd.DataFrame, order: list[str]):
    """Fig. 4: effective kernel size of the edge term per class (mean over seeds, one dot per seed),
    classes in ``order`` (by structure width), coloured by group."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if frame.empty:
        raise FileNotFoundError("no AAF run with effective kernel sizes in the results")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.barplot(data=frame, x="class", y="effective_kernel_size", hue="group", order=order,
                errorbar="sd", dodge=False, ax=ax, alpha=0.8)
    sns.stripplot(data=frame, x="class", y="effective_kernel_size", order=order, color="black", size=3, ax=ax)
    ax.set(xlabel="class (ordered by typical structure width)", ylabel="effective kernel size $k^e_c$",
           ylim=(3, 7))
    ax.axhline(5, color="grey", lw=0.5, ls=":")
    fig.tight_layout()
    return fig
