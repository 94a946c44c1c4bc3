"""Reading the run store: selection, comparison, significance, the regression gate, renderers, plots, the runs listing."""
