"""Repair the two known traps of the ``[train]`` extra, then check that the stack imports.

PyPI serves CUDA builds of torchvision and torchaudio, while the CPU machines run ``torch+cpu``:

1. a broken ``torchvision`` makes transformers' lazy imports fail (``llamafactory-cli`` then says
   ``Could not import module 'PreTrainedModel'``; the root cause is ``operator torchvision::nms does
   not exist``). Nothing on the text-only path needs torchvision, so a broken one is uninstalled;
2. ``llamafactory/data/mm_plugin.py`` imports ``torchaudio`` unconditionally, so it must import. When
   its compiled extension cannot load, removing ``torchaudio/lib/*.so`` makes ``import torchaudio``
   succeed (it then reports the extension as unavailable, which the text path never uses).

Run ``python -m datafactory.train.install_fix`` after ``pip install -e ".[train]"``. It only changes
what is broken, so running it again is harmless; it exits non-zero when something is still wrong.
Every probe runs in a fresh interpreter so a failed import cannot poison the next check.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROBE_TIMEOUT_S = 300
VERIFY_SNIPPETS: dict[str, str] = {
    "torch": "import torch",
    "llamafactory": "import llamafactory",
    "llamafactory.train.tuner.run_exp": "from llamafactory.train.tuner import run_exp",
    "lm_eval": "import lm_eval",
}
_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")
INSTALL_HINT = 'pip install -e ".[train]" && python -m datafactory.train.install_fix'


@dataclass
class Probe:
    """Outcome of importing something in a fresh interpreter."""

    ok: bool
    error: str = ""


@dataclass
class FixReport:
    """What the fixer changed and what is still broken."""

    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # both, in the order they happened, for printing

    def done(self, message: str) -> None:
        self.actions.append(message)
        self.lines.append(f"  - {message}")

    def problem(self, message: str) -> None:
        self.problems.append(message)
        self.lines.append(f"  ! {message}")

    @property
    def ok(self) -> bool:
        return not self.problems


def probe(code: str, python: str | None = None) -> Probe:
    """Run ``code`` in a fresh interpreter; return whether it worked and the last error line."""
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argument list, no shell
            [python or sys.executable, "-c", code],
            capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        return Probe(False, f"timed out after {PROBE_TIMEOUT_S}s")
    if proc.returncode == 0:
        return Probe(True)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return Probe(False, _root_cause(lines))


def _root_cause(lines: list[str]) -> str:
    # the last line is often a wrapper ("Could not import module ..."); prefer a known root cause
    errors = [ln.strip() for ln in lines if _EXC_LINE.match(ln)]
    for needle in ("torchvision::nms", "Could not load this library", "libc10_cuda"):
        for ln in errors:
            if needle in ln:
                return ln
    if errors:
        return errors[-1]
    return lines[-1].strip() if lines else "failed without a message"


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def fix_torchvision(report: FixReport, *, dry_run: bool = False) -> None:
    """Uninstall torchvision when it is installed but cannot be imported."""
    if not _installed("torchvision"):
        report.done("torchvision: not installed (fine, the text path does not need it)")
        return
    result = probe("import torchvision")
    if result.ok:
        report.done("torchvision: imports, left alone")
        return
    if dry_run:
        report.problem(f"torchvision is broken ({result.error}); would uninstall it")
        return
    proc = subprocess.run(  # noqa: S603 - fixed argument list, no shell
        [sys.executable, "-m", "pip", "uninstall", "-y", "torchvision"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0 or _still_installed("torchvision"):
        report.problem(
            f"torchvision is broken ({result.error}) and `pip uninstall -y torchvision` failed: "
            f"{proc.stderr.strip()[-300:]}"
        )
        return
    report.done(f"torchvision: was broken ({result.error}); uninstalled")


def _still_installed(name: str) -> bool:
    return probe(f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({name!r}) else 1)").ok


def fix_torchaudio(report: FixReport, *, dry_run: bool = False) -> None:
    """Make ``import torchaudio`` work by removing its compiled extension libraries if needed."""
    if not _installed("torchaudio"):
        report.problem(
            "torchaudio is not installed; llamafactory imports it unconditionally: pip install torchaudio, "
            "then run this fixer again"
        )
        return
    result = probe("import torchaudio")
    if result.ok:
        report.done("torchaudio: imports, left alone")
        return
    pkg = _package_dir("torchaudio")
    libs = sorted((pkg / "lib").glob("*.so")) if pkg else []
    if not libs:
        report.problem(f"torchaudio does not import ({result.error}) and has no lib/*.so to remove")
        return
    if dry_run:
        report.problem(
            f"torchaudio does not import ({result.error}); "
            f"would remove {len(libs)} file(s) in {libs[0].parent}"
        )
        return
    for lib in libs:
        lib.unlink()
    after = probe("import torchaudio")
    names = ", ".join(p.name for p in libs)
    if after.ok:
        report.done(f"torchaudio: extension could not load ({result.error}); removed {names}")
    else:
        report.problem(f"torchaudio still does not import after removing {names}: {after.error}")


def verify(report: FixReport) -> None:
    """Import the pieces the train/eval pipeline uses, each in a fresh interpreter."""
    for label, code in VERIFY_SNIPPETS.items():
        result = probe(code)
        if result.ok:
            report.done(f"check {label}: ok")
        else:
            report.problem(f"check {label}: {result.error}")


def run_fix(*, dry_run: bool = False) -> FixReport:
    """Apply both fixes (unless ``dry_run``) and verify the stack; see the module docstring."""
    report = FixReport()
    missing = [m for m in ("torch", "llamafactory", "lm_eval") if not _installed(m)]
    if missing:
        report.problem(f"not installed: {', '.join(missing)}; run: {INSTALL_HINT}")
        return report
    fix_torchvision(report, dry_run=dry_run)
    fix_torchaudio(report, dry_run=dry_run)
    verify(report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print what was done and what is still wrong; 0 when all is well."""
    args = sys.argv[1:] if argv is None else argv
    dry_run = "--check" in args or "--dry-run" in args
    print(f"datafactory train install fix ({sys.executable})")
    report = run_fix(dry_run=dry_run)
    for line in report.lines:
        print(line)
    if report.ok:
        print("train stack OK")
        return 0
    print(f"train stack NOT usable ({len(report.problems)} problem(s))")
    return 1


if __name__ == "__main__":
    sys.exit(main())
