from pathlib import Path

import pandas as pd
from ipdpool.harmonize.audit import plot_distributions
from ipdpool.harmonize.pseudonym import load_key
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.logutil import logged_to

with logged_to(snakemake.log[0]) as log:
    rules = load_rules(snakemake.input.rules, snakemake.params.rule_schema)
    # Raw values are not stored anywhere; re-derive them in memory for the "before" panels.
    result = harmonize_study(rules, load_schema(Path(snakemake.input.schema)), load_key(snakemake.config))
    plot_distributions(result, pd.read_parquet(snakemake.input.data), snakemake.output[0])
    log.info("study %s: distributions plotted", result.study)
