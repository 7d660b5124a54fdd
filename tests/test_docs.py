"""The documentation: a front door (README.md) and reference pages beside what they document,
every page reachable from the front door, and every link between them pointing somewhere."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    "README.md",
    "conf/README.md",
    "conf/hydra/launcher/README.md",
    "bench/README.md",
    "bench/analysis/README.md",
]


def anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings (outside code blocks)."""
    found, fence = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"^#+ (.*)$", line)):
            found.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return found


def links(text: str) -> list[str]:
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", prose)


@pytest.mark.parametrize("page", PAGES)
def test_every_link_of_a_page_points_at_a_file_and_heading_that_exist(page):
    path = ROOT / page
    for target in links(path.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{page}: {target} points at nothing"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest.read_text()), f"{page}: no heading #{anchor} in {file}"


def test_the_front_door_reaches_every_reference_page_and_stays_short():
    text = (ROOT / "README.md").read_text()
    reached = {(ROOT / t.partition("#")[0]).resolve() for t in links(text) if ".md" in t}
    for page in PAGES[1:]:
        assert (ROOT / page).resolve() in reached, f"README.md does not link {page}"
    assert len(text) < 15_000  # a front door: the reference lives on the pages it links


def test_the_schedules_table_is_made_from_the_formulas_in_the_code():
    """One copy of each formula: the schedule's docstring; the reference's table is written
    from them (``python -m bench.schedules``), so the two cannot drift apart."""
    from bench import schedules

    assert schedules.table() in (ROOT / "conf/README.md").read_text()
    for path in (ROOT / "conf/schedule").glob("*.yaml"):
        assert (
            path.read_text().splitlines()[0].startswith(f"# formula: bench.schedules.{path.stem}")
        )


def test_the_stability_columns_are_defined_once_and_every_report_carries_them(tmp_path):
    from bench.analysis import tables

    assert tables.stability_glossary() in (ROOT / "bench/analysis/README.md").read_text()
    assert tables.stability_glossary("report") in (ROOT / "results/digits/report.md").read_text()


def test_the_built_in_claims_are_listed_from_the_code():
    from bench.analysis import claims

    assert claims.table() in (ROOT / "bench/analysis/README.md").read_text()
