"""The PNG plots integrations log (confusion matrix, ROC and precision-recall curves, feature
importance), drawn cheaply, with their data.

Each plot is drawn with Pillow, not matplotlib. Plots are drawn on the logger's worker, and
in a script that trains and exits, the time until everything is written includes them.
Measured on the development machine (docs/benchmarks.md, "Plots"): importing matplotlib's
Figure and Agg canvas takes about 0.4 s of CPU and one confusion matrix about 0.1 s, while
Pillow takes about 16 ms to import and 2-4 ms to draw a plot. A loop of a hundred short fits
draws a hundred confusion matrices. Pillow is a dependency of matplotlib, so it is installed
wherever MLflow could draw these plots. The text font is matplotlib's DejaVu Sans when
matplotlib is installed (found on disk, not imported), else Pillow's own.

The images look like MLflow's, under MLflow's file names: the confusion matrix normalised
over the true labels in "Blues" with its values, tick labels, axis labels and a colorbar
(`mlflow.sklearn`'s `ConfusionMatrixDisplay(normalize="true", cmap="Blues")`, titled
"Normalized confusion matrix"); for a two-class target the ROC curve and the precision-recall
curve with the AUC and the average precision in their legends (`RocCurveDisplay`,
`PrecisionRecallDisplay`); horizontal bars sorted by importance, one colour per class. Each `*_png` function also returns the data it drew, and `write_json` writes it
next to the PNG (`training_confusion_matrix.json`, ...) so that the CLI or a UI can redraw
the plot.

What a loop of short fits pays for each plot (issue 18): what is the same in every plot of a
kind (a curve's frame, ticks, axis labels and title) is drawn once and kept, and each plot is
drawn over it on an image kept for its size; the curves, black and white but for their one
colour, are drawn in grey, their colour in a grey level the plot has nowhere else, and written
with a palette that maps it to the colour (a third of the bytes to deflate); the PNG encoder is
our own (`write_png`: rows unfiltered, zlib's fastest level); a curve's coordinates are written
to its JSON in fixed point (`_six_decimals`); and within `written_later` the deflating and the
writing of the files are left to the caller, who does them while training runs. Each of these
was compared pixel for pixel with the plots drawn before it when it was made;
tests/integrations/test_plots.py checks what that rests on (a curve never touches its
background, a kept image keeps nothing of the plot before, a palette PNG decodes to the grey
and coloured pixels drawn, a curve is drawn as by the mask it was drawn with before).

Every function here runs off the training thread (on the worker) and imports no ML
library. Without Pillow a function draws nothing and returns None; the data is still
returned by `confusion_matrix_data`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import struct
import threading
import zlib
from typing import Any, Iterator, Mapping, Optional, Sequence

DPI = 100
# matplotlib's default colour cycle (tab10), for one bar colour per class
_CYCLE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
# matplotlib's "Blues" (ColorBrewer's nine steps, interpolated linearly as matplotlib does)
_BLUES = ((247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214),
          (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107))
_AXIS = (0, 0, 0)
_WHITE = (255, 255, 255)
_GRID = (204, 204, 204)


def blues(fraction: float) -> tuple[int, int, int]:
    """matplotlib's "Blues" at `fraction` (0..1): near white at 0, dark blue at 1."""
    x = min(max(fraction, 0.0), 1.0) * (len(_BLUES) - 1)
    i = min(int(x), len(_BLUES) - 2)
    t = x - i
    a, b = _BLUES[i], _BLUES[i + 1]
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


# -- fonts ---------------------------------------------------------------------------------------
_fonts: dict = {}
_fonts_lock = threading.Lock()


def _font_file() -> Optional[str]:
    """matplotlib's DejaVu Sans, found without importing matplotlib; None when it is not installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("matplotlib")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
        if os.path.isfile(path):
            return path
    return None


def _font(points: float):
    """A font of `points` at DPI, loaded once per size."""
    from PIL import ImageFont

    pixels = max(6, round(points * DPI / 72))
    with _fonts_lock:
        font = _fonts.get(pixels)
        if font is None:
            path = _fonts.get("path", "")
            if path == "":
                path = _fonts["path"] = _font_file()
            try:
                font = ImageFont.truetype(path, pixels) if path else ImageFont.load_default(size=pixels)
            except (OSError, TypeError, ImportError):  # no FreeType in this Pillow
                font = ImageFont.load_default()
            _fonts[pixels] = font
        return font


def pillow_available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


class _Canvas:
    """An RGB (or grey, "L") image with the few drawing operations a plot needs (text at any angle)."""

    def __init__(self, width: int, height: int, image=None, mode: str = "RGB"):
        from PIL import Image, ImageDraw

        if image is None:
            image = Image.new(mode, (max(1, int(width)), max(1, int(height))), _WHITE if mode == "RGB" else 255)
        self.image = image
        self.draw = ImageDraw.Draw(self.image)

    def ink(self, colour: tuple) -> Any:
        """`colour` as this image takes it: a grey level on a grey image (only greys are drawn there)."""
        return colour if self.image.mode == "RGB" else colour[0]

    @staticmethod
    def size(text: str, font) -> tuple[int, int]:
        key = (text, id(font))
        found = _sizes.get(key)
        if found is None:
            left, top, right, bottom = font.getbbox(text or " ")
            found = right - left, bottom - top
            with _fonts_lock:
                if len(_sizes) >= _MAX_MASKS:
                    _sizes.clear()
                _sizes[key] = found
        return found

    def text(self, xy: tuple[float, float], text: str, font, fill=_AXIS, anchor: str = "mm", angle: float = 0) -> None:
        """`text` anchored at `xy` ("mm" centre, "rm" right-middle, ...); turned by `angle` degrees."""
        mask, (left, top) = _text_mask(text, font, anchor, angle)
        x, y = xy
        self.image.paste(self.ink(fill), (round(x + left), round(y + top), round(x + left) + mask.size[0],
                                          round(y + top) + mask.size[1]), mask)

    def save(self, path: str) -> None:
        write_png(self.image, path)


def write_png(image, path: str) -> None:
    """`image` (RGB) as a PNG file: the rows unfiltered, deflated at zlib's fastest level.

    Pillow's PNG writer chooses a filter for each row, which is most of its time on these
    plots (3.3 ms for a 490 x 400 confusion matrix, at any compression level); this writes
    the same pixels in about 1 ms, and zlib works without holding the GIL, so a training
    thread runs meanwhile. The files are a few kB larger (17 against 15 kB). The rows are
    put together in a buffer kept for the image's size (a new megabyte each time is as
    many page faults)."""
    _write_png(path, image.size, 2, 3, image.tobytes())


_GREY_PALETTE = bytes(level for level in range(256) for _ in range(3))  # index i: the grey (i, i, i)


def write_palette_png(image, level: int, colour: tuple, path: str) -> None:
    """A grey image ("L") whose pixels of grey `level` are `colour` instead, as a PNG with a
    palette: one byte a pixel, a third of the bytes an RGB PNG deflates (about 0.5 ms instead
    of 1.5 for 640 x 480). Decoded: the image's greys, and `colour` for `level`."""
    palette = bytearray(_GREY_PALETTE)
    palette[3 * level:3 * level + 3] = bytes(colour)
    _write_png(path, image.size, 3, 1, image.tobytes(), palette=bytes(palette))


def _write_png(path: str, size: tuple, colour_type: int, channels: int, pixels: bytes,
               palette: Optional[bytes] = None) -> None:
    import numpy as np

    width, height = size
    rows = _rows_taken(width * channels, height)  # each row: filter type 0, then its pixels
    rows[:, 1:] = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width * channels)
    writes = getattr(_later, "writes", None)
    if writes is not None:  # the rows copied now (the picture is final), deflated and written later
        writes.append(LaterWrite(path, functools.partial(_write_rows, path, size, colour_type, rows, palette)))
        return
    _write_rows(path, size, colour_type, rows, palette)


def _write_rows(path: str, size: tuple, colour_type: int, rows: Any, palette: Optional[bytes]) -> None:
    try:
        _deflate_and_write(path, size, colour_type, rows, palette)
    finally:
        _rows_given_back(rows)


def _deflate_and_write(path: str, size: tuple, colour_type: int, rows: Any, palette: Optional[bytes]) -> None:
    data = zlib.compress(rows, 1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size[0], size[1], 8, colour_type, 0, 0, 0)  # 8 bits, no interlace
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + (chunk(b"PLTE", palette) if palette else b"")
                 + chunk(b"IDAT", data) + chunk(b"IEND", b""))


_later = threading.local()  # `writes`: the list of `written_later` on this thread, while it is on


class LaterWrite:
    """A file `written_later` leaves to be written: its `path`; calling it writes the file."""

    __slots__ = ("path", "_write")

    def __init__(self, path: str, write):
        self.path = path
        self._write = write

    def __call__(self) -> None:
        self._write()


@contextlib.contextmanager
def written_later(writes: list) -> Iterator[list]:
    """Within it, on this thread, a PNG's pixels are taken at once but deflating them and writing
    the file are left to callables appended to `writes` (each to be called once, in order), and
    so is writing the JSON of a plot: for a caller that draws while training waits for it, and
    writes while training runs again (zlib, most of the writing, does not hold the GIL). Each
    holds its image's rows (1 MB at most for the plots here) until called."""
    outer = getattr(_later, "writes", None)
    _later.writes = writes
    try:
        yield writes
    finally:
        _later.writes = outer


# The rows of a PNG are put together in a buffer used again once the PNG is written: a new one for
# each picture is new memory, a page fault a page. In the loop of issue 18 the worker took 175 to
# 212 page faults a fit drawing the confusion matrix (its rows and its new image), 2 without them.
# Within `written_later` a buffer waits for its write.
_rows: dict = {}  # (bytes of a row, rows) -> the buffers of that size not in use
_rows_lock = threading.Lock()
_ROWS_KEPT = 4  # of each size: the PNGs of a fit waiting to be written, and one being drawn


def _rows_taken(row_bytes: int, height: int) -> Any:
    """A buffer of `height` rows of a filter byte (0) and `row_bytes` bytes, for `_write_png`
    alone until `_rows_given_back`."""
    import numpy as np

    with _rows_lock:
        free = _rows.get((row_bytes, height))
        if free:
            return free.pop()
    return np.zeros((height, row_bytes + 1), dtype=np.uint8)


def _rows_given_back(rows: Any) -> None:
    """`rows`, written, kept for the next PNG of its size (up to `_ROWS_KEPT` of each, and
    `_MAX_BACKGROUNDS` sizes: then the cache starts over)."""
    height, row_bytes = rows.shape[0], rows.shape[1] - 1
    with _rows_lock:
        if (row_bytes, height) not in _rows and len(_rows) >= _MAX_BACKGROUNDS:
            _rows.clear()
        free = _rows.setdefault((row_bytes, height), [])
        if len(free) < _ROWS_KEPT and not any(kept is rows for kept in free):
            free.append(rows)


# -- what is the same in every plot of a kind ---------------------------------------------------------
# A plot is drawn over its background (the frame, ticks, labels and title, drawn once per set of
# texts and kept) on an image kept for its size: a fresh 1 MB image costs more in page faults
# (each new allocation is new memory to the kernel) than drawing the curve on it.
_MAX_BACKGROUNDS = 16  # then the cache starts over: about 1 MB each
_backgrounds: dict = {}  # key -> (image, layout)
_scratch: dict = {}  # size -> the image a plot of that size is drawn on (by one thread at a time)
_scratch_lock = threading.Lock()


def _background(key: tuple, draw) -> tuple:
    """(image, layout) for `key`: `draw()` makes them the first time (a _Canvas and a layout)."""
    found = _backgrounds.get(key)
    if found is None:
        canvas, layout = draw()
        found = (canvas.image, layout)
        with _fonts_lock:
            if len(_backgrounds) >= _MAX_BACKGROUNDS:
                _backgrounds.clear()
            _backgrounds[key] = found
    return found


@contextlib.contextmanager
def _over(background) -> Iterator[_Canvas]:
    """A canvas that starts as a copy of `background`: the image kept for its mode and size, or
    a new one while another thread draws on that one."""
    if not _scratch_lock.acquire(blocking=False):
        yield _Canvas(0, 0, background.copy())
        return
    try:
        key = (background.mode, background.size)
        image = _scratch.get(key)
        if image is None:
            if len(_scratch) >= _MAX_BACKGROUNDS:
                _scratch.clear()
            image = _scratch[key] = background.copy()
        else:
            image.paste(background, (0, 0))
        yield _Canvas(0, 0, image)
    finally:
        _scratch_lock.release()


_masks: dict = {}  # (text, font, anchor, angle) -> (mask, offset): labels repeat from plot to plot
_sizes: dict = {}  # (text, font) -> (width, height)
_MAX_MASKS = 512


def _text_mask(text: str, font, anchor: str, angle: float):
    """The rendered text as an "L" mask and the offset of its top-left corner from the anchor
    point, kept (up to `_MAX_MASKS`; then the cache starts over): rendering is most of a plot."""
    key = (text, id(font), anchor, angle)
    found = _masks.get(key)
    if found is not None:
        return found
    from PIL import Image, ImageDraw

    if not angle:
        left, top, right, bottom = font.getbbox(text or " ", anchor=anchor)
        mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
        ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font, anchor=anchor)
        found = (mask, (left, top))
    else:
        width, height = _Canvas.size(text, font)
        flat = Image.new("L", (width + 4, height + 8), 0)
        ImageDraw.Draw(flat).text((2, (height + 8) / 2), text, fill=255, font=font, anchor="lm")
        mask = flat.rotate(angle, expand=True, resample=Image.BICUBIC)
        w, h = mask.size
        # anchors for turned text: horizontally "r" ends the text at x, "m" centres it; vertically "t"/"m"/else
        left = -w if anchor[0] == "r" else (-w / 2 if anchor[0] == "m" else 0)
        top = 0 if anchor[1] == "t" else (-h / 2 if anchor[1] == "m" else -h)
        found = (mask, (left, top))
    with _fonts_lock:
        if len(_masks) >= _MAX_MASKS:
            _masks.clear()
        _masks[key] = found
    return found


def _nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round tick values covering [low, high], at most about `most` of them."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(1, most - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _tick_text(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.3g}"


# -- data files ------------------------------------------------------------------------------------
def write_json(data: Any, path: str) -> None:
    """The data of a plot, as JSON next to its PNG (`x.png` -> `x.json`), for the CLI or a UI.
    On one line: json's C encoder, ten times faster than the indented one on a curve's points.
    Within `written_later`, written by a callable appended to its list (`data` is not changed
    meanwhile: the plots' data are their own)."""
    writes = getattr(_later, "writes", None)
    if writes is not None:
        writes.append(LaterWrite(path, functools.partial(_write_json_now, data, path)))
        return
    _write_json_now(data, path)


def _write_json_now(data: Any, path: str) -> None:
    text = _json_text(data)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _json_text(data: Any) -> str:
    """`data` as JSON on one line; in a dict, the lists that `_six_decimals` writes (a curve's
    coordinates) written by it, the rest by json."""
    fixed = {}
    if isinstance(data, dict) and all(isinstance(key, str) for key in data):
        fixed = {key: text for key, text in ((key, _six_decimals(value)) for key, value in data.items()) if text}
    if not fixed:
        return json.dumps(data, default=_plain)
    return "{" + ", ".join(f"{_JSON.encode(key)}: {fixed[key] if key in fixed else _JSON.encode(value)}"
                           for key, value in data.items()) + "}"


# "0." to "9." and "00" to "99", two bytes each (read as 16-bit numbers by _six_decimals)
_UNITS = "".join(f"{i}." for i in range(10)).encode("ascii")
_PAIRS = "".join(f"{i:02d}" for i in range(100)).encode("ascii")


def _six_decimals(values: Any) -> Optional[str]:
    """A list of floats from 0 to 10 with 6 decimals at most (as `_float_list` rounds them) as
    a JSON array of fixed-point numbers ("0.500000": json reads it back as the same float,
    0.5); None for anything else (json writes it). Json's own encoder writes each float's
    shortest repr, about 0.2 us a number: 90 us for a curve's 430 x values, against 35 here."""
    if type(values) is not list or len(values) < 16 or set(map(type, values)) != {float}:
        return None
    import numpy as np

    floats = np.array(values, dtype=float)
    millionths = np.rint(floats * 1e6)
    # the text is exact: "k / 10**6" read back is the float nearest it, which k / 1e6 is too
    if not ((millionths / 1e6 == floats).all() and (floats < 10).all() and not np.signbit(floats).any()):
        return None
    high, low = np.divmod(millionths.astype(np.int64), 10_000)  # 0.5 -> 50, 0000
    text = np.empty((len(floats), 5), dtype=np.uint16)  # "0." "50" "00" "00" ", "
    units, pairs = np.frombuffer(_UNITS, dtype=np.uint16), np.frombuffer(_PAIRS, dtype=np.uint16)
    text[:, 0] = units[high // 100]
    text[:, 1] = pairs[high % 100]
    text[:, 2] = pairs[low // 100]
    text[:, 3] = pairs[low % 100]
    text[:, 4] = np.frombuffer(b", ", dtype=np.uint16)[0]
    return "[" + text.tobytes()[:-2].decode("ascii") + "]"


def _plain(value: Any) -> Any:
    """numpy scalars and arrays to JSON's numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


_JSON = json.JSONEncoder(default=_plain)  # as json.dumps(value, default=_plain)


# -- the confusion matrix ---------------------------------------------------------------------------
CONFUSION_TITLE = "Normalized confusion matrix"  # the title mlflow.sklearn gives it


def confusion_matrix_data(matrix: Any, labels: Sequence[Any], title: str = CONFUSION_TITLE) -> dict:
    """What `confusion_matrix_png` draws: rows are the true labels, columns the predicted ones;
    `matrix` the (weighted) counts, `normalized` each row divided by its sum (0 for an empty
    row), as `confusion_matrix(normalize="true")` makes it."""
    counts = [[_number(v) for v in row] for row in matrix]
    normalized = []
    for row in counts:
        total = float(sum(row))
        normalized.append([(v / total if total else 0.0) for v in row])
    return {"plot": "confusion_matrix", "title": title, "labels": [_label(label) for label in labels],
            "matrix": counts, "normalize": "true", "normalized": normalized,
            "rows": "True label", "columns": "Predicted label"}


def _label(label: Any) -> Any:
    value = label.item() if hasattr(label, "item") else label
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def _number(value: Any) -> Any:
    value = float(value)
    return int(value) if value.is_integer() else value


def confusion_matrix_png(matrix: Any, labels: Sequence[Any], path: str, title: str = CONFUSION_TITLE) -> Optional[dict]:
    """Draw the confusion matrix (rows: true labels, columns: predicted), normalised over the
    true labels, as a PNG at `path`, as mlflow.sklearn draws it with scikit-learn's
    `ConfusionMatrixDisplay(normalize="true", cmap="Blues")`: each cell's value as ".2g", in
    the colour map's darkest colour on light cells and its lightest on dark ones; return its
    data (None without Pillow)."""
    if not pillow_available():
        return None
    data = confusion_matrix_data(matrix, labels, title)
    size = round(min(3 + 0.5 * len(data["normalized"]), 12) * DPI)
    width = size + round(0.9 * DPI)
    # drawn on the image kept for its size: a new one is a megabyte of new memory (see _rows)
    blank, _ = _background(("blank", width, size), lambda: (_Canvas(width, size), None))
    with _over(blank) as canvas:
        _draw_confusion_matrix(canvas, data["normalized"], [str(label) for label in data["labels"]], size, title)
        canvas.save(path)
    return data


def _draw_confusion_matrix(canvas: _Canvas, values: list, names: list, size: int, title: str) -> None:
    n = len(values)
    tick_font, label_font, title_font = _font(10), _font(10), _font(12)
    flat = [v for row in values for v in row] or [0]
    low, high = min(flat), max(flat)
    span = (high - low) or 1.0
    rotate = 45 if n > 5 else 0
    widest = max((canvas.size(name, tick_font)[0] for name in names), default=0)
    tick_height = canvas.size("Ag", tick_font)[1]
    left = 20 + tick_height + 8 + widest + 10
    bottom_labels = (widest * 0.72 + tick_height) if rotate else tick_height
    bottom = 14 + bottom_labels + 10 + tick_height + 12
    top = 18 + canvas.size(title, title_font)[1] + 10
    side = max(20, min(size - top - bottom, size - left - 20))
    cell = side / max(n, 1)
    x0, y0 = left, top
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            colour = blues((value - low) / span)
            canvas.draw.rectangle([x0 + j * cell, y0 + i * cell, x0 + (j + 1) * cell, y0 + (i + 1) * cell], fill=colour)
    canvas.draw.rectangle([x0, y0, x0 + side, y0 + side], outline=_AXIS)
    if n <= 30:
        threshold = (high + low) / 2.0
        cell_font = _font(10 if n <= 10 else 7)
        darkest, lightest = blues(1.0), blues(0.0)
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                colour = darkest if value < threshold else lightest  # ConfusionMatrixDisplay's rule
                canvas.text((x0 + (j + 0.5) * cell, y0 + (i + 0.5) * cell), format(value, ".2g"), cell_font,
                            fill=colour)
    for k, name in enumerate(names):
        centre = x0 + (k + 0.5) * cell
        canvas.draw.line([centre, y0 + side, centre, y0 + side + 4], fill=_AXIS)
        canvas.text((centre + (0 if not rotate else 4), y0 + side + 7), name, tick_font,
                    anchor="mt" if not rotate else "rt", angle=rotate)
        middle = y0 + (k + 0.5) * cell
        canvas.draw.line([x0 - 4, middle, x0, middle], fill=_AXIS)
        canvas.text((x0 - 7, middle), name, tick_font, anchor="rm")
    canvas.text((x0 + side / 2, y0 + side + 14 + bottom_labels + 6), "Predicted label", label_font, anchor="mt")
    canvas.text((14, y0 + side / 2), "True label", label_font, anchor="mm", angle=90)
    canvas.text((x0 + side / 2, 14), title, title_font, anchor="mt")
    _colorbar(canvas, x0 + side + 0.25 * DPI, y0, side, low, high, tick_font)


_colorbars: dict = {}  # height in pixels -> the colour bar's image (one per confusion-matrix size: a few)


def _colorbar(canvas: _Canvas, x: float, y: float, height: float, low: float, high: float, font) -> None:
    from PIL import Image

    width = 0.15 * DPI
    steps = max(2, int(height))
    bar = _colorbars.get(steps)
    if bar is None:  # a plot of the same size has the same bar
        gradient = Image.new("RGB", (1, steps))
        gradient.putdata([blues(1 - k / (steps - 1)) for k in range(steps)])
        bar = _colorbars[steps] = gradient.resize((max(1, round(width)), steps), Image.NEAREST)
    canvas.image.paste(bar, (round(x), round(y)))
    canvas.draw.rectangle([x, y, x + width, y + height], outline=_AXIS)
    span = (high - low) or 1.0
    for tick in _nice_ticks(low, high):
        ty = y + height - (tick - low) / span * height
        canvas.draw.line([x + width, ty, x + width + 4, ty], fill=_AXIS)
        canvas.text((x + width + 7, ty), _tick_text(tick), font, anchor="lm")


# -- ROC and precision-recall curves (two-class targets) -------------------------------------------------
ROC_TITLE = "ROC curve"  # the titles mlflow.sklearn gives them
PRECISION_RECALL_TITLE = "Precision recall curve"


CURVE_RESOLUTION = 250  # a curve's data keeps one point per 1/250 of the axes it crosses


def roc_curve_data(fpr: Sequence[float], tpr: Sequence[float], auc: float, estimator: str, pos_label: Any) -> dict:
    """What `curve_png` draws for `training_roc_curve.png`: the points of scikit-learn's
    `roc_curve` (collinear ones dropped, as its default does), thinned to `CURVE_RESOLUTION`
    (`_thin`) and rounded to 6 decimals, and the area under the whole curve."""
    fpr, tpr = _thin(fpr, tpr)
    label = _label(pos_label)
    return {"plot": "roc_curve", "title": ROC_TITLE, "estimator": estimator, "pos_label": label,
            "auc": float(auc), "legend": f"{estimator} (AUC = {auc:0.2f})",
            "x": "fpr", "y": "tpr", "fpr": _float_list(fpr), "tpr": _float_list(tpr),
            "x_label": f"False Positive Rate (Positive label: {label})",
            "y_label": f"True Positive Rate (Positive label: {label})"}


def precision_recall_data(recall: Sequence[float], precision: Sequence[float], average_precision: float,
                          estimator: str, pos_label: Any) -> dict:
    """What `curve_png` draws for `training_precision_recall_curve.png`: the points of
    scikit-learn's `precision_recall_curve` (recall decreasing; thresholds that do not change
    the plotted steps dropped, as its `drop_intermediate` does; thinned by `_thin`; rounded to 6
    decimals), drawn as steps, and the average precision of the whole curve."""
    recall, precision = _thin(recall, precision)
    label = _label(pos_label)
    return {"plot": "precision_recall_curve", "title": PRECISION_RECALL_TITLE, "estimator": estimator,
            "pos_label": label, "average_precision": float(average_precision),
            "legend": f"{estimator} (AP = {average_precision:0.2f})", "steps": "post",
            "x": "recall", "y": "precision", "recall": _float_list(recall), "precision": _float_list(precision),
            "x_label": f"Recall (Positive label: {label})", "y_label": f"Precision (Positive label: {label})"}


def _thin(x: Sequence[float], y: Sequence[float]) -> tuple[Any, Any]:
    """The points of a curve at `CURVE_RESOLUTION`: of consecutive points in the same 1/250
    of both axes only the first is kept (and always the last). A 20,000-row training set has
    up to 20,000 points, each costing about 0.3 us to write as JSON, and the JSON is written
    holding the GIL in one piece; the kept ones (about 430 of a LogisticRegression's 4,600 on
    20k rows) redraw the curve within 1/250 of each axis, a pixel and a half of the PNG's
    plot area (about 380 pixels square)."""
    import numpy as np

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) <= 2:
        return x, y
    keep = _moved(np.rint(x * CURVE_RESOLUTION), np.rint(y * CURVE_RESOLUTION))
    keep[-1] = True
    return x[keep], y[keep]


def _moved(x: Any, y: Any) -> Any:
    """Which points of a path (`x`, `y`: numpy arrays) are not where the one before is: True
    for the first. Column by column: `np.any(..., axis=1)` over the rows of an (n, 2) array
    takes ten times as long (180 against 20 us for 12,000 points)."""
    import numpy as np

    moved = np.empty(len(x), dtype=bool)
    moved[:1] = True
    np.not_equal(x[1:], x[:-1], out=moved[1:])
    moved[1:] |= y[1:] != y[:-1]
    return moved


def _float_list(values: Any) -> list[float]:
    """A curve's coordinates for its JSON, rounded to 6 decimals (far finer than the thinning;
    shorter numbers halve the time json takes to write them)."""
    import numpy as np

    return np.round(np.asarray(values, dtype=float), 6).tolist()


def curve_png(data: dict, path: str) -> bool:
    """The curve of `roc_curve_data` or `precision_recall_data` as a PNG at `path`, as
    scikit-learn's displays draw it (axes from -0.01 to 1.01, square, the legend in the lower
    right for ROC and the lower left for precision-recall); False without Pillow. The frame,
    ticks, axis labels and title are drawn once per set of texts (`_curve_background`); each
    plot draws its curve and its legend over them (the curve stays inside the frame, clear of
    every text, so the pixels are those of drawing everything in turn).

    The curve's colour is the plot's only one: the curve and the legend's line are drawn in a
    grey level found nowhere else in the plot (neither in its background nor in its legend),
    which the PNG's palette maps to the colour (`write_palette_png`)."""
    if not pillow_available():
        return False
    import numpy as np

    background, (left, top, side, line_height, greys) = _background(
        ("curve", data["title"], data["x_label"], data["y_label"]),
        lambda: _curve_background(data["title"], data["x_label"], data["y_label"]))
    bottom = top + side

    def px(values: Any, horizontal: bool) -> Any:
        scaled = (np.asarray(values, dtype=float) + 0.01) / 1.02 * side
        return left + scaled if horizontal else bottom - scaled

    xs, ys = px(data[data["x"]], True), px(data[data["y"]], False)
    if data.get("steps") == "post" and len(xs) > 1:  # matplotlib's drawstyle="steps-post"
        xs, ys = np.repeat(xs, 2)[1:], np.repeat(ys, 2)[:-1]
    xs, ys = np.rint(xs).astype(int), np.rint(ys).astype(int)
    keep = _moved(xs, ys)  # one vertex per pixel reached: the image is the same, the polyline far shorter
    # [x0, y0, x1, y1, ...]: ImageDraw takes the flat sequence as it takes (x, y) pairs
    points = np.column_stack([xs[keep], ys[keep]]).ravel().tolist()
    tick_font = _font(10)
    legend = data["legend"]
    box_width, box_height = _Canvas.size(legend, tick_font)[0] + 44, line_height + 14
    x1 = left + side - 8 if data["plot"] == "roc_curve" else left + 8 + box_width
    y1 = bottom - 8
    box = [x1 - box_width, y1 - box_height, x1, y1]
    middle = y1 - box_height / 2
    taken = greys | _legend_greys(legend, tick_font)
    free = next((level for level in range(256) if level not in taken), None)
    with _over(background) as canvas:
        ink = free
        if free is None:  # every grey is taken: in RGB
            canvas, ink = _Canvas(0, 0, background.convert("RGB")), _CYCLE[0]
        if len(points) > 2:
            canvas.draw.line(points, fill=ink, width=2)
        canvas.draw.rectangle(box, fill=canvas.ink(_WHITE), outline=canvas.ink(_GRID))  # the legend covers the curve
        canvas.text((x1 - box_width + 36, middle), legend, tick_font, anchor="lm")
        canvas.draw.line([x1 - box_width + 6, middle, x1 - box_width + 30, middle], fill=ink, width=2)
        if free is None:
            canvas.save(path)
        else:
            write_palette_png(canvas.image, free, _CYCLE[0], path)
    return True


_legend_greys_of: dict = {}  # (text, font) -> the grey levels of a legend holding that text


def _legend_greys(text: str, font) -> frozenset:
    """The grey levels of a curve's legend box holding `text` (black on white, drawn as
    `_Canvas.text` draws it, well inside the box's grey outline), kept (up to `_MAX_MASKS`)."""
    key = (text, id(font))
    found = _legend_greys_of.get(key)
    if found is None:
        from PIL import Image

        mask, _ = _text_mask(text, font, "lm", 0)
        on_white = Image.new("L", mask.size, _WHITE[0])
        on_white.paste(_AXIS[0], (0, 0), mask)
        found = frozenset(level for level, count in enumerate(on_white.histogram()) if count) | {_WHITE[0], _GRID[0]}
        with _fonts_lock:
            if len(_legend_greys_of) >= _MAX_MASKS:
                _legend_greys_of.clear()
            _legend_greys_of[key] = found
    return found


def _curve_background(title: str, x_label: str, y_label: str) -> tuple:
    """What every curve with these texts has: the frame, its ticks and their labels, the axis
    labels and the title; and the layout (left, top, side, line height) the curve is drawn in,
    with the grey levels of the background."""
    import numpy as np

    canvas = _Canvas(6.4 * DPI, 4.8 * DPI, mode="L")  # black and white: every pixel a grey
    width, height = canvas.image.size
    tick_font, title_font = _font(10), _font(12)
    line_height = canvas.size("Ag", tick_font)[1]
    left, top = 30 + line_height + canvas.size("0.0", tick_font)[0], 20 + canvas.size(title, title_font)[1] + 12
    side = min(width - left - 30, height - top - (12 + 2 * line_height + 20))
    left = max(left, (width - side) / 2)  # the square plot centred, as matplotlib places an equal-aspect one
    bottom = top + side

    def px(values: Any, horizontal: bool) -> Any:
        scaled = (np.asarray(values, dtype=float) + 0.01) / 1.02 * side
        return left + scaled if horizontal else bottom - scaled

    black = canvas.ink(_AXIS)
    canvas.draw.rectangle([left, top, left + side, bottom], outline=black)
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        tx, ty = float(px([tick], True)[0]), float(px([tick], False)[0])
        canvas.draw.line([tx, bottom, tx, bottom + 4], fill=black)
        canvas.text((tx, bottom + 7), f"{tick:.1f}", tick_font, anchor="mt")
        canvas.draw.line([left - 4, ty, left, ty], fill=black)
        canvas.text((left - 7, ty), f"{tick:.1f}", tick_font, anchor="rm")
    canvas.text((left + side / 2, bottom + 12 + line_height + 4), x_label, tick_font, anchor="mt")
    canvas.text((left - 20 - canvas.size("0.0", tick_font)[0] - line_height / 2, top + side / 2), y_label,
                tick_font, anchor="mm", angle=90)
    canvas.text((left + side / 2, 16), title, title_font, anchor="mt")
    greys = frozenset(level for level, count in enumerate(canvas.image.histogram()) if count)
    return canvas, (left, top, side, line_height, greys)


# -- feature importance -------------------------------------------------------------------------------
def importance_data(values: Mapping[str, Any], importance_type: str) -> dict:
    """What `importance_png` draws: {feature: value or [value per class]}, largest last."""
    return {"plot": "feature_importance", "title": f"Feature Importance ({importance_type})",
            "importance_type": importance_type, "values": {str(k): v for k, v in values.items()}}


def importance_png(values: Mapping[str, Any], importance_type: str, path: str, most: Optional[int] = None) -> bool:
    """A horizontal bar chart of one importance type, as MLflow draws it (features sorted by
    importance, the largest at the top; one bar per class where a value is a list of them);
    with `most`, of the `most` most important features only (the title says so).
    False when there is nothing to draw or no Pillow."""
    if not pillow_available():
        return False
    features = [str(k) for k in values]
    try:
        rows = [_floats(value) for value in values.values()]
    except (TypeError, ValueError):
        return False
    if not rows or any(len(r) != len(rows[0]) for r in rows) or not rows[0]:
        return False
    order = sorted(range(len(rows)), key=lambda i: sum(abs(v) for v in rows[i]))  # stable: ties keep their order
    title = f"Feature Importance ({importance_type})"
    if most is not None and len(order) > most:
        title += f", top {most} of {len(order)}"
        order = order[-most:]
    features, rows = [features[i] for i in order], [rows[i] for i in order]
    n_features, n_classes = len(rows), len(rows[0])
    height_in = 4.8 + (0.1 * n_features if n_features > 10 else 0) + (0.1 * n_classes if n_classes > 1 else 0)
    canvas = _Canvas(6.4 * DPI, height_in * DPI)
    width, height = canvas.image.size
    tick_font, title_font = _font(10), _font(12)
    widest = max(canvas.size(f, tick_font)[0] for f in features)
    left = min(0.6 * width, 20 + widest + 10)
    right = width - 0.04 * width
    top, bottom = 0.4 * DPI, height - 0.6 * DPI
    values_flat = [v for r in rows for v in r]
    low, high = min(0.0, min(values_flat)), max(0.0, max(values_flat))
    margin = 0.05 * ((high - low) or 1.0)  # matplotlib's margins; the bars' base, 0, stays at the edge
    low, high = (low - margin if low < 0 else low), (high + margin if high > 0 else high)
    ticks = _nice_ticks(low, high)
    span = (high - low) or 1.0

    def x_of(v: float) -> float:
        return left + (v - low) / span * (right - left)

    slot = (bottom - top) / n_features
    bar = slot * 0.5 / max(n_classes - 1, 1)  # as MLflow: bars of one feature share half a row
    offsets = [(-0.25 + 0.5 * k / (n_classes - 1)) for k in range(n_classes)] if n_classes > 1 else [0.0]
    for i, row in enumerate(rows):
        centre = bottom - (i + 0.5) * slot
        for k, v in enumerate(row):
            c = centre - offsets[k] * slot
            a, b = sorted((x_of(0.0), x_of(v)))
            canvas.draw.rectangle([a, c - bar / 2, b, c + bar / 2], fill=_CYCLE[k % len(_CYCLE)])
        canvas.draw.line([left - 4, centre, left, centre], fill=_AXIS)
        canvas.text((left - 7, centre), features[i], tick_font, anchor="rm")
    canvas.draw.rectangle([left, top, right, bottom], outline=_AXIS)
    for tick in ticks:
        tx = x_of(tick)
        canvas.draw.line([tx, bottom, tx, bottom + 4], fill=_AXIS)
        canvas.text((tx, bottom + 7), _tick_text(tick), tick_font, anchor="mt")
    canvas.text(((left + right) / 2, height - 8), "Importance", tick_font, anchor="md")
    canvas.text(((left + right) / 2, top / 2), title, title_font, anchor="mm")
    if n_classes > 1:
        _legend(canvas, right, top, [f"Class {k}" for k in range(n_classes)], tick_font)
    canvas.save(path)
    return True


def _floats(value: Any) -> list[float]:
    """One importance value, or one per class, as floats (numpy scalars and arrays too)."""
    if isinstance(value, (str, bytes)):
        raise ValueError("not a number")
    if getattr(value, "ndim", None) == 0 or not hasattr(value, "__iter__"):
        return [float(value)]
    return [float(v) for v in value]


def _legend(canvas: _Canvas, right: float, top: float, names: Sequence[str], font) -> None:
    line = canvas.size("Ag", font)[1] + 6
    widest = max(canvas.size(name, font)[0] for name in names)
    x1 = right - 8
    x0 = x1 - (widest + 36)
    y0 = top + 8
    canvas.draw.rectangle([x0, y0, x1, y0 + line * len(names) + 6], fill=_WHITE, outline=(204, 204, 204))
    for k, name in enumerate(names):
        y = y0 + 4 + k * line + line / 2
        canvas.draw.rectangle([x0 + 6, y - 5, x0 + 24, y + 5], fill=_CYCLE[k % len(_CYCLE)])
        canvas.text((x0 + 30, y), name, font, anchor="lm")
