"""Multiple imputation of missing values, respecting the clustering of participants in studies.

- draws: mice's Bayesian draws (norm, logreg) for one incomplete variable;
- chained: chained equations per outcome, study-stratified by default, with delta adjustment;
- twolevel, twostage: the draws of the two-level (mice's 2l.norm) and two-stage (micemd's
  2l.2stage) options;
- pooling: Rubin's rules with Barnard-Rubin small-sample df, FMI and RIV;
- analysis: the completed data sets' statistics, the models fitted on each, pooled tables and
  the tipping-point analysis.
"""
