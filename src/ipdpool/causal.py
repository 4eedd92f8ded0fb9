"""The causal analysis: the first stage (IPS -> employment), the effect of working with IPS as
its instrument, and E-values for the observational SMDs.

First stage. With arm as the only covariate, each study's 2x2 table of arm by employment is
sufficient for every model fitted here: the per-study logistic regression's log odds ratio is
log(a d / (b c)) with Wald SE sqrt(1/a + 1/b + 1/c + 1/d) (its ML estimate and inverse
information, exactly), and the logistic mixed model `employed ~ ips + (1 | study)` has the
likelihood of the binomial counts cbind(employed, not employed) per study and arm (the same
estimates as the 0/1 rows; the log-likelihood differs by the binomial coefficients). The
tables are in every study's statistics (Table 1's employment by arm, also in a site's bundle,
where a cell from 1 to nfilter_tab - 1 refuses the bundle), so the first stage is exact across
sites. A study with an empty cell has no finite log odds ratio (left out of the two-stage
meta-analysis) but enters the one-stage model, whose binomial likelihood is defined with a 0
cell, as glmer on the participant rows; each pooled row's notes name the studies it leaves out.
A model with more covariates (e.g. baseline scores) needs participant data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .evalue import evalue_smd
from .meta import meta_analysis
from .probabilities import norm_quantile

EMPTY_CELL = "not estimable: an empty cell (log odds ratio infinite)"


def two_by_two(table1: dict) -> dict[str, int]:
    """Employed and not employed by arm, from a study's Table 1 aggregates (missing left out)."""
    return {
        f"{key}_{arm}": int(table1[arm]["employed"].get(level, 0))
        for arm in ("IPS", "SAU")
        for key, level in (("employed", "1"), ("not_employed", "0"))
    }


def first_stage_by_study(tables: dict[str, dict], nfilter_tab: int, level: float = 0.95) -> pd.DataFrame:
    """One row per study: the 2x2 cells and the log odds ratio of employment, IPS vs SAU."""
    z = norm_quantile(0.5 + level / 2)
    rows = []
    for study, table1 in sorted(tables.items()):
        cells = two_by_two(table1)
        row = {"study": study, **cells, "log_or": np.nan, "se": np.nan, "status": "estimated"}
        counts = np.array(list(cells.values()))
        if ((counts > 0) & (counts < nfilter_tab)).any():
            # the cells are blanked too: the status says they are not shown
            row.update({"status": f"refused: a cell below nfilter_tab {nfilter_tab}", **dict.fromkeys(cells, np.nan)})
        elif (counts == 0).any():
            row["status"] = EMPTY_CELL
        else:
            a, b, c, d = (cells[k] for k in ("employed_IPS", "not_employed_IPS", "employed_SAU", "not_employed_SAU"))
            row["log_or"] = float(np.log(a * d / (b * c)))
            row["se"] = float(np.sqrt(1 / a + 1 / b + 1 / c + 1 / d))
        rows.append(row)
    out = pd.DataFrame(rows)
    out["odds_ratio"] = np.exp(out["log_or"])
    out["or_ci_low"] = np.exp(out["log_or"] - z * out["se"])
    out["or_ci_high"] = np.exp(out["log_or"] + z * out["se"])
    return out


def binomial_cells(by_study: pd.DataFrame) -> pd.DataFrame:
    """The tables as binomial rows (study, ips, employed, not_employed) of every study that is
    not refused: an empty cell leaves the binomial likelihood defined (as glmer on the
    participant rows); an arm without participants carries nothing and is left out."""
    usable = by_study[by_study["status"].isin(["estimated", EMPTY_CELL])]
    rows = pd.DataFrame(
        [
            {"study": r.study, "ips": ips, "employed": getattr(r, f"employed_{arm}"),
             "not_employed": getattr(r, f"not_employed_{arm}")}
            for r in usable.itertuples()
            for arm, ips in (("IPS", 1), ("SAU", 0))
        ],
        columns=["study", "ips", "employed", "not_employed"],
    )  # fmt: skip
    return rows[rows["employed"] + rows["not_employed"] > 0].reset_index(drop=True)


def left_out_note(by_study: pd.DataFrame, used: set) -> str:
    """Which studies a pooled row leaves out, and why (their status)."""
    left = by_study[~by_study["study"].isin(used)]
    return "; ".join(f"study {r.study} left out ({r.status})" for r in left.itertuples())


def _two_stage_row(by_study: pd.DataFrame, level: float) -> dict | None:
    usable = by_study[by_study["status"] == "estimated"]
    if len(usable) < 2:
        return None
    meta = meta_analysis(usable["log_or"], usable["se"] ** 2, method="REML", level=level)
    notes = [*meta.warnings, left_out_note(by_study, set(usable["study"]))]
    return {"scope": "pooled", "method": "two-stage: random-effects (REML) meta-analysis", "log_or": meta.estimate,
            "se": meta.se, "tau2": meta.tau2, "i2": meta.i2, "k": meta.k, "n": cell_total(usable),
            "status": "estimated", "notes": "; ".join(n for n in notes if n)}  # fmt: skip


def _one_stage_row(by_study: pd.DataFrame, n_agq: int) -> dict | None:
    from .models.glmer import glmer  # imported here: scipy's optimizers are not needed to read the tables

    cells = binomial_cells(by_study)
    if cells["study"].nunique() < 2:
        return None
    fit = glmer("cbind(employed, not_employed) ~ ips + (1 | study)", cells, nAGQ=n_agq)
    fixed = fit.fixed.loc["ips"]
    notes = ["singular fit" if fit.is_singular else "", left_out_note(by_study, set(cells["study"]))]
    return {"scope": "pooled", "method": f"one-stage: logistic mixed model (glmer, nAGQ = {n_agq})",
            "log_or": fixed["estimate"], "se": fixed["se"], "tau2": float(fit.fit.random_covariance[0, 0]),
            "k": fit.n_groups, "n": int(cells[["employed", "not_employed"]].to_numpy().sum()), "status": "estimated",
            "notes": "; ".join(n for n in notes if n)}  # fmt: skip


def cell_total(by_study: pd.DataFrame) -> int:
    return int(by_study[[c for c in by_study if c.startswith(("employed_", "not_employed_"))]].to_numpy().sum())


def first_stage_table(tables: dict[str, dict], nfilter_tab: int, n_agq: int = 1, level: float = 0.95) -> pd.DataFrame:
    """Per-study rows, the two-stage REML meta-analysis of the log odds ratios (studies with a
    finite log OR) and the one-stage logistic mixed model (glmer; every study not refused), all
    on the odds-ratio scale. A pooled row's notes name the studies it leaves out."""
    by_study = first_stage_by_study(tables, nfilter_tab, level)
    rows = [{"scope": r["study"], "method": "per-study logistic (2x2 table)", **r} for r in by_study.to_dict("records")]
    rows += [row for row in (_two_stage_row(by_study, level), _one_stage_row(by_study, n_agq)) if row]
    out = pd.DataFrame(rows)
    z = norm_quantile(0.5 + level / 2)
    out["odds_ratio"] = np.exp(out["log_or"])
    out["or_ci_low"] = np.exp(out["log_or"] - z * out["se"])
    out["or_ci_high"] = np.exp(out["log_or"] + z * out["se"])
    return out.drop(columns=["study"], errors="ignore")


def iv_table(
    pooled: pd.DataFrame,
    outcomes: list[str],
    level: float = 0.95,
    interaction_min_f: float = 10.0,
    implication: bool = True,
) -> pd.DataFrame:
    """The IV analysis of every outcome with data in at least one study (models.iv)."""
    from .models.iv import iv_by_study_and_pooled

    rows = []
    for outcome in outcomes:
        if pooled[f"{outcome}_fu_z"].notna().any():
            fits = iv_by_study_and_pooled(pooled, outcome, level, interaction_min_f, implication)
            rows += [r.as_row() for r in fits]
    return pd.DataFrame(rows)


# The columns a released design must hold for the IV: with them, its cross-products (about each
# column's reference: a shift within a study moves only that study's intercept) are the study's
# cross-products of [y, employed, ips, baseline, 1]. The default config's model ips_x_employed
# (terms ips, employed, ips:employed, adjusted for baseline) releases them, on the IV's rows.
IV_DESIGN_COLUMNS = ("y", "employed", "ips", "baseline", "Intercept")
IV_MODEL_NAME = "ips_x_employed"
FEDERATED_IV_NOTE = "from site statistics: classical inference (HC1, effective F, Anderson-Rubin need participant data)"


def iv_design_entry(content: dict) -> tuple[str, dict] | None:
    """The released design of one outcome that holds the IV's columns (and at most ips:employed
    besides, so that its complete cases are the IV's rows); one not narrowed by the
    nested-subset rule first."""
    candidates = []
    harmonized = content.get("harmonized", {})
    for name, entry in sorted(content.get("designs", {}).items()):
        columns = set(entry["names"])
        if set(IV_DESIGN_COLUMNS) <= columns and columns - set(IV_DESIGN_COLUMNS) <= {"ips:employed"}:
            candidates.append((name in harmonized, name))
    if not candidates:
        return None
    name = min(candidates)[1]
    return name, content["designs"][name]


def iv_crossproducts(entry: dict) -> tuple[np.ndarray, int]:
    """A design entry's products in the order [y, employed, ips, baseline, 1]."""
    index = [entry["names"].index(c) for c in IV_DESIGN_COLUMNS]
    return np.asarray(entry["products"], float)[np.ix_(index, index)], int(entry["n"])


def federated_iv_rows(statistics: dict[str, dict], outcome: str, level: float, interaction_min_f: float) -> list:
    """Per study and pooled 2SLS of one outcome from the studies' released statistics alone
    (participant data or site bundles alike): exactly the classical part of the participant-data
    fit (models.iv: estimate, classical SE and interval, first-stage F, Wu-Hausman, OLS)."""
    from .models.iv import E, IvResult, Y, Z, classical_result, interactions_allowed, pooled_crossproducts

    study_rows, parts = [], {}
    for study, content in sorted((s, v["outcomes"].get(outcome)) for s, v in statistics.items()):
        if not content or not content.get("n_followup"):
            continue
        found = iv_design_entry(content)
        if found is None:
            why = missing_design_reason(content)
            study_rows.append(IvResult(outcome, study, Z, 0, f"not estimable: study {study}, outcome {outcome}: {why}"))
            continue
        cp, n = iv_crossproducts(found[1])
        row = classical_result(cp, n, [Y, E, Z, "baseline", "intercept"], outcome, study, level)
        if found[0] in content.get("harmonized", {}):
            row.notes.append(f"design {found[0]} narrowed by the nested-subset rule: {content['harmonized'][found[0]]}")
        study_rows.append(row)
        if n:
            parts[study] = (cp, n)
    if not study_rows:
        return []
    pooled = [classical_result(*pooled_crossproducts(parts), outcome, "pooled", level)] if parts else []
    if interactions_allowed(study_rows, interaction_min_f):
        pooled.append(classical_result(*pooled_crossproducts(parts, True), outcome, "pooled", level))
    for row in pooled:
        row.notes += pooled_coverage_notes(study_rows, parts)
    for row in study_rows + pooled:
        row.notes.append(FEDERATED_IV_NOTE)
    return study_rows + pooled


def missing_design_reason(content: dict) -> str:
    """Why a study's statistics hold no IV design: the release rule's reason when it withheld one."""
    withheld = {k: v for k, v in content.get("harmonized", {}).items() if k.startswith(IV_MODEL_NAME)}
    if withheld:
        return "; ".join(f"design {key} {reason}" for key, reason in sorted(withheld.items()))
    return f"no released design holds ips, employed and baseline (model {IV_MODEL_NAME})"


def pooled_coverage_notes(study_rows: list, parts: dict) -> list[str]:
    """A pooled row names the studies it leaves out (no usable design) and those it uses narrowed."""
    notes = [f"study {r.scope} left out ({r.status.split(': ', 2)[-1]})" for r in study_rows if r.scope not in parts]
    notes += [f"study {r.scope} enters narrowed (see its row)" for r in study_rows if r.scope in parts
              and any(note.startswith("design ") and "narrowed" in note for note in r.notes)]  # fmt: skip
    return notes


def federated_iv_table(
    statistics: dict[str, dict], outcomes: list[str], level: float = 0.95, interaction_min_f: float = 10.0
) -> pd.DataFrame:
    """The IV table from the studies' statistics (`federated_iv_rows` for every outcome)."""
    return pd.DataFrame(
        [r.as_row() for outcome in outcomes for r in federated_iv_rows(statistics, outcome, level, interaction_min_f)]
    )


def evalue_table(one_stage: pd.DataFrame, contrast: str = "employed") -> pd.DataFrame:
    """E-values of the headline (one-stage, random-intercept) observational SMDs."""
    rows = []
    chosen = one_stage[(one_stage["contrast"] == contrast) & (one_stage["model"] == "random_intercept")]
    for r in chosen.itertuples():
        if not np.isfinite(r.estimate):
            continue
        try:
            values = evalue_smd(r.estimate, r.se)
        except ValueError as error:
            raise ValueError(f"E-value of outcome {r.outcome}: {error}") from None
        rows.append({"outcome": r.outcome, "smd": r.estimate, "se": r.se, **values})
    return pd.DataFrame(rows)


def first_stage_forest(first: pd.DataFrame):
    """Forest plot of the odds ratio of employment, IPS vs usual services: each study's 2x2
    table, then the two-stage and one-stage pooled estimates (log axis)."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    shown = first[np.isfinite(first["log_or"])].reset_index(drop=True)
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(shown) + 1.6))
    for i, row in shown.iterrows():
        y = len(shown) - i
        pooled = row["scope"] == "pooled"
        label = row["method"].split(":")[0] if pooled else row["scope"]
        axis.plot([row["or_ci_low"], row["or_ci_high"]], [y, y], color="black", lw=1)
        axis.plot(row["odds_ratio"], y, "D" if pooled else "s", color="tab:red" if pooled else "tab:blue")
        axis.text(1.02, y, f"{row['odds_ratio']:.2f} [{row['or_ci_low']:.2f}, {row['or_ci_high']:.2f}]",
                  transform=axis.get_yaxis_transform(), va="center", fontsize=9, family="monospace")  # fmt: skip
        axis.text(-0.02, y, label, transform=axis.get_yaxis_transform(), ha="right", va="center", fontsize=9)
    axis.axvline(1.0, color="grey", lw=0.8, ls="--")
    axis.set_xscale("log")
    # plain numbers at the log axis's ticks: the default 10^k labels set their exponents below 8 pt
    axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.tick_params(labelsize=9)
    axis.set_yticks([])
    axis.set_ylim(0.3, len(shown) + 0.7)
    axis.set_xlabel("Odds ratio of work during follow-up, IPS vs usual services (95% CI)")
    figure.subplots_adjust(left=0.2, right=0.7, bottom=0.3 if len(shown) < 5 else 0.15)
    return figure
