"""Drawing helpers every page shares: pictures, heatmaps, plain text, errors, and charts over the steps."""
