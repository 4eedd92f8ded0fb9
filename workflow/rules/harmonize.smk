rule harmonize_study:
    input:
        rules=lambda wildcards: config["studies"][wildcards.study],
        raw=raw_files,
        schema=config["schema"],
        key=KEY_FILES,
    output:
        data="results/harmonized/{study}.parquet",
        csv="results/harmonized/{study}.csv",
        rule_log="results/audit/{study}/rule_log.tsv",
        flow="results/audit/{study}/flow.tsv",
        arm_counts="results/audit/{study}/arm_counts.tsv",
        summary="results/audit/{study}/harmonization_summary.tsv",
        distributions="results/audit/{study}/distributions.tsv",
        # the raw tables as read (file, SHA-256, rows, columns): each file is read once
        inventory="results/inventory/{study}.tsv",
    log:
        "logs/harmonize/{study}.log",
    benchmark:
        "benchmarks/harmonize/{study}.tsv"
    wildcard_constraints:
        study=one_of(STUDIES),
    conda:
        "../envs/ipdpool.yaml"
    params:
        rule_schema=STUDY_SCHEMA,
        sha256=input_checksums,
    script:
        "../scripts/harmonize_study.py"


# Every study's before/after plot in one job, from the counts the harmonization jobs left (the
# raw files are read once): a plot takes a fraction of a second, a job of its own a second more.
rule audit_plots:
    input:
        expand("results/audit/{study}/distributions.tsv", study=STUDIES),
    output:
        [
            path
            for study in STUDIES
            for path in figure_files(
                f"results/audit/{study}/distributions",
                caption="../report/distributions.rst",
                category="Data and harmonization",
                subcategory=study,
            )
        ],
    log:
        "logs/audit_plots.log",
    benchmark:
        "benchmarks/audit_plots.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        studies=STUDIES,
        figures=config["figures"],
    script:
        "../scripts/audit_plots.py"


# The pooled participant data and everything describing it: codebook, reconciliation, the
# harmonization summary and raw inventory of all studies, the rules of all studies side by side
# (Rmonize's Data Processing Elements, TSV and XLSX) and the hand-off files for R, Stata and
# SPSS (participant-level, so inside the owner-only results/harmonized and never in `share`).
# One job: each part takes a fraction of a second, a job of its own about a second more.
rule pool:
    input:
        data=expand("results/harmonized/{study}.parquet", study=STUDIES),
        flows=expand("results/audit/{study}/flow.tsv", study=STUDIES),
        rules=[config["studies"][study] for study in STUDIES],
        schema=config["schema"],
        summaries=expand(
            "results/audit/{study}/harmonization_summary.tsv", study=STUDIES
        ),
        inventories=expand("results/inventory/{study}.tsv", study=STUDIES),
    output:
        data="results/harmonized/pooled.parquet",
        csv="results/harmonized/pooled.csv",
        codebook="results/harmonized/codebook.tsv",
        reconciliation="results/audit/reconciliation.tsv",
        # Harmonization evaluation (madshapR-style): every variable by study and arm, raw and
        # harmonized, from the summaries the harmonization jobs left (raw values stay in those jobs).
        summary="results/audit/harmonization_summary.tsv",
        inventory="results/raw_inventory.tsv",
        rules_tsv="results/tables/rules_overview.tsv",
        rules_xlsx="results/tables/rules_overview.xlsx",
        handoff=directory("results/harmonized/handoff"),
    log:
        "logs/harmonize/pool.log",
    benchmark:
        "benchmarks/harmonize/pool.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        rule_schema=STUDY_SCHEMA,
    script:
        "../scripts/pool.py"
