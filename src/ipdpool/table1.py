"""Table 1: baseline characteristics by study and arm, and pooled, from aggregates only.

Each study contributes counts, means and SDs by arm (federated.table1_aggregates), so a study
that sent a site bundle appears exactly as one whose participant data are held. Pooled
means and SDs are combined exactly from the studies' n, means and SDs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["study", "arm", "characteristic", "level", "n", "count", "percent", "mean", "sd", "instrument"]


def pool_moments(parts: list[dict]) -> dict:
    """n, mean and SD of the union of groups given by their n, mean and SD."""
    parts = [p for p in parts if p["n"]]
    n = sum(p["n"] for p in parts)
    if not n:
        return {"n": 0, "mean": None, "sd": None}
    mean = sum(p["n"] * p["mean"] for p in parts) / n
    squares = sum((p["n"] - 1) * (p["sd"] or 0.0) ** 2 + p["n"] * (p["mean"] - mean) ** 2 for p in parts)
    return {"n": n, "mean": mean, "sd": float(np.sqrt(squares / (n - 1))) if n > 1 else None}


def rows_for(study: str, arm: str, entry: dict) -> list[dict]:
    rows = [{"study": study, "arm": arm, "characteristic": "participants", "n": entry["n"]}]
    rows.append(
        {
            "study": study,
            "arm": arm,
            "characteristic": "age",
            "n": entry["age"]["n"],
            "mean": entry["age"]["mean"],
            "sd": entry["age"]["sd"],
        }
    )
    for column in ("sex", "diagnosis", "employed"):
        counts = {k: v for k, v in entry[column].items() if k != "missing"}
        known = sum(counts.values())
        for level, count in counts.items():
            rows.append(
                {
                    "study": study,
                    "arm": arm,
                    "characteristic": column,
                    "level": level,
                    "n": known,
                    "count": count,
                    "percent": 100 * count / known if known else None,
                }
            )
    for outcome, o in entry["outcomes"].items():
        rows.append({
            "study": study, "arm": arm, "characteristic": f"{outcome} at baseline", "n": o["baseline_n"],
            "mean": o["baseline_mean"], "sd": o["baseline_sd"], "instrument": o["instrument"],
        })  # fmt: skip
        # Completion among those asked: participants of the studies that measured the outcome.
        asked = o.get("followup_of", entry["n"] if o["instrument"] else 0)
        rows.append({
            "study": study, "arm": arm, "characteristic": f"{outcome} follow-up completed", "n": asked,
            "count": o["followup_n"] if asked else None, "percent": 100 * o["followup_n"] / asked if asked else None,
        })  # fmt: skip
    return rows


def pooled_entry(entries: list[dict]) -> dict:
    """The studies' arm entries combined (baseline scores only where the instrument is shared)."""
    out = {"n": sum(e["n"] for e in entries), "age": pool_moments([e["age"] for e in entries])}
    for column in ("sex", "diagnosis", "employed"):
        levels = sorted({k for e in entries for k in e[column]})
        out[column] = {level: sum(e[column].get(level, 0) for e in entries) for level in levels}
    out["outcomes"] = {}
    for outcome in sorted({o for e in entries for o in e["outcomes"]}):
        parts = [
            e["outcomes"][outcome] for e in entries if outcome in e["outcomes"] and e["outcomes"][outcome]["baseline_n"]
        ]
        instruments = {p["instrument"] for p in parts}
        moments = (
            pool_moments([{"n": p["baseline_n"], "mean": p["baseline_mean"], "sd": p["baseline_sd"]} for p in parts])
            if len(instruments) == 1
            else {"n": sum(p["baseline_n"] for p in parts), "mean": None, "sd": None}
        )
        out["outcomes"][outcome] = {
            "instrument": instruments.pop() if len(instruments) == 1 else "mixed instruments",
            "baseline_n": moments["n"], "baseline_mean": moments["mean"], "baseline_sd": moments["sd"],
            "followup_n": sum(e["outcomes"][outcome]["followup_n"] for e in entries if outcome in e["outcomes"]),
            "followup_of": sum(e["n"] for e in entries if e["outcomes"].get(outcome, {}).get("instrument")),
        }  # fmt: skip
    return out


def table1_table(aggregates: dict[str, dict]) -> pd.DataFrame:
    """Rows per study x arm and pooled ("all"), in the order of the studies."""
    rows = []
    for study, by_arm in aggregates.items():
        for arm, entry in by_arm.items():
            rows += rows_for(study, arm, entry)
    for arm in ("IPS", "SAU"):
        rows += rows_for("all", arm, pooled_entry([by_arm[arm] for by_arm in aggregates.values() if arm in by_arm]))
    return pd.DataFrame(rows).reindex(columns=COLUMNS)
