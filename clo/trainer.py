"""CLO's trainer on TRL's DPOTrainer (docs/design.md, "Trainer"). Imports torch and TRL at its top: callers
import this *module* inside the function that trains (``from clo import trainer``), so that ``import clo.train``
and the CLI stay fast.

- :class:`CLOConfig` — TRL's DPOConfig plus CLO's own fields (λ, the loss variant, the reference cache folder);
- :class:`CLOTrainer` — CLO's loss in ``_compute_loss``, both directions of a sample in one batch
  (:class:`PairSampler`), reference log-probs cached on disk, and answer-only scoring on a CPU
  (:func:`add_selective_head`);
- :func:`all_agree` / :func:`stop_requested` — decisions every rank of an ``accelerate launch`` must share.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from accelerate import PartialState
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader
import trl
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import use_adapter

from clo.losses import LOSS_FUNCTIONS, needs_reference
from clo.precision import precision_context
from clo.testing import debug_write, fault_point, fsdp_on_cpu
from clo.train import TrainingStopped

__all__ = ["CLOConfig", "CLOTrainer", "PairSampler", "PairCollator", "add_selective_head", "shared_prompt_logps", "all_agree",
           "stop_requested", "use_cpu", "ref_cache_key", "read_ref_cache", "GROUP_BATCHES"]

log = logging.getLogger(__name__)

GROUP_BATCHES = 8  # length grouping sorts within chunks of this many batches
EXTRA_COLUMNS = ("is_target", "sample", "lang_id")  # CLO's own columns: never passed to the model


class PairSampler:
    """Shuffles samples, never pairs: yields row indices ``2s, 2s+1`` together, so a batch of an even size
    always holds both directions of each of its samples."""

    def __init__(self, n_rows: int, seed: int, lengths: list[int] | None = None, batch_samples: int = 1):
        if n_rows % 2:
            raise ValueError("CLO datasets hold two rows per sample")
        self.n_samples = n_rows // 2
        self.seed, self.epoch = seed, 0
        # optional length grouping: tokens of each sample's longest sequence, and samples per batch
        self.lengths = [max(lengths[2 * s], lengths[2 * s + 1]) for s in range(self.n_samples)] if lengths else None
        self.batch_samples = max(1, batch_samples)

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch. The order of an epoch depends only on (seed, epoch), so a
        run resumed from a checkpoint (``clo runs resume``) sees the order an uninterrupted run would."""
        self.epoch = epoch

    def __len__(self):
        return 2 * self.n_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1  # without set_epoch the next pass still gets a new order
        order = torch.randperm(self.n_samples, generator=generator).tolist()
        if self.lengths is not None:
            order = self._grouped(order, generator)
        for s in order:
            yield 2 * s
            yield 2 * s + 1

    def _grouped(self, order: list[int], generator) -> list[int]:
        """Length grouping: within each chunk of ``GROUP_BATCHES`` batches of the shuffled order, samples are
        sorted by length and cut into batches, and those batches are shuffled. Batches then hold samples of
        similar length (less padding for the collator to add) while the epoch order stays random."""
        b, out = self.batch_samples, []
        for i in range(0, len(order), b * GROUP_BATCHES):
            chunk = sorted(order[i : i + b * GROUP_BATCHES], key=lambda s: -self.lengths[s])
            batches = [chunk[j : j + b] for j in range(0, len(chunk), b)]
            for k in torch.randperm(len(batches), generator=generator).tolist():
                out += batches[k]
        return out


class PairCollator:
    """TRL's preference collator, plus each row's direction (``is_target``: 1 for the target-language prompt).
    With the sample log on (clo.testing), also each row's sample index; it never reaches the model."""

    def __init__(self, pad_token_id: int, max_length: int):
        self.base = DataCollatorForPreference(pad_token_id=pad_token_id, max_length=max_length)
        self.debug = bool(os.environ.get("CLO_DEBUG_SAMPLES"))

    def __call__(self, examples):
        out = self.base(examples)  # TRL's collator also carries the reference log-probs
        out["is_target"] = torch.tensor([int(e["is_target"]) for e in examples])
        out["lang_id"] = torch.tensor([int(e.get("lang_id", 0)) for e in examples])  # index into the run's langs
        if self.debug and "sample" in examples[0]:
            out["sample"] = torch.tensor([int(e["sample"]) for e in examples])
        return out


# -- decisions every rank shares (`accelerate launch`) -----------------------------------------------------------


def all_agree(flag: bool, op: str = "any") -> bool:
    """``flag`` combined over all processes (``any``: true if one rank says so; ``all``: only if every rank
    does). One process: ``flag`` itself, no collective. Every rank must call it at the same point."""
    state = PartialState()
    if state.num_processes <= 1:
        return bool(flag)
    t = torch.tensor([int(bool(flag))], device=state.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "any" else dist.ReduceOp.MIN)
    return bool(t.item())


def use_cpu(spec) -> bool:
    return spec.device == "cpu" or (spec.device == "auto" and not torch.cuda.is_available())


def stop_requested(run, stop_event) -> bool:
    """The stop decision, the same on every rank: the main process reads the run's STOP file (the only one
    that owns the run directory; on several machines the others may not even see it), any rank's own
    ``stop_event`` (e.g. its Ctrl-C) counts, and the flags are combined so that no rank leaves a collective
    that the others still wait in."""
    local = stop_event is not None and stop_event.is_set()
    if not local and run is not None and PartialState().is_main_process:
        local = run.stop_requested()
    return all_agree(local, "any")


# -- answer-only scoring ----------------------------------------------------------------------------------------

_EXOTIC_HEAD_SCALES = ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def add_selective_head(model) -> bool:
    """Let ``model(..., labels=L, clo_logps=True)`` return per-token log-probs of the labelled tokens only.

    TRL's fused LM head scores every position (prompt and padding included) in tiles unless Triton is
    available; on a CPU that is most of a CLO step (profiled: ~75% of step time for SmolLM2). This head runs
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


def row_lengths(dataset) -> list[int]:
    """Tokens of each preference row's longer sequence (prompt + the longer of its two answers): what the
    collator pads that row to. Length grouping and the reference pass's order sort by it."""
    return [len(p) + max(len(c), len(r))
            for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]


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
        lp = model(input_ids=input_ids[idx, :keep], attention_mask=attention_mask[idx, :keep], labels=labels[idx, :keep],
                   use_cache=False, clo_logps=True)
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
            source += [base + p - 1 + j for j in range(c)] + [base + (p - 1 if j == 0 else p + c + j - 1) for j in range(r)]
            targets.append(ids[b, p:p + c + r])
            rows += [i] * c + [n + i] * r
            cols += [p - 1 + j for j in range(c)] + [p - 1 + j for j in range(r)]
        q, k = part[:, :, None], part[:, None, :]
        causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()
        allowed = causal & (k != 3) & ~((q == 2) & (k == 1))
        allowed |= torch.eye(length, dtype=torch.bool, device=ids.device) & (q == 3)  # padding sees itself: no NaN
        def additive(m):
            return torch.zeros(m.shape, dtype=dtype, device=ids.device).masked_fill(~m, torch.finfo(dtype).min)[:, None]
        mask = additive(allowed)
        if sliding:
            near = (pos[:, :, None] - pos[:, None, :]) < window
            mask = {"full_attention": mask, "sliding_attention": additive(allowed & (near | (q == 3)))}
        logp = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, clo_logps=True,
                     clo_gather=(torch.tensor(source, device=ids.device), torch.cat(targets)))
        out = out.to(logp.dtype).index_put((torch.tensor(rows, device=ids.device), torch.tensor(cols, device=ids.device)), logp)
    return out


def ref_cache_key(*, weights: str, max_length: int, columns: list, dtype: str, device: str, head: str,
                  config: str) -> str:
    """The reference cache's file name (see :meth:`CLOTrainer._ref_cache_key`)."""
    h = hashlib.sha256()
    for part in (weights, str(max_length), dtype, device, head, trl.__version__,
                 hashlib.sha256(config.encode()).hexdigest()):
        h.update(part.encode() + b"\0")
    for col in columns:
        h.update(json.dumps(col).encode())
    return h.hexdigest()[:32]


def _tensors_sha256(tensors: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + b"\0" + tensors[name].float().cpu().numpy().tobytes())
    return h.hexdigest()


def read_ref_cache(path: Path, rows: int) -> tuple[dict | None, str | None]:
    """The cached reference log-probs at ``path`` and None, or None and what is wrong with them: a file that
    does not read as safetensors (cut short, overwritten), one without the checksum this version writes, values
    that do not match their checksum, the wrong shape or length, or values that are not finite."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in ("ref_chosen_logps", "ref_rejected_logps")}
    except Exception as e:  # SafetensorError, a missing tensor, an unreadable file
        return None, f"{type(e).__name__}: {e}"
    if "sha256" not in meta:
        return None, "it has no checksum (written by an earlier version)"
    if t["ref_chosen_logps"].shape != (rows,) or t["ref_rejected_logps"].shape != (rows,):
        return None, f"it holds {tuple(t['ref_chosen_logps'].shape)} values for {rows} rows"
    if _tensors_sha256(t) != meta["sha256"]:
        return None, "its values do not match their checksum"
    if not all(bool(torch.isfinite(v).all()) for v in t.values()):
        return None, "it holds values that are not finite"
    return t, None


# -- the trainer ------------------------------------------------------------------------------------------------


@dataclass
class CLOConfig(DPOConfig):
    """TRL's DPOConfig plus CLO's own fields."""

    lam: float = field(default=0.5, metadata={"help": "λ: weight of the target-only NLL term"})
    clo_loss: str = field(default="clo", metadata={"help": "objective (clo.losses.LOSS_FUNCTIONS): clo, ipo, kto, orpo, "
                                                           "simpo, or dpo (clo with λ = 0)"})
    simpo_gamma: float = field(default=0.5, metadata={"help": "SimPO's target margin γ"})
    english_anchor: float = field(default=0.0, metadata={"help": "weight of the English anchor (0: off)"})
    english_nll: float = field(default=0.0, metadata={"help": "weight of NLL(y_en | x_en) (0: off)"})
    lang_codes: list[str] = field(default_factory=list, metadata={"help": "target languages, by lang_id (metrics)"})
    ref_cache_dir: str | None = field(default=None, metadata={"help": "folder for cached reference log-probs"})
    length_buckets: int = field(default=2, metadata={"help": "with the answer-only head on one process: score a "
                                "batch's sequences in this many forwards of similar length, each trimmed to its "
                                "longest (less padding; 1: one forward, as TRL does)"})
    share_prompts: bool = field(default=False, metadata={"help": "with the answer-only head: compute each pair's "
                                "prompt once for both answers (one sequence prompt + chosen + rejected, masked so "
                                "that neither answer sees the other; docs/performance.md measures it)"})

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError("lam must be in [0, 1]")
        if self.clo_loss not in LOSS_FUNCTIONS:
            raise ValueError(f"clo_loss must be one of {list(LOSS_FUNCTIONS)}")

    @property
    def needs_reference(self) -> bool:
        """Whether the objective (or the English anchor) uses reference log-probs: reference-free runs skip the
        reference pass and its cache."""
        return needs_reference("clo" if self.clo_loss == "dpo" else self.clo_loss, self.english_anchor)


class CLOTrainer(DPOTrainer):
    """DPOTrainer whose loss is CLO's. TRL keeps tokenization, collation, the fused LM head, the optimizer
    loop and logging; this class changes only what CLO changes."""

    _tag_names = ["trl", "dpo", "clo"]

    def __init__(self, *args, events=None, should_stop=None, ref_progress=None, **kwargs):
        self.events = events  # set first: the reference pass runs inside DPOTrainer.__init__
        self.should_stop = should_stop
        self.ref_progress = ref_progress  # (batches done, batches in all, seconds so far), after each batch
        self.ref_cache_hit = None
        self.ref_pass_seconds = None
        self.selective_head = None  # decided once TRL has built the model (inside __init__)
        self._prompt_sharing = False  # decided with the head
        super().__init__(*args, **kwargs)
        self._ensure_head()

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        fsdp_on_cpu(self)  # test-only (CLO_TEST_FSDP_ON_CPU); a no-op otherwise

    def _ensure_head(self) -> None:
        if self.selective_head is None:
            patched = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            on_cuda = self.accelerator.device.type == "cuda"  # TRL's head is compact (Triton) there: keep it
            self.selective_head = not on_cuda and add_selective_head(patched)
            why = prompt_sharing_supported(patched) if self.selective_head else "it needs the answer-only head"
            self._prompt_sharing = why is None
            self._model_config = patched.config  # `model` in a step may be a DDP/FSDP wrapper without one
            if self.args.share_prompts and why:
                log.warning("share_prompts is off for this run: %s", why)

    def _token_logps(self, model, inputs):
        """(B, T-1) log-probs of answer tokens (0 elsewhere), through the selective or TRL's fused head, in the
        run's precision (clo/precision.py): the training step and the reference pass alike."""
        with precision_context("bf16" if self.args.bf16 else "fp32", self.accelerator.device.type):
            return self._token_logps_in_precision(model, inputs)

    def _token_logps_in_precision(self, model, inputs):
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        kwargs = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                      use_cache=False)
        if not self.selective_head:
            return model(**kwargs, fused_lm_head=True).log_probs
        # Several forwards per step only on one process: DDP and FSDP expect one forward per backward.
        one_process = self.accelerator.num_processes == 1
        if self.args.share_prompts and self._prompt_sharing:
            shared = shared_prompt_logps(model, inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"],
                                         self.args.length_buckets if one_process else 1, config=self._model_config)
            if shared is not None:
                return shared
        if self.args.length_buckets > 1 and one_process:
            return bucketed_logps(model, inputs["input_ids"], inputs["attention_mask"], labels, self.args.length_buckets)
        return model(**kwargs, clo_logps=True)

    def compute_ref_log_probs(self, model, inputs):
        if not self.selective_head:
            return super().compute_ref_log_probs(model, inputs)
        ctx = contextlib.nullcontext()
        if self.ref_model is None and hasattr(self.model, "peft_config"):
            ctx = use_adapter(self.accelerator.unwrap_model(self.model), adapter_name=None)
        with torch.no_grad(), ctx:
            per_token = self._token_logps(model, inputs)
        return per_token.sum(dim=1).chunk(2, dim=0)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "is_target" not in self._signature_columns:
            self._signature_columns = list(self._signature_columns) + list(EXTRA_COLUMNS)

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length":
            self._pair_sampler = PairSampler(len(ds), self.args.seed)
        else:
            self._pair_sampler = PairSampler(len(ds), self.args.seed, row_lengths(ds), self.args.per_device_train_batch_size // 2)
        return self._pair_sampler

    def _run_epoch(self, model, epoch, *args, **kwargs):
        # The epoch's order depends on (seed, epoch). Under several processes, a resumed epoch's loader is
        # accelerate's skip_first_batches wrapper around the sharded one, through which set_epoch never reaches
        # the sampler: it would replay epoch 0's order. Set it here, before the epoch's first batch is drawn.
        sampler = getattr(self, "_pair_sampler", None)
        if sampler is not None:
            sampler.set_epoch(epoch)
        return super()._run_epoch(model, epoch, *args, **kwargs)

    # -- reference log-probs, cached on disk ------------------------------------------------------
    def _ref_cache_key(self, dataset) -> str:
        """What the reference log-probs depend on: the weights, the exact token ids (template included), the
        max length, and how they were computed — compute dtype, device type, which LM head scored them, the
        model config and the TRL version — so that a cache written by a CPU fp32 run is never read by a GPU
        bf16 one."""
        model = self.accelerator.unwrap_model(self.model)
        config = model.config.to_json_string(use_diff=False) if hasattr(model, "config") else ""
        return ref_cache_key(
            weights=str(self._precompute_model_hash), max_length=self.args.max_length,
            columns=[list(dataset[col]) for col in ("prompt_ids", "chosen_ids", "rejected_ids")],
            dtype="bf16" if self.args.bf16 else "fp16" if self.args.fp16 else str(next(model.parameters()).dtype),
            device=self.accelerator.device.type, head="answer-only" if self.selective_head else "trl-fused",
            config=config)

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        self._ensure_head()
        if not self.args.needs_reference:  # reference-free objective: no reference pass, no cache file
            self.ref_cache_hit = None
            debug_write({"event": "ref_cache", "hit": None, "skipped": True})
            return dataset
        cache_dir = Path(self.args.ref_cache_dir) if self.args.ref_cache_dir else None
        key = self._ref_cache_key(dataset)
        path = cache_dir / f"{key}.safetensors" if cache_dir else None
        t = None
        if path is not None and path.exists():
            t, problem = read_ref_cache(path, len(dataset))
            if problem and self.accelerator.is_main_process:  # never used: moved aside, then computed again
                aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}")
                try:
                    os.replace(path, aside)
                    log.warning("reference cache %s is damaged (%s); moved it to %s and computing the reference "
                                "log-probs again", path, problem, aside)
                except OSError as e:
                    log.warning("reference cache %s is damaged (%s) and could not be moved aside (%s); computing "
                                "the reference log-probs again", path, problem, e)
        # a hit only if every rank has the file: ranks taking different branches would leave some waiting
        # in the reference pass's collectives (another job writing the file meanwhile; several machines)
        self.ref_cache_hit = all_agree(t is not None, "all")
        debug_write({"event": "ref_cache", "hit": self.ref_cache_hit})
        if self.ref_cache_hit:
            chosen, rejected = t["ref_chosen_logps"], t["ref_rejected_logps"]
        else:
            t0 = time.perf_counter()
            if self.events:
                self.events({"phase": "reference", "rows": len(dataset)})
            # Longest rows first: a batch pads only to its longest row, so scoring rows of similar length together
            # computes about a fifth fewer positions on the demo data (docs/performance.md); the first batch is
            # the largest, so running out of memory shows at once. The log-probs go back to dataset order below.
            size = row_lengths(dataset)
            order = sorted(range(len(dataset)), key=lambda i: -size[i])
            loader = DataLoader(dataset.select(order), batch_size=batch_size, collate_fn=self.data_collator,
                                shuffle=False)
            loader = self.accelerator.prepare(loader)
            # Under FSDP, TRL loads a second model for this pass (the policy is sharded only in train()). The
            # policy, still unsharded and untouched, *is* the reference here: score with it (its answer-only
            # head included) and drop TRL's copy now rather than after the pass.
            if self.is_fsdp_enabled:
                self.ref_model = None
            model = self.ref_model or self.model
            chosen, rejected = [], []
            total = len(loader)
            if self.ref_progress is not None:
                self.ref_progress(0, total, 0.0)
            for done, batch in enumerate(loader, start=1):
                if self.should_stop is not None and self.should_stop():
                    raise TrainingStopped("stopped during the reference pass, before the first step")
                batch = {k: v for k, v in batch.items() if k not in EXTRA_COLUMNS}
                c, r = self.compute_ref_log_probs(model, batch)
                c, r = self.accelerator.gather_for_metrics((c, r))
                chosen.append(c.float().cpu())
                rejected.append(r.float().cpu())
                fault_point("ref_pass")  # test-only (CLO_FAULT); a no-op otherwise
                if self.ref_progress is not None:
                    self.ref_progress(done, total, time.perf_counter() - t0)
            where = torch.tensor(order)
            chosen, rejected = torch.cat(chosen), torch.cat(rejected)
            chosen[where], rejected[where] = chosen.clone(), rejected.clone()  # back to dataset order
            self.ref_pass_seconds = time.perf_counter() - t0
            if path is not None and self.accelerator.is_main_process:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                tensors = {"ref_chosen_logps": chosen.contiguous(), "ref_rejected_logps": rejected.contiguous()}
                save_file(tensors, str(tmp), metadata={"sha256": _tensors_sha256(tensors)})
                os.replace(tmp, path)
        self.accelerator.wait_for_everyone()
        dataset = dataset.add_column("ref_chosen_logps", chosen.tolist())
        return dataset.add_column("ref_rejected_logps", rejected.tolist())

    # -- loss -----------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        completion_mask = inputs["completion_mask"]
        shift_mask = completion_mask[..., 1:]
        per_token = self._token_logps(model, inputs)[:, -shift_mask.size(1):]
        logps = per_token.sum(dim=1)
        policy_chosen, policy_rejected = logps.chunk(2, dim=0)  # batch is [chosen..., rejected...]
        chosen_tokens, rejected_tokens = shift_mask.sum(dim=1).chunk(2, dim=0)
        ref_chosen = ref_rejected = None
        if not self.args.needs_reference:
            pass  # reference-free: the objective reads the policy's log-probs only
        elif self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = self.compute_ref_log_probs(
                self.ref_model or self.model, {k: v for k, v in inputs.items() if k not in EXTRA_COLUMNS})
        if ref_chosen is not None:
            ref_chosen, ref_rejected = ref_chosen.to(logps.dtype), ref_rejected.to(logps.dtype)
        fn = LOSS_FUNCTIONS[self.args.clo_loss]
        out = fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, is_target=inputs["is_target"],
                 chosen_tokens=chosen_tokens, rejected_tokens=rejected_tokens, beta=self.beta, lam=self.args.lam,
                 gamma=self.args.simpo_gamma, anchor=self.args.english_anchor, en_nll=self.args.english_nll)
        gathered = {}
        for k, v in out.metrics().items():
            gathered[k] = self.accelerator.gather_for_metrics(torch.tensor(v, device=logps.device)).mean().item()
        for k, v in gathered.items():
            if k != "loss":
                self._metrics[mode][k].append(v)
        for k, v in self._language_metrics(out, inputs.get("lang_id")).items():
            self._metrics[mode][k].append(v)
        if mode == "train":
            n = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += n
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (out.loss, per_token) if return_outputs else out.loss

    def _language_metrics(self, out, lang_id) -> dict[str, float]:
        """Per-language margin and accuracy (``margin_sw``, ``accuracy_sw``) of a run with several target
        languages, over both directions of each language's pairs. Sums and counts are reduced over every rank
        (one fixed-size tensor each, so that a rank whose batch lacks a language still takes part)."""
        codes = self.args.lang_codes
        if len(codes) < 2 or lang_id is None:
            return {}
        lang_id = lang_id.to(out.margins.device)
        onehot = F.one_hot(lang_id, len(codes)).to(out.margins.dtype)  # (P, L)
        stats = torch.stack([onehot.sum(0), (onehot * out.margins[:, None]).sum(0),
                             (onehot * (out.margins[:, None] > 0)).sum(0)])  # (3, L): count, margin sum, correct
        stats = self.accelerator.reduce(stats, reduction="sum")
        m = {}
        for i, code in enumerate(codes):
            n = stats[0, i].item()
            if n > 0:
                m[f"margin_{code}"] = stats[1, i].item() / n
                m[f"accuracy_{code}"] = stats[2, i].item() / n
        return m

