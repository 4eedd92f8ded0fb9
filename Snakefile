# ipdpool: IPD pooled analysis of randomized trials.
# Run from the repository root:  snakemake --cores 4


from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


localrules:
    all,
    inventory,
    pool,
    one_stage_tables,
    two_stage_tables,
    replication,
    summary,


include: "workflow/rules/common.smk"


# Participant-level folders are owner-only from creation (before any job, so before
# Snakemake creates them with the umask's mode); existing folders keep their mode.
onstart:
    for folder in PRIVATE_DIRS:
        make_private_dirs(folder)


include: "workflow/rules/inventory.smk"
include: "workflow/rules/harmonize.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/twostage.smk"
include: "workflow/rules/federated.smk"


rule all:
    default_target: True
    input:
        # participant data held here (none when every study sent a site bundle)
        ["results/raw_inventory.tsv", "results/harmonized/pooled.parquet"]
        if STUDIES
        else [],
        expand("results/audit/{study}/distributions.png", study=STUDIES),
        "results/tables/table1.tsv",
        "results/tables/one_stage.tsv",
        "results/tables/replication.tsv",
        "results/tables/two_stage.tsv",
        "results/tables/aggregate_meta.tsv",
        "results/figures/participant_flow.png",
        [
            f"results/figures/forest/{outcome}/{name}__{slug(term)}.png"
            for outcome in OUTCOMES
            for name, term in REPORTED
        ],
        "results/summary.md",
