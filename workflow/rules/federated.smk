# Per-study sufficient statistics, site bundles and their import (see ipdpool.federated).


# The statistics of every study held here in one job: each takes a few milliseconds, while a
# job costs half a second of start-up (harmonization, the costly per-study step, stays per study).
rule study_statistics:
    input:
        data=expand("results/harmonized/{study}.parquet", study=STUDIES),
        schema=config["schema"],
        imputations=expand(
            "results/site/{study}.imputations.json", study=STUDIES if SAME_SETS else []
        ),
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
        disclosure=config["federated"]["disclosure"] if SAME_SETS else None,
    script:
        "../scripts/study_statistics.py"


# A site's bundle is computed from its harmonized data (the participant sets are needed for the
# nested-subset rule and the release ledger, which stays at the site outside results/).
rule site_bundle_study:
    input:
        data="results/harmonized/{study}.parquet",
        flow="results/audit/{study}/flow.tsv",
        rule_log="results/audit/{study}/rule_log.tsv",
        rules=lambda wildcards: config["studies"][wildcards.study],
        schema=config["schema"],
        key=KEY_FILES,
        # federated multiple imputation: the statistics of the site's completed data sets
        imputations=lambda wildcards: (
            [f"results/site/{wildcards.study}.imputations.json"]
            if config["multiple_imputation"]["in_bundles"]
            else []
        ),
    output:
        bundle="results/site/{study}.bundle.json",
        signature=(
            ["results/site/{study}.bundle.json.sig"]
            if config["federated"].get("signing_key")
            else []
        ),
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
        ledger=config["federated"]["ledger"],
        release_line=config["federated"].get("release_line", {}),
        # evaluated before Snakemake removes the old output: an earlier bundle means releases were made
        released_before=lambda wildcards: (
            config["federated"].get("released_before", False)
            or os.path.exists(f"results/site/{wildcards.study}.bundle.json")
        ),
        signing_key=config["federated"].get("signing_key", ""),
    script:
        "../scripts/site_bundle.py"


rule site_bundle:
    input:
        expand("results/site/{study}.bundle.json", study=STUDIES),


# A bundle is used only once its signature (or the acknowledged lack of one) and its content
# pass; designs the site withheld are refused here by name, never dropped silently.
rule import_bundle:
    input:
        bundle=lambda wildcards: BUNDLES[wildcards.study],
        signature=lambda wildcards: (
            [BUNDLES[wildcards.study] + ".sig"]
            if config["federated"].get("signatures")
            else []
        ),
        schema=config["schema"],
        bundle_schema="workflow/schemas/bundle.schema.json",
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
        federated=config["federated"],
    script:
        "../scripts/import_bundle.py"


rule bundle_table:
    input:
        expand("results/statistics/{study}.json", study=list(BUNDLES)),
    output:
        "results/audit/bundles.tsv",
    log:
        "logs/site/bundles.log",
    benchmark:
        "benchmarks/site/bundles.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/bundle_table.py"


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
