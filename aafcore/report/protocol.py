"""The study's pre-registered protocol (``protocol/study.yaml``) and its check in git.

:func:`load_protocol` reads the file into a validated :class:`Protocol` (a one-line
``ValueError`` naming the file and the field for bad input).  The protocol counts only if it was
committed before the study's runs: :func:`protocol_commit` is the last commit that changed it,
:func:`protocol_dirty` says whether it has uncommitted changes, and :func:`runs_after_protocol`
flags every run whose recorded commit (``provenance.git_commit`` of its ``metrics.json``) does
not descend from that commit.  Git runs in the repository's root; outside a repository, or
without git, the functions return flags (None, ``"not a git repository"``), never raise.
"""

from __future__ import annotations

import dataclasses

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from aafcore.errors import one_line
from aafcore.report.stats import ALTERNATIVES, PAIRED_VERDICT_RULES

__all__ = ["PROTOCOL_PATH", "CLAIM_KINDS", "Side", "RunGroup", "ClaimSpec", "Protocol", "load_protocol",
           "rules_match", "protocol_commit", "protocol_dirty", "runs_after_protocol"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
PROTOCOL_PATH = "protocol/study.yaml"
CLAIM_KINDS = ("greater", "gain_thin", "every_class", "kernel_sizes", "run_time")
_AAF_FAMILY = ("aaf", "aaf_frozen", "aaf_min")
_STATUSES = ("draft", "registered")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)    # libyaml when there, ten times faster
_SECTIONS = ("benchmark", "training", "seeds", "evaluations", "runs", "statistics", "claims")


# --------------------------------------------------------------------------- the protocol as data


@dataclass(frozen=True)
class Side:
    """One side of a claim: runs of ``base``/``method`` (AAF family: with ``kernel_sizes`` and
    ``weight_by``), evaluated at ``tag`` (None: the claim's)."""

    base: str
    method: str
    kernel_sizes: tuple[int, ...] | None = None
    weight_by: str | None = None
    tag: str | None = None

    def filters(self, tag: str, columns=()) -> dict:
        """The side as :func:`~aafcore.report.stats.paired_differences` takes it (``tag``: the
        claim's).  ``weight_by`` is a filter when the results have that column (``columns``), and
        otherwise only when it is not the default ``label`` -- so a ``channel`` side fails loudly
        on results that cannot tell the two apart, and a ``label`` side whose rows mix both fails
        on two rows for one seed; nothing is paired with the wrong run silently."""
        out = {"base": self.base, "method": self.method, "tag": self.tag or tag}
        if self.kernel_sizes is not None:
            out["kernel_sizes"] = ",".join(str(k) for k in self.kernel_sizes)
        if self.weight_by is not None and ("weight_by" in columns or self.weight_by != "label"):
            out["weight_by"] = self.weight_by
        return out


@dataclass(frozen=True)
class RunGroup:
    """Runs to train: one per seed, each evaluated at every tag of ``evaluations``."""

    id: str
    base: str
    method: str
    seeds: tuple[int, ...]
    evaluations: tuple[str, ...]
    kernel_sizes: tuple[int, ...] | None = None
    weight_by: str | None = None


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of the ledger as the protocol fixes it (see the comments of ``protocol/study.yaml``).

    ``paper_effect`` is in ``paper_effect_unit`` (``pp``: percentage points; ``px``) or None where
    the paper gives no number; ``test`` is ``paired_t`` or ``none`` (C20); ``alternative`` is None
    for ``test: none``."""

    id: str
    text: str
    source: str
    kind: str
    metric: str
    tag: str
    contrast: str | None
    a: Side
    b: Side
    seeds: tuple[int, ...]
    test: str
    alternative: str | None
    per_class: bool
    paper_effect: float | None
    paper_effect_unit: str | None
    paper_effect_source: str
    note: str | None = None


@dataclass(frozen=True)
class Protocol:
    """The validated content of ``protocol/study.yaml``; ``benchmark``, ``training``, ``seeds``,
    ``evaluations`` and ``statistics`` are the file's mappings as they are (checked), ``runs`` and
    ``claims`` typed.  ``open_fields``: the dotted names of the fields still undecided (null)."""

    path: Path
    version: str
    status: str
    benchmark: dict
    training: dict
    seeds: dict
    evaluations: dict
    runs: tuple[RunGroup, ...]
    statistics: dict
    claims: tuple[ClaimSpec, ...]
    open_fields: tuple[str, ...]
    crf: dict = dataclasses.field(default_factory=dict)

    def crf_params(self) -> dict:
        """The CRF parameters of the study's ``crf: true`` evaluations: ``crf.scaled`` with the
        grid's ``crf.chosen`` cell over it (``ValueError`` while it is open or absent)."""
        if not self.crf or self.crf.get("chosen") is None:
            raise ValueError(f"{self.path}: crf.chosen is not decided yet: the CRF evaluations need it")
        return {**self.crf["scaled"], **self.crf["chosen"]}

    @property
    def alpha(self) -> float:
        """The familywise error rate of the ledger."""
        return float(self.statistics["alpha"])

    @property
    def family(self) -> tuple[str, ...]:
        """The ids of the claims with a test (Holm's family, in the file's order)."""
        return tuple(c.id for c in self.claims if c.test == "paired_t")

    @property
    def family_size(self) -> int:
        """m of the corrections: the number of claims with a test."""
        return len(self.family)

    def claim(self, claim_id: str) -> ClaimSpec:
        """The claim with id ``claim_id`` (``KeyError`` when there is none)."""
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise KeyError(f"{self.path}: no claim {claim_id!r}")


# --------------------------------------------------------------------------- reading and checking


class _Checker:
    """Typed reads of the YAML mappings; every failure is a one-line ValueError naming file and field."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, field: str, problem: str):
        raise ValueError(one_line(f"{self.path}: {field}: {problem}"))

    def get(self, data: Mapping, key: str, where: str, kind, *, optional: bool = False, default=None):
        field = f"{where}.{key}" if where else key
        if key not in data:
            if optional:
                return default
            self.fail(field, "missing")
        value = data[key]
        if value is None and optional:
            return default
        names = {str: "a string", dict: "a mapping", list: "a list", bool: "true or false", int: "an integer",
                 float: "a number"}
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
              else isinstance(value, int) and not isinstance(value, bool) if kind is int
              else isinstance(value, kind))
        if not ok or (kind is str and not value.strip()):
            self.fail(field, f"must be {names.get(kind, kind.__name__)}{' (not empty)' if kind is str else ''}, "
                             f"got {value!r}")
        return float(value) if kind is float else value

    def choice(self, data: Mapping, key: str, where: str, choices, **kw):
        value = self.get(data, key, where, str, **kw)
        if value is not None and value not in choices:
            self.fail(f"{where}.{key}", f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def ints(self, data: Mapping, key: str, where: str, *, optional: bool = False) -> tuple[int, ...] | None:
        values = self.get(data, key, where, list, optional=optional)
        if values is None:
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            self.fail(f"{where}.{key}", f"must be a list of non-negative integers, got {values!r}")
        if len(set(values)) != len(values):
            self.fail(f"{where}.{key}", f"has repeated values {values!r}")
        return tuple(values)


def _nulls(data, prefix: str = "") -> list[str]:
    """Dotted names of every null value under ``data`` (list items as ``name[i]``)."""
    if data is None:
        return [prefix]
    if isinstance(data, Mapping):
        return [p for k, v in data.items() for p in _nulls(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _nulls(v, f"{prefix}[{i}]")]
    return []


def _side(c: _Checker, data, where: str) -> Side:
    if not isinstance(data, Mapping):
        c.fail(where, f"must be a mapping with base and method, got {data!r}")
    method = c.get(data, "method", where, str)
    family = method in _AAF_FAMILY
    kernel_sizes = c.ints(data, "kernel_sizes", where, optional=True)
    weight_by = c.choice(data, "weight_by", where, ("label", "channel"), optional=True)
    if not family and (kernel_sizes is not None or weight_by is not None):
        c.fail(where, f"kernel_sizes and weight_by are for the AAF methods ({', '.join(_AAF_FAMILY)}), not {method!r}")
    return Side(c.get(data, "base", where, str), method,
                (kernel_sizes or (3, 5, 7)) if family else None, (weight_by or "label") if family else None,
                c.get(data, "tag", where, str, optional=True))


def _runs(c: _Checker, data: dict, evaluations: dict) -> tuple[RunGroup, ...]:
    groups, ids = [], set()
    for i, item in enumerate(c.get(data, "runs", "", list)):
        where = f"runs[{i}]"
        if not isinstance(item, Mapping):
            c.fail(where, f"must be a mapping, got {item!r}")
        side = _side(c, item, where)
        group = RunGroup(c.get(item, "id", where, str), side.base, side.method, c.ints(item, "seeds", where),
                         tuple(c.get(item, "evaluations", where, list)), side.kernel_sizes, side.weight_by)
        if group.id in ids:
            c.fail(f"{where}.id", f"{group.id!r} is used twice")
        unknown = [t for t in group.evaluations if t not in evaluations]
        if unknown:
            c.fail(f"{where}.evaluations", f"{unknown[0]!r} is not in evaluations")
        ids.add(group.id)
        groups.append(group)
    return tuple(groups)


def _matching_group(side: Side, groups) -> RunGroup | None:
    method = "baseline" if side.method == "crf" else side.method   # the CRF is an evaluation of the baseline
    for g in groups:
        if (g.base, g.method, g.kernel_sizes, g.weight_by) == (side.base, method, side.kernel_sizes, side.weight_by):
            return g
    return None


def _check_side_runs(c: _Checker, claim: ClaimSpec, where: str, groups) -> None:
    for name, side in (("a", claim.a), ("b", claim.b)):
        field = f"{where}.comparison.{name}"
        group = _matching_group(side, groups)
        if group is None:
            c.fail(field, f"no run group trains {side.base}/{side.method}"
                          f"{f' k={list(side.kernel_sizes)} weight_by={side.weight_by}' if side.kernel_sizes else ''}")
        lacking = sorted(set(claim.seeds) - set(group.seeds))
        if lacking:
            c.fail(f"{where}.seeds", f"run group {group.id!r} has no seed(s) {lacking}")
        tag = side.tag or claim.tag
        if claim.test == "paired_t" and tag not in group.evaluations:
            c.fail(field, f"run group {group.id!r} is not evaluated at {tag!r}")


def _claim(c: _Checker, item, where: str, evaluations: dict) -> ClaimSpec:
    if not isinstance(item, Mapping):
        c.fail(where, f"must be a mapping, got {item!r}")
    measure = c.get(item, "measure", where, dict)
    comparison = c.get(item, "comparison", where, dict)
    test = c.choice(item, "test", where, ("paired_t", "none"))
    alternative = (c.choice(item, "alternative", where, ALTERNATIVES) if test == "paired_t"
                   else c.choice(item, "alternative", where, ALTERNATIVES, optional=True))
    effect = c.get(item, "paper_effect", where, dict)
    value = c.get(effect, "value", f"{where}.paper_effect", float, optional=True)
    seeds = c.ints(item, "seeds", where)
    if test == "paired_t" and len(seeds) < 2:
        c.fail(f"{where}.seeds", f"a paired t-test needs at least 2 seeds, got {list(seeds)}")
    tag = c.get(measure, "tag", f"{where}.measure", str)
    if test == "paired_t" and tag not in evaluations:
        c.fail(f"{where}.measure.tag", f"{tag!r} is not in evaluations")
    return ClaimSpec(
        id=c.get(item, "id", where, str), text=c.get(item, "text", where, str), source=c.get(item, "source", where, str),
        kind=c.choice(item, "kind", where, CLAIM_KINDS), metric=c.get(measure, "metric", f"{where}.measure", str),
        tag=tag, contrast=c.get(measure, "contrast", f"{where}.measure", str, optional=True),
        a=_side(c, c.get(comparison, "a", f"{where}.comparison", dict), f"{where}.comparison.a"),
        b=_side(c, c.get(comparison, "b", f"{where}.comparison", dict), f"{where}.comparison.b"),
        seeds=seeds, test=test, alternative=alternative, per_class=c.get(item, "per_class", where, bool),
        paper_effect=value,
        paper_effect_unit=c.choice(effect, "unit", f"{where}.paper_effect", ("pp", "px"), optional=True),
        paper_effect_source=c.get(effect, "source", f"{where}.paper_effect", str),
        note=c.get(item, "note", where, str, optional=True))


def _claims(c: _Checker, data: dict, evaluations: dict, groups) -> tuple[ClaimSpec, ...]:
    claims, ids = [], set()
    for i, item in enumerate(c.get(data, "claims", "", list)):
        where = f"claims[{i}]"
        claim = _claim(c, item, where, evaluations)
        if claim.id in ids:
            c.fail(f"{where}.id", f"{claim.id!r} is used twice")
        if (claim.test == "none") != (claim.kind == "run_time"):
            c.fail(f"{where}.test", f"must be {'none' if claim.kind == 'run_time' else 'paired_t'} for kind {claim.kind!r}")
        if claim.kind in ("gain_thin", "kernel_sizes") and not claim.contrast:
            c.fail(f"{where}.measure.contrast", f"missing (kind {claim.kind!r} contrasts two class groups)")
        if claim.per_class != (claim.kind == "every_class"):
            c.fail(f"{where}.per_class", f"must be {str(claim.kind == 'every_class').lower()} for kind {claim.kind!r}")
        if claim.test == "paired_t":
            _check_side_runs(c, claim, where, groups)
        ids.add(claim.id)
        claims.append(claim)
    if not claims:
        c.fail("claims", "no claim")
    return tuple(claims)


def _statistics(c: _Checker, data: dict) -> dict:
    stats = c.get(data, "statistics", "", dict)
    c.choice(stats, "test", "statistics", ("paired_t",))
    c.choice(stats, "correction", "statistics", ("holm",))
    c.choice(stats, "ci_rule", "statistics", ("bonferroni",))
    c.choice(stats, "directional", "statistics", ("greater",))
    c.choice(stats, "question", "statistics", ("two-sided",))
    alpha = c.get(stats, "alpha", "statistics", float)
    if not 0 < alpha < 1:
        c.fail("statistics.alpha", f"must lie in (0, 1), got {alpha}")
    c.get(stats, "verdict_rules", "statistics", str)
    c.get(stats, "effect_size_rule", "statistics", str)
    return stats


def _training(c: _Checker, data: dict) -> dict:
    training = c.get(data, "training", "", dict)
    length = c.get(training, "length_rule", "training", dict)
    for key in ("text", "base", "method", "split"):
        c.get(length, key, "training.length_rule", str)
    fraction = c.get(length, "last_fraction", "training.length_rule", float)
    if not 0 < fraction < 1:
        c.fail("training.length_rule.last_fraction", f"must lie in (0, 1), got {fraction}")
    if c.get(length, "max_gain_pp", "training.length_rule", float) <= 0:
        c.fail("training.length_rule.max_gain_pp", "must be positive")
    rate = c.get(training, "learning_rate", "training", dict)
    for key in ("text", "base", "method", "split"):
        c.get(rate, key, "training.learning_rate", str)
    at_steps = c.get(rate, "at_steps", "training.learning_rate", int, optional=True)
    if at_steps is not None and at_steps <= 0:
        c.fail("training.learning_rate.at_steps", f"must be a positive number of steps, got {at_steps}")
    seeds = c.ints(training, "tuning_seeds", "training", optional=True) or ()
    if set(seeds) & set(c.get(data, "seeds", "", dict).get("main") or ()):
        c.fail("training.tuning_seeds", "must be disjoint from the study seeds")
    return training


def _open_fields(c: _Checker, data: dict, status: str) -> tuple[str, ...]:
    declared = c.get(data, "open_fields", "", list, optional=True, default=[])
    nulls = [p for p in _nulls({k: v for k, v in data.items() if k not in ("claims", "open_fields")})]
    undeclared = [p for p in nulls if p not in declared]
    if undeclared:
        c.fail(undeclared[0], "is null but not listed in open_fields (fill it in, or list it as open)")
    filled = [p for p in declared if p not in nulls]
    if filled:
        c.fail("open_fields", f"{filled[0]!r} is listed as open but is not a null field (remove it from the list)")
    if status == "registered" and declared:
        c.fail("status", f"a registered protocol has no open field; still open: {', '.join(declared)}")
    return tuple(declared)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(), Loader=_LOADER)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(one_line(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}")) from None
    except UnicodeDecodeError as e:
        raise ValueError(one_line(f"{path}: not a text file ({e.reason})")) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a mapping of fields (protocol_version, {', '.join(_SECTIONS)})")
    return data


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() or path.exists() else PROJECT_ROOT / path


def load_protocol(path: str | Path = PROTOCOL_PATH) -> Protocol:
    """The protocol in ``path`` (default ``protocol/study.yaml``; a relative path that does not
    exist from the working directory is taken from the repository's root), checked.

    Checks: every section and field is present with its type; statuses, kinds, tests and
    alternatives are known; every claim's sides are trained by a run group, with the claim's
    seeds and evaluation; ids are unique; a null outside ``claims`` is listed in ``open_fields``
    (and only those are); a ``registered`` protocol has none.  A failure is a one-line
    ``ValueError`` ``<file>: <field>: <problem>``; a missing file a ``FileNotFoundError``.
    """
    path = _resolve(path).absolute()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no protocol file")
    data, c = _read_yaml(path), _Checker(path)
    version = c.get(data, "protocol_version", "", str)
    status = c.choice(data, "status", "", _STATUSES)
    for key in ("benchmark", "seeds"):
        c.get(data, key, "", dict)
    for key in ("main", "secondary"):
        c.ints(data["seeds"], key, "seeds")
    c.get(data["benchmark"], "name", "benchmark", str)
    evaluations = c.get(data, "evaluations", "", dict)
    for tag, spec in evaluations.items():
        if not isinstance(spec, Mapping):
            c.fail(f"evaluations.{tag}", f"must be a mapping (split, domain, scales, flip, crf), got {spec!r}")
        for key, kind in (("split", str), ("domain", str), ("scales", list), ("flip", bool), ("crf", bool)):
            c.get(spec, key, f"evaluations.{tag}", kind)
    training, statistics = _training(c, data), _statistics(c, data)
    runs = _runs(c, data, evaluations)
    claims = _claims(c, data, evaluations, runs)
    crf = c.get(data, "crf", "", dict, optional=True, default={})
    if crf:
        for key in ("paper", "scaled", "grid"):
            c.get(crf, key, "crf", dict)
        chosen = c.get(crf, "chosen", "crf", dict, optional=True)
        unknown = sorted(set(chosen or {}) - set(crf["grid"]))
        if unknown:
            c.fail("crf.chosen", f"{unknown[0]!r} is not a parameter of the grid")
        for key, value in (chosen or {}).items():
            if value not in crf["grid"][key]:
                c.fail(f"crf.chosen.{key}", f"{value!r} is not in the grid {crf['grid'][key]}")
    return Protocol(path, version, status, data["benchmark"], training, data["seeds"], evaluations, runs,
                    statistics, claims, _open_fields(c, data, status), crf)


def rules_match(protocol: Protocol) -> bool:
    """Whether the protocol's verdict rules are, verbatim, those :mod:`aafcore.report.stats` applies."""
    return protocol.statistics["verdict_rules"].strip() == PAIRED_VERDICT_RULES.strip()


# --------------------------------------------------------------------------- git


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess | None:
    """``git <args>`` in ``cwd``; None when git is missing or ``cwd`` is not a folder."""
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None


def _repo_root(start: Path) -> Path | None:
    """The root of the git repository holding ``start`` (a file or folder), None outside one."""
    folder = start if start.is_dir() else start.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    done = _git(["rev-parse", "--show-toplevel"], folder)
    return Path(done.stdout.strip()) if done is not None and done.returncode == 0 else None


def _in_repo(path: str | Path, repo: str | Path | None) -> tuple[Path | None, str]:
    """(repository root, ``path`` relative to it); the root is None outside a repository."""
    path = Path(path)
    root = _repo_root(Path(repo).resolve()) if repo is not None else _repo_root(_resolve(path).resolve())
    root = root.resolve() if root is not None else None
    if root is None:
        return None, str(path)
    full = path if path.is_absolute() else (root / path if repo is not None else _resolve(path))
    try:
        return root, str(full.resolve().relative_to(root))
    except ValueError:
        return root, str(path)


def protocol_commit(path: str | Path = PROTOCOL_PATH, repo: str | Path | None = None) -> str | None:
    """The last commit that changed ``path`` (``git log -n1 --format=%H -- <path>``, run in the
    repository's root: ``repo``, or the repository holding ``path``); None when the file was
    never committed, outside a git repository or without git."""
    root, relative = _in_repo(path, repo)
    if root is None:
        return None
    done = _git(["log", "-n1", "--format=%H", "--", relative], root)
    return done.stdout.strip() or None if done is not None and done.returncode == 0 else None


def protocol_dirty(path: str | Path = PROTOCOL_PATH, repo: str | Path | None = None) -> bool | None:
    """Whether ``path`` differs from its last commit or is untracked (``git status --porcelain --
    <path>`` says anything); None outside a git repository or without git."""
    root, relative = _in_repo(path, repo)
    if root is None:
        return None
    done = _git(["status", "--porcelain", "--", relative], root)
    return bool(done.stdout.strip()) if done is not None and done.returncode == 0 else None


def _run_row(run: str, recorded, protocol: str | None, root: Path | None) -> dict:
    commit = None if recorded is None or (isinstance(recorded, float) and recorded != recorded) else str(recorded).strip()
    dirty = bool(commit) and commit.endswith("+dirty")
    commit = commit[: -len("+dirty")] if dirty else commit
    row = {"run": run, "commit": commit or None, "dirty": dirty, "known": None, "after_protocol": None}
    flags = []
    if not commit:
        flags.append("no commit recorded")
    elif root is None:
        flags.append("not a git repository")
    elif (found := _git(["cat-file", "-e", f"{commit}^{{commit}}"], root)) is None or found.returncode != 0:
        row["known"] = False
        flags.append("unknown commit")
    else:
        row["known"] = True
        if protocol is None:
            flags.append("no protocol commit")
        else:
            done = _git(["merge-base", "--is-ancestor", protocol, commit], root)
            if done is None or done.returncode not in (0, 1):
                flags.append("unknown protocol commit")
            else:
                row["after_protocol"] = done.returncode == 0
                if not row["after_protocol"]:
                    flags.append("before the protocol")
    if dirty:
        flags.append("dirty working tree")
    row["ok"] = not flags
    row["flags"] = "; ".join(flags)
    return row


def runs_after_protocol(commits: Mapping[str, str | None], protocol_commit: str | None,
                        repo: str | Path | None = None) -> pd.DataFrame:
    """For each run (``{run: recorded commit}``, e.g. ``provenance.git_commit`` of its results),
    whether it was made at or after the protocol's commit.

    A recorded ``<hash>+dirty`` (:func:`aafcore.runs.git_commit`: uncommitted changes) is
    stripped to the hash and flagged.  Git runs in ``repo`` (default: the project's repository):
    ``git cat-file -e <hash>^{commit}`` (is the commit known) and ``git merge-base --is-ancestor
    <protocol> <hash>`` (does it descend from the protocol's commit, the commit itself included).

    One row per run, in the order given: ``run``, ``commit`` (without the suffix), ``dirty``,
    ``known`` (None when it could not be asked), ``after_protocol`` (None when unknown), ``ok``
    (a clean, known commit descending from the protocol's) and ``flags``: ``before the
    protocol``, ``dirty working tree``, ``unknown commit``, ``no commit recorded``, ``no protocol
    commit``, ``unknown protocol commit``, ``not a git repository`` ("; "-joined; empty when ok).
    """
    root = _repo_root(Path(repo) if repo is not None else PROJECT_ROOT)
    rows = [_run_row(run, commit, protocol_commit, root) for run, commit in commits.items()]
    columns = ["run", "commit", "dirty", "known", "after_protocol", "ok", "flags"]
    return pd.DataFrame(rows, columns=columns)
