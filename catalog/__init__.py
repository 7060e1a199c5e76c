"""The model catalog: one YAML file per model (data only; loaded by mlx_stack.core.catalog)."""
