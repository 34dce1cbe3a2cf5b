"""Datasets: uploaded recordings turned into LJSpeech datasets by a data_prep build (``/datasets``)."""
