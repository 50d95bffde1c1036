"""Decoding a cohort's series ahead of the network: worker processes, bounded, with a fallback.

`decoded_series` hands the series to the network in plan order. Spawned worker processes
(safe beside CUDA and threads) run `decode_and_prepare` at most ``workers × DECODE_AHEAD``
series ahead: decode the files, give slices without PixelSpacing the user's spacing, and
prepare them for the network (orientation, target spacing, intensities; the engine's
`Preparation`), so that the main process only runs the network. Their warnings are said by the
main process. A pool that dies has the series it was decoding decoded again one at a time,
each in a fresh process, so that a series whose files kill their decoder (a crash in a pixel
decoder, memory) fails alone and the run goes on; a pool that cannot start at all (a script
without ``if __name__ == "__main__":``) falls back to decoding in the main process, without
losing a series. With workers, even a run with one series to do (a resume whose last series
crashed its decoder before) decodes it in one. Decoding in the main process (``workers`` 0,
the default on 2 CPUs) cannot contain such a crash: a segfault in C code ends the process
whatever Python does, so only a worker process keeps it to its series.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import signal
import warnings
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from sliceseg.engine.predictor import Preparation
from sliceseg.errors import DicomReadError, SlicesegError
from sliceseg.inference.cohort_series import DecodedSeries
from sliceseg.inference.shards import shard_device
from sliceseg.io.dicom import SkippedFile, Slice
from sliceseg.io.series_plan import PlannedSeries, decode_series
from sliceseg.measure.spacing import SpacingFallback, with_fallback_spacing
from sliceseg.model_space.batches import SpacedTensors
from sliceseg.system import rank_cpus, rank_threads, select_device
from sliceseg.thread_warnings import recorded
from sliceseg.wording import few_of

__all__ = [
    "DECODE_AHEAD",
    "decode_and_prepare",
    "decode_here",
    "decoded_series",
    "default_workers",
    "describe_workers",
]

DECODE_AHEAD = 2  # series decoded ahead per worker
WORKERS_FROM_CPUS = 3  # fewer CPUs: no decoding worker by default


def default_workers() -> int:
    """Decoding processes: the CPUs this process may use (affinity; under torchrun its rank's
    share, `rank_cpus`), less one for the network; none below `WORKERS_FROM_CPUS`.

    On 2 cores the network's threads already fill both, and a worker only adds its start and
    the copies of every slice between processes: without it lean cohort runs were 10–30 %
    faster (docs/benchmarks.md, "A whole cohort": 512² L3 10.1 against 8.9 slices/s, 256²
    long series 51 against 42, 128² L3 63 against 56).
    """
    cpus = rank_cpus()
    return cpus - 1 if cpus >= WORKERS_FROM_CPUS else 0


def describe_workers(workers: int | None, device: str, *, writers: int) -> str:
    """Who does a run's work, for ``predict``'s first line: the decoding workers (``workers``
    None: `default_workers`), the network's device and its threads (those the engine sets,
    `rank_threads`, else torch's own), and the threads writing series (``writers``).

    Example:
        >>> describe_workers(0, "cpu", writers=2)
        'decoding in the main process (--workers 0); the network on cpu with 2 threads; 2 ...'
    """
    import torch

    count = default_workers() if workers is None else workers
    decoding = f"{count} decoding worker process{'es' if count > 1 else ''} (--workers)"
    chosen = select_device(shard_device(device))
    threads = rank_threads(chosen.type) or torch.get_num_threads()
    on_cpu = f" with {threads} thread{'s' * (threads != 1)}" * (chosen.type == "cpu")
    network = f"the network on {chosen}{on_cpu}"
    decoding = decoding if count > 0 else "decoding in the main process (--workers 0)"
    return f"{decoding}; {network}; {writers} threads writing"


def decoded_series(
    todo: Sequence[PlannedSeries], workers: int | None, job: Callable[[list[Path]], Any]
) -> Iterator[tuple[PlannedSeries, DecodedSeries | Exception]]:
    """Each series decoded, in order; worker processes read ahead a bounded number of series.

    ``job`` is what a worker runs on a series' files (`decode_and_prepare`, bound to the
    settings); the main process only decodes (the engine then prepares).
    """
    count = default_workers() if workers is None else workers
    if count < 1:
        for series in todo:
            yield series, decode_here(series)
        return
    pending: deque[PlannedSeries] = deque(todo)  # not yet handed to the network
    while pending:
        try:
            yield from decoded_in_workers(pending, count, job)
        except futures.process.BrokenProcessPool:  # a worker died: find the series that did it
            in_flight = min(len(pending), count * DECODE_AHEAD)
            if (yield from _decoded_alone(pending, in_flight, job)):
                continue
        else:
            return
        # The workers could not start (e.g. a script without ``if __name__ == "__main__":``
        # under spawn): decode what is left here, and say so once.
        warnings.warn(
            "sliceseg: the decoding worker processes stopped; decoding in the main process "
            "(guard a script's code with `if __name__ == '__main__':`, or pass workers=0).",
            RuntimeWarning,
            stacklevel=2,
        )
        while pending:
            series = pending.popleft()
            yield series, decode_here(series)
        return


def _decoded_alone(
    pending: deque[PlannedSeries], count: int, job: Callable[[list[Path]], Any]
) -> Generator[tuple[PlannedSeries, DecodedSeries | Exception], None, bool]:
    """Decode the first ``count`` pending series one at a time, each alone in a worker process,
    a fresh one after each that dies: the series whose files killed it fails alone.

    Returns:
        False when no worker process starts at all (the caller decodes the rest itself).
    """
    pool = None
    try:
        for _ in range(count):
            pool = pool or _started_pool()
            if pool is None:
                return False
            series = pending[0]
            try:
                result = pool.submit(job, [f.source for f in series.files]).result()
            except futures.process.BrokenProcessPool:
                pool.shutdown()
                pool = None
                yield pending.popleft(), _died(series)
                continue
            except Exception as error:  # a worker raised: this series only
                yield pending.popleft(), error
                continue
            yield pending.popleft(), _unpacked(series, result)
    finally:
        if pool is not None:
            pool.shutdown()
    return True


def _started_pool() -> futures.ProcessPoolExecutor | None:
    """One spawned worker process that has started (None: it cannot start)."""
    context = multiprocessing.get_context("spawn")
    pool = futures.ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker)
    try:
        pool.submit(int).result()
    except futures.process.BrokenProcessPool:
        pool.shutdown()
        return None
    return pool


def _died(series: PlannedSeries) -> DicomReadError:
    files = few_of([str(file.source) for file in series.files], shown=1) or "?"
    return DicomReadError(
        f"series {series.name}: the process decoding its files died (a crash in a pixel decoder, "
        f"or out of memory) while reading its {len(series.files)} file(s) ({files}); the "
        "other series went on; check or remove these files."
    )


def decoded_in_workers(
    pending: deque[PlannedSeries], count: int, job: Callable[[list[Path]], Any]
) -> Iterator[tuple[PlannedSeries, DecodedSeries | Exception]]:
    """Decode in ``count`` spawned processes, at most ``count × DECODE_AHEAD`` series ahead.

    A series leaves ``pending`` only when it is yielded, so that after a `BrokenProcessPool`
    the caller still has every series not yet decoded.
    """
    context = multiprocessing.get_context("spawn")  # safe beside CUDA and threads
    with futures.ProcessPoolExecutor(count, mp_context=context, initializer=_start_worker) as pool:
        try:
            yield from _decoded_ahead(pool, pending, count, job)
        except BaseException:  # Ctrl-C, or the run ends early: the queued series are not waited
            pool.shutdown(wait=False, cancel_futures=True)  # for (each worker ends its own)
            raise


def _decoded_ahead(
    pool: futures.ProcessPoolExecutor,
    pending: deque[PlannedSeries],
    count: int,
    job: Callable[[list[Path]], Any],
) -> Iterator[tuple[PlannedSeries, DecodedSeries | Exception]]:
    """`decoded_in_workers` in its pool: submit ahead, yield in order."""
    jobs: deque[futures.Future[Any]] = deque()
    while pending:
        while len(jobs) < min(len(pending), count * DECODE_AHEAD):
            files = [f.source for f in pending[len(jobs)].files]
            jobs.append(pool.submit(job, files))
        done = jobs.popleft()
        try:
            result = done.result()
        except futures.process.BrokenProcessPool:
            raise
        except Exception as error:  # a worker raised: this series only
            yield pending.popleft(), error
            continue
        series = pending.popleft()
        yield series, _unpacked(series, result)


def _unpacked(series: PlannedSeries, result: Any) -> DecodedSeries:
    """A worker's `decode_and_prepare` result as a series; its warnings said here."""
    slices, skipped, said, spaced = result
    for message, category in said:
        warnings.warn(message, category, stacklevel=1)
    decoded = _checked(series, slices, skipped)
    decoded.spaced = spaced
    return decoded


def _start_worker() -> None:
    """A decoding worker uses one CPU thread for torch (the network has the others), and leaves
    Ctrl-C to the main process: else every worker printed its own KeyboardInterrupt traceback
    under the run's one line (the main process stops the run and the pool)."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def decode_and_prepare(
    files: list[Path], *, fallback: SpacingFallback, preparation: Preparation | None
) -> tuple[list[Slice], list[SkippedFile], list[tuple[str, type[Warning]]], SpacedTensors | None]:
    """A worker's job: decode one series and prepare it for the network (orientation, spacing,
    intensities), so that the main process only runs the network. Warnings come back to be
    said by the main process; a series that cannot be prepared goes back unprepared (the main
    process then says why)."""
    with recorded() as caught:
        slices, skipped = decode_series(files)
        spaced = None
        if preparation is not None and slices:
            try:
                slices = [with_fallback_spacing(image, fallback) for image in slices]
                spaced = preparation.prepare(slices)
            except SlicesegError:
                spaced = None
    said = list(dict.fromkeys((str(w.message), w.category) for w in caught))
    return slices, skipped, said, spaced


def decode_here(series: PlannedSeries) -> DecodedSeries | Exception:
    try:
        slices, skipped = decode_series([f.source for f in series.files])
    except Exception as error:
        return error
    return _checked(series, slices, skipped)


def _checked(
    series: PlannedSeries, slices: list[Slice], skipped: list[SkippedFile]
) -> DecodedSeries:
    return DecodedSeries(series, slices, skipped)
