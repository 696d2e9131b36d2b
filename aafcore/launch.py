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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Job", "Launcher", "EXECUTORS", "execute", "execute_or_describe", "describe_failure",
           "tag_parameter_cells", "run_stage"]

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

    def finished(self) -> bool:
        """The executed copy is from the current template and the result matches its settings."""
        if not self.output.is_file():
            return False
        try:
            meta = json.loads(self.output.read_text()).get("metadata", {}).get("aafcore", {})
        except ValueError:
            return False
        if meta.get("template_sha256") != _sha(self.template) or meta.get("parameters") != self.parameters:
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


def tag_parameter_cells(nb) -> None:
    """Jupyter Book tags for the parameter cells of an executed notebook: the template's defaults
    (``parameters``) are removed from the page, papermill's ``injected-parameters`` (the values
    this copy ran with) are folded behind a "show" button."""
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        for trigger, tag in (("parameters", "remove-cell"), ("injected-parameters", "hide-input")):
            if trigger in tags and tag not in tags:
                tags.append(tag)


def execute(job: Job) -> None:
    """Run ``job`` with papermill into a temporary copy, then move it into place (a failed run's
    copy goes to ``<copy>.failed.ipynb``)."""
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
    tag_parameter_cells(nb)
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
        try:
            proc = subprocess.run([sys.executable, "-m", "aafcore.launch", job.to_json()], cwd=ROOT,
                                  env=_slot_env(slot, launcher), capture_output=True, text=True)
        finally:
            with lock:
                free.append(slot)
        lines = proc.stdout.strip().splitlines()
        failure = None if proc.returncode == 0 else (lines[-1] if lines else
                                                     f"{job.name}: exit {proc.returncode}: {proc.stderr[-300:]}")
        report(job, failure)
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
    with executor.batch():
        handles = [executor.submit(execute_or_describe, job.to_json()) for job in jobs]
    failures = []
    for job, handle in zip(jobs, handles):
        try:
            failure = handle.result()
        except Exception as exc:  # noqa: BLE001 - a job that died (time limit, node failure)
            failure = f"{job.name}: submitit job {handle.job_id} failed: {' '.join(str(exc).split())[-300:]}"
        report(job, failure)
        failures.append(failure)
    return failures


def run_stage(jobs: list[Job], launcher: Launcher, report) -> list[str | None]:
    """Run independent ``jobs`` as ``launcher`` says; ``report(job, failure_or_None)`` is called as
    each ends.  Returns the failure lines (None for a success), in job order."""
    if not jobs:
        return []
    if launcher.executor != "local":
        return _run_submitit(jobs, launcher, report)
    if launcher.jobs > 1 and len(jobs) > 1:
        return _run_side_by_side(jobs, launcher, report)
    failures = []
    for job in jobs:
        failures.append(execute_or_describe(job.to_json()))
        report(job, failures[-1])
    return failures


if __name__ == "__main__":   # one job in a subprocess: its failure line is the last line of stdout
    failure = execute_or_describe(sys.argv[1])
    if failure is not None:
        print(failure)
    sys.exit(0 if failure is None else 1)
