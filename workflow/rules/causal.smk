# The causal analysis: first stage (IPS -> employment) from every study's 2x2 table (exact
# across sites), the IV effect of working per outcome (participant data held here) and the
# E-values of the headline observational SMDs; one job (small tables, one glmer fit).
rule causal:
    input:
        statistics=STATISTICS,
        one_stage=expand("results/models/{outcome}/one_stage.tsv", outcome=OUTCOMES),
        pooled=["results/harmonized/pooled.parquet"] if STUDIES else [],
    output:
        first_stage="results/tables/first_stage.tsv",
        iv="results/tables/iv.tsv",
        evalues="results/tables/evalues.tsv",
        forest=figure_files(
            "results/figures/first_stage",
            caption="../report/first_stage_figure.rst",
            category="Causal analysis",
            labels={"figure": "First stage: forest plot of odds ratios"},
        ),
    log:
        "logs/causal.log",
    benchmark:
        "benchmarks/causal.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        causal=config["causal"],
        outcomes=config["analysis"]["outcomes"],
        nfilter_tab=config["federated"]["disclosure"]["nfilter_tab"],
        # the participants the sites release (apply_to_pooled_ipd): the IV from the statistics too
        released_sets=SAME_SETS,
        formats=FIGURE_FORMATS,
        dpi=config["figures"]["png_dpi"],
    script:
        "../scripts/causal.py"
