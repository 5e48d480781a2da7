"""The reproduction around the library: presets, the run directory, the stages, the report, the seed study, the CLI."""
