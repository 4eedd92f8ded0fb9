# ipdpool: IPD pooled analysis of randomized trials.
# Run from the repository root:  snakemake --cores 4


import os

from snakemake.utils import min_version

min_version("9.0")

# Everything the workflow creates (logs, audit files, plots, the report, folders) is owner-only
# from creation: 0600 files in 0700 folders. Jobs inherit the mask; existing folders keep their mode.
os.umask(0o077)


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


localrules:
    all,
    result_tables,
    mi_pool,
    report_pages,


include: "workflow/rules/common.smk"


# Participant-level folders are owner-only from creation (before any job, so before
# Snakemake creates them with the umask's mode); existing folders keep their mode.
# Temporary files of a killed run are removed before any job starts (no job can own them then).
onstart:
    for folder in PRIVATE_DIRS:
        make_private_dirs(folder)
        for name in remove_stale_temporaries(folder):
            print(f"removed {folder}/{name}, left by an interrupted run")


include: "workflow/rules/harmonize.smk"
include: "workflow/rules/imputation.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/twostage.smk"
include: "workflow/rules/federated.smk"
include: "workflow/rules/causal.smk"


rule all:
    default_target: True
    input:
        # participant data held here (none when every study sent a site bundle)
        ["results/raw_inventory.tsv", "results/harmonized/pooled.parquet"]
        if STUDIES
        else [],
        # every figure in every configured format, so that a format added later is drawn
        [
            path
            for study in STUDIES
            for path in figure_files(f"results/audit/{study}/distributions")
        ],
        "results/tables/table1.tsv",
        # each site bundle's authenticity and the models its study was refused for
        ["results/audit/bundles.tsv"] if BUNDLES else [],
        "results/tables/one_stage.tsv",
        "results/tables/replication.tsv",
        "results/tables/two_stage.tsv",
        "results/tables/aggregate_meta.tsv",
        MI_TABLE,
        (
            ["results/tables/tipping_point_summary.tsv"]
            + figure_files("results/figures/tipping_point")
            if TIPPING_OUTCOMES
            else []
        ),
        figure_files("results/figures/participant_flow"),
        [
            path
            for outcome in OUTCOMES
            for name, term in REPORTED
            for path in figure_files(
                f"results/figures/forest/{outcome}/{name}__{slug(term)}"
            )
        ],
        "results/summary.md",
        rules.causal.output,
        rules.report_pages.output,
        rules.publication_tables.output,
        # the pooled data with its codebook, the rules of all studies (TSV and XLSX) and the
        # hand-off files for R, Stata and SPSS
        rules.pool.output if STUDIES else [],
