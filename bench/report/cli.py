"""``bench-report``: the command, and the tables it prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import analysis, plots, rules, schedules, tracking
from bench.report.options import HEADLINES, METRIC_NAMES, Options, Report
from bench.report.publish import make, redraw
from bench.report.views import accuracy_view, claims_view, ensemble_view, stability_view


def print_tables(report: Report, file=None) -> None:
    file = file or sys.stdout
    o = report.options
    unfinished = f", {report.n_unfinished} not finished" if report.n_unfinished else ""
    acc = accuracy_view(report.accuracy, o.metric, o.baseline)
    keep = [c for c in acc.columns if not c.startswith(("p (t", "p (W", "d_z", "median", "sd"))]
    print(f"\n{METRIC_NAMES[o.metric]} ({report.n_finished} finished runs{unfinished})", file=file)
    print(acc[keep].to_markdown(index=False, tablefmt="simple", disable_numparse=True), file=file)
    stab = stability_view(report.stability)
    stab = stab.drop(
        columns=[c for c in stab if c.startswith(("sd ", "seed ", "oscill", "seconds"))]
    )
    print("\nStability", file=file)
    print(stab.to_markdown(index=False, tablefmt="simple", disable_numparse=True), file=file)
    if report.ensemble is not None and not report.ensemble.empty:
        print("\nSnapshot ensembles", file=file)
        view = ensemble_view(report.ensemble)
        print(view.to_markdown(index=False, tablefmt="simple", disable_numparse=True), file=file)
    tuned = report.claims_at_best_lr
    for title, claims in (
        ("Verdicts", report.claims),
        ("Verdicts, every arm at its own best base LR (on test acc)", tuned),
    ):
        if claims is None or not len(claims):
            continue
        print(f"\n{title}", file=file)
        view = claims_view(claims).drop(columns=["expected"])
        view["verdict"] = view["verdict"].str.replace("**", "", regex=False)
        print(view.to_markdown(index=False, tablefmt="simple", disable_numparse=True), file=file)
    for warning in report.warnings:
        print(f"\nWarning: {warning}.", file=file)
    print(f"\nReport written to {report.folder / 'report.md'}", file=file)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, v = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"bench-report: {option} {value!r}: expected KEY=VALUE")
        pairs[key] = v
    return pairs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench-report",
        description="Regenerate a report (tables, verdicts on claims, figures) from the MLflow "
        "store: of the latest sweep by default, of chosen sweeps merged, or of every run; or "
        "draw a report again from the data it keeps (--from), without the store.",
        epilog="Writes OUT/report.md with the tables as .csv/.md/.tex, the figures as "
        ".png/.svg (--pdf: also .pdf) and the runs it was drawn from in OUT/data/. A report of "
        "one sweep is also logged to the sweep's parent run in MLflow. Repeated (setting, "
        "schedule, seed) cells count once. Examples: bench-report --all --out results/digits "
        "(the curated copy); bench-report --from results/digits --pdf --width 3.3 --out paper "
        "(the same report again, with PDF figures for one column of a two-column paper).",
    )
    p.add_argument(
        "--experiment", default=None, help="MLflow experiment to report (default: digits)"
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--sweep",
        action="append",
        metavar="RUN_ID|latest",
        help="a sweep to report: its parent run id, or 'latest' (the default); repeat to merge "
        "several sweeps of one grid (more seeds later)",
    )
    scope.add_argument(
        "--all",
        action="store_true",
        help="every run of the experiment, from all its sweeps and single runs",
    )
    scope.add_argument(
        "--from",
        dest="source",
        metavar="REPORT_DIR",
        help="draw the report in REPORT_DIR again from the data it keeps (REPORT_DIR/data/), "
        "with the current figures and tables; reads no MLflow store (default --out: "
        "REPORT_DIR itself)",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs with this MLflow tag (repeatable), e.g. --tag schedule=cosine",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs with this config value (an MLflow param; repeatable), e.g. "
        "--where optimizer.lr=0.1",
    )
    p.add_argument(
        "--baseline",
        default=None,
        metavar="SCHEDULE",
        help=f"the schedule the others are compared with (default: {analysis.BASELINE}; with "
        "--from, the report's own)",
    )
    p.add_argument(
        "--metric",
        default=None,
        choices=HEADLINES,
        help=f"the headline accuracy (default: {analysis.HEADLINE}; with --from, the report's own)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="the report's folder (default: reports/<experiment>; with --from, REPORT_DIR)",
    )
    p.add_argument("--pdf", action="store_true", help="also write the figures as PDF")
    p.add_argument(
        "--width",
        type=float,
        default=None,
        metavar="INCHES",
        help=f"the figures' width as printed, fonts at 7-9 pt: {plots.WIDTH:g} a paper's text "
        f"width (the default; with --from, the report's own), {plots.COLUMN:g} one column of a "
        "two-column paper (panels and legends rewrap); from 3.25 to 20",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.baseline is not None and args.baseline not in schedules.ARMS:
        print(
            f"bench-report: --baseline {args.baseline!r}: allowed: {', '.join(schedules.ARMS)}",
            file=sys.stderr,
        )
        return 2
    if args.width is not None and not rules.FIGURE_WIDTH[0](args.width):
        print(
            f"bench-report: --width {args.width:g}: allowed: {rules.FIGURE_WIDTH[1]}",
            file=sys.stderr,
        )
        return 2
    formats = ("png", "svg", "pdf") if args.pdf else ()
    if args.source is not None:
        store_only = {
            "--experiment": args.experiment,
            "--tag": args.tag,
            "--where": args.where,
            "--tracking-uri": args.tracking_uri,
        }
        given = [option for option, value in store_only.items() if value]
        if given:
            print(
                f"bench-report: --from draws a report again from its own data, so "
                f"{', '.join(given)} (which choose runs from the MLflow store) cannot go with it",
                file=sys.stderr,
            )
            return 2
        try:
            report = redraw(
                args.source, args.out, args.baseline or "", args.metric or "", formats, args.width
            )
        except LookupError as e:
            print(f"bench-report: --from {args.source}: {e.args[0]}", file=sys.stderr)
            return 2
        print_tables(report)
        return 0
    args.experiment = args.experiment or "digits"
    if argv is None:  # the command, not a call from Python
        tracking.exit_quickly()
        tracking.send_pending()
    uri = tracking.resolve_uri(args.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        print(f"bench-report: no MLflow store at {uri}; run `bench` here first", file=sys.stderr)
        return 2
    options = Options(
        baseline=args.baseline or analysis.BASELINE,
        metric=args.metric or analysis.HEADLINE,
        formats=formats or ("png", "svg"),
        width=args.width or plots.WIDTH,
    )
    folder = Path(args.out) if args.out else Path("reports") / args.experiment
    try:
        if args.all:
            sweeps: list[str] = []
        else:
            sweeps = [
                tracking.latest_sweep(uri, args.experiment)
                if s == "latest"
                else tracking.check_sweep(uri, args.experiment, s)
                for s in dict.fromkeys(args.sweep or ["latest"])
            ]
        report = make(
            uri,
            args.experiment,
            folder,
            sweeps,
            options,
            tags=_pairs(args.tag, "--tag"),
            params=_pairs(args.where, "--where"),
        )
    except (LookupError, tracking.StoreError) as e:
        print(f"bench-report: {e.args[0]}", file=sys.stderr)
        return 2
    print_tables(report)
    return 0
