"""Folders for participant-level files (standard library only: the Snakefile imports this)."""

from __future__ import annotations

import os
from pathlib import Path


def make_private_dirs(folder: Path) -> None:
    """Create the missing folders of `folder`, each owner-only (0700) at creation.

    Folders that already exist keep their mode: a shared 1777 folder such as /tmp, or a
    user's own output folder, is not ours to change.
    """
    missing = []
    folder = Path(folder)
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=0o700)
        except FileExistsError:  # another job created it first: not ours either
            continue
        os.chmod(created, 0o700)  # mkdir's mode is masked by the umask
