"""What the nested-subset rule costs on the demo, per seed and study: how many pairs of released
sums of one quantity (by designs, Table 1 with its 2x2 tables, follow-up scores by arm) differ by 1
to nfilter_subset - 1 participants before the rule; the statistics harmonized or withheld by it
(the two choices of federated.disclosure.nested), with the participant-rows the harmonized ones
lose; and the pairs of whole statistics still differing by 1 to nfilter_subset - 1 after it (they
share no quantity, so they cannot be subtracted). The figures are quoted in docs/privacy.md.
Multiple imputation's statistics (multiple_imputation.in_bundles) are left out here.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_release_rule.py 20210901 1 2 3 4
"""

import sys
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

from ipdpool.demo.generate import DEFAULT_SEED, write_demo
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import conform, load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.releases import release_scope, released_sets, resolve_nested, small_differences

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


def kind(name: str) -> str:
    return "table1" if name.startswith("table1/") else "arms" if ":arms/" in name else "design"


def main(seeds: list[int], threshold: int = 3) -> None:
    analysis = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["analysis"]
    levels = load_schema(REPO / "config" / "schema.yaml")["variables"]["diagnosis"]["allowed"]
    print(
        "seed\tstudy\tstatistics\tsum_pairs_1_to_2\tharmonized(design/table1/arms)\trows_lost\trows\twithheld\twhole_pairs_left"
    )
    totals = dict.fromkeys(
        ["statistics", "designs", "pairs", "harmonized", "designs_changed", "withheld", "lost", "rows", "left"], 0
    )
    for seed in seeds:
        data = harmonized_demo(seed)
        for study, part in data.groupby("study"):
            sets = released_sets(part, analysis)
            scope = release_scope(part, analysis, sets, levels)
            pairs = small_differences(sets, threshold, scope)
            kept, harmonized = resolve_nested(sets, threshold, "harmonize", scope)
            _, withheld = resolve_nested(sets, threshold, "withhold", scope)
            lost = sum(len(sets[k]) - len(kept.get(k, ())) for k in sets)
            rows = sum(len(s) for s in sets.values())
            left = small_differences(kept, threshold)
            kinds = Counter(kind(name) for name in harmonized)
            changed = f"{len(harmonized)} ({kinds['design']}/{kinds['table1']}/{kinds['arms']})"
            print(
                f"{seed}\t{study}\t{len(sets)}\t{len(pairs)}\t{changed}\t{lost}\t{rows}\t{len(withheld)}\t{len(left)}"
            )
            designs = sum(kind(name) == "design" for name in sets)
            values = (
                len(sets),
                designs,
                len(pairs),
                len(harmonized),
                kinds["design"],
                len(withheld),
                lost,
                rows,
                len(left),
            )
            for name, value in zip(totals, values):
                totals[name] += value
    t = totals
    share = {k: 100 * t[k] / t[d] for k, d in (("harmonized", "statistics"), ("designs_changed", "designs"),
                                              ("lost", "rows"), ("withheld", "statistics"))}  # fmt: skip
    print(
        f"# {len(seeds)} seeds: {t['statistics']} statistics ({t['designs']} designs); {t['pairs']} pairs of sums "
        f"within 1 to {threshold - 1}; harmonize changes {t['harmonized']} statistics ({share['harmonized']:.0f}%; "
        f"{t['designs_changed']} designs, {share['designs_changed']:.0f}%), losing {t['lost']} of {t['rows']} "
        f"participant-rows ({share['lost']:.1f}%); withhold removes {t['withheld']} statistics "
        f"({share['withheld']:.0f}%); {t['left']} pairs of whole statistics left within 1 to {threshold - 1} "
        "(no quantity in common)"
    )


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [DEFAULT_SEED])
