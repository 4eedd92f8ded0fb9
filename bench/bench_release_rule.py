"""What the nested-subset rule costs on the demo: per seed and study, the designs whose
participant sets differ from another design's by 1 to nfilter_subset - 1 before the rule, and
the designs harmonized or withheld by it (the two choices of federated.disclosure.nested), with
the participant-rows the harmonized designs lose. The figures are quoted in docs/privacy.md.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_release_rule.py 20261205 1 2 3 4
"""

import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from ipdpool.demo.generate import DEFAULT_SEED, write_demo
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import conform, load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.releases import design_participants, resolve_nested, small_differences, summary_participants

REPO = Path(__file__).resolve().parents[1]
STUDIES = ("DK", "EU6", "NL", "SE", "US")


def harmonized_demo(seed: int) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as folder:
        write_demo(Path(folder) / "resources" / "demo", seed=seed)
        schema = load_schema(REPO / "config" / "schema.yaml")
        frames = [
            harmonize_study(
                load_rules(REPO / "config" / "studies" / f"{study}.yaml"), schema, b"bench-key-0123456789", Path(folder)
            ).data
            for study in STUDIES
        ]
    return conform(pd.concat(frames, ignore_index=True), schema)


def main(seeds: list[int], threshold: int = 3) -> None:
    analysis = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["analysis"]
    print("seed\tstudy\tdesigns\tpairs_1_to_2\tharmonized\trows_lost\trows\twithheld\tsummary_pairs")
    totals = {"designs": 0, "pairs": 0, "harmonized": 0, "withheld": 0, "lost": 0, "rows": 0}
    for seed in seeds:
        data = harmonized_demo(seed)
        for study, part in data.groupby("study"):
            sets = design_participants(part, analysis)
            pairs = small_differences(sets, threshold)
            kept, harmonized = resolve_nested(sets, threshold, "harmonize")
            _, withheld = resolve_nested(sets, threshold, "withhold")
            lost = sum(len(sets[k]) - len(kept.get(k, ())) for k in sets)
            rows = sum(len(s) for s in sets.values())
            residual = small_differences({**kept, **summary_participants(part, analysis["outcomes"])}, threshold)
            print(
                f"{seed}\t{study}\t{len(sets)}\t{len(pairs)}\t{len(harmonized)}\t{lost}\t{rows}\t{len(withheld)}"
                f"\t{len(residual)}"
            )
            for name, value in zip(totals, (len(sets), len(pairs), len(harmonized), len(withheld), lost, rows)):
                totals[name] += value
    print(
        f"# {len(seeds)} seeds: {totals['designs']} designs; {totals['pairs']} pairs within 1 to {threshold - 1}; "
        f"harmonize changes {totals['harmonized']} designs ({100 * totals['harmonized'] / totals['designs']:.0f}%), "
        f"losing {totals['lost']} of {totals['rows']} participant-rows ({100 * totals['lost'] / totals['rows']:.1f}%); "
        f"withhold removes {totals['withheld']} designs ({100 * totals['withheld'] / totals['designs']:.0f}%)"
    )


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [DEFAULT_SEED])
