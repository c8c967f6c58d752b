"""What the run needs from its input before the first request (row count, exact dedup's against_input
seeding) comes from as few passes as possible: a format without a cheap count gets it from the seeding pass."""

from __future__ import annotations

import csv

from datafactory import augment


def test_a_csv_input_seeded_for_against_input_gets_its_row_count_from_that_pass(make_project):
    proj = make_project(rows=12, quality={"reask": 1, "exact_dedup": {"fields": ["question"],
                                                                     "against_input": ["question"]}})
    path = proj.root / "input.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["qid", "question", "answer"])
        writer.writeheader()
        writer.writerows(proj.rows)
    stats = augment(proj.pipeline, input=str(path))
    assert stats.rows_total == 12 and stats.rows_done == 12  # before: None (a CSV has no cheap count)
    limited = augment(proj.pipeline, input=str(path), limit=5, output=str(proj.root / "run5"))
    assert limited.rows_total == 5


def test_a_hub_dataset_is_streamed_once_for_the_checks_the_seeding_and_the_run(make_project, tmp_path):
    from conftest import cli_env, run_cli

    from datafactory.testing.hub import HubServer

    proj = make_project(rows=12, quality={"reask": 1, "exact_dedup": {"fields": ["question"],
                                                                     "against_input": ["question"]}})
    with HubServer({"org/apples": proj.rows}) as hub:
        # a subprocess: huggingface_hub reads HF_ENDPOINT once, when it is first imported
        # online against the stand-in, whatever the calling shell has set
        env = cli_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
                      HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0")
        done = run_cli("augment", str(proj.pipeline), "--input", "org/apples", "--quiet", env=env)
        assert done.returncode == 0, done.stderr
        assert hub.data_reads["org/apples"] == 1  # before: 4 (preflight, column check, seeding, run)
    assert proj.stats()["rows_total"] == 12 and proj.stats()["written"] == 12
    proj.assert_accounted()
