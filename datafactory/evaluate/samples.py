"""A few of lm-eval's logged samples, trimmed for ``eval/<model>.json`` (the HTML report shows them).

lm-eval (``log_samples=True``) logs one entry per document *and filter*: the document, the target, the
raw replies (``resps``), the filtered answer (``filtered_resps``) and the metrics. Here they become one
entry per document — question, target, the model's reply, and per filter the extracted answer and its
``exact_match`` — for the first ``limit`` documents of each task, every text capped.
"""

from __future__ import annotations

from typing import Any

EXAMPLES_KEPT = 40
TEXT_CHARS = 4000


def _first(value: Any) -> Any:
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    return None if isinstance(value, (list, tuple)) else value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value)
    return s if len(s) <= TEXT_CHARS else s[:TEXT_CHARS] + f" … [{len(s) - TEXT_CHARS} characters cut]"


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def examples_from_samples(samples: dict[str, Any], limit: int = EXAMPLES_KEPT) -> dict[str, list[dict[str, Any]]]:
    """``{task: [{doc_id, question, target, response, filters: {filter: {answer, exact_match}}}]}``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for task, items in (samples or {}).items():
        docs: dict[Any, dict[str, Any]] = {}
        for s in items or []:
            if not isinstance(s, dict):
                continue
            key = s.get("doc_id")
            entry = docs.get(key)
            if entry is None:
                if len(docs) >= limit:
                    continue
                doc: dict[str, Any] = s["doc"] if isinstance(s.get("doc"), dict) else {}
                question = doc.get("question") or doc.get("problem") or _first(s.get("arguments"))
                entry = {"doc_id": key, "question": _text(question), "target": _text(s.get("target")),
                         "response": _text(_first(s.get("resps"))), "filters": {}}
                docs[key] = entry
            entry["filters"][str(s.get("filter") or "none")] = {
                "answer": _text(_first(s.get("filtered_resps"))), "exact_match": _score(s.get("exact_match"))}
        out[str(task)] = list(docs.values())
    return out
