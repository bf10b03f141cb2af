"""A team of two in a real JupyterLab: alice's and bob's apps side by side on one trainer.

One notebook, one kernel: a same-process ``TeamTrainer`` on a SQLite store in the notebook's folder
(no Ray, no PostgreSQL: the store and the trainer handle are the only differences from a team spread
over machines, which ``tests/test_team*.py`` cover), and two ``LiveAnnotator`` cells, one per
annotator. Checked in Chromium: both apps render, on different images; each panel's team line names
the other and the image they are on; a box drawn with the mouse on alice's canvas and Finish & Next
put her label in the store under her name, and open an image that is neither her previous one nor
bob's, which bob's team line then follows. Screenshots go to ``test-artifacts/<test>/``.
"""

from __future__ import annotations

from pathlib import Path

from .. import _require
from .app_driver import AppView
from .harness import cell_output, open_notebook, run_all, screenshot, wait_for, write_notebook

REPO = Path(__file__).resolve().parents[2]
DATA = _require.DATA
CLASSES = ["RBC", "WBC", "Platelets"]

pytestmark = _require.needs_data  # skips without the data; fails in CI (LIVETRAIN_REQUIRE_DATA=1)

SETUP = f"""
import warnings; warnings.simplefilter("ignore")
from pathlib import Path
from livetrain_widgets import LiveAnnotator, SessionConfig, TeamTrainer, TrainerConfig

paths = sorted(Path({str(DATA / "bccd" / "JPEGImages")!r}).glob("*.jpg"))[:10]
# The team's trainer, in this kernel: the store file sits beside the notebook, the trainer's own
# folder (checkpoints) too.
trainer = TeamTrainer("trainer", "team.sqlite", "detection", {CLASSES!r},
                      model_options={{"input_size": 256, "seed": 0}},
                      config=SessionConfig(trainer=TrainerConfig(seed=0)))
trainer.session.add_images(paths)
"""

ALICE = 'alice = LiveAnnotator(backend=trainer, store="team.sqlite", user="alice", height=400)\nalice'
BOB = 'bob = LiveAnnotator(backend=trainer, store="team.sqlite", user="bob", height=400)\nbob'


def team_line(ui: AppView) -> str:
    """The team line as drawn (``inner_text`` is "" for a hidden element), checked against the panel's
    ``data-team`` hook: the two say the same."""
    line = ui.panel.locator(".lt-team")
    if not line.is_visible():
        return ""
    text = " ".join(line.inner_text().split())
    return text if text == ui.panel.get_attribute("data-team") else f"{text!r} != data-team"


def wait_team_line(ui: AppView, want: str, timeout: float = 20) -> None:
    wait_for(lambda: team_line(ui) == want, timeout=timeout,
             message=lambda: f"team line {team_line(ui)!r}, expected {want!r} (data-team "
                             f"{ui.panel.get_attribute('data-team')!r})")


def assert_legible(ui: AppView) -> None:
    """The team line is a line of its own in the panel: some height, inside the panel, over none of the
    panel's other rows (buttons, settings, the notice, the foot)."""
    line = ui.panel.locator(".lt-team")
    box = line.bounding_box()
    panel = ui.panel.bounding_box()
    assert box and panel and box["height"] >= 10 and box["width"] > 50, box
    assert panel["x"] <= box["x"] and box["x"] + box["width"] <= panel["x"] + panel["width"] + 0.5, (box, panel)
    assert panel["y"] <= box["y"] and box["y"] + box["height"] <= panel["y"] + panel["height"] + 0.5, (box, panel)
    # the line's text fits in its box (nothing cut off or spilling over the rows below)
    assert line.evaluate("e => e.scrollWidth <= e.clientWidth + 1 && e.scrollHeight <= e.clientHeight + 1")
    siblings = ui.panel.locator(":scope > *:not(.lt-team):not(.lt-toast)")
    for n in range(siblings.count()):
        other = siblings.nth(n)
        if not other.is_visible():
            continue
        b = other.bounding_box()
        assert b is not None
        overlap_y = min(box["y"] + box["height"], b["y"] + b["height"]) - max(box["y"], b["y"])
        overlap_x = min(box["x"] + box["width"], b["x"] + b["width"]) - max(box["x"], b["x"])
        assert overlap_x <= 0.5 or overlap_y <= 0.5, (other.get_attribute("class"), b, box)
    color = line.evaluate("e => getComputedStyle(e).color")
    assert color not in ("rgba(0, 0, 0, 0)", "transparent"), color


def test_two_annotators_see_each_other_and_never_share_an_image(page, lab_server, console_log) -> None:
    path = lab_server.root / "team" / "notebook.ipynb"
    write_notebook(path, [SETUP, ALICE, BOB])
    open_notebook(page, lab_server, path)
    run_all(page, lab_server, path, timeout=180)
    kernel = lab_server.kernel(path)
    alice, bob = AppView(page, cell_output(page, 1)), AppView(page, cell_output(page, 2))

    # Both render, each on an image of its own (leased in the store under its name).
    a_first, b_first = alice.wait_image(), bob.wait_image()
    assert a_first != b_first, "both apps opened the same image"
    assert kernel.eval("[alice.image_id, bob.image_id]") == [int(a_first), int(b_first)]
    leases = kernel.eval("sorted([x.holder, x.image_id] for x in alice.session.store.active_leases())")
    assert leases == [["alice", int(a_first)], ["bob", int(b_first)]], leases
    names = kernel.eval("[alice.session.store.image(alice.image_id).name, bob.session.store.image(bob.image_id).name]")
    assert names[0] != names[1]
    # Each one's panel names the other and the image they are on.
    wait_team_line(alice, f"Also labeling: bob (image {b_first})")
    wait_team_line(bob, f"Also labeling: alice (image {a_first})")
    for ui in (alice, bob):
        assert_legible(ui)
        # a team's trainer is not one annotator's to start or stop
        assert not ui.panel.locator("button.lt-btn-train").is_visible()
        # a setting of segmentation only is not shown on a detection task (its [hidden] must hold)
        assert not ui.panel.locator(".lt-semantic").is_visible()
    alice.root.scroll_into_view_if_needed()
    screenshot(page, "01-both-open")
    screenshot(alice.panel, "01-alice-panel")
    screenshot(bob.panel, "01-bob-panel")

    # Alice draws a box with the mouse and presses Finish & Next.
    alice.draw_box([100, 100, 220, 200], 1)  # WBC
    wait_for(lambda: alice.attr("objects") == "1", timeout=5, message=lambda: f"canvas: {alice.attrs()}")
    kernel.wait_for("len(alice.canvas.objects)", 1)
    screenshot(page, "02-alice-drew")
    alice.button("submit").click()
    a_next = alice.wait_image(not_id=a_first)
    assert a_next not in (a_first, b_first), (a_first, b_first, a_next)
    assert bob.attr("image-id") == b_first  # bob was not moved
    assert kernel.eval("[alice.image_id, bob.image_id]") == [int(a_next), int(b_first)]

    # Her label is in the store, under her name, as drawn; bob's image has none.
    history = kernel.eval(
        f"[[v.user, v.annotation.boxes.tolist(), v.annotation.labels.tolist()] "
        f"for v in alice.session.store.annotation_history({a_first})]")
    assert len(history) == 1, history
    user, boxes, labels = history[0]
    assert user == "alice" and labels == [1], history
    assert max(abs(a - b) for a, b in zip(boxes[0], [100, 100, 220, 200], strict=True)) < 3.0, boxes
    assert kernel.eval(f"alice.session.store.annotation({b_first}) is None") is True
    leases = kernel.eval("sorted([x.holder, x.image_id] for x in alice.session.store.active_leases())")
    assert leases == [["alice", int(a_next)], ["bob", int(b_first)]], leases

    # Bob's panel follows alice to her new image; hers still names bob on his.
    wait_team_line(bob, f"Also labeling: alice (image {a_next})")
    wait_team_line(alice, f"Also labeling: bob (image {b_first})")
    for ui in (alice, bob):
        assert_legible(ui)
    assert alice.panel.get_attribute("data-labeled") == "1"
    wait_for(lambda: bob.panel.get_attribute("data-labeled") == "1", timeout=10,
             message=lambda: f"bob's panel: {bob.panel.get_attribute('data-labeled')} labeled")
    alice.root.scroll_into_view_if_needed()
    screenshot(page, "03-alice-next")
    screenshot(alice.panel, "03-alice-panel")
    screenshot(bob.panel, "03-bob-panel")

    assert not console_log.errors(), console_log.text()
    kernel.run("await alice.close(); await bob.close(); await trainer.close()", timeout=120)
