"""Model implementations and `build_model`."""
