"""`check`: probe what the units need and predict whether they start."""
