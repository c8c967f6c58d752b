"""The datafactory error tree.

Callers (the retry layer, the CLI) decide by *type*, never by message text:
``RateLimited`` and ``TransientError`` are retried, ``FatalRequestError`` fails one row,
``AuthenticationFailed`` stops the run, everything under ``UserError`` is printed without a
traceback. ``RunStopped`` (→ ``RequestsFailing``: the run-level breaker, ``BudgetExhausted``: the cost
limit) is a ``UserError`` raised by ``augment`` after it saved what finished; it carries the ``stats``.
Every exception class of datafactory is defined here and gets its context through its constructor
(``tests/test_error_tree.py`` fails otherwise)::

    DatafactoryError
    ├── UserError                       printed without a traceback, exit 1
    │   ├── ConfigError(file, key, line, suggestion)
    │   ├── InputError(file, line)
    │   ├── MissingApiKey
    │   ├── RunLocked
    │   ├── UnknownName
    │   ├── DiskWriteError
    │   ├── BatchNotFound(batch_id)     batch mode: the provider does not know a recorded batch
    │   ├── RunStopped(stats)           augment stopped early after saving what finished
    │   │   ├── RequestsFailing(error, failures, hint)   the run-level breaker
    │   │   └── BudgetExhausted(budget_usd, spent_usd)   the cost limit
    │   ├── DatasetInfoClash(names)     a dataset name registered with another meaning
    │   ├── DatasetNotRegistered(dataset, format)   a written dataset that dataset_info.json cannot hold
    │   ├── NotARunDir(path)            ``report`` on a folder that holds no augment or train-eval run
    │   ├── TrainExtraMissing(missing)  torch / LLaMA-Factory / lm-eval not installed
    │   ├── RayExtraMissing             --engine ray without the ray extra installed
    │   ├── RayWorkersNotStarted(workers, waited_s)   the cluster did not start the worker pool
    │   ├── NoCheckpoint(train_dir)     training left no checkpoint to select
    │   ├── Interrupted(what, log_path, signum)   Ctrl-C / SIGTERM stopped a child process
    │   └── ChildProcessFailed(command, returncode, log_path)
    │       ├── TrainFailed             llamafactory-cli train / export
    │       └── EvalFailed              lm-eval (in this process or its child)
    │           └── OfflineTaskError    a task that cannot run from local files
    ├── ProviderError(status)
    │   ├── RateLimited(retry_after)
    │   ├── TransientError
    │   │   ├── ConnectionFailed
    │   │   ├── RequestTimedOut
    │   │   ├── ServerError
    │   │   └── BadResponse(raw)
    │   └── FatalRequestError
    │       └── AuthenticationFailed    (also a UserError)
    ├── RequestFailed(error, attempts)  a request that ended in a ProviderError, after retries
    ├── RequestDeferred(key)            batch mode: a cache miss queued for a batch; the row waits
    ├── ValidationFailed(reason)
    └── Unfit                           a data file LLaMA-Factory could not load as it is
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class DatafactoryError(Exception):
    """Base class of every error datafactory raises on purpose."""


class UserError(DatafactoryError):
    """A mistake the user can fix (config, input, environment); the CLI prints it, exit 1."""


class ConfigError(UserError):
    """An invalid pipeline or recipe: names the file, the key path and, for typos, a suggestion."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None, suggestion: str | None = None) -> None:
        self.file, self.key, self.line, self.suggestion = file, key, line, suggestion
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        if key:
            where += f"{key}: "
        text = where + message
        if suggestion:
            text += f" (did you mean '{suggestion}'?)"
        super().__init__(text)


class InputError(UserError):
    """Unreadable input data; names the file and, where known, the line."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file, self.line = file, line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message)


class MissingApiKey(UserError):
    """No API key in the environment variable the provider block names."""


class RunLocked(UserError):
    """Another datafactory process holds the run directory."""


class UnknownName(UserError):
    """A registry lookup failed (provider, format...); lists the choices."""


class DiskWriteError(UserError):
    """Writing the run directory failed (disk full, permissions)."""


class BatchNotFound(UserError):
    """Batch mode: the provider answers 404 for a batch this run dir submitted (another API key or
    project than the one that created it); ``batch_id`` names it."""

    def __init__(self, message: str, *, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__(message)


# ---------------------------------------------------------------- provider errors
class ProviderError(DatafactoryError):
    """A request to the model API failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RateLimited(ProviderError):
    """HTTP 429 (or the provider's equivalent); ``retry_after`` seconds when the server said."""

    def __init__(self, message: str, *, status: int | None = 429, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class TransientError(ProviderError):
    """5xx, timeouts, dropped connections, refused connections: worth retrying."""


class ConnectionFailed(TransientError):
    """No HTTP answer at all: refused, DNS failure, reset, disconnected (``status`` is None)."""


class RequestTimedOut(TransientError):
    """The request did not complete within ``timeout_s`` (a total deadline)."""


class ServerError(TransientError):
    """A retryable HTTP status (5xx, 408, 409...); ``status`` says which."""


class FatalRequestError(ProviderError):
    """400/403/404/422...: retrying the same request cannot help; the row is rejected."""


class AuthenticationFailed(FatalRequestError, UserError):
    """401: the key is wrong; the whole run stops at once."""


class BadResponse(TransientError):
    """Status 200 but the body is not a chat completion (HTML, empty, truncated JSON, wrong shape).

    ``raw`` keeps the start of the body so the reject record can show what came back."""

    def __init__(self, message: str, *, status: int | None = 200, raw: str = "") -> None:
        super().__init__(message, status=status)
        self.raw = raw


# ---------------------------------------------------------------- quality errors
class ValidationFailed(DatafactoryError):
    """Model output could not be parsed or does not match the schema; ``reason`` is the reject code."""

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


class RequestFailed(DatafactoryError):
    """A request that ended in an error; carries the provider error and how many attempts it took."""

    def __init__(self, error: ProviderError, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


class RequestDeferred(DatafactoryError):
    """Batch mode: the response for cache key ``key`` is not stored yet; the request was queued for
    (or already sits in) a provider batch. The row gets no outcome in this pass; a later pass, after the
    batch is collected into the cache, finishes it from the cache."""

    def __init__(self, key: str) -> None:
        super().__init__(f"request {key} waits for a batch")
        self.key = key


# ---------------------------------------------------------------- dataset files
class Unfit(DatafactoryError):
    """The file cannot be registered as it is; ``str(exc)`` is the reason, naming file[:line]."""


class DatasetInfoClash(UserError):
    """A dataset name is already registered with an entry that means something else."""

    def __init__(self, message: str, names: list[str]) -> None:
        self.names = names
        super().__init__(message)


class DatasetNotRegistered(UserError):
    """A dataset the run wrote that cannot get a dataset_info.json entry (its format has none, or
    its name is not one LLaMA-Factory can look up); ``dataset`` and ``format`` say which."""

    def __init__(self, message: str, *, dataset: str | None = None, format: str | None = None) -> None:
        self.dataset, self.format = dataset, format
        super().__init__(message)


class NotARunDir(UserError):
    """``datafactory report`` was given a folder with no augment run (stats.json) or train-eval run
    (recipe.resolved.yaml, .stages/) in it; ``path`` is that folder."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(message)


class RayExtraMissing(UserError):
    """``--engine ray`` in an environment without Ray Data (``pip install -e ".[ray]"``)."""


class RayWorkersNotStarted(UserError):
    """The cluster did not start the ``workers`` actors of a Ray run within ``waited_s`` seconds (too few
    free CPUs, nodes that never joined); no row was sent."""

    def __init__(self, message: str, *, workers: int, waited_s: float) -> None:
        self.workers, self.waited_s = workers, waited_s
        super().__init__(message)


# ---------------------------------------------------------------- train / evaluate
class TrainExtraMissing(UserError):
    """torch / LLaMA-Factory / lm-eval are not installed in this environment; ``missing`` names them."""

    def __init__(self, message: str, *, missing: list[str] | None = None) -> None:
        self.missing = list(missing or [])
        super().__init__(message)


class NoCheckpoint(UserError):
    """Training left no checkpoint that can be selected (no trainer_state.json, no eval_loss...)."""

    def __init__(self, message: str, *, train_dir: str | os.PathLike[str] | None = None) -> None:
        self.train_dir = Path(train_dir) if train_dir is not None else None
        super().__init__(message)


class Interrupted(UserError):
    """Ctrl-C (``signum`` 2) or SIGTERM (15) stopped a child process; ``what`` it was, ``log_path`` its log."""

    def __init__(self, message: str, *, what: str = "", log_path: str | os.PathLike[str] | None = None,
                 signum: int = 2) -> None:
        self.what, self.signum = what, signum
        self.log_path = Path(log_path) if log_path is not None else None
        super().__init__(message)


class ChildProcessFailed(UserError):
    """A child process (LLaMA-Factory, lm-eval) failed; the message holds the hint and the error line."""

    def __init__(self, message: str, *, command: str | None = None, returncode: int | None = None,
                 log_path: str | os.PathLike[str] | None = None) -> None:
        self.command, self.returncode = command, returncode
        self.log_path = Path(log_path) if log_path is not None else None
        super().__init__(message)


class TrainFailed(ChildProcessFailed):
    """``llamafactory-cli train`` or ``export`` exited with an error."""


class EvalFailed(ChildProcessFailed):
    """lm-eval could not evaluate a model (in this process, or its child exited with an error)."""


class OfflineTaskError(EvalFailed):
    """The requested task cannot be run from local files."""


# ---------------------------------------------------------------- the run stopped itself
class RunStopped(UserError):
    """The run stopped itself before its end; everything finished so far is saved and the same command
    continues once the cause is fixed. ``augment`` sets ``stats`` (the run's ``Stats``) before raising."""

    stats: Any = None


class RequestsFailing(RunStopped):
    """The run-level breaker tripped: requests fail systematically (the same failure and no success
    yet, or a long streak after successes). ``error`` is the last provider error (the server's own
    message), ``failures`` how many failed in a row, ``hint`` what to check."""

    def __init__(self, message: str, *, error: ProviderError | None, failures: int, hint: str) -> None:
        self.error, self.failures, self.hint = error, failures, hint
        super().__init__(message)


class BudgetExhausted(RunStopped):
    """The next request could push the spend past ``limits.max_cost_usd`` / ``--max-cost``: the run
    stops before sending it. ``spent_usd`` is what the run dir has cost so far (from reported usage)."""

    def __init__(self, message: str, *, budget_usd: float, spent_usd: float) -> None:
        self.budget_usd, self.spent_usd = budget_usd, spent_usd
        super().__init__(message)
