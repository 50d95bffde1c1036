"""Reports: overlays, animations, plots and the HTML report."""
