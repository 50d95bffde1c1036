"""Training and inference speed of the registered models on this machine (CPU or CUDA).

Each configuration runs in its own Python process so that peak memory (``ru_maxrss`` growth on
CPU, ``torch.cuda.max_memory_allocated`` on CUDA) belongs to it alone. A training step is
forward + Dice-CE loss over all outputs + backward + Adam step; its time is the median over
``--iters`` steps after ``--warmup`` steps. Inference is eval mode under ``torch.inference_mode``.

Usage::

    python bench/train_speed.py                      # pyramid vs unet at 256 (and 128)
    python bench/train_speed.py --sizing             # the U-Net sizing grid
    python bench/train_speed.py --device cuda        # AMP on
    python bench/train_speed.py --quick              # a smoke test at 64×64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from typing import Any

from isolated import run_isolated

NUM_CLASSES = 7  # 6 ROIs of the lumbar phantom + background


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(step: Any, config: dict[str, Any], device: Any) -> float:
    """Return the median seconds of ``step()`` over ``iters`` calls after ``warmup`` calls."""
    times = []
    for index in range(config["warmup"] + config["iters"]):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        if index >= config["warmup"]:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _training_step(model: Any, images: Any, labels: Any, device: Any) -> Any:
    """Return a closure running forward + Dice-CE over all outputs + backward + Adam step."""
    import torch

    from sliceseg.training.loop import optimizer_step
    from sliceseg.training.losses import MultiOutputLoss, build_loss

    loss_fn = MultiOutputLoss(build_loss("dice_ce"))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, enabled=use_amp):
            loss = loss_fn(model(images), labels)
        optimizer_step(loss, optimizer, scaler)

    return step


def measure(config: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration in this process and return a row of the table.

    Args:
        config: ``arch``, ``input_size``, ``hyper`` (overrides), ``batch``, ``iters``,
            ``warmup``, ``threads``, ``device``, ``label``; ``train`` False skips training.

    Returns:
        The config plus ``params``, ``gflops`` (forward, per slice), ``train_sps``,
        ``infer_sps`` (slices/s) and ``peak_mib`` (training, or inference without training).
    """
    import psutil
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sliceseg.models import build_model

    torch.set_num_threads(config["threads"])
    torch.manual_seed(0)
    device = torch.device(config["device"])
    size, batch = config["input_size"], config["batch"]
    model = build_model(config["arch"], num_classes=NUM_CLASSES, input_size=size, **config["hyper"])
    model = model.to(device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(1, 1, size, size, device=device))
    images = torch.randn(batch, 1, size, size, device=device)
    labels = torch.randint(0, NUM_CLASSES, (batch, size, size), device=device)
    rss0 = psutil.Process().memory_info().rss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_s = float("nan")
    if config.get("train", True):
        train_s = _timed(_training_step(model.train(), images, labels, device), config, device)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0) / 2**20

    def infer() -> None:
        with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
            model(images)

    model.eval()
    infer_s = _timed(infer, config, device)
    return {
        **config,
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": counter.get_total_flops() / 1e9,
        "train_sps": batch / train_s,
        "infer_sps": batch / infer_s,
        "peak_mib": peak_mib,
    }


def lumbar_phantom(count: int, size: int, *, seed: int) -> tuple[Any, Any]:
    """Return ``count`` synthetic 6-ROI lumbar slices: images (N,1,S,S), labels (N,S,S).

    A stand-in for ``sliceseg.phantom.generate`` with the same ROIs: 1 vertebral body, 2/3 psoas
    (left/right), 4/5 erector spinae (left/right), 6 subcutaneous fat ring; random size,
    position and shape per slice; muscles differ from the surrounding tissue by 0.15 with
    noise of sd 0.1. Left and right muscles look alike: only their side tells them apart.
    """
    import numpy as np
    import torch
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size] / size
    images = np.zeros((count, 1, size, size), np.float32)
    labels = np.zeros((count, size, size), np.int64)

    def ellipse(cy: float, cx: float, ay: float, ax: float) -> Any:
        return ((rows - cy) / ay) ** 2 + ((cols - cx) / ax) ** 2 <= 1

    for i in range(count):
        j = lambda scale: 1 + scale * rng.uniform(-1, 1)  # noqa: E731
        cy, cx = 0.5 + 0.03 * rng.uniform(-1, 1), 0.5 + 0.03 * rng.uniform(-1, 1)
        ay, ax = 0.30 * j(0.1), 0.42 * j(0.1)
        body = ellipse(cy, cx, ay, ax)
        fat = ay * 0.12 * j(0.3)
        label = np.where(body & ~ellipse(cy, cx, ay - fat, ax - fat), 6, 0)
        label[ellipse(cy + 0.02, cx, 0.08 * j(0.15), 0.10 * j(0.15))] = 1
        for roi, side in ((2, -1), (3, 1), (4, -1), (5, 1)):
            dy, dx, sy, sx = (0.04, 0.17, 0.06, 0.08) if roi < 4 else (0.19, 0.11, 0.08, 0.09)
            label[ellipse(cy + dy, cx + side * dx, sy * j(0.2), sx * j(0.2))] = roi
        intensity = np.array([0.0, 0.8, 0.35, 0.35, 0.35, 0.35, 1.0])[label]
        intensity[(label == 0) & body] = 0.5
        image = ndimage.gaussian_filter(intensity, 0.7) + rng.normal(0, 0.1, (size, size))
        images[i, 0], labels[i] = (image - image.mean()) / image.std(), label
    return torch.from_numpy(images), torch.from_numpy(labels)


def converge(config: dict[str, Any]) -> dict[str, Any]:
    """Train on 150 phantom slices for ``seconds``; return validation Dice per ROI and epochs."""
    import numpy as np
    import torch

    from sliceseg.measure.metrics import dice_per_class
    from sliceseg.models import build_model
    from sliceseg.training.losses import MultiOutputLoss, build_loss

    torch.set_num_threads(config["threads"])
    torch.manual_seed(0)
    size = config["input_size"]
    images, labels = lumbar_phantom(150, size, seed=0)
    val_images, val_labels = lumbar_phantom(30, size, seed=1)
    model = build_model("unet", num_classes=NUM_CLASSES, input_size=size, **config["hyper"])
    loss_fn = MultiOutputLoss(build_loss("dice_ce"))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    start, epochs, generator = time.perf_counter(), 0, torch.Generator().manual_seed(0)
    while time.perf_counter() - start < config["seconds"]:
        model.train()
        for idx in torch.randperm(len(images), generator=generator).split(config["batch"]):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images[idx]), labels[idx]).backward()
            optimizer.step()
        epochs += 1
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(b)[0].argmax(1) for b in val_images.split(10)])
    dice = dice_per_class(pred, val_labels, NUM_CLASSES)
    return {
        **config,
        "epochs": epochs,
        "dice": [round(float(d), 3) for d in dice],
        "mean_dice": float(np.nanmean(dice)),
    }


def measure_isolated(config: dict[str, Any]) -> dict[str, Any]:
    """Run ``measure(config)`` in a fresh Python process and return its row."""
    return run_isolated(__file__, "--one", config, config["label"])


def format_table(rows: list[dict[str, Any]]) -> str:
    """Return a Markdown table; ratios are against the pyramid at the same input size."""
    reference = {r["input_size"]: r for r in rows if r["arch"] == "pyramid"}
    lines = [
        "| model | input | batch | params (M) | fwd GFLOPs/slice | train slices/s | "
        "infer slices/s | peak mem (MiB) | train × pyramid | infer × pyramid |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = reference.get(r["input_size"])
        train_ratio = f"{r['train_sps'] / ref['train_sps']:.1f}" if ref else "–"
        infer_ratio = f"{r['infer_sps'] / ref['infer_sps']:.1f}" if ref else "–"
        lines.append(
            f"| {r['label']} | {r['input_size']} | {r['batch']} | {r['params'] / 1e6:.2f} | "
            f"{r['gflops']:.2f} | {r['train_sps']:.2f} | {r['infer_sps']:.2f} | "
            f"{r['peak_mib']:.0f} | {train_ratio} | {infer_ratio} |"
        )
    return "\n".join(lines)


def machine_line(device: str, threads: int) -> str:
    """Return one line naming the machine, torch version, threads and date."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next(ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln)
    except (OSError, StopIteration):
        pass
    where = torch.cuda.get_device_name() if device == "cuda" else f"{cpu}, {os.cpu_count()} cores"
    return (
        f"{date.today()} · {where} · torch {torch.__version__} · "
        f"{threads} threads · device {device} · load average {os.getloadavg()[0]:.2f}"
    )


def default_configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Return the main comparison: pyramid (published widths) vs default U-Net."""
    sizes = (64,) if args.quick else (256, 128)
    configs = []
    for size in sizes:
        configs.append({"arch": "pyramid", "input_size": size, "hyper": {}, "label": "pyramid"})
        configs.append({"arch": "unet", "input_size": size, "hyper": {}, "label": "unet (default)"})
    return configs


def sizing_configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Return the U-Net sizing grid: base 8/16/32 × depth 4/5 × input 128/256, and norms."""
    sizes = (64,) if args.quick else (128, 256)
    configs: list[dict[str, Any]] = []
    for size in sizes:
        for base in (8, 16, 32):
            for depth in (4, 5):
                hyper: dict[str, int | str] = {"base_channels": base, "depth": depth}
                label = f"unet b{base} d{depth}"
                configs.append({"arch": "unet", "input_size": size, "hyper": hyper, "label": label})
        for norm in ("batch", "group"):
            hyper = {"norm": norm}
            label = f"unet default, {norm}norm"
            configs.append({"arch": "unet", "input_size": size, "hyper": hyper, "label": label})
    return configs


def print_convergence(args: argparse.Namespace) -> int:
    """Train each U-Net candidate on the phantom for ``--converge`` seconds; print a table."""
    size = args.size or (64 if args.quick else 128)
    print(machine_line(args.device, args.threads))
    print("| unet | input | seconds | epochs | mean Dice | Dice per ROI 1..6 |")
    print("|---|---|---|---|---|---|")
    for base, depth in ((8, 5), (16, 5)):
        config = {
            "arch": "unet",
            "input_size": size,
            "hyper": {"base_channels": base, "depth": depth},
            "label": f"b{base} d{depth}",
            "seconds": args.converge,
            "batch": args.batch,
            "threads": args.threads,
            "device": args.device,
        }
        r = measure_isolated(config)
        per_roi = " ".join(f"{d:.3f}" for d in r["dice"])
        head = f"| {r['label']} | {size} | {args.converge:.0f} | {r['epochs']} |"
        print(f"{head} {r['mean_dice']:.3f} | {per_roi} |", flush=True)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny run at 64×64, batch 2")
    parser.add_argument("--sizing", action="store_true", help="the U-Net sizing grid instead")
    parser.add_argument("--arch", default=None, help="only this architecture")
    parser.add_argument("--size", type=int, default=None, help="only this input size")
    parser.add_argument(
        "--converge",
        type=float,
        default=None,
        metavar="SECONDS",
        help="train U-Net candidates on a 6-ROI phantom for SECONDS each; print Dice",
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the table for the chosen configurations; return 0."""
    args = parse_args(argv)
    if args.one is not None:
        config = json.loads(args.one)
        print(json.dumps(converge(config) if "seconds" in config else measure(config)))
        return 0
    if args.quick:
        args.batch, args.iters, args.warmup = 2, 2, 1
    if args.converge is not None:
        return print_convergence(args)
    configs = sizing_configs(args) if args.sizing else default_configs(args)
    configs = [
        c
        for c in configs
        if (args.arch is None or c["arch"] == args.arch)
        and (args.size is None or c["input_size"] == args.size)
    ]
    common = {
        "batch": args.batch,
        "iters": args.iters,
        "warmup": args.warmup,
        "threads": args.threads,
        "device": args.device,
    }
    print(machine_line(args.device, args.threads))
    rows = []
    for config in configs:
        rows.append(measure_isolated({**config, **common}))
        print(f"  measured {config['label']} @ {config['input_size']}", file=sys.stderr)
    print(format_table(rows))
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other work shares these cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
