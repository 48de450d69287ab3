"""Built-in pipeline plugins; each registers itself through the ``edge_gateway.plugins`` entry-point group."""
