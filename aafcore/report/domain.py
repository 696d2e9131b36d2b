"""The unseen-domain page (Table 11): what the shifted domain looks like, and the per-seed gains over
the base on the source and the shifted domain that its text states.

Not re-exported by :mod:`aafcore.report`: ``from aafcore.report import domain``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aafcore.report.figures import BOOK_DPI, BOOK_WIDTH, _LABEL, _TITLE, class_legend
from aafcore.report.results import method_label, paper_table, select_rows
from aafcore.report.stats import paired_differences

__all__ = ["plot_domain_samples", "domain_gain_frame", "domain_findings", "domain_limitations"]


def plot_domain_samples(source, shifted, n: int = 3):
    """Rows of image/label pairs: the first ``n`` images of the ``source`` split beside the first
    ``n`` of the ``shifted`` one (datasets of :func:`aafcore.datasets.build_dataset`; the shifted
    domain's scenes are others, drawn by the same generator), with a class legend."""
    import matplotlib.pyplot as plt

    from aafcore.datasets import colorize   # imports torch: only when plotting

    side = BOOK_WIDTH / 4
    fig, axes = plt.subplots(n, 4, figsize=(BOOK_WIDTH, n * side + 1.0), dpi=BOOK_DPI, squeeze=False,
                             layout="constrained")
    titles = ("source: image", "source: labels", "shifted: image", "shifted: labels")
    for r in range(n):
        for c0, data in ((0, source), (2, shifted)):
            image, label, _ = data.load_raw(r)
            axes[r, c0].imshow(image)
            axes[r, c0 + 1].imshow(colorize(label, data.palette), interpolation="nearest")
            axes[r, c0].set_ylabel(data.ids[r], fontsize=_LABEL - 1) if c0 == 0 else None
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=_TITLE)
    class_legend(fig, source.class_names, source.palette)
    return fig


def domain_gain_frame(df: pd.DataFrame, methods=("affinity", "aaf", "gan", "emb"), base: str = "pspnet",
                      metrics=("miou", "pixel_accuracy")) -> pd.DataFrame:
    """Per method and metric, the per-seed gains over the base method (``baseline``) on the source
    (``val-source``) and the shifted domain (``val-shifted``), in points, on the seeds that have all
    four evaluations: ``seeds`` (a tuple), ``source`` and ``shifted`` (tuples of per-seed gains),
    their means and seed standard deviations (NaN for one seed), ``shifted > source`` (in how many
    seeds) and the paper's gain on GTA5 (Table 11).  Methods with no such seed are left out."""
    def seeds(method, tag):
        return set(select_rows(df, tag, base, [method])["seed"].astype(int))

    paper = paper_table(11).set_index("Method")
    paper_column = {"miou": "mIoU", "pixel_accuracy": "pix. acc"}
    rows = []
    for method in methods:
        common = sorted(seeds(method, "val-source") & seeds(method, "val-shifted")
                        & seeds("baseline", "val-source") & seeds("baseline", "val-shifted"))
        if not common:
            continue
        label = method_label(base, method)
        for metric in metrics:
            src = paired_differences(df, metric, method, "baseline", "val-source", base, seeds=common)
            shf = paired_differences(df, metric, method, "baseline", "val-shifted", base, seeds=common)
            column = paper_column.get(metric)
            paper_gain = (paper.loc[label, column] - paper.loc["PSPNet", column]
                          if column and label in paper.index else np.nan)
            rows.append({"method": label, "metric": metric, "seeds": tuple(common),
                         "source": tuple(src.to_numpy()), "shifted": tuple(shf.to_numpy()),
                         "source mean": src.mean(), "source std": src.std(ddof=1),
                         "shifted mean": shf.mean(), "shifted std": shf.std(ddof=1),
                         "shifted > source": int((shf.to_numpy() > src.to_numpy()).sum()),
                         "paper gain (GTA5)": paper_gain})
    return pd.DataFrame(rows)


def _pm(mean: float, std: float) -> str:
    return f"{mean:+.2f}" + ("" if np.isnan(std) else f" ± {std:.2f}")


def _n(seeds) -> str:
    return f"n = {len(seeds)}"


def domain_findings(df: pd.DataFrame, gains: pd.DataFrame, base: str = "pspnet") -> str:
    """The domain page's "What we find" (Markdown) from ``df`` (:func:`load_results`) and ``gains``
    (:func:`domain_gain_frame`): the base's drop from source to shifted mIoU, then per method its
    mIoU and pixel-accuracy gains on both domains (mean ± seed std, per-seed values, n), how many
    seeds gained more on the shifted domain, and the paper's gains on GTA5."""
    if gains.empty:
        return "*No method has both a source and a shifted evaluation beside the baseline's yet: nothing to report.*"
    lines = []
    src = select_rows(df, "val-source", base, ["baseline"])
    shf = select_rows(df, "val-shifted", base, ["baseline"])
    common = sorted(set(src["seed"]) & set(shf["seed"]))
    s = 100 * src[src["seed"].isin(common)]["miou"].mean()
    t = 100 * shf[shf["seed"].isin(common)]["miou"].mean()
    lines.append(f"- {method_label(base, 'baseline')}'s val mIoU is {s:.1f} on the source domain and {t:.1f} on the "
                 f"shifted one, {abs(s - t):.1f} points {'lower' if t < s else 'higher'} ({_n(common)} seeds).")
    for method, part in gains.groupby("method", sort=False):
        m = part.set_index("metric")
        seeds = m.iloc[0]["seeds"]
        text = f"- **{method}** ({_n(seeds)}, seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}): "
        pieces = []
        for metric, name in (("miou", "mIoU"), ("pixel_accuracy", "pixel accuracy")):
            if metric not in m.index:
                continue
            r = m.loc[metric]
            per_seed = ", ".join(f"{v:+.2f}" for v in r["shifted"])
            paper = "" if np.isnan(r["paper gain (GTA5)"]) else f"; the paper: {r['paper gain (GTA5)']:+.2f} on GTA5"
            pieces.append(f"{name} gain over {method_label(base, 'baseline')} {_pm(r['shifted mean'], r['shifted std'])} "
                          f"points on the shifted domain (per seed: {per_seed}) against "
                          f"{_pm(r['source mean'], r['source std'])} on the source domain{paper}")
        more = m.loc["miou", "shifted > source"] if "miou" in m.index else None
        text += "; ".join(pieces) + "."
        if more is not None:
            text += f" The shifted mIoU gain exceeds the source one in {more} of {len(seeds)} seeds."
        lines.append(text)
    n_min = min(len(s) for s in gains["seeds"])
    if n_min < 3:
        lines.append(f"- With as few as {n_min} seed{'s' if n_min != 1 else ''} per method these are descriptions, "
                     "not tests: a difference of gains smaller than their seed spread says nothing either way.")
    return "\n".join(lines)


def domain_limitations(gains: pd.DataFrame, images: int | None) -> str:
    """The domain page's "Limitations" (Markdown): the seeds behind ``gains``, the number of
    shifted val ``images`` evaluated, and how the synthetic shift differs from Cityscapes -> GTA5."""
    seeds = sorted({len(s) for s in gains["seeds"]}) if len(gains) else [0]
    counts = str(seeds[0]) if seeds[0] == seeds[-1] else f"{seeds[0]} to {seeds[-1]}"
    return "\n".join([
        f"- {counts} seed{'s' if seeds[-1] != 1 else ''} per method; the gains are paired by seed (each against the "
        "same seed's baseline).",
        f"- One split: {images if images is not None else 'an unknown number of'} shifted val images, single scale.",
        "- The shift is synthetic and changes appearance only (colours, textures, lighting, clutter, blur, noise) on "
        "scenes from the same generator and classes. Cityscapes -> GTA5 also changes the content (layouts, object "
        "shapes, classes' frequencies), so our numbers test a narrower kind of robustness than the paper's Table 11.",
        "- Our pixel accuracy is over all valid pixels (Σ TP / Σ valid); the paper's text calls its column "
        "\"mean pixel accuracy\", which may be a per-class mean: compare its direction, not its size.",
    ])
