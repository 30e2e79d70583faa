"""CLO's trainer on TRL's DPOTrainer (docs/design.md, "Trainer"). Imports torch and TRL at its top: the run
driver (:mod:`clo.training.run`) imports it inside the function that trains, so that the CLI stays fast.

:class:`CLOTrainer` computes CLO's loss in ``_compute_loss`` over both directions of a sample in one batch
(:mod:`clo.training.sampling`), reads the reference log-probs from the on-disk cache or computes them once
(:mod:`clo.training.reference`), and scores answer tokens only on a CPU (:mod:`clo.training.logprobs`).
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from trl import DPOTrainer
from trl.trainer.utils import use_adapter

from clo.core.files import atomic_path, move_aside
from clo.core.precision import precision_context
from clo.core.testing import debug_write, fault_point, fsdp_on_cpu
from clo.training.distributed import all_agree
from clo.training.logprobs import add_selective_head, bucketed_logps, prompt_sharing_supported, shared_prompt_logps
from clo.training.losses import LOSS_FUNCTIONS
from clo.training.reference import read_ref_cache, ref_cache_key, tensors_sha256
from clo.training.sampling import EXTRA_COLUMNS, PairSampler, row_lengths
from clo.training.stopping import TrainingStopped

log = logging.getLogger(__name__)

__all__ = ["CLOTrainer"]


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
        run's precision (clo/core/precision.py): the training step and the reference pass alike."""
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
            shared = shared_prompt_logps(model, inputs["input_ids"], inputs["attention_mask"],
                                         inputs["completion_mask"], self.args.length_buckets if one_process else 1,
                                         config=self._model_config)
            if shared is not None:
                return shared
        if self.args.length_buckets > 1 and one_process:
            return bucketed_logps(model, inputs["input_ids"], inputs["attention_mask"], labels,
                                  self.args.length_buckets)
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
        # several target languages: batches stratified by language (each in proportion, from the first step)
        groups = list(ds["lang_id"]) if len(self.args.lang_codes) > 1 and "lang_id" in ds.column_names else None
        if self.args.train_sampling_strategy != "group_by_length":
            self._pair_sampler = PairSampler(len(ds), self.args.seed, groups=groups)
        else:
            self._pair_sampler = PairSampler(len(ds), self.args.seed, row_lengths(ds),
                                             self.args.per_device_train_batch_size // 2, groups=groups)
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
                try:
                    aside = move_aside(path)
                except OSError as e:
                    log.warning("reference cache %s is damaged (%s) and could not be moved aside (%s); computing "
                                "the reference log-probs again", path, problem, e)
                else:
                    if aside is not None:  # (None: another process moved it first)
                        log.warning("reference cache %s is damaged (%s); moved it to %s and computing the "
                                    "reference log-probs again", path, problem, aside)
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
                tensors = {"ref_chosen_logps": chosen.contiguous(), "ref_rejected_logps": rejected.contiguous()}
                with atomic_path(path) as tmp:
                    save_file(tensors, str(tmp), metadata={"sha256": tensors_sha256(tensors)})
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
        fn = LOSS_FUNCTIONS[self.args.objective]
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

