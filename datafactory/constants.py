"""Defaults and file names, in one place."""

from __future__ import annotations

# ---- run directory layout
RESOLVED_CONFIG = "config.resolved.yaml"
CACHE_DB = "cache.sqlite"
DATA_DIR = "data"
REJECTS_FILE = "rejects.jsonl"
STATS_FILE = "stats.json"
LOCK_FILE = ".lock"
DATASET_INFO = "dataset_info.json"
BATCH_DB = "batches.sqlite"          # batch mode: the requests and batches sent (engine/batch/store.py)
DEFAULT_RUNS_DIR = "runs"

# ---- limits and retry
DEFAULT_CONCURRENCY = 32
# the ceiling of ``concurrency: auto`` (engine/adaptive.py), and the workers the scheduler runs for it
DEFAULT_MAX_CONCURRENCY = 256
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_ATTEMPTS = 6
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 60.0
RETRY_AFTER_CAP_S = 300.0
# a 429 without Retry-After pauses every worker for this long (then exponential backoff per worker)
DEFAULT_RATE_LIMIT_PAUSE_S = 1.0
# spread the restart after a global pause so workers do not all fire in the same millisecond
RESUME_JITTER_S = 0.25

# waiting on rate limits is bounded by time, not by attempts: a request gives up after this long, and the
# run stops (breaker) when it has been rate limited this long without a single success
DEFAULT_RATE_LIMIT_WAIT_S = 900.0
# run-level breaker: stop after this many failed requests in a row when none has succeeded yet ...
BREAKER_FIRST_FAILURES = 10
# ... or after a streak this long (at least 2 × concurrency) once some had succeeded
BREAKER_STREAK = 50

# ---- commit log (engine/commit.py): finished rows are written in one transaction per batch, at this
# many rows or when the oldest has waited this long; a kill -9 loses at most that batch's outcomes,
# which the resume redoes from the cache without a request
COMMIT_MAX_ROWS = 256
COMMIT_MAX_WAIT_S = 0.2

# ---- estimation
CHARS_PER_TOKEN = 4.0
DEFAULT_EXPECTED_OUTPUT_TOKENS = 400

# ---- progress
PLAIN_PROGRESS_INTERVAL_S = 10.0

# ---- replies (engine/process.py)
# a reject keeps at most this much of the model's reply (start and end, with a marker between)
REJECT_RAW_CHARS = 12_000
# a re-ask repeats at most this much of the reply it corrects
REASK_ECHO_CHARS = 8_000
# ... and at most this much of the validation error (a schema message can quote a 10 MB value)
REASK_ERROR_CHARS = 2_000
# replies longer than this are parsed and validated in a worker thread, off the event loop
PARSE_OFF_LOOP_CHARS = 64 * 1024
