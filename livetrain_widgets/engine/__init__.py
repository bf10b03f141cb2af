"""The headless live-training engine. Nothing in here imports Jupyter: scripts, benchmarks and remote
workers drive it exactly as the widgets do."""
