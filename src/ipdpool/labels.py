"""Readable names for outcomes and contrasts, and which side of a forest plot favours what.

Everything here comes from config/schema.yaml (an outcome's `label`, `construct` and `better`)
and from the names of the reported contrasts, so figures, tables and the report say the same.
"""

from __future__ import annotations

CONTRAST_LABELS = {
    "employed": "worked vs did not work",
    "ips": "IPS vs usual services",
    "ips:employed": "IPS x work interaction",
    "employed_in_SAU": "worked vs not, usual services",
    "employed_in_IPS": "worked vs not, IPS",
    "ips_in_not_employed": "IPS vs usual services, not working",
}
# Contrasts of IPS against usual services; the interaction (below) compares the effect of work
# between the arms; the others compare those who worked with those who did not.
IPS_CONTRASTS = {"ips", "ips_in_not_employed"}
# A positive IPS x work interaction: work goes with higher scores under IPS than under usual
# services. It favours no arm; what it means depends on whether higher scores are better.
INTERACTION = "ips:employed"


def contrast_label(term: str) -> str:
    return CONTRAST_LABELS.get(term, term)


def outcome_label(outcome: str, spec: dict | None = None) -> str:
    """The schema's `label`, or the name with spaces ("quality_of_life" -> "Quality of life")."""
    label = (spec or {}).get("label")
    return label or outcome.replace("_", " ").capitalize()


def favours(term: str, spec: dict) -> tuple[str, str]:
    """(left, right) labels under the axis: which group a negative and a positive SMD favour,
    given whether higher scores are better (`better: higher`) or worse (`better: lower`)."""
    better = spec.get("better")
    if better not in ("higher", "lower"):  # no direction declared: say what the sign means instead
        construct = spec.get("construct", "score")
        return f"lower {construct}", f"higher {construct}"
    if term == INTERACTION:
        left, right = "smaller benefit of work under IPS", "larger benefit of work under IPS"
    elif term in IPS_CONTRASTS:
        left, right = "favours usual services", "favours IPS"
    else:
        left, right = "worse with work", "better with work"
    return (left, right) if better == "higher" else (right, left)


def figure_labels(outcome: str, term: str, outcomes: dict) -> dict[str, str]:
    """The labels a forest plot is listed by in the report (instead of its file name)."""
    return {"outcome": outcome_label(outcome, outcomes.get(outcome)), "contrast": contrast_label(term)}


def slug(term: str) -> str:
    """A file-name-safe form of a contrast name ("ips:employed" -> "ips_x_employed")."""
    return term.replace(":", "_x_")


def in_order(present, outcomes: dict) -> list[str]:
    """The outcomes present, in the schema's order (any others after them, sorted), so that
    the order of the input rows does not matter."""
    return [o for o in outcomes if o in present] + sorted(o for o in present if o not in outcomes)
