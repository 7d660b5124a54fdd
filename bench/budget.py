"""The training budget as an axis: ``bench ... budget.enabled=true`` trains every schedule at
several budgets (``trainer.max_epochs``) and reports each schedule's standing per budget.

Warmup-stable-decay and the constant LR share their stable phase, so they cost one constant run
per seed, not one run per budget:

1. **Sources**: per seed, one constant-LR run as long as the longest budget, keeping a checkpoint
   (``trainer.keep_epochs``) where each budget's cooldown starts, ``(1 - cooldown) x budget``,
   and at the end of each budget.
2. **Branches**: per seed and budget, each of ``budget.cooldowns`` (``wsd``, its 1-sqrt
   cooldown, by default; ``wsd_linear`` adds a linear one) with ``decay_fraction=cooldown``
   trains only its cooldown from the source's checkpoint (``branch.from_sweep``), and
   ``constant`` trains nothing: it is the source's state at that budget, tested. Both are the
   runs trained straight, to the last bit (``tests/test_branch.py``).
3. **The others** (``budget.schedules``, cosine and linear by default) are trained at each budget
   as runs of their own: their shape depends on the budget.

Each round is an ordinary sweep in a process of its own, so a killed study resumes like any
sweep: run the same command again. The report covers the branches and the others; its settings
are the budgets (``trainer.max_epochs=...``), each with its accuracy table, claims and figures.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import schedules
from bench.rules import COUNT, Rule

KEY = "budget"
RULES: dict[str, Rule] = {
    "enabled": (lambda x: isinstance(x, bool), "true or false"),
    "epochs": (
        lambda x: isinstance(x, list | tuple) and len(x) >= 1 and all(COUNT[0](e) for e in x),
        "a list of epoch counts (integers >= 1), e.g. [4, 8, 16]",
    ),
    "cooldown": (
        lambda x: isinstance(x, int | float) and not isinstance(x, bool) and 0 < x < 1,
        "a number in (0, 1)",
    ),
    "schedules": (
        lambda x: isinstance(x, list | tuple) and all(isinstance(s, str) and s for s in x),
        "a list of schedule names, e.g. [cosine, linear]",
    ),
    "cooldowns": (
        lambda x: (
            isinstance(x, list | tuple)
            and len(x) >= 1
            and len(set(x)) == len(x)
            and set(x) <= set(COOLDOWNS)
        ),
        "a list of one or both of wsd (a 1-sqrt cooldown), wsd_linear (a linear one)",
    ),
}
COOLDOWNS = schedules.COOLDOWNS  # the schedules whose cooldown branches from the source


def requested(args: list[str]) -> bool:
    """Whether the command line turns the mode on (``budget.enabled=true``)."""
    return any(a.lstrip("+") in (f"{KEY}.enabled=true", f"{KEY}.enabled=True") for a in args)


def problems(settings: dict[str, Any]) -> list[str]:
    """The ``budget`` node's values, and cooldowns that start at an epoch's end."""
    found = [
        f"{KEY}.{k}: got {settings.get(k)!r}; allowed: {allowed}"
        for k, (test, allowed) in RULES.items()
        if not test(settings.get(k))
    ]
    if found:
        return found
    for epochs in settings["epochs"]:
        start = epochs * (1 - settings["cooldown"])
        if abs(start - round(start)) > 1e-9:
            found.append(
                f"{KEY}.cooldown: {settings['cooldown']} of {epochs} epochs starts at epoch "
                f"{start:g}, not at an epoch's end; allowed: a cooldown x every budget that is a "
                "whole number (0.25 with budgets of 4, 8, 16)"
            )
    found += [
        f"{KEY}.schedules: got {s!r}; allowed: {', '.join(n for n in schedules.SCHEDULES)}"
        for s in settings["schedules"]
        if s not in schedules.SCHEDULES
    ]
    return found


def plan(settings: dict[str, Any]) -> dict[str, Any]:
    """The study's rounds and what they cost, in epochs per seed (pure)."""
    budgets = sorted(set(settings["epochs"]))
    longest, f = budgets[-1], settings["cooldown"]
    starts = [round(e * (1 - f)) for e in budgets]
    keep = sorted(set(starts) | set(budgets))
    n = len(settings["cooldowns"])
    branched = longest + n * sum(e - s for e, s in zip(budgets, starts, strict=True))
    return {
        "budgets": budgets,
        "keep": keep,
        "epochs": ",".join(map(str, budgets)),
        "branched_epochs": branched,  # the source run plus every cooldown
        "straight_epochs": (n + 1) * sum(budgets),  # the same, trained at every budget
        "branched": f"{', '.join(settings['cooldowns'])} and constant",
    }


def _compose(args: list[str]):
    from hydra import compose, initialize_config_dir

    from bench.config import CONFIG_DIR
    from bench.sweep import first_point

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="sweep", overrides=first_point(args), return_hydra_config=True)


def main(args: list[str]) -> int:
    """``bench ... budget.enabled=true``: the sources, the branches, the others, the report."""
    from omegaconf import OmegaConf

    from bench import report, tracking
    from bench.sequential import _bench

    rest = [a for a in args if a not in ("-m", "--multirun")]
    passed = [
        a
        for a in rest
        if not a.lstrip("+").startswith(f"{KEY}.")
        and a.split("=", 1)[0] not in ("schedule", "trainer.max_epochs", "report.after_sweep")
    ]
    cfg = _compose(rest)
    settings = OmegaConf.to_container(cfg[KEY], resolve=True)
    found = problems(settings)
    if found:
        print("bench: " + "\n  ".join(["bad input, nothing was run:", *found]), file=sys.stderr)
        return 2
    p = plan(settings)
    uri = tracking.resolve_uri(cfg.tracking.uri)
    experiment = cfg.tracking.experiment
    quiet = "report.after_sweep=false"
    rounds = [
        (
            "sources: one constant run per seed, checkpoints kept",
            [
                "schedule=constant",
                f"trainer.max_epochs={p['budgets'][-1]}",
                f"trainer.keep_epochs=[{','.join(map(str, p['keep']))}]",
            ],
        ),
        # one round per cooldown shape: a knob cannot be set across a swept schedule group
        *(
            (
                f"branches: {name} cooldowns",
                [f"schedule={name}", f"schedule.decay_fraction={settings['cooldown']}"],
            )
            for name in settings["cooldowns"]
        ),
        ("branches: constant at each budget", ["schedule=constant"]),
        ("the others at each budget", [f"schedule={','.join(settings['schedules'])}"]),
    ]
    branched = range(1, len(rounds) - 1)  # the rounds that branch from the sources
    sweeps, seconds = [], []
    for i, (what, extra) in enumerate(rounds):
        budget = [] if i == 0 else [f"trainer.max_epochs={p['epochs']}"]
        branch = [f"branch.from_sweep={sweeps[0]}"] if i in branched else []
        line = [_bench(), *passed, *extra, *budget, *branch, quiet]
        print(f"\nBudget axis, round {i + 1} of {len(rounds)}: {what}")
        start = time.monotonic()
        try:
            code = subprocess.call(line)
        except KeyboardInterrupt:
            return 130
        seconds.append(time.monotonic() - start)
        if code != 0:
            print(
                f"bench: round {i + 1} ({what}) did not finish (exit {code}). Run the same "
                "command again to resume.",
                file=sys.stderr,
            )
            return code
        sweeps.append(tracking.latest_sweep(uri, experiment))
    options = report.options_from(OmegaConf.to_container(cfg.report, resolve=True))
    options.made = (
        f"The training budget as an axis (`{KEY}.epochs={p['budgets']}`): {p['branched']} "
        f"(cooldown {settings['cooldown']:g}) branched from one constant run per seed, "
        f"{p['branched_epochs']} epochs per seed instead of {p['straight_epochs']} trained "
        f"straight; the rounds took {', '.join(f'{s / 60:.1f}' for s in seconds)} min."
    )
    info = tracking.sweep_info(uri, sweeps[-1])
    folder = (
        Path(info["sweep_dir"]) / "report"
        if cfg.report.dir is None
        else Path(cfg.report.dir) / experiment
    )
    made = report.make(uri, experiment, folder, sweeps[1:], options)
    report.print_tables(made)
    print(
        f"\nBudget axis: {p['branched']} took {p['branched_epochs']} epochs per seed instead "
        f"of {p['straight_epochs']}."
    )
    return 0
