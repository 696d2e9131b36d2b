"""The study's plan comes from a registered, committed protocol (issue 14)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from aafcore.reproduce import _study_jobs, plan, registered_protocol, selected

REAL = Path(__file__).resolve().parent.parent / "protocol" / "study.yaml"


def _registered(folder: Path, status: str = "registered", open_field: str | None = None) -> Path:
    """A copy of the protocol with the chosen values filled in (or, with ``open_field``, that one
    left open), committed in a git repo."""
    data = yaml.safe_load(REAL.read_text())
    data["status"] = status
    data["training"]["learning_rate"]["chosen"] = 0.03
    data["training"]["length_rule"]["chosen_steps"] = 750
    data["crf"]["chosen"] = {"bi_w": 1.0, "bi_xy_std": 15.0}
    data["open_fields"] = []
    if open_field:
        section, *keys = open_field.split(".")
        target = data[section]
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = None
        data["open_fields"] = [open_field]
    folder.mkdir()
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "study.yaml"], ["commit", "-qm", "protocol"]):
        subprocess.run([*git, *args], cwd=folder, check=True, capture_output=True)
    return path


def test_the_study_runs_only_from_a_registered_committed_protocol(tmp_path):
    draft = _registered(tmp_path / "draft", status="draft", open_field="training.length_rule.chosen_steps")
    with pytest.raises(ValueError, match="is a draft .*open: training.length_rule.chosen_steps"):
        registered_protocol(draft)
    path = _registered(tmp_path / "repo")
    assert registered_protocol(path).status == "registered"
    path.write_text(path.read_text() + "\n# an edit after the commit\n")
    with pytest.raises(ValueError, match="uncommitted changes"):
        registered_protocol(path)


def test_the_study_plan_follows_the_protocol(tmp_path):
    protocol = registered_protocol(_registered(tmp_path / "repo"))
    jobs = _study_jobs(tmp_path / "results", None, None, protocol)
    trains = [j for j in jobs if j.kind == "train"]
    assert len(trains) == sum(len(g.seeds) for g in protocol.runs)
    assert len(jobs) - len(trains) == sum(len(g.seeds) * len(g.evaluations) for g in protocol.runs)
    names = {j.output.parent.name for j in trains}
    assert {f"pspnet-aaf-s{s}" for s in range(10)} <= names and "pspnet-aaf-channel-s4" in names
    assert {"pspnet-aaf_frozen-s0", "pspnet-aaf_min-s4", "pspnet-aaf-k3_5-s2", "fcn-baseline-s4"} <= names
    assert all(re.search(r"-s\d+$", name) for name in names)       # no -c<hash> folder: nothing is an override
    tags = {j.output.parent.name for j in jobs if j.kind == "evaluate"}
    assert tags == set(protocol.evaluations)
    assert [j.kind for j in jobs] == sorted((j.kind for j in jobs), key=["train", "evaluate"].index)
    crf = [j for j in jobs if j.output.parent.name == "val-source-crf"]
    assert len(crf) == 10 and all(j.parameters["crf"] == {**protocol.crf["scaled"], "bi_w": 1.0, "bi_xy_std": 15.0}
                                  for j in crf)
    assert all(j.parameters["crf"] is False for j in jobs if j.kind == "evaluate" and j not in crf)


def test_only_selects_runs_by_any_of_its_comma_separated_parts(tmp_path):
    protocol = registered_protocol(_registered(tmp_path / "repo"))
    jobs = _study_jobs(tmp_path / "results", None, "pspnet-baseline-s3,pspnet-aaf-s3", protocol)
    assert sorted(j.name for j in jobs if j.kind == "train") == ["train pspnet-aaf-s3", "train pspnet-baseline-s3"]
    assert selected("fcn-aaf-s1", None) and selected("fcn-aaf-s1", "x,aaf-s1") and not selected("fcn-aaf-s1", "x,,y")
