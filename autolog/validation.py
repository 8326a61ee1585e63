"""Checks and normalisation of what is logged: keys, param and tag values, metric values.

Two modes. The manual API (`autolog.log_param(...)`) raises a clear error on bad
input. Automatic logging (integrations) normalises instead, as documented here:

- keys: at most 250 characters of letters, digits, `_ - . / : ` and space; they may not
  start with `/` or contain `..`. Normalised: other characters become `_`, a long key is
  cut to 250 characters.
- param values: text, at most 6000 characters; tag values at most 8000. Normalised:
  `str()` of simple values, `repr()` of anything else, longer text cut with a marker
  `...[truncated N chars]`; a value whose `repr` raises becomes `<unrepresentable TYPE>`.
- metric values: anything `float()` accepts (Python and numpy numbers, 0-d arrays,
  one-element torch tensors, bools); NaN and +-inf are stored as such.
- text that UTF-8 cannot encode (lone surrogates: a file name with a non-UTF-8 byte read
  through `sys.argv` or `os.listdir` arrives as U+DC80..U+DCFF) is normalised at the edge:
  each undecodable byte or lone surrogate becomes U+FFFD (`clean_text`), in param and tag
  values, run and experiment names; keys with them are refused (manual API) or have them
  replaced by `_` (automatic logging).
- secrets: values whose key looks like a password, token, secret, API/access/private
  key or credential are replaced by `[REDACTED]`; credentials in URLs are stripped.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
REDACTED = "[REDACTED]"

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-. /:]+$")
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:]")
_SECRET_NAME_RE = re.compile(
    r"(pass(word|wd|phrase)?|pwd|(?<![a-z])pw(?![a-z])|secret|token|api[-_]?key|apikey|access[-_]?key|private[-_]?key|"
    r"credential|auth(orization)?|bearer|session[-_]?key|signature)",
    re.IGNORECASE,
)
_URL_CREDENTIALS_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s:]+(:[^/@\s]*)?@")

# keys already checked; bounded so that a stream of unique keys cannot grow it forever
_valid_keys: set[str] = set()
_VALID_KEYS_MAX = 100_000


def check_key(key: Any, kind: str = "key") -> str:
    """Return `key` if valid, else raise ValueError saying why (manual API)."""
    if key in _valid_keys:
        return key
    if not isinstance(key, str):
        raise TypeError(f"{kind} must be a string, not {type(key).__name__}: {key!r}")
    problem = _key_problem(key)
    if problem:
        raise ValueError(f"invalid {kind} {key!r}: {problem}")
    if len(_valid_keys) < _VALID_KEYS_MAX:
        _valid_keys.add(key)
    return key


def _key_problem(key: str) -> str:
    if not key:
        return "it is empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"it is {len(key)} characters long, the limit is {MAX_KEY_LENGTH}"
    if not _KEY_RE.match(key):
        return "only letters, digits, underscores, dashes, periods, slashes, colons and spaces are allowed"
    if key.startswith("/") or ".." in key:
        return "it may not start with '/' or contain '..'"
    return ""


def normalize_key(key: Any) -> str:
    """Make any key valid (automatic logging)."""
    if isinstance(key, str) and key in _valid_keys:
        return key
    text = key if isinstance(key, str) else str(key)
    text = _BAD_KEY_CHARS.sub("_", text).lstrip("/")
    while ".." in text:
        text = text.replace("..", "._")
    text = text[:MAX_KEY_LENGTH] or "_"
    if len(_valid_keys) < _VALID_KEYS_MAX:
        _valid_keys.add(text)
    return text


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with a marker that counts what was cut."""
    if len(text) <= limit:
        return text
    removed = len(text) - limit
    if len(f"...[truncated {len(text)} chars]") > limit:
        return text[:limit]  # a limit too small for the marker: a plain cut
    while True:  # the marker's own length depends on the count it shows
        marker = f"...[truncated {removed} chars]"
        keep = max(0, limit - len(marker))
        if len(text) - keep == removed:
            return text[:keep] + marker
        removed = len(text) - keep


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` as UTF-8 can store it: the bytes `surrogateescape` kept (a non-UTF-8 file name
    in argv) and any other lone surrogate become U+FFFD. ASCII text is returned at once."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # surrogates surrogateescape did not make
        return _SURROGATE_RE.sub("\ufffd", text)


def value_to_text(value: Any, limit: int = MAX_PARAM_VALUE_LENGTH) -> str:
    """The readable text of a param or tag value, truncated with a marker past `limit`;
    text UTF-8 cannot encode is cleaned (`clean_text`)."""
    if isinstance(value, str):
        text = clean_text(value)
    elif value is None or isinstance(value, (bool, int, float)):
        text = str(value)
    else:
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 - a value's own repr may be broken
            text = f"<unrepresentable {type(value).__name__}>"
        else:
            text = clean_text(text)
    return truncate(text, limit)


def metric_value(value: Any) -> float:
    """float() of a metric value; raises TypeError/ValueError for what is not a number."""
    if type(value) is float:
        return value
    if isinstance(value, (str, bytes)):
        raise TypeError(f"metric value must be a number, not {type(value).__name__}: {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"metric value must be a number, got {type(value).__name__}: {_safe_repr(value)}") from None


def _safe_repr(value: Any) -> str:
    """repr() for an error message; a value whose repr raises must not replace the error."""
    try:
        return truncate(repr(value), 200)
    except Exception:  # noqa: BLE001
        return f"<unrepresentable {type(value).__name__}>"


#: steps and timestamps are stored as signed 64-bit integers, as MLflow stores them
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def metric_int(value: Any, what: str) -> int:
    """int() of a metric's step or timestamp; ValueError past a signed 64-bit integer."""
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"metric {what} must be an integer, got {type(value).__name__}: {value!r}") from None
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"metric {what} {number} does not fit in a signed 64-bit integer")
    return number


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME_RE.search(name or ""))


#: secrets recognised inside any text, whatever its name: `password=...` / `pwd=...` pairs
#: (libpq and ODBC connection strings), `Authorization: Bearer ...` / `Basic ...` headers, and
#: `token=` style query parameters
_SECRET_VALUE_RES = (
    re.compile(r"(?i)\b(pass(?:word|wd)?|pwd|pw|secret|token|api[-_]?key|access[-_]?key)(\s*[=:]\s*)"
               r"(\"[^\"]*\"|'[^']*'|[^\s;&,]+)"),
    re.compile(r"(?i)\b(authorization\s*[:=]\s*)(bearer|basic|token)?(\s*)([^\s,;\"']+)"),
    re.compile(r"(?i)\b(bearer)(\s+)([A-Za-z0-9._~+/=-]{8,})"),
)


def redact_text(text: str) -> str:
    """`text` with URL credentials stripped and secrets found by value pattern replaced."""
    if "@" in text:
        text = strip_url_credentials(text)
    if "=" in text or ":" in text or "earer" in text:
        first, header, bearer = _SECRET_VALUE_RES
        text = first.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        text = header.sub(lambda m: m.group(1) + (m.group(2) or "") + (m.group(3) or "") + REDACTED
                          if m.group(4) != REDACTED else m.group(0), text)
        text = bearer.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return text


def strip_url_credentials(text: str) -> str:
    return _URL_CREDENTIALS_RE.sub(lambda m: m.group("scheme"), text)


#: option strings of argparse actions whose name (any option string, or dest) looks secret:
#: `-p` when the parser declared `-p/--password`; filled as parsers parse (provenance/arguments.py)
secret_options: set[str] = set()


def redact_value(name: str, value: Any) -> Any:
    """REDACTED when the name looks secret; secrets found by value pattern redacted in text."""
    if is_secret_name(str(name)):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the values of secret-looking options replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-") and "=" in arg:
            name, _, _value = arg.partition("=")
            secret = is_secret_name(name) or name in secret_options
            out.append(f"{name}={REDACTED}" if secret else redact_text(arg))
            continue
        if arg.startswith("-") and (is_secret_name(arg) or arg in secret_options):
            out.append(arg)
            hide_next = True
            continue
        short = arg[:2]
        if len(arg) > 2 and arg[0] == "-" and arg[1] != "-" and short in secret_options:
            out.append(short + REDACTED)  # `-psecret`: a short option with its value attached
            continue
        out.append(redact_text(arg))
    return out


_RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_run_id(run_id: Any) -> str:
    """`run_id` if it is safe as a file name (letters, digits, `_`, `-`; at most 64): ids come
    from stores, journals and MLflow tags any server user can set, and name folders."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise ValueError(f"unsafe run id {run_id!r}: only letters, digits, '_' and '-' (at most 64)")
    return run_id


def is_safe_relative_path(path: str) -> bool:
    """A "/"-separated path that stays inside the folder it is relative to."""
    text = str(path).replace("\\", "/")
    return bool(text) and not text.startswith("/") and not (len(text) > 1 and text[1] == ":") and \
        all(part not in ("..", "") for part in text.split("/"))


def redact_command_tag(key: str, value: Any) -> Any:
    """A command-line tag made before a parser told which short options are secret (`-p` of
    `-p/--password`) redacted again with what is known now (split at spaces as it was joined)."""
    if secret_options and isinstance(value, str) and key.endswith(".command"):
        return " ".join(redact_argv(value.split(" ")))
    return value


def is_finite(value: float) -> bool:
    return math.isfinite(value)
