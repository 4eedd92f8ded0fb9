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


# Every forest plot, participant flow and the harmonization status in one job: drawing a
# figure takes hundredths of a second, while each job pays matplotlib's import and first draw.
rule figures:
    input:
        per_study=expand("results/models/{outcome}/per_study.tsv", outcome=OUTCOMES),
        two_stage=expand("results/models/{outcome}/two_stage.tsv", outcome=OUTCOMES),
        one_stage=expand("results/models/{outcome}/one_stage.tsv", outcome=OUTCOMES),
        schema=config["schema"],
        flow="results/audit/flow.tsv",
        status="results/audit/status_matrix.tsv",
    output:
        forest=[
            path
            for outcome in OUTCOMES
            for name, term in REPORTED
            for path in figure_files(
                f"results/figures/forest/{outcome}/{name}__{slug(term)}",
                caption="../report/forest.rst",
                category="Forest plots",
                subcategory=outcome_label(outcome, SCHEMA_OUTCOMES[outcome]),
                labels=figure_labels(outcome, term, SCHEMA_OUTCOMES),
            )
        ],
        flow=figure_files(
            "results/figures/participant_flow",
            caption="../report/flow_figure.rst",
            category="Data and harmonization",
            labels={"figure": "Participant flow, all studies"},
        ),
        study_flows=[
            path
            for study in ALL_STUDIES
            for path in figure_files(
                f"results/figures/flow/{study}",
                caption="../report/flow_figure.rst",
                category="Data and harmonization",
                subcategory="Participant flow by study",
                labels={"figure": f"Participant flow, study {study}"},
            )
        ],
        status=figure_files(
            "results/figures/harmonization_status",
            caption="../report/status_figure.rst",
            category="Data and harmonization",
            labels={"figure": "Harmonization status"},
        ),
    log:
        "logs/figures.log",
    benchmark:
        "benchmarks/figures.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        outcomes=OUTCOMES,
        reported=REPORTED,
        studies=ALL_STUDIES,
        figures=config["figures"],
    script:
        "../scripts/draw_figures.py"


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
            ]
            + (["multiple_imputation"] if MI_ENABLED else [])
            + (["tipping_point", "tipping_point_summary"] if TIPPING_OUTCOMES else []),
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
            for suffix in FIGURE_FORMATS
        ]
        + figure_files("results/figures/harmonization_status")
        + (figure_files("results/figures/tipping_point") if TIPPING_OUTCOMES else []),
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
        figures=config["figures"],
    script:
        "../scripts/share.py"
