"""Inference speed: the default pipeline end to end, and the bare networks (U-Net vs pyramid).

Pipeline table (the default): slices/s of ``predict`` on 256×256 DICOM slices at the model's
target spacing, whole ``predict_folder`` included (reading, resampling, network, probabilities
back to the native grid, argmax, post-processing, writing label maps, overlays, the GIF, the
area CSVs and the report), and of its network part alone (windows in, probabilities out), for:
the squeeze-onto-a-160-grid path of model files without a target spacing (before), instance
norms with 160-pixel windows (4 per slice), and batch norms (one pass per slice), plain and in
the inference form ``predict`` uses (folded into the convolutions, channels-last). Each row runs
in its own process with ``--threads`` torch threads; weights are random (speed only).

Networks table (``--networks``): slices/s of the bare networks on 256×256 inputs.

Usage::

    python bench/predict_speed.py                 # pipeline, CPU, 2 threads, 24 slices
    python bench/predict_speed.py --networks      # also the U-Net vs pyramid table
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from isolated import run_isolated
from train_speed import machine_line, measure_isolated

NUM_CLASSES = 5  # the real-MR benchmark's 4 ROIs + background
PIPELINES: dict[str, dict[str, Any]] = {
    "grid 160 (before: no target spacing)": {"norm": "instance", "spaced": False},
    "instance norm, 160 windows": {"norm": "instance", "spaced": True},
    "batch norm, one pass, plain": {"norm": "batch", "spaced": True, "plain": True},
    "batch norm, one pass, folded + channels-last": {"norm": "batch", "spaced": True},
}


def _write_slices(folder: Path, count: int, size: int) -> tuple[float, float]:
    """Write ``count`` phantom slices of ``size``² (one subject); return their spacing."""
    import pandas as pd

    from sliceseg.phantom.generate import generate_phantom

    summary = generate_phantom(
        folder,
        train_subjects=1,
        test_subjects=1,
        slices_per_subject=count,
        matrix_sizes=[(size, size)],
        overwrite=True,
    )
    truth = pd.read_csv(summary.truth_csv)
    row = truth[truth["split"] == "test"].iloc[0]
    return float(row["row_spacing_mm"]), float(row["col_spacing_mm"])


def _bundle(config: dict[str, Any], spacing: tuple[float, float], path: Path) -> Path:
    import torch

    from sliceseg.models import build_model
    from sliceseg.models.bundle import ModelMetadata, save_bundle

    torch.manual_seed(0)
    model = build_model("unet", num_classes=NUM_CLASSES, input_size=160, norm=config["norm"])
    steps = {
        "steps": {"1": ["largest_component"], "3": ["largest_component", "fill_holes"]},
        "area_calibration": {"log_weight": 1.0},  # the weighted argmax, as trained models have
    }
    metadata = ModelMetadata(
        arch="unet",
        hyperparameters={"norm": config["norm"]},
        num_classes=NUM_CLASSES,
        input_size=160,
        roi_names=tuple(f"ROI {k}" for k in range(1, NUM_CLASSES)),
        target_spacing_mm=spacing if config["spaced"] else None,
        postprocessing=steps if config["spaced"] else None,
    )
    return save_bundle(path, model.eval(), metadata)


def _network_seconds(bundle: Any, slices: list[Any], config: dict[str, Any]) -> tuple[float, int]:
    """Seconds of the network part alone over ``slices`` (best of 2), and windows per slice."""
    import torch

    from sliceseg.model_space.batches import slices_to_grid, slices_to_spacing
    from sliceseg.model_space.windows import count_windows, prediction_window, spaced_probabilities
    from sliceseg.models.folding import inference_network, is_size_free

    meta = bundle.metadata
    if not config["spaced"]:
        images = slices_to_grid(slices, meta.input_size).images

        def run() -> None:
            for i in range(0, len(images), 8):
                bundle.model(images[i : i + 8])

        windows = 1
    else:
        spaced = slices_to_spacing(slices, meta.target_spacing_mm).images
        network = bundle.model if config.get("plain") else inference_network(bundle.model)
        shapes = [s.shape for s in spaced]
        window = prediction_window(
            shapes, input_size=160, divisor=16, is_size_free=is_size_free(network)
        )

        def run() -> None:
            spaced_probabilities(
                lambda b: torch.softmax(network(b)[0], dim=1), spaced, window=window
            )

        windows = count_windows(shapes[0], window)
    best = float("inf")
    with torch.inference_mode():
        run()  # warm-up
        for _ in range(2):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
    return best, windows


def measure_pipeline(config: dict[str, Any]) -> dict[str, Any]:
    """Time the network part and the whole ``predict_folder`` of one configuration."""
    import torch

    from sliceseg.inference.folder import predict_folder
    from sliceseg.io.dicom_folder import read_series
    from sliceseg.models.bundle import load_bundle

    torch.set_num_threads(config["threads"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spacing = _write_slices(root / "phantom", config["slices"], config["size"])
        dicoms = root / "phantom" / "test" / "dicoms"
        bundle = load_bundle(_bundle(config, spacing, root / "model.pt"))
        slices = read_series(next(p for p in dicoms.iterdir() if p.is_dir()))
        network_s, windows = _network_seconds(bundle, slices, config)
        start = time.perf_counter()
        run = predict_folder(root / "model.pt", dicoms, root / "out", device="cpu", progress=False)
        whole_s = time.perf_counter() - start
    count = len(run.predictions)
    return {
        **config,
        "windows": windows,
        "network_sps": len(slices) / network_s,
        "whole_sps": count / whole_s,
    }


def pipeline_table(args: argparse.Namespace) -> str:
    """Measure every pipeline row in its own process; return the markdown table."""
    lines = [
        f"| pipeline ({args.size}² slices, {args.slices} slices) | windows / slice "
        "| network slices/s | whole predict slices/s |",
        "|---|---|---|---|",
    ]
    for label, config in PIPELINES.items():
        row = _isolated_pipeline(
            {**config, "threads": args.threads, "slices": args.slices, "size": args.size}
        )
        lines.append(
            f"| {label} | {row['windows']} | {row['network_sps']:.1f} | {row['whole_sps']:.1f} |"
        )
    return "\n".join(lines)


def _isolated_pipeline(config: dict[str, Any]) -> dict[str, Any]:
    return run_isolated(__file__, "--one-pipeline", config, f"pipeline {config}")


def networks_table(args: argparse.Namespace) -> str:
    """Inference slices/s of the bare ``unet`` (defaults) and ``pyramid`` at ``--size``."""
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
    rows = {
        arch: measure_isolated({**common, "arch": arch, "label": arch})
        for arch in ("pyramid", "unet")
    }
    lines = [
        "| model | input | batch | fwd GFLOPs/slice | infer slices/s | × pyramid |",
        "|---|---|---|---|---|---|",
    ]
    for arch, r in rows.items():
        ratio = r["infer_sps"] / rows["pyramid"]["infer_sps"]
        lines.append(
            f"| {arch} | {args.size} | {args.batch} | {r['gflops']:.2f} | "
            f"{r['infer_sps']:.2f} | {ratio:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the pipeline table (and with ``--networks`` the bare-network table); return 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--slices", type=int, default=24, help="slices per pipeline run")
    parser.add_argument("--networks", action="store_true", help="also the bare networks")
    parser.add_argument("--one-pipeline", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_pipeline:
        print(json.dumps(measure_pipeline(json.loads(args.one_pipeline))))
        return 0
    print(machine_line(args.device, args.threads))
    print(pipeline_table(args))
    if args.networks:
        print(networks_table(args))
    print(machine_line(args.device, args.threads).split(" · ")[-1] + " (end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
