"""An output folder's ``cohort.json``: created whole by the first run or shard into it, and
compared by every later one.

``OUT/cohort.json`` (`sliceseg.inference.records.RunRecord`) names the model and the settings
that shape the results. Shards of one run start at once into an empty folder: each found none,
and each wrote its own, so the last one's stood while the others ran with settings it does not
name. It is now created as the shards' plan is (`sliceseg.inference.shard_lock.create_whole`:
one process creates it, the others read it and compare, and one with another model or
settings is refused in one line naming the difference); only ``--overwrite`` replaces it.
"""

from __future__ import annotations

import json
from pathlib import Path

from sliceseg.errors import ConfigError
from sliceseg.inference.records import RUN_RECORD, RunRecord, read_json
from sliceseg.inference.shard_lock import create_whole
from sliceseg.io.files import atomic_write_text, finished_outputs
from sliceseg.io.output_folders import (
    OVERWRITE,
    create_output_dir,
    folder_in_use,
    not_a_folder,
)

__all__ = ["check_out_dir"]


def check_out_dir(out: Path, record: RunRecord, *, overwrite: bool) -> str | None:
    """Refuse an output folder made by another model or settings, or not by a cohort run.

    Then write ``cohort.json`` (same content from every shard): created whole where there is
    none, so that of shards starting at once one creates it and the others compare theirs with
    it; replaced only with ``overwrite``.

    Returns:
        None when this call left ``cohort.json`` as it was; else what it held before ("" when
        there was none), for `sliceseg.inference.records.undo_run_record`.

    Raises:
        ConfigError: the folder holds other files, or another model / other settings made it
            (also a shard that started in the same moment), and ``overwrite`` is False.

    Example:
        >>> check_out_dir(Path("results"), RunRecord("m.pt", sha256, RunSettings(("psoas",))), overwrite=False)
        ''
    """  # noqa: E501
    if out.exists() and not out.is_dir():
        raise not_a_folder(out)
    path, text = out / RUN_RECORD, json.dumps(record.to_dict(), indent=2) + "\n"
    for _ in range(3):  # created (or replaced) by another shard meanwhile: look at it
        stored = read_json(path)
        if stored is None:
            if _created(out, text, overwrite=overwrite):
                return ""
            continue
        why = record.difference(stored)
        if why is None:
            return None
        if not overwrite:
            raise ConfigError(
                f"{out}: {why}; use another --out, or pass {OVERWRITE} to redo every series."
            )
        previous = path.read_text(encoding="utf-8")
        atomic_write_text(path, text)
        return previous
    raise ConfigError(f"{path}: the record of this folder's run keeps being replaced; run again.")


def _created(out: Path, text: str, *, overwrite: bool) -> bool:
    """Create ``cohort.json`` holding ``text`` in a folder that had none; False when another
    shard created it since (`create_whole`), to be compared with.

    Raises:
        ConfigError: the folder holds other files, and ``overwrite`` is False.
    """
    path = out / RUN_RECORD
    if not overwrite and out.is_dir() and finished_outputs(out):
        if read_json(path) is not None:  # another shard created it since it was looked for
            return False
        raise folder_in_use(out)
    create_output_dir(out)
    if create_whole(path, text):
        return True
    if not overwrite or read_json(path) is not None:  # another shard's: compare with it
        return False
    atomic_write_text(path, text)  # a damaged one (not JSON), replaced as other files are
    return True
