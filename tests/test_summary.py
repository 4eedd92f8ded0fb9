"""The headline summary names the inference the one-stage models used."""

import pandas as pd

from ipdpool.summary import introduction


def test_the_introduction_names_the_df_method_of_the_headline_rows():
    one_stage = pd.DataFrame(
        {"term": ["employed", "ips", "baseline"], "inference": ["t (Kenward-Roger)", "t (Kenward-Roger)", "z"]}
    )
    assert "(REML; inference: t (Kenward-Roger))." in introduction(one_stage)[1]


def test_without_any_model_the_introduction_says_so():
    assert "(REML; no model estimated)." in introduction(pd.DataFrame())[1]
