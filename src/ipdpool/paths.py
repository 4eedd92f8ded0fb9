"""Folders for participant-level files and file checksums (standard library only: the Snakefile imports this)."""

from __future__ import annotations

import hashlib
import os
import re
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


# tempfile.mkstemp(prefix=".<name>.") names: a dot, the final file's name, a dot, 8 random characters.
TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}")


def remove_stale_temporaries(folder: Path) -> list[str]:
    """Delete the half-written temporary files a killed run left in `folder` (names returned).

    Call only when no job is running (Snakemake's onstart): a running job's temporary file
    looks the same."""
    folder = Path(folder)
    stale = (
        [path for path in folder.iterdir() if path.is_file() and TEMPORARY.fullmatch(path.name)]
        if folder.is_dir()
        else []
    )
    for path in stale:
        path.unlink(missing_ok=True)
    return sorted(path.name for path in stale)


def export_workflow_root(folder) -> None:
    """IPDPOOL_ROOT for workflow/envs/ipdpool.yaml: pip expands it to install the lock file and
    this package from the workflow's folder, wherever the conda prefix is; jobs inherit it."""
    os.environ["IPDPOOL_ROOT"] = str(folder)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shown_paths(paths) -> list[str]:
    """Paths for a message: each file once (Snakemake lists the default config file again, absolute, when
    --configfile names it), relative to the working folder when inside it."""
    here = Path.cwd()
    resolved = dict.fromkeys(Path(path).resolve() for path in paths)
    return [str(path.relative_to(here)) if path.is_relative_to(here) else str(path) for path in resolved]
