"""lmer's result methods against lme4 and lmerTest, computed live by R on R datasets no other test
uses: nlme's Machines, lmerTest's ham and carrots, MASS's oats (also unbalanced by dropping rows),
and datasets' ChickWeight (random slope).

- anova: lmerTest's anova(type = 3), Satterthwaite and Kenward-Roger: F, NumDF, DenDF to 1e-6
  relative; p to 1e-6 relative, or its logarithm to 1e-6 relative where p is tiny (a p of 1e-16
  moves by 1e-6 relative when F moves by 4e-8, which is the precision of the fit itself);
- ranef: lme4's ranef(condVar = TRUE) modes (1e-6 of their largest) and conditional variances (1e-5:
  they scale with the variance components, which the engine matches to about 1e-6 on slope models);
- predict (1e-6 of the largest prediction): lme4's predict on new rows, group-level, population-level
  (re.form = NA), the random intercepts only (re.form = ~(1 | group), a random slope left out) and
  with a new group (allow.new.levels = TRUE), and the fitted values;
- confint: lme4's confint(method = "Wald").
lme4 is refitted with tight optimizer tolerances, as in test_lmm_reference.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rscript import LME4_TIGHT, run_r

import ipdpool

R_SCRIPT = (
    LME4_TIGHT
    + r"""
suppressPackageStartupMessages({library(lmerTest); library(nlme); library(MASS)})
plain <- function(d) { for (n in names(d)) if (is.factor(d[[n]])) d[[n]] <- as.character(d[[n]]); as.data.frame(d) }
factors <- function(d) { for (n in names(d)) if (is.character(d[[n]])) d[[n]] <- factor(d[[n]]); d }
machines <- plain(Machines)
hamd <- plain(ham)[, c("Consumer", "Product", "Information", "Informed.liking")]
carrotsd <- plain(carrots)[, c("Consumer", "Preference", "sens1", "sens2", "Homesize", "Age")]
oatsd <- plain(MASS::oats)
oats_unbalanced <- oatsd[-c(2, 9, 23, 40, 41, 66), ]
chick <- plain(ChickWeight)
out <- list(data = list(machines = machines, ham = hamd, carrots = carrotsd, oats = oatsd,
                        oats_unbalanced = oats_unbalanced, chick = chick), anova = list(), methods = list())
anova_list <- function(a) list(terms = rownames(a), F = a[["F value"]], NumDF = a$NumDF, DenDF = a$DenDF,
                               p = a[["Pr(>F)"]])
for (case in names(CASES)) {
  cs <- CASES[[case]]
  m <- lmer(as.formula(cs$formula), factors(out$data[[cs$data]]), REML = cs$reml, control = tight)
  res <- list(s = anova_list(anova(m, type = 3)))
  if (cs$reml) res$kr <- anova_list(anova(m, type = 3, ddf = "Kenward-Roger"))
  out$anova[[case]] <- res
  if (!is.null(cs$new)) {
    d <- factors(out$data[[cs$data]])
    re <- ranef(m, condVar = TRUE)[[1]]
    new <- d[cs$new, ]
    new[[cs$group]] <- as.character(new[[cs$group]]); new[[cs$group]][1] <- "a new group"
    ci <- confint(m, method = "Wald")
    out$methods[[case]] <- list(
      groups = rownames(re), modes = unname(as.matrix(re)), cond_var = as.vector(attr(re, "postVar")),
      fitted = unname(predict(m)), rows = cs$new,
      group_level = unname(predict(m, newdata = new, allow.new.levels = TRUE)),
      population = unname(predict(m, newdata = new, re.form = NA)),
      intercepts_only = unname(predict(m, newdata = new, allow.new.levels = TRUE,
                                       re.form = as.formula(paste0("~(1 | ", cs$group, ")")))),
      confint = unname(ci[names(fixef(m)), ]), scaled_residuals = unname(quantile(resid(m, scaled = TRUE))),
      confint_90 = unname(confint(m, method = "Wald", level = 0.9)[names(fixef(m)), ]))
  }
}
"""
)

CASES = {
    "machines": ("machines", "score ~ Machine + (1 | Worker)", True),
    "ham": ("ham", "Informed.liking ~ Product * Information + (1 | Consumer)", True),
    "carrots": ("carrots", "Preference ~ sens1 + sens2 + Homesize * Age + (1 | Consumer)", True),
    "oats": ("oats", "Y ~ N * V + (1 | B)", True),
    "oats_ml": ("oats", "Y ~ N * V + (1 | B)", False),
    "oats_unbalanced": ("oats_unbalanced", "Y ~ N * V + (1 | B)", True),
    "chick": ("chick", "weight ~ Time * Diet + (Time | Chick)", True),
}
# rows (1-based, as R) predicted on new data, the first given a group the fit has not seen
METHOD_CASES = {"oats_unbalanced": ("B", [1, 5, 20, 33, 60]), "chick": ("Chick", [1, 2, 50, 300, 577])}


def r_cases() -> str:
    entries = []
    for case, (data, formula, reml) in CASES.items():
        extra = ""
        if case in METHOD_CASES:
            group, rows = METHOD_CASES[case]
            extra = f', group = "{group}", new = c({", ".join(map(str, rows))})'
        entries.append(f'{case} = list(data = "{data}", formula = "{formula}", reml = {str(reml).upper()}{extra})')
    return "CASES <- list(" + ",\n".join(entries) + ")\n"


R_NEW_DATA = r"""
fd <- factor_data
fd$k <- factor(fd$k); fd$g <- factor(fd$g)  # as R reads text columns into a model
ma <- lmer(y ~ x + k + factor(kn) + (1 + g | study), fd, control = tight)
newa <- fd[1:6, ]
refused <- function(e) "refused"
mb <- lmer(y ~ x + (1 | study/centre), fd, control = tight)
newb <- fd[c(2, 30, 60), ]
newb$study[2] <- NA; newb$centre[3] <- NA
both <- ~(1 | study) + (1 | centre:study)
out$new_data <- list(
  fitted = unname(fitted(ma)), fitted_rows = as.integer(names(fitted(ma))),
  full = unname(predict(ma, newa)), population = unname(predict(ma, newa, re.form = NA)),
  # lme4's predict(re.form = ~(1 | study)) fails on a factor slope ("contrasts can be applied only to
  # factors with 2 or more levels"): the same prediction from its population level and modes
  study_intercepts = unname(predict(ma, newa, re.form = NA) + ranef(ma)$study[as.character(newa$study), 1]),
  new_kn = tryCatch(predict(ma, transform(newa, kn = 9)), error = refused),
  new_g = tryCatch(predict(ma, transform(newa, g = "q")), error = refused),
  nested = unname(predict(mb, fd[c(2, 30, 60), ])),
  missing_group = tryCatch(predict(mb, newb, re.form = both), error = refused),
  missing_allowed = unname(predict(mb, newb, re.form = both, allow.new.levels = TRUE)))
"""


def factor_data() -> pd.DataFrame:
    """Eight studies of three centres: a text factor k, a number-coded factor kn (C(kn)), a text
    factor g with random slopes by study; two rows without y (dropped by both fits)."""
    rng = np.random.default_rng(22)
    n = 192
    data = pd.DataFrame({"study": np.repeat(np.arange(1, 9), 24), "centre": np.tile(np.repeat([1, 2, 3], 8), 8)})
    data["x"], data["k"] = rng.normal(size=n), rng.choice(["1", "2", "3"], size=n)
    data["kn"], data["g"] = rng.choice([1, 2, 3], size=n), np.tile(["a", "b", "c"], n // 3)
    slopes = rng.normal(size=(8, 3)) * [1.0, 1.0, 1.5]
    study = data["study"].to_numpy() - 1
    data["y"] = (
        data["x"] + 2 * (data["k"] == "2") - (data["kn"] == 3) + slopes[study, 0]
        + slopes[study, 1] * (data["g"] == "b") + slopes[study, 2] * (data["g"] == "c")
        + 0.5 * rng.normal(size=24)[3 * study + data["centre"] - 1] + rng.normal(size=n)
    )  # fmt: skip
    data.loc[[9, 99], "y"] = np.nan
    return data.set_axis(np.arange(n) * 10 + 7)  # row labels that are not positions


@pytest.fixture(scope="module")
def reference():
    data = factor_data()
    return run_r(r_cases() + R_SCRIPT + R_NEW_DATA, {"factor_data": data.reset_index(drop=True)})


@pytest.fixture(scope="module")
def fits(reference):
    return {
        case: ipdpool.lmer(formula, pd.DataFrame(reference["data"][data]), reml=reml)
        for case, (data, formula, reml) in CASES.items()
    }


def relative(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    return float(np.max(np.abs(ours - theirs) / np.abs(theirs)))


def scaled(ours, theirs) -> float:
    """Largest difference relative to the largest value (for predictions near zero)."""
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def p_values_agree(ours, theirs, rel=1e-6) -> bool:
    ours, theirs = np.asarray(ours, float), np.atleast_1d(np.asarray(theirs, float))
    direct = np.abs(ours - theirs) <= rel * theirs
    logarithmic = np.abs(np.log(ours) - np.log(theirs)) <= rel * np.abs(np.log(theirs))
    return bool(np.all(direct | logarithmic))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward_roger"])
def test_anova_equals_lmertest_type3(case, ddf, reference, fits):
    key = "s" if ddf == "satterthwaite" else "kr"
    if key not in reference["anova"][case]:
        with pytest.raises(ValueError, match="only available for REML"):
            fits[case].anova(ddf)
        return
    theirs = reference["anova"][case][key]
    ours = fits[case].anova(ddf)
    assert list(ours.index) == list(np.atleast_1d(theirs["terms"]))
    for column, name in (("F value", "F"), ("NumDF", "NumDF"), ("DenDF", "DenDF")):
        assert relative(ours[column], np.atleast_1d(theirs[name])) < 1e-6, (column, ours[column].tolist(), theirs[name])
    assert p_values_agree(ours["Pr(>F)"], theirs["p"]), (ours["Pr(>F)"].tolist(), theirs["p"])


@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_ranef_equals_lme4_condvar(case, reference, fits):
    theirs = reference["methods"][case]
    effects = fits[case].ranef()
    modes = np.asarray(theirs["modes"], float)
    k, q = modes.shape
    ours = effects.modes.loc[[str(g) for g in theirs["groups"]]].to_numpy()
    scale = np.abs(modes).max(axis=0)
    assert np.all(np.abs(ours - modes) <= 1e-6 * scale), np.max(np.abs(ours - modes) / scale)
    cond_var = np.asarray(theirs["cond_var"], float).reshape((q, q, k), order="F").transpose(2, 0, 1)
    order = [list(effects.modes.index).index(str(g)) for g in theirs["groups"]]
    assert relative(effects.cond_var[order], cond_var) < 1e-5  # moves with the variance components (1e-6)
    assert np.allclose(effects.cond_sd.to_numpy()[order] ** 2, np.diagonal(cond_var, axis1=1, axis2=2))


@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_predict_equals_lme4(case, reference, fits):
    theirs = reference["methods"][case]
    fit = fits[case]
    group, rows = METHOD_CASES[case]
    new = pd.DataFrame(reference["data"][CASES[case][0]]).iloc[[r - 1 for r in rows]].copy()
    new[group] = new[group].astype(str)
    new.iloc[0, new.columns.get_loc(group)] = "a new group"
    assert scaled(fit.predict(), theirs["fitted"]) < 1e-6
    assert scaled(fit.predict(new, allow_new_levels=True), theirs["group_level"]) < 1e-6
    assert scaled(fit.predict(new, re_form=None, allow_new_levels=True), theirs["group_level"]) < 1e-6  # R's NULL
    for population in ("~0", "NA", " ~ 0 ", np.nan, pd.NA):  # lme4's re.form = NA or ~0
        assert scaled(fit.predict(new, re_form=population), theirs["population"]) < 1e-6
    random_part = "~" + CASES[case][1].split("+")[-1].strip()  # the model's own random part: group level
    assert scaled(fit.predict(new, re_form=random_part, allow_new_levels=True), theirs["group_level"]) < 1e-6
    intercepts_only = fit.predict(new, re_form=f"~(1 | {group})", allow_new_levels=True)  # a slope's term left out
    assert scaled(intercepts_only, theirs["intercepts_only"]) < 1e-6
    with pytest.raises(ValueError, match="not in the fit"):
        fit.predict(new)  # lme4's default refuses a new group too
    assert scaled(fit.predict(new.iloc[1:]), theirs["group_level"][1:]) < 1e-6


@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_confint_equals_lme4_wald(case, reference, fits):
    theirs = reference["methods"][case]
    assert relative(fits[case].confint(), theirs["confint"]) < 1e-6
    ninety = fits[case].confint(0.9)
    assert list(ninety.columns) == ["5 %", "95 %"]
    assert relative(ninety, theirs["confint_90"]) < 1e-6


@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_summary_scaled_residuals_equal_lme4(case, reference, fits):
    lines = fits[case].summary().splitlines()
    values = lines[lines.index("Scaled residuals:") + 2].split()
    assert [float(v) for v in values] == pytest.approx(reference["methods"][case]["scaled_residuals"], abs=1e-4)


def test_summary_reads_like_lmertest_with_no_nan(fits):
    for fit in fits.values():
        text = fit.summary()
        assert "nan" not in text.lower()
        for heading in ("Random effects:", "Groups", "Std.Dev.", "Fixed effects:", "Estimate", "Pr(>|t|)"):
            assert heading in text
        assert len(repr(fit)) < 300
    chick = fits["chick"].summary()
    assert "Corr" in chick and "Number of obs: 578, groups:  Chick, 50" in chick


def test_predict_matches_factors_by_label_and_refuses_new_levels_as_lme4(reference):
    """New data's factors are matched to the fit's levels by label, whatever their type (a number
    for a text level, text for a number-coded C(kn), a Categorical of numbers, float group ids), in
    the fixed and the random part; a new level, text in a numeric column and a term named twice are
    refused (by name and row count, no value), as lme4 refuses them; a variable of a term re_form
    leaves out is not read; predict() is indexed by the data's row labels, as lme4's fitted()."""
    theirs, data = reference["new_data"], factor_data()
    fit = ipdpool.lmer("y ~ x + k + C(kn) + (1 + g | study)", data)
    used = data.index[data["y"].notna()]
    assert fit.predict().index.equals(used)
    assert [list(data.index).index(label) + 1 for label in used] == theirs["fitted_rows"]
    assert scaled(fit.predict(), theirs["fitted"]) < 1e-6
    new = data.iloc[:6]
    for recoded in (
        new,
        new.assign(k=new["k"].astype(int)),
        new.assign(k=pd.Categorical(new["k"].astype(int))),
        new.assign(kn=new["kn"].astype(str)),
        new.assign(kn=new["kn"].astype(float), g=pd.Categorical(new["g"], categories=["c", "b", "a", "q"])),
    ):
        assert scaled(fit.predict(recoded), theirs["full"]) < 1e-6
    left_out = fit.predict(new.assign(g="n/a"), re_form="~ (1 | `study`)")  # g is not read (lme4 reads it)
    assert scaled(left_out, theirs["study_intercepts"]) < 1e-6
    assert scaled(fit.predict(new, re_form="~((1 | study))"), theirs["study_intercepts"]) < 1e-6
    assert scaled(fit.predict(new.assign(g=1), re_form=" ~0"), theirs["population"]) < 1e-6
    text = new["x"].round(3).astype(str)
    for bad, message, hidden in (
        (new.assign(kn=9), "6 rows of the new data have a level of factor 'kn' that is not in the fit", ["9"]),
        (new.assign(kn=2.5), "6 rows .* factor 'kn'", ["2.5"]),
        (new.assign(k=[1, 2, 47, 1, 2, 3]), "1 rows .* factor 'k'", ["47"]),
        (new.assign(g="q"), "6 rows .* factor 'g'", ["'q'"]),
        (new.assign(g=new["g"].map({"a": 1, "b": 2, "c": 3})), "6 rows .* factor 'g'", []),
        (new.assign(x=text), "column 'x' is numeric in the fit but 6 rows", list(text)),
    ):
        with pytest.raises(ValueError, match=message) as refusal:
            fit.predict(bad)
        assert not [value for value in hidden if value in str(refusal.value)]
    assert theirs["new_kn"] == "refused" and theirs["new_g"] == "refused"
    with pytest.raises(ValueError, match="twice"):
        fit.predict(new, re_form="~(1 | study) + (1 | study)")


def test_predict_float_group_ids_and_missing_groups_as_lme4(reference):
    """Group ids given as a Categorical of floats find the fit's integer ids (R labels 1.0 "1"); a
    missing group of an added factor is refused, or with allow_new_levels predicted at the population
    level of that factor, as lme4 does."""
    theirs, data = reference["new_data"], factor_data()
    fit = ipdpool.lmer("y ~ x + (1 | study/centre)", data)
    new = data.iloc[[1, 29, 59]]
    floats = new.assign(**{c: pd.Categorical(new[c].astype(float)) for c in ("study", "centre")})
    assert scaled(fit.predict(floats), theirs["nested"]) < 1e-6
    missing = floats.assign(study=[1.0, np.nan, new["study"].iloc[2]], centre=[*new["centre"].iloc[:2], np.nan])
    both = "~(1 | study) + (1 | centre:study)"
    assert theirs["missing_group"] == "refused"
    with pytest.raises(ValueError, match="missing grouping value \\(2 of 'centre:study', 1 of 'study'\\)"):
        fit.predict(missing, re_form=both)
    assert scaled(fit.predict(missing, re_form=both, allow_new_levels=True), theirs["missing_allowed"]) < 1e-6
