"""The web console and the result routes it reads (scores, golden frame images).

Over real HTTP on loopback (the application ``framesift serve`` runs, in the session's private
Ray), then in a real browser: Debian's Chromium driven by Selenium through chromedriver. The
browser tests skip, saying why, when Chromium, chromedriver or selenium are missing
(``make test`` installs them).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serve_fixtures import SECRET_KEY, api, jpeg_bytes, png_bytes, upload_video  # noqa: E402,F401
from serve_fixtures import wait_for_status  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KEY = {"Authorization": f"Bearer {SECRET_KEY}"}


def _raw_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of dots or escapes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def finished(api, videos):
    """Two succeeded analyses of different scans and one failed analysis."""
    c = api["client"]
    first, _ = videos.get(seconds=3, size=(480, 270), seed=51)
    second, _ = videos.get(seconds=3, size=(480, 270), seed=52)
    ids = {"a": upload_video(c, first, "console-a").json()["id"],
           "b": upload_video(c, second, "console-b", top_k=3).json()["id"]}
    bad = c.post("/v1/analyses", files={"video": ("bad.mp4", b"not a video at all" * 50,
                                                  "video/mp4")}, data={"scan_id": "console-bad"})
    ids["bad"] = bad.json()["id"]
    views = {name: wait_for_status(c, aid) for name, aid in ids.items()}
    assert views["a"]["status"] == views["b"]["status"] == "succeeded", views
    assert views["bad"]["status"] == "failed", views["bad"]
    return views


# ---- scores -----------------------------------------------------------------------------------

def test_scores_route_returns_every_frame_the_threshold_and_the_picks(api, finished):
    view = finished["a"]
    r = api["client"].get(f"/v1/analyses/{view['id']}/scores")
    assert r.status_code == 200, r.text
    body = r.json()
    table = pq.read_table(api["out"] / "console-a" / "scores.parquet").to_pydict()
    assert body["analysis_id"] == view["id"] and body["scan_id"] == "console-a"
    assert body["frame_count"] == body["returned"] == len(table["frame_index"]) == 90
    assert body["stride"] == 1
    assert body["frames"]["frame_index"] == table["frame_index"]
    assert body["frames"]["sharpness"] == pytest.approx(table["sharpness"])
    assert body["frames"]["motion"] == pytest.approx(table["motion"])
    assert body["frames"]["still"] == table["still"]
    assert body["motion_max"] == view["parameters"]["motion_max"] == 1.0
    picks = view["result"]["golden_frames"]
    assert [(p["rank"], p["frame_index"]) for p in body["picks"]] == \
        [(g["rank"], g["frame_index"]) for g in picks]
    picked = [i for i, p in zip(body["frames"]["frame_index"], body["frames"]["picked"]) if p]
    assert sorted(picked) == sorted(g["frame_index"] for g in picks)


def test_scores_are_thinned_for_long_videos_and_keep_every_pick(tmp_path):
    from serve.result_routes import read_scores

    n = 1000
    picked = [i in (7, 501, 998) for i in range(n)]
    pq.write_table(pa.table({"frame_index": list(range(n)), "pts": list(range(n)),
                             "time_s": [i / 30 for i in range(n)],
                             "sharpness": [float("nan") if i == 0 else float(i) for i in range(n)],
                             "motion": [0.5] * n, "still": [True] * n, "picked": picked}),
                   tmp_path / "scores.parquet")
    data = read_scores(tmp_path, max_points=100)
    assert data["frame_count"] == n and data["stride"] == 10
    kept = data["frames"]["frame_index"]
    assert {7, 501, 998} <= set(kept) and len(kept) == data["returned"] == 100 + 3
    assert all(i % 10 == 0 or i in (7, 501, 998) for i in kept)
    assert data["frames"]["sharpness"][0] is None  # NaN is not JSON: null


# ---- golden frame images ----------------------------------------------------------------------

def test_frame_route_serves_each_golden_frame_of_the_analysis(api, finished):
    c = api["client"]
    view = finished["a"]
    picks = view["result"]["golden_frames"]
    assert len(picks) == 5
    for g in picks:
        r = c.get(f"/v1/analyses/{view['id']}/frames/{g['frame_index']}")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.content == (api["out"] / g["key"]).read_bytes()
        img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape[:2] == (g["height"], g["width"]) == (270, 480)


def test_result_routes_404_for_unknown_ids_and_frames_not_in_the_result(api, finished):
    c = api["client"]
    a, b = finished["a"], finished["b"]
    for path in ("/v1/analyses/0123456789abcdef/scores", "/v1/analyses/nope/frames/3"):
        r = c.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
    picks_a = {g["frame_index"] for g in a["result"]["golden_frames"]}
    picks_b = {g["frame_index"] for g in b["result"]["golden_frames"]}
    not_picked = next(i for i in range(90) if i not in picks_a)
    only_a = sorted(picks_a - picks_b)
    assert only_a, (picks_a, picks_b)
    for path in (f"/v1/analyses/{a['id']}/frames/{not_picked}",  # a frame that was not picked
                 f"/v1/analyses/{b['id']}/frames/{only_a[0]}",  # a's pick through b's id
                 f"/v1/analyses/{a['id']}/frames/99999999",
                 f"/v1/analyses/{a['id']}/frames/abc"):
        r = c.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "frame_not_found", path
    for path in (f"/v1/analyses/{finished['bad']['id']}/scores",
                 f"/v1/analyses/{finished['bad']['id']}/frames/0"):
        r = c.get(path)  # a failed analysis stored nothing
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_result", path


@pytest.mark.parametrize("tail", [
    "..%2fmanifest.json", "..%2f..%2fconsole-b%2fscores.parquet", "%2e%2e", "%2e%2e%2f%2e%2e",
    "..%5cmanifest.json", "0.jpg", "-1", "1%00", "%2b1", "1e3", "0x1", "manifest.json", "scores.parquet",
    "../manifest.json", "../../../../etc/passwd", "0/../../manifest.json",
])
def test_frame_route_refuses_traversal(api, finished, tail):
    view = finished["a"]
    status, body = _raw_get(api["port"], f"/v1/analyses/{view['id']}/frames/{tail}")
    assert status == 404, (tail, status, body[:200])
    assert json.loads(body)["error"]["code"] in ("frame_not_found", "not_found")
    status, body = _raw_get(api["port"], f"/v1/analyses/{view['id']}/scores/{tail}")
    assert status == 404, (tail, status)


def test_result_routes_are_409_while_an_analysis_runs(api, videos):
    c = api["client"]
    path, _ = videos.get(seconds=3, size=(480, 270), seed=53)
    aid = upload_video(c, path, "console-busy").json()["id"]
    try:
        for route in ("scores", "frames/1"):
            r = c.get(f"/v1/analyses/{aid}/{route}")
            assert r.status_code == 409 and r.json()["error"]["code"] == "analysis_not_finished"
    finally:
        c.delete(f"/v1/analyses/{aid}")
    r = c.get(f"/v1/analyses/{aid}/scores")
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_result"


def test_result_routes_need_the_key_when_the_server_has_keys(api, finished):
    c = api["client"]
    a = finished["a"]
    frame = a["result"]["golden_frames"][0]["frame_index"]
    for path in (f"/secure/v1/analyses/{a['id']}/scores",
                 f"/secure/v1/analyses/{a['id']}/frames/{frame}"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET_KEY}):
            r = c.get(path, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        # the keyed application has its own analyses: this id is not one of them
        r = c.get(path, headers=KEY)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_a_result_without_a_local_copy_is_404_not_stored_here(api, finished):
    """A node without the scan's folder (a cluster without a shared disk, store=local)."""
    c = api["client"]
    a = finished["a"]
    frame = a["result"]["golden_frames"][0]["frame_index"]
    folder = api["out"] / "console-a"
    folder.rename(folder.with_name("console-a.away"))
    try:
        r = c.get(f"/v1/analyses/{a['id']}/frames/{frame}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "frame_not_stored_here"
        r = c.get(f"/v1/analyses/{a['id']}/scores")
        assert r.status_code == 404 and r.json()["error"]["code"] == "scores_not_stored_here"
    finally:
        folder.with_name("console-a.away").rename(folder)
    assert c.get(f"/v1/analyses/{a['id']}/frames/{frame}").status_code == 200


def test_frames_of_a_superseded_result_are_410(api, finished, videos):
    """A later analysis of the same scan replaces its folder: the old id must not serve it."""
    c = api["client"]
    b = finished["b"]
    path, _ = videos.get(seconds=3, size=(480, 270), seed=52)
    again = wait_for_status(c, upload_video(c, path, "console-b", top_k=2).json()["id"])
    assert again["status"] == "succeeded"
    frame = b["result"]["golden_frames"][0]["frame_index"]
    for route in ("scores", f"frames/{frame}"):
        r = c.get(f"/v1/analyses/{b['id']}/{route}")
        assert r.status_code == 410 and r.json()["error"]["code"] == "result_superseded"
    newest = again["result"]["golden_frames"][0]["frame_index"]
    assert c.get(f"/v1/analyses/{again['id']}/frames/{newest}").status_code == 200


def test_supabase_results_redirect_to_a_short_lived_signed_url(monkeypatch, tmp_path):
    """store=supabase and no local copy on this node: a signed Storage URL of that key only."""
    from jobs.settings import Settings
    from jobs.stores.supabase import SupabaseStore
    from serve.errors import ApiError
    from serve.result_routes import SIGNED_REDIRECT_MAX_S, signed_frame_url
    from manifest_fixtures import golden_frame, sample_manifest
    from supabase_standin import FakeSupabase

    fake = FakeSupabase("sb-console-test-key").start()
    try:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "sb-console-test-key")
        store = SupabaseStore.from_settings(Settings(out_dir=str(tmp_path), store="supabase",
                                                     supabase_retries=1))
        with store.open("sb-scan") as session:
            key, _ = session.put_image(12, b"\xff\xd8jpeg", "jpg", "image/jpeg")
            session.put_scores(pa.table({"frame_index": [12]}))
            session.commit(sample_manifest("sb-scan", [golden_frame(12, 1, "sb-scan")]))
        url = signed_frame_url(store.client, key, 3600)
        assert url.startswith(f"{fake.url}/storage/v1/object/sign/golden-frames/sb-scan/12.jpg?")
        (sign,) = fake.requests_to("POST", "/storage/v1/object/sign/golden-frames")
        assert json.loads(sign.body) == {"paths": [key], "expiresIn": str(SIGNED_REDIRECT_MAX_S)}
        with pytest.raises(ApiError) as missing:  # never uploaded: not signed
            signed_frame_url(store.client, "sb-scan/40.jpg", 60)
        assert (missing.value.status, missing.value.code) == (404, "frame_not_stored")
    finally:
        fake.stop()


# ---- the page ---------------------------------------------------------------------------------

def test_page_and_its_files_are_served_with_security_headers(api):
    c = api["client"]
    r = c.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert '<base href="/">' in r.text
    assert '<script src="console/console.js" defer></script>' in r.text
    assert r.text.count("<script") == 1 and "style=" not in r.text  # nothing inline
    js = c.get("/console/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert js.headers["x-content-type-options"] == "nosniff"
    assert c.get("/console/console.css").headers["content-type"].startswith("text/css")
    for path in ("/console/index.html", "/console/nope.js", "/console/..%2fconsole.py",
                 "/console/../app.py"):
        status, body = _raw_get(api["port"], path)
        assert status == 404 and b"APIRouter" not in body, path


def test_with_supabase_the_page_may_load_frames_from_its_origin_only():
    from jobs.settings import Settings
    from serve.console import security_headers, store_origin

    env = {"SUPABASE_URL": "https://user:pw@abc.supabase.co/"}
    assert store_origin(Settings(store="local"), env) is None
    origin = store_origin(Settings(store="supabase"), env)
    assert origin == "https://abc.supabase.co"
    csp = security_headers(origin)["Content-Security-Policy"]
    assert "img-src 'self' blob: data: https://abc.supabase.co;" in csp
    assert "connect-src 'self' https://abc.supabase.co;" in csp
    assert "script-src 'self';" in csp  # scripts never come from there
    assert store_origin(Settings(store="supabase"), {"SUPABASE_URL": "javascript:x"}) is None


def test_page_under_a_route_prefix_resolves_the_api_there(api):
    c = api["client"]
    r = c.get("/secure")  # no key needed for the page itself: it holds no data
    assert r.status_code in (307, 308) and r.headers["location"].endswith("/secure/")
    r = c.get("/secure/")
    assert r.status_code == 200 and '<base href="/secure/">' in r.text
    assert c.get("/secure/console/console.js").status_code == 200


def test_openapi_documents_the_result_routes(api):
    spec = api["client"].get("/openapi.json").json()
    scores = spec["paths"]["/v1/analyses/{analysis_id}/scores"]["get"]
    ref = scores["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/AnalysisScores")
    frames = spec["paths"]["/v1/analyses/{analysis_id}/frames/{frame_index}"]["get"]
    assert {"image/jpeg", "image/png"} <= set(frames["responses"]["200"]["content"])
    assert {"404", "409", "410"} <= set(frames["responses"])
    assert "/" not in spec["paths"]  # the page is not an API route


# ---- in a real browser ------------------------------------------------------------------------

BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1900")

# Records, as the page changes, how many frame cards there are and the progress value, each with
# the status shown at that moment: proves cards and progress come from events, not from `done`.
WATCH_JS = """
window.__seen = {cards: [], progress: []};
const badge = () => document.getElementById("a-status").textContent;
new MutationObserver(() => window.__seen.cards.push(
    [document.querySelectorAll("#a-frames .frame-card").length, badge()]))
  .observe(document.getElementById("a-frames"), {childList: true});
new MutationObserver(() => window.__seen.progress.push(
    [Number(document.getElementById("a-progress").getAttribute("aria-valuenow")), badge()]))
  .observe(document.getElementById("a-progress"), {attributes: true,
                                                    attributeFilter: ["aria-valuenow"]});
"""


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the dev extras: pip install -e '.[dev]')"
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        return (f"no {' and no '.join(missing)} on PATH: install Debian's chromium and "
                "chromium-driver (`make test` does, as root)")
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through chromedriver (both from Debian), with a fresh profile."""
    reason = _browser_missing()
    if reason:
        if os.environ.get("FRAMESIFT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"FRAMESIFT_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where screenshots go: $FRAMESIFT_TEST_ARTIFACTS, else tests/artifacts/ (git-ignored)."""
    root = Path(os.environ.get("FRAMESIFT_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _wait(driver, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1)


def _text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def _js_errors(driver, allowed_status: int | None = None) -> list[str]:
    """Console errors of the page (CSP violations, uncaught exceptions, failed loads)."""
    errors = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        if allowed_status and f"status of {allowed_status}" in entry["message"]:
            continue  # the wrong-key checks provoke these on purpose
        errors.append(entry["message"])
    return errors


def _open_console(driver, url: str) -> None:
    driver.get(url)
    _wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_browser_runs_an_analysis_and_shows_progress_frames_and_the_plot(browser, api, videos,
                                                                         artifacts):
    from selenium.webdriver.common.by import By

    from jobs.stores.base import scan_id_from_path

    d, c = browser, api["client"]
    video, _ = videos.get(seconds=3, size=(480, 270), seed=55)
    _open_console(d, f"http://127.0.0.1:{api['port']}/")
    d.execute_script(WATCH_JS)
    d.find_element(By.ID, "video-file").send_keys(str(video))
    # the page proposes the scan id the CLI would derive from the file name
    assert d.find_element(By.ID, "scan-id").get_attribute("value") == scan_id_from_path(video)
    d.find_element(By.ID, "scan-id").clear()
    d.find_element(By.ID, "scan-id").send_keys("browser-scan")
    d.find_element(By.ID, "top-k").send_keys("5")
    d.find_element(By.ID, "start-button").click()
    _wait(d, 180).until(lambda d: _text(d, "a-status") in ("succeeded", "failed", "cancelled"))
    assert _text(d, "a-status") == "succeeded", _text(d, "a-error")
    analysis_id = _text(d, "a-id").split()[-1]
    view = c.get(f"/v1/analyses/{analysis_id}").json()
    assert view["scan_id"] == "browser-scan" and view["parameters"]["top_k"] == 5

    # progress: 100 %, and the bar moved while the analysis was still running (progress events)
    bar = d.find_element(By.ID, "a-progress")
    assert bar.get_attribute("aria-valuenow") == "100"
    assert _text(d, "a-progress-text") == "90 / 90 frames · 100.0%"
    seen = d.execute_script("return window.__seen")
    assert [100, "running"] in seen["progress"], seen["progress"]
    assert len(d.find_elements(By.CSS_SELECTOR, "#a-chunks .chunk")) == \
        len(view["result"]["plan"]["chunks"])

    # five golden frames, shown as they were picked, in rank order, with their metrics and image
    picks = view["result"]["golden_frames"]
    assert len(picks) == 5
    assert any(n >= 1 and status == "running" for n, status in seen["cards"]), seen["cards"]
    _wait(d).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#a-frames .frame-card img')]"
        ".filter(i => i.complete && i.naturalWidth === 480).length") == 5)
    cards = d.find_elements(By.CSS_SELECTOR, "#a-frames .frame-card")
    assert [int(card.get_attribute("data-frame-index")) for card in cards] == \
        [g["frame_index"] for g in picks]
    for card, g in zip(cards, picks):
        metric = {m.get_attribute("data-metric"): m.text
                  for m in card.find_elements(By.CSS_SELECTOR, "dd[data-metric]")}
        assert metric["sharpness"] == f"{g['sharpness']:.1f}"
        assert metric["motion"] == f"{g['motion']:.3f} px"
        assert metric["glint"].startswith(f"{100 * g['glint']['share']:.2f}% · ")
        assert f"#{g['rank']} · frame {g['frame_index']} · {g['time_s']:.2f} s" in card.text

    # the plot: both curves over every frame, the stillness threshold, the five picks
    _wait(d).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#a-plot svg polyline.motion"))
    plot = d.find_element(By.CSS_SELECTOR, "#a-plot svg.scores-plot")
    for series in ("sharpness", "motion"):
        line = plot.find_element(By.CSS_SELECTOR, f"polyline.{series}")
        assert line.get_attribute("data-points") == "90"
    assert len(plot.find_elements(By.CSS_SELECTOR, "line.threshold")) == 1
    assert len(plot.find_elements(By.CSS_SELECTOR, "circle.pick-dot")) == 5
    assert plot.size["width"] > 500 and plot.size["height"] > 150
    _wait(d).until(lambda d: d.find_elements(
        By.CSS_SELECTOR, f"#recent-table tr[data-id='{analysis_id}'][data-status='succeeded']"))
    shot = artifacts / "console-analysis.png"
    assert d.save_screenshot(str(shot))
    print(f"\nscreenshot of the finished analysis: {shot}")

    # a click opens the full image with the plot, this pick highlighted
    cards[0].click()
    _wait(d).until(lambda d: d.execute_script("return document.getElementById('frame-dialog').open"))
    _wait(d).until(lambda d: d.execute_script(
        "const i = document.getElementById('d-image'); return i.complete && i.naturalWidth") == 480)
    current = _wait(d).until(lambda d: d.find_elements(
        By.CSS_SELECTOR, "#d-plot svg circle.pick-dot.current"))
    assert int(current[0].get_attribute("data-frame-index")) == picks[0]["frame_index"]
    assert _text(d, "d-title").startswith(f"#1 · frame {picks[0]['frame_index']}")
    dialog_shot = artifacts / "console-frame-detail.png"
    assert d.save_screenshot(str(dialog_shot))
    print(f"screenshot of a golden frame's detail: {dialog_shot}")
    d.find_element(By.ID, "d-close").click()
    assert not _js_errors(d)


def test_browser_shows_the_queue_position_and_cancels_a_running_analysis(browser, api, videos):
    from selenium.webdriver.common.by import By

    d, c = browser, api["client"]
    video, _ = videos.get(seconds=12, size=(960, 540), seed=56)
    busy = upload_video(c, video, "browser-busy").json()["id"]
    try:
        wait_for_status(c, busy, statuses=("running",))
        _open_console(d, f"http://127.0.0.1:{api['port']}/")
        d.find_element(By.ID, "video-file").send_keys(str(video))
        d.find_element(By.ID, "scan-id").clear()
        d.find_element(By.ID, "scan-id").send_keys("browser-cancel")
        d.find_element(By.ID, "start-button").click()
        _wait(d).until(lambda d: _text(d, "a-queue") == "· queue position 1")
        assert _text(d, "a-status") == "queued"
    finally:
        c.delete(f"/v1/analyses/{busy}")  # frees the slot: the browser's analysis starts
    _wait(d, 120).until(lambda d: _text(d, "a-status") == "running")
    d.find_element(By.ID, "a-cancel").click()
    _wait(d).until(lambda d: _text(d, "a-status") == "cancelled")
    assert _text(d, "a-error") == "cancelled by the client; nothing was stored (cancelled)"
    analysis_id = _text(d, "a-id").split()[-1]
    view = c.get(f"/v1/analyses/{analysis_id}").json()
    assert view["status"] == "cancelled" and view["error"]["code"] == "cancelled"
    assert not (api["out"] / "browser-cancel").exists()
    _wait(d).until(lambda d: d.find_elements(
        By.CSS_SELECTOR, f"#recent-table tr[data-id='{analysis_id}'][data-status='cancelled']"))
    assert not _js_errors(d)


def test_browser_starts_an_analysis_from_a_url_and_shows_why_it_failed(browser, api):
    from selenium.webdriver.common.by import By

    d = browser
    _open_console(d, f"http://127.0.0.1:{api['port']}/")
    d.find_element(By.CSS_SELECTOR, "input[name=source][value=url]").click()
    assert not d.find_element(By.ID, "video-file").is_displayed()
    not_a_video = f"http://127.0.0.1:{api['port']}/console/console.css"  # allow-listed host
    d.find_element(By.ID, "video-url").send_keys(not_a_video)
    d.find_element(By.ID, "scan-id").send_keys("browser-url")
    d.find_element(By.ID, "start-button").click()
    _wait(d, 120).until(lambda d: _text(d, "a-status") == "failed")
    assert _text(d, "a-error").endswith("(not_video_content)")
    assert _text(d, "a-frames") == "no golden frames: the analysis failed"
    assert not _js_errors(d)


def test_browser_asks_for_the_key_refuses_a_wrong_one_and_analyses_an_image_batch(
        browser, api, tmp_path):
    from selenium.webdriver.common.by import By

    d = browser
    _open_console(d, f"http://127.0.0.1:{api['port']}/secure")
    assert d.current_url.endswith("/secure/")
    auth = d.find_element(By.ID, "auth")
    _wait(d).until(lambda d: auth.is_displayed())
    assert "needs an API key" in _text(d, "auth-message")

    def enter_key(key: str, remember: bool = False) -> None:
        d.find_element(By.ID, "auth-key").send_keys(key)
        if remember != d.find_element(By.ID, "auth-remember").is_selected():
            d.find_element(By.ID, "auth-remember").click()
        d.find_element(By.CSS_SELECTOR, "#auth-form button[type=submit]").click()

    enter_key("not-the-key")
    _wait(d).until(lambda d: "refused this API key" in _text(d, "auth-message"))
    assert auth.is_displayed() and _text(d, "key-state") == "API key needed"
    enter_key(SECRET_KEY)
    _wait(d).until(lambda d: not auth.is_displayed())
    assert _text(d, "key-state") == "API key set (this tab only)"
    assert d.execute_script("return window.localStorage.length") == 0
    assert SECRET_KEY not in d.current_url

    # an image batch through the keyed API: one row per image, the bad one's error in place
    images = {"a.jpg": jpeg_bytes(320, 240, 1), "b.png": png_bytes(200, 150, 2),
              "notes.jpg": b"this is text, not a picture", "c.jpg": jpeg_bytes(640, 480, 3)}
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
    d.find_element(By.ID, "image-files").send_keys("\n".join(str(tmp_path / n) for n in images))
    d.find_element(By.ID, "images-button").click()
    _wait(d, 120).until(lambda d: _text(d, "b-summary").startswith("· done in"))
    rows = d.find_elements(By.CSS_SELECTOR, "#b-list .image-row")
    assert [r.find_element(By.CSS_SELECTOR, ".name").text for r in rows] == list(images)
    outcome = {r.find_element(By.CSS_SELECTOR, ".name").text: (r.get_attribute("class"),
               r.find_element(By.CSS_SELECTOR, ".outcome").text) for r in rows}
    for name, size in (("a.jpg", "320×240 JPEG"), ("b.png", "200×150 PNG"),
                       ("c.jpg", "640×480 JPEG")):
        assert outcome[name][0] == "image-row ok" and outcome[name][1].startswith(size), outcome
        assert "sharpness" in outcome[name][1]
    assert outcome["notes.jpg"][0] == "image-row error"
    assert outcome["notes.jpg"][1].endswith("(undecodable_image)")
    assert _text(d, "b-counts") == "4 / 4 · analysed 3 · failed 1"
    assert d.find_element(By.ID, "b-progress").get_attribute("aria-valuenow") == "100"

    # the key lives in the tab's memory only, unless "remember" is ticked
    _open_console(d, f"http://127.0.0.1:{api['port']}/secure/")
    _wait(d).until(lambda d: d.find_element(By.ID, "auth").is_displayed())
    enter_key(SECRET_KEY, remember=True)
    _wait(d).until(lambda d: not d.find_element(By.ID, "auth").is_displayed())
    _open_console(d, f"http://127.0.0.1:{api['port']}/secure/")
    _wait(d).until(lambda d: _text(d, "key-state") == "API key set (remembered)")
    _wait(d).until(lambda d: d.find_element(By.ID, "recent-empty").is_displayed())  # listed
    assert not d.find_element(By.ID, "auth").is_displayed()
    d.find_element(By.ID, "key-change").click()
    d.find_element(By.ID, "auth-forget").click()
    assert d.execute_script("return window.localStorage.getItem('framesift.apiKey')") is None
    assert not _js_errors(d, allowed_status=401)


# ---- re-pick: sliders -> preview -> Apply ------------------------------------------------------

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
