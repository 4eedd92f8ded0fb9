"""Chained-equations imputation (FCS, as mice) of one outcome's analysis variables.

For outcome `o` the incomplete variables are employment during follow-up (0/1, mice's logreg),
the baseline score `o_bl_z` and the follow-up score `o_fu_z` (mice's norm). Each imputation
model contains the analysis model's terms, so imputation and analysis are congenial:

  o_fu_z   ~ ips + employed + ips:employed + o_bl_z
  o_bl_z   ~ ips + employed + ips:employed + o_fu_z
  employed ~ ips + o_bl_z + o_fu_z + ips:o_bl_z + ips:o_fu_z   (the reverse of ips:employed)

When the models adjust for covariates (`adjust: [baseline, age, sex, diagnosis]`), each of them
is a predictor of every model above, and age (norm) and sex (logreg on female) are imputed where
sporadically missing, visited first, from ips + employed + ips:employed + o_bl_z + o_fu_z and
the other covariates. Diagnosis, with several levels, is a predictor only (indicators of its
levels); a sporadically missing diagnosis is refused, as mice's polyreg is not offered.

Methods (`method`):
  - "stratified" (default): each study is imputed on its own, which is a model with study
    fixed effects and every interaction with study, and a residual variance per study
    (heteroscedastic by study). It needs nothing but the study's own rows, so a site can impute
    locally and the federated result equals the pooled one. A study with too few observed values
    of a variable for its model is refused with a message naming it (use "fixed_effects").
  - "fixed_effects": one model over all studies with study indicators (main effects only, one
    residual variance): for studies too small to be imputed alone; not possible across sites.
  - "two_level": one model over all studies in which the scores have a random study intercept
    and a residual variance per study (twolevel.py, mice's 2l.norm with only the intercept
    random); employment is drawn as in "fixed_effects" (logreg with study indicators). Needs at
    least twolevel.MINIMUM_STUDIES studies that observed the variable; not possible across sites.
  - "two_stage": one chain over all studies in which every variable is drawn from micemd's
    two-stage model (twostage.py: study-specific coefficients, multivariate normal across studies,
    meta-analysed by the method of moments). It imputes systematically missing variables too: a
    study that never measured a variable gets values drawn with coefficients from the
    between-study distribution (wholesale_imputed lists them). Not possible across sites; diagnosis
    as a covariate is refused (a study lacking one of its levels has an aliased indicator, and
    micemd would then treat the study as unmeasured for every variable).

With the other methods, systematically missing variables (never observed in a study) are not
imputed: they are left missing and dropped from that study's imputation models, and the analysis
leaves the study out of what needs them, as complete-case analysis does.

Delta adjustment (NMAR sensitivity, as rbmi's `delta`): after imputation, each imputed follow-up
value is shifted by the delta of its participant's arm and employment group (delta_adjusted), so
one set of completed data sets serves every delta of a tipping-point analysis.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .draws import logreg_draw, norm_draw
from .twolevel import MINIMUM_STUDIES, two_level_draw
from .twostage import MINIMUM_RESIDUAL_DF, TooFewStudies, two_stage_draw
from .twostage import MINIMUM_STUDIES as TWO_STAGE_MINIMUM_STUDIES

METHODS = ("stratified", "fixed_effects", "two_level", "two_stage")
COVARIATES = ("age", "sex", "diagnosis")  # the schema's adjustment covariates, in the order they enter
IMPUTED_COVARIATES = ("age", "sex")
BINARY = ("employed", "sex")  # drawn by logreg (sex as the female indicator)


@dataclass(frozen=True)
class Delta:
    """Shift (in SD units of the standardized follow-up score) of imputed follow-up values per group."""

    arm: dict[str, float] = field(default_factory=dict)  # "IPS" / "SAU" -> delta
    employed: dict[int, float] = field(default_factory=dict)  # 1 / 0 -> delta

    def shift(self, ips: np.ndarray, employed: np.ndarray) -> np.ndarray:
        out = np.where(ips == 1, self.arm.get("IPS", 0.0), self.arm.get("SAU", 0.0))
        return out + np.where(employed == 1, self.employed.get(1, 0.0), self.employed.get(0, 0.0))

    @property
    def is_zero(self) -> bool:
        return not any(self.arm.values()) and not any(self.employed.values())


class ImputationError(ValueError):
    """An imputation that cannot be done as configured; the message names study and variable."""


def stable_id(name: str) -> int:
    """A 32-bit number for a name, the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def generator(seed: int, imputation: int, outcome: str, stratum: str) -> np.random.Generator:
    """The random stream of one imputation of one outcome in one stratum (a study's rows_key, or
    "all studies"): SeedSequence children by imputation index, so any chunking and any study's site
    draw the same."""
    return np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(imputation, stable_id(outcome), stable_id(stratum)))
    )


def imputation_covariates(analysis: dict) -> tuple[str, ...]:
    """The covariates (beyond the baseline score) that some configured model adjusts for: every
    imputation model of the run includes them, so that each analysis model's terms are in it."""
    used = {term for spec in analysis["models"].values() for term in (*spec["terms"], *spec.get("adjust", ()))}
    return tuple(c for c in COVARIATES if c in used)


def covariate_columns(frame: pd.DataFrame, covariates: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The covariates as numbers: age, sex as the female indicator, diagnosis as level codes
    (sorted levels; NaN where missing)."""
    out = {}
    for name in covariates:
        if name == "age":
            out[name] = frame["age"].to_numpy(float)
        elif name == "sex":
            out[name] = np.where(frame["sex"].isna(), np.nan, (frame["sex"] == "female").to_numpy(float))
        else:
            codes, _ = pd.factorize(frame["diagnosis"], sort=True)
            out[name] = np.where(codes < 0, np.nan, codes.astype(float))
    return out


def draw_columns(frame: pd.DataFrame, outcome: str, covariates: tuple[str, ...] = ()) -> list[np.ndarray]:
    """What the imputation of `frame`'s rows depends on: the IPS indicator, the incomplete variables
    and the covariates."""
    scores = [frame[v].to_numpy(float) for v in variables(outcome)]
    return [(frame["arm"] == "IPS").to_numpy(float), *scores, *covariate_columns(frame, covariates).values()]


def row_order(frame: pd.DataFrame, outcome: str, covariates: tuple[str, ...] = ()) -> np.ndarray:
    """Positions of `frame`'s rows sorted by their values (IPS, employed, baseline, follow-up; NaN
    last), ties broken by the pseudonymous participant_id where there is one. The draws are assigned
    to rows in this order, so a re-exported file with its rows in another order gives the same
    completed data. Rows that tie without an id have the same values and are interchangeable: they
    may swap their completed values, which leaves every statistic of the completed data as it was."""
    keys = draw_columns(frame, outcome, covariates)
    if "participant_id" in frame:
        keys.append(frame["participant_id"].astype(str).to_numpy())
    return np.lexsort(keys[::-1])


def rows_key(frame: pd.DataFrame, outcome: str, covariates: tuple[str, ...] = ()) -> str:
    """A study's stream name from its rows' values in row_order, not from its label: relabelling
    or reordering the studies leaves every study's draws as they were. Values enter with 10
    significant digits, so scores that differ only in their last bits (computed in another order
    of summation, say) still give the same stream."""
    digest = hashlib.sha256()
    order = row_order(frame, outcome, covariates)
    for column in draw_columns(frame, outcome, covariates):
        digest.update(" ".join(f"{value:.10g}" for value in column[order] + 0.0).encode())  # + 0.0: no "-0"
    return digest.hexdigest()


def variables(outcome: str) -> tuple[str, str, str]:
    """The imputed variables in the order they are visited (mice's default: left to right)."""
    return ("employed", f"{outcome}_bl_z", f"{outcome}_fu_z")


def predictors(values: dict[str, np.ndarray], target: str, outcome: str, ips: np.ndarray, extra: np.ndarray) -> list:
    """The predictor columns (intercept first) of one variable's imputation model: the congenial
    terms, the imputed covariates in `values` other than the target, then `extra` (diagnosis
    indicators, study indicators)."""
    employed, baseline, followup = (values[v] for v in variables(outcome))
    one = np.ones(len(ips))
    if target == "employed":
        columns = [one, ips, baseline, followup, ips * baseline, ips * followup]
        names = [None, None, baseline, followup, baseline, followup]
    elif target.endswith("_bl_z"):
        columns = [one, ips, employed, ips * employed, followup]
        names = [None, None, employed, employed, followup]
    elif target.endswith("_fu_z"):
        columns = [one, ips, employed, ips * employed, baseline]
        names = [None, None, employed, employed, baseline]
    else:  # a covariate: every variable of the analysis models
        columns = [one, ips, employed, ips * employed, baseline, followup]
        names = [None, None, employed, employed, baseline, followup]
    others = [values[c] for c in IMPUTED_COVARIATES if c in values and c != target]
    columns, names = columns + others, names + others
    # a systematically missing variable (all NaN in the stratum) is no predictor there
    used = [c for c, source in zip(columns, names) if source is None or not np.isnan(source).all()]
    return used + [extra[:, j] for j in range(extra.shape[1])]


def diagnosis_indicators(frame: pd.DataFrame, covariates: tuple[str, ...]) -> np.ndarray:
    """Indicators of the diagnosis levels but the first (none without diagnosis among the
    covariates, or where the stratum never recorded it); a level absent from the observed rows of a
    model gives a constant column, which the draws drop as mice drops constant predictors."""
    if "diagnosis" not in covariates or frame["diagnosis"].isna().all():
        return np.empty((len(frame), 0))
    levels = sorted(frame["diagnosis"].dropna().unique())[1:]
    out = np.zeros((len(frame), len(levels)))
    for j, level in enumerate(levels):
        out[:, j] = (frame["diagnosis"] == level).fillna(False).to_numpy(float)
    return out


def initial_values(rng: np.random.Generator, column: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Missing values start as random draws of the stratum's observed values (mice's default)."""
    out = column.copy()
    for stratum in np.unique(strata):
        rows = strata == stratum
        observed = column[rows & ~np.isnan(column)]
        missing = np.flatnonzero(rows & np.isnan(column))
        if len(observed) and len(missing):
            out[missing] = rng.choice(observed, len(missing))
    return out


def check_covariates(frame: pd.DataFrame, covariates: tuple[str, ...], where: str) -> None:
    """A diagnosis missing for some participants of a study (not all) cannot be imputed here."""
    if "diagnosis" in covariates:
        for study, part in frame.groupby("study", sort=True):
            missing = int(part["diagnosis"].isna().sum())
            if 0 < missing < len(part):
                raise ImputationError(
                    f"study {study}, {where}: diagnosis missing for {missing} participants; a categorical "
                    "covariate with more than two levels is not imputed (mice's polyreg is not offered): "
                    "adjust for diagnosis only where it is complete, or recode the missing values in the rule file"
                )


def check_estimable(
    frame: pd.DataFrame, outcome: str, study: str, covariates: tuple[str, ...] = (), minimum_extra: int = 2
) -> None:
    """Each incomplete, not systematically missing variable needs more observed rows than its
    model has coefficients (plus `minimum_extra` residual df)."""
    imputed = [c for c in covariates if c in IMPUTED_COVARIATES]
    coefficients = 6 + len(imputed) + diagnosis_indicators(frame, covariates).shape[1]
    for target in (*imputed, *variables(outcome)):
        column = frame[target].to_numpy(float) if target != "sex" else covariate_columns(frame, ("sex",))["sex"]
        observed, missing = int((~np.isnan(column)).sum()), int(np.isnan(column).sum())
        if observed and missing and observed < coefficients + minimum_extra:
            raise ImputationError(
                f"study {study}: {target} observed for {observed} participants only, too few for its own "
                f"imputation model ({coefficients} coefficients); use multiple_imputation.method: fixed_effects"
            )


def chain(
    frame: pd.DataFrame,
    outcome: str,
    rng: np.random.Generator,
    iterations: int,
    extra: np.ndarray,
    studies: np.ndarray | None = None,
    covariates: tuple[str, ...] = (),
    model: str = "two_level",
) -> pd.DataFrame:
    """One completed copy of `frame` (rows of one stratum) by `iterations` rounds of chained equations.
    With `studies` (integer study codes) the scores are drawn from the two-level `model`, without the
    `extra` study indicators, which the other variables' models keep; with `model` "two_stage" every
    variable is drawn from the two-stage model."""
    ips = (frame["arm"] == "IPS").to_numpy(float)
    strata = np.zeros(len(frame))
    imputed = {c: v for c, v in covariate_columns(frame, covariates).items() if c in IMPUTED_COVARIATES}
    targets = (*imputed, *variables(outcome))
    columns = {**imputed, **{v: frame[v].to_numpy(float) for v in variables(outcome)}}
    missing = {v: np.isnan(columns[v]) for v in targets}
    values = {v: c if np.isnan(c).all() else initial_values(rng, c, strata) for v, c in columns.items()}
    fixed = diagnosis_indicators(frame, covariates)
    todo = [v for v in targets if missing[v].any() and not missing[v].all()]
    # with one incomplete variable its predictors never change: one round is the converged chain
    for _ in range(0 if not todo else 1 if len(todo) == 1 else iterations):
        for target in todo:
            rows = missing[target]
            values[target] = values[target].copy()
            if model == "two_stage":
                x = np.column_stack(predictors(values, target, outcome, ips, fixed))
                values[target][rows] = two_stage_target(rng, x, values[target], rows, studies, target)
                continue
            if studies is not None and target.startswith(f"{outcome}_"):
                x = np.column_stack(predictors(values, target, outcome, ips, fixed))
                values[target][rows] = two_level_draw(
                    rng, x[~rows], values[target][~rows], studies[~rows], x[rows], studies[rows]
                )
                continue
            observed = np.unique(values[target][~rows])
            if target in BINARY and len(observed) == 1:
                # one value among the observed (a women-only trial): logreg's augmentation pseudo-rows
                # alone would give the other value to some; mice drops the column and leaves it missing
                values[target][rows] = observed[0]
                continue
            x = np.column_stack(predictors(values, target, outcome, ips, np.column_stack([fixed, extra])))
            draw = logreg_draw if target in BINARY else norm_draw
            values[target][rows] = draw(rng, x[~rows], values[target][~rows], x[rows])
    completed = frame.copy()
    for v in variables(outcome):
        completed[v] = values[v]
    if "age" in imputed:
        completed["age"] = values["age"]
    if "sex" in imputed:
        filled = missing["sex"] & ~np.isnan(values["sex"])
        completed["sex"] = completed["sex"].mask(
            filled, pd.Series(np.where(values["sex"] == 1, "female", "male"), index=frame.index)
        )
    return completed


def impute(
    data: pd.DataFrame,
    outcome: str,
    imputation: int,
    seed: int,
    method: str = "stratified",
    iterations: int = 10,
    covariates: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Completed data set number `imputation` of `outcome` (rows in the order of `data`), with the
    `covariates` (imputation_covariates) in every model."""
    identifier = ["participant_id"] if "participant_id" in data else []
    frame = data[["study", "arm", *variables(outcome), *covariates, *identifier]].copy()
    frame["employed"] = frame["employed"].astype(float)
    check_covariates(frame, covariates, f"outcome {outcome}")
    if method == "stratified":
        parts = []
        for study, part in frame.groupby("study", sort=True):
            check_estimable(part, outcome, str(study), covariates)
            part = part.iloc[row_order(part, outcome, covariates)]
            rng = generator(seed, imputation, outcome, rows_key(part, outcome, covariates))
            parts.append(chain(part, outcome, rng, iterations, np.empty((len(part), 0)), covariates=covariates))
        return pd.concat(parts).loc[frame.index]
    if method == "two_stage":
        return pooled_two_stage(frame, outcome, imputation, seed, iterations, covariates)
    if method in ("fixed_effects", "two_level"):
        return pooled_fixed_effects(frame, outcome, imputation, seed, iterations, method == "two_level", covariates)
    raise ValueError(f"unknown imputation method {method!r}; methods are {METHODS}")


def pooled_fixed_effects(
    frame: pd.DataFrame,
    outcome: str,
    imputation: int,
    seed: int,
    iterations: int,
    two_level: bool = False,
    covariates: tuple[str, ...] = (),
) -> pd.DataFrame:
    """One chain over the studies that measured the outcome, with study indicators (or, `two_level`,
    the scores' two-level model); studies that never measured it are returned as they are (not imputed)."""
    measured = frame.groupby("study")[f"{outcome}_fu_z"].transform(lambda c: c.notna().any()).astype(bool)
    kept = frame[measured]
    model = "two-level" if two_level else "fixed-effects"
    for v in (*covariates, *variables(outcome)):
        never = sorted(str(s) for s, c in kept.groupby("study")[v] if c.isna().all())
        if never:
            raise ImputationError(
                f"studies {', '.join(never)}: {v} never observed, which the {model} imputation model "
                "cannot leave out; use multiple_imputation.method: stratified"
            )
    if kept.empty:
        return frame
    if two_level:
        check_two_level(kept, outcome)
    # studies in the order of their rows_key and rows in row_order: labels and row order do not matter
    parts = sorted((part.iloc[row_order(part, outcome, covariates)] for _, part in kept.groupby("study")),
                   key=lambda part: rows_key(part, outcome, covariates))  # fmt: skip
    kept = pd.concat(parts)
    sizes = [len(part) for part in parts]
    # indicators of all studies but the first (none when one study measured the outcome)
    indicators = np.repeat(np.eye(len(parts)), sizes, axis=0)[:, 1:]
    rng = generator(seed, imputation, outcome, "all studies")
    codes = np.repeat(np.arange(len(parts)), sizes) if two_level else None
    completed = chain(kept, outcome, rng, iterations, indicators, codes, covariates)
    return pd.concat([completed, frame[~measured]]).loc[frame.index]


def two_stage_target(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, missing: np.ndarray, studies: np.ndarray, target: str
) -> np.ndarray:
    """One variable's two-stage imputations; a binary variable with one value among a study's
    observed rows keeps it there, as in `chain` (a women-only trial). TooFewStudies carries the
    variable and its model's size for pooled_two_stage's refusal."""
    binary = target in BINARY
    kept = np.full(len(y), np.nan)
    if binary:
        for code in np.unique(studies[missing]):
            seen = np.unique(y[(studies == code) & ~missing])
            if len(seen) == 1:
                kept[(studies == code) & missing] = seen[0]
    drawn = missing & np.isnan(kept)
    if drawn.any():
        try:
            kept[drawn] = two_stage_draw(rng, x, y, ~missing, studies, int(studies.max()) + 1, binary=binary)[
                drawn[missing]
            ]
        except TooFewStudies as too_few:
            too_few.variable, too_few.coefficients = target, x.shape[1]
            raise
    return kept[missing]


def too_few_studies(too_few: TooFewStudies, labels: list[str]) -> ImputationError:
    """The refusal naming the variable, the number of usable fits and why each other study's is not usable."""
    binary = too_few.variable in BINARY
    need = "no standard error above 1000" if binary else f"at least {MINIMUM_RESIDUAL_DF} residual df"
    why = "; ".join(sorted(f"study {labels[code]}: {reason}" for code, reason in too_few.unusable.items()))
    return ImputationError(
        f"{too_few.variable} has a usable fit of its imputation model ({too_few.coefficients} coefficients, "
        f"{need}, none aliased) in {too_few.usable} of the {too_few.usable + len(too_few.unusable)} studies that "
        f"observed it ({why or 'no other'}), "
        f"too few for the two-stage imputation model's meta-analysis (at least {TWO_STAGE_MINIMUM_STUDIES}); "
        "use multiple_imputation.method: stratified"
    )


def wholesale_imputed(frame: pd.DataFrame, outcome: str, covariates: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """study -> the variables it never observed that two_stage imputes (observed in another study)."""
    out: dict[str, list[str]] = {}
    for v in (*(c for c in covariates if c in IMPUTED_COVARIATES), *variables(outcome)):
        if frame[v].notna().any():
            for study, column in frame.groupby("study", sort=True)[v]:
                if column.isna().all():
                    out.setdefault(str(study), []).append(v)
    return dict(sorted(out.items()))


def thin_meta_analyses(frame: pd.DataFrame, outcome: str, covariates: tuple[str, ...] = ()) -> str:
    """A warning for each variable imputed wholesale somewhere whose studies with a full fit of their
    own number fewer than its model's coefficients + 1: the method of moments then sets part of the
    between-study covariance to (almost) 0, so the wholesale imputations understate the studies'
    heterogeneity. A study whose observed rows lack an arm or (other variables) an arm-by-employment
    cell has aliased coefficients, and a small one too few rows: it informs Psi partly or not at all."""
    notes = []
    imputed = [c for c in covariates if c in IMPUTED_COVARIATES]
    for v in sorted({v for names in wholesale_imputed(frame, outcome, covariates).values() for v in names}):
        coefficients = (6 if v in ("employed", *IMPUTED_COVARIATES) else 5) + len([c for c in imputed if c != v])
        measuring = frame.loc[frame[v].notna(), "study"].nunique()
        fitting = fitting_studies(frame, v, coefficients)
        if fitting < coefficients + 1:
            notes.append(
                f"two_stage: {v} imputed wholesale from {measuring} measuring studies, {fitting} of them with a full "
                f"fit of its model, fewer than its {coefficients} coefficients + 1, so part of the between-study "
                "covariance is 0"
            )
    return "; ".join(notes)


def fitting_studies(frame: pd.DataFrame, v: str, coefficients: int) -> int:
    """The studies whose rows with v observed have both arms, (v not employment) every arm-by-employment
    cell among the observed employment values, and at least coefficients + 5 rows (micemd's df rule)."""
    cells = ["arm"] if v == "employed" else ["arm", "employed"]
    count = 0
    for _, part in frame[frame[v].notna()].groupby("study"):
        full = part.dropna(subset=["employed"]).groupby(cells).size().size == 2 ** len(cells)
        count += bool(full and len(part) >= coefficients + MINIMUM_RESIDUAL_DF)
    return count


def pooled_two_stage(
    frame: pd.DataFrame, outcome: str, imputation: int, seed: int, iterations: int, covariates: tuple[str, ...] = ()
) -> pd.DataFrame:
    """One chain over all studies, every variable drawn from the two-stage model (systematically
    missing ones included); studies ordered by rows_key and rows by row_order, as pooled_fixed_effects."""
    if "diagnosis" in covariates:
        raise ImputationError(
            "multiple_imputation.method two_stage does not take diagnosis as a covariate (a study without one "
            "of its levels has an aliased indicator); use multiple_imputation.method: stratified"
        )
    for v in (*covariates, *variables(outcome)):
        observing = frame.loc[frame[v].notna(), "study"].nunique()
        if frame[v].isna().any() and 0 < observing < TWO_STAGE_MINIMUM_STUDIES:
            raise ImputationError(
                f"{v} is measured in {observing} study only, too few for the two-stage imputation model's "
                f"meta-analysis (at least {TWO_STAGE_MINIMUM_STUDIES}); use multiple_imputation.method: stratified"
            )
    parts = sorted((part.iloc[row_order(part, outcome, covariates)] for _, part in frame.groupby("study")),
                   key=lambda part: rows_key(part, outcome, covariates))  # fmt: skip
    codes = np.repeat(np.arange(len(parts)), [len(part) for part in parts])
    rng = generator(seed, imputation, outcome, "all studies")
    empty = np.empty((len(codes), 0))
    try:
        completed = chain(pd.concat(parts), outcome, rng, iterations, empty, codes, covariates, "two_stage")
    except TooFewStudies as too_few:
        raise too_few_studies(too_few, [str(part["study"].iloc[0]) for part in parts]) from None
    return completed.loc[frame.index]


def check_two_level(kept: pd.DataFrame, outcome: str) -> None:
    """The two-level model's variance steps need MINIMUM_STUDIES studies for each incomplete score."""
    studies = kept["study"].nunique()
    for v in variables(outcome)[1:]:  # the scores
        if kept[v].isna().any() and studies < MINIMUM_STUDIES:
            raise ImputationError(
                f"{v} is measured in {studies} studies only, too few for the two-level imputation model's "
                f"between-study variance (at least {MINIMUM_STUDIES}); use multiple_imputation.method: "
                "stratified or fixed_effects"
            )


def delta_adjusted(completed: pd.DataFrame, observed: pd.DataFrame, outcome: str, delta: Delta) -> pd.DataFrame:
    """`completed` with each imputed follow-up (missing in `observed`, same index) shifted by the delta of
    its participant's arm and (completed) employment group; observed values are never moved."""
    if delta.is_zero:
        return completed
    imputed = observed[f"{outcome}_fu_z"].isna().to_numpy() & completed[f"{outcome}_fu_z"].notna().to_numpy()
    ips = (completed["arm"] == "IPS").to_numpy(float)
    shift = delta.shift(ips, completed["employed"].to_numpy(float))
    out = completed.copy()
    out[f"{outcome}_fu_z"] = completed[f"{outcome}_fu_z"].to_numpy(float) + np.where(imputed, shift, 0.0)
    return out
