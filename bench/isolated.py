"""Run one benchmark configuration in a fresh Python process, so that no run inherits another's
allocator, thread pool or warmed-up caches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def run_isolated(
    script: str,
    flag: str,
    config: dict[str, Any],
    what: str,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``python script flag <config as JSON>`` and return the JSON object on its last line.

    ``env``: variables added to this process's environment for the child (read as it starts,
    e.g. an allocator's settings).

    Raises:
        RuntimeError: the process failed; the message holds ``what`` and its stderr.
    """
    out = subprocess.run(
        [sys.executable, script, flag, json.dumps(config)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark of {what} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])
