"""Decisions and data every rank of an ``accelerate launch`` must share (docs/design.md, "Scaling out").

- :func:`all_agree` — a flag combined over all processes (one process: the flag itself, no collective);
- :func:`use_cpu` — whether a run computes on the CPU;
- :func:`gathered_state_dict` — the whole model's weights from FSDP or ZeRO-3 shards, for the final save.

torch and accelerate are imported inside the functions, so that importing this module stays cheap.
"""
from __future__ import annotations

__all__ = ["all_agree", "use_cpu", "gathered_state_dict"]


def all_agree(flag: bool, op: str = "any") -> bool:
    """``flag`` combined over all processes (``any``: true if one rank says so; ``all``: only if every rank
    does). One process: ``flag`` itself, no collective. Every rank must call it at the same point."""
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes <= 1:
        return bool(flag)
    t = torch.tensor([int(bool(flag))], device=state.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "any" else dist.ReduceOp.MIN)
    return bool(t.item())


def use_cpu(spec) -> bool:
    """Whether a run computes on the CPU: asked for, or ``auto`` on a machine without CUDA."""
    import torch

    return spec.device == "cpu" or (spec.device == "auto" and not torch.cuda.is_available())


def gathered_state_dict(model):
    """The whole model's weights when they are sharded across processes, else None (the model itself holds
    them: one process, DDP, ZeRO-2). **Every rank must call it** at the same point: the gather is a collective.

    - FSDP (FSDP2's DTensor shards, or an FSDP1 wrapper): torch's full state dict, offloaded to the CPU; the main
      process gets every tensor, the others an empty dict (``accelerator.get_state_dict`` does the same).
    - DeepSpeed ZeRO-3 (parameters partitioned, ``ds_id``): gathered layer by layer into CPU copies on the main
      process. Written from DeepSpeed's documented API, not run: DeepSpeed is not installed here.
    """
    import torch

    params = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        rank0 = torch.distributed.get_rank() == 0
        out = {}
        for prefix, module in model.named_modules():
            local = list(module.parameters(recurse=False))
            with deepspeed.zero.GatheredParameters(local, modifier_rank=None):
                if rank0:
                    own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
                    for name, t in own:
                        out[f"{prefix}.{name}" if prefix else name] = t.detach().cpu().clone()
        return out
    fsdp1 = any(type(m).__name__ == "FullyShardedDataParallel" for m in model.modules())
    if not fsdp1 and not any(hasattr(p, "full_tensor") for p in params):  # DTensor: FSDP2's shards
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    out = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    # a tied weight (the LM head = the input embedding) comes back as two separate copies, which save_pretrained
    # would both write: keep only the first name, as an unsharded save does (loading ties them again)
    kept = {n for n, _ in model.named_parameters()}
    for alias in {n for n, _ in model.named_parameters(remove_duplicate=False)} - kept:
        out.pop(alias, None)
    return out
