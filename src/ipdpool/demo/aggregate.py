"""Write the demo's aggregate-data file: summaries of the five demo trials, as a trialist
would type them from a paper (rounded), and one aggregate-only trial modelled on the
Norwegian IPS trial (Reme et al. 2019: 410 randomized, 18-month follow-up).

    python -m ipdpool.demo.aggregate [--out config/aggregate/ips_rcts.tsv]

The Norwegian numbers are invented from the demo's latent model (see NORWAY below).
"""

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from ..aggregate import COLUMNS
from .design import INSTRUMENTS, TRIALS, TRUE_EMPLOYED_SMD
from .generate import build_demo

REFERENCES = {
    "EU6": "synthetic demo trial EU6 (modelled on Burns et al. 2007)",
    "DK": "synthetic demo trial DK (modelled on Christensen et al. 2019)",
    "SE": "synthetic demo trial SE (modelled on Bejerholm et al. 2015)",
    "NL": "synthetic demo trial NL (modelled on Michon et al. 2014)",
    "US": "synthetic demo trial US (modelled on Mueser et al. 2004)",
}
# Invented aggregate-only trial: 410 randomized (205 per arm), about 80% assessed at 18
# months, employment 37% with IPS vs 22% with usual services; IPS acts only through work,
# so the true IPS effect on each outcome is the employed SMD times 0.15.
NORWAY = {
    "trial": "NO",
    "reference": "invented aggregate-only trial modelled on Reme et al. 2019 (410 randomized)",
    "n": {"IPS": 166, "SAU": 162},
    "employment_difference": 0.15,
    "instruments": {"quality_of_life": "WHOQOL_PSY", "depression": "BDI2", "anxiety": "BAI", "functioning": "GAF"},
}


def decimals(instrument) -> int:
    return 2 if instrument.step < 1 else 1


def demo_rows(seed=None) -> list[list]:
    demo = build_demo() if seed is None else build_demo(seed)
    rows = []
    for study, trial in TRIALS.items():
        truth = demo.exports[study].truth
        arm = np.where(truth["ips"] == 1, "IPS", "SAU")
        for outcome, name in trial.instruments.items():
            instrument = INSTRUMENTS[name]
            digits = decimals(instrument)
            for group in ("IPS", "SAU"):
                follow = truth.loc[(arm == group) & truth[f"{outcome}_fu_score"].notna(), f"{outcome}_fu_score"]
                base = truth.loc[(arm == group) & truth[f"{outcome}_bl_score"].notna(), f"{outcome}_bl_score"]
                rows.append([
                    study, REFERENCES[study], outcome, name, "reversed" if instrument.direction < 0 else "same", group,
                    len(follow), round(follow.mean(), digits), round(follow.std(ddof=1), digits),
                    round(base.mean(), digits), round(base.std(ddof=1), digits),
                ])  # fmt: skip
    for outcome, name in NORWAY["instruments"].items():
        instrument = INSTRUMENTS[name]
        digits = decimals(instrument)
        shift = TRUE_EMPLOYED_SMD[outcome] * NORWAY["employment_difference"]
        for group, latent_mean in (("IPS", shift), ("SAU", 0.0)):
            rows.append([
                NORWAY["trial"], NORWAY["reference"], outcome, name, "reversed" if instrument.direction < 0 else "same",
                group, NORWAY["n"][group],
                round(float(instrument.exact(latent_mean)), digits), round(instrument.points_per_sd, digits), "", "",
            ])  # fmt: skip
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ipdpool.demo.aggregate", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("config/aggregate/ips_rcts.tsv"))
    args = parser.parse_args(argv)
    buffer = io.StringIO()
    buffer.write(
        "# Aggregate data (follow-up n, mean, SD per arm). Written by `python -m ipdpool.demo.aggregate`: "
        "SYNTHETIC demo values.\n"
    )
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(demo_rows())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(buffer.getvalue(), encoding="utf-8")
    print(args.out)


if __name__ == "__main__":
    main()
