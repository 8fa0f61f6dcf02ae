"""Static discovery of a unit's network dependencies: one rule module per command family."""
