"""Predictive maintenance: machine health, early fault alarms and remaining useful life from sensor readings.

Registered as the ``predictive_maintenance`` plugin (see :mod:`.plugin`); the evaluation on SKAB is
``python -m plugins.predictive_maintenance.evaluate``, the model recipe ``pdm_forecaster``.
"""

from plugins.predictive_maintenance.plugin import PredictiveMaintenanceOptions, PredictiveMaintenancePlugin

__all__ = ["PredictiveMaintenanceOptions", "PredictiveMaintenancePlugin"]
