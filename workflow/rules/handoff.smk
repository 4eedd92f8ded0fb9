# Hand-off files of the pooled participant data (Stata, SPSS, Parquet, CSV, data dictionary):
# participant-level, so inside the owner-only results/harmonized and never in `share`.


rule handoff:
    input:
        data="results/harmonized/pooled.parquet",
        schema=config["schema"],
    output:
        directory("results/harmonized/handoff"),
    log:
        "logs/handoff.log",
    benchmark:
        "benchmarks/handoff.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/handoff.py"
