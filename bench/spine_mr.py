"""Spine-MR benchmark: sliceseg vs the plain MONAI baseline on the user manual's anatomy, real MR.

The data (``spine_mr_data``): the example abdominal MR and its TotalSegmentator segmentation that
ship in the TotalSegmentator 2.18.0 source archive (fetched once into ``~/.cache/sliceseg-bench``
with ``pip download``), seen through 6 training and 4 test simulated scanners, test scanners on
held-out levels; ROIs vertebral body, right/left iliopsoas, right/left erector spinae. The
archive's CT files are never read. Everything else (contenders, scoring, outputs, options) is
``real_mr.py``'s, run with ``--set spine``.

Usage::

    python bench/spine_mr.py --minutes 10                 # both, 10 minutes each
    python bench/spine_mr.py --only baseline              # one contender (data reused)

Writes ``spine_mr_output/results.{md,csv}`` and ``per_slice.csv`` (``--out`` to change).
"""

from __future__ import annotations

import sys

import real_mr


def main(argv: list[str] | None = None) -> int:
    """``real_mr.main`` on the spine set."""
    return real_mr.main(["--set", "spine", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
