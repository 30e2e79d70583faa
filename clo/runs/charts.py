"""The training charts of a run, and of several runs on the same axes (docs/design.md, "Training charts").

:func:`run_charts` turns one run's ``metrics.jsonl`` rows into the charts the Runs and Train pages draw (loss,
rewards, log-probabilities, preference accuracy), each with a caption computed from the run itself: what the
quantity is, and what its curve says (the loss that barely moves under a large NLL term, the accuracy that reaches
1.0 within a few steps, a chosen log-probability that falls while the margin grows). :func:`overlay` puts several
runs on the same axes, one chart per metric and one line per run, aligned by optimizer step, each line named by
the settings in which the runs differ (``beta=0.5``, ``lambda=0``, ``objective=ipo``). The pages only draw what
these return (Plotly), so the CLI, the app and the tests share one answer.

    >>> from clo.runs.charts import overlay
    >>> o = overlay(["runs/beta-0.1", "runs/beta-0.5"])
    >>> o.differ, [s.label for s in o.charts[0].series]
    (['beta'], ['beta=0.1', 'beta=0.5'])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clo.core.spec import SFT_DIRECTIONS, TrainSpec
from clo.runs.rundir import RunDir

__all__ = ["Series", "Chart", "Overlay", "run_charts", "overlay", "OVERLAY_METRICS", "DEFAULT_OVERLAY",
           "differing_settings", "LOGPS_KEYS"]

LOGPS_KEYS = ("logps_chosen", "logps_rejected", "en_logps_chosen", "en_logps_rejected", "tgt_logps_chosen",
              "tgt_logps_rejected")


@dataclass
class Series:
    label: str
    key: str  # the metrics.jsonl column
    steps: list[int]
    values: list[float | None]  # None where this run logged no value at that step
    dash: str = "solid"
    color: str | None = None  # None: the chart's palette (one colour per run in an overlay)


@dataclass
class Chart:
    title: str
    y_title: str
    caption: str  # what the chart shows, in one or two sentences (markdown)
    series: list[Series] = field(default_factory=list)
    empty: str | None = None  # why nothing is drawn (e.g. SFT has no preference pairs)
    y_range: tuple[float, float] | None = None


@dataclass
class Overlay:
    runs: list[dict]  # {"id", "path", "label", "settings"} in the order asked
    differ: list[str]  # the settings (config.yaml keys) whose values differ between the runs
    steps: list[int]  # every step any run logged, in order: each series' values line up with it
    charts: list[Chart]
    problems: list[str] = field(default_factory=list)  # runs left out, and why


# -- one run ----------------------------------------------------------------------------------------------------

_GREEN, _RED, _BLUE, _TEAL, _VIOLET, _ORANGE, _SLATE = ("#16a34a", "#dc2626", "#2563eb", "#0f766e", "#7c3aed",
                                                        "#ea580c", "#64748b")


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _column(rows: list[dict], key: str) -> list[float | None]:
    return [_number(r.get(key)) for r in rows]


def _first_last(rows: list[dict], key: str) -> tuple[float, float] | None:
    vals = [v for v in _column(rows, key) if v is not None]
    return (vals[0], vals[-1]) if vals else None


def _is_sft(config: dict) -> bool:
    return config.get("method") in SFT_DIRECTIONS and config.get("method") != "sft-dpo"


def _loss_caption(rows: list[dict], config: dict) -> str:
    lam = _number(config.get("lambda"))
    if _is_sft(config):
        return ("The loss is the NLL of the answers trained on, in nats per answer token: how surprised the model "
                "is by them.")
    if config.get("method") == "sft-dpo":
        return ("sft-dpo: the SFT stage's loss is its NLL (nats per answer token); the DPO stage's is the pair loss "
                "alone (λ = 0), which starts at log 2 ≈ 0.69.")
    text = ("total = λ·SFT + (1 − λ)·pair loss: SFT is the NLL of the target answers (nats per token), the pair "
            "loss is the objective's, averaged over pairs (the sigmoid loss starts at log 2 ≈ 0.69).")
    sft, cl, total = _first_last(rows, "sft_loss"), _first_last(rows, "cl_loss"), _first_last(rows, "loss")
    if lam is None or not (sft and cl and total) or len(rows) < 2:
        return text
    text += (f" Here (λ = {lam:g}) the pair loss went {cl[0]:.2f} → {cl[1]:.2f} and the NLL {sft[0]:.2f} → "
             f"{sft[1]:.2f}, so the total went {total[0]:.2f} → {total[1]:.2f}")
    if 0 < lam < 1 and lam * sft[1] > (1 - lam) * cl[0]:
        text += (f": the pair loss can move the total by at most (1 − λ)·{cl[0]:.2f} = {(1 - lam) * cl[0]:.2f}, "
                 f"while λ·NLL ({lam * sft[1]:.2f}) is most of the total and changes with each batch's answers. A flat "
                 "total is not a stalled run: read the pair loss and the accuracy.")
    else:
        text += "."
    return text


def _rewards_caption(config: dict) -> str:
    beta = _number(config.get("beta"))
    b = f" (β = {beta:g} here)" if beta is not None else ""
    if config.get("objective") in ("orpo", "simpo"):
        return (f"This objective has no reference: reward = β·(log π)/|y|{b}, the answer's mean log-probability per "
                "token, scaled. margin = chosen − rejected, what the loss pushes up.")
    return (f"reward = β·log(π/π_ref){b}: how much more likely the answer is under the trained model π than under "
            "the starting model π_ref, summed over its tokens. Both start at 0 (π starts as π_ref); margin = chosen "
            "− rejected, the only thing the pair loss sees.")


def _accuracy_caption(rows: list[dict]) -> str:
    text = "Share of the step's pairs whose chosen answer has the higher reward (margin > 0)."
    acc = _column(rows, "accuracy")
    full = next((r.get("step") for r, a in zip(rows, acc) if a is not None and a >= 1.0), None)
    if full is not None:
        text += (f" It reached 1.0 at step {full}: these pairs are easy to rank — both answers say the same thing, "
                 "in two languages, so telling the prompt's language from the other one separates them. 1.0 says "
                 "the ranking is learnt, not that the answers are good; the margin keeps growing after it.")
    return text


def _logps_caption(rows: list[dict], config: dict) -> str:
    if _is_sft(config):
        text = ("log π of the answer trained on and of the other-language answer to the same prompt (never "
                "trained), summed over its tokens and averaged over the step's rows. SFT raises the probability of "
                "text like its answers, so the other-language answer, which says the same thing, tends to rise "
                "with it: SFT alone does not teach which language to answer in.")
    else:
        text = ("log π of the chosen and the rejected answer, summed over its tokens and averaged over the step's "
                "pairs (TRL's logps/chosen, logps/rejected). A falling chosen log-probability while the margin "
                "grows means the rejected answer falls faster: the pair loss only sees the difference, so it can "
                "lower both.")
    if not any(_number(r.get("logps_chosen")) is not None for r in rows):
        return text
    text += " Each step scores its own batch, whose answers differ in length: read the trend, not one step."
    beta, last = _number(config.get("beta")), rows[-1]
    drift_c, drift_r = _number(last.get("rewards_chosen")), _number(last.get("rewards_rejected"))
    if (not _is_sft(config) and beta and config.get("objective", "clo") not in ("orpo", "simpo") and drift_c is not None
            and drift_r is not None and len(rows) >= 2):
        # reward / β is log π − log π_ref on the same answers: the drift without the batch's noise
        text += (f" On the same answers, against the starting model (reward / β), step {last.get('step')} moved "
                 f"the chosen answers {drift_c / beta:+.1f} nats and the rejected ones {drift_r / beta:+.1f}.")
    return text


def run_charts(rows: list[dict], config: dict | None = None) -> list[Chart]:
    """The charts of one run from its ``metrics.jsonl`` rows and its ``config.yaml`` settings (``{}`` when
    unknown): Loss, Rewards, Log-probabilities and Preference accuracy, each with its caption. A metric the run did
    not log (an SFT run's rewards, a run written before the log-probabilities were logged) has no series; a chart
    with none says why in ``empty``."""
    config = config or {}
    steps = [r.get("step") for r in rows]
    sft = _is_sft(config)

    def series(label, key, dash, color):
        return Series(label, key, steps, _column(rows, key), dash, color)

    charts = [
        Chart("Loss", "loss (nats)", _loss_caption(rows, config), [
            series("total", "loss", "solid", _TEAL), series("SFT (target NLL)", "sft_loss", "dot", _VIOLET),
            series("pair loss", "cl_loss", "dash", _ORANGE)]),
        Chart("Rewards", "β · log-ratio (nats)", _rewards_caption(config), [
            series("chosen", "rewards_chosen", "solid", _GREEN), series("rejected", "rewards_rejected", "solid", _RED),
            series("margin", "margin", "dot", _BLUE)],
            empty="not logged by this method: SFT has no preference pairs, so no rewards."),
        Chart("Log-probabilities", "log π(answer) (nats)", _logps_caption(rows, config), [
            series(f"{'trained' if sft else 'chosen'} · English prompts", "en_logps_chosen", "dot", _GREEN),
            series(f"{'other language' if sft else 'rejected'} · English prompts", "en_logps_rejected", "dot", _RED),
            series(f"{'trained' if sft else 'chosen'} · target prompts", "tgt_logps_chosen", "solid", _GREEN),
            series(f"{'other language' if sft else 'rejected'} · target prompts", "tgt_logps_rejected", "solid",
                   _RED)],
            empty="not logged by this run: it was trained before CLO Studio logged the answers' log-probabilities."),
        Chart("Preference accuracy", "share of pairs", _accuracy_caption(rows), [
            series("all pairs", "accuracy", "solid", _TEAL), series("English prompts", "en_accuracy", "dot", _SLATE),
            series("target prompts", "tgt_accuracy", "dot", _ORANGE)],
            empty="not logged by this method: SFT has no preference pairs.", y_range=(-0.05, 1.05)),
    ]
    for c in charts:
        c.series = [s for s in c.series if any(v is not None for v in s.values)]
        if c.series:
            c.empty = None
    return charts


# -- several runs ---------------------------------------------------------------------------------------------

OVERLAY_METRICS = {  # metrics.jsonl column → (title, y-axis title)
    "loss": ("Total loss", "loss (nats)"),
    "cl_loss": ("Pair loss", "loss (nats)"),
    "sft_loss": ("SFT (target NLL)", "loss (nats)"),
    "margin": ("Margin", "β · log-ratio (nats)"),
    "rewards_chosen": ("Reward of the chosen answer", "β · log-ratio (nats)"),
    "rewards_rejected": ("Reward of the rejected answer", "β · log-ratio (nats)"),
    "accuracy": ("Preference accuracy", "share of pairs"),
    "logps_chosen": ("log π of the chosen answer", "log π(answer) (nats)"),
    "logps_rejected": ("log π of the rejected answer", "log π(answer) (nats)"),
    "en_logps_chosen": ("log π of the chosen answer · English prompts", "log π(answer) (nats)"),
    "en_logps_rejected": ("log π of the rejected answer · English prompts", "log π(answer) (nats)"),
    "tgt_logps_chosen": ("log π of the chosen answer · target prompts", "log π(answer) (nats)"),
    "tgt_logps_rejected": ("log π of the rejected answer · target prompts", "log π(answer) (nats)"),
    "en_accuracy": ("Preference accuracy · English prompts", "share of pairs"),
    "tgt_accuracy": ("Preference accuracy · target prompts", "share of pairs"),
    "en_margin": ("Margin · English prompts", "β · log-ratio (nats)"),
    "tgt_margin": ("Margin · target prompts", "β · log-ratio (nats)"),
}
DEFAULT_OVERLAY = ("loss", "margin", "accuracy", "logps_chosen", "logps_rejected")
_OVERLAY_CAPTIONS = {
    "loss": "λ·SFT + (1 − λ)·pair loss: with a large λ the NLL term dominates and the total hides the pair loss.",
    "cl_loss": "The objective's pair loss: compare how fast each setting drives it down.",
    "sft_loss": "The target answers' NLL (nats per token).",
    "margin": "reward(chosen) − reward(rejected), rewards = β·log(π/π_ref): a larger β scales the same log-ratio "
              "up, so compare margins across β with that in mind.",
    "accuracy": "Share of pairs ranked right; reaching 1.0 within a few steps says the pairs are easy to rank.",
    "logps_chosen": "log π of the chosen answer (SFT: the answer trained on): falling while the margin grows means "
                    "the loss lowers both answers, the rejected one faster.",
    "logps_rejected": "log π of the rejected answer (SFT: the other-language answer, never trained).",
}
# the settings most often varied come first in a line's name
_FIRST = ("method", "objective", "beta", "lambda", "simpo_gamma", "english_anchor", "english_nll", "lr", "scope")


def _defaults() -> dict:
    return TrainSpec().to_dict()


def _fmt(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str) and "/" in v:  # a model or data path: its last part
        return Path(v).name or v
    return str(v)


_PREFERENCE_ONLY = {"objective", "beta", "lambda", "simpo_gamma", "english_anchor", "english_nll"}  # not SFT's
_NAMED = 4  # a line's name quotes at most this many differing settings; the overlay's ``differ`` has them all


def differing_settings(configs: list[dict]) -> list[str]:
    """The settings (``config.yaml`` keys) whose values are not the same in every one of ``configs``; a setting
    missing from an older run's file counts as its default. The most often varied (method, objective, beta,
    lambda, …) first, then the others in the order of :class:`TrainSpec`."""
    defaults = _defaults()
    keys = list(defaults) + sorted({k for c in configs for k in c} - set(defaults) - {"description"})
    differ = [k for k in keys if len({repr(_norm(c.get(k, defaults.get(k)))) for c in configs}) > 1]
    return sorted(differ, key=lambda k: (_FIRST.index(k) if k in _FIRST else len(_FIRST), keys.index(k)))


def _norm(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def _by_step(rows: list[dict], key: str) -> dict[int, float]:
    out = {}
    for r in rows:  # a step logged twice (a resumed run's replayed step): its last row counts
        v = _number(r.get(key))
        if v is not None and isinstance(r.get("step"), int):
            out[r["step"]] = v
    return out


def overlay(runs, metrics=None) -> Overlay:
    """Several runs on the same axes: for each metric of ``metrics`` (None: :data:`DEFAULT_OVERLAY`), of those at
    least one run logged, one chart with one line per run, its values aligned on the union of the
    runs' optimizer steps (None where a run logged nothing at that step). ``runs``: run folders or
    :class:`RunDir`. Each line is named by the settings in which the runs differ (``beta=0.5, lambda=0``); runs
    that differ in nothing are told apart by their folder names. A folder that is not a run, or a run that logged
    no step, is left out and named in ``problems``."""
    loaded, problems = [], []
    for r in runs:
        run = r if isinstance(r, RunDir) else RunDir(Path(r))
        if not run.exists():
            problems.append(f"{run.path}: not a run folder (no config.yaml or status.json)")
            continue
        rows = run.metrics()
        if not rows:
            problems.append(f"{run.id}: no training step logged yet")
            continue
        loaded.append((run, run.config(), rows))
    differ = differing_settings([c for _, c, _ in loaded]) if len(loaded) > 1 else []
    defaults = _defaults()
    names = []
    for run, config, _ in loaded:
        keys = [k for k in differ if not (_is_sft(config) and k in _PREFERENCE_ONLY)]  # what applies to it
        name = ", ".join(f"{k}={_fmt(config.get(k, defaults.get(k)))}" for k in keys[:_NAMED])
        if len(keys) > _NAMED:
            name += f" (+{len(keys) - _NAMED} more)"
        names.append(name or run.id)
    dupes = {n for n in names if names.count(n) > 1}
    names = [f"{n} ({run.id})" if n in dupes and n != run.id else n for n, (run, _, _) in zip(names, loaded)]
    steps = sorted({r["step"] for _, _, rows in loaded for r in rows if isinstance(r.get("step"), int)})
    metrics = list(DEFAULT_OVERLAY) if metrics is None else list(metrics)
    wanted = [m for m in metrics if m in OVERLAY_METRICS]
    unknown = [m for m in metrics if m not in OVERLAY_METRICS]
    if unknown:
        problems.append(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(OVERLAY_METRICS)}")
    charts = []
    for m in wanted:
        title, y_title = OVERLAY_METRICS[m]
        series = []
        for name, (_, _, rows) in zip(names, loaded):
            values = _by_step(rows, m)
            if values:
                series.append(Series(name, m, steps, [values.get(s) for s in steps]))
        if series:
            charts.append(Chart(title, y_title, _OVERLAY_CAPTIONS.get(m, ""), series,
                                y_range=(-0.05, 1.05) if "accuracy" in m else None))
    settings = [{k: config.get(k, defaults.get(k)) for k in differ} for _, config, _ in loaded]
    return Overlay([{"id": run.id, "path": str(run.path), "label": name, "settings": s}
                    for (run, _, _), name, s in zip(loaded, names, settings)], differ, steps, charts, problems)
