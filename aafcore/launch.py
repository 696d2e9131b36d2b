"""Running notebook jobs: one at a time, side by side on this machine, or on a Slurm cluster.

* :class:`Job` is one papermill execution of a notebook template into its executed copy;
  :func:`execute` runs it (into a temporary copy, moved into place when it succeeded) and
  :func:`describe_failure` names the cell that failed.
* :class:`Launcher` says how a *stage* of independent jobs (all trainings, then all evaluations)
  runs, and :func:`run_stage` runs one:

  - ``executor="local"``, ``jobs=1``: in this process, one after the other (the default);
  - ``executor="local"``, ``jobs=N``: N subprocesses side by side (``python -m aafcore.launch``).
    On a machine with GPUs each job sees one of them (``CUDA_VISIBLE_DEVICES``, round robin over
    the slots); on the CPU the cores are shared out (``OMP_NUM_THREADS = cores // N``; a run's
    thread count is in its provenance, and bit-identical resuming needs the same one);
  - ``executor="slurm"``: every job is submitted through `submitit <https://github.com/facebookincubator/submitit>`_
    with the partition, time limit, GPUs and CPUs per job of the launcher; at most ``jobs`` run at
    once (a Slurm job array's parallelism), the command waits for all of them;
  - ``executor="submitit-local"``: the same code path with submitit's local executor, on this
    machine (how the Slurm path is tested without a cluster).

A job's failure is reported, never raised: the other jobs go on (the caller collects the lines).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Job", "Launcher", "EXECUTORS", "execute", "execute_or_describe", "describe_failure",
           "fold_values", "fold_parameter_cells", "drop_widgets", "relative_paths",
           "clean_executed_copy", "clean_copies", "run_stage"]

ROOT = Path(__file__).resolve().parent.parent
EXECUTORS = ("local", "slurm", "submitit-local")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _shown(path: Path) -> str:
    """``path`` relative to the project when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@dataclass
class Job:
    """One notebook execution: ``template`` with ``parameters`` into the executed copy ``output``."""

    kind: str                      # "train" | "evaluate" | "report"
    name: str
    template: Path
    output: Path
    parameters: dict = field(default_factory=dict)
    result: Path | None = None     # the metrics.json the job produces
    result_hash: tuple[str, str] | None = None   # (key in the result, expected value)
    inputs: str | None = None      # a digest of the results a report reads (stale when they change)

    def finished(self) -> bool:
        """The executed copy is from the current template, ran with these parameters on these
        ``inputs``, and the result matches its settings."""
        if not self.output.is_file():
            return False
        try:
            meta = json.loads(self.output.read_text()).get("metadata", {}).get("aafcore", {})
        except ValueError:
            return False
        if meta.get("template_sha256") != _sha(self.template) or meta.get("parameters") != self.parameters:
            return False
        if self.inputs is not None and meta.get("inputs") != self.inputs:
            return False
        if self.result is None:
            return True
        if not self.result.is_file():
            return False
        key, expected = self.result_hash
        return json.loads(self.result.read_text()).get(key) == expected

    def to_json(self) -> str:
        """The job as JSON (paths as strings), for a subprocess or a cluster node."""
        return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> "Job":
        d = json.loads(text)
        for key in ("template", "output", "result"):
            d[key] = Path(d[key]) if d[key] is not None else None
        d["result_hash"] = tuple(d["result_hash"]) if d["result_hash"] else None
        return cls(**d)


def _tags(cell) -> list:
    return cell.metadata.get("tags", [])


def _assignments(source: str) -> dict[str, str]:
    """``{name: value source}`` of the top-level ``name = value`` statements of ``source`` (what
    papermill injects: ``profile = "cpu"``)."""
    import ast

    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.get_source_segment(source, node.value)
    return out


def fold_values(source: str, values: dict[str, str]) -> str:
    """``source`` (a parameters cell) with the value of each top-level ``name = value`` whose name
    is in ``values`` replaced by ``values[name]`` (source text), comments kept and aligned where
    they were; names the cell does not assign are appended, one line each.

    >>> print(fold_values('profile = "smoke"   # which profile\\nseed = 0', {"profile": '"cpu"', "new": "1"}))
    profile = "cpu"     # which profile
    seed = 0
    new = 1
    """
    import ast

    lines = source.split("\n")
    spans = []
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in values):
            spans.append((node.targets[0].id, node.value))
    for name, value in sorted(spans, key=lambda s: s[1].lineno, reverse=True):
        # ast's columns count UTF-8 bytes
        first = lines[value.lineno - 1].encode()
        last = lines[value.end_lineno - 1].encode()
        head, rest = first[:value.col_offset].decode(), last[value.end_col_offset:].decode()
        line = head + values[name]
        comment = rest.lstrip()
        if comment.startswith("#"):
            column = len(last[:value.end_col_offset].decode()) + len(rest) - len(comment)
            line += " " * max(2 if len(rest) - len(comment) >= 2 else 1, column - len(line)) + comment
        else:
            line += rest
        lines[value.lineno - 1:value.end_lineno] = [line]
    assigned = {name for name, _ in spans}
    extra = [f"{k} = {v}" for k, v in values.items() if k not in assigned and k not in _assignments(source)]
    return "\n".join(lines + extra)


def fold_parameter_cells(nb) -> bool:
    """Show the template's documented ``parameters`` cell with the values this copy ran with.

    papermill adds an ``injected-parameters`` cell after the template's ``parameters`` cell; its
    values are folded into the ``parameters`` cell (:func:`fold_values`: comments kept), with a
    first comment line naming them, and the injected cell is dropped.  The ``parameters`` cell is
    shown (the ``remove-cell`` tag of earlier copies goes; a template may still fold it with
    ``hide-input``).  Running the cells again (nbval) assigns the same values.  Idempotent;
    returns whether ``nb`` changed."""
    params = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in _tags(c)), None)
    injected = next((i for i, c in enumerate(nb.cells) if "injected-parameters" in _tags(c)), None)
    changed = False
    if params is not None:
        kept = [t for t in _tags(params) if t != "remove-cell"]   # what earlier copies were given
        changed = kept != _tags(params)
        params.metadata["tags"] = kept
    if params is None or injected is None:
        return changed
    values = _assignments(nb.cells[injected].source)
    body = fold_values(params.source, values)
    import textwrap

    note = textwrap.wrap(", ".join(values), 88, initial_indent="# set for this copy: ", subsequent_indent="#   ")
    params.source = "".join(f"{line}\n" for line in note) + body
    del nb.cells[injected]
    return True


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def drop_widgets(nb) -> bool:
    """Remove widget state and widget views (a progress bar) from ``nb``: the book would load a
    widget manager from a CDN to draw them.  An output that is only a widget (its text form is the
    widget's first state, "0%| | 0/8") goes; other data of an output stays.  Idempotent; returns
    whether ``nb`` changed."""
    changed = nb.metadata.pop("widgets", None) is not None
    for cell in nb.cells:
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if _WIDGET_VIEW in data:
                changed = True
                data.pop(_WIDGET_VIEW)
                if not any(k != "text/plain" for k in data):
                    continue   # only "HBox(children=...)": nothing to show
            outputs.append(out)
        if cell.cell_type == "code":
            cell.outputs = outputs
    return changed


def _relative(path, root: Path) -> str | None:
    p = Path(path)
    return str(p.relative_to(root)) if p.is_absolute() and p.is_relative_to(root) else None


def relative_paths(nb, output: Path) -> bool:
    """papermill's record of where it ran (``input_path``, ``output_path``, ``cwd``) as paths
    relative to the project: the template (from ``metadata.aafcore.template``), the copy
    (``output``) and ``.``; absolute paths of the machine that ran it go.  Idempotent; returns
    whether ``nb`` changed."""
    pm = nb.metadata.get("papermill")
    if not isinstance(pm, dict):
        return False
    before = dict(pm)
    template = nb.metadata.get("aafcore", {}).get("template")
    if pm.get("input_path"):
        pm["input_path"] = template or _relative(pm["input_path"], ROOT) or Path(pm["input_path"]).name
    if pm.get("output_path"):
        pm["output_path"] = _shown(Path(output).resolve())
    if pm.get("cwd"):
        pm["cwd"] = _relative(pm["cwd"], ROOT) or "."
    return pm != before


def clean_executed_copy(nb, output: Path) -> bool:
    """What an executed copy ``output`` of the book needs (applied by :func:`execute`; for copies
    made before, :func:`clean_copies`): :func:`fold_parameter_cells`, :func:`drop_widgets` and
    :func:`relative_paths`.  Idempotent; returns whether ``nb`` changed."""
    changed = fold_parameter_cells(nb)
    changed = drop_widgets(nb) or changed
    return relative_paths(nb, output) or changed


def clean_copies(paths) -> list[Path]:
    """:func:`clean_executed_copy` on each notebook of ``paths`` that :func:`execute` made (it has
    ``metadata.aafcore``; templates are left alone), rewritten in place when it changed (cell ids
    and everything else kept).  Returns the rewritten ones."""
    import nbformat

    done = []
    for path in map(Path, paths):
        nb = nbformat.read(path, as_version=4)
        if "aafcore" in nb.metadata and clean_executed_copy(nb, path):
            nbformat.write(nb, path)
            done.append(path)
    return done


def execute(job: Job) -> None:
    """Run ``job`` with papermill into a temporary copy, then move it into place (a failed run's
    copy goes to ``<copy>.failed.ipynb``).  The copy is cleaned for the book
    (:func:`clean_executed_copy`: parameters folded, no widgets, relative paths)."""
    import nbformat
    import papermill

    job.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.output.with_name(job.output.stem + ".running.ipynb")
    try:
        papermill.execute_notebook(str(job.template), str(tmp), parameters=job.parameters, cwd=str(ROOT),
                                   progress_bar=False, kernel_name="python3")
    except BaseException:
        if tmp.exists():
            os.replace(tmp, job.output.with_name(job.output.stem + ".failed.ipynb"))
        raise
    nb = nbformat.read(tmp, as_version=4)
    nb.metadata["aafcore"] = {"template": _shown(job.template), "template_sha256": _sha(job.template),
                              "parameters": {k: v for k, v in job.parameters.items() if k != "force"}}
    if job.inputs is not None:
        nb.metadata["aafcore"]["inputs"] = job.inputs
    clean_executed_copy(nb, job.output)
    nbformat.write(nb, tmp)
    os.replace(tmp, job.output)
    job.output.with_name(job.output.stem + ".failed.ipynb").unlink(missing_ok=True)


def describe_failure(job: Job, exc: BaseException) -> str:
    """One line: the job, its notebook, the cell that failed and the error."""
    cell = getattr(exc, "exec_count", None)
    index = getattr(exc, "cell_index", None)
    where = f"cell {index}" if index is not None else "a cell"
    if cell is not None:
        where += f" (execution count {cell})"
    reason = f"{getattr(exc, 'ename', type(exc).__name__)}: {getattr(exc, 'evalue', exc)}"
    reason = " ".join(str(reason).split())[:300]
    return f"{job.name}: notebook {_shown(job.template)} failed in {where}: {reason}"


def execute_or_describe(payload: str) -> str | None:
    """:func:`execute` the job of ``payload`` (:meth:`Job.to_json`); ``None`` when it succeeded, else
    its :func:`describe_failure` line.  What a subprocess or a cluster node runs."""
    job = Job.from_json(payload)
    try:
        execute(job)
    except Exception as exc:  # noqa: BLE001 - reported to the orchestrator, which goes on
        return describe_failure(job, exc)
    return None


@dataclass
class Launcher:
    """How a stage of independent jobs runs (see the module docstring).

    ``jobs``: how many run at once; ``executor``: one of :data:`EXECUTORS`; for Slurm, the
    ``partition``, ``time_min`` (per job), ``gpus_per_job`` and ``cpus_per_job``; ``folder``: where
    submitit keeps its logs and pickles (default ``<results>/.submitit``).
    """

    jobs: int = 1
    executor: str = "local"
    partition: str | None = None
    time_min: int = 60
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    folder: Path | None = None

    def __post_init__(self):
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"--jobs must be an integer >= 1, got {self.jobs!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {self.executor!r}; choose from {', '.join(EXECUTORS)}")


def _slot_env(slot: int, launcher: Launcher) -> dict:
    """The environment of side-by-side job ``slot``: one GPU each, or a share of the CPU cores."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    gpus = _visible_gpus()
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // launcher.jobs))
    return env


def _visible_gpus() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.split() if out.returncode == 0 else []


def _run_side_by_side(jobs: list[Job], launcher: Launcher, report) -> list[str | None]:
    """Each job in a subprocess, ``launcher.jobs`` at a time, each in a slot of its own."""
    free = list(range(launcher.jobs))
    lock = threading.Lock()

    def one(job: Job) -> str | None:
        with lock:
            slot = free.pop()
        started = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "aafcore.launch", job.to_json()], cwd=ROOT,
                                  env=_slot_env(slot, launcher), capture_output=True, text=True)
        finally:
            with lock:
                free.append(slot)
        lines = proc.stdout.strip().splitlines()
        failure = None if proc.returncode == 0 else (lines[-1] if lines else
                                                     f"{job.name}: exit {proc.returncode}: {proc.stderr[-300:]}")
        report(job, failure, time.perf_counter() - started)
        return failure

    with ThreadPoolExecutor(launcher.jobs) as pool:
        return list(pool.map(one, jobs))


def _run_submitit(jobs: list[Job], launcher: Launcher, report) -> list[str | None]:
    """Each job through submitit (Slurm, or its local executor), at most ``launcher.jobs`` at once."""
    try:
        import submitit
    except ImportError:
        raise ImportError("--executor slurm needs the submitit package: pip install submitit") from None
    cluster = "local" if launcher.executor == "submitit-local" else "slurm"
    executor = submitit.AutoExecutor(folder=str(launcher.folder or ROOT / "results" / ".submitit"), cluster=cluster)
    params = {"timeout_min": launcher.time_min, "gpus_per_node": launcher.gpus_per_job, "name": "aaf-reproduce",
              "slurm_array_parallelism": launcher.jobs}
    if launcher.cpus_per_job:
        params["cpus_per_task"] = launcher.cpus_per_job
    if launcher.partition:
        params["slurm_partition"] = launcher.partition
    executor.update_parameters(**params)
    submitted = time.perf_counter()
    with executor.batch():
        handles = [executor.submit(execute_or_describe, job.to_json()) for job in jobs]
    failures = []
    for job, handle in zip(jobs, handles):
        try:
            failure = handle.result()
        except Exception as exc:  # noqa: BLE001 - a job that died (time limit, node failure)
            failure = f"{job.name}: submitit job {handle.job_id} failed: {' '.join(str(exc).split())[-300:]}"
        report(job, failure, time.perf_counter() - submitted)   # queueing included
        failures.append(failure)
    return failures


def run_stage(jobs: list[Job], launcher: Launcher, report) -> list[str | None]:
    """Run independent ``jobs`` as ``launcher`` says; ``report(job, failure_or_None, seconds)`` is
    called as each ends, ``seconds`` its own wall time (through submitit: since the submission).
    Returns the failure lines (None for a success), in job order."""
    if not jobs:
        return []
    if launcher.executor != "local":
        return _run_submitit(jobs, launcher, report)
    if launcher.jobs > 1 and len(jobs) > 1:
        return _run_side_by_side(jobs, launcher, report)
    failures = []
    for job in jobs:
        started = time.perf_counter()
        failures.append(execute_or_describe(job.to_json()))
        report(job, failures[-1], time.perf_counter() - started)
    return failures


if __name__ == "__main__" and sys.argv[1:2] == ["--clean"]:
    # python -m aafcore.launch --clean NOTEBOOK...: clean executed copies made before (idempotent)
    for path in clean_copies(sys.argv[2:]):
        print(f"cleaned {_shown(path.resolve())}")
elif __name__ == "__main__":   # one job in a subprocess: its failure line is the last line of stdout
    failure = execute_or_describe(sys.argv[1])
    if failure is not None:
        print(failure)
    sys.exit(0 if failure is None else 1)
