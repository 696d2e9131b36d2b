"""What a results page finds, in words: the "What we find" and "Limitations" paragraphs of the
pixel, instance/boundary and cost pages, every number computed from the results.

Each text is built from the same tables the page shows (:func:`~aafcore.report.tables.method_table`,
:func:`~aafcore.report.tables.compare_gains`, :func:`~aafcore.report.cost.cost_table`), so that a
number in the prose is the number in a table (``tests/test_findings.py`` checks it).  The texts
work with whatever runs exist: a method without a run is named as missing, a number resting on one
seed says so, and nothing is said about a comparison that has no run.

Units: percent for every metric (IoU, pixel accuracy, boundary recall and precision), gains in
percentage points ("points"), times in ms per image and ratios as "×".  The functions return
markdown strings (the notebooks show them with ``IPython.display.Markdown``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aafcore.report.cost import cost_table, crf_run_time, run_time_table
from aafcore.report.results import base_label, load_benchmark, method_label, paper_table, select_rows
from aafcore.report.tables import compare_gains, method_table

__all__ = ["pixel_findings", "pixel_limitations", "instance_boundary_findings", "instance_boundary_limitations",
           "cost_findings", "cost_limitations", "method_summary", "seeds_phrase"]

_PSP = "pspnet"
_STUFF = ("sky", "ground")     # stuff classes without instances: no instance-wise IoU


# --------------------------------------------------------------------------- small pieces


def seeds_phrase(n: int) -> str:
    """``"1 seed"``, ``"3 seeds"``, ``"no run"``."""
    n = int(n)
    return "no run" if n == 0 else f"{n} seed{'s' if n != 1 else ''}"


def _pts(value: float) -> str:
    """A signed difference in points: ``+2.30``."""
    return f"{value:+.2f}"


def _pct(value: float) -> str:
    return f"{value:.2f}"


def _join(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def method_summary(df: pd.DataFrame, metric: str = "iou", tag: str = "val-source", base: str = _PSP,
                   groups: dict | None = None, with_crf: bool = False) -> pd.DataFrame:
    """Per method of ``base`` (index: the paper's row label, ``PSPNet``, ``AAF``, ...): ``mean``
    (percent), ``std`` (over seeds; NaN for one seed), ``seeds``, ``gain`` (mean minus the
    base network's mean, points; NaN without a baseline) and, with ``groups``, the group means
    and their gains (``thin``, ``gain thin``, ...).  The rows of :func:`method_table`, so the
    numbers are the page's; empty when no run of ``base`` has the evaluation."""
    t = method_table(df, metric, tag, base=base, groups=groups, with_crf=with_crf)
    if t.empty:
        return pd.DataFrame(columns=["mean", "std", "seeds", "gain"])
    t = t.set_index("method")
    out = pd.DataFrame({"mean": t["mean"], "std": t["± std"], "seeds": t["seeds"].astype(int)})
    label = base_label(base)
    base_row = t.loc[label] if label in t.index else None
    out["gain"] = out["mean"] - (base_row["mean"] if base_row is not None else np.nan)
    for g in groups or {}:
        if g in t.columns:
            out[g] = t[g]
            out[f"gain {g}"] = t[g] - (base_row[g] if base_row is not None else np.nan)
    return out


def _paper_gain(number: int, method: str, base: str = "PSPNet", column: str | None = None) -> float:
    """The gain of ``method`` over ``base`` in the paper's table ``number`` (points; NaN when the
    table has no such row), through :func:`compare_gains`' own arithmetic (percent)."""
    paper = paper_table(number)
    column = column or [c for c in paper.columns if c in ("mIoU", "mean")][0]
    rows = paper[paper["base"] == base].set_index("Method")[column]
    if method not in rows.index or base not in rows.index:
        return float("nan")
    scale = 100.0 if number in (8, 9) else 1.0
    return float(scale * (rows[method] - rows[base]))


def _gain_phrase(summary: pd.DataFrame, method: str, unit: str = "points") -> str | None:
    if method not in summary.index or not np.isfinite(summary.at[method, "gain"]):
        return None
    r = summary.loc[method]
    return f"{method} {_pct(r['mean'])} ({_pts(r['gain'])} {unit}, {seeds_phrase(r['seeds'])})"


def _close(summary: pd.DataFrame, a: str, b: str) -> str:
    """How ``a`` and ``b`` compare: their difference, and whether it lies within the larger of
    their seed standard deviations (then: the seeds cannot tell them apart)."""
    d = summary.at[a, "mean"] - summary.at[b, "mean"]
    spread = np.nanmax([summary.at[a, "std"], summary.at[b, "std"], np.nan]) if (
        np.isfinite(summary.at[a, "std"]) or np.isfinite(summary.at[b, "std"])) else np.nan
    na, nb = int(summary.at[a, "seeds"]), int(summary.at[b, "seeds"])
    on = f"{seeds_phrase(na)} against {seeds_phrase(nb)}" if na != nb else seeds_phrase(na)
    text = f"{a} − {b} = {_pts(d)} points ({on})"
    if np.isfinite(spread) and abs(d) <= spread:
        return (f"{text}, within one seed standard deviation ({spread:.2f}): **{a} ≈ {b}**"
                + ("; one seed cannot tell them apart" if min(na, nb) == 1 else ""))
    if not np.isfinite(spread):
        return f"{text}, with no seed spread to judge it by"
    return f"{text}, more than one seed standard deviation ({spread:.2f})"


def _missing(summary: pd.DataFrame, wanted: list[str]) -> list[str]:
    return [m for m in wanted if m not in summary.index]


# --------------------------------------------------------------------------- pixel level (Tables 2-5)


def pixel_findings(df: pd.DataFrame, info: dict) -> str:
    """"What we find" on the pixel-level page (markdown bullets): the PSPNet val mIoU of the
    baseline, Affinity and AAF with their gains and seeds, AAF against Affinity, the other methods'
    gains (GAN, Emb., CRF: a one-seed number is called so), the FCN gains, AAF's gain on the thin
    and the large classes, the paper's gains on VOC (Table 2) and Cityscapes (Table 3), both set
    against the same synthetic runs, and the test split with multi-scale + flip."""
    groups = info.get("groups") or {}
    val = method_summary(df, "iou", "val-source", groups=groups, with_crf=True)
    lines = []
    if val.empty or "PSPNet" not in val.index:
        return "* No PSPNet baseline run has its val evaluation yet: there is nothing to compare."
    b = val.loc["PSPNet"]
    gains = [g for g in (_gain_phrase(val, m) for m in ("Affinity", "AAF")) if g]
    lines.append(f"* **PSPNet, val, single scale:** the baseline reaches {_pct(b['mean'])} mIoU "
                 f"({seeds_phrase(b['seeds'])})" + (f"; {_join(gains)}." if gains else "; no Affinity or AAF run yet."))
    if {"AAF", "Affinity"} <= set(val.index):
        lines.append(f"* **AAF against Affinity:** {_close(val, 'AAF', 'Affinity')}.")
    others = []
    for m in ("GAN", "Emb.", "CRF"):
        if m in val.index and np.isfinite(val.at[m, "gain"]):
            r = val.loc[m]
            one = ", no spread" if r["seeds"] == 1 else ""
            others.append(f"{m} {_pts(r['gain'])} ({seeds_phrase(r['seeds'])}{one})")
    if others:
        ref = (f" against AAF's {_pts(val.at['AAF', 'gain'])} ({seeds_phrase(val.at['AAF', 'seeds'])})"
               if "AAF" in val.index else "")
        lines.append(f"* **Other structure methods, gain over PSPNet:** {_join(others)}{ref}.")
        if "GAN" in val.index and "AAF" in val.index:
            lines.append(f"* **GAN against AAF:** {_close(val, 'GAN', 'AAF')}.")
    fcn = method_summary(df, "iou", "val-source", base="fcn")
    if len(fcn) and "FCN" in fcn.index:
        parts = [g for g in (_gain_phrase(fcn, m) for m in ("Affinity", "AAF")) if g]
        lines.append(f"* **FCN base:** the baseline {_pct(fcn.at['FCN', 'mean'])} "
                     f"({seeds_phrase(fcn.at['FCN', 'seeds'])})" + (f"; {_join(parts)}." if parts else "."))
    if "AAF" in val.index and {"thin", "large"} <= set(val.columns):
        a = val.loc["AAF"]
        lines.append(f"* **Where AAF gains:** {_pts(a['gain thin'])} points on the thin classes and "
                     f"{_pts(a['gain large'])} on the large ones (means over {seeds_phrase(a['seeds'])}).")
    paper = []
    for m in ("Affinity", "AAF"):
        if m in val.index:
            paper.append(f"{m} {_pts(_paper_gain(2, m))} on VOC (Table 2) and {_pts(_paper_gain(3, m))} on "
                         f"Cityscapes (Table 3), ours {_pts(val.at[m, 'gain'])}")
    if paper:
        lines.append("* **Against the paper:** its gains over PSPNet are " + "; ".join(paper) + ". The same "
                     "synthetic runs are set against both tables: our numbers are neither VOC nor Cityscapes "
                     "numbers, and only the sign and rough size of the gains compare.")
    test = method_summary(df, "iou", "test-source-ms")
    if len(test) and "PSPNet" in test.index and "AAF" in test.index:
        parts = [g for g in (_gain_phrase(test, m) for m in ("Affinity", "AAF")) if g]
        lines.append(f"* **Test split, multi-scale + flip:** PSPNet {_pct(test.at['PSPNet', 'mean'])} "
                     f"({seeds_phrase(test.at['PSPNet', 'seeds'])}); {_join(parts)}; the paper's AAF gain is "
                     f"{_pts(_paper_gain(4, 'AAF'))} on VOC (Table 4) and {_pts(_paper_gain(5, 'AAF'))} on "
                     "Cityscapes (Table 5).")
    return "\n".join(lines)


def _seed_counts(df: pd.DataFrame, tag: str = "val-source") -> str:
    parts = []
    for base in ("fcn", _PSP):
        s = method_summary(df, "iou", tag, base=base, with_crf=base == _PSP)
        if len(s):
            parts.append(f"{base_label(base)}: " + ", ".join(f"{m} {int(n)}" for m, n in s["seeds"].items()))
    return "; ".join(parts)


def _absent(df: pd.DataFrame, tag: str = "val-source") -> list[str]:
    """The paper's methods (Tables 2-3) with no run of ours at ``tag``."""
    have = set()
    for base in ("fcn", _PSP):
        s = method_summary(df, "iou", tag, base=base, with_crf=base == _PSP)
        have |= {(base_label(base), m) for m in s.index}
    wanted = []
    for number in (2, 3):
        p = paper_table(number)
        wanted += [(b, m) for b, m in zip(p["base"], p["Method"])]
    return [f"{b} {m}" if m != b else b for b, m in dict.fromkeys(wanted) if (b, m) not in have]


def _common_limitations(df: pd.DataFrame, info: dict) -> list[str]:
    steps = info.get("steps")
    size = info.get("image_size")
    tests = "the study's results page" if info.get("benchmark") == "v2" else "the claims page"
    lines = [f"* **Seeds.** Every number is a mean over the seeds found — per method, val split: "
             f"{_seed_counts(df) or 'none'}. A one-seed number has no spread and cannot separate two methods; "
             f"`± std` is the spread over seeds, not a test (the paired tests are on {tests})."]
    absent = _absent(df)
    if absent:
        lines.append(f"* **Not run (yet):** {_join(absent)} — their rows are empty, nothing is filled in.")
    what = (f"{size} px images, " if size else "") + (f"{steps} training steps from scratch" if steps else "")
    lines.append(f"* **Setting.** One synthetic benchmark ({what}) with a small network, against the paper's "
                 "ImageNet-pretrained ResNet-101 on VOC and Cityscapes: the classes are not the paper's, and "
                 "the same runs are compared with the VOC and the Cityscapes tables.")
    return lines


def pixel_limitations(df: pd.DataFrame, info: dict) -> str:
    """"Limitations" of the pixel-level page (markdown bullets): the seeds each mean rests on,
    the paper's methods without a run, the setting (synthetic, small, from scratch; one set of
    runs against both VOC and Cityscapes), and how the CRF row was tuned."""
    lines = _common_limitations(df, info)
    if len(select_rows(df, "val-source-crf", _PSP, ["crf"])):
        how = ("at parameters tuned on the tuning split (the study's setup page)" if info.get("benchmark") == "v2"
               else "at the paper's parameters, not tuned to these images")
        lines.append(f"* **CRF.** The CRF row is the PSPNet baseline post-processed with the dense CRF {how}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- instance and boundary (Tables 6-9)


def _instance_groups(groups: dict) -> dict:
    return {g: [n for n in members if n not in _STUFF] for g, members in (groups or {}).items()}


def _tolerance_px(info: dict, tolerance: float = 0.0075) -> float:
    size = info.get("image_size")
    return float(tolerance * np.hypot(size, size)) if size else float("nan")


def instance_boundary_findings(df: pd.DataFrame, info: dict) -> str:
    """"What we find" on the instance/boundary page (markdown bullets): the instance-wise mIoU
    gains of Affinity and AAF over PSPNet (with thin/large), their boundary recall and
    precision gains (percent points) beside the paper's recall gains (Tables 8-9), and the
    one-logit-cell scores when the evaluations have them."""
    groups = info.get("groups") or {}
    inst = method_summary(df, "instance_iou", "val-source", groups=_instance_groups(groups))
    lines = []
    if inst.empty or "PSPNet" not in inst.index:
        return "* No PSPNet baseline run has its val evaluation yet: there is nothing to compare."
    gains = [g for g in (_gain_phrase(inst, m) for m in ("Affinity", "AAF")) if g]
    lines.append(f"* **Instance-wise mIoU:** PSPNet {_pct(inst.at['PSPNet', 'mean'])} "
                 f"({seeds_phrase(inst.at['PSPNet', 'seeds'])})" + (f"; {_join(gains)}." if gains else "."))
    if "AAF" in inst.index and {"thin", "large"} <= set(inst.columns):
        lines.append(f"* **AAF's instance-wise gain by group:** {_pts(inst.at['AAF', 'gain thin'])} points on the "
                     f"thin classes, {_pts(inst.at['AAF', 'gain large'])} on the large ones (stuff classes "
                     "without instances left out).")
    if "AAF" in inst.index:
        lines.append(f"* The paper's instance-wise gain of AAF: {_pts(_paper_gain(6, 'AAF'))} on VOC (Table 6), "
                     f"{_pts(_paper_gain(7, 'AAF'))} on Cityscapes (Table 7).")
    for metric, label in (("boundary_recall", "recall"), ("boundary_precision", "precision")):
        s = method_summary(df, metric, "val-source")
        if "PSPNet" not in s.index:
            continue
        parts = [g for g in (_gain_phrase(s, m) for m in ("Affinity", "AAF")) if g]
        paper = (f" The paper's recall gain of AAF: {_pts(_paper_gain(8, 'AAF'))} on VOC (Table 8), "
                 f"{_pts(_paper_gain(9, 'AAF'))} on Cityscapes (Table 9); it reports no precision."
                 if metric == "boundary_recall" and "AAF" in s.index else "")
        lines.append(f"* **Boundary {label} (%):** PSPNet {_pct(s.at['PSPNet', 'mean'])} "
                     f"({seeds_phrase(s.at['PSPNet', 'seeds'])})"
                     + (f"; {_join(parts)}." if parts else ".") + paper)
    if "mean_boundary_recall_cell" in df.columns and df["mean_boundary_recall_cell"].notna().any():
        cells = df.dropna(subset=["mean_boundary_recall_cell"])
        for metric, label in (("boundary_recall_cell", "recall"), ("boundary_precision_cell", "precision")):
            s = method_summary(cells, metric, "val-source")
            if "PSPNet" in s.index:
                parts = [g for g in (_gain_phrase(s, m) for m in ("Affinity", "AAF")) if g]
                lines.append(f"* **Boundary {label} within one logit cell (%):** PSPNet "
                             f"{_pct(s.at['PSPNet', 'mean'])} ({seeds_phrase(s.at['PSPNet', 'seeds'])})"
                             + (f"; {_join(parts)}." if parts else "."))
    return "\n".join(lines)


def instance_boundary_limitations(df: pd.DataFrame, info: dict) -> str:
    """"Limitations" of the instance/boundary page (markdown bullets): seeds, the paper's
    tolerance in pixels on our images (why our recall is low), instance IoU without stuff classes,
    precision not in the paper, and the setting."""
    lines = _common_limitations(df, info)[:1]
    px, voc = _tolerance_px(info), 0.0075 * float(np.hypot(500, 375))
    if np.isfinite(px):
        tight = (": a boundary pixel must be almost exactly in place, so our recall is far below the paper's"
                 if px / 8 < 0.25 else "")
        lines.append(f"* **Tolerance.** The paper's boundary tolerance, 0.0075 of the image diagonal, is {px:.2f} px "
                     f"on our {info['image_size']} px images ({px / 8:.2f} of a logit cell at output stride 8) "
                     f"against {voc:.1f} px on a VOC image{tight}; recall values depend on it, so compare gains. "
                     "The one-cell scores (where shown) count a boundary pixel within 8 px.")
    lines.append("* **Instance-wise IoU** leaves out the stuff classes (sky, ground), which have no instances; its "
                 "group means are over the remaining classes only.")
    lines.append("* **Precision** is ours only: the paper reports recall.")
    lines += _common_limitations(df, info)[2:]
    return "\n".join(lines)


# --------------------------------------------------------------------------- cost (Table 1)


def cost_findings(df: pd.DataFrame, results_root="results", device: str = "cpu") -> str:
    """"What we find" on the cost page (markdown bullets): the training-step ratios of AAF and GAN
    to the baseline (side-by-side benchmark), that AAF runs the baseline's network at inference
    (the runs' own times), what the CRF adds per image, and the mIoU of CRF, GAN and AAF — the
    numbers of :func:`~aafcore.report.cost.cost_table` and
    :func:`~aafcore.report.cost.run_time_table`."""
    table = cost_table(df, results_root, device)
    lines = []
    step = table["training step"]
    known = {m: step[m] for m in ("AAF", "GAN") if step[m] != "–"}
    if known:
        bench = load_benchmark(results_root, f"train_step_{device}") or {}
        of = f", on the `{bench['profile']}` profile's network" if bench.get("profile") else ""
        lines.append("* **Training:** a training step of " + _join([f"{m} takes {v}" for m, v in known.items()])
                     + f" the baseline's (side-by-side benchmark{of}). The paper's \"easy/medium/hard\" training "
                       "is not measured beyond this and the seed spread.")
    runs = run_time_table(df).set_index("method")
    if {"PSPNet", "AAF"} <= set(runs.index):
        lines.append(f"* **Inference:** AAF changes only the training loss, so it runs the baseline's network: "
                     f"{runs.at['AAF', 'network (ms/image)']:.1f} ms per image against "
                     f"{runs.at['PSPNet', 'network (ms/image)']:.1f} ms for PSPNet in these runs' evaluations "
                     "(the same network timed in different runs).")
    crf = crf_run_time(df)
    if crf is not None:
        lines.append(f"* **The CRF** adds {crf['crf_ms']:.1f} ms per image, ×{crf['ratio']:.1f} the network's "
                     f"{crf['network_ms']:.1f} ms in the same pass ({seeds_phrase(crf['seeds'])}).")
    scores = [f"{m} {_pct(table.at[m, 'mIoU'])} ({seeds_phrase(table.at[m, 'seeds'])})"
              for m in table.index if table.at[m, "seeds"] > 0]
    if scores:
        line = "* **mIoU (PSPNet, val):** " + _join(scores)
        if table.at["AAF", "seeds"] and table.at["CRF", "seeds"]:
            line += (f"; AAF − CRF = {_pts(table.at['AAF', 'mIoU'] - table.at['CRF', 'mIoU'])} points, without the "
                     "CRF's run-time cost")
        lines.append(line + ".")
    return "\n".join(lines) if lines else "* No run and no benchmark yet: nothing to report."


def cost_limitations(df: pd.DataFrame, results_root="results", device: str = "cpu",
                     profile: str | None = None) -> str:
    """"Limitations" of the cost page (markdown bullets): where the timings come from (a shared
    2-thread CPU, another profile's network for the benchmarks), the seeds, and what Table 1's
    qualitative columns would need."""
    table = cost_table(df, results_root, device)
    lines = [f"* **Seeds.** The mIoU column rests on " + _join([f"{seeds_phrase(table.at[m, 'seeds'])} for {m}"
                                                                 for m in table.index]) + "."]
    bench = load_benchmark(results_root, f"train_step_{device}")
    if bench is not None:
        threads = (bench.get("provenance", {}).get("packages", {}) or {}).get("cpu_threads")
        other = (f", with the `{bench['profile']}` profile's network rather than these runs'"
                 if profile is not None and bench.get("profile") not in (None, profile) else "")
        lines.append(f"* **Timings** are wall-clock on a shared {device.upper()}"
                     + (f" ({threads} threads)" if threads else "") + f"{other}; the benchmark's ratios, measured "
                     "side by side, are the comparison, the times themselves are not portable.")
    lines.append("* **Training difficulty** (the paper's easy/medium/hard) would need failure rates over many "
                 "runs; we have step times and the seed spread only.")
    return "\n".join(lines)
