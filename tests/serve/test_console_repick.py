"""The console's re-pick, in a real browser (Chromium through chromedriver, as the other console
tests): sliders update the plot and the picks from the preview while they move; Apply starts a
re-pick whose gallery fills from its events."""

from __future__ import annotations

from serve_fixtures import api, upload_video, wait_for_status  # noqa: F401
from test_console import _js_errors, _open_console, _text, _wait, artifacts, browser  # noqa: F401


def _picks_shown(d) -> list[int]:
    return d.execute_script("return [...document.querySelectorAll('#r-picks li')]"
                            ".map(li => Number(li.dataset.frameIndex))")


def test_browser_repicks_with_sliders_then_applies(browser, api, videos, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d, c = browser, api["client"]
    path, _ = videos.get(seconds=3, size=(480, 270), seed=71)
    first = wait_for_status(c, upload_video(c, path, "browser-repick").json()["id"])
    assert first["status"] == "succeeded", first
    _open_console(d, f"http://127.0.0.1:{api['port']}/")
    row = _wait(d).until(lambda d: d.find_elements(
        By.CSS_SELECTOR, f"#recent-table tr[data-id='{first['id']}'] button"))
    row[0].click()
    _wait(d).until(lambda d: d.find_element(By.ID, "a-repick").is_displayed())
    top_k = d.find_element(By.ID, "r-top-k")
    assert top_k.get_attribute("value") == "5" and _text(d, "r-top-k-value") == "5"
    assert d.find_element(By.ID, "r-apply").get_attribute("disabled")  # nothing changed yet

    # fewer picks: the preview's picks replace the plot's, nothing is decoded
    top_k.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    _wait(d).until(lambda d: len(_picks_shown(d)) == 3)
    preview = c.get(f"/v1/analyses/{first['id']}/preview", params={"top_k": 3}).json()
    assert _picks_shown(d) == [p["frame_index"] for p in preview["picks"]]
    dots = d.find_elements(By.CSS_SELECTOR, "#a-plot svg circle.pick-dot")
    assert sorted(int(x.get_attribute("data-frame-index")) for x in dots) == \
        sorted(p["frame_index"] for p in preview["picks"])
    assert _text(d, "r-summary").startswith("3 picks from") and "0 to decode" in _text(d, "r-summary")

    # a looser motion bar: the threshold line of the plot follows the slider
    motion = d.find_element(By.ID, "r-motion-max")
    motion.send_keys(*[Keys.ARROW_RIGHT] * 10)  # 1.0 -> 1.5 px
    _wait(d).until(lambda d: "1.5" in d.find_element(
        By.CSS_SELECTOR, "#a-plot svg text.threshold-label").text)
    expected = c.get(f"/v1/analyses/{first['id']}/preview",
                     params={"top_k": 3, "motion_max": 1.5}).json()
    _wait(d).until(lambda d: _picks_shown(d) == [p["frame_index"] for p in expected["picks"]])
    shot = artifacts / "console-repick-preview.png"
    assert d.save_screenshot(str(shot))
    print(f"\nscreenshot of a re-pick preview: {shot}")

    # Apply: a new analysis; its gallery shows the previewed picks, images served
    d.find_element(By.ID, "r-apply").click()
    _wait(d).until(lambda d: _text(d, "a-id") != f"id {first['id']}")
    _wait(d, 120).until(lambda d: _text(d, "a-status") in ("succeeded", "failed"))
    assert _text(d, "a-status") == "succeeded", _text(d, "a-error")
    new_id = _text(d, "a-id").split()[-1]
    view = c.get(f"/v1/analyses/{new_id}").json()
    assert view["parameters"]["repick_of"] == first["id"]
    assert view["parameters"]["top_k"] == 3 and view["parameters"]["motion_max"] == 1.5
    wanted = [p["frame_index"] for p in expected["picks"]]
    _wait(d).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#a-frames .frame-card img')]"
        ".filter(i => i.complete && i.naturalWidth === 480).length") == len(wanted))
    cards = d.find_elements(By.CSS_SELECTOR, "#a-frames .frame-card")
    assert [int(x.get_attribute("data-frame-index")) for x in cards] == wanted
    _wait(d).until(lambda d: d.find_element(By.ID, "a-repick").is_displayed())
    assert d.find_element(By.ID, "r-top-k").get_attribute("value") == "3"  # from the re-pick
    assert d.save_screenshot(str(artifacts / "console-repick-applied.png"))
    assert not _js_errors(d)
