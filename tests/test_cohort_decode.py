"""Tests for sliceseg.inference.cohort_decode: how many decoding workers a run starts."""

from __future__ import annotations

import shutil
import warnings

import pytest

from conftest import warning_during
from sliceseg.inference import cohort_decode


@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 0), (3, 2), (8, 7)])
def test_default_workers_leave_small_machines_to_the_main_process(monkeypatch, cpus, workers):
    """On 2 CPUs or fewer the network's threads fill the cores: no worker; above, one CPU is
    kept for the network and the rest decode."""
    monkeypatch.setattr(cohort_decode, "rank_cpus", lambda: cpus)
    assert cohort_decode.default_workers() == workers


@pytest.mark.parametrize(
    ("workers", "cpus", "decoding"),
    [
        (None, 2, "decoding in the main process (--workers 0)"),
        (None, 4, "3 decoding worker processes (--workers)"),
        (1, 8, "1 decoding worker process (--workers)"),
        (0, 8, "decoding in the main process (--workers 0)"),
    ],
)
def test_predict_s_workers_in_words(monkeypatch, workers, cpus, decoding):
    """The default count depends on the machine (none on 2 CPUs): predict did not say it."""
    monkeypatch.setattr(cohort_decode, "rank_cpus", lambda: cpus)
    monkeypatch.setattr(cohort_decode, "rank_threads", lambda device: 3)
    said = cohort_decode.describe_workers(workers, "cpu", writers=2)
    assert said == f"{decoding}; the network on cpu with 3 threads; 2 threads writing"


def test_one_network_thread_is_said_in_the_singular(monkeypatch):
    """A CPU shard given one core said "the network on cpu with 1 threads"."""
    monkeypatch.setattr(cohort_decode, "rank_threads", lambda device: 1)
    said = cohort_decode.describe_workers(0, "cpu", writers=2)
    assert said.endswith("; the network on cpu with 1 thread; 2 threads writing")


def test_predict_s_first_line_names_its_workers_and_threads(
    tiny_model, tiny_phantom, tmp_path, capsys
):
    """``sliceseg predict`` began with the series to do, not who does them: decoding workers
    (a default that depends on the machine), the network's threads, the writing threads."""
    import re

    from sliceseg.cli import main

    out, dicoms = tmp_path / "out", tiny_phantom / "test" / "dicoms"
    argv = ["predict", str(tiny_model), str(dicoms), "--out", str(out), "--workers", "0",
            "--visuals", "none", "--no-report", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(
        r"shard 1/1 \(single\): 1 of 1 series; 0 series already done, skipped; 1 to do; "
        r"decoding in the main process \(--workers 0\); the network on cpu with \d+ threads; "
        r"2 threads writing",
        first,
    ), first


def test_a_series_decoding_notes_are_its_own_while_another_thread_warns(tmp_path, monkeypatch):
    """The notes a decode brings back for its series (said again by the main process) were
    recorded with `catch_warnings`, process-wide: run beside writer threads (``workers`` 0, a
    notebook) they took another thread's warning as this series' note and lost it there."""
    import pydicom
    from pydicom.data import get_testdata_file

    from sliceseg.measure.spacing import SpacingFallback

    path = tmp_path / "padded.dcm"
    shutil.copy(get_testdata_file("MR_small_padded.dcm", download=False), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with warning_during(
            monkeypatch, pydicom.pixels, "pixel_array", "series 7: psoas area varies"
        ):
            slices, _, notes, _ = cohort_decode.decode_and_prepare(
                [path], fallback=SpacingFallback(), preparation=None
            )
    assert len(slices) == 1
    ((note, category),) = notes
    assert note.startswith(f"{path}: The pixel data is 8320 bytes long") and category is UserWarning
    assert [str(w.message) for w in caught] == ["series 7: psoas area varies"]  # not lost


CRASHING_JOB = """
import os
from sliceseg.inference.cohort_decode import decode_and_prepare

def job(files, **options):
    if any("sub02" in str(path) for path in files):
        os._exit(7)  # as a pixel decoder that segfaults on these files
    return decode_and_prepare(files, **options)
"""

CRASHING_RUN = """
import os, sys
sys.path.insert(0, {helpers!r})
import crashing
from sliceseg.inference import cohort, cohort_decode

cohort.decode_and_prepare = crashing.job
in_main = cohort_decode.decode_here

def decode_here(series):  # the same decoder in this process: it would crash here too
    if series.name == "sub02":
        os._exit(7)
    return in_main(series)

cohort_decode.decode_here = decode_here
if __name__ == "__main__":
    from sliceseg.cli import main
    sys.exit(main({argv!r}))
"""


@pytest.mark.slow
def test_a_series_that_kills_its_decoding_worker_fails_alone(tiny_model, tiny_phantom, tmp_path):
    """A worker died on sub02's files (a crash in a pixel decoder, memory): the run decoded the
    rest in the main process, sub02 first, and died there too; sub03, sub04 were never done,
    and every resume died at the same series."""
    import subprocess
    import sys

    import pandas as pd

    from cohort_runs import clean_env, cohort_input

    source = cohort_input(tiny_phantom, tmp_path / "cohort")
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "crashing.py").write_text(CRASHING_JOB)
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(source), "--out", str(out), "--workers", "2"]
    script = helpers / "run.py"
    script.write_text(CRASHING_RUN.format(helpers=str(helpers), argv=[*argv, "--visuals", "none"]))
    done = subprocess.run(
        [sys.executable, str(script)], env=clean_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 3, done.stdout + done.stderr
    finished = sorted(p.parent.name for p in (out / "series").glob("*/record.json"))
    assert finished == ["sub01", "sub03", "sub04"]
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed["series"]) == ["sub02"]
    assert "the process decoding its files died" in failed["reason"][0]
    # the resume has sub02 alone to do: a worker still decodes it, so it fails alone again
    again = subprocess.run(
        [sys.executable, str(script)], env=clean_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 3, again.stdout + again.stderr
    assert list(pd.read_csv(out / "failed.csv")["series"]) == ["sub02"]


def test_the_workers_help_says_that_only_a_worker_contains_a_decoder_crash(capsys):
    """`--workers 0` (the default on 2 CPUs) decodes in the main process, where a crashing
    decoder ends the whole run (a worker keeps it to its series: the test above); the help
    did not say so, nor which setting contains it."""
    from sliceseg.cli import main

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        "0 decodes in the main process, which is faster on small machines but does not contain "
        "a crash of a pixel decoder: it ends the run, where with 1 or more only that series fails"
    ) in shown


@pytest.mark.slow
def test_a_decoding_worker_leaves_ctrl_c_to_the_main_process():
    """Ctrl-C reaches every process of the terminal: each decoding worker printed its own
    KeyboardInterrupt traceback under the run's one line ("interrupted; ..."), exit 130."""
    import signal

    pool = cohort_decode._started_pool()
    assert pool is not None
    try:
        assert pool.submit(signal.getsignal, signal.SIGINT).result() == signal.SIG_IGN
    finally:
        pool.shutdown()


def test_a_died_decoding_names_the_first_file_and_counts_the_rest(tmp_path):
    """It said "(a.dcm, ...)", where every other list says "and 2 more" (`few_of`)."""
    from sliceseg.io.series_plan import PlannedFile, PlannedSeries

    files = tuple(PlannedFile(tmp_path / f"{n}.dcm", "1.2", 1, 0, 0) for n in "abc")
    error = cohort_decode._died(PlannedSeries("1.2", "p01", files))
    assert f"its 3 file(s) ({tmp_path / 'a.dcm'} and 2 more); the other series" in str(error)
