"""Cohort scale: memory, speed, kill -9 and resume, and shards of ``sliceseg predict``.

On a synthetic cohort (``bench/cohort_data.py``: one rendered phantom series copied into
thousands, in two shapes, ``l3`` = one slice per series and ``long`` = 50-slice series) and a
model trained for a few epochs (speed only), each ``sliceseg predict`` runs as a child process:

- Memory: the child's ``ru_maxrss`` (``os.wait4``, what ``getrusage(RUSAGE_CHILDREN)`` reports
  for it alone: the largest single process of its tree, the main process or a worker) and the
  sampled peak of the tree's summed PSS (shared pages counted once), at 1,000 and 10,000 slices.
  Goal: the larger cohort ≤ 1.1× the smaller's.
- Speed: whole-pipeline slices/s, default outputs and lean (``--visuals none``), against the
  network alone (windows in, probabilities out, on the same slices and torch threads) measured
  in the same run. Goal: lean ≥ 0.5× the network alone.
- Resume: ``kill -9`` of the process group once half the series are finished, then the same
  command: no series predicted twice (the finished series' records keep their mtime, the rerun
  skips exactly them) and the tables equal an uninterrupted run's.
- Shards: ``--shard 1/2`` and ``--shard 2/2`` then ``sliceseg merge`` equal one run.

Usage::

    python bench/cohort.py                       # everything, 1,000 and 10,000 slices
    python bench/cohort.py --sizes 200,1000 --quick   # a smoke run
    python bench/cohort.py --work /tmp/cohort    # reuse cohorts and the model between runs

At the shapes users have (``--spacing-mm`` restamps both phantoms, so the model's target spacing
is the cohort's and the network works on a grid of about the slices' own size):

    python bench/cohort.py --matrix 512 --spacing-mm 0.78 --shapes l3 --sizes 300 --only speed
    python bench/cohort.py --matrix 256 --spacing-mm 1.2 --shapes long --sizes 500 --only speed
    python bench/cohort.py --matrix 512 --spacing-mm 0.78 --sizes 300 --only stages --outputs lean
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cohort_data import SHAPES, cohort_folder, template_series, train_quick_model
from isolated import run_isolated
from train_speed import machine_line

SLICESEG = [sys.executable, "-m", "sliceseg"]
MiB = 2**20
KillWhen = Callable[[], bool]  # polled while a child runs: True kills its process group


@dataclass(frozen=True)
class Run:
    """One ``sliceseg predict`` child: what it cost and how it ended."""

    seconds: float
    maxrss_mib: float
    tree_pss_mib: float
    returncode: int
    output: str
    cpu_seconds: float = 0.0  # user + system of the process and the children it reaped


def _tree_pss(process: psutil.Process) -> int:
    """PSS of a process and its descendants, in bytes (0 for those gone meanwhile)."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        with suppress(psutil.Error):
            total += member.memory_full_info().pss
    return total


def run_child(
    command: list[str], *, kill_when: KillWhen | None = None, env: dict[str, str] | None = None
) -> Run:
    """Run ``command`` in its own process group, sampling the tree's PSS every 0.5 s.

    Args:
        command: the argv.
        kill_when: a callable polled every 0.5 s; when it returns True the whole group gets
            SIGKILL (``kill -9``).
        env: the environment (default: this one, one torch thread per process unless set).
    """
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"cohort-bench-{os.getpid()}.log"
    start = time.perf_counter()
    with log.open("w") as sink:
        child = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        peak = [0]
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(child, peak, stop, kill_when))
        watcher.start()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        watcher.join()
    seconds = time.perf_counter() - start
    output = log.read_text(errors="replace")
    log.unlink()
    maxrss = usage.ru_maxrss * 1024 / MiB  # kilobytes on Linux
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, maxrss, peak[0] / MiB, child.returncode, output, cpu)


def _watch(
    child: subprocess.Popen, peak: list[int], stop: threading.Event, kill_when: KillWhen | None
) -> None:
    process = psutil.Process(child.pid)
    while not stop.wait(0.5):
        peak[0] = max(peak[0], _tree_pss(process))
        if kill_when is not None and kill_when():
            with suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            return


def network_rate(
    model: Path, template_dir: Path, *, batch_size: int, repeats: int = 2
) -> tuple[float, float]:
    """Slices/s of the network alone on the template's slices, and its CPU seconds per slice.

    Windows in, probabilities out: the slices are read, oriented and resampled to the target
    spacing beforehand; only `spaced_window_probabilities` (the forward passes, softmax
    included) is timed, best of ``repeats`` after a warm-up, with torch's default threads (all
    cores: the network's best). CPU time is this process's (every thread), which a loaded
    machine does not inflate as it does wall time.
    """
    import torch

    from sliceseg.engine.predictor import Engine
    from sliceseg.engine.probabilities import spaced_window_probabilities
    from sliceseg.io.dicom_folder import read_series
    from sliceseg.model_space.batches import slices_to_spacing
    from sliceseg.models.bundle import load_bundle

    engine = Engine(load_bundle(model), torch.device("cpu"))
    slices = read_series(template_dir)
    meta = engine.bundle.metadata
    target = meta.target_spacing_mm
    if target is None:  # a model file older than the physical scale: not what this times
        raise SystemExit(f"{model}: no target spacing; train the model with this version.")
    changes = engine.reorientations(slices)
    spaced = slices_to_spacing(slices, target, reorientations=changes)

    def once() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        spaced_window_probabilities(
            engine.network,
            spaced.images,
            input_size=meta.input_size,
            divisor=engine.divisor,
            device=engine.device,
            batch_size=batch_size,
        )
        return time.perf_counter() - start, time.process_time() - cpu

    once()
    wall, cpu = min(once() for _ in range(repeats))
    return len(slices) / wall, cpu / len(slices)


def _network_child(config: dict[str, Any]) -> dict[str, Any]:
    rate, cpu = network_rate(Path(config["model"]), Path(config["template"]), batch_size=8)
    return {"slices_per_s": rate, "cpu_s_per_slice": cpu}


def finished_records(out: Path) -> dict[str, int]:
    """Each finished series (``OUT/series/<name>/record.json``): its record's mtime in ns."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "series").glob("*/record.json")}


@dataclass
class Bench:
    """Where the bench works and what it runs with."""

    work: Path
    model: Path
    template: Path
    workers: int | None
    load: list[float]
    runs: dict[tuple[str, int, str], Run] = field(default_factory=dict)
    matrix: int = 128  # of the phantom (speed table rows name it)

    def predict(
        self, cohort: Path, out: Path, *flags: str, kill_when: KillWhen | None = None
    ) -> Run:
        """``sliceseg predict`` of ``cohort`` into ``out`` (a child; see `run_child`)."""
        workers = () if self.workers is None else ("--workers", str(self.workers))
        command = [*SLICESEG, "predict", str(self.model), str(cohort), "--out", str(out)]
        self.load.append(os.getloadavg()[0])
        run = run_child([*command, *workers, *flags], kill_when=kill_when)
        if run.returncode not in (0, -signal.SIGKILL) and kill_when is None:
            raise RuntimeError(f"predict {cohort} exited {run.returncode}:\n{run.output[-3000:]}")
        return run

    def network(self) -> tuple[float, float]:
        """Slices/s of the network alone and its CPU s/slice, measured now in a fresh process."""
        config = {"model": str(self.model), "template": str(self.template)}
        found = run_isolated(__file__, "--network", config, "the network")
        return float(found["slices_per_s"]), float(found["cpu_s_per_slice"])


LEAN = ("--visuals", "none", "--export", "none")
_ENGINE = "engine: network, native grid, argmax, confidence"
STAGES = {  # (module, attribute) → stage name; summed over every call in any thread
    ("sliceseg.inference.cohort", "plan_cohort"): "plan from headers",
    ("sliceseg.inference.cohort", "decode_series"): "decode (read pixels, order)",
    ("sliceseg.inference.cohort_decode", "decode_series"): "decode (read pixels, order)",
    ("sliceseg.engine.predictor", "slices_to_spacing"): "network input (resample, normalise)",
    ("sliceseg.inference.cohort", "_label"): _ENGINE,  # before cohort_network.py
    ("sliceseg.inference.cohort_network", "_label"): _ENGINE,
    ("sliceseg.engine.predictor", "spaced_probabilities"): "  of which the network",
    ("sliceseg.engine.predictor", "probabilities_to_native"): "  of which back to the native grid",
    ("sliceseg.engine.predictor", "finish_label"): "  of which argmax + post-processing",
    ("sliceseg.inference.confidence", "roi_confidence"): "  of which confidence",
    ("sliceseg.inference.cohort", "write_series"): "write series (2 threads), all of:",
    ("sliceseg.inference.cohort_series", "measure_areas"): "  areas",
    ("sliceseg.inference.cohort_series", "with_confidence"): "  confidence columns",
    ("sliceseg.inference.cohort_series", "check_series"): "  familiarity check",
    ("sliceseg.inference.cohort_series", "area_warnings"): "  plausibility warnings",
    ("sliceseg.inference.cohort_series", "_summary"): "  series summary",
    ("sliceseg.measure.areas", "AreaTable.save"): "  area tables (csa.csv, csa_long.csv)",
    ("sliceseg.inference.outputs", "write_label_png"): "  label maps (PNG)",
    ("sliceseg.inference.cohort_series", "atomic_write_text"): "  record.json",
    ("sliceseg.inference.cohort_series", "_replace_folder"): "  rename into place",
    ("sliceseg.inference.outputs", "save_overlay"): "  overlays",
    ("sliceseg.inference.outputs", "save_thumbnail"): "  thumbnails",
    ("sliceseg.inference.outputs", "save_animation"): "  GIFs",
    ("sliceseg.inference.outputs", "plot_areas"): "  area plots",
    ("sliceseg.inference.outputs", "export_predictions"): "  exports (NIfTI, .seg.nrrd)",
    ("sliceseg.inference.outputs", "write_report"): "  per-series report",
    ("sliceseg.inference.cohort", "merge_cohort"): "merge (cohort tables + report)",
}


def _stages_child(config: dict[str, Any]) -> dict[str, Any]:
    """Run ``predict`` in this process with ``--workers 0``, timing each stage's functions."""
    import importlib
    import threading as threads

    from sliceseg.cli import main

    totals: dict[str, float] = {}
    cpu: dict[str, float] = {}
    lock = threads.Lock()

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, thread_start = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    totals[name] = totals.get(name, 0.0) + time.perf_counter() - start
                    cpu[name] = cpu.get(name, 0.0) + time.thread_time() - thread_start

        return wrapper

    for (module, attribute), name in STAGES.items():
        owner: Any = importlib.import_module(module)
        *path, attribute = attribute.split(".")  # "Class.method": a method of a class
        for part in path:
            owner = getattr(owner, part, None)
        if hasattr(owner, attribute):  # stages this version does not have are left out
            setattr(owner, attribute, timed(name, getattr(owner, attribute)))
    start, process_start = time.perf_counter(), time.process_time()
    code = main(["predict", config["model"], config["cohort"], "--out", config["out"],
                 "--workers", "0", *config["flags"]])  # fmt: skip
    return {
        "code": code,
        "wall": time.perf_counter() - start,
        "cpu": time.process_time() - process_start,
        "stages": totals,
        "stages_cpu": cpu,
    }


def compare_tables(left: Path, right: Path) -> str:
    """ "equal" when ``csa.csv`` and ``csa_long.csv`` hold the same rows, else what differs."""
    import pandas as pd

    for name in ("csa.csv", "csa_long.csv"):
        tables = []
        for folder in (left, right):
            table = pd.read_csv(folder / name)
            tables.append(table.sort_values(list(table.columns)).reset_index(drop=True))
        try:
            pd.testing.assert_frame_equal(*tables, check_exact=False, rtol=1e-5)
        except AssertionError as error:
            return f"{name} differs: {str(error).splitlines()[0]}"
    return "equal"


def _series_count(cohort: Path) -> int:
    return sum(1 for p in cohort.iterdir() if p.is_dir())


def _fresh(out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    return out


def _rss_row(shape: str, cohort: Path, run: Run) -> str:
    slices = len(list(cohort.rglob("*.dcm")))
    return (
        f"| {shape} | {slices:,} | {_series_count(cohort):,} | {run.seconds:.0f} | "
        f"{slices / run.seconds:.1f} | {1000 * run.cpu_seconds / slices:.0f} | "
        f"{run.maxrss_mib:.0f} | {run.tree_pss_mib:.0f} |"
    )


OUTPUTS = {"default": (), "--visuals none": ("--visuals", "none"), "lean": LEAN}


def cached_run(bench: Bench, templates: list[Any], shape: str, size: int, outputs: str) -> Run:
    """One uninterrupted run per (shape, size, outputs), into ``runs/<outputs>_<shape>_<size>``."""
    key = (shape, size, outputs)
    if key not in bench.runs:
        cohort = cohort_folder(bench.work, templates, shape=shape, slices=size)
        out = _fresh(run_folder(bench, shape, size, outputs))
        bench.runs[key] = bench.predict(cohort, out, *OUTPUTS[outputs])
    return bench.runs[key]


def run_folder(bench: Bench, shape: str, size: int, outputs: str) -> Path:
    """Where `cached_run` writes."""
    return bench.work / "runs" / f"{outputs.strip('-').replace(' ', '_')}_{shape}_{size}"


def memory_table(bench: Bench, templates: list[Any], shapes: list[str], sizes: list[int]) -> str:
    """Peak memory and speed of default ``predict`` runs at each size, per shape."""
    lines = [
        "| shape | slices | series | s | slices/s | CPU ms/slice | ru_maxrss MiB | tree PSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ratios = []
    for shape in shapes:
        runs = []
        for size in sizes:
            runs.append(cached_run(bench, templates, shape, size, "default"))
            cohort = cohort_folder(bench.work, templates, shape=shape, slices=size)
            lines.append(_rss_row(shape, cohort, runs[-1]))
            print(lines[-1], flush=True)
        first, last = runs[0], runs[-1]
        ratios.append(
            f"{shape}, {sizes[-1]:,} vs {sizes[0]:,} slices: ru_maxrss "
            f"×{last.maxrss_mib / first.maxrss_mib:.2f}, tree PSS "
            f"×{last.tree_pss_mib / first.tree_pss_mib:.2f} (goal ≤ 1.10)"
        )
    return "\n".join([*lines, "", *ratios])


def speed_table(
    bench: Bench, templates: list[Any], shapes: list[str], size: int, outputs: list[str]
) -> str:
    """Whole-pipeline slices/s for each choice of outputs against the network alone.

    Wall clock: the network's rate is measured just before and just after each run and
    averaged, so that both see the same machine (load averages are printed at the end). CPU:
    seconds per slice of the whole process tree against the network's own, which a loaded
    machine does not inflate; their ratio is what the wall ratio becomes on an idle machine
    whose cores the pipeline keeps busy.
    """
    lines = [
        "| shape | outputs | slices/s | network alone | wall ratio | CPU ms/slice | "
        "network CPU ms/slice | CPU ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for shape in shapes:
        for choice in outputs:
            before = bench.network()
            run = cached_run(bench, templates, shape, size, choice)
            after = bench.network()
            network, network_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
            rate, cpu = size / run.seconds, run.cpu_seconds / size
            lines.append(
                f"| {shape} {bench.matrix}² | {choice} | {rate:.1f} | {network:.1f} | "
                f"{rate / network:.2f} | "
                f"{1000 * cpu:.0f} | {1000 * network_cpu:.0f} | {network_cpu / cpu:.2f} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


def _count(pattern: str, text: str) -> int | None:
    found = re.findall(pattern, text)
    return sum(int(n) for n in found) if found else None


def resume_check(bench: Bench, templates: list[Any], shape: str, size: int) -> str:
    """kill -9 once half the series are finished, then the same command; lean outputs."""
    reference = cached_run(bench, templates, shape, size, "lean")
    cohort = cohort_folder(bench.work, templates, shape=shape, slices=size)
    total = _series_count(cohort)
    out = _fresh(bench.work / "runs" / f"killed_{shape}_{size}")
    killed = bench.predict(
        cohort, out, *LEAN, kill_when=lambda: len(finished_records(out)) >= total // 2
    )
    before = finished_records(out)
    rerun = bench.predict(cohort, out, *LEAN)
    after = finished_records(out)
    untouched = sum(after.get(name) == mtime for name, mtime in before.items())
    skipped = _count(r"(\d+) series already done, skipped", rerun.output)
    redone = _count(r"Segmented \d+ slices in (\d+) series", rerun.output)
    return "\n".join([
        f"- {shape}, {size:,} slices in {total:,} series, lean outputs; uninterrupted "
        f"{reference.seconds:.0f} s",
        f"- killed (SIGKILL to the process group) after {killed.seconds:.0f} s with "
        f"{len(before):,} series finished (exit {killed.returncode})",
        f"- rerun of the same command: {rerun.seconds:.0f} s, exit {rerun.returncode}; it skipped "
        f"{skipped} series and segmented {redone} (expected {len(before):,} and "
        f"{total - len(before):,})",
        f"- finished series whose record.json kept its mtime: {untouched:,} of {len(before):,}; "
        f"series finished after the rerun: {len(after):,} of {total:,}",
        "- tables against the uninterrupted run: "
        + compare_tables(out, run_folder(bench, shape, size, "lean")),
    ])  # fmt: skip


def shards_check(bench: Bench, templates: list[Any], shape: str, size: int) -> str:
    """--shard 1/2 and 2/2 one after the other, then merge; lean outputs."""
    reference = cached_run(bench, templates, shape, size, "lean")
    cohort = cohort_folder(bench.work, templates, shape=shape, slices=size)
    out = _fresh(bench.work / "runs" / f"shards_{shape}_{size}")
    first = bench.predict(cohort, out, *LEAN, "--shard", "1/2")
    second = bench.predict(cohort, out, *LEAN, "--shard", "2/2")
    merge = run_child([*SLICESEG, "merge", str(out)])
    series = [_count(r"Segmented \d+ slices in (\d+) series", r.output) for r in (first, second)]
    return "\n".join([
        f"- {shape}, {size:,} slices, lean outputs: shard 1/2 {first.seconds:.0f} s "
        f"({series[0]} series), shard 2/2 {second.seconds:.0f} s ({series[1]} series), merge "
        f"{merge.seconds:.1f} s (exit {merge.returncode}); one run {reference.seconds:.0f} s",
        f"- merged tables against the one run: "
        f"{compare_tables(out, run_folder(bench, shape, size, 'lean'))}",
    ])  # fmt: skip


def stages_table(bench: Bench, templates: list[Any], shape: str, size: int, outputs: str) -> str:
    """Where the time goes: a serial run (``--workers 0``) with each stage's functions timed."""
    cohort = cohort_folder(bench.work, templates, shape=shape, slices=size)
    out = _fresh(bench.work / "runs" / f"stages_{shape}_{size}")
    config = {"model": str(bench.model), "cohort": str(cohort), "out": str(out)}
    found = run_isolated(
        __file__, "--stages", {**config, "flags": list(OUTPUTS[outputs])}, "stages"
    )
    wall, total = found["wall"], found["cpu"]
    lines = [
        f"{shape}, {size:,} slices, {outputs} outputs, --workers 0 (serial decode; writing in "
        f"2 threads): {wall:.0f} s wall, {size / wall:.1f} slices/s; CPU {total:.0f} s, "
        f"{1000 * total / size:.0f} ms/slice (every thread of the process)",
        "",
        "| stage | wall s | CPU s (its thread) | CPU ms/slice | share of the CPU |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in dict.fromkeys(STAGES.values()):
        if name not in found["stages"]:
            continue
        seconds, used = found["stages"][name], found["stages_cpu"][name]
        lines.append(
            f"| {name} | {seconds:.1f} | {used:.1f} | {1000 * used / size:.1f} | "
            f"{used / total:.0%} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="default: by matrix, spacing")
    parser.add_argument("--sizes", default="1000,10000", help="slices, smallest first")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="the stages table: the first")
    parser.add_argument("--matrix", type=int, default=128, help="phantom matrix side (pixels)")
    parser.add_argument(
        "--spacing-mm", type=float, default=None, help="restamped pixel spacing (default: own)"
    )
    parser.add_argument("--epochs", type=int, default=3, help="of the quick model")
    parser.add_argument(
        "--input-shape", type=int, default=None, help="the quick model's crop (default: by matrix)"
    )
    parser.add_argument("--workers", type=int, default=None, help="predict --workers")
    parser.add_argument("--only", default="speed,resume,shards,stages,memory")
    parser.add_argument("--outputs", default=",".join(OUTPUTS), help="of the speed table")
    parser.add_argument("--memory-shapes", default=",".join(SHAPES))
    parser.add_argument("--stages-size", type=int, default=None, help="default: the smallest")
    parser.add_argument("--network", help=argparse.SUPPRESS)
    parser.add_argument("--stages", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def default_work(matrix: int, spacing_mm: float | None) -> Path:
    """``/tmp/sliceseg-cohort-bench`` for the 128² phantom, else named by matrix and spacing."""
    name = "sliceseg-cohort-bench" + ("" if matrix == 128 else f"-{matrix}")
    return Path("/tmp") / (name + ("" if spacing_mm is None else f"-{spacing_mm:g}mm"))


def _target_spacing(model: Path) -> str:
    from sliceseg.models.bundle import load_bundle

    spacing = load_bundle(model).metadata.target_spacing_mm
    return "none" if spacing is None else " × ".join(f"{v:.3f}" for v in spacing)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for flag, child in (("network", _network_child), ("stages", _stages_child)):
        if getattr(args, flag):
            print(json.dumps(child(json.loads(getattr(args, flag)))))
            return
    args.work = args.work or default_work(args.matrix, args.spacing_mm)
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = [int(n) for n in args.sizes.split(",")]
    shapes = args.shapes.split(",")
    spacing = args.spacing_mm
    model = train_quick_model(
        args.work,
        matrix=args.matrix,
        epochs=args.epochs,
        spacing_mm=spacing,
        input_shape=args.input_shape,
    )
    templates = template_series(args.work, matrix=args.matrix, spacing_mm=spacing)
    template_dir = args.work / "template_phantom" / "test" / "dicoms"
    bench = Bench(args.work, model, template_dir, args.workers, [], matrix=args.matrix)
    print(machine_line("cpu", int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))))
    print(
        f"phantom {args.matrix}² at {float(templates[0].PixelSpacing[1]):.3f} mm (columns), "
        f"model {model} (target spacing {_target_spacing(model)} mm), "
        f"predict --workers {args.workers or 'default'}"
    )
    only = args.only.split(",")
    sections = {
        "speed": lambda: speed_table(bench, templates, shapes, sizes[0], args.outputs.split(",")),
        "stages": lambda: "\n\n".join(
            stages_table(bench, templates, shapes[0], args.stages_size or sizes[0], choice)
            for choice in args.outputs.split(",")
        ),
        "resume": lambda: resume_check(bench, templates, "l3", sizes[0]),
        "shards": lambda: shards_check(bench, templates, "l3", sizes[0]),
        "memory": lambda: memory_table(bench, templates, args.memory_shapes.split(","), sizes),
    }
    for name, section in sections.items():
        if name in only:
            print(f"\n## {name}\n\n{section()}", flush=True)
    loads = ", ".join(f"{x:.1f}" for x in bench.load)
    print(f"\nload average (1 min) at the start of each predict run: {loads}")


if __name__ == "__main__":
    main()
