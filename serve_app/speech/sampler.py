"""Next-token choice for a batch of rows, each with its own sampling parameters and generator.

Plain Python (no Ray); used by :mod:`serve_app.speech.batch_decode`.
"""

from __future__ import annotations

from typing import Any

from serve_app.speech.profiles import SamplingParams


class BatchSampler:
    """Next tokens of all rows in a few batched operations, each row with its own parameters.

    Row by row it computes exactly what ``generate``'s Hugging Face processors and draw compute for one
    sequence (the same element-wise arithmetic, so the same floats): repetition penalty over the
    tokens a row has seen, then, for sampled rows, temperature, top-k and top-p; a softmax; and a draw
    from the row's own generator, or the arg-max for greedy rows. Only the draws run row by row (each
    row has its own generator). A streamed row draws even when greedy, as
    coqui's streaming generator does (with no warpers).

    Args:
        rows: per row ``(params, draws, seen_ids, generator)``: sampling parameters, whether the
            row draws, the token ids the repetition penalty starts with, and the row's generator.
        vocab: size of the score rows.
        device: where the scores are.
    """

    def __init__(self, rows: list[tuple[SamplingParams, bool, Any, Any]], vocab: int, device: Any) -> None:
        import torch

        def column(values: list[float]) -> Any:
            return torch.tensor(values, dtype=torch.float32, device=device)[:, None]

        # Per row: the warpers apply only when sampling, and each only when its parameter asks for it.
        uses_top_k = [p.do_sample and p.top_k != 0 for p, *_ in rows]
        uses_top_p = [p.do_sample and p.top_p < 1.0 for p, *_ in rows]
        self.draws = [draws for _p, draws, *_ in rows]
        self.generators = [generator for *_, generator in rows]
        self.penalty = column([p.repetition_penalty for p, *_ in rows])
        self.temperature = column([p.temperature if p.do_sample else 1.0 for p, *_ in rows])
        self.top_k = torch.tensor(
            [min(max(p.top_k, 1), vocab) if k else vocab for (p, *_), k in zip(rows, uses_top_k, strict=True)],
            device=device,
        )
        self.top_p = column([p.top_p if t else 1.0 for (p, *_), t in zip(rows, uses_top_p, strict=True)])
        self.uses_top_k = torch.tensor(uses_top_k, device=device)
        self.uses_top_p = torch.tensor(uses_top_p, device=device)
        self.seen = torch.zeros(len(rows), vocab, dtype=torch.bool, device=device)
        for row, (_params, _draws, seen_ids, _gen) in enumerate(rows):
            ids = seen_ids.long()
            # As the processor does: ids beyond the scores (none in XTTS's prompts) are not penalised.
            self.seen[row, ids[ids < vocab]] = True
        self.any_top_k = any(uses_top_k)
        self.any_top_p = any(uses_top_p)
        self.any_warp = any(p.do_sample for p, *_ in rows)

    def scores(self, logits: Any) -> Any:
        """The processed scores ``(rows, vocab)`` of raw ``logits`` (float32)."""
        import torch

        penalised = torch.where(logits < 0, logits * self.penalty, logits / self.penalty)
        scores = torch.where(self.seen, penalised, logits)
        if not self.any_warp:
            return scores
        scores = scores / self.temperature
        if self.any_top_k:
            kth = torch.topk(scores, int(self.top_k.max())).values.gather(1, (self.top_k - 1)[:, None])
            scores = scores.masked_fill((scores < kth) & self.uses_top_k[:, None], -float("inf"))
        if self.any_top_p:
            ordered, order = torch.sort(scores, descending=False)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            drop_sorted = cumulative <= (1 - self.top_p)
            drop_sorted[..., -1:] = 0
            drop = drop_sorted.scatter(1, order, drop_sorted) & self.uses_top_p[:, None]
            scores = scores.masked_fill(drop, -float("inf"))
        return scores

    def choose(self, logits: Any, live: list[int]) -> list[int]:
        """Next token of each row in ``live`` (row positions), from the step's ``logits``; updates ``seen``."""
        import torch

        scores = self.scores(logits)
        tokens = torch.argmax(scores, dim=-1)[live]
        drawing = [n for n, row in enumerate(live) if self.draws[row]]  # positions in ``live``
        if drawing:
            drawn_rows = [live[n] for n in drawing]
            probs = torch.nn.functional.softmax(scores[drawn_rows], dim=-1)
            if not bool(((probs >= 0) & (probs < float("inf"))).all()):
                raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
            # torch.multinomial's draw of one sample, row by row from each row's generator: the arg-max of
            # p / q with q ~ Exp(1) filled from the generator (the same fill as the one multinomial makes).
            noise = torch.empty_like(probs)
            for n, row in enumerate(drawn_rows):
                noise[n].exponential_(1, generator=self.generators[row])
            tokens[drawing] = torch.argmax(probs / noise, dim=-1)
        self.seen[torch.tensor(live, device=self.seen.device, dtype=torch.long), tokens] = True
        return [int(t) for t in tokens.tolist()]

    def keep(self, index: Any) -> None:
        """Keep only the rows at ``index`` (a 1-D long tensor of row positions), in that order."""
        positions = index.tolist()
        self.penalty, self.temperature, self.top_p = self.penalty[index], self.temperature[index], self.top_p[index]
        self.top_k, self.uses_top_k, self.uses_top_p = self.top_k[index], self.uses_top_k[index], self.uses_top_p[index]
        self.seen = self.seen[index]
        self.generators = [self.generators[p] for p in positions]
        self.draws = [self.draws[p] for p in positions]
