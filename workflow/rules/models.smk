rule one_stage_outcome:
    input:
        STATISTICS,
    output:
        primary="results/models/{outcome}/one_stage.tsv",
        sensitivity="results/models/{outcome}/sensitivity.tsv",
    log:
        "logs/models/{outcome}.log",
    benchmark:
        "benchmarks/models/{outcome}.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        analysis=config["analysis"],
    script:
        "../scripts/one_stage_outcome.py"


rule one_stage_tables:
    input:
        primary=expand("results/models/{outcome}/one_stage.tsv", outcome=OUTCOMES),
        sensitivity=expand("results/models/{outcome}/sensitivity.tsv", outcome=OUTCOMES),
    output:
        primary=report(
            "results/tables/one_stage.tsv",
            caption="../report/one_stage.rst",
            category="One-stage models",
        ),
        sensitivity=report(
            "results/tables/sensitivity.tsv",
            caption="../report/sensitivity.rst",
            category="Sensitivity",
        ),
    log:
        "logs/models/tables.log",
    benchmark:
        "benchmarks/models/tables.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/one_stage_tables.py"


rule replication:
    input:
        one_stage="results/tables/one_stage.tsv",
        truth=(
            [config["replication"]["ground_truth"]]
            if config["replication"].get("ground_truth")
            else []
        ),
    output:
        report(
            "results/tables/replication.tsv",
            caption="../report/replication.rst",
            category="Replication",
        ),
    log:
        "logs/models/replication.log",
    benchmark:
        "benchmarks/models/replication.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        replication=config["replication"],
    script:
        "../scripts/replication.py"
