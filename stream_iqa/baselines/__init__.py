"""Classical no-reference IQA baselines, measured on the same data and metrics as the learned models."""
