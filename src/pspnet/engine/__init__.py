"""Evaluation, prediction and the test protocol: metrics, the sliding-window inference routine, reports."""
