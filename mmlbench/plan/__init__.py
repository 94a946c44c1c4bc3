"""What to run and where: experiment files and presets, the sweep, its executors."""
