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
        report(
            "results/raw_inventory.tsv",
            caption="../report/raw_inventory.rst",
            category="Data and harmonization",
        ),
    log:
        "logs/inventory/all.log",
    benchmark:
        "benchmarks/inventory/all.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/combine_inventory.py"
