"""The ``sliceseg`` command: one subcommand per workflow, no logic of its own.

Exit codes: 0 success; 1 ``check`` found the data unfit (a verdict); 2 a user error
(one line on stderr, no traceback); 3 ``predict`` / ``merge``: some series failed (listed in
``OUT/failed.csv``; the same command again retries them); 4 a bug in sliceseg (one line on
stderr naming the log file that holds the traceback); 130 interrupted (Ctrl-C); 143
terminated (SIGTERM: ``kill``, a batch job's time limit), ending as on Ctrl-C.

One module per group of commands (``info``, ``phantom``, ``training``, ``prediction``,
``measurement``), the options they share in ``options``, the exit codes in ``exits``, the
parser and ``main`` in ``command``.
"""

from sliceseg.cli.command import build_parser, main

__all__ = ["build_parser", "main"]
