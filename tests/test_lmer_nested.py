"""Nested random effects, `(1 | study/centre)` and `(terms | study) + (1 | study:centre)`, checked
live against lme4, lmerTest and pbkrtest: lme4's Pastes, nlme's Oats and Pixel (a random slope by
dog with a random intercept by side within dog, Pinheiro & Bates 2000, section 4.3; its left sides
alone give as many Dog:Side as Dog levels, a tie in lme4's order of the terms) and the demo's
harmonized data with its centres (`site`; EU6 has six), with the primary models' fixed part.

The data come back from R (so both fit the same numbers); each is fitted through ipdpool.lmer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rscript import LME4_TIGHT, run_r

import ipdpool
from ipdpool.demo.design import TRIALS
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.models import NotEstimable
from ipdpool.models.formula import FormulaError
from ipdpool.models.onestage import fit_outcome

R_FITS = (
    LME4_TIGHT
    + r"""
suppressPackageStartupMessages({library(lmerTest); library(nlme)})
characters <- function(d) { d[] <- lapply(d, function(v) if (is.factor(v)) as.character(v) else v); d }
pastes <- characters(as.data.frame(lme4::Pastes)[, c("strength", "batch", "cask", "sample")])
oats <- characters(as.data.frame(Oats)[, c("yield", "nitro", "Block", "Variety")])
names(oats)[1] <- "grain"  # yield is a Python keyword
pixel <- characters(as.data.frame(Pixel)[, c("pixel", "day", "Dog", "Side")])
pixel_left <- pixel[pixel$Side == "L", ]  # one side per dog: as many Dog:Side as Dog levels
data <- list(pastes = pastes, oats = oats, pixel = pixel, pixel_left = pixel_left, demo = demo)
one <- function(formula, d, reml) {
  m <- lmer(as.formula(formula), d, REML = reml, control = tight)
  s <- summary(m)$coefficients
  re <- ranef(m, condVar = TRUE)
  modes <- lapply(re, function(r) list(levels = rownames(r), values = unname(as.matrix(r)),
                                       sd = t(apply(attr(r, "postVar"), 3, function(v) sqrt(diag(as.matrix(v)))))))
  res <- list(beta = unname(fixef(m)), names = names(fixef(m)),
              variances = lapply(VarCorr(m), function(v) unname(diag(as.matrix(v)))),
              se = unname(s[, 2]), df = unname(s[, 3]), sigma2 = sigma(m)^2,
              theta = unname(getME(m, "theta")), criterion = if (reml) REMLcrit(m) else deviance(m),
              singular = isSingular(m), ranef = modes, groups = names(re), predict = unname(predict(m)))
  a <- anova(m)
  res$anova_f <- unname(a[["F value"]]); res$anova_df <- unname(a[["DenDF"]])
  if (reml) { k <- summary(m, ddf = "Kenward-Roger")$coefficients; res$kr_se <- unname(k[, 2])
              res$kr_df <- unname(k[, 3]) }
  res
}
new_rows <- function(d, formula, study, centre) {  # 3 fitted rows, an unseen centre of a seen study, an unseen study
  d <- d[complete.cases(d[, intersect(all.vars(as.formula(formula)), names(d))]), ]
  new <- d[c(1, nrow(d) %/% 2, nrow(d), 1, 1), ]
  new[[centre]][4:5] <- "unseen centre"
  new[[study]][5] <- "unseen study"
  new
}
predictions <- function(p) {
  new <- new_rows(data[[p$data]], p$formula, p$study, p$centre)
  m <- lmer(as.formula(p$formula), data[[p$data]], control = tight)
  refused <- function(e) NA
  strict <- function(rows, re) tryCatch(unname(predict(m, new[rows, ], re.form = re)), error = refused)
  forms <- lapply(p$forms, function(f) {
    re <- if (f == "NA") NA else as.formula(f)
    list(allowed = unname(predict(m, new, re.form = re, allow.new.levels = TRUE)),
         seen_studies = strict(1:4, re), all = strict(1:5, re))
  })
  list(new = new, forms = setNames(forms, p$forms))
}
out <- list(data = data, fits = lapply(cases, function(c) one(c$formula, data[[c$data]], c$reml)),
            predictions = lapply(predict_cases, predictions))
"""
)

CASES = {
    "pastes": ("pastes", "strength ~ 1 + (1 | batch/cask)", True),
    "oats": ("oats", "grain ~ nitro + (1 | Block/Variety)", True),
    "pixel": ("pixel", "pixel ~ day + I(day^2) + (day | Dog) + (1 | Dog:Side)", True),
    "pixel_ml": ("pixel", "pixel ~ day + I(day^2) + (day | Dog) + (1 | Dog:Side)", False),
    # a tie in levels (10 and 10): lme4 keeps the written order of the terms (theta, VarCorr, ranef)
    "tie": ("pixel_left", "pixel ~ day + I(day^2) + (0 + day | Dog) + (1 | Dog:Side)", True),
    "tie_centre_first": ("pixel_left", "pixel ~ day + I(day^2) + (1 | Dog:Side) + (0 + day | Dog)", True),
    "demo_employed": ("demo", "self_esteem_fu_z ~ employed + self_esteem_bl_z + (1 | study/site)", True),
    "demo_interaction": (
        "demo",
        "depression_fu_z ~ ips + employed + ips:employed + depression_bl_z + (1 | study/site)",
        True,
    ),
}


def harmonized_demo(repo: Path) -> pd.DataFrame:
    """The demo harmonized by its rule files (site: each study's centre, constant in SE and US)."""
    schema = load_schema(repo / "config" / "schema.yaml")
    frames = []
    for study in TRIALS:
        rules = load_rules(repo / "config" / "studies" / f"{study}.yaml")
        frames.append(harmonize_study(rules, schema, b"test-key-0123456789abcdef", base_dir=repo).data)
    data = pd.concat(frames, ignore_index=True)
    data["ips"] = (data["arm"] == "IPS").astype(float)
    columns = ["study", "site", "arm", "ips", "employed", "self_esteem_bl_z", "self_esteem_fu_z"]
    return data[columns + ["depression_bl_z", "depression_fu_z"]].astype({"employed": float})


# lme4's re.form on nested fits: (data, formula, study, centre column, re.forms); a factor is named
# as lme4 names it ((1 | a/b) makes 'b:a'), "NA" is re.form = NA
PREDICT_CASES = {
    "pastes": ("pastes", CASES["pastes"][1], "batch", "cask",
               ["~(1 | batch)", "~(1 | cask:batch)", "~(1 | batch/cask)"]),
    "pastes_sample": ("pastes", "strength ~ 1 + (1 | sample) + (1 | batch)", "batch", "sample",
                      ["~(1 | batch)", "~(1 | sample)"]),
    "oats": ("oats", CASES["oats"][1], "Block", "Variety", ["~(1 | Block)", "~(1 | Variety:Block)", "NA", "~0"]),
    "pixel": ("pixel", CASES["pixel"][1], "Dog", "Side",
              ["~(day | Dog)", "~(1 | Dog)", "~(0 + day | Dog)", "~(1 | Dog:Side)", "~(day | Dog) + (1 | Dog:Side)"]),
    "demo": ("demo", CASES["demo_employed"][1], "study", "site", ["~(1 | study)", "~(1 | site:study)"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def reference(repo_root):
    cases = {name: {"data": d, "formula": f, "reml": r} for name, (d, f, r) in CASES.items()}
    predict_cases = {
        name: {"data": d, "formula": f, "study": s, "centre": c, "forms": forms}
        for name, (d, f, s, c, forms) in PREDICT_CASES.items()
    }
    script = (
        f"cases <- fromJSON({json.dumps(json.dumps(cases))}, simplifyVector = FALSE)\n"
        f"predict_cases <- fromJSON({json.dumps(json.dumps(predict_cases))}, simplifyVector = FALSE)\n"
    )
    return run_r(script + R_FITS, {"demo": harmonized_demo(repo_root)})


def relative(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300)))


@pytest.mark.parametrize("case", CASES)
def test_nested_fits_equal_lme4_lmertest_and_pbkrtest(case, reference):
    data, formula, reml = CASES[case]
    frame = pd.DataFrame(reference["data"][data])
    theirs = reference["fits"][case]
    result = ipdpool.lmer(formula, frame, reml=reml)
    fit = result.fit
    assert "nan" not in result.summary().lower()
    assert fit.deviance <= theirs["criterion"] + 1e-9
    assert fit.deviance == pytest.approx(theirs["criterion"], rel=1e-9)
    np.testing.assert_allclose(fit.theta, theirs["theta"], rtol=1e-6, atol=1e-7)
    fixed = result.fixed
    np.testing.assert_allclose(fixed["estimate"], theirs["beta"], rtol=1e-6, atol=1e-8 * fixed["se"].min())
    np.testing.assert_allclose(fixed["se"], theirs["se"], rtol=1e-6)
    np.testing.assert_allclose(fixed["df"], theirs["df"], rtol=1e-6)
    assert fit.sigma2 == pytest.approx(theirs["sigma2"], rel=1e-6)
    assert fit.is_singular == theirs["singular"]
    predicted = result.predict().to_numpy()
    np.testing.assert_allclose(predicted, theirs["predict"], rtol=1e-6, atol=1e-7 * np.std(predicted))
    anova = result.anova()
    np.testing.assert_allclose(anova["F value"].to_numpy(float), theirs["anova_f"] or [], rtol=1e-6)
    np.testing.assert_allclose(anova["DenDF"].to_numpy(float), theirs["anova_df"] or [], rtol=1e-6)
    ranef = result.ranef()
    assert list(ranef) == theirs["groups"]
    assert [group for group, _, _ in result.random_blocks()] == list(theirs["variances"])  # VarCorr's order
    for group, effects in ranef.items():
        expected = theirs["ranef"][group]
        assert list(effects.modes.index) == expected["levels"]
        np.testing.assert_allclose(effects.modes.to_numpy(), np.array(expected["values"]), rtol=1e-5, atol=1e-7)
        sd = np.array(expected["sd"]).reshape(effects.cond_sd.shape)
        np.testing.assert_allclose(effects.cond_sd.to_numpy(), sd, rtol=1e-6)
    if reml:
        kr = ipdpool.lmer(formula, frame, reml=True, ddf="kenward_roger")
        np.testing.assert_allclose(kr.fixed["se"], theirs["kr_se"], rtol=1e-6)
        np.testing.assert_allclose(kr.fixed["df"], theirs["kr_df"], rtol=1e-6)
        # every term here has 1 df: its Kenward-Roger F test's DenDF is the coefficient's (pbkrtest)
        np.testing.assert_allclose(kr.anova()["DenDF"].to_numpy(float), kr.fixed["df"].to_numpy()[1:], rtol=1e-9)


def test_nested_coding_and_the_explicit_interaction_give_lme4s_nested_fit(reference):
    """Pastes' `sample` labels each cask uniquely (batch:cask), so (1 | batch) + (1 | sample) is the
    nested model as lme4 fits it; (1 | batch) + (1 | batch:cask) likewise, with lme4's names."""
    frame = pd.DataFrame(reference["data"]["pastes"])
    theirs = reference["fits"]["pastes"]
    for formula, centre in [
        ("strength ~ 1 + (1 | batch) + (1 | sample)", "sample"),
        ("strength ~ 1 + (1 | batch) + (1 | batch:cask)", "batch:cask"),
        ("strength ~ 1 + (1 | batch:cask) + (1 | batch)", "batch:cask"),
    ]:
        result = ipdpool.lmer(formula, frame)
        assert list(result.ranef()) == [centre, "batch"]
        assert result.fit.deviance == pytest.approx(theirs["criterion"], rel=1e-9)
        np.testing.assert_allclose(result.fit.theta, theirs["theta"], rtol=1e-6)
        assert f"groups:  {centre}, 30; batch, 10" in result.summary()


@pytest.mark.parametrize(
    "formula, message",
    [
        ("strength ~ 1 + (1 | batch) + (1 | cask)", "crossed"),  # cask a, b, c recur in every batch
        ("strength ~ 1 + (1 | batch/cask/sample)", "deeper nesting"),
        ("strength ~ 1 + (1 + cask | batch/sample)", "random intercept"),
    ],
)
def test_crossed_and_other_multi_part_forms_are_refused_in_one_sentence(formula, message, reference):
    with pytest.raises((FormulaError, NotEstimable), match=message) as refused:
        ipdpool.lmer(formula, pd.DataFrame(reference["data"]["pastes"]))
    assert str(refused.value).count(". ") == 0


def test_the_demo_centres_are_those_of_the_rule_files(reference):
    """EU6 names six centres, DK three, NL four; SE and US give a constant site (one centre each)."""
    demo = pd.DataFrame(reference["data"]["demo"])
    centres = demo.groupby("study")["site"].nunique().to_dict()
    assert centres == {"DK": 3, "EU6": 6, "NL": 4, "SE": 1, "US": 1}
    measured = demo[demo["self_esteem_fu_z"].notna()]
    result = ipdpool.lmer(CASES["demo_employed"][1], demo)
    assert result.n_groups == measured["study"].nunique() >= 3
    assert result.n_centres == len(measured.groupby(["study", "site"])) > result.n_groups + 3


MODELS = {  # config/config.yaml's models whose primary design the demo cases above fit with (1 | study/site)
    "employed": {"terms": ["employed"], "adjust": ["baseline"], "report": {"employed": {"employed": 1}}},
    "ips_x_employed": {
        "terms": ["ips", "employed", "ips:employed"],
        "adjust": ["baseline"],
        "report": {"ips:employed": {"ips:employed": 1}, "ips_in_not_employed": {"ips": 1}},
    },
}
WORKFLOW_CASES = [  # (case, outcome, model, term, R's coefficient)
    ("demo_employed", "self_esteem", "employed", "employed", "employed"),
    ("demo_interaction", "depression", "ips_x_employed", "ips:employed", "ips:employed"),
    ("demo_interaction", "depression", "ips_x_employed", "ips_in_not_employed", "ips"),
]


def test_centre_within_study_sensitivity_rows_equal_lme4(reference):
    """The workflow's `centre_within_study` variant (per-centre statistics of the harmonized demo,
    the primary model with (1 | study/site)) gives lmerTest's estimate, SE and df and lme4's
    variance components."""
    demo = pd.DataFrame(reference["data"]["demo"])
    analysis = {"models": MODELS, "sensitivity": {"variants": ["centre_within_study"]}}
    for case, outcome, model, term, coefficient in WORKFLOW_CASES:
        _, sensitivity = fit_outcome(demo, outcome, {**analysis, "outcomes": [outcome]})
        row = sensitivity.set_index(["variant", "contrast", "term"]).loc[("centre_within_study", model, term)]
        theirs = reference["fits"][case]
        j = theirs["names"].index(coefficient)
        assert row["status"] == "estimated" and "centres per study" in row["warnings"]
        assert row["estimate"] == pytest.approx(theirs["beta"][j], rel=1e-6, abs=1e-8 * theirs["se"][j])
        assert row["se"] == pytest.approx(theirs["se"][j], rel=1e-6)
        assert row["df"] == pytest.approx(theirs["df"][j], rel=1e-6)
        assert row["sigma2"] == pytest.approx(theirs["sigma2"], rel=1e-6)
        scale = 1e-7 * theirs["sigma2"]
        assert row["tau2"] == pytest.approx(np.atleast_1d(theirs["variances"]["study"])[0], rel=1e-6, abs=scale)
        assert row["centre_variance"] == pytest.approx(
            np.atleast_1d(theirs["variances"]["site:study"])[0], rel=1e-6, abs=scale
        )
        assert row["n_participants"] == len(demo[["employed", f"{outcome}_bl_z", f"{outcome}_fu_z"]].dropna())


@pytest.mark.parametrize("case", PREDICT_CASES)
def test_predict_with_some_random_terms_equals_lme4_re_form(case, reference):
    """lme4's predict(m, newdata, re.form = ...) on nested fits: only the named terms' conditional
    modes added (a study-level prediction for a centre not in the fit, the centre term alone, part
    of a random slope's terms), new levels of an added factor at 0 with allow_new_levels and refused
    without it (as lme4), new levels of a factor left out not looked at."""
    data, formula, _, _, forms = PREDICT_CASES[case]
    theirs = reference["predictions"][case]
    new = pd.DataFrame(theirs["new"])
    result = ipdpool.lmer(formula, pd.DataFrame(reference["data"][data]))
    scale = np.abs(result.predict().to_numpy()).max()
    for form in forms:
        expected = theirs["forms"][form]
        re_form = form  # "NA" as lme4's re.form = NA
        allowed = result.predict(new, re_form=re_form, allow_new_levels=True).to_numpy()
        np.testing.assert_allclose(allowed, expected["allowed"], rtol=0, atol=1e-8 * scale, err_msg=form)
        for rows, key in ((slice(0, 4), "seen_studies"), (slice(0, 5), "all")):
            if expected[key] is None:
                with pytest.raises(ValueError, match="not in the fit"):
                    result.predict(new.iloc[rows], re_form=re_form)
            else:
                ours = result.predict(new.iloc[rows], re_form=re_form).to_numpy()
                np.testing.assert_allclose(ours, expected[key], rtol=0, atol=1e-8 * scale, err_msg=f"{form} {key}")


def test_re_form_refusals_and_the_variables_of_terms_left_out(reference):
    """As lme4: a factor named otherwise than the fit names it ((1 | batch/cask) makes 'cask:batch'),
    a factor or term not in the fit, and text that is not a formula are refused; a variable only
    the terms left out use need not be in the new data (lme4 fills it with NA)."""
    pastes = ipdpool.lmer(CASES["pastes"][1], pd.DataFrame(reference["data"]["pastes"]))
    for re_form, message in [
        ("~(1 | batch:cask)", "'batch:cask', which is not one of the fit's \\['batch', 'cask:batch'\\]"),
        ("~(1 | sample)", "not one of the fit's"),
        ("(1 | batch)", "re_form must be"),
        ("~(1 + sample | batch)", "use \\['sample'\\], which the fit's random terms do not"),
        ("~(0 + strength | batch)", "terms \\['strength'\\] of 'batch' are not in the fit"),
        ("~(1 | batch) + ((1 | batch))", "terms \\['Intercept'\\] of 'batch' twice"),
        ("all", "re_form must be None"),
    ]:
        with pytest.raises(ValueError, match=message):
            pastes.predict(re_form=re_form)
    rng = np.random.default_rng(5)
    data = pd.DataFrame({"x": rng.normal(size=60), "s": np.repeat(range(6), 10), "c": np.repeat(range(20), 3)})
    data["y"] = data["x"] * rng.normal(size=6)[data["s"]] + rng.normal(size=20)[data["c"]] + rng.normal(size=60)
    fit = ipdpool.lmer("y ~ 1 + (1 + x | s) + (1 | s:c)", data)
    study_intercepts = fit.ranef()["s"].modes["Intercept"]
    expected = fit.fit.beta[0] + study_intercepts.loc[data["s"].astype(str)].to_numpy()
    np.testing.assert_allclose(fit.predict(data[["s"]], re_form="~(1 | s)"), expected, rtol=1e-12)


def test_centres_whose_printed_labels_collide_are_predicted_apart():
    """Study 'A' with centre '1:2' and study '2:A' with centre '1' both print as '1:2:A' (lme4 merges
    them into one level); the fit keeps the two centres apart, and predict finds each its own
    conditional mode: the same data with that centre relabelled '12' predicts the same."""
    rng = np.random.default_rng(7)
    rows = []
    for study, centres in {"A": ["1:2", "3"], "2:A": ["1", "4"], "B": ["1", "2", "3"], "C": ["1", "2"]}.items():
        effect = rng.normal()
        for centre in centres:
            shift = effect + rng.normal()
            rows += [{"study": study, "centre": centre, "x": rng.normal(), "e": shift + rng.normal()} for _ in range(6)]
    data = pd.DataFrame(rows).assign(y=lambda d: d["x"] + d["e"])
    fit = ipdpool.lmer("y ~ x + (1 | study/centre)", data)
    plain = data.assign(centre=data["centre"].replace({"1:2": "12"}))
    other = ipdpool.lmer("y ~ x + (1 | study/centre)", plain)
    scale = np.abs(other.predict().to_numpy()).max()
    np.testing.assert_allclose(fit.predict(), other.predict(), rtol=0, atol=1e-7 * scale)
    np.testing.assert_allclose(fit.predict(data.iloc[::5]), other.predict(plain.iloc[::5]), rtol=0, atol=1e-7 * scale)
