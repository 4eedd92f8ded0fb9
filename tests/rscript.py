"""Reference numbers computed live by R (lme4, lmerTest, pbkrtest, metafor).

A test hands R a script and, optionally, data frames written to CSV; the script
assigns its answer to `out`, which comes back through jsonlite. Without Rscript the
test is skipped with the reason, except in CI (CI=true), where it fails: CI always
installs R, so a skipped reference test there means a missing install step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

# lme4 with tight optimizer tolerances, so that the reference sits at its optimum to within the
# tests' tolerances: prefix a script with this and pass `control = tight` to lmer
LME4_TIGHT = r"""
suppressPackageStartupMessages(library(lme4))
tight <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-15,
                     xtol_rel = 1e-14, ftol_rel = 1e-15, maxeval = 1e5))
"""


def require_rscript() -> str:
    path = shutil.which("Rscript")
    if path is None:
        reason = "Rscript not installed: R reference tests need r-base-core and the r-cran-* packages of .ci/run"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def run_r(script: str, frames: dict[str, pd.DataFrame] | None = None, timeout: int = 600):
    """Run `script` with each frame available as an R data.frame of the same name; return `out`."""
    rscript = require_rscript()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        reads = []
        for name, frame in (frames or {}).items():
            path = folder / f"{name}.csv"
            frame.to_csv(path, index=False, float_format="%.17g")
            reads.append(f'{name} <- read.csv("{path}", stringsAsFactors = FALSE)')
        result_path = folder / "out.json"
        program = "\n".join(
            [
                "suppressPackageStartupMessages({library(jsonlite)})",
                *reads,
                script,
                f'writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, na = "null"), "{result_path}")',
            ]
        )
        (folder / "script.R").write_text(program)
        done = subprocess.run(
            [rscript, "--vanilla", str(folder / "script.R")], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"Rscript failed:\n{done.stderr[-4000:]}")
        return json.loads(result_path.read_text())
