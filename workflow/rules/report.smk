# Snakemake's report: every result table as an HTML page, and the landing page (headline
# results and participant flow) that the Snakefile's `report:` directive opens on.

from ipdpool.yamlfile import load as load_yaml
from ipdpool.labels import figure_labels, outcome_label

SCHEMA_OUTCOMES = load_yaml(Path(config["schema"]))["outcomes"]
# name -> (TSV, report category, title); captions are workflow/report/<name>.rst.
REPORT_TABLES = {
    "flow": (
        "results/audit/flow.tsv",
        "Data and harmonization",
        "Participant flow by study and arm",
    ),
    "status_matrix": (
        "results/audit/status_matrix.tsv",
        "Data and harmonization",
        "Harmonization status",
    ),
    "one_stage": (
        "results/tables/one_stage.tsv",
        "One-stage models",
        "One-stage models",
    ),
    "sensitivity": (
        "results/tables/sensitivity.tsv",
        "Sensitivity",
        "Sensitivity analyses",
    ),
    "replication": (
        "results/tables/replication.tsv",
        "Replication",
        "Replication of the published SMDs",
    ),
    "per_study": (
        "results/tables/per_study.tsv",
        "Two-stage and aggregate data",
        "Per-study estimates",
    ),
    "two_stage": (
        "results/tables/two_stage.tsv",
        "Two-stage and aggregate data",
        "Two-stage meta-analyses",
    ),
    "leave_one_out": (
        "results/tables/leave_one_out.tsv",
        "Two-stage and aggregate data",
        "Leave-one-out meta-analyses",
    ),
    "aggregate_trials": (
        "results/tables/aggregate_trials.tsv",
        "Two-stage and aggregate data",
        "Trials in the aggregate-data meta-analysis",
    ),
    "aggregate_meta": (
        "results/tables/aggregate_meta.tsv",
        "Two-stage and aggregate data",
        "Aggregate-data meta-analyses",
    ),
}
if BUNDLES:  # studies that took part through a site bundle
    REPORT_TABLES |= {
        "bundles": (
            "results/audit/bundles.tsv",
            "Data and harmonization",
            "Site bundles: authenticity and models refused",
        ),
    }
if STUDIES:  # made from participant data held here
    REPORT_TABLES |= {
        "codebook": (
            "results/harmonized/codebook.tsv",
            "Data and harmonization",
            "Codebook",
        ),
        "reconciliation": (
            "results/audit/reconciliation.tsv",
            "Data and harmonization",
            "Reconciliation of participants",
        ),
        "raw_inventory": (
            "results/raw_inventory.tsv",
            "Data and harmonization",
            "Raw files read",
        ),
        "harmonization_summary": (
            "results/audit/harmonization_summary.tsv",
            "Data and harmonization",
            "Harmonization evaluation: raw and harmonized values by study and arm",
        ),
        "rules_overview": (
            "results/tables/rules_overview.tsv",
            "Data and harmonization",
            "Harmonization rules of all studies",
        ),
    }


# Publication tables (great_tables), each an HTML page of the report and a LaTeX file:
# name -> (report category, title); captions are workflow/report/<name>.rst.
PUBLICATION_TABLES = {
    "table1": ("Summary", "Table 1: baseline characteristics"),
    "table2": ("Summary", "Table 2: follow-up and employment"),
    "results": ("Summary", "Table 3: one-stage and two-stage results"),
}


rule publication_tables:
    input:
        table1="results/tables/table1.tsv",
        one_stage="results/tables/one_stage.tsv",
        two_stage="results/tables/two_stage.tsv",
        schema=config["schema"],
    output:
        latex=[f"results/tables/{name}.tex" for name in PUBLICATION_TABLES],
        pages=[
            report(
                f"results/report/tables/{name}.html",
                caption=f"../report/{name}.rst",
                category=category,
                labels={"table": title},
            )
            for name, (category, title) in PUBLICATION_TABLES.items()
        ],
    log:
        "logs/report/publication_tables.log",
    benchmark:
        "benchmarks/report/publication_tables.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        names=list(PUBLICATION_TABLES),
        titles=[title for _, title in PUBLICATION_TABLES.values()],
    script:
        "../scripts/publication_tables.py"


# Every table as an HTML page and the landing page: one job (each page takes milliseconds).
rule report_pages:
    input:
        tables=[path for path, _, _ in REPORT_TABLES.values()],
        description="workflow/report/workflow.rst",
        flow=f"results/figures/participant_flow.{FIGURE}",
    output:
        tables=[
            report(
                f"results/report/tables/{name}.html",
                caption=f"../report/{name}.rst",
                category=category,
                labels={"table": title},
            )
            for name, (_, category, title) in REPORT_TABLES.items()
        ],
        landing_rst="results/report/landing.rst",
        landing_html=report(
            "results/report/landing.html",
            caption="../report/landing.rst",
            category="Summary",
            labels={"page": "Headline results and participant flow"},
        ),
    log:
        "logs/report/pages.log",
    benchmark:
        "benchmarks/report/pages.tsv"
    conda:
        "../envs/ipdpool.yaml"
    params:
        names=list(REPORT_TABLES),
        titles=[title for _, _, title in REPORT_TABLES.values()],
        schema=config["schema"],
    script:
        "../scripts/report_pages.py"


# Once a run has written the headline page, the report opens on it (before: the description).
if Path("results/report/landing.rst").exists():

    report: "../../results/report/landing.rst"


# A run ends by saying where its results are (not after runs that wrote no summary, e.g. a
# site's bundle).
onsuccess:
    if Path("results/summary.md").exists():
        print(
            "Results: results/summary.md (headline table), results/tables/, results/figures/.\n"
            "HTML report: snakemake --report results/report.html"
        )
