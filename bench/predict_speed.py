"""Inference speed (eval, ``torch.inference_mode``) of the default U-Net vs the published pyramid.

A thin variant of ``train_speed.py``: each model runs in its own process; the table gives
slices/s on 256×256 slices (``--size``) and the U-Net/pyramid ratio measured in the same run.

Usage::

    python bench/predict_speed.py                 # CPU, 2 threads, batch 8, 256×256
    python bench/predict_speed.py --device cuda   # AMP on
"""

from __future__ import annotations

import argparse
import sys

from train_speed import machine_line, run_isolated


def main(argv: list[str] | None = None) -> int:
    """Print inference slices/s of ``unet`` (defaults) and ``pyramid``; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args(argv)
    common = {
        "input_size": args.size,
        "hyper": {},
        "batch": args.batch,
        "iters": args.iters,
        "warmup": 1,
        "threads": args.threads,
        "device": args.device,
        "train": False,
    }
    print(machine_line(args.device, args.threads))
    rows = {
        arch: run_isolated({**common, "arch": arch, "label": arch}) for arch in ("pyramid", "unet")
    }
    print("| model | input | batch | fwd GFLOPs/slice | infer slices/s | × pyramid |")
    print("|---|---|---|---|---|---|")
    for arch, r in rows.items():
        ratio = r["infer_sps"] / rows["pyramid"]["infer_sps"]
        print(
            f"| {arch} | {args.size} | {args.batch} | {r['gflops']:.2f} | "
            f"{r['infer_sps']:.2f} | {ratio:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
