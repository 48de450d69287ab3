"""Anomaly detection over many numeric sensor series, scored online (see ``docs/anomaly_detection.md``)."""

from plugins.anomaly_detection.plugin import AnomalyDetectionOptions, AnomalyDetectionPlugin

__all__ = ["AnomalyDetectionOptions", "AnomalyDetectionPlugin"]
