"""Per-study sufficient statistics of every configured model: what the pooled models need.

For each outcome, model and design (primary, unadjusted, covariates, within/between) a
study contributes the cross-products [X y]'[X y] of its complete cases, with the column
names: {"names", "n", "reference", "products"}, the products taken about "reference" (one
number per column: its mean rounded to a power-of-two grid, 0 for the intercept, so that
products[0][0] is n and products[0][j] the sums about the reference; crossprod explains
why). Entries without "reference" (written before it) are read as about 0. Studies, and
sites holding parts of one study (merge_entries), are combined by moving each entry to a
common reference with the parallel-axis formula.

Every one-stage model (REML/ML, random slope, leave-one-study-out), the per-study
OLS of the two-stage route and the study fixed-effect sensitivity analysis are computed
from these alone, so the same code serves pooled participant data and federated site
bundles (ipdpool.federated), and a study's numbers do not depend on where it was computed.

Designs use every diagnosis level of the schema, so that studies' columns line up; a
level absent from every study is dropped when the studies are combined, as a pooled
design would never have had it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import NotEstimable
from .crossprod import CrossProducts, common_reference, move_reference, reference_value

DIAGNOSIS_REFERENCE = "schizophrenia_spectrum"
TERMS = (
    "employed",
    "ips",
    "ips:employed",
    "baseline",
    "age",
    "sex",
    "diagnosis",
    "employed_within",
    "employed_between",
)
DESIGNS = ("primary", "unadjusted", "covariates", "within_between")
RESPONSE = "y"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    terms: tuple[str, ...]
    adjust: tuple[str, ...]
    report: dict[str, dict[str, float]]  # contrast name -> {term: weight}

    @staticmethod
    def from_config(name: str, spec: dict) -> ModelSpec:
        return ModelSpec(
            name, tuple(spec["terms"]), tuple(spec.get("adjust", [])), {k: dict(v) for k, v in spec["report"].items()}
        )


def has_within_between(model: ModelSpec) -> bool:
    return "employed" in model.terms and "ips:employed" not in model.terms


def design_terms(model: ModelSpec, design: str, covariates: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The terms of one design of a model, or None where the design does not apply."""
    if design == "primary":
        return model.terms + model.adjust
    if design == "unadjusted":
        return model.terms + tuple(a for a in model.adjust if a != "baseline")
    if design == "covariates":
        return tuple(dict.fromkeys(model.terms + model.adjust + tuple(covariates)))  # adjust may hold some already
    if design == "within_between":
        if not has_within_between(model):
            return None
        return tuple(t for t in model.terms if t != "employed") + ("employed_within", "employed_between") + model.adjust
    raise ValueError(f"unknown design {design!r}; designs are {DESIGNS}")


def required_columns(outcome: str, terms: tuple[str, ...]) -> list[str]:
    columns = [f"{outcome}_fu_z", "study"]
    for term in terms:
        columns += {
            "employed": ["employed"], "ips": ["arm"], "ips:employed": ["arm", "employed"],
            "baseline": [f"{outcome}_bl_z"], "age": ["age"], "sex": ["sex"], "diagnosis": ["diagnosis"],
            "employed_within": ["employed"], "employed_between": ["employed"],
        }[term]  # fmt: skip
    return list(dict.fromkeys(columns))


def complete_cases(data: pd.DataFrame, outcome: str, terms: tuple[str, ...]) -> pd.DataFrame:
    columns = required_columns(outcome, terms)
    frame = data[columns].dropna()
    return frame.sort_values("study", kind="stable").reset_index(drop=True)


def design(
    frame: pd.DataFrame, outcome: str, terms: tuple[str, ...], diagnosis_levels=None
) -> tuple[np.ndarray, list[str]]:
    """Design matrix (intercept first); diagnosis expands to indicators of `diagnosis_levels`
    (default: the levels present) against schizophrenia spectrum."""
    columns, names = [np.ones(len(frame))], ["Intercept"]
    employed = frame["employed"].to_numpy(float) if "employed" in frame else None
    ips = (frame["arm"] == "IPS").to_numpy(float) if "arm" in frame else None
    for term in terms:
        if term == "employed":
            columns.append(employed)
        elif term == "ips":
            columns.append(ips)
        elif term == "ips:employed":
            columns.append(ips * employed)
        elif term == "baseline":
            columns.append(frame[f"{outcome}_bl_z"].to_numpy(float))
        elif term == "age":
            columns.append(frame["age"].to_numpy(float))
        elif term == "sex":
            columns.append((frame["sex"] == "female").to_numpy(float))
            term = "sex:female"
        elif term == "diagnosis":
            levels = sorted(set(frame["diagnosis"]) if diagnosis_levels is None else set(diagnosis_levels))
            for level in [lv for lv in levels if lv != DIAGNOSIS_REFERENCE]:
                columns.append((frame["diagnosis"] == level).to_numpy(float))
                names.append(f"diagnosis:{level}")
            continue
        elif term in ("employed_within", "employed_between"):
            study_mean = frame.groupby("study")["employed"].transform("mean").to_numpy(float)
            columns.append(employed - study_mean if term == "employed_within" else study_mean)
        else:
            raise ValueError(f"unknown model term {term!r}; terms are {TERMS}")
        names.append(term)
    return np.column_stack(columns), names


def design_statistics(frame: pd.DataFrame, outcome: str, terms: tuple[str, ...], diagnosis_levels) -> dict:
    """[X y]'[X y] of one study's complete cases for these terms about each column's
    reference (names end with the response; the intercept's reference is 0, so products[0][0]
    is n and products[0][j] the sums about the references)."""
    x, names = design(frame, outcome, terms, diagnosis_levels)
    return entry_from_rows(x, frame[f"{outcome}_fu_z"].to_numpy(float), names)


def entry_from_rows(x: np.ndarray, y: np.ndarray, names: list[str]) -> dict:
    """The statistics entry of rows [X y] (X's first column the intercept): n, each column's
    reference (crossprod.reference_value; 0 for the intercept) and the products about it."""
    w = np.column_stack([x, y])
    reference = np.array([0.0] + [reference_value(float(c.mean()), float(c.std())) if len(c) else 0.0 for c in w.T[1:]])
    centred = w - reference
    return {"names": list(names) + [RESPONSE], "n": len(w), "reference": reference, "products": centred.T @ centred}


def merge_entries(entries: list[dict]) -> dict:
    """One entry from several for the same design (a study whose rows sit at several sites):
    each moved to the common reference by the parallel-axis formula, then added."""
    products = np.stack([np.asarray(entry["products"], float) for entry in entries])
    references = np.stack([entry_reference(entry) for entry in entries])
    reference = common_reference(products, references)
    return {
        "names": list(entries[0]["names"]),
        "n": int(sum(entry["n"] for entry in entries)),
        "reference": reference,
        "products": move_reference(products, references, reference).sum(axis=0),
    }


def entry_reference(entry: dict) -> np.ndarray:
    """The entry's reference per column (0 throughout for statistics written before references)."""
    return np.asarray(entry.get("reference", np.zeros(len(entry["names"]))), float)


def raw_squares(entry: dict) -> np.ndarray:
    """sum w_j^2 per column (about 0), from the products about the reference."""
    products, reference = np.asarray(entry["products"], float), entry_reference(entry)
    return np.diag(products) + 2 * reference * products[0] + products[0, 0] * reference**2


def arm_summaries(part: pd.DataFrame, outcome: str) -> dict:
    """Follow-up score (instrument scale) by arm: n, mean, SD (for aggregate-data meta-analysis)."""
    scored = part[part[f"{outcome}_fu"].notna()]
    out = {"instrument": str(scored[f"{outcome}_instrument"].iloc[0]) if len(scored) else ""}
    for arm in ("IPS", "SAU"):
        values = scored.loc[scored["arm"] == arm, f"{outcome}_fu"]
        out[arm] = {
            "n": int(len(values)),
            "mean": float(values.mean()) if len(values) else None,
            "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
        }
    return out


CENTRE_VARIANT = "centre_within_study"
MISSING_SITE = "(site missing)"


def wants_centres(analysis: dict) -> bool:
    """Whether the configured sensitivity analyses need per-centre statistics."""
    return CENTRE_VARIANT in analysis.get("sensitivity", {}).get("variants", [])


def centre_statistics(part: pd.DataFrame, outcome: str, terms: tuple[str, ...], diagnosis_levels) -> dict[str, dict]:
    """site -> the design's statistics entry over that centre's complete cases (the centre blocks
    of the `(1 | study/site)` sensitivity model; they add up to the study's entry). A study whose
    rule file gives a constant site has one centre; rows without a site form one more."""
    sites = part["site"].astype("string").fillna(MISSING_SITE) if "site" in part else pd.Series("", index=part.index)
    return {
        str(site): design_statistics(complete_cases(rows, outcome, terms), outcome, terms, diagnosis_levels)
        for site, rows in part.groupby(sites.to_numpy(), sort=True)
    }


def study_statistics(part: pd.DataFrame, analysis: dict, diagnosis_levels, centres: bool = False) -> dict:
    """Everything the pooled models need from one study's harmonized data; with `centres`, also
    each primary design per centre (`site`) under the design's "centres" (models/nested.py; a
    site bundle carries them under pseudonymous keys, releases.centre_blocks)."""
    covariates = tuple(analysis.get("sensitivity", {}).get("covariates", []))
    outcomes = {}
    for outcome in analysis["outcomes"]:
        designs = {}
        for name, spec in analysis["models"].items():
            model = ModelSpec.from_config(name, spec)
            for kind in DESIGNS:
                terms = design_terms(model, kind, covariates)
                if terms is not None:
                    designs[f"{name}/{kind}"] = design_statistics(
                        complete_cases(part, outcome, terms), outcome, terms, diagnosis_levels
                    )
        if centres:
            for name, spec in analysis["models"].items():
                terms = design_terms(ModelSpec.from_config(name, spec), "primary")
                designs[f"{name}/primary"]["centres"] = centre_statistics(part, outcome, terms, diagnosis_levels)
        outcomes[outcome] = {"n_followup": int(part[f"{outcome}_fu_z"].notna().sum()), "designs": designs}
        if f"{outcome}_fu" in part:
            outcomes[outcome]["arms"] = arm_summaries(part, outcome)
    return {"study": str(part["study"].iloc[0]), "n": len(part), "outcomes": outcomes}


def statistics_by_study(data: pd.DataFrame, analysis: dict, diagnosis_levels=None) -> dict[str, dict]:
    """study -> study_statistics, for pooled participant data (all diagnosis levels seen if none given)."""
    if diagnosis_levels is None:
        diagnosis_levels = sorted(set(data["diagnosis"].dropna())) if "diagnosis" in data else []
    return {
        str(study): study_statistics(part, analysis, diagnosis_levels, wants_centres(analysis))
        for study, part in data.groupby("study", sort=True)
    }


# ------------------------------------------------------------------ combining studies


def constant_columns(products: np.ndarray, n: float, names: list[str]) -> list[str]:
    """Non-intercept columns with no variation, from X'X and X'1 (column 0 is the intercept;
    products about any reference)."""
    out = []
    for j, name in enumerate(names[1:], start=1):
        spread = n * products[j, j] - products[0, j] ** 2
        if spread <= 1e-12 * max(n * products[j, j], 1e-300):
            out.append(name)
    return out


def check_full_rank(products: np.ndarray, n: float, names: list[str]) -> None:
    """The design of these cross-products must be of full rank (same message as for rows)."""
    xtx = products[:-1, :-1]
    rank = np.linalg.matrix_rank(xtx)
    if rank < xtx.shape[0]:
        constant = constant_columns(products, n, names[:-1])
        raise NotEstimable(
            f"design not of full rank ({rank} < {xtx.shape[0]} columns)"
            + (f"; no variation in {', '.join(constant)}" if constant else "")
        )


HELD, BUNDLE = "participant data", "site bundle"


def present(statistics: dict[str, dict], outcome: str, key: str, exclude: str | None = None) -> list[tuple[str, dict]]:
    """(study, design statistics with the study's source) of the studies with complete cases for this design."""
    out = []
    for study in sorted(statistics):
        entry = statistics[study]["outcomes"][outcome]["designs"].get(key)
        if study != exclude and entry is not None and entry["n"] > 0:
            out.append((study, {**entry, "source": statistics[study].get("source", HELD)}))
    return out


def data_sources(sources: dict[str, str]) -> str:
    """'participant data', 'site bundles', or which studies came which way."""
    held = [study for study, source in sources.items() if source == HELD]
    bundled = [study for study, source in sources.items() if source == BUNDLE]
    if not bundled:
        return HELD
    if not held:
        return "site bundles"
    return f"{HELD}: {','.join(held)}; site bundles: {','.join(bundled)}"


def combine(parts: list[tuple[str, dict]], random_slope: str | None = None) -> CrossProducts:
    """Stack studies' cross-products into one CrossProducts, dropping diagnosis levels absent everywhere."""
    names = parts[0][1]["names"]
    products = np.stack([np.asarray(entry["products"], float) for _, entry in parts])
    references = np.stack([entry_reference(entry) for _, entry in parts])
    squares = np.stack([raw_squares(entry) for _, entry in parts])
    n = products[:, 0, 0].sum()
    keep = [
        j
        for j in range(len(names))
        if names[j] == RESPONSE or not names[j].startswith("diagnosis:") or squares[:, j].sum() > 0
    ]
    products, names, references = products[:, keep][:, :, keep], [names[j] for j in keep], references[:, keep]
    reference = common_reference(products, references)
    products = move_reference(products, references, reference)
    check_full_rank(products.sum(axis=0), n, names)
    x_names = names[:-1]
    z_names = ["Intercept"] + ([random_slope] if random_slope else [])
    return CrossProducts(
        tuple(study for study, _ in parts), products, reference, tuple(range(len(x_names))),
        tuple(x_names.index(z) for z in z_names), len(names) - 1, tuple(x_names), tuple(z_names),
    )  # fmt: skip


def varies_within(entry: dict, column: str) -> bool:
    j = entry["names"].index(column)
    products = np.asarray(entry["products"], float)
    return bool(entry["n"] * products[j, j] - products[0, j] ** 2 > 1e-12 * max(entry["n"] * products[j, j], 1e-300))
