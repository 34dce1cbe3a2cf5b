"""Training: fine-tuning runs started, followed and stopped over HTTP (``/training``)."""
