"""`lmer` with a factor nested in the grouping factor: `(1 | study/centre)`,
`(terms | study) + (1 | study:centre)`, or `(terms | study) + (1 | centre)` when centre's labels
nest in study (lme4 treats that last form as crossed, which for nested labels is the same model).

The fit is models/nested.py's, from per-centre cross-products; this module gives it lme4's
result methods: ranef per grouping factor, predict with both levels, the summary's two groups.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .api import LmerResult, RandomStructure, check_grouping, check_identifiable, group_labels
from .formula import FormulaError
from .nested import NestedFit, conditional_modes, fit_nested, nested_cross_products
from .results import RandomEffects, label_strings

CENTRE_TERMS = ["Intercept"]  # named as the fixed and the study's random intercept are


def check_nesting(frame: pd.DataFrame, study: str, centre: str) -> None:
    """A centre column used as its own grouping factor must name each centre in one study only."""
    studies_per_centre = frame.groupby(centre, observed=True)[study].nunique()
    if (studies_per_centre > 1).any():
        raise FormulaError(
            f"{int((studies_per_centre > 1).sum())} levels of {centre!r} occur in more than one level of {study!r}: "
            f"the factors are crossed, which the engine does not fit; for centres numbered within each {study} "
            f"write (1 | {study}/{centre})"
        )


def lmer_nested(base: LmerResult, structure: RandomStructure, correlated: bool, reml: bool) -> NestedLmerResult:
    """Fit the nested model on the rows and design `lmer` prepared in `base` (fit still None)."""
    frame = base.frame
    if not structure.interaction:
        check_nesting(frame, base.group, structure.centre)
    studies = group_labels(frame, base.group)
    centres = group_labels(frame, structure.centre)
    check_grouping(centres, len(frame))
    check_identifiable(len(frame), centres.nunique(), 1, f"(1 | {structure.centre})")
    q = base.z.shape[1]
    blocks, block_studies = nested_cross_products(
        base.design.x.to_numpy(float), base.z, base.response, label_strings(studies), label_strings(centres),
        list(base.design.x.columns), base.random_terms, random_terms=((tuple(range(q)), correlated),),
    )  # fmt: skip
    fit = fit_nested(blocks, block_studies, reml=reml, centre_first_on_tie=structure.centre_written_first)
    return NestedLmerResult(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)} | {"fit": fit},
                            centre=structure.centre)  # fmt: skip


@dataclass
class NestedLmerResult(LmerResult):
    """LmerResult of a nested fit: variance components, ranef and predict over both factors."""

    centre: str = ""

    @property
    def nested_fit(self) -> NestedFit:
        return self.fit

    def __repr__(self) -> str:
        return (
            super()
            .__repr__()
            .replace(f"{self.group}={self.n_groups}", f"{self.centre}={self.n_centres}, {self.group}={self.n_groups}")
        )

    @property
    def n_centres(self) -> int:
        return self.nested_fit.n_centres

    @property
    def grouping_columns(self) -> set[str]:
        return set(self.group.split(":")) | set(self.centre.split(":"))

    def random_blocks(self) -> list[tuple[str, list[str], np.ndarray]]:
        """The two terms in lme4's order (the factor with more levels first)."""
        fit = self.nested_fit
        study = (self.group, self.random_terms, fit.study_covariance)
        centre = (self.centre, CENTRE_TERMS, np.array([[fit.centre_variance]]))
        return [centre, study] if fit.layout.centre_first else [study, centre]

    def group_counts(self) -> str:
        counts = {self.centre: self.n_centres, self.group: self.n_groups}
        return "; ".join(f"{group}, {counts[group]}" for group, _, _ in self.random_blocks())

    @property
    def variance_components(self) -> pd.DataFrame:
        rows = []
        for group, terms, d in self.random_blocks():
            sd = np.sqrt(np.diag(d))
            rows += [
                {"group": group, "term": t, "with": "", "variance": d[i, i], "sd": sd[i], "correlation": np.nan}
                for i, t in enumerate(terms)
            ]
            for i, j in zip(*np.tril_indices(len(terms), -1)):
                correlation = d[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                rows.append(
                    {"group": group, "term": terms[i], "with": terms[j], "variance": d[i, j], "sd": np.nan,
                     "correlation": correlation}
                )  # fmt: skip
        sigma2 = self.fit.sigma2
        rows.append(
            {"group": "Residual", "term": "", "with": "", "variance": sigma2, "sd": np.sqrt(sigma2),
             "correlation": np.nan}
        )  # fmt: skip
        return pd.DataFrame(rows)

    def ranef(self) -> dict[str, RandomEffects]:
        """Conditional modes and conditional covariances per grouping factor, in lme4's order
        (lme4's ranef(condVar = TRUE) is a list by factor the same way), levels in the order of
        lme4's factors (an interaction's levels by its columns' levels, numbers as numbers)."""
        return {group: effects for group, (effects, _) in self._effects().items()}

    def _effects(self) -> dict[str, tuple[RandomEffects, pd.Index]]:
        """ranef's effects per grouping factor with their levels' `_level_keys`."""
        fit = self.nested_fit
        study, study_covariance, centre, centre_variance = conditional_modes(fit)
        study_index, study_keys, study_order = self._ordered_levels[self.group]
        centre_index, centre_keys, centre_order = self._ordered_levels[self.centre]
        out = {
            self.group: (RandomEffects(
                self.group, pd.DataFrame(study[study_order], index=study_index, columns=self.random_terms),
                study_covariance[study_order],
            ), study_keys),
            self.centre: (RandomEffects(
                self.centre, pd.DataFrame(centre[centre_order, None], index=centre_index, columns=CENTRE_TERMS),
                centre_variance[centre_order, None, None],
            ), centre_keys),
        }  # fmt: skip
        return {group: out[group] for group, _, _ in self.random_blocks()}

    @functools.cached_property
    def _ordered_levels(self) -> dict[str, tuple[pd.Index, pd.Index, np.ndarray]]:
        """`_levels` of both factors, computed once: they depend only on the rows fitted."""
        layout = self.nested_fit.layout
        return {
            self.group: self._levels(self.group, [(s,) for s in layout.studies]),
            self.centre: self._levels(self.centre, list(layout.centres)),
        }

    def _levels(self, factor: str, keys: list[tuple]) -> tuple[pd.Index, pd.Index, np.ndarray]:
        """(labels in lme4's order, their `_level_keys`, positions in that order of `keys`: the layout's
        (study,) or (study, centre)). A level's label and sort key come from its rows' values of the
        factor's columns."""
        columns = factor.split(":")
        frame = self.frame[list(dict.fromkeys([*columns, *self.group.split(":")]))].drop_duplicates(columns)
        frame["_label"] = label_strings(group_labels(frame, factor))
        frame["_key"] = self._level_keys(frame, factor).to_list()
        studies = label_strings(group_labels(frame, self.group))
        frame["_layout"] = [json.dumps([s]) for s in studies] if factor == self.group else [
            json.dumps([s, c]) for s, c in zip(studies, frame["_label"])
        ]  # fmt: skip
        levels = frame.sort_values(columns, kind="stable")
        position = {json.dumps(list(key)): i for i, key in enumerate(keys)}
        order = np.array([position[key] for key in levels["_layout"]])
        return pd.Index(levels["_label"].to_list(), name=factor), pd.Index(levels["_key"].to_list()), order

    def _level_keys(self, rows: pd.DataFrame, group: str) -> pd.Index:
        """A level's key: the labels of the factor's columns, written so that no two levels share one
        (two centres' printed labels can: study 'A' with centre '1:2' and study '2:A' with centre '1'
        both print '1:2:A'). Labelled once per distinct row."""
        columns = group.split(":")
        combined = np.zeros(len(rows), np.int64)
        for column in columns:
            codes, values = pd.factorize(rows[column])  # a missing value is -1
            combined = combined * (len(values) + 1) + codes + 1
        _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
        distinct = rows[columns].iloc[first]
        keys = [json.dumps(labels) for labels in zip(*(label_strings(distinct[c]) for c in columns))]
        return pd.Index(np.array(keys, dtype=object)[inverse.ravel()])

    def _modes(self) -> dict[str, pd.DataFrame]:
        return {group: effects.modes.set_axis(keys) for group, (effects, keys) in self._effects().items()}

    def _random_columns(self, group: str, rows: pd.DataFrame, needed: set[str]) -> pd.DataFrame:
        if group == self.centre:
            return pd.DataFrame(1.0, index=rows.index, columns=CENTRE_TERMS)
        return super()._random_columns(group, rows, needed)
