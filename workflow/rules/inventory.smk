rule inventory_study:
    input:
        rules=lambda wildcards: config["studies"][wildcards.study],
        raw=raw_files,
    output:
        "results/inventory/{study}.tsv",
    log:
        "logs/inventory/{study}.log",
    benchmark:
        "benchmarks/inventory/{study}.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        rule_schema=STUDY_SCHEMA,
    script:
        "../scripts/inventory_study.py"


rule inventory:
    input:
        expand("results/inventory/{study}.tsv", study=STUDIES),
    output:
        "results/raw_inventory.tsv",
    log:
        "logs/inventory/all.log",
    benchmark:
        "benchmarks/inventory/all.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/combine_inventory.py"
