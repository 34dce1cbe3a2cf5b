"""Ray Data pipeline that turns raw recordings of one speaker into an XTTS fine-tuning dataset.

Entry points: ``python -m data_prep build ...`` (:mod:`data_prep.cli`) and
:func:`data_prep.pipeline.build_dataset`.
"""
