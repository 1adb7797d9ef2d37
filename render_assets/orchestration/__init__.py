"""Everything that knows Dagster: the code location (`definitions.py`, the one entry point), its
assets, sensors, hook and resources, and the instance's run launcher, coordinator and storage
(`instance/`). Thin glue over `services/`."""
