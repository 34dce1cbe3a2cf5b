"""Ray Train jobs that fine-tune the XTTS GPT (LoRA or full), Ray Tune search and export for serving."""
