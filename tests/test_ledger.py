"""The study's claims ledger (aafcore.report.ledger): per-seed differences of every kind of claim
on hand-made results with known values, the ledger's intervals, p-values and verdicts checked
against scipy and a Holm step-down written here, missing seeds, the real protocol end to end,
and the provenance check in a temporary git repository."""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as scipy_stats

from aafcore import report
from aafcore.report import ledger as ledger_module
from aafcore.report.ledger import (claim_differences, ledger_view, provenance_check, provenance_sentence,
                                   study_ledger)
from aafcore.report.protocol import PROTOCOL_PATH, load_protocol
from aafcore.report.stats import VERDICT_COLOURS, VERDICTS

ROOT = Path(__file__).resolve().parent.parent
LARGE, MID, THIN = ["sky", "ground", "building"], ["animal"], ["pole", "fence", "wheel", "person"]
CLASSES = LARGE + MID + THIN
STUFF = ("sky", "ground")                                      # no instances: instance IoU NaN
SEEDS = list(range(10))
ALPHA, M = 0.05, 22                                             # the real protocol's alpha and family size


@pytest.fixture(scope="module")
def protocol():
    return load_protocol()


@pytest.fixture(scope="module")
def ledger(protocol):
    """The ledger of the real protocol on :func:`_frame` (computed once: a ledger takes seconds here)."""
    return study_ledger(_frame(), protocol)


def _row(base: str, method: str, seed: int, tag: str = "val-source", *, miou: float, iou: dict | None = None,
         boundary: dict | None = None, kernel: dict | None = None, ks: str | None = None, weight_by: str | None = None,
         commit: str | None = "0" * 40, pixel_accuracy: float = 0.9) -> dict:
    """One row with the columns load_results builds (fractions; per class ``<metric>/<class>``)."""
    aaf = method.startswith("aaf")
    iou = {c: 0.5 for c in CLASSES} | (iou or {})
    boundary = {c: 0.5 for c in CLASSES} | (boundary or {})
    row = {"run": f"{base}-{'baseline' if method == 'crf' else method}-s{seed}", "tag": tag, "base": base,
           "method": method, "trained_method": "baseline" if method == "crf" else method, "seed": seed,
           "kernel_sizes": (ks or "3,5,7") if aaf else "", "weight_by": (weight_by or "label") if aaf else "",
           "split": tag.split("-")[0], "domain": "source", "mode": "single-scale", "path": "x", "git_commit": commit}
    for c in CLASSES:
        row[f"iou/{c}"] = iou[c]
    row["miou"] = miou
    row["pixel_accuracy"] = pixel_accuracy
    for c in CLASSES:
        row[f"instance_iou/{c}"] = np.nan if c in STUFF else iou[c] - 0.05
    row["instance_miou"] = float(np.nanmean([row[f"instance_iou/{c}"] for c in CLASSES]))
    for c in CLASSES:
        row[f"boundary_recall/{c}"] = boundary[c]
    row["mean_boundary_recall"] = float(np.mean(list(boundary.values())))
    for c in CLASSES:
        row[f"effective_kernel_size/{c}"] = (kernel or {}).get(c, np.nan) if aaf else np.nan
    return row


# the known per-seed values (fractions); the expected differences in pp are written out in the tests
def _base_miou(s):
    return 0.40 + 0.01 * (s % 3)


def _base_iou(s):
    return {c: 0.3 + 0.05 * i + 0.01 * (s % 3) for i, c in enumerate(CLASSES)}


AAF_IOU_GAIN = {"sky": 0.026, "ground": 0.0, "building": 0.004, "animal": 0.2,   # large: mean 1.0 pp, building 0.4
                "pole": 0.06, "fence": 0.04, "wheel": 0.05, "person": 0.05}      # thin: 5.0 pp (+0.1 pp x s on person)


def _boundary(s, method):
    base = 0.5 + 0.01 * (s % 3)
    if method == "baseline":
        return {c: base for c in CLASSES}
    out = {c: base + 0.05 + 0.002 * (s % 2) for c in CLASSES}                   # +5 pp, steady
    out["wheel"] = base - 0.03 + 0.001 * (s % 2)                               # -3 pp: wheel does not improve
    return out


def _kernel(s):
    return {**{c: 5.0 + 0.1 * (s % 2) for c in LARGE}, "animal": 4.0, **{c: 3.0 + 0.01 * s for c in THIN}}


def _frame(seeds=SEEDS) -> pd.DataFrame:
    """PSPNet baseline (also evaluated with the CRF), affinity and AAF on seeds 0-9, val-source."""
    rows = []
    for s in seeds:
        aaf_miou = _base_miou(s) + (3.0 + 0.1 * s) / 100                     # C2: d = 3 + 0.1 s pp
        aaf_iou = {c: v + AAF_IOU_GAIN[c] + (0.001 * s if c == "person" else 0) for c, v in _base_iou(s).items()}
        rows += [
            _row("pspnet", "baseline", s, miou=_base_miou(s), iou=_base_iou(s), boundary=_boundary(s, "baseline")),
            _row("pspnet", "aaf", s, miou=aaf_miou, iou=aaf_iou, boundary=_boundary(s, "aaf"), kernel=_kernel(s)),
            # C3 (aaf > affinity): d = -(2 + 0.1 (s % 2)) pp
            _row("pspnet", "affinity", s, miou=aaf_miou + (2.0 + 0.1 * (s % 2)) / 100),
            # C19 (aaf > crf, at val-source-crf): d = 0.2 + 0.3 (-1)^s pp; the baseline's val-source is not it
            _row("pspnet", "crf", s, "val-source-crf", miou=aaf_miou - (0.2 + 0.3 * (-1) ** s) / 100),
        ]
    return pd.DataFrame(rows)


def _expected_interval(d, m=M, classes=1):
    d = np.asarray(d, dtype=float)
    half = scipy_stats.t.ppf(1 - ALPHA / (2 * m * classes), len(d) - 1) * scipy_stats.sem(d)
    return d.mean() - half, d.mean() + half


def _holm(p: dict, m: int) -> dict:
    """Holm's adjusted p-values by the step-down definition; the family's untested claims count in m."""
    ranked = sorted((v, k) for k, v in p.items() if not np.isnan(v))
    out, running = {}, 0.0
    for i, (v, k) in enumerate(ranked):
        running = max(running, min(1.0, (m - i) * v))
        out[k] = running
    return out


# --------------------------------------------------------------------------- differences per kind


def test_greater_in_points_over_the_claims_seeds(protocol):
    df = _frame()
    d = claim_differences(df, protocol.claim("C2"))
    assert d.index.tolist() == SEEDS and d.attrs["missing"] == []
    assert d.to_numpy() == pytest.approx([3.0 + 0.1 * s for s in SEEDS])             # pp, not fractions
    c3 = claim_differences(df, protocol.claim("C3"))
    assert c3.to_numpy() == pytest.approx([-(2.0 + 0.1 * (s % 2)) for s in SEEDS])


def test_the_crf_side_is_the_baseline_evaluated_with_the_crf_at_its_own_tag(protocol):
    df = _frame()
    claim = protocol.claim("C19")
    assert claim.b.method == "crf" and claim.b.tag == "val-source-crf" and claim.tag == "val-source"
    d = claim_differences(df, claim)
    assert d.to_numpy() == pytest.approx([0.2 + 0.3 * (-1) ** s for s in SEEDS])
    assert "val-source-crf" in d.name
    # without its CRF evaluation the claim has no pair at all (not the baseline's val-source instead)
    no_crf = claim_differences(df[df["tag"] != "val-source-crf"], claim)
    assert len(no_crf) == 0 and no_crf.attrs["missing"] == SEEDS


def test_gain_thin_is_the_thin_gain_minus_the_large_gain_per_seed(protocol):
    df, groups = _frame(), protocol.benchmark["spec"]["class_groups"]
    assert groups == {"large": LARGE, "mid": MID, "thin": THIN}
    c8 = claim_differences(df, protocol.claim("C8"), groups)
    # thin: (6 + 4 + 5 + 5 + 0.1 s) / 4 = 5 + 0.025 s; large: (2.6 + 0 + 0.4) / 3 = 1.0; animal (mid) not used
    assert c8.to_numpy() == pytest.approx([4.0 + 0.025 * s for s in SEEDS])
    # instance IoU: sky and ground are stuff (NaN), so the large gain is building's alone, 0.4
    c11 = claim_differences(df, protocol.claim("C11"), groups)
    assert c11.to_numpy() == pytest.approx([4.6 + 0.025 * s for s in SEEDS])


def test_every_class_gives_one_series_per_class(protocol):
    per_class = claim_differences(_frame(), protocol.claim("C13"))
    assert list(per_class) == CLASSES
    assert per_class["pole"].to_numpy() == pytest.approx([5.0 + 0.2 * (s % 2) for s in SEEDS])
    assert per_class["wheel"].to_numpy() == pytest.approx([-3.0 + 0.1 * (s % 2) for s in SEEDS])


def test_kernel_sizes_large_minus_thin_in_pixels(protocol):
    d = claim_differences(_frame(), protocol.claim("C14"), protocol.benchmark["spec"]["class_groups"])
    assert d.to_numpy() == pytest.approx([2.0 + 0.1 * (s % 2) - 0.01 * s for s in SEEDS])   # px, not scaled


def test_run_time_is_not_a_seed_statistic(protocol):
    assert claim_differences(_frame(), protocol.claim("C20")) is None


def test_a_missing_seed_is_left_out_and_recorded(protocol):
    df = _frame()
    df = df.drop(df[(df["method"] == "baseline") & (df["seed"] == 7)].index)
    d = claim_differences(df, protocol.claim("C2"))
    assert d.index.tolist() == [s for s in SEEDS if s != 7] and d.attrs["missing"] == [7]
    alone = dataclasses.replace(protocol, claims=(protocol.claim("C2"), protocol.claim("C3")))    # m = 2
    row = study_ledger(df, alone).set_index("id").loc["C2"]
    assert row["n"] == 9 and row["missing"] == "7"
    assert "pspnet/baseline (val-source) lacks seed(s) 7" in row["note"]
    expected = [3.0 + 0.1 * s for s in SEEDS if s != 7]
    assert row["d"] == pytest.approx(np.mean(expected))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(_expected_interval(expected, m=2))
    # a NaN value is missing as well, never paired
    nan = _frame()
    nan.loc[(nan["method"] == "aaf") & (nan["seed"] == 2), "miou"] = np.nan
    assert claim_differences(nan, protocol.claim("C2")).attrs["missing"] == [2]


def test_two_rows_for_one_seed_is_an_error_not_a_choice(protocol):
    df = _frame()
    twice = pd.concat([df, df[df["method"] == "baseline"].head(1)])
    with pytest.raises(ValueError, match="more than one row for seed"):
        claim_differences(twice, protocol.claim("C2"))


# --------------------------------------------------------------------------- the ledger


def test_the_ledger_tests_corrects_and_decides(protocol, ledger):
    assert ledger["id"].tolist() == [c.id for c in protocol.claims]                   # the protocol's order
    assert set(report.LEDGER_COLUMNS) <= set(ledger.columns)
    for column in ("id", "text", "d", "ci_low", "ci_high", "p", "p_holm", "n", "paper_effect", "verdict", "missing"):
        assert column in ledger.columns
    rows = ledger.set_index("id")
    diffs = {"C2": [3.0 + 0.1 * s for s in SEEDS], "C3": [-(2.0 + 0.1 * (s % 2)) for s in SEEDS],
             "C19": [0.2 + 0.3 * (-1) ** s for s in SEEDS], "C8": [4.0 + 0.025 * s for s in SEEDS],
             "C14": [2.0 + 0.1 * (s % 2) - 0.01 * s for s in SEEDS]}
    for cid, d in diffs.items():
        lo, hi = _expected_interval(d)
        assert rows.at[cid, "n"] == 10 and rows.at[cid, "missing"] == "", cid
        assert rows.at[cid, "d"] == pytest.approx(np.mean(d)), cid
        assert (rows.at[cid, "ci_low"], rows.at[cid, "ci_high"]) == (pytest.approx(lo), pytest.approx(hi)), cid
        assert rows.at[cid, "ci_level"] == pytest.approx(1 - ALPHA / M), cid
        p = scipy_stats.ttest_1samp(d, 0.0, alternative="greater").pvalue
        assert rows.at[cid, "p"] == pytest.approx(p), cid
    assert rows.at["C2", "verdict"] == "holds"                    # interval well above 0 and above 2.27
    assert rows.at["C3", "verdict"] == "does not hold"            # interval below 0
    assert rows.at["C19", "verdict"] == "not reproduced"          # interval reaches 0, below the paper's 2.71
    assert rows.at["C19", "ci_low"] < 0 < rows.at["C19", "ci_high"] < protocol.claim("C19").paper_effect
    # C8: 4.0-4.2 pp with a tiny spread: above 0 (holds) but below the paper's 5.54, which the note says
    assert rows.at["C8", "verdict"] == "holds"
    assert 0 < rows.at["C8", "ci_low"] < rows.at["C8", "ci_high"] < protocol.claim("C8").paper_effect
    assert "smaller than the paper's effect" in rows.at["C8", "note"]
    assert rows.at["C14", "verdict"] == "holds" and rows.at["C14", "unit"] == "px"
    assert np.isnan(rows.at["C14", "paper_effect"])
    assert rows.at["C2", "paper_effect"] == protocol.claim("C2").paper_effect
    # the claims without runs stay in the family (m = 22) with every seed missing
    assert rows.at["K1", "n"] == 0 and rows.at["K1", "verdict"] == "inconclusive"
    assert rows.at["K1", "missing"] == "0, 1, 2, 3, 4" and "no results" in rows.at["K1", "note"]
    # Holm over the whole family, untested claims counted in m
    family = [c.id for c in protocol.claims if c.test == "paired_t"]
    expected = _holm(rows.loc[family, "p"].to_dict(), M)
    for cid, p_holm in expected.items():
        assert rows.at[cid, "p_holm"] == pytest.approx(p_holm), cid
    assert rows.loc[family, "p_holm"].notna().sum() == len(expected) < M
    # C20: outside the family, not tested without a benchmark
    assert rows.at["C20", "verdict"] == "not tested" and np.isnan(rows.at["C20", "p_holm"])
    assert ledger.attrs["family_size"] == M


def test_every_class_fails_on_one_class(protocol, ledger):
    rows = ledger.set_index("id")
    wheel = [-3.0 + 0.1 * (s % 2) for s in SEEDS]
    assert rows.at["C13", "verdict"] == "does not hold"
    assert rows.at["C13", "d"] == pytest.approx(np.mean(wheel))                    # the weakest class
    assert (rows.at["C13", "ci_low"], rows.at["C13", "ci_high"]) == pytest.approx(_expected_interval(wheel, classes=8))
    assert rows.at["C13", "ci_level"] == pytest.approx(1 - ALPHA / (M * 8))
    assert "7 of 8 classes hold" in rows.at["C13", "note"] and "wheel" in rows.at["C13", "note"]
    # the largest class p-value enters Holm (intersection-union)
    assert rows.at["C13", "p"] == pytest.approx(scipy_stats.ttest_1samp(wheel, 0.0, alternative="greater").pvalue)
    # a noisy class with a positive mean: not every class holds, none fails -> inconclusive
    df = _frame()
    noisy = {s: 0.005 + 0.03 * np.cos(s) for s in SEEDS}
    aaf = df["method"] == "aaf"
    df.loc[aaf, "boundary_recall/wheel"] = [0.5 + 0.01 * (s % 3) + noisy[s] for s in df.loc[aaf, "seed"]]
    row = study_ledger(df, dataclasses.replace(protocol, claims=(protocol.claim("C13"),))).set_index("id").loc["C13"]
    assert np.mean(list(noisy.values())) > 0 and row["verdict"] == "inconclusive"


def test_the_family_is_every_paired_t_claim_of_the_protocol(protocol, ledger):
    raw = yaml.safe_load((ROOT / PROTOCOL_PATH).read_text())
    tested = [c["id"] for c in raw["claims"] if c["test"] == "paired_t"]
    assert len(tested) == M == protocol.family_size and {"K1", "K2", "K3"} <= set(tested) and "C20" not in tested
    assert ledger.attrs["family_size"] == len(tested)
    tested_rows = ledger[ledger["id"].isin(tested)]
    ordinary = tested_rows[tested_rows["kind"] != "every_class"]
    assert np.allclose(ordinary["ci_level"], 1 - ALPHA / len(tested))
    # the smallest p of the family is multiplied by m
    best = tested_rows.loc[tested_rows["p"].idxmin()]
    assert best["p_holm"] == pytest.approx(min(1.0, len(tested) * best["p"]))


def test_the_ledger_refuses_rules_it_does_not_apply(protocol):
    changed = dataclasses.replace(protocol, statistics={**protocol.statistics, "verdict_rules": "other rules"})
    with pytest.raises(ValueError, match="verdict_rules"):
        study_ledger(_frame(), changed)


def test_the_run_time_claim_uses_the_old_rule_with_a_benchmark(protocol):
    df = _frame()
    small = dataclasses.replace(protocol, claims=(protocol.claim("C2"), protocol.claim("C20")))
    assert small.family_size == 1
    fast = {"median_ms_per_image": {"network_single_scale": 10.0, "crf": 50.0}}
    out = study_ledger(df, small, benchmark=fast).set_index("id")
    assert out.at["C20", "verdict"] == "holds" and "500%" in out.at["C20", "note"] and np.isnan(out.at["C20", "p_holm"])
    assert out.at["C2", "ci_level"] == pytest.approx(1 - ALPHA)        # m = 1: C20 is not in the family
    cheap = {"median_ms_per_image": {"network_single_scale": 10.0, "crf": 0.5}}
    assert study_ledger(df, small, benchmark=cheap).set_index("id").at["C20", "verdict"] == "does not hold"


def test_the_ledger_view_colours_the_verdicts(ledger):
    html = ledger_view(ledger).to_html()
    for v in ("holds", "does not hold", "not reproduced"):
        assert VERDICT_COLOURS[v] in html
    assert "C19" in html and "ci_low" in html
    assert html == ledger_view(ledger).to_html()                    # the same page at every run (nbval)


def test_the_package_exports_the_ledger():
    module = importlib.import_module("aafcore.report.ledger")
    for public in module.__all__:
        assert getattr(report, public) is getattr(module, public) and public in report.__all__


# --------------------------------------------------------------------------- the real protocol end to end


def _study_frame(protocol, rng) -> pd.DataFrame:
    """Every run group, seed and evaluation of the protocol, with random values."""
    rows = []
    for g in protocol.runs:
        ks = ",".join(map(str, g.kernel_sizes)) if g.kernel_sizes else None
        for s in g.seeds:
            for tag in g.evaluations:
                method = "crf" if tag.endswith("-crf") and g.method == "baseline" else g.method
                row = _row(g.base, method, s, tag, miou=rng.uniform(0.3, 0.6),
                           iou={c: rng.uniform(0.1, 0.9) for c in CLASSES},
                           boundary={c: rng.uniform(0.3, 0.7) for c in CLASSES},
                           kernel={c: rng.uniform(3, 7) for c in CLASSES}, ks=ks, weight_by=g.weight_by,
                           pixel_accuracy=rng.uniform(0.7, 0.9), commit="1" * 40)
                row["run"] = f"{g.id}-s{s}"
                rows.append(row)
    return pd.DataFrame(rows)


def test_every_claim_of_the_real_protocol_is_evaluated_end_to_end(protocol):
    df = _study_frame(protocol, np.random.default_rng(0))
    ledger = study_ledger(df, protocol)
    assert ledger["id"].tolist() == [c.id for c in protocol.claims] and len(ledger) == 23
    rows = ledger.set_index("id")
    for claim in protocol.claims:
        row = rows.loc[claim.id]
        if claim.test == "paired_t":
            assert row["n"] == len(claim.seeds) and row["missing"] == "", claim.id
            assert np.isfinite([row["d"], row["ci_low"], row["ci_high"], row["p"], row["p_holm"]]).all(), claim.id
            assert row["verdict"] in VERDICTS, claim.id
        else:
            assert row["verdict"] == "not tested"
    assert ledger.attrs["family_size"] == protocol.family_size == 22
    # K3 is a question: two-sided
    k3 = claim_differences(df, protocol.claim("K3"))
    assert rows.at["K3", "p"] == pytest.approx(scipy_stats.ttest_1samp(k3, 0.0).pvalue)
    # every study run is found in the results: 3 groups x 10 seeds + 10 groups x 5 seeds
    assert sum(len(g.seeds) for g in protocol.runs) == 80
    check = provenance_check(df, protocol)
    assert len(check) == 80 and check["run"].is_unique


# --------------------------------------------------------------------------- provenance in git


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    env = {**os.environ, **({"GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date} if date else {})}
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                           "-c", "core.hooksPath=/dev/null", *args], cwd=repo, capture_output=True, text=True,
                          check=True, env=env)
    return done.stdout.strip()


def _commit(repo: Path, path: str, text: str | None = None, source: Path | None = None, date: str | None = None) -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        shutil.copy(source, repo / path)
    else:
        (repo / path).write_text(text)
    _git(repo, "add", path)
    _git(repo, "commit", "-q", "-m", f"change {path}", date=date)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def history(tmp_path, monkeypatch):
    """A repository with commits A (code) -> B (the protocol, 2026-11-29) -> C (code after it)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    a = _commit(repo, "code.py", "x = 1\n", date="2026-11-20T12:00:00+00:00")
    b = _commit(repo, PROTOCOL_PATH, source=ROOT / PROTOCOL_PATH, date="2026-11-29T12:00:00+00:00")
    c = _commit(repo, "code.py", "x = 2\n", date="2026-12-01T12:00:00+00:00")
    return repo, load_protocol(repo / PROTOCOL_PATH), a, b, c


def test_runs_before_the_protocol_or_dirty_are_flagged(history):
    repo, protocol, a, b, c = history
    check = provenance_check({"at-A": a, "at-C": c, "dirty-C": c + "+dirty"}, protocol).set_index("run")
    assert check.attrs["protocol_commit"] == b and check.attrs["protocol_date"] == "2026-11-29"
    assert check.at["at-A", "flags"] == "before the protocol" and not check.at["at-A", "ok"]
    assert check.at["at-C", "ok"] and check.at["at-C", "flags"] == ""
    assert check.at["dirty-C", "flags"] == "dirty working tree" and not check.at["dirty-C", "ok"]
    sentence = provenance_sentence(provenance_check({"at-A": a, "at-C": c, "dirty-C": c + "+dirty"}, protocol))
    assert sentence.startswith(f"2 of 3 study runs were not made at a clean commit that descends from the "
                               f"protocol's commit {b[:7]} (2026-11-29)")
    assert "before the protocol: at-A" in sentence and "dirty working tree: dirty-C" in sentence


def test_the_study_runs_of_a_results_frame_are_checked(history):
    repo, protocol, a, b, c = history
    rows = [_row("pspnet", "baseline", 0, miou=0.4, commit=c),
            _row("pspnet", "crf", 0, "val-source-crf", miou=0.4, commit=c),     # same run, evaluated with the CRF
            _row("pspnet", "aaf", 1, miou=0.4, commit=c),
            _row("pspnet", "aaf", 0, miou=0.4, ks="3,5", commit=c),              # pspnet-aaf-k3_5
            _row("pspnet", "baseline", 100, miou=0.4, commit=a),                # a tuning run: not a study run
            _row("pspnet", "aaf", 7, miou=0.4, ks="3,5", commit=a)]             # no such seed in its group
    df = pd.DataFrame(rows)
    df.loc[3, "run"] = "pspnet-aaf-k3_5-s0"
    check = provenance_check(df, protocol)
    assert check["run"].tolist() == ["pspnet-baseline-s0", "pspnet-aaf-s1", "pspnet-aaf-k3_5-s0"]
    assert check["group"].tolist() == ["pspnet-baseline", "pspnet-aaf", "pspnet-aaf-k3_5"]
    assert check.loc[0, "tags"] == "val-source, val-source-crf" and check["ok"].all()
    assert provenance_sentence(check) == (f"All 3 study runs were made at commits that descend from the "
                                          f"protocol's commit {b[:7]} (2026-11-29).")
    # an evaluation made at another commit than the training is checked on its own
    df.loc[1, "git_commit"] = a + "+dirty"
    check = provenance_check(df, protocol).set_index("run")
    assert check.at["pspnet-baseline-s0 [val-source-crf]", "flags"] == "before the protocol; dirty working tree"
    assert check.at["pspnet-baseline-s0 [val-source]", "ok"]


def test_outside_git_the_sentence_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "protocol").mkdir()
    shutil.copy(ROOT / PROTOCOL_PATH, tmp_path / PROTOCOL_PATH)
    protocol = load_protocol(tmp_path / PROTOCOL_PATH)
    check = provenance_check({"run": "a" * 40}, protocol)
    assert check.attrs["protocol_commit"] is None and check.loc[0, "flags"] == "not a git repository"
    assert provenance_sentence(check).startswith("The protocol has no commit")
    assert ledger_module.commit_date(None) is None and ledger_module.commit_date("f" * 40, tmp_path) is None


def test_an_evaluation_after_the_protocol_of_a_network_trained_before_it_is_flagged(history):
    """The training's commit (provenance.training.git_commit of an evaluation) is checked too."""
    repo, protocol, a, b, c = history
    df = pd.DataFrame([_row("pspnet", "baseline", 0, "val-source-crf", miou=0.4, commit=c)])
    df["training_git_commit"] = [a]
    check = provenance_check(df, protocol).set_index("run")
    assert check.at["pspnet-baseline-s0 [train]", "flags"] == "before the protocol"
    assert check.at["pspnet-baseline-s0 [val-source-crf]", "ok"]
    df["training_git_commit"] = [c]
    assert provenance_check(df, protocol)["ok"].all() and len(provenance_check(df, protocol)) == 1


def test_a_study_with_only_its_first_baselines_gives_a_ledger_of_missing_seeds(protocol):
    """While the study lands run by run: no AAF run yet means no effective kernel size column at
    all, and every claim is then untested (n = 0, all its seeds missing), not an error."""
    df = pd.DataFrame([_row("pspnet", "baseline", s, miou=0.47) for s in (0, 1)])
    df = df.drop(columns=[c for c in df.columns if c.startswith("effective_kernel_size/")])
    ledger = study_ledger(df, protocol).set_index("id")
    assert (ledger.loc[[c.id for c in protocol.claims if c.test == "paired_t"], "n"] == 0).all()
    assert set(ledger["verdict"]) <= {"inconclusive", "not tested"}
    assert ledger.at["C14", "missing"] == ", ".join(str(s) for s in range(10))
    assert "no effective_kernel_size in the results yet" in ledger.at["C14", "note"]
