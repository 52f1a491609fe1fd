"""Latency and accuracy predictors (scikit-learn style estimators)."""
