"""Traffic counting: vehicles, bicycles and people counted across lines and in zones from camera frames.

The plugin class is :class:`~plugins.traffic_counting.plugin.TrafficCountingPlugin`, registered as
``traffic_counting`` in the ``edge_gateway.plugins`` entry-point group.
"""

from plugins.traffic_counting.plugin import TrafficCountingPlugin

__all__ = ["TrafficCountingPlugin"]
