"""Batch reproduction: every training and evaluation notebook through papermill, then the book.

``aaf reproduce --profile cpu`` (``make reproduce``) runs, in order:

1. the synthetic benchmark of the profile (generated once, under ``data/``);
2. one **training notebook** (``notebooks/train.ipynb``) per run of :data:`RUNS`, its executed
   copy kept next to the run as ``results/<profile>/<dataset>/<run>/train.ipynb``;
3. one **evaluation notebook** (``notebooks/evaluate.ipynb``) per evaluation of :data:`EVALUATIONS`,
   kept as ``<run>/eval/<tag>/evaluate.ipynb``;
4. the **results notebooks** of :data:`REPORTS` (tables, figures, claims), executed into ``book/``
   for the ``cpu`` profile (``results/<profile>/<dataset>/reports/`` otherwise); for the book also
   :data:`STUDY_PAGES` on the study's results (``results/study/``), into ``book/study/``;
5. the book, ``jupyter-book build .`` (execution off: it renders the executed notebooks).

A job is skipped when its result is finished *and* matches: a run's ``metrics.json`` with the
config hash of its configuration, an evaluation's with its evaluation hash, and an executed copy
made from the current notebook (its sha256 is stored in the copy's metadata).  Results notebooks
re-run when anything before them ran or their copy is missing or stale; the pages that read the
study also when a result under ``results/study`` changed (:func:`results_digest`).  A failing notebook is
reported with its name and cell; its partial copy goes to ``<copy>.failed.ipynb``, the previous
copy and every other result stay untouched, the other jobs go on, and the command exits 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aafcore.config import config_hash, data_identity, prepare_data, profile_config, run_dir, run_name
from aafcore.crf import CRFParams, crf_params
from aafcore.datasets import SYNTHETIC_PROFILES, build_dataset, synthetic_meta
from aafcore.evaluate import evaluation_hash, evaluation_tag
from aafcore.inference import InferenceConfig
from aafcore.launch import Job, Launcher, run_stage
from aafcore.report.protocol import PROTOCOL_PATH, load_protocol, protocol_dirty
from aafcore.runs import check_writable_dir, locked

__all__ = ["RunSet", "EvaluationSet", "RUNS", "EVALUATIONS", "REPORTS", "SMOKE_TUTORIAL", "STUDY_REPORTS", "STUDY_PAGES",
           "Job", "Launcher", "plan", "reproduce",
           "book_notebooks", "results_digest"]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"



@dataclass(frozen=True)
class RunSet:
    """Training runs of one (base, method): one per seed; ``kernel_sizes`` None = the profile's."""

    base: str
    method: str
    seeds: tuple[int, ...] = (0,)
    kernel_sizes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class EvaluationSet:
    """One evaluation of every seed of the (default kernel size) runs of ``base`` x ``methods``."""

    base: str
    methods: tuple[str, ...]
    split: str
    domain: str
    multiscale: bool = False
    crf: bool = False

    @property
    def inference(self) -> InferenceConfig:
        scales = InferenceConfig.paper() if self.multiscale else InferenceConfig()
        return InferenceConfig(scales.scales, scales.flip, crf=CRFParams() if self.crf else None)


SEEDS3 = (0, 1, 2)
# Tables 2-3 (both bases), the 3-seed PSPNet comparison of the claims ledger, and Table 10's
# kernel-size sets.
RUNS: tuple[RunSet, ...] = (
    RunSet("fcn", "baseline"), RunSet("fcn", "affinity"), RunSet("fcn", "aaf"),
    RunSet("pspnet", "baseline", SEEDS3), RunSet("pspnet", "affinity", SEEDS3), RunSet("pspnet", "aaf", SEEDS3),
    RunSet("pspnet", "gan"), RunSet("pspnet", "emb"),
    RunSet("pspnet", "aaf", kernel_sizes=(3,)), RunSet("pspnet", "aaf", kernel_sizes=(3, 5)),
)
# Tables 4-5 (test, multi-scale + flip), Table 11 (the shifted domain) and the CRF row of Tables 1 and 3.
_FIVE = ("baseline", "affinity", "aaf", "gan", "emb")
EVALUATIONS: tuple[EvaluationSet, ...] = (
    EvaluationSet("pspnet", _FIVE, "test", "source", multiscale=True),
    EvaluationSet("pspnet", _FIVE, "val", "shifted"),
    EvaluationSet("pspnet", ("baseline",), "val", "source", crf=True),
)
# the book's results notebooks, in the order they run (each reads results/ only)
REPORTS = ("results_pixel", "results_instance_boundary", "results_kernels", "results_domain",
           "results_cost", "figure5", "claims", "performance", "tutorial", "study_setup", "study_results", "intro")
# the smoke profile checks that the tutorial runs, on a smaller toy experiment than the book's
SMOKE_TUTORIAL = {"seeds": [0, 1], "steps": 12}
STUDY_REPORTS = ("study_setup", "study_results", "intro")   # executed into the book only (they read results/study)
READS_BENCHMARKS = ("performance", "results_cost")   # pages that read results/benchmarks
# the results notebooks that also show the study (benchmark v2): executed into book/study/ with
# profile "study", the book's main results; the cpu profile's copies in book/ are its v1 appendix
STUDY_PAGES = ("results_pixel", "results_instance_boundary", "results_kernels", "results_domain", "results_cost",
               "figure5")


def selected(name: str, only: str | None) -> bool:
    """Whether run ``name`` is selected by ``--only``: no filter, or it contains one of the
    comma-separated parts (``pspnet-baseline-s3,pspnet-aaf-s3``)."""
    return not only or any(part and part in name for part in only.split(","))


def _data_identity(cfg, data_root) -> dict:
    """The dataset identity in the config hashes (:func:`aafcore.config.data_identity`); the built-in
    benchmark's follows from its spec, so planning never has to generate it."""
    if data_root is None and cfg.dataset == "synthetic":
        return data_identity(synthetic_meta(SYNTHETIC_PROFILES[cfg.profile]))
    root = prepare_data(cfg, data_root, progress=False)
    return data_identity(getattr(build_dataset(cfg.dataset, root, split=cfg.val_split), "meta", None))


def _train_jobs(profile: str, dataset: str, results_root: Path, data_root,
                only: str | None) -> tuple[list[Job], dict[str, str]]:
    """One training notebook per run of :data:`RUNS` whose name contains ``only``, and the runs'
    config hashes by run name."""
    jobs: list[Job] = []
    hashes: dict[str, str] = {}
    identity = None
    for runs in RUNS:
        for seed in runs.seeds:
            cfg = profile_config(profile, dataset=dataset, base=runs.base, method=runs.method, seed=seed,
                                 kernel_sizes=runs.kernel_sizes)
            name = run_name(cfg)
            if not selected(name, only):
                continue
            if identity is None:   # the dataset's spec enters every config hash
                identity = _data_identity(cfg, data_root)
            out = run_dir(cfg, results_root)
            hashes[name] = config_hash(cfg, identity)
            params = {"profile": profile, "dataset": dataset, "base": runs.base, "method": runs.method, "seed": seed,
                      "kernel_sizes": ",".join(str(k) for k in cfg.kernel_sizes),
                      "results_root": str(results_root), "data_root": None if data_root is None else str(data_root)}
            jobs.append(Job("train", f"train {name}", NOTEBOOKS / "train.ipynb", out / "train.ipynb", params,
                            out / "metrics.json", ("config_hash", hashes[name])))
    return jobs, hashes


def _evaluation_jobs(profile: str, dataset: str, results_root: Path, data_root, trained: dict[str, str]) -> list[Job]:
    """One evaluation notebook per evaluation of :data:`EVALUATIONS` of a planned run (``trained``:
    run name -> its config hash)."""
    jobs: list[Job] = []
    for ev in EVALUATIONS:
        for method in ev.methods:
            seeds = next(r.seeds for r in RUNS if (r.base, r.method, r.kernel_sizes) == (ev.base, method, None))
            for seed in seeds:
                cfg = profile_config(profile, dataset=dataset, base=ev.base, method=method, seed=seed)
                name = run_name(cfg)
                if name not in trained:
                    continue
                tag = evaluation_tag(ev.split, ev.domain, ev.inference)
                out = run_dir(cfg, results_root) / "eval" / tag
                params = {"run_dir": str(run_dir(cfg, results_root)), "split": ev.split, "domain": ev.domain,
                          "multiscale": ev.multiscale, "crf": ev.crf,
                          "data_root": None if data_root is None else str(data_root)}
                expected = evaluation_hash(trained[name], ev.split, ev.domain, ev.inference)
                jobs.append(Job("evaluate", f"evaluate {name} {tag}", NOTEBOOKS / "evaluate.ipynb",
                                out / "evaluate.ipynb", params, out / "metrics.json", ("evaluation_hash", expected)))
    return jobs


def registered_protocol(path: str | Path = PROTOCOL_PATH):
    """The study's protocol, when it may drive runs: registered (no open field) and committed (no
    uncommitted change), else a one-line ``ValueError`` that says what to do."""
    protocol = load_protocol(path)
    if protocol.status != "registered":
        raise ValueError(f"{protocol.path} is a {protocol.status} (open: {', '.join(protocol.open_fields) or '-'}): "
                         f"the study runs only from a registered protocol")
    if protocol_dirty(protocol.path) is not False:
        raise ValueError(f"{protocol.path} has uncommitted changes (or is not in git): commit it before the study "
                         f"runs, so that every run descends from the protocol's commit")
    return protocol


def _study_jobs(results_root: Path, data_root, only: str | None, protocol) -> list[Job]:
    """The study's trainings and evaluations, as the protocol's run groups list them."""
    jobs, evaluations = [], []
    for group in protocol.runs:
        for seed in group.seeds:
            named = {"kernel_sizes": group.kernel_sizes} if group.kernel_sizes else {}
            extra = {"weight_by": group.weight_by} if group.weight_by not in (None, "label") else {}
            cfg = profile_config("study", base=group.base, method=group.method, seed=seed, **named, **extra)
            name, out = run_name(cfg), run_dir(cfg, results_root)
            if not selected(name, only):
                continue
            chash = config_hash(cfg, _data_identity(cfg, data_root))
            params = {"profile": "study", "dataset": "synthetic", "base": group.base, "method": group.method,
                      "seed": seed, "kernel_sizes": ",".join(str(k) for k in cfg.kernel_sizes),
                      "results_root": str(results_root), "data_root": None if data_root is None else str(data_root),
                      "overrides": extra}
            jobs.append(Job("train", f"train {name}", NOTEBOOKS / "train.ipynb", out / "train.ipynb", params,
                            out / "metrics.json", ("config_hash", chash)))
            for tag in group.evaluations:
                spec = protocol.evaluations[tag]
                multiscale = list(spec["scales"]) != [1.0]
                inference = EvaluationSet(group.base, (group.method,), spec["split"], spec["domain"], multiscale,
                                          spec["crf"]).inference
                crf = protocol.crf_params() if spec["crf"] else False   # the study's tuned CRF
                if crf:
                    inference = dataclasses.replace(inference, crf=crf_params(crf))
                if evaluation_tag(spec["split"], spec["domain"], inference) != tag:
                    raise ValueError(f"{protocol.path}: evaluation {tag!r} is not what aaf evaluate calls "
                                     f"{evaluation_tag(spec['split'], spec['domain'], inference)!r}")
                evaluations.append(Job(
                    "evaluate", f"evaluate {name} {tag}", NOTEBOOKS / "evaluate.ipynb", out / "eval" / tag / "evaluate.ipynb",
                    {"run_dir": str(out), "split": spec["split"], "domain": spec["domain"], "multiscale": multiscale,
                     "crf": crf, "data_root": None if data_root is None else str(data_root)},
                    out / "eval" / tag / "metrics.json",
                    ("evaluation_hash", evaluation_hash(chash, spec["split"], spec["domain"], inference))))
    return jobs + evaluations


def results_digest(tree: Path) -> str:
    """A digest of the finished results under ``tree`` (every ``metrics.json`` and the top-level
    JSON files, by path and content): the ``inputs`` of the report jobs that read the study or the
    benchmarks, so that a run, an evaluation or a benchmark landing there makes their executed
    copies stale."""
    digest = hashlib.sha256()
    files = sorted(tree.glob("*/metrics.json")) + sorted(tree.glob("*/eval/*/metrics.json")) + sorted(tree.glob("*.json"))
    for path in files:
        digest.update(str(path.relative_to(tree)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def plan(profile: str = "cpu", dataset: str = "synthetic", results_root: str | Path = "results",
         data_root: str | Path | None = None, only: str | None = None) -> list[Job]:
    """Every job of a reproduction, in execution order (``only``: runs whose name contains it).
    The ``study`` profile's runs come from the registered protocol (:func:`registered_protocol`);
    its results pages are not written yet, so it has no report jobs."""
    results_root = Path(results_root)
    if profile == "study":
        return _study_jobs(results_root, data_root, only, registered_protocol())
    jobs, trained = _train_jobs(profile, dataset, results_root, data_root, only)
    jobs += _evaluation_jobs(profile, dataset, results_root, data_root, trained)
    in_book = profile == "cpu" and results_root.resolve() == (ROOT / "results").resolve()
    study = results_digest(results_root / "study" / "synthetic") if in_book else None
    bench = results_digest(results_root / "benchmarks") if in_book else None

    def inputs(report: str, reads_study: bool) -> str | None:
        """What makes the book's copy of ``report`` stale: the study's results, the benchmarks'."""
        parts = [part for part, reads in ((study, reads_study), (bench, report in READS_BENCHMARKS)) if reads and part]
        return "+".join(parts) or None

    report_dir = ROOT / "book" if in_book else results_root / profile / dataset / "reports"
    for report in REPORTS:
        if report in STUDY_REPORTS and not in_book:   # the study's pages read results/study: the book's only
            continue
        params = {"profile": profile, "dataset": dataset, "results_root": str(results_root)}
        if report in ("tutorial", "performance", *STUDY_REPORTS):   # no run results of the profile
            params = dict(SMOKE_TUTORIAL) if report == "tutorial" and profile == "smoke" else {}
        jobs.append(Job("report", report, NOTEBOOKS / f"{report}.ipynb", report_dir / f"{report}.ipynb", params,
                        inputs=inputs(report, report in STUDY_REPORTS)))
    for page in STUDY_PAGES if in_book else ():
        params = {"profile": "study", "dataset": "synthetic", "results_root": str(results_root)}
        jobs.append(Job("report", f"study/{page}", NOTEBOOKS / f"{page}.ipynb", ROOT / "book" / "study" / f"{page}.ipynb",
                        params, inputs=inputs(page, True)))
    return jobs


def book_notebooks() -> list[Path]:
    """The notebooks of the book (``_toc.yml``), for nbval."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    files.insert(0, toc["root"])   # the landing page is a notebook too
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").is_file()]


def build_book(warnings_as_errors: bool = False) -> int:
    """``jupyter-book build .`` (execution off in ``_config.yml``); returns its exit status."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(ROOT)]
    if warnings_as_errors:
        cmd += ["--warningiserror", "--keep-going"]
    return subprocess.run(cmd, cwd=ROOT).returncode


def reproduce(profile: str = "cpu", dataset: str = "synthetic", results_root: str | Path = "results",
              data_root: str | Path | None = None, force: bool = False, book: bool = True,
              only: str | None = None, dry_run: bool = False, launcher: Launcher | None = None,
              reports: bool = True) -> int:
    """Run the jobs of :func:`plan` (skipping finished ones unless ``force``) and build the book.

    The trainings run first, then the evaluations, each stage as ``launcher`` says (one at a
    time by default; side by side, or on Slurm: :mod:`aafcore.launch`), then the results
    notebooks (``reports``) one at a time.  Returns the exit status: 0 when every job and the book
    succeeded, 1 otherwise.  The results tree is locked while it runs: a second ``aaf reproduce``
    on it stops at once with "results tree D is in use by process P".
    """
    launcher = launcher or Launcher()
    if launcher.folder is None:
        launcher = dataclasses.replace(launcher, folder=Path(results_root) / ".submitit")
    args = (profile, dataset, results_root, data_root, force, book, only, dry_run, launcher, reports)
    if dry_run:
        return _run_jobs(*args)
    check_writable_dir(results_root, "results folder")
    with locked(results_root, "results tree"):
        return _run_jobs(*args)


def _pending(stage: list[Job], numbered: dict, force: bool, dry_run: bool, upstream_ran: bool) -> list[Job]:
    """The jobs of a stage that must run (printing what is skipped); ``force`` marks them."""
    todo = []
    for job in stage:
        stale = not job.finished() or (job.kind == "report" and upstream_ran)
        if not (force or stale):
            print(f"{numbered[id(job)]}: finished, skipped", flush=True)
            continue
        if dry_run:
            print(f"{numbered[id(job)]}: would run", flush=True)
            continue
        if force and job.kind != "report":
            job.parameters = {**job.parameters, "force": True}
        where = job.output.relative_to(ROOT) if job.output.is_relative_to(ROOT) else job.output
        print(f"{numbered[id(job)]}: running {job.template.name} -> {where}", flush=True)
        todo.append(job)
    return todo


def _run_jobs(profile: str, dataset: str, results_root: str | Path, data_root, force: bool, book: bool,
              only: str | None, dry_run: bool, launcher: Launcher, reports: bool) -> int:
    start = time.perf_counter()
    jobs = [j for j in plan(profile, dataset, results_root, data_root, only) if reports or j.kind != "report"]
    numbered = {id(job): f"[{i}/{len(jobs)}] {job.name}" for i, job in enumerate(jobs, 1)}
    failures: list[str] = []
    upstream_ran = False
    for kind in ("train", "evaluate", "report"):
        todo = _pending([j for j in jobs if j.kind == kind], numbered, force, dry_run, upstream_ran)

        def report(job: Job, failure: str | None, seconds: float) -> None:
            if failure is None:
                print(f"{numbered[id(job)]}: done in {seconds:.0f} s", flush=True)
            else:
                print(f"{numbered[id(job)]}: FAILED ({failure})", flush=True)

        outcome = run_stage(todo, launcher if kind != "report" else Launcher(), report)
        for job in todo:
            job.parameters.pop("force", None)
        failures += [f for f in outcome if f is not None]
        upstream_ran = upstream_ran or (kind != "report" and any(f is None for f in outcome))
    if book and not dry_run:
        print("building the book: jupyter-book build .", flush=True)
        if build_book() != 0:
            failures.append("jupyter-book build failed (see its output above)")
    minutes = (time.perf_counter() - start) / 60
    if failures:
        print(f"reproduce: {len(failures)} failure(s) in {minutes:.1f} min:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print(f"reproduce: all {len(jobs)} jobs finished in {minutes:.1f} min"
          + ("; the book is in _build/html/index.html" if book and not dry_run else ""))
    return 0


def nbval_notebooks() -> list[Path]:
    """What ``make test`` checks with nbval: the training and evaluation notebooks (their stored
    outputs come from the smoke profile), then every notebook of the book."""
    return [NOTEBOOKS / "train.ipynb", NOTEBOOKS / "evaluate.ipynb"] + book_notebooks()


if __name__ == "__main__":
    if sys.argv[1:] == ["--nbval-list"]:
        print(" ".join(str(p.relative_to(ROOT)) for p in nbval_notebooks()))
    else:
        sys.exit("usage: python -m aafcore.reproduce --nbval-list   (reproducing: aaf reproduce)")
