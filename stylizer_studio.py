"""A local web studio for a trained stylizer run: `python stylizer.py serve --run-dir RUN [--port 7860]`.

One page (studio/index.html, plain HTML and JavaScript served from this folder: nothing is fetched from the
internet) over a small JSON API on Python's own threading HTTP server:

    GET  /                      the page (and /studio/<file> for its assets)
    GET  /api/info              style names, conditioning, built-in content names, limits, the sample folder
    POST /api/image             body: image file bytes -> {"id", "width", "height"} (or {"error"} and status 400)
    GET  /api/builtin/<name>    -> {"id", ...} for a built-in content image
    POST /api/stylize           {"id", "weights": [...], "map": PNG data URL or null, "full": bool}
                                -> {"url": "/api/result/<n>.png", "seconds", "width", "height"}
    POST /api/sweep             {"id", "n"} -> {"url", ...}: the strip of n strengths from 0 to 1
    GET  /api/result/<n>.png    a rendered result (the last RESULTS_KEPT are kept)
    GET  /api/source/<id>.png   an uploaded image at preview size (what the strength map is painted over)
    GET  /api/samples           the sample folder: pairs x t with weights, and sample_fidelity.json if present
    GET  /api/sample/<file>     one sample image (only names listed in the folder's manifest)

Previews are rendered at most PREVIEW_SIDE pixels on the longer side; `full` renders at the upload's own size, in
tiles above TILE_ABOVE pixels. The network is shared, so renders are serialised by a lock. A bad request (not an
image, too many pixels, malformed JSON) gets status 400 and a one-line {"error"}; the server keeps serving.
"""
from __future__ import annotations

import base64
import collections
import itertools
import json
import mimetypes
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

import image_utilities as iu
from run_config import RunError
from stylizer_apply import check_size

ROOT = Path(__file__).resolve().parent
PAGE_DIR = ROOT / "studio"
PREVIEW_SIDE = 512
TILE_ABOVE, TILE = 1536, 512
RESULTS_KEPT, IMAGES_KEPT = 32, 8


class BadRequest(ValueError):
    """A request the studio cannot serve; its message goes back to the page with `status` (a 4xx)."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class NotFound(BadRequest):
    def __init__(self, message: str):
        super().__init__(message, HTTPStatus.NOT_FOUND)


class Studio:
    """The state behind the page: the run's network, uploaded images and rendered results (bounded caches)."""

    def __init__(self, run_dir, samples=None, max_pixels: int = 16_000_000):
        import builtin_images
        import stylizer_run as R

        self.run_dir = Path(run_dir)
        self.net, self.config, self.names = R.load_stylizer(self.run_dir)
        self.samples = Path(samples) if samples else (Path(self.config.samples) if self.config.samples else None)
        self.max_pixels = max_pixels
        self.builtin = builtin_images.default_content(PREVIEW_SIDE)
        self.images = collections.OrderedDict()   # id -> float image, the newest last
        self.results = collections.OrderedDict()  # n -> PNG bytes
        self.counter = itertools.count(1)
        self.lock = threading.Lock()              # one render at a time: the network is shared
        self.tmp = Path(tempfile.mkdtemp(prefix="studio-"))
        self.forward = compiled_forward(self.net, len(self.names))

    # ---- inputs -----------------------------------------------------------------------------------------------------
    def add_image(self, image: np.ndarray) -> dict:
        key = f"img{next(self.counter)}"
        self.images[key] = image
        while len(self.images) > IMAGES_KEPT:
            self.images.popitem(last=False)
        return {"id": key, "width": int(image.shape[1]), "height": int(image.shape[0])}

    def upload(self, data: bytes, name: str) -> dict:
        """Decode an uploaded file exactly as `stylize` reads a file (iu.load_image)."""
        if not data:
            raise BadRequest("empty upload")
        suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in iu.IMAGE_EXTENSIONS else ".img"
        path = self.tmp / f"upload{next(self.counter)}{suffix}"
        path.write_bytes(data)
        try:
            image = check_size(iu.load_image(path, max_pixels=self.max_pixels), path)
        except iu.ImageError as e:
            raise BadRequest(f"{name or 'the upload'}: {e.reason}") from None
        finally:
            path.unlink(missing_ok=True)
        return self.add_image(image)

    def image(self, key) -> np.ndarray:
        if not isinstance(key, str) or key not in self.images:
            raise BadRequest("unknown image id (upload it again)")
        return self.images[key]

    def info(self) -> dict:
        return {"styles": self.names, "conditioning": self.config.conditioning, "builtin": sorted(self.builtin),
                "max_pixels": self.max_pixels, "preview_side": PREVIEW_SIDE, "run": str(self.run_dir),
                "samples": str(self.samples) if self.samples else None}

    def builtin_image(self, name: str) -> dict:
        if name not in self.builtin:
            raise NotFound(f"{name}: no such built-in image")
        return self.add_image(self.builtin[name])

    def result(self, key: str) -> bytes:
        if not (key.isascii() and key.isdigit() and len(key) < 16) or int(key) not in self.results:
            raise NotFound("that result has expired; render it again")
        return self.results[int(key)]

    def weights(self, values) -> np.ndarray:
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in values):
            raise BadRequest(f"weights: a list of {len(self.names)} numbers")
        try:
            w = np.asarray(values, np.float64).reshape(-1)
        except (OverflowError, ValueError):  # an integer too large for a float
            raise BadRequest("weights: numbers a float can hold") from None
        if len(w) != len(self.names) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise BadRequest(f"weights: {len(self.names)} non-negative numbers, not all zero")
        return (w / w.sum()).astype(np.float32)

    def strength_map(self, data_url: str, height: int, width: int) -> np.ndarray:
        """A painted map (PNG data URL, grayscale = the last style's weight) as [H, W, S] weights."""
        from stylizer_apply import fit_map, load_weight_map

        try:
            if not isinstance(data_url, str):
                raise ValueError(data_url)
            raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
        except (IndexError, ValueError):
            raise BadRequest("the strength map is not a PNG data URL") from None
        path = self.tmp / f"map{next(self.counter)}.png"
        path.write_bytes(raw)
        try:
            weight_map = load_weight_map(len(self.names), strength_map=path)
        except (iu.ImageError, ValueError) as e:
            raise BadRequest(f"strength map: {getattr(e, 'reason', e)}") from None
        finally:
            path.unlink(missing_ok=True)
        return fit_map(weight_map, height, width)

    # ---- rendering --------------------------------------------------------------------------------------------------
    def keep(self, picture: np.ndarray, seconds: float) -> dict:
        n = next(self.counter)
        self.results[n] = iu.encode_image(picture, ".png")
        while len(self.results) > RESULTS_KEPT:
            self.results.popitem(last=False)
        return {"url": f"/api/result/{n}.png", "seconds": round(seconds, 3), "width": int(picture.shape[1]),
                "height": int(picture.shape[0])}

    def stylize(self, request: dict) -> dict:
        from stylizer_apply import stylize_map, tiled_stylize

        image = self.image(request.get("id"))
        if not isinstance(request.get("full", False), bool):
            raise BadRequest("full: true or false")
        if not request.get("full"):
            image = iu.resize_max_side(image, PREVIEW_SIDE)
        weights = self.weights(request.get("weights"))
        weight_map = None if request.get("map") is None else self.strength_map(request["map"], *image.shape[:2])
        with self.lock:
            t0 = time.perf_counter()
            if max(image.shape[:2]) > TILE_ABOVE:
                out = tiled_stylize(self.net, image, weights, TILE, weight_map=weight_map)
            elif weight_map is not None:
                out = stylize_map(self.net, image, weight_map)
            else:
                out = self.forward(image, weights)
            seconds = time.perf_counter() - t0
        print(f"stylized {image.shape[1]}x{image.shape[0]} at {[round(float(w), 3) for w in weights]}"
              f"{' with a map' if weight_map is not None else ''} in {seconds:.2f} s", flush=True)
        return self.keep(out, seconds)

    def sweep(self, request: dict) -> dict:
        from stylizer_apply import stylize_array
        from stylizer_net import strength_weights

        image = iu.resize_max_side(self.image(request.get("id")), 256)
        n = request.get("n", 5)
        if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= 11:
            raise BadRequest("n: a sweep has 2 to 11 strengths (a whole number)")
        with self.lock:
            t0 = time.perf_counter()
            frames = [stylize_array(self.net, image, w)
                      for w in strength_weights(len(self.names), np.linspace(0.0, 1.0, n))]
            seconds = time.perf_counter() - t0
        return self.keep(iu.image_grid(frames, cols=n, pad=0), seconds)

    # ---- the sample folder ------------------------------------------------------------------------------------------
    def sample_table(self) -> dict:
        import sample_folder

        if self.samples is None or not (self.samples / sample_folder.MANIFEST).exists():
            return {"folder": str(self.samples) if self.samples else None, "rows": [], "fidelity": None}
        try:
            entries = sample_folder.read_manifest(self.samples)
        except RunError as e:  # a bad manifest or sampler.json
            raise BadRequest(str(e), HTTPStatus.UNPROCESSABLE_ENTITY) from None
        rows = collections.defaultdict(list)
        for e in entries:
            if not isinstance(e.get("pair"), int) or not isinstance(e.get("t"), (int, float)):
                raise BadRequest(f"{self.samples / sample_folder.MANIFEST}: an entry has no pair or t (is it a "
                                 "style_sampler.py folder?)", HTTPStatus.UNPROCESSABLE_ENTITY)
            rows[e["pair"]].append({"file": e["file"], "t": e["t"], "weights": e["weights"],
                                    "url": f"/api/sample/{e['file']}"})
        try:  # the measures are shown when they can be read; the samples regardless
            fidelity = json.loads((self.samples / "sample_fidelity.json").read_text())
        except (OSError, ValueError, RecursionError):
            fidelity = None
        return {"folder": str(self.samples), "styles": sample_folder.style_names(self.samples, len(self.names)),
                "rows": [sorted(rows[p], key=lambda c: c["t"]) for p in sorted(rows)],
                "fidelity": fidelity.get("summary") if isinstance(fidelity, dict) else None}

    def sample_file(self, name: str) -> Path:
        import sample_folder

        try:
            listed = self.samples is not None and name in sample_folder.manifest_by_file(self.samples)
        except RunError:
            listed = False
        path = (self.samples / name).resolve() if listed else None
        # read_manifest refused names that leave the folder; resolve again in case a file became a link since
        if path is None or not path.is_relative_to(self.samples.resolve()) or not path.is_file():
            raise NotFound(f"{name}: not a sample of this folder")
        return path


def compiled_forward(net, num_styles: int):
    """stylize_array as one compiled TensorFlow function for any image size (a slider move is one call: about 6x
    faster than running the Keras model op by op). Only for the plain path: the norm modes that maps and tiles
    switch are Python state, which a traced function would freeze."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32),
                                  tf.TensorSpec([1, num_styles], tf.float32)])
    def run(image, weights):
        return net({"image": image, "weights": weights}, training=False)

    return lambda image, weights: np.asarray(run(image[None].astype(np.float32),
                                                 np.asarray(weights, np.float32)[None])[0], np.float32)


# Request bodies a browser sends to another origin without asking first (CORS "simple" requests): refused, so a web
# page the user visits cannot make the studio render or upload. JSON calls carry application/json, uploads an image
# type, which browsers send cross-origin only after a preflight this server never approves.
SIMPLE_BODY_TYPES = ("text/plain", "multipart/form-data", "application/x-www-form-urlencoded")
JSON_LIMIT, UPLOAD_LIMIT = 50 * 2 ** 20, 200 * 2 ** 20
READ_TIMEOUT = 20  # seconds a connection may stay silent while the studio waits for its request: then it is dropped


class Handler(BaseHTTPRequestHandler):
    """The studio's HTTP handler: routes GET and POST to the Studio on `self.server.studio`. Every request first
    passes the Host check (a DNS-rebinding page gets 403), every POST the body-type and Content-Length checks; a
    bad request gets a 4xx with {"error": one line} that the page shows."""

    server_version = "stylizer-studio"
    timeout = READ_TIMEOUT

    def log_message(self, fmt, *args):  # quiet: errors are printed where they happen
        pass

    def send(self, status, body: bytes, content_type: str):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, obj, status=HTTPStatus.OK):
        self.send(status, json.dumps(obj).encode(), "application/json")

    def guarded(self, fn):
        try:
            if self.headers.get("Host", "") not in self.server.allowed_hosts:
                raise BadRequest(f"Host {self.headers.get('Host', '')!r} is not this studio's", HTTPStatus.FORBIDDEN)
            fn()
        except BadRequest as e:
            self.send_json({"error": str(e)}, e.status)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - the server keeps serving whatever one request does
            print(f"error serving {self.path}: {type(e).__name__}: {e}", flush=True)
            self.send_json({"error": f"internal error: {type(e).__name__}: {e}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def body(self, allowed_types, limit: int) -> bytes:
        """The request body, after checking its type against `allowed_types` (prefixes) and its Content-Length."""
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind in SIMPLE_BODY_TYPES or not kind.startswith(allowed_types):
            raise BadRequest(f"a body of type {kind or 'none'} is not accepted here (send "
                             f"{' or '.join(allowed_types)})", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        raw = self.headers.get("Content-Length", "")
        if not (raw.isascii() and raw.isdigit() and len(raw) < 16):
            raise BadRequest(f"Content-Length {raw!r}: a byte count is required", HTTPStatus.BAD_REQUEST)
        if int(raw) > limit:
            raise BadRequest(f"a body of {int(raw):,} bytes is over the limit of {limit:,}",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        data = self.rfile.read(int(raw))
        if len(data) < int(raw):
            raise ConnectionError("the client sent less than its Content-Length")
        return data

    def do_GET(self):
        self.guarded(self.get)

    def do_POST(self):
        self.guarded(self.post)

    def get(self):
        studio = self.server.studio
        path = unquote(urlparse(self.path).path)
        if path in ("/", "/index.html"):
            return self.send(HTTPStatus.OK, (PAGE_DIR / "index.html").read_bytes(), "text/html; charset=utf-8")
        if path.startswith("/studio/"):
            try:
                asset = (PAGE_DIR / path[len("/studio/"):]).resolve()
            except (ValueError, OSError):  # a NUL byte, a link loop
                raise NotFound(f"{path!r}: no such page asset") from None
            if asset.parent != PAGE_DIR.resolve() or not asset.is_file():
                raise NotFound(f"{path}: no such page asset")
            kind = mimetypes.guess_type(asset.name)[0] or "application/octet-stream"
            return self.send(HTTPStatus.OK, asset.read_bytes(), kind)
        if path == "/api/info":
            return self.send_json(studio.info())
        if path.startswith("/api/builtin/"):
            return self.send_json(studio.builtin_image(path[len("/api/builtin/"):]))
        if path.startswith("/api/source/") and path.endswith(".png"):  # the input, at preview size
            image = iu.resize_max_side(studio.image(path[len("/api/source/"):-4]), PREVIEW_SIDE)
            return self.send(HTTPStatus.OK, iu.encode_image(image, ".png"), "image/png")
        if path.startswith("/api/result/") and path.endswith(".png"):
            return self.send(HTTPStatus.OK, studio.result(path[len("/api/result/"):-4]), "image/png")
        if path == "/api/samples":
            return self.send_json(studio.sample_table())
        if path.startswith("/api/sample/"):
            return self.send(HTTPStatus.OK, studio.sample_file(path[len("/api/sample/"):]).read_bytes(), "image/png")
        raise NotFound(f"{path}: not found")

    def post(self):
        studio = self.server.studio
        path = urlparse(self.path).path
        if path == "/api/image":
            name = unquote(self.headers.get("X-Filename") or "upload")
            return self.send_json(studio.upload(self.body(("image/", "application/octet-stream"), UPLOAD_LIMIT),
                                                name))
        if path not in ("/api/stylize", "/api/sweep"):
            raise NotFound(f"{path}: not found")
        data = self.body(("application/json",), JSON_LIMIT)
        try:
            request = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep, a number too long to read
            raise BadRequest("the request is not JSON") from None
        if not isinstance(request, dict):
            raise BadRequest("the request must be a JSON object")
        return self.send_json(studio.stylize(request) if path == "/api/stylize" else studio.sweep(request))


def make_server(run_dir, host: str = "127.0.0.1", port: int = 7860, samples=None,
                max_pixels: int = 16_000_000) -> ThreadingHTTPServer:
    """The studio's HTTP server, bound but not yet serving (call serve_forever; port 0 picks a free port)."""
    studio = Studio(run_dir, samples, max_pixels)
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.studio = studio
    port = server.server_address[1]
    # Requests must name this server as a browser does (DNS rebinding gives a page another name for our address).
    names = {"127.0.0.1", "localhost", f"[{host}]" if ":" in host else host}
    server.allowed_hosts = {f"{h}:{port}" for h in names} | (names if port == 80 else set())
    return server


def serve(run_dir, host: str = "127.0.0.1", port: int = 7860, samples=None, max_pixels: int = 16_000_000) -> int:
    server = make_server(run_dir, host, port, samples, max_pixels)
    url = f"http://{host}:{server.server_address[1]}/"
    print(f"studio for {run_dir} at {url} (Ctrl-C stops it). From another machine: "
          f"ssh -L {server.server_address[1]}:127.0.0.1:{server.server_address[1]} USER@THIS_HOST, then open "
          f"http://localhost:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
