"""Seeds until decided: ``bench until_decided.enabled=true`` runs a study's seeds in rounds and
stops as soon as every claim in scope has a verdict, or when its budget is spent.

- **Rounds.** The first round is the grid as given, with its seeds (the preset's, or
  ``seed=...``). Each later round adds ``until_decided.step`` seeds, the next integers after the
  largest so far, until ``until_decided.max_seeds`` seeds per arm, or until
  ``until_decided.max_minutes`` have passed (no round starts after that).
- **A round is an ordinary sweep** of every seed so far (``bench ... seed=0,...,n-1``) in a
  process of its own: the cells the store has finished are skipped, so a round trains only its
  new seeds, and its sweep holds all of them. A killed round resumes like any sweep: run the
  same command again.
- **The looks.** After each round the claims in scope (those whose two arms the grid runs,
  ``bench.analysis.claims``) are evaluated with confidence sequences at 5%/m each for m claims:
  intervals valid at every look at once, so stopping when they look decided cannot manufacture a
  verdict (``stats.confidence_sequence``). Rounds stop when none is inconclusive.
- **The report** is the last round's sweep's, with the stopping rule, the looks and why the
  rounds stopped under its verdicts.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.rules import COUNT, POSITIVE, Rule, or_null

KEY = "until_decided"
RULES: dict[str, Rule] = {
    "enabled": (lambda x: isinstance(x, bool), "true or false"),
    "step": COUNT,
    "max_seeds": COUNT,
    "max_minutes": or_null(POSITIVE),
}


def requested(args: list[str]) -> bool:
    """Whether the command line turns the mode on (``until_decided.enabled=true``)."""
    return any(a.lstrip("+") in (f"{KEY}.enabled=true", f"{KEY}.enabled=True") for a in args)


def problems(settings: dict[str, Any], n_first: int) -> list[str]:
    """What is wrong with the ``until_decided`` settings, one line per field."""
    found = [
        f"{KEY}.{k}: got {settings.get(k)!r}; allowed: {allowed}"
        for k, (ok, allowed) in RULES.items()
        if not ok(settings.get(k))
    ]
    unknown = sorted(set(settings) - set(RULES))
    found += [f"{KEY}.{k}: unknown; the keys are {', '.join(RULES)}" for k in unknown]
    if not found and settings["max_seeds"] < n_first:
        found.append(
            f"{KEY}.max_seeds: got {settings['max_seeds']}, fewer than the {n_first} seeds of the "
            f"first round; allowed: an integer >= {n_first}"
        )
    return found


def next_seeds(seeds: list[int], step: int) -> list[int]:
    """The seeds of the next round: all so far and ``step`` new ones after the largest."""
    return [*seeds, *range(max(seeds) + 1, max(seeds) + 1 + step)]


def stop_reason(
    undecided: int, n_seeds: int, settings: dict[str, Any], minutes: float
) -> str | None:
    """Why the rounds stop after a look with ``undecided`` claims left, or None to go on."""
    if undecided == 0:
        return f"every claim in scope was decided after {n_seeds} seeds per arm"
    if n_seeds + settings["step"] > settings["max_seeds"]:
        return (
            f"the budget of {settings['max_seeds']} seeds per arm was reached with {undecided} "
            "claim(s) undecided"
        )
    if settings["max_minutes"] is not None and minutes >= settings["max_minutes"]:
        return (
            f"the budget of {settings['max_minutes']:g} minutes was spent ({minutes:.0f} min) "
            f"with {undecided} claim(s) undecided"
        )
    return None


def rule_text(settings: dict[str, Any]) -> str:
    budget = f"{settings['max_seeds']} seeds per arm"
    if settings["max_minutes"] is not None:
        budget += f" or {settings['max_minutes']:g} minutes"
    return (
        f"Stopping rule: add {settings['step']} seed(s) per round until every claim in scope is "
        f"decided, or until {budget}."
    )


# ---------------------------------------------------------------------------------------------
# The command


def _compose(args: list[str]):
    """The sweep's config for the first point of the grid, Hydra's own keys included."""
    from hydra import compose, initialize_config_dir

    from bench.config import CONFIG_DIR
    from bench.sweep import first_point

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="sweep", overrides=first_point(args), return_hydra_config=True)


def _first_seeds(args: list[str], cfg) -> list[int]:
    """The seeds of the first round: the command line's ``seed=...``, else the grid's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [a for a in args if a.split("=", 1)[0] == "seed"]
    text = given[-1] if given else None
    if text is None:
        grid = cfg.hydra.sweeper.params.get("seed") if cfg.hydra.sweeper.get("params") else None
        text = f"seed={grid}" if grid is not None else f"seed={cfg.seed}"
    [o] = OverridesParser.create().parse_overrides([text])
    values = o.sweep_string_iterator() if o.is_sweep_override() else [o.value()]
    return sorted({int(v) for v in values})


def _bench() -> str:
    """This ``bench`` executable, to run the rounds with."""
    me = Path(sys.argv[0])
    return str(me) if me.name == "bench" else shutil.which("bench") or "bench"


def main(args: list[str]) -> int:
    """``bench ... until_decided.enabled=true``: the rounds, their looks, the final report."""
    from omegaconf import OmegaConf

    from bench import report, tracking

    rest = [a for a in args if a not in ("-m", "--multirun")]
    passed = [a for a in rest if not a.lstrip("+").startswith(f"{KEY}.")]
    rounds = [a for a in passed if a.split("=", 1)[0] not in ("seed", "report.after_sweep")]
    cfg = _compose(rest)
    settings = OmegaConf.to_container(cfg[KEY], resolve=True)
    seeds = _first_seeds(rest, cfg)
    found = problems(settings, len(seeds))
    if found:
        print("bench: " + "\n  ".join(["bad input, nothing was run:", *found]), file=sys.stderr)
        return 2
    uri = tracking.resolve_uri(cfg.tracking.uri)
    experiment = cfg.tracking.experiment
    options = report.options_from(OmegaConf.to_container(cfg.report, resolve=True))
    command = " ".join(["bench", *rest])
    start = time.monotonic()
    looks: list[int] = []
    while True:
        n = len(seeds)
        print(f"\nSeeds until decided: round {len(looks) + 1}, seeds {seeds[0]}..{seeds[-1]} ({n})")
        line = [_bench(), *rounds, f"seed={','.join(map(str, seeds))}", "report.after_sweep=false"]
        try:
            code = subprocess.call(line)
        except KeyboardInterrupt:
            return 130
        if code != 0:
            print(
                f"bench: round {len(looks) + 1} did not finish (exit {code}); nothing is "
                "decided from it. Run the same command again to resume.",
                file=sys.stderr,
            )
            return code
        parent = tracking.latest_sweep(uri, experiment)
        looks.append(n)
        options.looks = tuple(looks)
        claims = report.analyse(tracking.load_runs(uri, experiment, [parent]), options).claims
        if claims.empty:
            print(
                "bench: no claim is in scope: the grid runs neither pair of arms a claim compares "
                "(e.g. schedule=constant,cosine); add its arms or a claim of your own "
                "(report.claims)",
                file=sys.stderr,
            )
            return 2
        undecided = int((claims["verdict"] == "inconclusive").sum())
        print(
            f"Look {len(looks)} at {n} seeds per arm: {len(claims) - undecided} of "
            f"{len(claims)} claims decided"
            + "".join(
                f"\n  - {r.claim}: {r.verdict}"
                + (
                    f" [{r.diff_ci_low:+.2f}, {r.diff_ci_high:+.2f}]"
                    if math.isfinite(r.diff_ci_low) and math.isfinite(r.diff_ci_high)
                    else ""
                )
                for r in claims.itertuples()
            )
        )
        why = stop_reason(undecided, n, settings, (time.monotonic() - start) / 60)
        if why:
            break
        seeds = next_seeds(seeds, settings["step"])
    options.stopping = f"{rule_text(settings)} Stopped: {why}. The command: `{command}`."
    info = tracking.sweep_info(uri, parent)
    folder = (
        Path(info["sweep_dir"]) / "report"
        if cfg.report.dir is None
        else Path(cfg.report.dir) / experiment
    )
    made = report.make(uri, experiment, folder, [parent], options)
    report.print_tables(made)
    print(f"\nSeeds until decided: stopped: {why}.")
    return 0
