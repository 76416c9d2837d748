"""Reporting: the scorecard models, thresholds, the baseline gate, statistics, Markdown and plots."""
