"""Run lm-eval (GSM8K by default) on one model and read the strict-match / flexible-extract scores.

:func:`evaluate` calls ``lm_eval.simple_evaluate`` in this process (it also accepts an ``LM``
instance, which is how the scoring path is tested with a stub model). :func:`run_eval` runs the
same code in a child process (``python -m datafactory.evaluate.lm_eval_runner job.json``) so that
the offline environment variables are set before the Hugging Face libraries are imported, the
memory of the model is returned when it exits, and the output can be logged and interrupted.

Backends: ``hf`` (transformers) and ``vllm`` (when installed). With offline data, the task YAMLs are
written by :mod:`datafactory.evaluate.gsm8k_offline` and lm-eval is told not to index its own
built-in tasks (saves ~14 s per call).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datafactory.errors import EvalFailed, UserError
from datafactory.evaluate.gsm8k_offline import OFFLINE_ENV, write_offline_tasks
from datafactory.evaluate.job import BACKENDS, EvalJob
from datafactory.evaluate.samples import examples_from_samples
from datafactory.io.atomic import atomic_write_text
from datafactory.proc.progress import LineProgress

__all__ = ["EvalJob", "evaluate", "run_eval", "scores_from_results", "RequestProgress"]

FILTERS = ("strict-match", "flexible-extract")
METRIC = "exact_match"
_REQUESTS = re.compile(r"Running (\w+) requests?:?\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)")


class RequestProgress(LineProgress):
    """lm-eval's ``Running generate_until requests: 40%|...| 2/5`` bars."""

    def feed(self, line: str) -> bool:
        m = _REQUESTS.search(line)
        if m is None:
            return False
        self.total, self.completed, self.status = int(m.group(3)), int(m.group(2)), m.group(1)
        return True


def model_spec(job: EvalJob) -> tuple[str, dict[str, Any]]:
    """lm-eval model name and model_args for the job's backend."""
    if job.backend not in BACKENDS:
        raise EvalFailed(f"unknown eval backend '{job.backend}' ({' or '.join(BACKENDS)})")
    args: dict[str, Any] = {"pretrained": job.model_path}
    if job.trust_remote_code:
        args["trust_remote_code"] = True
    args.update(job.model_args)
    return BACKENDS[job.backend], args


def task_manager(job: EvalJob) -> Any:
    """An lm-eval TaskManager: only the offline task dir when offline, else the built-in tasks."""
    from lm_eval.tasks import TaskManager

    if job.offline_data:
        if not job.task_dir:
            raise EvalFailed("offline evaluation needs a task_dir to write its task YAMLs into")
        files = {k: Path(v) for k, v in job.offline_data.items()}
        include = write_offline_tasks(job.tasks, files, Path(job.task_dir))
        return TaskManager(include_path=str(include), include_defaults=False)
    return TaskManager()


def evaluate(job: EvalJob, lm: Any = None) -> dict[str, Any]:
    """Run lm-eval in this process; returns :func:`scores_from_results` plus run metadata.

    ``lm`` may be an ``lm_eval.api.model.LM`` instance that replaces the backend (tests use a stub).
    """
    from lm_eval import simple_evaluate

    name, args = model_spec(job)
    device = job.device
    if device is None and lm is None:
        device = "cuda" if _cuda() else "cpu"
    results = simple_evaluate(
        model=lm if lm is not None else name,
        model_args=None if lm is not None else args,
        tasks=list(job.tasks),
        num_fewshot=job.num_fewshot,
        batch_size=job.batch_size,
        device=device,
        limit=job.limit,
        apply_chat_template=job.apply_chat_template,
        fewshot_as_multiturn=job.apply_chat_template and bool(job.num_fewshot),
        gen_kwargs=job.gen_kwargs,
        task_manager=task_manager(job),
        log_samples=True,  # a few of them go into the result for the HTML report (evaluate/samples.py)
        random_seed=job.seed, numpy_random_seed=job.seed, torch_random_seed=job.seed,
        fewshot_random_seed=job.seed,
    )
    if results is None:  # not the main process of a distributed run
        raise EvalFailed("lm-eval returned no results")
    out = scores_from_results(dict(results), job.tasks)
    out["examples"] = examples_from_samples(results.get("samples") or {})
    out["model"] = job.model_path
    out["settings"] = {k: v for k, v in job.to_dict().items() if k not in ("model_path", "task_dir")}
    return out


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def scores_from_results(results: dict[str, Any], tasks: list[str]) -> dict[str, Any]:
    """``{"scores": {task: {filter: {"value", "stderr"}}}, "samples": {task: n}}`` from lm-eval results.

    lm-eval keys its metrics ``"<metric>,<filter>"`` (e.g. ``exact_match,strict-match``) and the
    standard errors ``"<metric>_stderr,<filter>"``; both GSM8K filters must be present.
    """
    table = results.get("results") or {}
    scores: dict[str, dict[str, dict[str, float | None]]] = {}
    samples: dict[str, int | None] = {}
    for task in tasks:
        row = table.get(task)
        if not isinstance(row, dict):
            got = ", ".join(table) or "none"
            raise EvalFailed(f"lm-eval returned no results for task '{task}' (got: {got})")
        per_filter: dict[str, dict[str, float | None]] = {}
        for key, value in row.items():
            metric, _, flt = str(key).partition(",")
            if metric != METRIC or not flt or not isinstance(value, (int, float)):
                continue
            stderr = row.get(f"{METRIC}_stderr,{flt}")
            per_filter[flt] = {"value": float(value),
                               "stderr": float(stderr) if isinstance(stderr, (int, float))
                               and math.isfinite(stderr) else None}
        missing = [f for f in FILTERS if f not in per_filter] if task.startswith("gsm8k") else []
        if missing or not per_filter:
            lacking = ", ".join(missing) or "any filter"
            raise EvalFailed(f"lm-eval results for '{task}' lack {METRIC} for {lacking} "
                             f"(keys: {', '.join(map(str, row))})")
        scores[task] = per_filter
        n = (results.get("n-samples") or {}).get(task) or {}
        samples[task] = n.get("effective") if isinstance(n, dict) else None
    return {"scores": scores, "samples": samples}


# ------------------------------------------------------------------------------ child process
def run_eval(job: EvalJob, *, out_path: Path, log_path: Path, cuda: bool, show_progress: bool = True,
             label: str = "eval", env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run :func:`evaluate` in a child process; the scores are written to ``out_path`` and returned.

    ``env`` is added to the child's environment (e.g. ``HF_HUB_OFFLINE=1``); a failure raises
    :class:`~datafactory.errors.EvalFailed`."""
    from datafactory.proc.child import child_env, run_streaming
    from datafactory.proc.extras import require_train_extra
    from datafactory.proc.failure import explain_failure
    from datafactory.proc.progress import progress_display

    require_train_extra(("torch", "lm_eval"), purpose="lm-eval evaluation")
    if job.backend == "vllm":
        require_train_extra(("vllm",), purpose="eval backend vllm")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    job_path = out_path.with_suffix(".job.json")
    atomic_write_text(job_path, json.dumps({"job": job.to_dict(), "out": str(out_path)}, indent=2))
    out_path.unlink(missing_ok=True)
    extra = {**(OFFLINE_ENV if job.offline_data else {}), **(env or {})}
    cmd = [sys.executable, "-m", "datafactory.evaluate.lm_eval_runner", str(job_path)]
    what = f"lm-eval ({label})"
    with progress_display(label, RequestProgress(), enabled=show_progress) as on_line:
        result = run_streaming(cmd, log_path=log_path, env=child_env(cuda=cuda, extra=extra), on_line=on_line,
                               what=what)
    if not result.ok or not out_path.is_file():
        raise EvalFailed(explain_failure(result, f"lm-eval on {job.model_path}"), command=what,
                         returncode=result.returncode, log_path=result.log_path)
    data: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    return data


def main(argv: list[str] | None = None) -> int:
    """Child entry point: ``python -m datafactory.evaluate.lm_eval_runner JOB.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m datafactory.evaluate.lm_eval_runner JOB.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    try:
        scores = evaluate(EvalJob.from_dict(spec["job"]))
    except UserError as exc:
        print(f"EvalFailed: {exc}", file=sys.stderr)
        return 1
    atomic_write_text(spec["out"], json.dumps(scores, indent=2))
    print(json.dumps(scores["scores"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
