"""Ray Data pipelines, the planner, the reducer, the stores and the CLI."""
