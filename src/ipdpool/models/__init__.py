"""Pooled models: one-stage mixed models and sensitivity analyses."""


class NotEstimable(Exception):
    """The model cannot be fitted on these data (say why)."""


def statistics_settings(analysis: dict) -> dict:
    """The part of the `analysis` config that the per-study sufficient statistics depend on (outcomes,
    model terms, covariates, whether per-centre statistics are needed). A job given only this part is
    not re-run when the rest changes (df method, prediction interval, the other sensitivity variants),
    and neither are the jobs after it."""
    sensitivity = analysis.get("sensitivity", {})
    settings = {"covariates": sensitivity.get("covariates", [])}
    if "centre_within_study" in sensitivity.get("variants", []):  # the one variant with statistics of its own
        settings["variants"] = ["centre_within_study"]
    return {"outcomes": analysis["outcomes"], "models": analysis["models"], "sensitivity": settings}
