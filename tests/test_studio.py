"""The web studio: its API (and what it refuses: other hosts, cross-origin body types, files outside the sample
folder, malformed requests), and the page driven in a real browser (Debian's chromium and chromium-driver, through
Selenium). The browser tests skip, saying why, where no browser is installed; `.ci/run` installs one, so CI runs
them."""
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import image_utilities as iu
import stylizer as S
import stylizer_studio
from conftest import gradient_image, save_as_run, styled_net

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A two-style run (strongly conditioned, untrained), a sample folder with a manifest, and the server on a free
    port of 127.0.0.1, serving from a thread."""
    d = tmp_path_factory.mktemp("studio")
    run = save_as_run(styled_net("channels"), "channels", d / "run")
    samples = d / "samples"
    lines = []
    for p in range(2):
        for t in (0.0, 0.5, 1.0):
            name = f"pair_{p:05d}_t{t:.3f}.png"
            iu.save_image(samples / name, gradient_image(32, 32, seed=p * 10 + int(t * 4)))
            lines.append(json.dumps({"file": name, "pair": p, "t": t, "styles": ["a", "b"], "weights": [1 - t, t]}))
    (samples / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (samples / "sample_fidelity.json").write_text(json.dumps({"summary": {"gram_error_t0": 0.5}}))
    server = stylizer_studio.make_server(run, "127.0.0.1", 0, samples=samples)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", run, d
    server.shutdown()
    server.server_close()


def call(url, data=None, headers=None):
    """GET (or POST `data`, as JSON unless `headers` name another type); (status, body)."""
    headers = {**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_api_serves_renders_and_survives_bad_requests(studio):
    base, run, d = studio
    status, body = call(f"{base}/api/info")
    info = json.loads(body)
    assert status == 200 and info["styles"] == ["style_0", "style_1"]
    assert bound_address_by_default(run) == "127.0.0.1"
    for bad in (b"", b"not an image at all", b"\x89PNG\r\n\x1a\n broken"):
        status, body = call(f"{base}/api/image", bad, {"X-Filename": "x.png", "Content-Type": "image/png"})
        assert status == 400 and "error" in json.loads(body)
    status, body = call(f"{base}/api/stylize", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["error"] == "the request is not JSON"
    status, body = call(f"{base}/api/stylize", json.dumps({"id": "nope", "weights": [1, 0]}).encode())
    assert status == 400
    status, body = call(f"{base}/api/sample/../../etc/passwd")
    assert status == 404
    # and it still serves: the samples view and a render
    status, body = call(f"{base}/api/samples")
    table = json.loads(body)
    assert status == 200 and len(table["rows"]) == 2 and [c["t"] for c in table["rows"][0]] == [0.0, 0.5, 1.0]
    assert table["rows"][1][1]["weights"] == [0.5, 0.5] and table["fidelity"] == {"gram_error_t0": 0.5}
    assert call(f"{base}{table['rows'][0][0]['url']}")[0] == 200
    got = json.loads(call(f"{base}/api/builtin/scene_0")[1])
    result = json.loads(call(f"{base}/api/stylize", json.dumps({"id": got["id"], "weights": [0.2, 0.8]}).encode())[1])
    status, png = call(f"{base}{result['url']}")
    assert status == 200 and png.startswith(b"\x89PNG")


def raw_request(base: str, head: str, body: bytes = b"", timeout: float = 30.0, encoding: str = "latin-1") \
        -> tuple[int | None, bytes]:
    """Send `head` (request line and headers, CRLF-joined, without the blank line) and `body` on a fresh socket,
    half-close it so the server never waits for more, and return (status or None if it closed silently, body)."""
    import socket

    host, port = base.removeprefix("http://").split(":")
    data = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:  # the server may answer (and close) before it has read all of a body it refused
            sock.sendall(head.encode(encoding) + b"\r\n\r\n" + body)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    if not data.startswith(b"HTTP/"):
        return None, data
    return int(data.split(b" ", 2)[1]), data.split(b"\r\n\r\n", 1)[-1]


def test_other_hosts_and_cross_origin_bodies_are_refused(studio):
    base, _, _ = studio
    port = base.rsplit(":", 1)[1]
    assert raw_request(base, f"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:{port}")[0] == 200
    assert raw_request(base, f"GET /api/info HTTP/1.1\r\nHost: localhost:{port}")[0] == 200
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1:1", ""):  # DNS rebinding names another host
        status, body = raw_request(base, f"GET /api/info HTTP/1.1\r\nHost: {host}")
        assert status == 403 and "Host" in json.loads(body)["error"]
    got = json.loads(call(f"{base}/api/builtin/scene_0")[1])
    request = json.dumps({"id": got["id"], "weights": [0.5, 0.5]}).encode()
    for kind in ("text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", ""):
        status, body = call(f"{base}/api/stylize", request, {"Content-Type": kind} if kind else {"Content-Type": ""})
        assert status == 415, kind
    status, body = call(f"{base}/api/image", b"\x89PNG", {"Content-Type": "text/plain"})
    assert status == 415
    for length in ("abc", "-1", "", "1e3"):
        head = (f"POST /api/stylize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json"
                + (f"\r\nContent-Length: {length}" if length else ""))
        status, body = raw_request(base, head, request)
        assert status == 400 and "Content-Length" in json.loads(body)["error"], length


def test_a_silent_client_is_dropped_after_the_read_timeout(studio, monkeypatch):
    import socket

    base, _, _ = studio
    monkeypatch.setattr(stylizer_studio.Handler, "timeout", 1.0)
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1")  # headers never finished
        t0 = time.perf_counter()
        assert sock.recv(1024) == b""  # the server closed it
        assert time.perf_counter() - t0 < 10
    assert call(f"{base}/api/info")[0] == 200


def test_sample_files_outside_the_folder_are_not_served(studio, tmp_path):
    base, run, d = studio
    secret = tmp_path / "secret.png"
    iu.save_image(secret, gradient_image(16, 16))
    outside = d / "outside_samples"
    outside.mkdir()
    (outside / "pair_00099_t0.000.png").symlink_to(secret)
    iu.save_image(outside / "ok.png", gradient_image(16, 16))
    lines = [{"file": "ok.png", "pair": 0, "t": 0.0, "weights": [1.0, 0.0]},
             {"file": "pair_00099_t0.000.png", "pair": 1, "t": 0.0, "weights": [1.0, 0.0]}]
    (outside / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    server = stylizer_studio.make_server(run, "127.0.0.1", 0, samples=outside)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        other = f"http://127.0.0.1:{server.server_address[1]}"
        for name in ("pair_00099_t0.000.png", "ok.png", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fhostname"):
            assert call(f"{other}/api/sample/{name}")[0] == 404, name  # the manifest is refused as a whole
        status, body = call(f"{other}/api/samples")
        assert status == 422 and "manifest.jsonl:2: names a file outside the sample folder" in json.loads(body)["error"]
    finally:
        server.shutdown()
        server.server_close()


def random_json(rng, depth=0):
    kind = rng.integers(0, 9 if depth < 3 else 6)
    return [lambda: None, lambda: bool(rng.integers(0, 2)), lambda: int(rng.integers(-10**6, 10**6)),
            lambda: float(rng.choice([0.5, -1.0, 1e308, 3.0, 11.0, 2.0])), lambda: "x" * int(rng.integers(0, 40)),
            lambda: "data:image/png;base64,AAAA", lambda: [random_json(rng, depth + 1) for _ in range(3)],
            lambda: {k: random_json(rng, depth + 1) for k in ("id", "weights", "n", "map", "full")},
            lambda: [0.5, 0.5]][kind]()


def test_fuzzed_requests_never_get_a_500_and_the_studio_still_renders(studio):
    """Over 200 random and malformed requests: bodies, headers, ids, numbers, nesting and sizes."""
    base, _, _ = studio
    port = base.rsplit(":", 1)[1]
    rng = np.random.default_rng(7)
    ids = [json.loads(call(f"{base}/api/builtin/scene_0")[1])["id"], "img999", "", "../x"]
    tiny = iu.encode_image(np.zeros((1, 1, 3)), ".png")
    paths = ["/api/stylize", "/api/sweep", "/api/image", "/api/info", "/api/samples", "/api/sample/x.png",
             "/api/result/999999.png", "/api/result/abc.png", "/api/source/img1.png", "/api/builtin/nope",
             "/studio/../stylizer.py", "/%2e%2e/%2e%2e/etc/passwd", "/nope", "/api/sample/..%2Fmanifest.jsonl",
             "/api/result/%C2%B2.png", "/api/result/" + "9" * 5000 + ".png", "/studio/%00", "/api/sample/%00"]
    bodies = [lambda: json.dumps(random_json(rng)).encode(), lambda: b"[" * 100000 + b"]" * 100000,
              lambda: json.dumps({"id": str(rng.choice(ids)), "weights": random_json(rng), "n": random_json(rng),
                                  "map": random_json(rng), "full": random_json(rng)}).encode(),
              lambda: b'{"id": "' + ids[0].encode() + b'", "weights": [1e999, 0]}', lambda: rng.bytes(300),
              lambda: tiny, lambda: b'{"n": 1e999, "id": "' + ids[0].encode() + b'"}',
              lambda: b'{"n": ' + b"7" * 5000 + b"}",  # a number too long for Python to read
              lambda: b'{"id": "' + ids[0].encode() + b'", "weights": [' + b"9" * 400 + b", 1]}"]
    kinds = ["application/json", "image/png", "application/octet-stream", "text/plain", "application/json; x=1",
             "", "image/"]
    statuses = []
    for i in range(240):
        method = "POST" if rng.uniform() < 0.7 else "GET"
        body = bodies[rng.integers(0, len(bodies))]() if method == "POST" else b""
        headers = [f"Host: {'127.0.0.1:' + port if rng.uniform() < 0.9 else 'elsewhere'}"]
        kind = kinds[rng.integers(0, len(kinds))]
        if kind:
            headers.append(f"Content-Type: {kind}")
        length = rng.choice([str(len(body)), str(len(body)), "-1", "abc", str(len(body) // 2), "99999999999", "\u00b2",
                             "9" * 5000])
        if method == "POST":
            headers.append(f"Content-Length: {length}")
        status, _ = raw_request(base, "\r\n".join([f"{method} {paths[rng.integers(0, len(paths))]} HTTP/1.1",
                                                     *headers]), body, encoding="utf-8")
        statuses.append(status)
        assert status is None or status < 500, (i, method, headers, body[:200])
    assert sum(s is not None and 400 <= s < 500 for s in statuses) > 150  # they were refused, not ignored
    for n in ("abc", [], 1e999, 1.5, True):
        status, body = call(f"{base}/api/sweep", json.dumps({"id": ids[0], "n": n}).encode()
                            if n != 1e999 else b'{"id": "' + ids[0].encode() + b'", "n": 1e999}')
        assert status == 400 and "2 to 11" in json.loads(body)["error"]
    for request in ({"id": []}, {}, {"id": ids[0], "weights": [0.5, 0.5], "map": 5}):
        status, body = call(f"{base}/api/stylize", json.dumps(request).encode())
        assert status == 400 and json.loads(body)["error"]
    status, body = call(f"{base}/api/image", tiny, {"Content-Type": "image/png", "X-Filename": "dot.png"})
    assert status == 400 and "too small" in json.loads(body)["error"]
    result = json.loads(call(f"{base}/api/stylize", json.dumps({"id": ids[0], "weights": [0.3, 0.7]}).encode())[1])
    status, png = call(f"{base}{result['url']}")
    assert status == 200 and iu.load_image(write_temp(png)).shape[2] == 3


def write_temp(data: bytes) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "result.png"
    path.write_bytes(data)
    return path


def bound_address_by_default(run) -> str:
    """The address the studio listens on when `serve` is given no --host: the server made from the CLI's own
    defaults, asked what it bound."""
    args = S.build_parser().parse_args(["serve", "--run-dir", str(run), "--port", "0"])
    server = stylizer_studio.make_server(args.run_dir, args.host, args.port)
    try:
        return server.server_address[0]
    finally:
        server.server_close()


# ---- in a real browser ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no browser: install Debian's chromium and chromium-driver (apt install chromium "
                    "chromium-driver; .ci/run does) to run the studio's browser tests")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements.txt)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1400, 1000)
    yield driver
    driver.quit()


def wait_for(driver, condition, seconds=90.0):
    end = time.time() + seconds
    while time.time() < end:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {condition}")


def test_browser_slider_renders_what_stylize_writes(studio, browser, tmp_path):
    base, run, _ = studio
    photo = tmp_path / "photo.png"
    iu.save_image(photo, gradient_image(512, 512, seed=11))
    browser.get(base + "/")
    wait_for(browser, "return document.body.dataset.ready === '1'")
    browser.find_element("id", "upload").send_keys(str(photo))
    wait_for(browser, "const r = document.getElementById('result'); return r.dataset.weights && r.naturalWidth > 0")
    first = browser.find_element("id", "result").get_attribute("src")
    t0 = time.perf_counter()
    browser.execute_script("const s = document.getElementById('strength'); s.value = '0.3';"
                           "s.dispatchEvent(new Event('input'));")
    wait_for(browser, "const r = document.getElementById('result'); const w = JSON.parse(r.dataset.weights);"
                      "return Math.abs(w[1] - 0.3) < 1e-6 && r.complete && r.naturalWidth > 0")
    seconds = time.perf_counter() - t0
    print(f"slider move to rendered result: {seconds:.2f} s for a 512x512 image (logged, not asserted)")
    src = browser.find_element("id", "result").get_attribute("src")
    assert src != first
    shown = iu.load_image(write(tmp_path / "shown.png", call(src)[1]))
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--strength", "0.3", "--out",
                   str(tmp_path / "cli")]) == 0
    expected = iu.load_image(tmp_path / "cli" / "photo.png")
    assert shown.shape == expected.shape
    assert np.abs(shown - expected).mean() <= 1 / 255
    before = iu.load_image(write(tmp_path / "first.png", call(first)[1]))
    assert np.abs(before - shown).mean() > 0.01  # the slider changed the picture

    # Paint a map: fill it with the slider's strength (0.3), then one dab of strength 1 on the left half. What the
    # page shows is what `stylize --strength-map` makes of the map the page painted.
    browser.execute_script("document.getElementById('use-map').click();"
                           "document.getElementById('clear-map').click();")
    wait_for(browser, "return document.getElementById('result').dataset.map === '1'")
    filled = browser.find_element("id", "result").get_attribute("src")
    browser.execute_script("const b = document.getElementById('brush-value'); b.value = '1';"
                           "document.getElementById('brush-size').value = '160';")
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = browser.find_element("id", "map-canvas")
    ActionChains(browser).move_to_element_with_offset(canvas, -canvas.size["width"] // 4, 0).click().perform()
    src = wait_for(browser, f"const r = document.getElementById('result'); return r.src !== '{filled}' && "
                            "r.complete && r.naturalWidth > 0 && r.dataset.map === '1' && r.src")
    painted = browser.execute_script("return document.getElementById('map-canvas').toDataURL('image/png')")
    import base64

    map_png = write(tmp_path / "painted.png", base64.b64decode(painted.split(",", 1)[1]))
    levels = np.round(iu.load_image(map_png).mean(-1) * 255)
    assert (levels == 255).mean() > 0.02 and (levels == 77).mean() > 0.5  # the dab (1.0) and the fill (0.3)
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--strength-map", str(map_png), "--out",
                   str(tmp_path / "mapped")]) == 0
    shown = iu.load_image(write(tmp_path / "shown_map.png", call(src)[1]))
    expected = iu.load_image(tmp_path / "mapped" / "photo.png")
    assert shown.shape == expected.shape and np.abs(shown - expected).mean() <= 1.5 / 255
    browser.save_screenshot(str(tmp_path / "studio.png"))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_browser_shows_a_bad_upload_and_keeps_serving(studio, browser, tmp_path):
    base, _, _ = studio
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    browser.get(base + "/")
    wait_for(browser, "return document.body.dataset.ready === '1'")
    browser.find_element("id", "upload").send_keys(str(bad))
    message = wait_for(browser, "return document.getElementById('message').textContent")
    assert "notes.png" in message and "not a recognised image format" in message
    assert call(f"{base}/api/info")[0] == 200  # still serving
    good = tmp_path / "good.png"
    iu.save_image(good, gradient_image(64, 64, seed=2))
    browser.find_element("id", "upload").send_keys(str(good))
    wait_for(browser, "const r = document.getElementById('result'); return r.naturalWidth === 64 && "
                      "document.getElementById('message').textContent === ''")
    # The samples view lists the pairs with their weights
    browser.find_element("id", "tab-samples").click()
    cells = wait_for(browser, "return document.querySelectorAll('#samples-table td').length")
    assert cells == 6
    assert "[0.50, 0.50]" in browser.find_element("id", "samples-table").text


def test_browser_eight_styles_a_slider_each_renders_what_stylize_writes(browser, tmp_path):
    """An eight-style net: the page shows one slider per style, named; the weights the sliders set are what the
    studio renders, the same picture as `stylize --style NAME` for a style alone."""
    run = save_as_run(styled_net("cin", num_styles=8), "cin", tmp_path / "run", num_styles=8)
    server = stylizer_studio.make_server(run, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        photo = tmp_path / "photo.png"
        iu.save_image(photo, gradient_image(96, 128, seed=5))
        browser.get(base + "/")
        wait_for(browser, "return document.body.dataset.ready === '1'")
        labels = browser.execute_script("return [...document.querySelectorAll('#sliders label span')]"
                                        ".map((s) => s.textContent)")
        assert labels == [f"style_{k}" for k in range(8)]
        browser.find_element("id", "upload").send_keys(str(photo))
        wait_for(browser, "const r = document.getElementById('result'); return r.dataset.weights && r.complete")
        first = browser.find_element("id", "result").get_attribute("src")
        browser.execute_script("for (let k = 0; k < 8; k++) { const s = document.getElementById(`w${k}`);"
                               "s.value = k === 5 ? '1' : '0'; s.dispatchEvent(new Event('input')); }")
        src = wait_for(browser, "const r = document.getElementById('result'); const w = JSON.parse("
                                f"r.dataset.weights); return r.src !== '{first}' && w[5] === 1 && "
                                "w.reduce((a, b) => a + b, 0) === 1 && r.complete && r.naturalWidth > 0 && r.src")
        shown = iu.load_image(write(tmp_path / "shown.png", call(src)[1]))
        assert S.main(["stylize", "--run-dir", str(run), str(photo), "--style", "style_5", "--out",
                       str(tmp_path / "cli")]) == 0
        expected = iu.load_image(tmp_path / "cli" / "photo.png")
        assert shown.shape == expected.shape and np.abs(shown - expected).mean() <= 1 / 255
        first_style = iu.load_image(write(tmp_path / "first.png", call(first)[1]))
        assert np.abs(first_style - shown).mean() > 0.01  # style_0 alone (the page's start) is another picture
    finally:
        server.shutdown()
        server.server_close()
