"""What the pipeline does at each point (claim, run a stage, settle), free of Dagster."""
