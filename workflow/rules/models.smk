# One job per outcome: the one-stage model and the two-stage meta-analysis (each cheaper than a job's start-up).
rule outcome_models:
    input:
        STATISTICS,
    output:
        primary="results/models/{outcome}/one_stage.tsv",
        sensitivity="results/models/{outcome}/sensitivity.tsv",
        per_study="results/models/{outcome}/per_study.tsv",
        two_stage="results/models/{outcome}/two_stage.tsv",
        leave_one_out="results/models/{outcome}/leave_one_out.tsv",
    log:
        "logs/models/{outcome}.log",
    benchmark:
        "benchmarks/models/{outcome}.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        analysis=config["analysis"],
    script:
        "../scripts/outcome_models.py"


rule one_stage_tables:
    input:
        primary=expand("results/models/{outcome}/one_stage.tsv", outcome=OUTCOMES),
        sensitivity=expand("results/models/{outcome}/sensitivity.tsv", outcome=OUTCOMES),
    output:
        primary="results/tables/one_stage.tsv",
        sensitivity="results/tables/sensitivity.tsv",
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
        "results/tables/replication.tsv",
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
