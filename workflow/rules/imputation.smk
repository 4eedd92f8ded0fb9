# Multiple imputation of missing follow-up, baseline and employment (ipdpool.imputation): the
# imputations in chunks (one job each, every outcome: a job per outcome and chunk would pay the
# start-up many times over; every imputation has its own seed, so the tables do not depend on the
# chunking or --cores), pooled by Rubin's rules; and a tipping-point analysis (delta adjustment)
# of the headline SMDs on the participant data held here.

MI = config["multiple_imputation"]
MI_SETTINGS = {k: MI[k] for k in ("imputations", "method", "iterations", "seed")}
MI_CHUNKS = list(range(-(-MI["imputations"] // MI["chunk_size"])))
# With site bundles, MI needs their completed data sets' statistics (in_bundles at the sites and here).
MI_ENABLED = not BUNDLES or MI["in_bundles"]
MI_TABLE = ["results/tables/multiple_imputation.tsv"] if MI_ENABLED else []
TIPPING = MI["tipping_point"]
# Delta adjustment needs every study's rows (a bundle carries its completed data sets' statistics only).
TIPPING_OUTCOMES = (
    [o for o in TIPPING["outcomes"] if o in OUTCOMES] if STUDIES and not BUNDLES else []
)


# With federated.disclosure.apply_to_pooled_ipd (SAME_SETS) every study held here contributes its
# released completed data sets' statistics (results/statistics), as a site bundle would.
rule mi_chunk:
    input:
        data=["results/harmonized/pooled.parquet"] if STUDIES and not SAME_SETS else [],
        schema=config["schema"],
        bundled=(
            STATISTICS
            if SAME_SETS
            else expand("results/statistics/{study}.json", study=list(BUNDLES))
        ),
    output:
        "results/imputation/chunks/{chunk}.parquet",
    log:
        "logs/imputation/chunk_{chunk}.log",
    benchmark:
        "benchmarks/imputation/chunk_{chunk}.tsv"
    wildcard_constraints:
        chunk=r"\d+",
    conda:
        "../envs/ipdpool.yaml"
    params:
        analysis=config["analysis"],
        mi=MI_SETTINGS,
        chunk_size=MI["chunk_size"],
    script:
        "../scripts/mi_chunk.py"


rule mi_pool:
    input:
        expand("results/imputation/chunks/{chunk}.parquet", chunk=MI_CHUNKS),
    output:
        "results/tables/multiple_imputation.tsv",
    log:
        "logs/imputation/pool.log",
    benchmark:
        "benchmarks/imputation/pool.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/mi_pool.py"


rule tipping_point_outcome:
    input:
        data="results/harmonized/pooled.parquet",
        schema=config["schema"],
    output:
        "results/imputation/tipping/{outcome}.parquet",
    log:
        "logs/imputation/tipping_{outcome}.log",
    benchmark:
        "benchmarks/imputation/tipping_{outcome}.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        analysis=config["analysis"],
        mi=MI_SETTINGS,
        tipping=TIPPING,
    script:
        "../scripts/tipping_point_outcome.py"


rule tipping_point:
    input:
        expand("results/imputation/tipping/{outcome}.parquet", outcome=TIPPING_OUTCOMES),
    output:
        grid="results/tables/tipping_point.tsv",
        summary="results/tables/tipping_point_summary.tsv",
        figure=figure_files(
            "results/figures/tipping_point",
            caption="../report/tipping_point_figure.rst",
            category="Sensitivity",
            labels={"figure": "Tipping point: headline SMDs against delta"},
        ),
    log:
        "logs/imputation/tipping.log",
    benchmark:
        "benchmarks/imputation/tipping.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        figures=config["figures"],
    script:
        "../scripts/tipping_point.py"


# A site's completed data sets' statistics, for its bundle (multiple_imputation.in_bundles).
rule site_imputations:
    input:
        data="results/harmonized/{study}.parquet",
        schema=config["schema"],
    output:
        "results/site/{study}.imputations.json",
    log:
        "logs/site/imputations_{study}.log",
    benchmark:
        "benchmarks/site/imputations_{study}.tsv"
    wildcard_constraints:
        study=one_of(STUDIES),
    conda:
        "../envs/ipdpool.yaml"
    params:
        analysis=config["analysis"],
        mi=MI_SETTINGS,
    script:
        "../scripts/site_imputations.py"
