"""Run a child process, tee its output to a log file, feed each line to a parser, stop it on Ctrl-C.

Used for ``llamafactory-cli train/export`` and the lm-eval child. The child gets its own process
group (``start_new_session``) so that Ctrl-C reaches only us; we then terminate the whole group
(torchrun workers included): SIGTERM, a grace period, then SIGKILL. A SIGTERM sent to us (``kill``,
``timeout``, a CI runner) is handled the same way, so the child is not left running. Progress bars
written with ``\\r`` (tqdm) are split into separate lines for the parser; the log file keeps the raw
bytes.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import BinaryIO

from datafactory.errors import Interrupted, UserError

TAIL_LINES = 300
GRACE_S = 10.0
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


@dataclass
class ProcResult:
    """Exit status, wall time and the last lines of output of a finished child."""

    returncode: int
    seconds: float
    log_path: Path
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_streaming(cmd: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
                  on_line: Callable[[str], None] | None = None, cwd: Path | None = None,
                  what: str = "the child process") -> ProcResult:
    """Run ``cmd`` (a list, never a shell string) until it exits; see the module docstring."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    start = time.monotonic()
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(  # noqa: S603 - argument list, no shell
                list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
            )
        except FileNotFoundError:
            raise UserError(f"cannot start {what}: {cmd[0]} not found") from None
        received: list[int] = []
        try:
            with _sigterm_as_interrupt(received):
                _pump(proc, log, tail, on_line)
                returncode = proc.wait()
        except KeyboardInterrupt:
            stop(proc)
            signum = received[-1] if received else int(signal.SIGINT)
            how = SIGNAL_NAMES.get(signal.Signals(signum), f"signal {signum}")
            log.write(f"\n==== interrupted ({how})\n".encode())
            # no "interrupted:" prefix here: the CLI adds it, the type says it for library callers
            raise Interrupted(f"{what} was stopped ({how}); its log is {log_path}. Run the same command "
                              "again to continue (finished stages are skipped, training resumes from "
                              "its last checkpoint).", what=what, log_path=log_path, signum=signum) from None
        except BaseException:
            stop(proc)
            raise
    return ProcResult(returncode, time.monotonic() - start, log_path, list(tail))


@contextlib.contextmanager
def _sigterm_as_interrupt(received: list[int]) -> Iterator[None]:
    """While the child runs, SIGTERM to us stops it like Ctrl-C (its own session would not get it).

    The signal numbers that arrived are appended to ``received`` (Ctrl-C shows up as none)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _pump(proc: subprocess.Popen[bytes], log: BinaryIO, tail: collections.deque[str],
          on_line: Callable[[str], None] | None) -> None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        log.write(chunk)
        log.flush()
        pending += decoder.decode(chunk)
        *lines, pending = pending.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for line in lines:
            _emit(line, tail, on_line)
    pending += decoder.decode(b"", final=True)
    if pending:
        _emit(pending, tail, on_line)


def _emit(line: str, tail: collections.deque[str], on_line: Callable[[str], None] | None) -> None:
    if not line.strip():
        return
    tail.append(line)
    if on_line is not None:
        on_line(line)


def stop(proc: subprocess.Popen[bytes], grace_s: float = GRACE_S) -> None:
    """Terminate the child's process group: SIGTERM, wait ``grace_s``, then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # the group we created with start_new_session
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def child_env(*, cuda: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the children: one OpenMP thread on CPU (unless set), unbuffered output."""
    env = dict(os.environ)
    if not cuda:
        # measured: 2 threads on a busy 2-core box made a 20-step tiny-model SFT 14x slower
        env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    env.update(extra or {})
    return env
