//! Scoring models (logistic regression, MLP, tree ensembles): JSON format and CPU reference.
