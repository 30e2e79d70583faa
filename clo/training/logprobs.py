"""Answer log-probabilities, computed where they are needed only (docs/design.md, "Trainer"):
:func:`add_selective_head` scores only the labelled (answer) tokens instead of the whole vocabulary at every
position; :func:`shared_prompt_logps` runs a prompt shared by a pair's two answers once.
"""
from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

__all__ = ["add_selective_head", "shared_prompt_logps"]


# -- answer-only scoring ----------------------------------------------------------------------------------------

_EXOTIC_HEAD_SCALES = ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def add_selective_head(model) -> bool:
    """Let ``model(..., labels=L, clo_logps=True)`` return per-token log-probs of the labelled tokens only.

    TRL's fused LM head scores every position (prompt and padding included) in tiles unless Triton is
    available; on a CPU that is most of a CLO step (docs/performance.md profiles it). This head runs
    the backbone, then projects only the answer positions. It patches ``forward`` (not a submodule call), so
    DDP's hooks still see the forward. Returns False (and patches nothing) for heads with exotic scaling.
    """
    text_config = model.config.get_text_config()
    if any(getattr(text_config, a, None) is not None for a in _EXOTIC_HEAD_SCALES):
        return False
    softcap = getattr(text_config, "final_logit_softcapping", None)
    inner = model.forward

    def head_logps(hidden, targets):
        logits = model.get_output_embeddings()(hidden).float()  # (N, V): N answer tokens, not B*T
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (N,)

    @functools.wraps(inner)
    def forward(*args, clo_logps: bool = False, labels=None, clo_gather=None, **kwargs):
        if not clo_logps:
            return inner(*args, labels=labels, **kwargs) if labels is not None else inner(*args, **kwargs)
        kwargs["use_cache"] = False
        if clo_gather is not None:  # shared prompts: (which hidden state predicts each answer token, that token)
            source, targets = clo_gather
            hidden = model.base_model(*args, **kwargs).last_hidden_state  # (B, T, H)
            return head_logps(hidden.flatten(0, 1)[source], targets)  # (N,), in the order of ``source``
        hidden = model.base_model(*args, **kwargs).last_hidden_state[:, :-1]  # (B, T-1, H)
        targets = labels[:, 1:]
        mask = targets != -100  # answer tokens only
        logp = head_logps(hidden[mask], targets[mask])
        return torch.zeros(mask.shape, dtype=logp.dtype, device=logp.device).masked_scatter(mask, logp)

    model.forward = forward
    return True


def bucketed_logps(model, input_ids, attention_mask, labels, buckets: int):
    """What ``model(input_ids, attention_mask, labels, clo_logps=True)`` returns — (N, T-1) answer-token
    log-probs — computed in ``buckets`` forwards over the sequences sorted by length, each cut to its own
    longest sequence. The collator pads every sequence on the right to the batch's longest (and a pair's
    English and target answers differ in length), so the shorter buckets skip most of that padding; a real
    token's log-prob does not depend on padding after it (causal attention, masked). docs/performance.md
    measures it against one forward."""
    n, width = input_ids.shape
    lengths = attention_mask.sum(dim=1)
    order = torch.argsort(lengths)
    pieces = []
    for idx in torch.tensor_split(order, min(buckets, n)):
        keep = max(2, int(lengths[idx].max()))
        lp = model(input_ids=input_ids[idx, :keep], attention_mask=attention_mask[idx, :keep],
                   labels=labels[idx, :keep], use_cache=False, clo_logps=True)
        pieces.append(F.pad(lp, (0, width - keep)))
    return torch.cat(pieces)[torch.argsort(order)]  # back to the batch's order


def prompt_sharing_supported(model) -> str | None:
    """Why ``model`` cannot score shared prompts (None: it can). Shared prompts need a custom 4-D attention mask,
    which transformers' eager and SDPA attention take as given; a model whose layers mix full and sliding-window
    attention (Gemma 3) takes one mask per kind, as a dict, and any other kind of layer is refused."""
    config = model.config.get_text_config()
    impl = getattr(config, "_attn_implementation", None) or getattr(model.config, "_attn_implementation", None)
    if impl not in ("eager", "sdpa"):
        return f"attention implementation {impl!r} takes no custom 4-D mask (eager and sdpa do)"
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if not kinds <= {"full_attention", "sliding_attention"}:
        return f"layer types {sorted(kinds)}: only full and sliding-window attention are supported"
    return None


def shared_prompt_logps(model, input_ids, attention_mask, completion_mask, buckets: int = 1, config=None):
    """What the plain path returns — (2N, T-1) answer-token log-probs of TRL's ``[chosen…, rejected…]`` batch,
    0 elsewhere — with each pair's prompt computed once for both of its answers (docs/design.md, "Trainer":
    shared prompts). Pair ``i`` becomes one sequence ``prompt + chosen + rejected``: the rejected answer's tokens
    attend to the prompt and to themselves, never to the chosen answer, and take the positions the chosen
    answer took (both start right after the prompt), so each answer token sees exactly what it sees in its own
    sequence. The first token of both answers is predicted from the prompt's last hidden state. ``buckets``
    splits the N sequences by length as :func:`bucketed_logps` does. ``config``: the model's config, where
    ``model`` is a wrapper without one (DDP, FSDP). Returns None when a pair's two rows do
    not start with the same prompt (e.g. truncation cut them differently): the caller then scores the batch
    the plain way."""
    n2, width = input_ids.shape
    n = n2 // 2
    real = attention_mask.bool()
    prompt_len = (real & (completion_mask == 0)).sum(dim=1)  # TRL pads right: the prompt is each row's prefix
    answer_len = (real & (completion_mask == 1)).sum(dim=1)
    if n2 % 2 or not torch.equal(prompt_len[:n], prompt_len[n:]) or bool((prompt_len[:n] < 1).any()):
        return None
    pieces = []
    for i in range(n):
        p, c, r = int(prompt_len[i]), int(answer_len[i]), int(answer_len[n + i])
        if not torch.equal(input_ids[i, :p], input_ids[n + i, :p]):
            return None
        pieces.append((p, c, r))
    config = (config or model.config).get_text_config()
    sliding = "sliding_attention" in (getattr(config, "layer_types", None) or [])
    window = getattr(config, "sliding_window", None) if sliding else None
    dtype = next(model.parameters()).dtype
    out = torch.zeros(n2, width - 1, dtype=torch.float32, device=input_ids.device)
    order = torch.argsort(torch.tensor([sum(x) for x in pieces]))
    for idx in torch.tensor_split(order, min(max(buckets, 1), n)):
        idx = idx.tolist()
        length = max(sum(pieces[i]) for i in idx)
        ids = torch.zeros(len(idx), length, dtype=input_ids.dtype, device=input_ids.device)
        pos = torch.zeros(len(idx), length, dtype=torch.long, device=input_ids.device)
        part = torch.full((len(idx), length), 3, dtype=torch.long, device=input_ids.device)  # 0 prompt, 1 ✓, 2 ✗, 3 pad
        source, targets, rows, cols = [], [], [], []
        for b, i in enumerate(idx):
            p, c, r = pieces[i]
            ids[b, :p + c] = input_ids[i, :p + c]
            ids[b, p + c:p + c + r] = input_ids[n + i, p:p + r]
            pos[b, :p + c] = torch.arange(p + c)
            pos[b, p + c:p + c + r] = torch.arange(p, p + r)
            part[b, :p], part[b, p:p + c], part[b, p + c:p + c + r] = 0, 1, 2
            base = b * length
            # the chosen answer's token j (column p+j-1 of row i) from hidden p+j-1; the rejected one's from
            # the prompt's last hidden (j = 0), then from its own previous token
            source += [base + p - 1 + j for j in range(c)]
            source += [base + (p - 1 if j == 0 else p + c + j - 1) for j in range(r)]
            targets.append(ids[b, p:p + c + r])
            rows += [i] * c + [n + i] * r
            cols += [p - 1 + j for j in range(c)] + [p - 1 + j for j in range(r)]
        q, k = part[:, :, None], part[:, None, :]
        causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()
        allowed = causal & (k != 3) & ~((q == 2) & (k == 1))
        allowed |= torch.eye(length, dtype=torch.bool, device=ids.device) & (q == 3)  # padding sees itself: no NaN
        def additive(m):  # m lives on the batch's device
            return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(~m, torch.finfo(dtype).min)[:, None]
        mask = additive(allowed)
        if sliding:
            near = (pos[:, :, None] - pos[:, None, :]) < window
            mask = {"full_attention": mask, "sliding_attention": additive(allowed & (near | (q == 3)))}
        logp = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, clo_logps=True,
                     clo_gather=(torch.tensor(source, device=ids.device), torch.cat(targets)))
        where = (torch.tensor(rows, device=ids.device), torch.tensor(cols, device=ids.device))
        out = out.to(logp.dtype).index_put(where, logp)
    return out

