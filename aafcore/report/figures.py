"""The book's figures: training curves, Fig. 4 (the learned kernel-size weights) and Fig. 5
(predictions, with zooms on thin structures), and the numbers their pages state.

matplotlib, seaborn and :mod:`aafcore.datasets` (torch) are imported when a figure is drawn (not
to dodge a cycle: so that ``from aafcore import report`` stays quick for the tables and the tests).

Sizes for the book: its column is about 770 px wide and a figure's PNG is scaled to it, so a
figure :data:`BOOK_WIDTH` inches wide shows a font of ``F`` pt at about ``F * 770 / (72 *
BOOK_WIDTH)`` px (1.3 px per pt): the 11-pt labels of Figs. 4 and 5 are about 15 px on a desktop
and 7 px on a 390-px phone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from aafcore.report.results import method_label, prediction_dirs, select_rows
from aafcore.report.tables import class_order

__all__ = ["plot_training", "plot_predictions", "plot_kernel_sizes",
           "BOOK_WIDTH", "BOOK_DPI", "PAPER_EDGE_SIZES", "kernel_weights_frame", "effective_sizes",
           "kernel_weight_table", "plot_kernel_weights", "kernel_findings", "kernel_limitations",
           "evaluation_prediction_dirs", "thin_window", "thin_rich_ids", "class_legend", "plot_comparison",
           "thin_iou_table", "comparison_findings", "saved_ids", "comparison_limitations"]

BOOK_WIDTH = 8.0   # inches: a figure this wide is scaled to the book's ~770-px column
BOOK_DPI = 110     # 880-px PNGs: sharp at the column's width, fonts as above
_LABEL, _TITLE = 11, 12   # pt

# Fig. 4 in the paper's text (Sec. 5, PASCAL VOC 2012 val): the only per-class effective edge
# sizes it prints; its per-size weights are drawn in Fig. 4 (left) but not printed as numbers.
PAPER_EDGE_SIZES = {"person": 3.1, "dog": 3.4, "plant": 4.5, "cow": 4.6}


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


# --------------------------------------------------------------------------- Fig. 4: the weights per size

_TERMS = {"edge": "edge_weights", "non-edge": "not_edge_weights"}


def kernel_weights_frame(df: pd.DataFrame, kernel_sizes: str = "3,5,7", base: str = "pspnet",
                         tag: str = "val-source") -> pd.DataFrame:
    """The learned kernel-size weights of the AAF runs in ``df`` (:func:`load_results`' frame), long
    format: one row per (``seed``, ``class``, ``term``, ``k``) with its ``weight``.

    ``term`` is ``"edge"`` (the boundary term's :math:`w_{bck}`) or ``"non-edge"`` (the non-boundary
    term's :math:`w_{\\bar b ck}`); the weights of one seed, class and term sum to 1 over ``k``.  They
    are the ``aaf`` section (``edge_weights``, ``not_edge_weights``, each ``[C, K]``) of the
    ``metrics.json`` of each row of evaluation ``tag`` of ``base`` AAF with ``kernel_sizes``: the
    weights of the run's final checkpoint.  Rows without an ``aaf`` section are skipped; empty when
    there is no such run."""
    columns = ["seed", "class", "term", "k", "weight"]
    sel = select_rows(df, tag, base, ["aaf"], kernel_sizes).sort_values("seed")
    rows = []
    for _, row in sel.iterrows():
        result = json.loads(Path(row["path"]).read_text())
        aaf = result.get("aaf") or {}
        if not all(key in aaf for key in (*_TERMS.values(), "kernel_sizes")):
            continue
        for term, key in _TERMS.items():
            for name, weights in zip(result["class_names"], aaf[key]):
                rows += [{"seed": int(row["seed"]), "class": name, "term": term, "k": int(k), "weight": float(w)}
                         for k, w in zip(aaf["kernel_sizes"], weights)]
    return pd.DataFrame(rows, columns=columns)


def effective_sizes(weights: pd.DataFrame) -> pd.DataFrame:
    """Per (``seed``, ``class``, ``term``) of :func:`kernel_weights_frame`, the effective kernel size
    ``size`` = :math:`\\sum_k w_k\\, k` (pixels; :math:`k^e_c` for the edge term)."""
    sized = weights.assign(size=weights["weight"] * weights["k"])
    return sized.groupby(["seed", "class", "term"], as_index=False, sort=False)["size"].sum()


def _px(info: dict, name: str) -> str:
    width = info["widths"].get(name)
    return "?" if width is None else f"{width:g}"


def _group_of(info: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for group, members in info["groups"].items():
        for name in members:
            out.setdefault(name, group)
    return out


def kernel_weight_table(weights: pd.DataFrame, info: dict) -> pd.DataFrame:
    """Fig. 4 as numbers: one row per class (thinnest first, :func:`class_order`), its group and
    typical width, and per term the mean weight of each size over the seeds, the mean effective size
    and its seed standard deviation (NaN for one seed), and the number of seeds.  Columns are
    ``(term, quantity)`` pairs: ``("edge term", "w(k=3)")``, ``("edge term", "size")``, ..."""
    order = [n for n in class_order(info) if n in set(weights["class"])]
    sizes = effective_sizes(weights)
    group_of = _group_of(info)
    out = pd.DataFrame(index=pd.Index(order, name="class"))
    out[("", "group")] = [group_of.get(n, "") for n in order]
    out[("", "width (px)")] = [info["widths"].get(n) for n in order]
    for term in _TERMS:
        mean = weights[weights["term"] == term].groupby(["class", "k"])["weight"].mean().unstack("k")
        for k in mean.columns:
            out[(f"{term} term", f"w(k={k})")] = mean[k].reindex(order)
        per_seed = sizes[sizes["term"] == term].groupby("class")["size"]
        out[(f"{term} term", "size")] = per_seed.mean().reindex(order)
        out[(f"{term} term", "± std")] = per_seed.std(ddof=1).reindex(order)
    out[("", "seeds")] = weights.groupby("class")["seed"].nunique().reindex(order)
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out


def _k_colours(sizes):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    return {k: cmap(0.15 + 0.7 * i / max(1, len(sizes) - 1)) for i, k in enumerate(sizes)}


def plot_kernel_weights(weights: pd.DataFrame, info: dict, paper: dict[str, float] | None = PAPER_EDGE_SIZES):
    """Fig. 4: for the edge term (top) and the non-edge term (middle), each class's weight of each
    kernel size ``k`` (bars: mean over seeds; dots: the seeds), classes thinnest first, with the mean
    effective size :math:`\\sum_k w_k k` written above each class; below, in a panel of its own, the
    paper's reported effective edge sizes (VOC classes, not ours).  ``weights``: :func:`kernel_weights_frame`."""
    import matplotlib.pyplot as plt

    if weights.empty:
        raise FileNotFoundError("no AAF run with learned kernel-size weights in the results")
    order = [n for n in class_order(info) if n in set(weights["class"])]
    sizes = sorted(weights["k"].unique())
    colours = _k_colours(sizes)
    group_of = _group_of(info)
    effective = effective_sizes(weights).groupby(["term", "class"])["size"].mean()
    n_seeds = weights["seed"].nunique()
    ratios = [1, 1] + ([0.55] if paper else [])
    fig, axes = plt.subplots(len(ratios), 1, figsize=(BOOK_WIDTH, 3.1 * sum(ratios) + 0.5), dpi=BOOK_DPI,
                             gridspec_kw={"height_ratios": ratios}, layout="constrained")
    width = 0.8 / len(sizes)
    x = np.arange(len(order))
    for ax, term, symbol in zip(axes, _TERMS, (r"w_{bck}", r"w_{\bar{b}ck}")):
        part = weights[weights["term"] == term]
        for i, k in enumerate(sizes):
            per_k = part[part["k"] == k]
            mean = per_k.groupby("class")["weight"].mean().reindex(order)
            offset = (i - (len(sizes) - 1) / 2) * width
            ax.bar(x + offset, mean.to_numpy(), width * 0.95, color=colours[k], label=f"k = {k}")
            for j, name in enumerate(order):
                seeds = per_k.loc[per_k["class"] == name, "weight"].to_numpy()
                ax.plot(np.full(len(seeds), x[j] + offset), seeds, "o", ms=3, color="black", zorder=3)
        for j, name in enumerate(order):
            ax.text(x[j], 1.02, f"{effective[(term, name)]:.2f}", ha="center", va="bottom", fontsize=_LABEL)
        ax.axhline(1 / len(sizes), color="grey", lw=0.8, ls=":")
        ax.set_xticks(x, [f"{n}\n({group_of.get(n, '')})\n{_px(info, n)} px" for n in order], fontsize=_LABEL)
        ax.set_ylim(0, 1.17)
        ax.set_yticks([0, 0.5, 1])
        ax.tick_params(labelsize=_LABEL)
        ax.set_ylabel(f"${symbol}$", fontsize=_TITLE)
        ax.set_title(f"ours, {term} term ({n_seeds} seed{'s' if n_seeds != 1 else ''}): weight per size; "
                     f"numbers: $\\Sigma_k\\, {symbol}\\,k$", fontsize=_TITLE, loc="left")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", fontsize=_LABEL, ncol=len(sizes),
               frameon=False)
    if paper:
        ax = axes[-1]
        names = sorted(paper, key=paper.get)
        ax.barh(np.arange(len(names)), [paper[n] - 3 for n in names], left=3, color="0.6", height=0.6)
        for i, n in enumerate(names):
            ax.text(paper[n] + 0.05, i, f"{paper[n]:.1f}", va="center", fontsize=_LABEL)
        ax.set_yticks(np.arange(len(names)), names, fontsize=_LABEL)
        ax.set_xlim(3, 7)
        ax.tick_params(labelsize=_LABEL)
        ax.set_xlabel("effective edge size $k^e_c$ (px)", fontsize=_LABEL)
        ax.set_title("the paper (PASCAL VOC 2012 val; its classes, not ours): $k^e_c$ as printed in its text",
                     fontsize=_TITLE, loc="left")
    return fig


def _fmt_seeds(seeds) -> str:
    seeds = sorted(int(s) for s in seeds)
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"


def kernel_findings(weights: pd.DataFrame, info: dict, paper: dict[str, float] | None = PAPER_EDGE_SIZES) -> str:
    """The kernel page's "What we find" (Markdown): every number computed from ``weights``
    (:func:`kernel_weights_frame`) and ``info`` (:func:`class_info`): the seeds, which classes get
    the smallest and largest effective edge sizes, the group means, the rank correlation of size with
    width, a large class with a small size (when one is below the thin group's mean), the seed spread,
    how far the non-edge weights moved from uniform, and the paper's reported sizes beside ours."""
    from scipy.stats import spearmanr

    if weights.empty:
        return "*No AAF run with learned kernel-size weights in these results: nothing to report yet.*"
    sizes = effective_sizes(weights)
    edge = sizes[sizes["term"] == "edge"].groupby("class")["size"]
    mean, spread = edge.mean(), edge.std(ddof=1)
    group_of = _group_of(info)
    by_group = {g: mean[[n for n in members if n in mean.index]].mean() for g, members in info["groups"].items()}
    lo, hi = mean.idxmin(), mean.idxmax()
    width = pd.Series({n: info["widths"].get(n, np.nan) for n in mean.index})
    rho = spearmanr(width, mean).statistic if width.notna().all() and len(mean) > 2 else np.nan
    ks = sorted(weights["k"].unique())
    lines = [f"- These weights come from {_fmt_seeds(weights['seed'].unique())} of AAF with "
             f"$k \\in \\{{{', '.join(map(str, ks))}\\}}$, read at the end of training.",
             f"- **Edge term.** The smallest effective size goes to *{lo}* ({mean[lo]:.2f} px; {group_of.get(lo, '?')}, "
             f"about {_px(info, lo)} px wide), the largest to *{hi}* ({mean[hi]:.2f} px; "
             f"{group_of.get(hi, '?')}, about {_px(info, hi)} px wide). Group means: "
             + ", ".join(f"{g} {v:.2f}" for g, v in by_group.items()) + "."]
    if np.isfinite(rho):
        lines.append(f"- Across the {len(mean)} classes, the rank correlation of the effective edge size with the "
                     f"class's typical width is {rho:+.2f} (Spearman): "
                     + ("width orders the sizes only loosely." if abs(rho) < 0.7 else
                        "wider classes get larger sizes." if rho > 0 else "wider classes get *smaller* sizes."))
    thin_mean = by_group.get("thin", np.nan)
    odd = [n for n in info["groups"].get("large", []) if n in mean.index and mean[n] < thin_mean]
    if odd:
        lines.append("- **An anomaly:** " + ", ".join(
            f"*{n}* (large, about {_px(info, n)} px wide) gets {mean[n]:.2f} px" for n in odd)
            + f", below the thin classes' mean of {thin_mean:.2f} px. The paper's reading (fine structures "
              "need small fields, large objects large ones) does not explain this; we have not tested why.")
    if weights["seed"].nunique() > 1:
        worst = spread.idxmax()
        lines.append(f"- The seeds agree: the largest seed standard deviation of an edge size is {spread[worst]:.2f} px "
                     f"(*{worst}*), small next to the {mean[hi] - mean[lo]:.2f}-px range between classes.")
    else:
        lines.append("- One seed only: no seed spread can be given.")
    non_edge = weights[weights["term"] == "non-edge"]
    deviation = (non_edge["weight"] - 1 / len(ks)).abs().max()
    ne = sizes[sizes["term"] == "non-edge"].groupby("class")["size"].mean()
    lines.append(f"- **Non-edge term.** Its weights barely move from uniform: every weight is within "
                 f"{deviation:.3f} of 1/{len(ks)}, and the effective sizes span {ne.min():.2f}-{ne.max():.2f} px "
                 f"(uniform weights give {np.mean(ks):.2f}).")
    if paper:
        shared = [n for n in paper if n in mean.index]
        text = ", ".join(f"{n} {v:.1f}" for n, v in paper.items())
        lines.append(f"- **The paper** (VOC, other classes) reports effective edge sizes {text}, a range of "
                     f"{max(paper.values()) - min(paper.values()):.1f} px; ours span {mean[hi] - mean[lo]:.2f} px."
                     + "".join(f" Our *{n}* (a thin class here) gets {mean[n]:.2f} px against the paper's "
                               f"{paper[n]:.1f}." for n in shared))
    return "\n".join(lines)


def kernel_limitations(weights: pd.DataFrame, kernel_table: pd.DataFrame) -> str:
    """The kernel page's "Limitations" (Markdown): the number of seeds of Fig. 4 and of each
    kernel-size set of Table 10 (``kernel_table``: :func:`kernel_size_table`), and what the weights
    can and cannot say."""
    n = weights["seed"].nunique() if len(weights) else 0
    sets = ("; ".join(f"{row['method']}: {int(row['seeds'])} seed{'s' if row['seeds'] != 1 else ''}"
                      for _, row in kernel_table.iterrows()) if len(kernel_table) else "no run yet")
    return "\n".join([
        f"- Fig. 4 rests on {n} seed{'s' if n != 1 else ''} of one benchmark; Table 10's sets: {sets}. "
        "A set with one or two seeds gives no usable spread.",
        "- Our classes are not the paper's: the paper's values are shown for their pattern (fine structures "
        "small, some larger objects large), not for a class-by-class match; the paper prints only four "
        "effective sizes, so its per-size weights are not compared.",
        "- The weights are those of the final checkpoint. The adversary picks the size whose affinity loss is "
        "largest, which depends on how many pixel pairs of each size cross a boundary of the class, not only on "
        "the class's width: an effective size is a description of training, not a measured optimal field size.",
    ])


# --------------------------------------------------------------------------- Fig. 5: predictions and zooms


def evaluation_prediction_dirs(profile: str, dataset: str, results_root: str | Path = "results",
                               tag: str = "val-source", methods=("baseline", "affinity", "aaf"),
                               base: str = "pspnet", seed: int = 0) -> dict[str, Path]:
    """Row label -> folder of the predictions (palette PNGs ``<id>.png``) that evaluation ``tag`` of
    each method's run saved: :func:`prediction_dirs` for ``val-source``, else
    ``<run>/eval/<tag>/predictions`` (``val-shifted``: the shifted domain's ``val_shifted_*``)."""
    dirs = prediction_dirs(profile, dataset, results_root, methods, base, seed)
    if tag == "val-source":
        return dirs
    runs = {label: (d.parents[2] if d.parent.name == "val-source" else d.parent) for label, d in dirs.items()}
    return {label: run / "eval" / tag / "predictions" for label, run in runs.items()}


def thin_window(label: np.ndarray, classes, size: int) -> tuple[int, int]:
    """The ``size`` x ``size`` window of ``label`` (``[H, W]`` class ids) holding the most pixels of
    ``classes``, as its top-left ``(row, col)``; ties go to the first in raster order.  A rule on the
    labels only (the zooms of Fig. 5), exact over every position (a summed-area table)."""
    label = np.asarray(label)
    h, w = label.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"thin_window: size must be in 1..{min(h, w)} for a {h}x{w} label, got {size}")
    mask = np.isin(label, list(classes)).astype(np.int64)
    table = np.zeros((h + 1, w + 1), np.int64)
    table[1:, 1:] = mask.cumsum(0).cumsum(1)
    counts = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    row, col = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return int(row), int(col)


def thin_rich_ids(dataset, ids, classes, n: int) -> list[str]:
    """The ``n`` of ``ids`` whose labels hold the most pixels of ``classes`` (ties: in ``ids``'
    order), in that order: Fig. 5's images, chosen from the labels only."""
    index = {ident: i for i, ident in enumerate(dataset.ids)}
    counts = [int(np.isin(dataset.load_raw(index[i])[1], list(classes)).sum()) for i in ids]
    ranked = sorted(range(len(ids)), key=lambda j: -counts[j])
    return [ids[j] for j in ranked[:n]]


def class_legend(fig, names, palette, ncol: int = 4):
    """A legend of colour patches with class names below ``fig`` (``palette``: ``[>=C, 3]`` uint8)."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=np.asarray(palette[i]) / 255, edgecolor="black", lw=0.5, label=name)
               for i, name in enumerate(names)]
    return fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=_LABEL, frameon=False,
                      handlelength=1.4, columnspacing=1.2)


def _load_labels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)   # a palette PNG's indices: the class ids


def plot_comparison(dataset, prediction_dirs_: dict[str, Path], ids: list[str], thin, crop: int,
                    title: str | None = None):
    """Fig. 5: per image of ``ids``, a row of image, ground truth and each method's prediction
    (``prediction_dirs_``: label -> folder of palette PNGs ``<id>.png``), and under it a row of the
    same ``crop`` x ``crop`` window of each, the window with the most pixels of the ``thin`` class
    ids (:func:`thin_window`), outlined in the row above; a class legend below."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from aafcore.datasets import colorize   # imports torch: only when plotting predictions

    index = {ident: i for i, ident in enumerate(dataset.ids)}
    cols = 2 + len(prediction_dirs_)
    side = BOOK_WIDTH / cols
    fig, axes = plt.subplots(2 * len(ids), cols, figsize=(BOOK_WIDTH, 2 * len(ids) * side + 1.0 + 0.3 * bool(title)),
                             dpi=BOOK_DPI, squeeze=False, layout="constrained")
    for r, ident in enumerate(ids):
        image, label, _ = dataset.load_raw(index[ident])
        y, x = thin_window(label, thin, crop)
        panels = [("image", image), ("ground truth", colorize(label, dataset.palette))]
        panels += [(name, colorize(_load_labels(Path(d) / f"{ident}.png"), dataset.palette))
                   for name, d in prediction_dirs_.items()]
        for c, (name, picture) in enumerate(panels):
            full, zoom = axes[2 * r, c], axes[2 * r + 1, c]
            full.imshow(picture, interpolation="nearest")
            full.add_patch(Rectangle((x - 0.5, y - 0.5), crop, crop, fill=False, ec="white", lw=1.6))
            full.add_patch(Rectangle((x - 0.5, y - 0.5), crop, crop, fill=False, ec="black", lw=0.6))
            zoom.imshow(picture[y:y + crop, x:x + crop], interpolation="nearest")
            for ax in (full, zoom):
                ax.set_xticks([])
                ax.set_yticks([])
            if r == 0:
                full.set_title(name, fontsize=_TITLE)
        axes[2 * r, 0].set_ylabel(ident, fontsize=_LABEL)
        axes[2 * r + 1, 0].set_ylabel(f"zoom ×{label.shape[1] / crop:.0f}", fontsize=_LABEL)
    class_legend(fig, dataset.class_names, dataset.palette)
    if title:
        fig.suptitle(title, fontsize=_TITLE + 1)
    return fig


def thin_iou_table(dataset, prediction_dirs_: dict[str, Path], ids: list[str], thin) -> pd.Series:
    """Per method (label of ``prediction_dirs_``), the IoU (%) of the ``thin`` class ids on the
    images ``ids`` only: per class, intersection over union summed over the images; then the mean
    over the thin classes present (in the labels or the predictions).  What Fig. 5's images show,
    as a number; not the val split's IoU."""
    index = {ident: i for i, ident in enumerate(dataset.ids)}
    labels = [dataset.load_raw(index[i])[1] for i in ids]
    out = {}
    for name, folder in prediction_dirs_.items():
        inter = np.zeros(len(thin))
        union = np.zeros(len(thin))
        for ident, label in zip(ids, labels):
            pred = _load_labels(Path(folder) / f"{ident}.png")
            if pred.shape != label.shape:
                raise ValueError(f"{folder}/{ident}.png is {pred.shape}, its label {label.shape}")
            valid = label != 255
            for j, c in enumerate(thin):
                a, b = (label == c) & valid, (pred == c) & valid
                inter[j] += (a & b).sum()
                union[j] += (a | b).sum()
        present = union > 0
        out[name] = 100 * float(np.mean(inter[present] / union[present])) if present.any() else np.nan
    return pd.Series(out, name="thin IoU on these images (%)")


def _thin_split_iou(df: pd.DataFrame, tag: str, base: str, method: str, thin_names) -> pd.Series:
    """Per seed, the mean IoU (%) of the thin classes on the whole split of evaluation ``tag``."""
    sel = select_rows(df, tag, base, [method]).set_index("seed").sort_index()
    return 100 * sel[[f"iou/{n}" for n in thin_names]].mean(axis=1)


def comparison_findings(df: pd.DataFrame, thin_names, shown: dict[str, pd.Series], seed: int = 0,
                        base: str = "pspnet", methods=("baseline", "affinity", "aaf")) -> str:
    """Fig. 5's "What we find" (Markdown): per evaluation tag of ``shown`` (``"val-source"``,
    ``"val-shifted"`` -> :func:`thin_iou_table` of the images shown), the thin-class IoU on those
    images beside the whole split's (seed ``seed``, and the mean over every seed found, with n), and
    whether the methods' order on the images shown is the split's."""
    names = {"val-source": "source", "val-shifted": "shifted"}
    lines = []
    for tag, on_images in shown.items():
        split = {}
        for method in methods:
            values = _thin_split_iou(df, tag, base, method, thin_names)
            split[method_label(base, method)] = values
        at_seed = pd.Series({m: v.get(seed, np.nan) for m, v in split.items()})
        images = ", ".join(f"{m} {v:.1f}" for m, v in on_images.items())
        whole = ", ".join(f"{m} {v:.1f}" for m, v in at_seed.items())
        means = ", ".join(f"{m} {v.mean():.1f} (n = {len(v)})" for m, v in split.items())
        same = list(on_images.sort_values().index) == list(at_seed.reindex(on_images.index).sort_values().index)
        lines.append(f"- **{names.get(tag, tag).capitalize()} domain.** Thin-class IoU on the images shown "
                     f"(seed {seed}): {images}. On the whole val split, seed {seed}: {whole}; mean over seeds: "
                     f"{means}. The methods' order on these images is "
                     + ("the same as on the whole split." if same else "**not** the whole split's: "
                        "these images are anecdotes, the tables are the evidence."))
    return "\n".join(lines)


def saved_ids(prediction_dirs_: dict[str, Path]) -> list[str]:
    """The image ids with a saved prediction ``<id>.png`` in every folder of ``prediction_dirs_``,
    sorted; empty when a folder is missing (an evaluation not run yet)."""
    found = [{p.stem for p in Path(d).glob("*.png")} for d in prediction_dirs_.values()]
    return sorted(set.intersection(*found)) if found and all(found) else []


def comparison_limitations(saved: dict[str, int], split_sizes: dict[str, int], seed: int, seeds: int) -> str:
    """Fig. 5's "Limitations" (Markdown): the evaluations save predictions of the first ``saved[tag]``
    images of splits of ``split_sizes[tag]`` images; the figure shows seed ``seed`` of the ``seeds``
    seeds the baseline has."""
    names = {"val-source": "source", "val-shifted": "shifted"}
    counts = "; ".join(f"{names.get(t, t)}: {saved.get(t, 0)} of {split_sizes.get(t, 0)}" for t in split_sizes)
    return "\n".join([
        f"- The evaluations save the predictions of the first images of each split only ({counts}); the images "
        "shown are picked among those, by their labels alone.",
        f"- One seed (seed {seed}) of the baseline's {seeds}: a different seed can order the methods "
        "differently on a few images; the tables on the other pages average over the seeds.",
        "- The zoom window is the one with the most thin-class pixels, which favours crowded windows; it is a "
        "rule on the labels, never on the predictions.",
    ])
