"""The study's protocol (protocol/study.yaml, aafcore.report.protocol): the real file loads and
re-expresses every claim of the ledger with the paper's effect sizes, broken variants fail on
one line naming the file and the field, and the git checks flag runs made before the protocol,
at unknown commits or from a dirty tree, on a repository made here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from aafcore import report
from aafcore.report.claims import CLAIMS
from aafcore.report.protocol import (PROTOCOL_PATH, load_protocol, protocol_commit, protocol_dirty, rules_match,
                                     runs_after_protocol)
from aafcore.report.stats import PAIRED_VERDICT_RULES
from aafcore.report.tuning import apply_tuning_rules, tuning_table

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / PROTOCOL_PATH

# --------------------------------------------------------------------------- the real protocol


@pytest.fixture(scope="module")
def protocol():
    return load_protocol(REAL)


def test_the_protocol_is_registered_with_what_its_rules_chose_from_the_committed_tuning_runs(protocol):
    assert protocol.path == REAL and protocol.status == "registered" and protocol.version.startswith("2.")
    assert protocol.benchmark["name"] == "synthetic-v2" and protocol.open_fields == ()
    assert protocol.alpha == 0.05 and protocol.statistics["correction"] == "holm"
    assert protocol.benchmark["generator_version"] == "aafcore-synthetic-v2.0"
    # the chosen values are what the rules give on the committed tuning runs (results/study/)
    rate, length = protocol.training["learning_rate"], protocol.training["length_rule"]
    table = tuning_table(ROOT / "results", "study", protocol.training["tuning_seeds"], length["last_fraction"])
    decision = apply_tuning_rules(table, rate["candidates"], length["candidate_steps"], length["max_gain_pp"],
                                  rate["at_steps"])
    assert (rate["chosen"], length["chosen_steps"]) == (decision.lr, decision.steps)
    tuned = table[(table.lr == decision.lr) & (table.steps == decision.steps)].run.item()
    grid = json.loads((ROOT / "results" / "study" / "synthetic" / tuned / "crf-grid.json").read_text())
    assert protocol.crf["chosen"] == grid["chosen"] and grid["split"] == protocol.crf["split"]
    assert grid["grid"] == protocol.crf["grid"] and grid["base"]["bi_xy_std"] == protocol.crf["scaled"]["bi_xy_std"]
    assert load_protocol().path == REAL          # the default path, from the repository's root


def test_the_protocol_states_the_rules_the_ledger_applies(protocol):
    assert rules_match(protocol)
    assert protocol.statistics["verdict_rules"] == PAIRED_VERDICT_RULES
    rule = protocol.training["length_rule"]
    assert (rule["last_fraction"], rule["max_gain_pp"], rule["method"], rule["split"]) == (0.2, 0.3, "baseline", "tuning")


def test_the_seeds_and_runs(protocol):
    main, secondary = tuple(range(10)), tuple(range(5))
    groups = {(g.base, g.method, g.kernel_sizes, g.weight_by): g for g in protocol.runs}
    for method in ("baseline", "affinity"):
        assert groups["pspnet", method, None, None].seeds == main
    assert groups["pspnet", "aaf", (3, 5, 7), "label"].seeds == main
    for key in [("pspnet", "gan", None, None), ("pspnet", "emb", None, None), ("fcn", "baseline", None, None),
                ("fcn", "affinity", None, None), ("fcn", "aaf", (3, 5, 7), "label"), ("pspnet", "aaf", (3,), "label"),
                ("pspnet", "aaf", (3, 5), "label"), ("pspnet", "aaf_frozen", (3, 5, 7), "label"),
                ("pspnet", "aaf_min", (3, 5, 7), "label"), ("pspnet", "aaf", (3, 5, 7), "channel")]:
        assert groups[key].seeds == secondary, key
    assert "val-source-crf" in groups["pspnet", "baseline", None, None].evaluations
    assert set(protocol.evaluations) == {"val-source", "test-source-ms", "val-shifted", "test-shifted", "val-source-crf"}


def test_every_claim_of_the_ledger_is_in_the_protocol(protocol):
    ours = {c.id: c for c in protocol.claims}
    for claim in CLAIMS:
        assert ours[claim.id].text == claim.text, claim.id
    assert [c.id for c in protocol.claims if c.id.startswith("K")] == ["K1", "K2", "K3"]
    assert protocol.family == tuple(f"C{i}" for i in range(1, 20)) + ("K1", "K2", "K3")
    assert protocol.family_size == 22 and protocol.claim("C20").test == "none"
    assert protocol.claim("C13").per_class and not protocol.claim("C2").per_class
    assert protocol.claim("K3").alternative == "two-sided"
    assert protocol.claim("C19").b.filters("val-source") == {"base": "pspnet", "method": "crf", "tag": "val-source-crf"}
    assert protocol.claim("C15").a.filters("val-source")["kernel_sizes"] == "3,5"
    assert protocol.claim("K3").b.weight_by == "channel"
    k3 = protocol.claim("K3")
    assert "weight_by" not in k3.a.filters("val-source") and k3.b.filters("val-source")["weight_by"] == "channel"
    assert k3.a.filters("val-source", columns=["weight_by"])["weight_by"] == "label"
    assert "weight_by" not in protocol.claim("C1").a.filters("val-source", columns=["weight_by"])   # not AAF


def _gain(table: int, a: str, b: str, base: str = "PSPNet", column: str | None = None) -> float:
    t = report.paper_table(table)
    column = column or next(c for c in t.columns if c in ("mIoU", "mean"))
    rows = t[t["base"] == base].set_index("Method")[column]
    return float(rows[a] - rows[b])


# claim -> the paper's effects it cites (percentage points); the protocol keeps the smallest
PAPER_EFFECTS = {
    "C1": [_gain(2, "Affinity", "PSPNet"), _gain(3, "Affinity", "PSPNet")],
    "C2": [_gain(2, "AAF", "PSPNet"), _gain(3, "AAF", "PSPNet")],
    "C3": [_gain(2, "AAF", "Affinity"), _gain(3, "AAF", "Affinity")],
    "C4": [_gain(2, "Affinity", "FCN", "FCN"), _gain(3, "Affinity", "FCN", "FCN")],
    "C5": [_gain(2, "AAF", "FCN", "FCN"), _gain(3, "AAF", "FCN", "FCN")],
    "C6": [_gain(2, "AAF", "GAN"), _gain(3, "AAF", "GAN")],
    "C7": [_gain(2, "AAF", "Emb.")],
    "C9": [_gain(4, "AAF", "PSPNet"), _gain(5, "AAF", "PSPNet")],
    "C10": [_gain(6, "AAF", "PSPNet"), _gain(7, "AAF", "PSPNet")],
    "C12": [100 * _gain(8, "AAF", "PSPNet"), 100 * _gain(9, "AAF", "PSPNet")],
    "C17": [_gain(11, "AAF", "PSPNet")],
    "C18": [_gain(11, "AAF", "PSPNet", column="pix. acc")],
    "C19": [_gain(3, "AAF", "CRF")],
}


def _class_gains(table: int, scale: float = 1.0):
    t = report.paper_table(table)
    rows = t[t["base"] == "PSPNet"].set_index("Method")
    classes = [c for c in t.columns[6:] if c not in ("mIoU", "mean")]
    return (rows.loc["AAF", classes].astype(float) - rows.loc["PSPNet", classes].astype(float)) * scale


def _thin_minus_rest(table: int, thin: list[str]) -> float:
    gains = _class_gains(table)
    return float(gains[thin].mean() - gains.drop(thin).mean())


def test_the_paper_effects_are_the_papers_numbers(protocol):
    voc_thin, cityscapes_thin = ["bike", "chair", "person", "plant"], ["pole", "tlight", "tsign", "person", "rider", "bike"]
    effects = dict(PAPER_EFFECTS)
    effects["C8"] = [_thin_minus_rest(2, voc_thin)]
    effects["C11"] = [_thin_minus_rest(6, voc_thin), _thin_minus_rest(7, cityscapes_thin)]
    effects["C13"] = [_class_gains(8, 100).min(), _class_gains(9, 100).min()]
    table10 = report.paper_table(10)["mIoU"].tolist()          # {3}, {3,5}, {3,5,7}
    effects["C15"], effects["C16"] = [table10[1] - table10[0]], [table10[1] - table10[2]]
    for cid, values in effects.items():
        claim = protocol.claim(cid)
        assert claim.paper_effect == pytest.approx(min(values), abs=0.006), cid
        assert claim.paper_effect_unit == "pp", cid
    assert {c.id for c in protocol.claims if c.paper_effect is None} == {"C14", "C20", "K1", "K2", "K3"}
    assert protocol.claim("C14").paper_effect_unit == "px"


# --------------------------------------------------------------------------- broken variants


def _variant(tmp_path: Path, change) -> Path:
    data = yaml.load(REAL.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    change(data)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))
    return path


def _fails(path: Path, *fragments: str) -> str:
    with pytest.raises(ValueError) as caught:
        load_protocol(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_an_unchanged_copy_loads(tmp_path):
    assert load_protocol(_variant(tmp_path, lambda d: None)).family_size == 22


def test_a_missing_field_is_named(tmp_path):
    _fails(_variant(tmp_path, lambda d: d["statistics"].pop("alpha")), "statistics.alpha: missing")
    _fails(_variant(tmp_path, lambda d: d.pop("claims")), "claims: missing")
    _fails(_variant(tmp_path, lambda d: d["claims"][3]["paper_effect"].pop("source")),
           "claims[3].paper_effect.source: missing")
    _fails(_variant(tmp_path, lambda d: d["training"]["length_rule"].pop("max_gain_pp")),
           "training.length_rule.max_gain_pp: missing")


def test_a_wrong_type_is_named(tmp_path):
    _fails(_variant(tmp_path, lambda d: d["statistics"].update(alpha="0.05")), "statistics.alpha: must be a number")
    _fails(_variant(tmp_path, lambda d: d["claims"][0].update(seeds="0-9")), "claims[0].seeds: must be a list")
    _fails(_variant(tmp_path, lambda d: d["claims"][0].update(seeds=[0, 1, True])), "claims[0].seeds")
    _fails(_variant(tmp_path, lambda d: d["claims"][1].update(per_class="no")), "claims[1].per_class: must be true or false")
    _fails(_variant(tmp_path, lambda d: d["runs"][0].update(seeds=[0, 0, 1])), "runs[0].seeds: has repeated values")


def test_bad_values_are_named(tmp_path):
    _fails(_variant(tmp_path, lambda d: d["claims"][0].update(alternative="less")), "claims[0].alternative: must be one of")
    _fails(_variant(tmp_path, lambda d: d["claims"][1].update(id="C1")), "claims[1].id: 'C1' is used twice")
    _fails(_variant(tmp_path, lambda d: d["claims"][3].update(seeds=list(range(10)))),
           "claims[3].seeds: run group 'fcn-affinity' has no seed(s) [5, 6, 7, 8, 9]")
    _fails(_variant(tmp_path, lambda d: d["claims"][5]["comparison"]["b"].update(method="dropout")),
           "claims[5].comparison.b: no run group trains pspnet/dropout")
    _fails(_variant(tmp_path, lambda d: d["claims"][8]["measure"].update(tag="test-source")),
           "claims[8].measure.tag: 'test-source' is not in evaluations")
    _fails(_variant(tmp_path, lambda d: d["statistics"].update(alpha=1.5)), "statistics.alpha: must lie in (0, 1)")
    _fails(_variant(tmp_path, lambda d: d["training"].update(tuning_seeds=[3, 100])), "training.tuning_seeds")


def test_open_fields_are_declared_and_registration_needs_none(tmp_path):
    _fails(_variant(tmp_path, lambda d: d["benchmark"].update(name=None)), "benchmark.name")
    _fails(_variant(tmp_path, lambda d: d["seeds"].update(extra=None)), "seeds.extra: is null but not listed")
    _fails(_variant(tmp_path, lambda d: (d["training"]["learning_rate"].update(chosen=0.03),
                                         _listed_open(d, "training.learning_rate.chosen"))),
           "open_fields: 'training.learning_rate.chosen' is listed as open but is not a null field")
    _fails(_variant(tmp_path, lambda d: (d["training"]["learning_rate"].update(chosen=None),
                                         _listed_open(d, "training.learning_rate.chosen"), d.update(status="registered"))),
           "status: a registered protocol has no open field")


def _listed_open(data: dict, field: str) -> None:
    data["open_fields"] = sorted({*(data.get("open_fields") or []), field})


def _not_open(data: dict, field: str) -> None:
    data["open_fields"] = [f for f in data.get("open_fields") or [] if f != field]


def test_bad_yaml_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("protocol_version: '2'\nclaims: [unclosed\n")
    _fails(path, "not valid YAML", "line")
    path.write_text("- just\n- a list\n")
    _fails(path, "must be a mapping")
    path.write_bytes(b"\xff\xfe\x00bad")
    _fails(path, "not")
    with pytest.raises(FileNotFoundError, match="no protocol file"):
        load_protocol(tmp_path / "absent.yaml")


# --------------------------------------------------------------------------- git


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                           "-c", "core.hooksPath=/dev/null", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _commit(repo: Path, path: str, text: str) -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    _git(repo, "add", path)
    _git(repo, "commit", "-q", "-m", f"change {path}")
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def history(tmp_path, monkeypatch):
    """A repository with commits A (code) -> B (the protocol) -> C (code after it)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))    # no repository above tmp_path
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    a = _commit(repo, "code.py", "x = 1\n")
    b = _commit(repo, "protocol/study.yaml", "protocol_version: '2'\n")
    c = _commit(repo, "code.py", "x = 2\n")
    return repo, a, b, c


def test_the_protocol_commit_and_a_dirty_protocol(history):
    repo, a, b, c = history
    assert protocol_commit(repo / "protocol/study.yaml") == b
    assert protocol_commit("protocol/study.yaml", repo=repo) == b
    assert protocol_dirty(repo / "protocol/study.yaml") is False
    (repo / "protocol/study.yaml").write_text("protocol_version: '3'\n")
    assert protocol_dirty(repo / "protocol/study.yaml") is True
    (repo / "protocol/new.yaml").write_text("untracked\n")
    assert protocol_dirty("protocol/new.yaml", repo=repo) is True
    assert protocol_commit("protocol/new.yaml", repo=repo) is None        # never committed


def test_runs_before_the_protocol_unknown_or_dirty_are_flagged(history):
    repo, a, b, c = history
    runs = {"at-A": a, "at-B": b, "at-C": c, "short-C": c[:12], "unknown": "0" * 40, "dirty-C": c + "+dirty",
            "dirty-A": a + "+dirty", "none": None}
    out = runs_after_protocol(runs, b, repo=repo).set_index("run")
    assert out.loc["at-A", "flags"] == "before the protocol" and out.loc["at-A", "after_protocol"] is False
    for run in ("at-B", "at-C", "short-C"):
        assert out.loc[run, "ok"] and out.loc[run, "flags"] == "" and out.loc[run, "after_protocol"] is True, run
    assert out.loc["unknown", "flags"] == "unknown commit" and out.loc["unknown", "known"] is False
    assert out.loc["dirty-C", "flags"] == "dirty working tree" and out.loc["dirty-C", "commit"] == c
    assert out.loc["dirty-C", "dirty"] and not out.loc["dirty-C", "ok"]
    assert out.loc["dirty-A", "flags"] == "before the protocol; dirty working tree"
    assert out.loc["none", "flags"] == "no commit recorded"
    assert not out.loc[["at-A", "unknown", "dirty-C", "dirty-A", "none"], "ok"].any()
    assert runs_after_protocol({"at-C": c}, None, repo=repo).loc[0, "flags"] == "no protocol commit"
    assert runs_after_protocol({"at-C": c}, "f" * 40, repo=repo).loc[0, "flags"] == "unknown protocol commit"


def test_outside_a_repository_the_git_checks_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "plain"
    (plain / "protocol").mkdir(parents=True)
    (plain / "protocol" / "study.yaml").write_text("x: 1\n")
    assert protocol_commit(plain / "protocol" / "study.yaml") is None
    assert protocol_dirty(plain / "protocol" / "study.yaml") is None
    out = runs_after_protocol({"run": "a" * 40}, "b" * 40, repo=plain)
    assert out.loc[0, "flags"] == "not a git repository" and not out.loc[0, "ok"]
    assert pd.isna(out.loc[0, "known"]) and pd.isna(out.loc[0, "after_protocol"])


def test_the_protocol_describes_the_code_that_runs_the_study(protocol):
    from aafcore.config import PROFILES
    from aafcore.datasets import SYNTHETIC_PROFILES, synthetic_meta

    meta = synthetic_meta(SYNTHETIC_PROFILES["study"])
    assert meta["generator"] == protocol.benchmark["generator_version"]
    assert {k: meta["spec"][k] for k in protocol.benchmark["splits"]} == protocol.benchmark["splits"]
    assert meta["spec"]["image_size"] == protocol.benchmark["spec"]["image_size"]
    cfg, settings = PROFILES[protocol.training["profile"]], protocol.training["settings"]
    for key in ("backbone", "batch_size", "crop_size", "fcn_head", "checkpoint_every"):
        assert getattr(cfg, key) == settings[key], key
    rate, length = protocol.training["learning_rate"], protocol.training["length_rule"]
    if protocol.status == "registered":
        assert (cfg.lr, cfg.steps) == (rate["chosen"], length["chosen_steps"])
    else:   # the tuning runs' names are relative to the profile: it keeps a tuned setting until then
        assert cfg.lr in rate["candidates"]
        assert cfg.steps in [*length["candidate_steps"], rate["at_steps"]]


def test_the_crf_choice_must_be_a_cell_of_its_grid(tmp_path):
    _fails(_variant(tmp_path, lambda d: (d["crf"].update(chosen={"bi_w": 2.0, "bi_xy_std": 15.0}),
                                         _not_open(d, "crf.chosen"))),
           "crf.chosen.bi_w: 2.0 is not in the grid")
    _fails(_variant(tmp_path, lambda d: (d["crf"].update(chosen={"bi_rgb_std": 3.0}),
                                         _not_open(d, "crf.chosen"))),
           "crf.chosen: 'bi_rgb_std' is not a parameter of the grid")
