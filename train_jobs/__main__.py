"""``python -m train_jobs``: see :mod:`train_jobs.cli`."""

from train_jobs.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
