"""Aggregate (published) data: per trial, outcome and arm the follow-up n, mean and SD,
turned into Hedges' g (IPS minus usual services) and combined with IPD trials."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pandas as pd
import yaml

COLUMNS = [
    "trial",
    "reference",
    "outcome",
    "instrument",
    "direction",
    "arm",
    "n",
    "mean",
    "sd",
    "baseline_mean",
    "baseline_sd",
]
NUMERIC = ("n", "mean", "sd", "baseline_mean", "baseline_sd")


class AggregateDataError(Exception):
    def __init__(self, path: Path, problems: list[str]):
        self.path, self.problems = Path(path), problems
        super().__init__(
            f"aggregate-data file {path}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
        )


def _typed(record: dict) -> dict:
    out = {}
    for key, value in record.items():
        if value == "":
            out[key] = None
        elif key in NUMERIC:
            try:
                number = float(value)
                out[key] = int(number) if key == "n" and number.is_integer() else number
            except ValueError:
                out[key] = value  # the schema reports it
        else:
            out[key] = value
    return out


def read_aggregate(path: Path, schema_path: Path) -> pd.DataFrame:
    """The aggregate-data rows, or AggregateDataError naming every bad row (file line numbers)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise AggregateDataError(path, [f"cannot be read as a tab-separated table ({error})"]) from error
    problems = []
    missing = [
        c for c in ("trial", "outcome", "instrument", "direction", "arm", "n", "mean", "sd") if c not in frame.columns
    ]
    if missing:
        raise AggregateDataError(path, [f"missing columns {missing}; columns are {list(frame.columns)}"])
    lines = _data_lines(path)
    validator = jsonschema.Draft202012Validator(
        yaml.load(Path(schema_path).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    )
    records = [_typed(row) for row in frame.to_dict("records")]
    for line, record in zip(lines, records):
        for error in sorted(validator.iter_errors(record), key=lambda e: str(e.path)):
            field = "/".join(map(str, error.path)) or "row"
            problems.append(
                f"line {line} (trial {record.get('trial')!r}, outcome {record.get('outcome')!r}, "
                f"arm {record.get('arm')!r}): {field}: {error.message}"
            )
    keys = frame[["trial", "outcome", "arm"]].apply(tuple, axis=1)
    for key, group in frame.groupby(keys.to_numpy(), sort=False):
        if len(group) > 1:
            problems.append(
                f"lines {', '.join(str(lines[i]) for i in group.index)}: trial {key[0]!r}, outcome {key[1]!r}, "
                f"arm {key[2]!r} is listed more than once"
            )
    for (trial, outcome), group in frame.groupby(["trial", "outcome"], sort=False):
        arms = set(group["arm"])
        if arms != {"IPS", "SAU"} and arms <= {"IPS", "SAU"}:
            problems.append(
                f"lines {', '.join(str(lines[i]) for i in group.index)}: trial {trial!r}, outcome {outcome!r} "
                f"has no {({'IPS', 'SAU'} - arms).pop()} arm"
            )
        if group["instrument"].nunique() > 1 or group["direction"].nunique() > 1:
            problems.append(
                f"lines {', '.join(str(lines[i]) for i in group.index)}: trial {trial!r}, outcome {outcome!r}: "
                "arms disagree on instrument or direction"
            )
    if problems:
        raise AggregateDataError(path, problems)
    return pd.DataFrame([_typed(r) for r in frame.to_dict("records")]).reindex(columns=COLUMNS)


def _data_lines(path: Path) -> list[int]:
    """File line number of each data row (header and # comments skipped)."""
    numbers = []
    header_seen = False
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("#") or not line.strip():
            continue
        if not header_seen:
            header_seen = True
            continue
        numbers.append(number)
    return numbers


def trial_effects_from_aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Hedges' g of IPS minus SAU per trial and outcome, signed so that positive = more of the construct."""
    from .meta import hedges_g  # scipy: not at import, the Snakefile checks the file with read_aggregate

    out = []
    for (trial, outcome), group in rows.groupby(["trial", "outcome"], sort=False):
        ips, sau = group[group["arm"] == "IPS"].iloc[0], group[group["arm"] == "SAU"].iloc[0]
        g, variance = hedges_g(ips["n"], ips["mean"], ips["sd"], sau["n"], sau["mean"], sau["sd"])
        sign = -1.0 if ips["direction"] == "reversed" else 1.0
        out.append(
            {
                "trial": trial,
                "outcome": outcome,
                "source": "aggregate",
                "instrument": ips["instrument"],
                "g": sign * g,
                "variance": variance,
                "n_ips": int(ips["n"]),
                "n_sau": int(sau["n"]),
            }
        )
    return pd.DataFrame(out)


def trial_effects_from_ipd(statistics: dict[str, dict], outcome: str) -> pd.DataFrame:
    """The same Hedges' g from each IPD study's follow-up scores by arm (n, mean, SD), as held
    in its statistics (models.statistics), so site bundles serve as well as participant data."""
    from .meta import hedges_g

    out = []
    for study, content in sorted(statistics.items()):
        arms = content["outcomes"].get(outcome, {}).get("arms")
        if not arms or arms["IPS"]["n"] < 2 or arms["SAU"]["n"] < 2:
            continue
        ips, sau = arms["IPS"], arms["SAU"]
        g, variance = hedges_g(ips["n"], ips["mean"], ips["sd"], sau["n"], sau["mean"], sau["sd"])
        out.append(
            {
                "trial": study,
                "outcome": outcome,
                "source": "IPD",
                "instrument": arms["instrument"],
                "g": g,
                "variance": variance,
                "n_ips": ips["n"],
                "n_sau": sau["n"],
            }
        )
    return pd.DataFrame(out)


def aggregate_analyses(
    rows: pd.DataFrame, statistics: dict[str, dict] | None, prediction: str = "higgins"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per outcome: all trials from their aggregate data, and IPD where held plus aggregate
    data for the others, with the prediction-interval convention of meta_analysis.
    Returns (trial-level rows, pooled rows)."""
    from .meta import METHODS, meta_analysis

    from_aggregate = trial_effects_from_aggregate(rows)
    trial_rows, pooled_rows = [], []
    for outcome in dict.fromkeys(from_aggregate["outcome"]):
        aggregate = from_aggregate[from_aggregate["outcome"] == outcome]
        analyses = {"aggregate_only": aggregate}
        if statistics:
            ipd = trial_effects_from_ipd(statistics, outcome)
            analyses["ipd_where_available"] = pd.concat(
                [ipd, aggregate[~aggregate["trial"].isin(ipd["trial"] if len(ipd) else [])]], ignore_index=True
            )
        for analysis, trials in analyses.items():
            trials = trials.sort_values("trial", kind="stable").reset_index(drop=True)
            for row in trials.to_dict("records"):
                trial_rows.append({"analysis": analysis, **row})
            sources = "; ".join(
                f"{source}: {', '.join(group['trial'])}" for source, group in trials.groupby("source", sort=True)
            )
            g, variance = trials["g"].to_numpy(), trials["variance"].to_numpy()
            for method in METHODS:
                for hksj in (False,) if method == "FE" else (False, True):
                    result = meta_analysis(g, variance, method, hksj, prediction=prediction)
                    pooled_rows.append(
                        {
                            "analysis": analysis,
                            "outcome": outcome,
                            "contrast": "ips",
                            "k_ipd": int((trials["source"] == "IPD").sum()),
                            "k_aggregate": int((trials["source"] == "aggregate").sum()),
                            "trials": sources,
                            **result.row(),
                        }
                    )
    return pd.DataFrame(trial_rows), pd.DataFrame(pooled_rows)
