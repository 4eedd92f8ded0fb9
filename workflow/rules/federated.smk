# Per-study sufficient statistics, site bundles and their import (see ipdpool.federated).


# The statistics of every study held here in one job: each takes a few milliseconds, while a
# job costs half a second of start-up (harmonization, the costly per-study step, stays per study).
rule study_statistics:
    input:
        data=expand("results/harmonized/{study}.parquet", study=STUDIES),
        schema=config["schema"],
    output:
        expand("results/statistics/{study}.json", study=STUDIES),
    log:
        "logs/statistics.log",
    benchmark:
        "benchmarks/statistics.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        analysis=statistics_settings(config["analysis"]),
    script:
        "../scripts/study_statistics.py"


rule site_bundle_study:
    input:
        statistics="results/statistics/{study}.json",
        flow="results/audit/{study}/flow.tsv",
        rule_log="results/audit/{study}/rule_log.tsv",
        rules=lambda wildcards: config["studies"][wildcards.study],
        schema=config["schema"],
        # federated multiple imputation: the statistics of the site's completed data sets
        imputations=lambda wildcards: (
            [f"results/site/{wildcards.study}.imputations.json"]
            if config["multiple_imputation"]["in_bundles"]
            else []
        ),
    output:
        "results/site/{study}.bundle.json",
    log:
        "logs/site/{study}.log",
    benchmark:
        "benchmarks/site/{study}.tsv"
    wildcard_constraints:
        study=one_of(STUDIES),
    conda:
        "../envs/ipdpool.yaml"
    params:
        analysis=config["analysis"],
        disclosure=config["federated"]["disclosure"],
    script:
        "../scripts/site_bundle.py"


rule site_bundle:
    input:
        expand("results/site/{study}.bundle.json", study=STUDIES),


rule import_bundle:
    input:
        bundle=lambda wildcards: BUNDLES[wildcards.study],
        schema=config["schema"],
    output:
        statistics="results/statistics/{study}.json",
        flow="results/audit/{study}/flow.tsv",
        rule_log="results/audit/{study}/rule_log.tsv",
    log:
        "logs/site/import_{study}.log",
    benchmark:
        "benchmarks/site/import_{study}.tsv"
    wildcard_constraints:
        study=one_of(list(BUNDLES)),
    conda:
        "../envs/ipdpool.yaml"
    params:
        analysis=config["analysis"],
    script:
        "../scripts/import_bundle.py"


rule audit_tables:
    input:
        flows=expand("results/audit/{study}/flow.tsv", study=ALL_STUDIES),
        rule_logs=expand("results/audit/{study}/rule_log.tsv", study=ALL_STUDIES),
    output:
        flow="results/audit/flow.tsv",
        status="results/audit/status_matrix.tsv",
    log:
        "logs/harmonize/audit_tables.log",
    benchmark:
        "benchmarks/harmonize/audit_tables.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/audit_tables.py"


rule table1:
    input:
        STATISTICS,
    output:
        "results/tables/table1.tsv",
    log:
        "logs/table1.log",
    benchmark:
        "benchmarks/table1.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/table1.py"
