"""Which parameters train: ``attention`` (the paper: only the attention projections), ``full`` or ``lora``
(docs/design.md, "Trainable scope").

    >>> from clo.training.scope import find_attention_modules, apply_scope
    >>> apply_scope(model, spec)          # sets requires_grad; returns a peft LoraConfig for scope lora
"""
from __future__ import annotations

from clo.core.spec import SpecError, TrainSpec

__all__ = ["find_attention_modules", "apply_scope", "count_trainable"]


def _is_linear(module) -> bool:
    import torch.nn as nn  # torch only when a model is there: `import clo.training.run` stays fast

    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"  # GPT-2's Conv1D


def find_attention_modules(model) -> list[str]:
    """Names of the linear projections inside attention blocks, found by module type, not family names.

    Covers Llama/Qwen/Mistral/Gemma (``q_proj``…``o_proj``), GPT-2 (``attn.c_attn``/``attn.c_proj``), fused
    ``qkv_proj`` and others whose attention class is named ``*Attention*``/``*SelfAttention*``.
    """
    names = []
    for name, module in model.named_modules():
        cls = type(module).__name__
        if "Attention" not in cls or "CrossAttention" in cls:
            continue
        for child_name, child in module.named_modules():
            if child_name and _is_linear(child):
                full = f"{name}.{child_name}" if name else child_name
                if full not in names:
                    names.append(full)
    if not names:
        raise SpecError(
            f"Could not find attention projections in {type(model).__name__}: no module whose class name contains "
            "'Attention' holds linear layers. Use --scope full or --scope lora with lora_target all-linear."
        )
    return names


def apply_scope(model, spec: TrainSpec):
    """Set ``requires_grad`` for the chosen scope; for ``lora`` return a peft config (else None)."""
    if spec.scope == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return None
    attn = find_attention_modules(model)
    if spec.scope == "attention":
        for p in model.parameters():
            p.requires_grad_(False)
        modules = dict(model.named_modules())
        for name in attn:
            for p in modules[name].parameters():
                p.requires_grad_(True)
        return None
    from peft import LoraConfig

    # full module names: a short name such as GPT-2's c_proj would also match the MLP's c_proj
    targets = attn if spec.lora_target == "attention" else "all-linear"
    return LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0, target_modules=targets,
                      task_type="CAUSAL_LM")


def count_trainable(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return train, total
