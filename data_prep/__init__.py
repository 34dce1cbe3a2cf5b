"""Ray Data pipeline that turns raw recordings into an XTTS fine-tuning dataset (not built yet)."""
