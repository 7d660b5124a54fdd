"""The report folder from hand-made runs: what report.md says, and the files beside it."""

import numpy as np
import pandas as pd
import pytest

from bench import report, tracking
from bench.analysis.claims import Claim

BASE = {"optimizer._target_": "torch.optim.SGD", "optimizer.lr": "0.05", "n_val": "1000"}
FREE = {"optimizer._target_": "schedulefree.SGDScheduleFree", "optimizer.lr": "0.15"}


def runs_of(cells, epochs=6):
    """``cells``: (schedule, seed, final accuracy, extra params, status) -> tracking.Runs."""
    rows, curves = [], []
    for i, (schedule, seed, final, extra, status) in enumerate(cells):
        run_id = f"r{i}"
        params = {**BASE, "schedule": schedule, "seed": str(seed), **extra}
        rows.append(
            {
                "run_id": run_id,
                "run_name": f"{schedule}-seed{seed}",
                "status": status,
                "schedule": schedule,
                "seed": seed,
                "sweep": "",
                "start_time": 100.0 * i,
                "end_time": 100.0 * i + 60,
                "trained_from": 100.0 * i,
                "diverged": False,
                "test_acc": final - 0.01,
                "train_loss_final": 0.1,
                "val_acc_ensemble": np.nan,
                "test_acc_ensemble": np.nan,
                "n_snapshots": 0,
                "params": params,
                "tags": {"bench.versions": "python 3.11, torch 2.14.1"},
            }
        )
        if status == "FINISHED":
            for e in range(1, epochs + 1):
                acc = final * (0.7 + 0.3 * e / epochs)
                curves.append((run_id, schedule, seed, e, acc, 1 - acc, 1 - acc, 10.0 * e))
    frame = pd.DataFrame(rows)
    columns = ["run_id", "schedule", "seed", "epoch", "val_acc", "val_loss", "train_loss", "time_s"]
    return tracking.Runs("study", frame, pd.DataFrame(curves, columns=columns))


GAIN = [0.010, 0.012, 0.009, 0.011, 0.010]
BASELINE = [0.70, 0.72, 0.69, 0.71, 0.70]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    cells = [("constant", s, a, {}, "FINISHED") for s, a in enumerate(BASELINE)]
    cells += [
        ("cosine", s, a + g, {}, "FINISHED")
        for s, (a, g) in enumerate(zip(BASELINE, GAIN, strict=True))
    ]
    cells += [("sgd_schedulefree", s, a, FREE, "FINISHED") for s, a in enumerate(BASELINE)]
    cells += [("cosine", 5, 0.5, {}, "FAILED")]
    options = report.Options(
        claims=[Claim("cosine beats constant on test", "cosine", "constant", "test_acc", low=0)],
        formats=("png", "svg", "pdf"),
    )
    folder = tmp_path_factory.mktemp("r") / "study"
    made = report.write(runs_of(cells), folder, options, "all its runs", ["bench seed=0,1,2,3,4"])
    return made, folder


def test_report_md_reads_top_to_bottom(written):
    _, folder = written
    text = (folder / "report.md").read_text()
    order = ["## What was run", "## Verdicts", "## Accuracy", "## Stability", "## Figures"]
    order += ["## All fixed settings"]
    assert "<details>" not in text  # MLflow's Markdown viewer shows HTML as text
    assert [text.index(h) for h in order] == sorted(text.index(h) for h in order)
    assert "`bench seed=0,1,2,3,4`" in text and "`python 3.11, torch 2.14.1`" in text
    assert "**Machine**: not recorded by these runs." in text
    assert "Starting weights" not in text  # none of these runs started from a weights file
    assert "seeds**: [0, 1, 2, 3, 4]" in text and "1 not finished" in text
    # A steady +1 point over 5 seeds: the built-in claim holds, and so does the user's own.
    claims = pd.read_csv(folder / "claims.csv").set_index("claim")
    assert claims.loc["cosine beats constant by +0.5 to +1.5 points", "verdict"] == "held"
    assert claims.loc["cosine beats constant on test", "verdict"] == "held"
    counts = claims["verdict"].value_counts()
    summary = f"**{len(claims)} claims tested: {counts.get('held', 0)} held, "
    assert summary in text and counts.get("refuted", 0) == 1  # schedule-free: 1 point below
    # Schedule-free runs sit beside the schedules; their own LR is a knob, not a swept LR.
    assert "## Base LR" not in text and not (folder / "lr_sensitivity.csv").exists()
    assert "| sgd_schedulefree" in text


def test_tables_for_readers_and_for_machines(written):
    _, folder = written
    accuracy = pd.read_csv(folder / "accuracy.csv")
    assert {"diff_mean", "p_holm", "metric", "setting"} <= set(accuracy.columns)
    shown = (folder / "accuracy.md").read_text()
    assert "Δ vs constant (pt) [95% CI]" in shown and "diff_mean" not in shown
    cosine = accuracy[(accuracy["metric"] == "final_val_acc") & (accuracy["schedule"] == "cosine")]
    assert f"+{cosine['diff_mean'].iloc[0] * 100:.2f} [" in shown
    latex = (folder / "accuracy.tex").read_text()
    assert "\\toprule" in latex and "\\midrule" in latex and "$\\Delta$ vs constant" in latex
    assert "sgd\\_schedulefree" in (folder / "stability.tex").read_text()  # escaped for LaTeX
    stability = pd.read_csv(folder / "stability.csv").set_index("schedule")
    assert stability.loc["cosine", "n_failed"] == 1 and stability.loc["constant", "n_failed"] == 0


def test_every_figure_in_every_format(written):
    _, folder = written
    for stem in ("val_acc_curves", "final_acc_per_seed", "forest", "stability", "lr_traces"):
        for fmt in ("png", "svg", "pdf"):
            assert (folder / f"{stem}.{fmt}").stat().st_size > 0


def test_a_missing_baseline_is_said_plainly(tmp_path):
    cells = [
        (s, seed, 0.7 + 0.01 * seed, {}, "FINISHED") for s in ("cosine", "step") for seed in (0, 1)
    ]
    made = report.write(runs_of(cells), tmp_path / "r")
    assert any("baseline schedule 'constant' is not among these runs" in w for w in made.warnings)
    assert made.accuracy["diff_mean"].isna().all()
    other = report.write(runs_of(cells), tmp_path / "s", report.Options(baseline="step"))
    assert other.accuracy["diff_mean"].notna().any() and not other.warnings


def test_nothing_finished_writes_nothing(tmp_path):
    with pytest.raises(LookupError, match="no finished runs"):
        report.write(runs_of([("cosine", 0, 0.7, {}, "FAILED")]), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_swept_lr_with_a_schedule_free_optimizer(tmp_path):
    """The base LR is swept; schedule-free SGD at an LR of its own sits in a setting of its own,
    and joins the fair comparison, where every schedule is taken at its own best LR, chosen on
    validation."""
    cells = []
    for lr, shift in (("0.05", 0.0), ("0.1", 0.02)):
        for s, a in enumerate(BASELINE):
            cells.append(("constant", s, a + shift, {"optimizer.lr": lr}, "FINISHED"))
            cells.append(("cosine", s, a + 0.03 - shift, {"optimizer.lr": lr}, "FINISHED"))
    cells += [("sgd_schedulefree", s, a, FREE, "FINISHED") for s, a in enumerate(BASELINE)]
    made = report.write(runs_of(cells), tmp_path / "r", report.Options(metric="test_acc"))
    fair = pd.read_csv(tmp_path / "r" / "at_best_lr.csv").set_index("schedule")
    assert fair.loc["constant", "lr"] == 0.1 and fair.loc["cosine", "lr"] == 0.05
    assert fair.loc["sgd_schedulefree", "lr"] == 0.15 and fair.loc["cosine", "n_pairs"] == 5
    assert (fair["metric"] == "test_acc").all()
    sens = pd.read_csv(tmp_path / "r" / "lr_sensitivity.csv")
    assert sorted(set(sens["lr"])) == [0.05, 0.1, 0.15]
    assert any("setting(s) 'optimizer.lr=0.15'" in w for w in made.warnings)
    robust = pd.read_csv(tmp_path / "r" / "lr_robustness.csv").set_index("schedule")
    assert robust.loc["constant", "best_lr"] == 0.1 and robust.loc["cosine", "best_lr"] == 0.05
    assert robust.loc["sgd_schedulefree", "n_lrs"] == 1  # its own LR: one point, no range
    assert (tmp_path / "r" / "lr_robustness.png").exists()
    assert "How wide each schedule's good base LR is" in (tmp_path / "r" / "report.md").read_text()


def test_schedule_free_on_the_lr_grid_is_judged_at_each_lr_and_at_its_best(tmp_path):
    """Schedule-free SGD run on the schedules' LR grid sits beside them at each base LR; its
    best LR is not cosine's, so "matches the best schedule" is refuted at either LR and holds
    with every arm at its own best LR."""
    cells = []
    for s, a in enumerate(BASELINE):
        for lr, cosine, free in (("0.05", 0.05, 0.0), ("0.1", 0.0, 0.05)):
            extra = {"optimizer.lr": lr}
            cells.append(("constant", s, a, extra, "FINISHED"))
            cells.append(("cosine", s, a + cosine + 0.001 * s, extra, "FINISHED"))
            cells.append(("sgd_schedulefree", s, a + free, {**FREE, **extra}, "FINISHED"))
    mine = Claim("cosine peaks higher", "cosine", "constant", "best_val_acc", low=0)
    made = report.write(runs_of(cells), tmp_path / "r", report.Options(claims=[mine]))
    assert not made.warnings  # no setting of its own, no knobs pooled
    claim = "schedule-free SGD matches the best schedule (within ±0.5 pt)"
    at_each = made.claims.set_index(["setting", "claim"])
    assert at_each.loc[("optimizer.lr=0.05", claim), "verdict"] == "refuted"  # 5 pt behind
    assert at_each.loc[("optimizer.lr=0.1", claim), "verdict"] == "refuted"  # 5 pt ahead
    tuned = pd.read_csv(tmp_path / "r" / "claims_at_best_lr.csv").set_index("claim")
    assert tuned.loc[claim, "verdict"] == "held"
    assert tuned.loc[claim, "metric"] == "test_acc"
    assert tuned.loc[claim, "diff_mean"] == pytest.approx(-0.2, abs=0.05)
    assert tuned.loc["cosine peaks higher", "metric"] == "test_acc"  # never where LRs were chosen
    assert made.claims_at_best_lr is not None and len(made.claims_at_best_lr) == len(tuned)
    note = report.description(made)
    tuned_note = note.split("Claims with every arm at its own best base LR: ")[1]
    assert f"{claim} (held)" in tuned_note
    text = (tmp_path / "r" / "report.md").read_text()
    assert "The claims with every arm at its own best base LR" in text


def test_a_report_drawn_again_from_its_data_is_the_same_report(written, tmp_path):
    made, folder = written
    again = report.redraw(folder, tmp_path / "again")
    assert list(again.options.claims) == list(made.options.claims)  # its extra claim
    assert tuple(again.options.formats) == tuple(made.options.formats)  # and its PDF figures
    for name in sorted(p.name for p in folder.iterdir() if p.suffix in (".md", ".csv", ".tex")):
        assert (tmp_path / "again" / name).read_text() == (folder / name).read_text(), name
    assert (tmp_path / "again" / "forest.pdf").exists()
    for name in report.data.FILES:  # what it keeps, kept again the same
        assert (tmp_path / "again" / "data" / name).read_text() == (
            folder / "data" / name
        ).read_text()
    kept = report.data.load(folder / "data")
    original = runs_of([("constant", 0, 0.7, {}, "FINISHED")])  # the columns, as loaded
    assert list(kept.data.runs.columns) == list(original.runs.columns)
    assert kept.data.runs["test_acc"].dtype == float and kept.data.runs["seed"].dtype == int
    assert kept.data.runs["params"][0] == {**BASE, "schedule": "constant", "seed": "0"}


def test_the_lr_traces_rounds_and_infinities_come_back_exactly(tmp_path):
    cells = [
        (s, seed, 0.7 + 0.01 * seed, {}, "FINISHED")
        for s in ("constant", "cosine")
        for seed in (0, 1)
    ]
    data = runs_of(cells)
    data.runs.loc[1, "train_loss_final"] = float("inf")  # a run that blew up on its last step
    lr = pd.DataFrame(
        {
            "run_id": ["r0"] * 3 + ["r2"] * 3,
            "step": [0, 1, 2] * 2,
            "lr": [0.1, 0.1, 0.1, 0.1, 0.05, 1 / 3],
        }
    )
    options = report.Options(looks=(1, 2), stopping="The claims were decided.", made="In rounds.")
    report.write(data, tmp_path / "r", options, "sweep `x`", ["bench seed=0,1"], lr)
    kept = report.data.load(tmp_path / "r" / "data")
    pd.testing.assert_frame_equal(kept.lr, lr)
    pd.testing.assert_frame_equal(kept.data.epochs, data.epochs)
    assert kept.data.runs.loc[1, "train_loss_final"] == float("inf")
    assert "Infinity" not in (tmp_path / "r" / "data" / "runs.json").read_text()  # plain JSON
    assert (kept.options.looks, kept.options.stopping, kept.options.made) == (
        (1, 2),
        options.stopping,
        options.made,
    )
    assert (kept.scope, kept.commands) == ("sweep `x`", ["bench seed=0,1"])
    again = report.redraw(tmp_path / "r", tmp_path / "again")
    assert (tmp_path / "again" / "report.md").read_text() == (
        tmp_path / "r" / "report.md"
    ).read_text()
    assert again.options.looks == (1, 2)


def test_a_report_folder_named_data_is_drawn_again_in_place(tmp_path):
    """Whether named by its own folder or by its data/, the report is written where it was, and
    the folders beside it are left alone."""
    cells = [
        (s, seed, 0.7 + 0.01 * seed, {}, "FINISHED")
        for s in ("constant", "cosine")
        for seed in (0, 1)
    ]
    report.write(runs_of(cells), tmp_path / "reports" / "data")
    (tmp_path / "reports" / "other").mkdir()
    for source in (tmp_path / "reports" / "data", tmp_path / "reports" / "data" / "data"):
        again = report.redraw(source)
        assert again.folder == tmp_path / "reports" / "data"
        assert (tmp_path / "reports" / "data" / "report.md").exists()
        assert (tmp_path / "reports" / "other").is_dir()


def test_from_refuses_the_options_that_choose_runs_from_a_store(tmp_path, capsys):
    assert report.main(["--from", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert report.main(["--from", str(tmp_path), "--where", "optimizer.lr=0.1"]) == 2
    assert (
        "--where (which choose runs from the MLflow store) cannot go with it"
        in capsys.readouterr().err
    )


def test_from_with_width_redraws_the_figures_for_one_column_and_keeps_that_width(
    written, tmp_path, capsys
):
    """``--width 3.3``: every figure 3.3 in wide (at 200 dpi, 660 px), the tables unchanged; the
    width is the report's own from then on, so a later --from keeps it."""
    from PIL import Image

    _, folder = written
    column = tmp_path / "column"
    assert report.main(["--from", str(folder), "--width", "3.3", "--out", str(column)]) == 0
    pngs = sorted(column.glob("*.png"))
    assert len(pngs) == len(list(folder.glob("*.png"))) >= 6
    for png in pngs:
        with Image.open(png) as image, Image.open(folder / png.name) as wide:
            assert image.width == 660 and wide.width == 1300, png.name
    assert (column / "accuracy.md").read_text() == (folder / "accuracy.md").read_text()
    assert "The figures are drawn 3.3 in wide" in (column / "report.md").read_text()
    assert "The figures are drawn 6.5 in wide" in (folder / "report.md").read_text()
    again = report.redraw(column, tmp_path / "again")
    assert again.options.width == 3.3
    with Image.open(tmp_path / "again" / "forest.png") as image:
        assert image.width == 660
    assert report.main(["--from", str(folder), "--width", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--width 2: allowed: a width in inches from 3.25 to 20" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    kept = column / "data" / "report.json"  # a width edited by hand is checked too
    kept.write_text(kept.read_text().replace('"width": 3.3', '"width": 0.5'))
    with pytest.raises(LookupError, match="width 0.5: allowed: a width in inches from 3.25"):
        report.redraw(column, tmp_path / "y")
    assert not (tmp_path / "y").exists()


def test_the_starting_weights_each_run_named_are_listed(tmp_path):
    data = runs_of([(s, 0, 0.7, {}, "FINISHED") for s in ("constant", "cosine")])
    data.runs["tags"] = [{"bench.weights": f"/w.pt (sha256 {h})"} for h in ("aaaa", "bbbb")]
    text = (report.write(data, tmp_path / "r").folder / "report.md").read_text()
    assert "- **Starting weights**: `/w.pt (sha256 aaaa)`; `/w.pt (sha256 bbbb)`" in text


def test_drawing_again_from_a_folder_without_data_says_what_is_missing(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.md").write_text("# Report\n")
    with pytest.raises(LookupError, match="missing: runs.json, epochs.csv, lr.csv, report.json"):
        report.redraw(tmp_path / "old", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_every_claim_tested_names_its_source_in_the_csv_and_report(written):
    _, folder = written
    tested = pd.read_csv(folder / "claims.csv")
    built_in = tested[tested["claim"] != "cosine beats constant on test"]
    assert len(built_in) and built_in["source"].notna().all()
    text = (folder / "report.md").read_text()
    sources = text[text.index("Where each claim comes from:") :]
    for claim in built_in["claim"]:
        assert f"- {claim}: " in sources


def test_the_config_sets_the_figures_width_the_report_draws_at():
    from conftest import compose_run

    assert report.options_from(compose_run()["report"]).width == 6.5
    column = compose_run("report.width=3.3")["report"]
    assert report.options_from(column).width == 3.3
