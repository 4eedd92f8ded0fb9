"""Simulation study: the whole pipeline on repeated synthetic demos with new seeds.

Each replicate generates the five demo trials with a new seed, harmonizes them with the
shipped rule files, and estimates the worked-vs-not SMD of every outcome by
  - the one-stage mixed model, with t intervals on Satterthwaite and on Kenward-Roger df, and
  - the two-stage REML meta-analysis, with z and Knapp-Hartung intervals.
It prints bias, empirical SE, mean model SE and 95% CI coverage against the generator's
true SMDs, with Monte Carlo standard errors. The figures go into docs/validation.md.

Usage: python bench/simulation_study.py [--replicates 200] [--first-seed 1]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ipdpool.demo.design import TRUE_EMPLOYED_SMD
from ipdpool.demo.generate import write_demo
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import conform, load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.meta import meta_analysis
from ipdpool.models.onestage import ModelSpec, primary
from ipdpool.models.twostage import per_study_table

REPO = Path(__file__).resolve().parents[1]
STUDIES = ("EU6", "DK", "SE", "NL", "US")
MODEL = ModelSpec("employed", ("employed",), ("baseline",), {"employed": {"employed": 1}})
ANALYSIS = {
    "outcomes": list(TRUE_EMPLOYED_SMD),
    "models": {"employed": {"terms": ["employed"], "adjust": ["baseline"], "report": {"employed": {"employed": 1}}}},
}


def replicate(seed: int, schema: dict, folder: Path) -> list[dict]:
    write_demo(folder, seed=seed)
    frames = []
    for study in STUDIES:
        rules = load_rules(REPO / "config" / "studies" / f"{study}.yaml")
        rules["raw_dir"] = str(folder / "raw" / study)
        frames.append(harmonize_study(rules, schema, b"simulation-study-key-000").data)
    pooled = conform(pd.concat(frames, ignore_index=True), schema)
    rows = []
    for outcome, truth in TRUE_EMPLOYED_SMD.items():
        one = primary(pooled, outcome, MODEL)[0]
        kenward_roger = primary(pooled, outcome, MODEL, ddf="kenward_roger")[0]
        studies = per_study_table(pooled, outcome, ANALYSIS)
        studies = studies[studies["status"] == "estimated"]
        y, v = studies["estimate"].to_numpy(), studies["se"].to_numpy() ** 2
        reml, knapp = meta_analysis(y, v, "REML"), meta_analysis(y, v, "REML", hksj=True)
        for method, estimate, se, low, high in (
            ("one-stage Satterthwaite", one["estimate"], one["se"], one["ci_low"], one["ci_high"]),
            (
                "one-stage Kenward-Roger",
                kenward_roger["estimate"],
                kenward_roger["se"],
                kenward_roger["ci_low"],
                kenward_roger["ci_high"],
            ),
            ("two-stage REML z", reml.estimate, reml.se, reml.ci_low, reml.ci_high),
            ("two-stage REML Knapp-Hartung", knapp.estimate, knapp.se, knapp.ci_low, knapp.ci_high),
        ):
            rows.append(
                {
                    "seed": seed,
                    "outcome": outcome,
                    "method": method,
                    "truth": truth,
                    "estimate": estimate,
                    "se": se,
                    "covered": low <= truth <= high,
                }
            )
    return rows


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (outcome, method), group in results.groupby(["outcome", "method"], sort=False):
        n = len(group)
        error = group["estimate"] - group["truth"]
        coverage = group["covered"].mean()
        out.append(
            {
                "outcome": outcome,
                "method": method,
                "replicates": n,
                "true_smd": group["truth"].iloc[0],
                "bias": error.mean(),
                "bias_mcse": error.std(ddof=1) / np.sqrt(n),
                "empirical_se": group["estimate"].std(ddof=1),
                "mean_model_se": group["se"].mean(),
                "coverage": coverage,
                "coverage_mcse": np.sqrt(coverage * (1 - coverage) / n),
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the per-replicate results as TSV")
    args = parser.parse_args()
    schema = load_schema(REPO / "config" / "schema.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.first_seed, args.first_seed + args.replicates):
            rows += replicate(seed, schema, Path(folder))
    results = pd.DataFrame(rows)
    if args.out:
        results.to_csv(args.out, sep="\t", index=False)
    summary = summarize(results)
    with pd.option_context("display.width", 200, "display.max_rows", 100):
        print(summary.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(
        yaml.safe_dump(
            {"replicates": args.replicates, "seeds": f"{args.first_seed}-{args.first_seed + args.replicates - 1}"}
        )
    )


if __name__ == "__main__":
    main()
