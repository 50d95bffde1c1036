"""Why a long cohort's main process grows: the network's memory per distinct input shape.

`sliceseg predict` runs the network on passes of up to ``--batch-size`` slices, each pass a
window whose sides are multiples of 16 (the largest slice of the pass at the model's
spacing). A cohort whose patients have different pixel spacings therefore meets many
distinct (batch, height, width) shapes. This bench runs the default inference network
(random weights, folded and channels-last as ``predict`` runs it) over a set of distinct
shapes, several times, in a fresh process per configuration, and prints the process's peak memory
(``ru_maxrss``) as the number of distinct shapes seen grows (the largest first, so that later
growth is memory kept, not a larger pass), and after each further round over the same shapes
(no new shape: what still grows is fragmentation, not a cache per shape).

Configurations: PyTorch's defaults; oneDNN's primitive cache capped at 16 entries
(``ONEDNN_PRIMITIVE_CACHE_CAPACITY=16``, default 1024); oneDNN off
(``torch.backends.mkldnn.enabled = False``); glibc's mmap threshold fixed at 1 MiB
(``MALLOC_MMAP_THRESHOLD_``: larger buffers are mapped and given back when freed, instead of
the threshold rising after each free and later buffers fragmenting the heap); both.

Usage::

    python bench/shape_memory.py                   # 64–144 px sides (64² and 128² cohorts)
    python bench/shape_memory.py --sides 448,640   # 512² CT-like windows (slow on a CPU)
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import time
from typing import Any

from isolated import run_isolated

CONFIGS: dict[str, dict[str, Any]] = {
    "PyTorch defaults": {"env": {}, "mkldnn": True},
    "oneDNN cache 16 entries": {"env": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16"}, "mkldnn": True},
    "oneDNN off": {"env": {}, "mkldnn": False},
    "glibc mmap threshold 1 MiB": {"env": {"MALLOC_MMAP_THRESHOLD_": "1048576"}, "mkldnn": True},
    "glibc mmap threshold 8 MiB": {"env": {"MALLOC_MMAP_THRESHOLD_": "8388608"}, "mkldnn": True},
    "both": {
        "env": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "MALLOC_MMAP_THRESHOLD_": "1048576"},
        "mkldnn": True,
    },
}


def shapes(low: int, high: int, batch_size: int, count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct (batch, height, width), sides multiples of 16 in [low, high]: the
    largest first (so that later growth of the peak is memory kept per shape, not a larger
    pass), the others in a fixed random order."""
    sides = range(low, high + 1, 16)
    every = list(itertools.product(range(1, batch_size + 1), sides, sides))
    largest = every.pop()
    random.Random(0).shuffle(every)
    return [largest, *every][:count]


def measure(config: dict[str, Any]) -> dict[str, Any]:
    """In this (fresh) process: peak memory after each checkpoint of distinct shapes."""
    import torch

    from sliceseg.models.folding import inference_network
    from sliceseg.models.registry import build_model

    torch.set_num_threads(config["threads"])
    torch.backends.mkldnn.enabled = config["mkldnn"]
    network = inference_network(build_model("unet", num_classes=7, input_size=160).eval())
    todo = shapes(config["low"], config["high"], config["batch_size"], config["count"])
    marks = {1, 10, 25, 50, 100, 200, 400, len(todo)}
    peak, again = [], []
    start = time.perf_counter()
    with torch.inference_mode():
        for round_ in range(1, config["rounds"] + 1):
            for index, (batch, height, width) in enumerate(todo, start=1):
                network(torch.randn(batch, 1, height, width))
                if round_ == 1 and index in marks:
                    peak.append((index, _rss_mib()))
            if round_ > 1:
                again.append(_rss_mib())
    seconds = time.perf_counter() - start
    return {"peaks": peak, "again": again, "seconds": seconds}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(name: str, config: dict[str, Any]) -> dict[str, Any]:
    child = {**config, "mkldnn": CONFIGS[name]["mkldnn"]}
    return run_isolated(__file__, "--child", child, name, env=CONFIGS[name]["env"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="64,144", help="smallest,largest window side (px)")
    parser.add_argument("--batch-size", type=int, default=8, help="predict's --batch-size")
    parser.add_argument("--shapes", type=int, default=400, help="distinct shapes to run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the same shapes")
    parser.add_argument("--configs", default=None, help="names, comma-separated (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    low, high = (int(side) for side in args.sides.split(","))
    config = {
        "low": low,
        "high": high,
        "batch_size": args.batch_size,
        "count": args.shapes,
        "threads": args.threads,
        "rounds": args.rounds,
    }
    names = args.configs.split(",") if args.configs else list(CONFIGS)
    results = {name: _run(name, config) for name in names}
    marks = [index for index, _ in next(iter(results.values()))["peaks"]]
    print(
        f"\nwindow sides {low}–{high} px (multiples of 16), batches 1–{args.batch_size}, "
        f"U-Net (7 classes) folded + channels-last, {args.threads} threads: ru_maxrss MiB\n"
    )
    print(
        "| configuration | "
        + " | ".join(f"{m} shapes" for m in marks)
        + "".join(f" | round {r}" for r in range(2, args.rounds + 1))
        + " | s (all rounds) |"
    )
    print("| --- |" + " ---: |" * (len(marks) + args.rounds))
    for name, result in results.items():
        cells = [f"{mib:.0f}" for _, mib in result["peaks"]]
        cells += [f"{mib:.0f}" for mib in result["again"]] + [f"{result['seconds']:.1f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
