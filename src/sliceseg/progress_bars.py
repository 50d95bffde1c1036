"""Where a progress bar is seen: a terminal, or a Jupyter notebook (tqdm.auto's widget)."""

from __future__ import annotations

import sys


def shows_progress() -> bool:
    """Return True where a tqdm bar is seen rather than written into a log.

    A terminal shows tqdm's text bar; a Jupyter kernel shows tqdm.auto's widget (its stderr is
    no terminal, so a check of stderr alone left the notebooks' long steps without a bar). A
    log file, a pipe or a SLURM job's output shows none.

    Returns:
        True when stderr is a terminal or the code runs in a Jupyter kernel.

    Example:
        >>> bar = tqdm(paths, desc="Reading DICOM", disable=not shows_progress())
    """
    return sys.stderr.isatty() or _in_jupyter_kernel()


def _in_jupyter_kernel() -> bool:
    """True in an IPython kernel, tested as tqdm.auto tests it to choose its notebook bar."""
    ipython = sys.modules.get("IPython")  # a kernel has imported it; never import it here
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
