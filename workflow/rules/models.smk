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


# The pooled tables of all outcomes, the replication table and the headline summary: one job,
# since each step reads a few small tables (a job of its own would cost more in start-up).
rule result_tables:
    input:
        one_stage=expand("results/models/{outcome}/one_stage.tsv", outcome=OUTCOMES),
        sensitivity=expand("results/models/{outcome}/sensitivity.tsv", outcome=OUTCOMES),
        per_study=expand("results/models/{outcome}/per_study.tsv", outcome=OUTCOMES),
        two_stage=expand("results/models/{outcome}/two_stage.tsv", outcome=OUTCOMES),
        leave_one_out=expand(
            "results/models/{outcome}/leave_one_out.tsv", outcome=OUTCOMES
        ),
        truth=(
            [config["replication"]["ground_truth"]]
            if config["replication"].get("ground_truth")
            else []
        ),
        schema=config["schema"],
    output:
        one_stage="results/tables/one_stage.tsv",
        sensitivity="results/tables/sensitivity.tsv",
        per_study="results/tables/per_study.tsv",
        two_stage="results/tables/two_stage.tsv",
        leave_one_out="results/tables/leave_one_out.tsv",
        replication="results/tables/replication.tsv",
        summary="results/summary.md",
    log:
        "logs/models/tables.log",
    benchmark:
        "benchmarks/models/tables.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        replication=config["replication"],
    script:
        "../scripts/result_tables.py"
