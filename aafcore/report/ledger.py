"""The study's claims ledger: every claim of the pre-registered protocol (``protocol/study.yaml``)
measured on the results with paired statistics, and the check in git that the study's runs were
made after the protocol was committed.

Flow::

    load_results(), load_protocol()
        -> claim_differences()   per claim, the per-seed differences d_s = A_s - B_s
        -> study_ledger()        stats.ledger_frame: paired t, Holm, Bonferroni intervals, verdicts
        -> ledger_view()         stats.style_ledger (the book)
    provenance_check() -> provenance_sentence()

What is measured per seed follows the old ledger (:mod:`aafcore.report.claims`, v1, unpaired;
kept for the v1 book); every number of the statistics comes from :mod:`aafcore.report.stats`.
Units: percentage points for fraction metrics, pixels for the effective kernel size (C14).

Missing runs are never dropped silently: a claim is tested on the seeds of the protocol that
both sides have (with a value), and its row says which seeds are ``missing`` and why (``note``).
Torch-free: pandas, numpy, scipy and git only.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aafcore.report.claims import CLAIMS as _V1_CLAIMS
from aafcore.report.claims import effect_text, ledger_html, short_source
from aafcore.report.claims import _run_time as _v1_run_time
from aafcore.report.protocol import (ClaimSpec, Protocol, RunGroup, Side, protocol_commit, protocol_dirty,
                                     rules_match, runs_after_protocol)
from aafcore.report.stats import _side_values, ledger_frame, paired_differences, style_ledger

__all__ = ["LEDGER_COLUMNS", "claim_differences", "study_ledger", "provenance_check", "commit_date",
           "provenance_sentence", "ledger_view"]
# also public, imported from this module (the package re-exports __all__ only): compact_study_ledger,
# study_ledger_html

LEDGER_COLUMNS = ["id", "text", "kind", "unit", "n", "d", "ci_low", "ci_high", "ci_level", "p", "p_holm",
                  "holm_rejects", "paper_effect", "verdict", "missing", "note"]
_AAF_FAMILY = ("aaf", "aaf_frozen", "aaf_min")


# --------------------------------------------------------------------------- per-seed differences


@dataclass
class _Measured:
    """What one claim measured: the differences (None: not a seed statistic or no pair at all),
    the protocol's seeds left out and why."""

    diffs: pd.Series | dict | None
    missing: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _seeds(seeds) -> str:
    return ", ".join(str(int(s)) for s in sorted(seeds))


def _describe(side: Side, tag: str) -> str:
    ks = (f" k={{{', '.join(map(str, side.kernel_sizes))}}}" if side.kernel_sizes not in (None, (3, 5, 7)) else "")
    wb = f" weight_by={side.weight_by}" if side.weight_by not in (None, "label") else ""
    return f"{side.base}/{side.method}{ks}{wb} ({side.tag or tag})"


def _filters(df: pd.DataFrame, side: Side, tag: str) -> dict:
    return side.filters(tag, df.columns)


def _narrow(df: pd.DataFrame, *columns) -> pd.DataFrame:
    """``df`` with only the columns named (those it has): the row selections of
    :mod:`~aafcore.report.stats` copy every column, and the results have about a hundred."""
    wanted = list(dict.fromkeys(["seed", "kernel_sizes", *(c for group in columns for c in group)]))
    return df[[c for c in wanted if c in df.columns]]


def _finite_seeds(df: pd.DataFrame, filters: dict, columns: list[str]) -> set[int]:
    """The seeds of one side with a value of ``columns`` (their mean when several, NaNs skipped),
    selected exactly as :func:`~aafcore.report.stats.paired_differences` selects them."""
    full = {"kernel_sizes": "3,5,7", **filters}    # paired_differences' default for a side without kernel sizes
    values = _side_values(_narrow(df, full, columns), full, columns, set(filters))
    return {int(s) for s, v in values.items() if np.isfinite(v)}


def _pair_seeds(df: pd.DataFrame, claim: ClaimSpec, parts) -> tuple[set[int], list[str]]:
    """The claim's seeds that every part (``(columns of A, columns of B)``) has on both sides, and
    one line per side that lacks some of them."""
    wanted = set(claim.seeds)
    usable, lacking = set(wanted), []
    for columns_a, columns_b in parts:
        for side, columns in ((claim.a, columns_a), (claim.b, columns_b)):
            have = _finite_seeds(df, _filters(df, side, claim.tag), columns)
            usable &= have
            gone = wanted - have
            line = f"{_describe(side, claim.tag)} lacks seed(s) {_seeds(gone)}"
            if gone and line not in lacking:
                lacking.append(line)
    return usable, lacking


def _difference(df: pd.DataFrame, claim: ClaimSpec, columns_a, columns_b, seeds) -> pd.Series:
    a, b = _filters(df, claim.a, claim.tag), _filters(df, claim.b, claim.tag)
    listed = [[c] if isinstance(c, str) else list(c or []) for c in (columns_a, columns_b)]
    return paired_differences(_narrow(df, a, b, *listed), columns_a, a, b, metric_b=columns_b, seeds=sorted(seeds))


def _contrast(claim: ClaimSpec) -> tuple[str, str]:
    """``"thin - large"`` -> ``("thin", "large")``."""
    first, sep, second = (claim.contrast or "").partition("-")
    if not sep or not first.strip() or not second.strip():
        raise ValueError(f"claim {claim.id}: contrast must read '<group> - <group>', got {claim.contrast!r}")
    return first.strip(), second.strip()


def _group_columns(df: pd.DataFrame, claim: ClaimSpec, groups: Mapping, group: str) -> list[str]:
    members = list(groups.get(group) or [])
    if not members:
        raise ValueError(f"claim {claim.id}: no class group {group!r} (groups: {', '.join(groups) or 'none'})")
    columns = [f"{claim.metric}/{name}" for name in members]
    absent = [c for c in columns if c not in df.columns]
    return None if absent else columns     # None: no run of the results has this metric yet


def _empty(claim: ClaimSpec) -> pd.Series:
    return pd.Series([], index=pd.Index([], name="seed", dtype=np.int64), dtype=np.float64, name=claim.id)


def _measure(df: pd.DataFrame, claim: ClaimSpec, groups: Mapping | None) -> _Measured:
    if claim.kind == "run_time":
        return _Measured(None, [], ["not a seed statistic (outside the Holm family)"])
    if claim.kind == "every_class":
        return _measure_every_class(df, claim)
    if claim.kind == "greater":
        parts = [([claim.metric], [claim.metric])]
    elif claim.kind in ("gain_thin", "kernel_sizes"):
        if groups is None:
            raise ValueError(f"claim {claim.id} ({claim.kind}) needs the class groups")
        first, second = (_group_columns(df, claim, groups, g) for g in _contrast(claim))
        if first is None or second is None:      # e.g. no AAF run has landed: no effective kernel size
            return _Measured(_empty(claim), sorted(claim.seeds), [f"no {claim.metric} in the results yet"])
        parts = ([(first, first), (second, second)] if claim.kind == "gain_thin"   # the gain on each group
                 else [(first, second)])                                           # one side, two groups
    else:
        raise ValueError(f"claim {claim.id}: unknown kind {claim.kind!r}")
    usable, lacking = _pair_seeds(df, claim, parts)
    missing = sorted(set(claim.seeds) - usable)
    if not usable:
        return _Measured(_empty(claim), missing, lacking)
    if claim.kind == "gain_thin":
        (first, _), (second, _) = parts
        diffs = _difference(df, claim, first, first, usable) - _difference(df, claim, second, second, usable)
        diffs.name = (f"{claim.metric} gain ({claim.contrast}): "
                      f"{_describe(claim.a, claim.tag)} - {_describe(claim.b, claim.tag)}")
    else:
        (columns_a, columns_b), = parts
        diffs = _difference(df, claim, columns_a, columns_b, usable)
        if claim.kind == "kernel_sizes":
            diffs.name = f"{claim.metric} ({claim.contrast}) of {_describe(claim.a, claim.tag)}"
    diffs.attrs["missing"] = missing
    return _Measured(diffs, missing, lacking)


def _class_names(df: pd.DataFrame, metric: str) -> list[str]:
    return [c.split("/", 1)[1] for c in df.columns if c.startswith(f"{metric}/")]


def _measure_every_class(df: pd.DataFrame, claim: ClaimSpec) -> _Measured:
    """Every class of ``<metric>/<class>`` on the same seeds (those every class has on both sides),
    so that n is one number; a class with no value at all on either side (absent from the split)
    is left out and named in the notes."""
    names = _class_names(df, claim.metric)
    if not names:                                # no run of the results has this metric yet
        return _Measured({}, sorted(claim.seeds), [f"no {claim.metric}/<class> in the results yet"])
    wanted, per_class, absent = set(claim.seeds), {}, []
    for name in names:
        column = [f"{claim.metric}/{name}"]
        have = [_finite_seeds(df, _filters(df, side, claim.tag), column) & wanted for side in (claim.a, claim.b)]
        if not have[0] and not have[1]:
            absent.append(name)
        else:
            per_class[name] = have
    notes = [f"class(es) without any value, left out: {', '.join(absent)}"] if absent else []
    if not per_class:
        return _Measured({}, sorted(wanted), notes)
    usable = set.intersection(*(a & b for a, b in per_class.values()))
    lacking = []
    for side, i in ((claim.a, 0), (claim.b, 1)):
        gone = wanted - set.intersection(*(have[i] for have in per_class.values()))
        if gone:
            lacking.append(f"{_describe(side, claim.tag)} lacks seed(s) {_seeds(gone)} (of some class)")
    missing = sorted(wanted - usable)
    if not usable:
        return _Measured({}, missing, lacking + notes)
    diffs = {}
    for name in per_class:
        d = _difference(df, claim, f"{claim.metric}/{name}", None, usable)
        d.attrs["missing"] = missing
        diffs[name] = d
    return _Measured(diffs, missing, lacking + notes)


def claim_differences(df: pd.DataFrame, claim: ClaimSpec, groups: Mapping | None = None):
    """The per-seed paired differences ``d_s = A_s - B_s`` of one protocol claim, a Series
    indexed by ``seed`` (percentage points for fraction metrics, pixels for C14), by kind:

    * ``greater``: ``claim.metric`` at the claim's tag (a side's own ``tag`` overrides it, e.g.
      C19's ``crf`` side at ``val-source-crf``: the baseline evaluated with the CRF);
    * ``gain_thin``: per seed, A - B averaged over the classes of the contrast's first group
      (``thin``) minus the same over its second (``large``); a run's group value is the mean of
      its ``<metric>/<class>`` columns, NaNs skipped (stuff classes have no instance IoU);
    * ``every_class``: a dict class -> Series, one per ``<metric>/<class>`` column;
    * ``kernel_sizes``: per AAF seed, the first group's (``large``) mean effective kernel size
      minus the second's (``thin``), in pixels;
    * ``run_time``: None (not a seed statistic).

    ``groups``: class group -> class names (``{"large": [...], "thin": [...]}``; the protocol's
    ``benchmark.spec.class_groups`` or :func:`~aafcore.report.results.class_info`'s ``groups``).

    Only the claim's seeds that both sides have with a value are used; ``attrs["missing"]`` of
    each Series lists the others (an empty Series when no seed pairs).  A side with two rows for
    one seed, or an unknown column, is a ``ValueError`` (:func:`~aafcore.report.stats.paired_differences`).
    """
    measured = _measure(df, claim, groups)
    if isinstance(measured.diffs, pd.Series):
        measured.diffs.attrs["missing"] = measured.missing
    return measured.diffs


# --------------------------------------------------------------------------- the ledger


def _default_groups(protocol: Protocol) -> dict | None:
    spec = (protocol.benchmark or {}).get("spec") or {}
    return spec.get("class_groups")


def _run_time_row(df: pd.DataFrame, claim: ClaimSpec, benchmark: dict | None) -> dict:
    nan = float("nan")
    row = {"n": 0, "d": nan, "ci_low": nan, "ci_high": nan, "ci_level": nan, "p": nan, "p_holm": nan,
           "holm_rejects": False, "paper_effect": claim.paper_effect if claim.paper_effect is not None else nan}
    if benchmark is None:
        return {**row, "verdict": "not tested",
                "note": "not a seed statistic (outside the Holm family); no run-time benchmark given "
                        "(results/benchmarks/evaluate_cpu.json)"}
    v1 = next(c for c in _V1_CLAIMS if c.kind == "run_time")
    measured = _v1_run_time(df, v1, {}, benchmark)
    timing = (f"network {measured['A']} ms/image, CRF {measured['B']} ms/image ({measured['d']:.0%} of the network)"
              if measured["A"] else "no timing")
    return {**row, "verdict": measured["verdict"],
            "note": f"not a seed statistic (outside the Holm family); the old ledger's rule (the CRF adds > 10%): "
                    f"{timing}"}


def study_ledger(df: pd.DataFrame, protocol: Protocol, groups: Mapping | None = None, *,
                 benchmark: dict | None = None) -> pd.DataFrame:
    """The study's ledger: one row per claim of ``protocol``, in its order.

    The claims with ``test: paired_t`` (C1-C19 and the controls K1-K3) form Holm's family (m =
    ``protocol.family_size``): :func:`~aafcore.report.stats.ledger_frame` gives each its paired
    t-test, Holm-corrected p-value, Bonferroni interval at ``1 - alpha/m`` (``1 - alpha/(m K)``
    per class for an every-class claim) and verdict, at the protocol's ``alpha``.  A run-time
    claim (C20) is outside the family: with ``benchmark`` (``results/benchmarks/evaluate_cpu.json``)
    it gets the old ledger's rule, otherwise the verdict ``not tested``.

    ``groups``: class group -> names for the thin/large contrasts (default: the protocol's
    ``benchmark.spec.class_groups``).  Columns: :data:`LEDGER_COLUMNS` -- ``d`` and the interval
    in ``unit`` (``pp``, ``px`` for C14), ``n`` the seeds used, ``missing`` the protocol's seeds
    left out (``"3, 4"``; which side lacks them in ``note``).

    A protocol whose verdict rules are not those :mod:`~aafcore.report.stats` applies is a
    ``ValueError`` (:func:`~aafcore.report.protocol.rules_match`).
    """
    if not rules_match(protocol):
        raise ValueError(f"{protocol.path}: statistics.verdict_rules are not the rules aafcore.report.stats "
                         f"applies (PAIRED_VERDICT_RULES); the ledger would not follow the protocol")
    groups = _default_groups(protocol) if groups is None else groups
    measured = {c.id: _measure(df, c, groups) for c in protocol.claims}
    tested = [c for c in protocol.claims if c.test == "paired_t"]
    diffs = {}
    for c in tested:
        d = measured[c.id].diffs
        diffs[c.id] = None if d is None or len(d) == 0 else d
    frame = ledger_frame(diffs, {c.id: c.paper_effect for c in tested},
                         alternatives={c.id: c.alternative for c in tested}, alpha=protocol.alpha,
                         family_size=protocol.family_size) if tested else pd.DataFrame()
    rows = []
    for c in protocol.claims:
        m = measured[c.id]
        if c.test == "paired_t":
            row = frame.loc[c.id].to_dict()
            note = [row.pop("note")] if row.get("note") else []
        else:
            row = _run_time_row(df, c, benchmark)
            note = [row.pop("note")]
        if m.missing:
            note.append(f"seed(s) {_seeds(m.missing)} missing: " + "; ".join(m.notes) if m.notes
                        else f"seed(s) {_seeds(m.missing)} missing")
        elif m.notes and c.kind != "run_time":
            note.extend(m.notes)
        unit = None if c.kind == "run_time" else ("px" if c.kind == "kernel_sizes" else "pp")
        rows.append({"id": c.id, "text": c.text, "kind": c.kind, "unit": unit, **row,
                     "missing": _seeds(m.missing), "note": "; ".join(n for n in note if n)})
    out = pd.DataFrame(rows, columns=LEDGER_COLUMNS)
    out["n"] = out["n"].astype(int)
    out["holm_rejects"] = out["holm_rejects"].astype(bool)
    out.attrs.update(family_size=protocol.family_size, alpha=protocol.alpha, protocol_version=protocol.version)
    return out


def ledger_view(ledger: pd.DataFrame, digits: int = 2):
    """:func:`study_ledger` for the book: indexed by claim id, the claim's text, ``n``, ``d`` and
    its interval (in ``unit``: percentage points, px for C14), p and Holm's p, the paper's
    effect, the verdict (coloured, :func:`~aafcore.report.stats.style_ledger`), missing seeds and
    notes."""
    shown = ledger.set_index("id")[["text", "unit", "n", "d", "ci_low", "ci_high", "ci_level", "p", "p_holm",
                                    "paper_effect", "verdict", "missing", "note"]]
    shown.index.name = "id"
    # a fixed id for the table's CSS (pandas draws a random one): the executed page is then the
    # same at every run, as nbval checks
    return style_ledger(shown, digits=digits).set_uuid("study-ledger")


def compact_study_ledger(ledger: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """:func:`study_ledger` in one short row per claim, for :func:`study_ledger_html`: ``id``,
    ``claim`` (the protocol's text), ``verdict``, ``effect`` (``d [ci_low, ci_high]``: percentage
    points, ``px`` for C14; :func:`~aafcore.report.claims.effect_text`), ``n`` (paired seeds) and
    ``source`` (the protocol's, short: :func:`~aafcore.report.claims.short_source`)."""
    sources = {c.id: c.source for c in protocol.claims}
    effects = [effect_text(d, lo, hi, str(u or "")) for d, lo, hi, u in
               zip(ledger["d"], ledger["ci_low"], ledger["ci_high"], ledger["unit"])]
    return pd.DataFrame({"id": ledger["id"], "claim": ledger["text"], "verdict": ledger["verdict"],
                         "effect": effects, "n": ledger["n"].astype(int),
                         "source": [short_source(sources.get(c, "")) for c in ledger["id"]]})


def study_ledger_html(ledger: pd.DataFrame, protocol: Protocol, digits: int = 2) -> str:
    """The study's ledger for the book: the verdict counts and one compact row per claim with a
    coloured verdict badge (:func:`compact_study_ledger`, :func:`~aafcore.report.claims.ledger_html`),
    every column of :func:`ledger_view` in a collapsed section below."""
    details = ledger_view(ledger, digits=digits).to_html()
    return ledger_html(compact_study_ledger(ledger, protocol), details,
                       effect_header="d, pp [corrected interval]")


# --------------------------------------------------------------------------- provenance


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def commit_date(commit: str | None, repo: str | Path | None = None) -> str | None:
    """The committer date of ``commit`` as ``YYYY-MM-DD`` (``git show -s --format=%cs``, in
    ``repo``, default the project's repository); None without a commit, outside git or for an
    unknown commit."""
    if not commit:
        return None
    folder = Path(repo) if repo is not None else Path(__file__).resolve().parent
    if not folder.is_dir():
        folder = folder.parent
    if not folder.is_dir():
        return None
    return _git(["show", "-s", "--format=%cs", f"{commit}^{{commit}}", "--"], folder)


def _group_of(row, groups: tuple[RunGroup, ...]) -> RunGroup | None:
    """The protocol's run group that trained the run of a results row (None: not a study run)."""
    method = row.get("trained_method")
    if not isinstance(method, str) or not method:
        method = "baseline" if row.get("method") == "crf" else row.get("method")
    seed = row.get("seed")
    if seed is None or (isinstance(seed, float) and np.isnan(seed)):
        return None
    aaf = method in _AAF_FAMILY
    ks = str(row.get("kernel_sizes") or "") if aaf else ""
    weight_by = (row.get("weight_by") or "label") if aaf else None
    for g in groups:
        if (g.base, g.method) != (row.get("base"), method) or int(seed) not in g.seeds:
            continue
        if aaf and (ks != ",".join(map(str, g.kernel_sizes or ())) or weight_by != g.weight_by):
            continue
        return g
    return None


def _study_commits(df: pd.DataFrame, protocol: Protocol) -> tuple[dict, dict]:
    """``{run label: recorded commit}`` for the study runs of ``df`` and ``{label: (group, tags)}``;
    a run whose rows (training, evaluations) recorded different commits gets one label per commit."""
    for column in ("run", "base", "method", "seed"):
        if column not in df.columns:
            raise ValueError(f"provenance_check: the results have no column {column!r}")
    none = pd.Series(None, index=df.index, dtype=object)
    commits = df["git_commit"] if "git_commit" in df.columns else none
    trained = df["training_git_commit"] if "training_git_commit" in df.columns else none
    found: dict[str, dict] = {}
    for i, row in df.iterrows():
        group = _group_of(row.to_dict(), protocol.runs)
        if group is None:
            continue
        entry = found.setdefault(row["run"], {"group": group.id, "by_commit": {}})
        # an evaluation row checks its own commit and the training's (recorded in its provenance)
        pairs = [(commits[i], str(row.get("tag", "")))]
        if row.get("tag") != "train" and "training_git_commit" in df.columns:
            pairs.append((trained[i], "train"))
        for commit, tag in pairs:
            commit = None if commit is None or (isinstance(commit, float) and np.isnan(commit)) else str(commit)
            tags = entry["by_commit"].setdefault(commit, [])
            if tag not in tags:
                tags.append(tag)
    labels, info = {}, {}
    for run, entry in found.items():
        for commit, tags in entry["by_commit"].items():
            label = run if len(entry["by_commit"]) == 1 else f"{run} [{', '.join(tags)}]"
            labels[label] = commit
            info[label] = (entry["group"], ", ".join(tags))
    return labels, info


def provenance_check(df_or_commits, protocol: Protocol, repo: str | Path | None = None) -> pd.DataFrame:
    """Whether every study run descends from the protocol's commit.

    ``df_or_commits``: the results frame (:func:`~aafcore.report.results.load_results`; its
    rows of the protocol's run groups and seeds are the study runs -- tuning runs are not --
    with the ``git_commit`` of their provenance) or a mapping ``{run: recorded commit}``.
    ``repo``: the git repository (default: the one holding the protocol's file).

    The protocol's commit is :func:`~aafcore.report.protocol.protocol_commit` of
    ``protocol.path``; each run is checked by :func:`~aafcore.report.protocol.runs_after_protocol`
    (its columns ``run``, ``commit``, ``dirty``, ``known``, ``after_protocol``, ``ok``, ``flags``,
    plus ``group`` and ``tags`` for a results frame).  A run whose rows recorded different commits
    is checked once per commit.  ``attrs``: ``protocol_commit``, ``protocol_date``,
    ``protocol_dirty``, ``repo`` (for :func:`provenance_sentence`).  Never raises for git: outside
    a repository the rows carry flags (``not a git repository``).
    """
    repo = Path(repo) if repo is not None else protocol.path.parent
    commit = protocol_commit(protocol.path, repo=repo)
    if isinstance(df_or_commits, pd.DataFrame):
        commits, info = _study_commits(df_or_commits, protocol)
    elif isinstance(df_or_commits, Mapping):
        commits, info = dict(df_or_commits), {}
    else:
        raise TypeError(f"provenance_check: a results frame or a mapping run -> commit, "
                        f"got {type(df_or_commits).__name__}")
    out = runs_after_protocol(commits, commit, repo=repo)
    if info:
        out.insert(1, "group", [info[r][0] for r in out["run"]])
        out.insert(2, "tags", [info[r][1] for r in out["run"]])
    out.attrs.update(protocol_commit=commit, protocol_date=commit_date(commit, repo), repo=str(repo),
                     protocol_dirty=protocol_dirty(protocol.path, repo=repo))
    return out


def _names(runs: list[str], limit: int = 6) -> str:
    shown = ", ".join(runs[:limit])
    return shown + (f" and {len(runs) - limit} more" if len(runs) > limit else "")


def provenance_sentence(check: pd.DataFrame, protocol_commit: str | None = None,
                        repo: str | Path | None = None) -> str:
    """One line for the book: ``All 80 study runs were made at commits that descend from the
    protocol's commit abc1234 (2026-11-29).``, or how many do not and why (grouped by flags).

    ``protocol_commit`` and ``repo`` default to ``check.attrs`` (:func:`provenance_check`); the
    date comes from git (:func:`commit_date`) and is left out where git cannot give it."""
    attrs = getattr(check, "attrs", {}) or {}
    protocol_commit = protocol_commit if protocol_commit is not None else attrs.get("protocol_commit")
    repo = repo if repo is not None else attrs.get("repo")
    n = len(check)
    runs = f"{n} study run{'s' if n != 1 else ''}"
    if not protocol_commit:
        return (f"The protocol has no commit (never committed, or not in a git repository): "
                f"none of the {runs} can be checked against it.")
    date = (attrs.get("protocol_date") if protocol_commit == attrs.get("protocol_commit") and attrs.get("protocol_date")
            else commit_date(protocol_commit, repo))
    where = f"the protocol's commit {protocol_commit[:7]}{f' ({date})' if date else ''}"
    dirty = " The protocol file has uncommitted changes." if attrs.get("protocol_dirty") else ""
    if n == 0:
        return f"No study run to check against {where}.{dirty}"
    bad = check[~check["ok"].astype(bool)]
    if bad.empty:
        every = "All" if n > 1 else "The"
        return f"{every} {runs} {'were' if n > 1 else 'was'} made at commits that descend from {where}.{dirty}"
    reasons = []
    for flags, rows in bad.groupby("flags", sort=False):
        reasons.append(f"{flags or 'not checked'}: {_names(rows['run'].tolist())}")
    return (f"{len(bad)} of {runs} {'were' if len(bad) > 1 else 'was'} not made at a clean commit that descends "
            f"from {where}: {'; '.join(reasons)}.{dirty}")
