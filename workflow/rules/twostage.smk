rule two_stage_tables:
    input:
        per_study=expand("results/models/{outcome}/per_study.tsv", outcome=OUTCOMES),
        two_stage=expand("results/models/{outcome}/two_stage.tsv", outcome=OUTCOMES),
        leave_one_out=expand(
            "results/models/{outcome}/leave_one_out.tsv", outcome=OUTCOMES
        ),
    output:
        per_study="results/tables/per_study.tsv",
        two_stage="results/tables/two_stage.tsv",
        leave_one_out="results/tables/leave_one_out.tsv",
    log:
        "logs/two_stage/tables.log",
    benchmark:
        "benchmarks/two_stage/tables.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/combine_tables.py"


rule aggregate_meta:
    input:
        aggregate=config["aggregate"]["file"],
        schema="workflow/schemas/aggregate.schema.yaml",
        statistics=STATISTICS,
    output:
        trials="results/tables/aggregate_trials.tsv",
        meta="results/tables/aggregate_meta.tsv",
    log:
        "logs/two_stage/aggregate.log",
    benchmark:
        "benchmarks/two_stage/aggregate.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        prediction=config["analysis"]["prediction_interval"],
    script:
        "../scripts/aggregate_meta.py"


rule forest_plots:
    input:
        per_study="results/models/{outcome}/per_study.tsv",
        two_stage="results/models/{outcome}/two_stage.tsv",
        one_stage="results/models/{outcome}/one_stage.tsv",
        schema=config["schema"],
    output:
        png=[
            report(
                f"results/figures/forest/{{outcome}}/{name}__{slug(term)}.png",
                caption="../report/forest.rst",
                category="Forest plots",
                subcategory=lambda wildcards: outcome_label(
                    wildcards.outcome, SCHEMA_OUTCOMES[wildcards.outcome]
                ),
                labels=lambda wildcards, term=term: figure_labels(
                    wildcards.outcome, term, SCHEMA_OUTCOMES
                ),
            )
            for name, term in REPORTED
        ],
        svg=[
            f"results/figures/forest/{{outcome}}/{name}__{slug(term)}.svg"
            for name, term in REPORTED
        ],
    log:
        "logs/figures/forest_{outcome}.log",
    benchmark:
        "benchmarks/figures/forest_{outcome}.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        reported=REPORTED,
    script:
        "../scripts/forest_plots.py"


rule data_figures:
    input:
        flow="results/audit/flow.tsv",
        status="results/audit/status_matrix.tsv",
    output:
        flow=report(
            "results/figures/participant_flow.png",
            caption="../report/flow_figure.rst",
            category="Data and harmonization",
            labels={"figure": "Participant flow, all studies"},
        ),
        flow_svg="results/figures/participant_flow.svg",
        study_flows=[
            report(
                f"results/figures/flow/{study}.png",
                caption="../report/flow_figure.rst",
                category="Data and harmonization",
                subcategory="Participant flow by study",
                labels={"figure": f"Participant flow, study {study}"},
            )
            for study in ALL_STUDIES
        ],
        study_flow_svgs=expand("results/figures/flow/{study}.svg", study=ALL_STUDIES),
        status=report(
            "results/figures/harmonization_status.png",
            caption="../report/status_figure.rst",
            category="Data and harmonization",
            labels={"figure": "Harmonization status"},
        ),
        status_svg="results/figures/harmonization_status.svg",
    log:
        "logs/figures/data.log",
    benchmark:
        "benchmarks/figures/data.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/data_figures.py"


rule summary:
    input:
        one_stage="results/tables/one_stage.tsv",
        two_stage="results/tables/two_stage.tsv",
        replication="results/tables/replication.tsv",
    output:
        "results/summary.md",
    log:
        "logs/summary.log",
    benchmark:
        "benchmarks/summary.tsv"
    conda:
        "../envs/ipdpool.yaml"
    script:
        "../scripts/summary.py"


rule share:
    input:
        tables=expand(
            "results/tables/{table}.tsv",
            table=[
                "table1",
                "one_stage",
                "sensitivity",
                "replication",
                "per_study",
                "two_stage",
                "leave_one_out",
                "aggregate_trials",
                "aggregate_meta",
            ],
        ),
        audit=["results/audit/flow.tsv", "results/audit/status_matrix.tsv"]
        + (
            ["results/audit/reconciliation.tsv", "results/harmonized/codebook.tsv"]
            if STUDIES
            else []
        ),
        # The rules overview holds no counts; the harmonization summary (raw minima and
        # maxima, raw category labels) stays within the consortium.
        rules=["results/tables/rules_overview.tsv"] if STUDIES else [],
        figures=[
            f"results/figures/forest/{outcome}/{name}__{slug(term)}.{suffix}"
            for outcome in OUTCOMES
            for name, term in REPORTED
            for suffix in ("png", "svg")
        ]
        + [
            "results/figures/harmonization_status.png",
            "results/figures/harmonization_status.svg",
        ],
    output:
        directory("results/share"),
    log:
        "logs/share.log",
    benchmark:
        "benchmarks/share.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        min_count=config["disclosure"]["min_count"],
    script:
        "../scripts/share.py"
