"""os-release and extension-release files, read exactly as systemd v257 reads them, and the
pure decision whether an extension's release data fits the host.

Sources (systemd v257): src/basic/env-file.c (parse_env_file_internal, check_utf8ness_and_warn),
src/basic/os-util.c (open_os_release_at, open_extension_release_at, path_extract_image_name,
image_name_is_valid), src/shared/extension-util.c (extension_release_validate, with the ID_LIKE
matching that 257.x stable releases gained), src/sysext/sysext.c (merge_subprocess).
"""

from __future__ import annotations

import enum
import errno
import posixpath
import re
from collections.abc import Mapping

from strata.errors import ErrorKind, StrataError
from strata.images.base import DirectoryFS, FileKind, ImageFS
from strata.model import ExtClass, Scope
from strata.parse import parse_boolean
from strata.record import record

# The character classes systemd's parser uses (string-util.h, escape.h). Only these ASCII
# characters are special; everything else, non-ASCII whitespace included, is ordinary.
_WHITESPACE = " \t\n\r"
_NEWLINE = "\n\r"
_COMMENTS = "#;"
_SHELL_NEED_ESCAPE = '"\\`$'
_SHELL_NEED_QUOTES = _SHELL_NEED_ESCAPE + "*?[" + "'()<>|&;!"

#: systemd reads at most this much of a release file (READ_FULL_BYTES_MAX); a bigger one is an
#: error there too, and a guard against hostile images here.
MAX_RELEASE_SIZE = 4 * 1024 * 1024

#: strings systemd's utf8_is_valid() refuses once decoded: lone surrogates (which is how
#: undecodable bytes arrive here, via surrogateescape) and the noncharacters U+FDD0..U+FDEF and
#: U+xFFFE/U+xFFFF of every plane (unichar_is_valid).
_INVALID_UNICHAR = re.compile(
    "[\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)


class _S(enum.Enum):
    """parse_env_file_internal's states."""

    PRE_KEY = enum.auto()
    KEY = enum.auto()
    PRE_VALUE = enum.auto()
    VALUE = enum.auto()
    VALUE_ESCAPE = enum.auto()
    SINGLE_QUOTE_VALUE = enum.auto()
    DOUBLE_QUOTE_VALUE = enum.auto()
    DOUBLE_QUOTE_VALUE_ESCAPE = enum.auto()
    COMMENT = enum.auto()
    COMMENT_ESCAPE = enum.auto()


# states in which end of input still completes an assignment
_PUSH_AT_EOF = frozenset({_S.PRE_VALUE, _S.VALUE, _S.VALUE_ESCAPE, _S.SINGLE_QUOTE_VALUE,
                          _S.DOUBLE_QUOTE_VALUE, _S.DOUBLE_QUOTE_VALUE_ESCAPE})


def _to_text(data: bytes | str) -> str:
    """Bytes → str, keeping undecodable bytes as lone surrogates so that the UTF-8 check can
    happen per key and value, where systemd does it (a bad byte in a comment is harmless).
    systemd walks a C string, so everything from the first NUL on is never seen."""
    if isinstance(data, bytes):
        data = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    else:
        data = data.split("\0", 1)[0]
    return data


def _escape_invalid(s: str) -> str:
    """utf8_escape_invalid(): show what was refused, with U+FFFD for each bad character."""
    return _INVALID_UNICHAR.sub("\ufffd", s)


class _Parser:
    """One run of systemd's env-file state machine over a text."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.result: dict[str, str] = {}
        self.key: list[str] = []
        self.value: list[str] = []
        # index where trailing whitespace starts (systemd's last_{key,value}_whitespace)
        self.key_ws: int | None = None
        self.value_ws: int | None = None
        self.line = 1  # current line, counting "\n" (for messages only)
        self.key_line = 1  # line the current assignment began on

    def push(self, *, trim_value: bool) -> None:
        key = "".join(self.key[: self.key_ws] if self.key_ws is not None else self.key)
        chars = self.value
        if trim_value and self.value_ws is not None:
            chars = chars[: self.value_ws]
        value = "".join(chars)
        if _INVALID_UNICHAR.search(key):
            raise StrataError(
                f"{self.source}:{self.key_line}: invalid UTF-8 in key '{_escape_invalid(key)}'",
                kind=ErrorKind.INVALID, errno=errno.EINVAL)
        if _INVALID_UNICHAR.search(value):
            raise StrataError(
                f"{self.source}:{self.key_line}: invalid UTF-8 value for key {key}: "
                f"'{_escape_invalid(value)}'",
                kind=ErrorKind.INVALID, errno=errno.EINVAL)
        # Last assignment wins; the key keeps its first position (load_env_file_pairs).
        self.result[key] = value
        self.key = []
        self.value = []

    def run(self, text: str) -> dict[str, str]:
        state = _S.PRE_KEY
        for c in text:
            if state is _S.PRE_KEY:
                if c in _COMMENTS:
                    state = _S.COMMENT
                elif c not in _WHITESPACE:
                    state = _S.KEY
                    self.key_ws = None
                    self.key_line = self.line
                    self.key.append(c)
            elif state is _S.KEY:
                if c in _NEWLINE:
                    # A line without "=" is dropped silently, as systemd does.
                    state = _S.PRE_KEY
                    self.key = []
                elif c == "=":
                    state = _S.PRE_VALUE
                    self.value_ws = None
                else:
                    if c not in _WHITESPACE:
                        self.key_ws = None
                    elif self.key_ws is None:
                        self.key_ws = len(self.key)
                    self.key.append(c)
            elif state is _S.PRE_VALUE:
                if c in _NEWLINE:
                    state = _S.PRE_KEY
                    self.push(trim_value=False)
                elif c == "'":
                    state = _S.SINGLE_QUOTE_VALUE
                elif c == '"':
                    state = _S.DOUBLE_QUOTE_VALUE
                elif c == "\\":
                    state = _S.VALUE_ESCAPE
                elif c not in _WHITESPACE:
                    state = _S.VALUE
                    self.value.append(c)
            elif state is _S.VALUE:
                if c in _NEWLINE:
                    state = _S.PRE_KEY
                    self.push(trim_value=True)
                elif c == "\\":
                    state = _S.VALUE_ESCAPE
                    self.value_ws = None
                else:
                    # Quotes are literal here: A=foo"bar" is foo"bar".
                    if c not in _WHITESPACE:
                        self.value_ws = None
                    elif self.value_ws is None:
                        self.value_ws = len(self.value)
                    self.value.append(c)
            elif state is _S.VALUE_ESCAPE:
                state = _S.VALUE
                if c not in _NEWLINE:  # backslash-newline: a continuation line
                    self.value.append(c)
            elif state is _S.SINGLE_QUOTE_VALUE:
                if c == "'":
                    state = _S.PRE_VALUE  # so A='x'"y" concatenates
                else:
                    self.value.append(c)
            elif state is _S.DOUBLE_QUOTE_VALUE:
                if c == '"':
                    state = _S.PRE_VALUE
                elif c == "\\":
                    state = _S.DOUBLE_QUOTE_VALUE_ESCAPE
                else:
                    self.value.append(c)
            elif state is _S.DOUBLE_QUOTE_VALUE_ESCAPE:
                state = _S.DOUBLE_QUOTE_VALUE
                if c in _SHELL_NEED_ESCAPE:
                    self.value.append(c)
                elif c != "\n":
                    # Like the shell: an unneeded escape keeps its backslash ("\r" too).
                    self.value.append("\\")
                    self.value.append(c)
            elif state is _S.COMMENT:
                if c == "\\":
                    state = _S.COMMENT_ESCAPE
                elif c in _NEWLINE:
                    state = _S.PRE_KEY
            elif state is _S.COMMENT_ESCAPE:
                # Since v254 a backslash does not continue a comment onto the next line.
                state = _S.PRE_KEY if c in _NEWLINE else _S.COMMENT
            if c == "\n":
                self.line += 1

        if state in _PUSH_AT_EOF:
            # An unterminated quote is not an error for systemd: the value is what was read.
            self.push(trim_value=state is _S.VALUE)
        return self.result


def parse_env(data: bytes | str, *, source: str) -> dict[str, str]:
    """Parse an os-release style file exactly as systemd's parse_env_file/load_env_file_pairs.

    Rules (all systemd's): ``#``/``;`` start a comment only at the start of a line (after
    whitespace); keys are taken verbatim (leading whitespace skipped, trailing whitespace
    dropped, never validated; a line without ``=`` is ignored); a value may mix bare, ``'...'``
    and ``"..."`` parts; bare parts lose trailing whitespace and ``\\x`` means ``x``;
    inside double quotes only ``\\" \\\\ \\` \\$`` are unescaped, other escapes keep their
    backslash; backslash-newline continues a line (bare or double-quoted); an unterminated
    quote runs to the end of the file; reading stops at a NUL byte; the last assignment wins.

    The only thing systemd rejects is a key or value that is not valid UTF-8 (noncharacters
    included): StrataError(kind=INVALID) "<source>:<line>: invalid UTF-8 ...". The line is the
    one the assignment starts on (systemd's message reports the line after it).
    """
    return _Parser(source).run(_to_text(data))


class _PairRecorder(dict[str, str]):
    """The parser's result mapping, also keeping every assignment in order: the parser stores
    each one with `result[key] = value`, so recording here sees them all, repeats included."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[tuple[str, str]] = []

    def __setitem__(self, key: str, value: str) -> None:
        self.pairs.append((key, value))
        super().__setitem__(key, value)


def parse_env_pairs(data: bytes | str, *, source: str) -> list[tuple[str, str]]:
    """parse_env(), but every assignment as a (key, value) pair in file order, a repeated key
    each time it appears. systemd itself keeps only the last value; Avocado's keys
    (AVOCADO_ON_MERGE=, AVOCADO_ON_UNMERGE=) may repeat and every line counts, and for
    AVOCADO_MODPROBE= only the first does. Same syntax and the same errors as parse_env()."""
    parser = _Parser(source)
    recorder = _PairRecorder()
    parser.result = recorder
    parser.run(_to_text(data))
    return recorder.pairs


def read_env_file(path: str) -> dict[str, str]:
    """parse_env() of a file on this machine; a missing file is NOT_FOUND naming the path."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_RELEASE_SIZE + 1)
    except OSError as e:
        raise StrataError.from_os(e, path) from e
    if len(data) > MAX_RELEASE_SIZE:
        raise StrataError(f"{path}: file is larger than {MAX_RELEASE_SIZE} bytes",
                          kind=ErrorKind.INVALID, errno=errno.E2BIG)
    return parse_env(data, source=path)


def quote_env_value(value: str) -> str:
    """Quote a value the way systemd writes env files (write_env_var), so that parse_env()
    reads it back unchanged: bare if harmless, else double-quoted with ``"\\`$`` escaped."""
    if any(c in _WHITESPACE or c in _SHELL_NEED_QUOTES or ord(c) < 0x20 or ord(c) == 0x7F
           for c in value):
        return '"' + "".join("\\" + c if c in _SHELL_NEED_ESCAPE else c for c in value) + '"'
    return value


def format_env(fields: Mapping[str, str]) -> str:
    """Render KEY=VALUE lines (e.g. an extension-release file) that parse_env() reads back."""
    return "".join(f"{k}={quote_env_value(v)}\n" for k, v in fields.items())


# ---------------------------------------------------------------------------------------------
# The host's os-release


def _split_ws(value: str) -> tuple[str, ...]:
    """strv_split(value, WHITESPACE): ASCII whitespace only, empty parts dropped."""
    return tuple(p for p in re.split(r"[ \t\n\r]+", value) if p)


@record
class HostRelease:
    """The host's os-release: where it was found (a path on this machine) and all its fields."""

    path: str
    fields: dict[str, str]

    @property
    def id(self) -> str:
        return self.fields.get("ID", "")

    @property
    def id_like(self) -> tuple[str, ...]:
        return _split_ws(self.fields.get("ID_LIKE", ""))

    @property
    def version_id(self) -> str:
        return self.fields.get("VERSION_ID", "")

    def level(self, cls: ExtClass) -> str:
        """SYSEXT_LEVEL or CONFEXT_LEVEL, "" when absent."""
        return self.fields.get(cls.level_key, "")


def _host_path(root: str, image_path: str) -> str:
    return posixpath.join(root, image_path.lstrip("/")) if image_path != "/" else root


def load_host_release(root: str, env: Mapping[str, str]) -> HostRelease:
    """open_os_release_at() + sysext's checks: <root>/etc/os-release, else
    <root>/usr/lib/os-release, symlinks resolved with <root> as "/". If SYSTEMD_OS_RELEASE is
    set in `env` it is the only path tried (also resolved inside <root>), as in systemd.

    Errors (all fatal for systemd-sysext, even with --force): no os-release → NOT_FOUND naming
    the root and the path(s) tried; unreadable/malformed → the file's error; empty or missing
    ID → INVALID "'ID' field not found or empty in 'os-release' data of OS tree '<root>'".
    """
    fs = DirectoryFS(root)
    try:
        fs.lstat("/")
    except StrataError as e:
        raise StrataError(f"Failed to acquire 'os-release' data of OS tree '{root}': {e}",
                          kind=e.kind, errno=e.errno) from e
    override = env.get("SYSTEMD_OS_RELEASE")
    candidates = (override,) if override is not None else ("/etc/os-release",
                                                           "/usr/lib/os-release")
    resolved: str | None = None
    for candidate in candidates:
        try:
            resolved = fs.resolve(candidate)
        except StrataError as e:
            if e.kind is ErrorKind.NOT_FOUND:
                continue
            raise
        break
    if resolved is None:
        tried = " nor ".join(_host_path(root, c) for c in candidates)
        if override is None:
            what = f"neither {tried} exists"
        else:
            what = f"{tried} (from $SYSTEMD_OS_RELEASE) does not exist"
        raise StrataError(f"Failed to acquire 'os-release' data of OS tree '{root}': {what}",
                          kind=ErrorKind.NOT_FOUND, errno=errno.ENOENT)
    path = _host_path(root, resolved)
    if fs.lstat(resolved).kind is not FileKind.REGULAR:
        raise StrataError(f"Failed to acquire 'os-release' data of OS tree '{root}': "
                          f"{path} is not a regular file", kind=ErrorKind.INVALID)
    # Read through the root-confined view, not the host path, so that nothing swapped in
    # after resolution can lead outside the root.
    fields = _read_release(fs, resolved, source=path)
    if not fields.get("ID"):
        raise StrataError(
            f"'ID' field not found or empty in 'os-release' data of OS tree '{root}' ({path})",
            kind=ErrorKind.INVALID, errno=errno.EINVAL)
    return HostRelease(path=path, fields=fields)


def scope_of_root(root: str) -> Scope:
    """INITRD if <root>/etc/initrd-release exists (symlinks resolved inside root), else SYSTEM.

    This is v262's rule. v257 instead asks in_initrd() about the *running* system: the real
    /etc/initrd-release, overridable with $SYSTEMD_IN_INITRD, whatever --root says. Looking at
    the root is what makes --root=<initrd tree> behave like the initrd it describes.
    """
    try:
        DirectoryFS(root).resolve("/etc/initrd-release")
    except StrataError as e:
        if e.kind is ErrorKind.NOT_FOUND:
            return Scope.SYSTEM
        raise
    return Scope.INITRD


# ---------------------------------------------------------------------------------------------
# Image names and extension-release lookup

_NAME_MAX = 255
_PATH_MAX = 4096


def image_name_is_valid(name: str) -> bool:
    """image_name_is_valid(): a valid file name, no control characters, valid UTF-8, not a
    temporary ".#" file."""
    if not name or name in (".", "..") or "/" in name:
        return False
    if len(name.encode("utf-8", "surrogatepass")) > _NAME_MAX:
        return False
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return False
    if _INVALID_UNICHAR.search(name):
        return False
    return not name.startswith(".#")


def image_name_from_path(path: str) -> str:
    """path_extract_image_name(): the last path component; unless the path ends in "/", strip
    one of ".sysext.raw", ".confext.raw", ".raw"; then cut at the first "_" or "+" (version and
    boot-counting suffixes). "foo_1.2+3.raw" → "foo". An unusable result is INVALID."""
    if not path or len(path.encode("utf-8", "surrogatepass")) >= _PATH_MAX:
        raise StrataError(f"invalid image path '{path}'", kind=ErrorKind.INVALID,
                          errno=errno.EINVAL)
    parts = path.split("/")
    if any(len(p.encode("utf-8", "surrogatepass")) > _NAME_MAX for p in parts):
        raise StrataError(f"invalid image path '{path}': a component is too long",
                          kind=ErrorKind.INVALID, errno=errno.EINVAL)
    # path_find_last_component(): trailing "/" and "." components are skipped
    idx = next((i for i in range(len(parts) - 1, -1, -1) if parts[i] not in ("", ".")), None)
    if idx is None:
        raise StrataError(f"image path '{path}' has no file name", kind=ErrorKind.INVALID,
                          errno=errno.EADDRNOTAVAIL)
    name = parts[idx]
    if name == "..":
        raise StrataError(f"image path '{path}' ends in '..'", kind=ErrorKind.INVALID,
                          errno=errno.EINVAL)
    if idx == len(parts) - 1:  # no trailing "/": may be an image file
        for suffix in (".sysext.raw", ".confext.raw", ".raw"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
    name = re.split(r"[_+]", name, maxsplit=1)[0]
    if not image_name_is_valid(name):
        raise StrataError(f"image path '{path}' gives no valid image name ('{name}')",
                          kind=ErrorKind.INVALID, errno=errno.EINVAL)
    return name


STRICT_XATTR = "user.extension-release.strict"


@record
class ReleaseLookup:
    """What find_extension_release() found: the image path of the release file and its fields,
    or neither and a `problem` saying why (which systemd would only log at debug level)."""

    path: str | None
    fields: dict[str, str] | None
    problem: str | None = None

    @property
    def found(self) -> bool:
        return self.fields is not None


def _strict_xattr_allows(fs: ImageFS, path: str) -> bool:
    """getxattr_at_bool() == false: only an explicit, parseable "false" lets a file whose name
    does not match be used. Absent, unparseable, with a NUL byte, or true → no."""
    raw = fs.getxattr(path, STRICT_XATTR)
    if raw is None or b"\0" in raw:
        return False
    return parse_boolean(raw.decode("latin-1")) is False


def _read_release(fs: ImageFS, path: str, *, source: str | None = None) -> dict[str, str]:
    """Read and parse a release file inside `fs`; messages name `source` (default
    "<image>:<path>")."""
    data = fs.read(path, limit=MAX_RELEASE_SIZE + 1)
    source = source if source is not None else f"{fs.label}:{path}"
    if len(data) > MAX_RELEASE_SIZE:
        raise StrataError(f"{source}: file is larger than {MAX_RELEASE_SIZE} bytes",
                          kind=ErrorKind.INVALID, errno=errno.E2BIG)
    return parse_env(data, source=source)


def _missing(problem: str) -> ReleaseLookup:
    return ReleaseLookup(path=None, fields=None, problem=problem)


def find_extension_release(fs: ImageFS, cls: ExtClass, name: str, *,
                           relaxed: bool = False) -> ReleaseLookup:
    """open_extension_release_at() + load: find and parse the image's release file.

    1. ``<release_dir>/extension-release.<name>``, symlinks chased inside the image.
    2. Else scan ``<release_dir>``: regular files ``extension-release.X`` with a valid X. In
       strict mode (default) X must equal image_name_from_path(name), or the file must carry
       ``user.extension-release.strict`` = false; relaxed mode takes any. More than one
       candidate is ENOTUNIQ, i.e. no data.

    Not finding data is not an error (the image is then ignored as "carries no release data"):
    the result says why in `problem`. A release file that is found but malformed (invalid
    UTF-8, too large) is a StrataError(kind=INVALID) naming the image and the file; systemd
    only logs that at debug level and treats it as no data, so callers wanting systemd's exact
    outcome catch it and carry on.
    """
    if not image_name_is_valid(name):
        return _missing(f"The extension name {name} is invalid.")
    release_dir = "/" + cls.release_dir
    exact = f"{release_dir}/extension-release.{name}"
    try:
        resolved = fs.resolve(exact)
    except StrataError as e:
        if e.kind is not ErrorKind.NOT_FOUND:
            if e.errno == errno.ELOOP:
                return _missing(str(e))
            raise
    else:
        if fs.lstat(resolved).kind is not FileKind.REGULAR:
            return _missing(f"{fs.label}:{resolved}: not a regular file")
        return ReleaseLookup(path=resolved, fields=_read_release(fs, resolved))

    try:
        dir_path = fs.resolve(release_dir)
        if fs.lstat(dir_path).kind is not FileKind.DIRECTORY:
            return _missing(f"Cannot open {release_dir}/: Not a directory")
        entries = fs.listdir(dir_path)
    except StrataError as e:
        if e.kind is ErrorKind.NOT_FOUND or e.errno == errno.ELOOP:
            return _missing(f"Cannot open {release_dir}/: {e}")
        raise

    base: str | None = None
    if not relaxed:
        try:
            base = image_name_from_path(name)
        except StrataError as e:
            return _missing(f"Failed to extract image name from {name}: {e}")

    accepted: list[str] = []
    for entry in entries:
        if not entry.startswith("extension-release."):
            continue
        image_name = entry[len("extension-release."):]
        if not image_name_is_valid(image_name):
            continue
        path = posixpath.join(dir_path, entry)
        if fs.lstat(path).kind is not FileKind.REGULAR:
            continue
        if base is not None and image_name != base and not _strict_xattr_allows(fs, path):
            continue
        accepted.append(path)

    if not accepted:
        if relaxed:
            why = f"no extension-release.* file in {dir_path}"
        else:
            why = (f"no {exact}, and no file in {dir_path} is named for '{base}' or marked "
                   f"{STRICT_XATTR}=false")
        return _missing(f"{fs.label}: {why}")
    if len(accepted) > 1:
        return _missing(f"{fs.label}: more than one release file could belong to '{name}' "
                        f"({', '.join(sorted(accepted))}): Name not unique on network")
    return ReleaseLookup(path=accepted[0], fields=_read_release(fs, accepted[0]))


# ---------------------------------------------------------------------------------------------
# Compatibility


@record
class Verdict:
    """Whether an extension may be merged, and systemd's words for why (naming the image)."""

    accepted: bool
    reason: str


def check_compatibility(host: HostRelease, ext: Mapping[str, str] | None, *, name: str,
                        cls: ExtClass, scope: Scope, arch: str) -> Verdict:
    """extension_release_validate() (v257.x): the first failing rule rejects the image.

     1. no release data → reject
     2. <CLASS>_SCOPE (whitespace list; absent = "system portable") must contain `scope`
     3. ARCHITECTURE, unless empty or "_any", must equal `arch`
     4. ID must be present and non-empty
     5. ID=_any → accept, no version checks
     6. ID must equal the host's ID or be one of the host's ID_LIKE words
     7. host has neither VERSION_ID nor <CLASS>_LEVEL → accept (rolling release)
     8. both sides have <CLASS>_LEVEL → must be equal (VERSION_ID is then ignored)
     9. else if the host has VERSION_ID → the extension's VERSION_ID must equal it
    10. else (host has only a level, extension none) → accept

    An empty value counts as absent everywhere except <CLASS>_SCOPE, where "" rejects.
    """
    if not ext:
        return Verdict(False, f"Extension '{name}' carries no release data, ignoring.")

    scope_value = ext.get(cls.scope_key)
    scopes = _split_ws(scope_value) if scope_value is not None else ("system", "portable")
    if scope.value not in scopes:
        return Verdict(False, f"Extension '{name}' is not suitable for scope {scope.value}, "
                              "ignoring.")

    ext_arch = ext.get("ARCHITECTURE", "")
    if ext_arch and ext_arch not in ("_any", arch):
        return Verdict(False, f"Extension '{name}' is for architecture '{ext_arch}', but "
                              f"deployed on top of '{arch}'.")

    ext_id = ext.get("ID", "")
    if not ext_id:
        return Verdict(False, f"Extension '{name}' does not contain ID in release file but "
                              f"requested to match '{host.id}' or be '_any'")
    if ext_id == "_any":
        return Verdict(True, f"Extension '{name}' matches '_any' OS.")

    if ext_id != host.id and ext_id not in host.id_like:
        like = host.fields.get("ID_LIKE")
        like_note = f" (like '{like}')" if like is not None else ""
        return Verdict(False, f"Extension '{name}' is for OS '{ext_id}', but deployed on top "
                              f"of '{host.id}'{like_note}.")

    host_version = host.version_id
    host_level = host.level(cls)
    if not host_version and not host_level:
        return Verdict(True, f"No version info on the host (rolling release?), but ID in "
                             f"{name} matched.")

    ext_level = ext.get(cls.level_key, "")
    if host_level and ext_level:
        if host_level != ext_level:
            return Verdict(False, f"Extension '{name}' is for API level '{ext_level}', but "
                                  f"running on API level '{host_level}'")
    elif host_version:
        ext_version = ext.get("VERSION_ID", "")
        if not ext_version:
            return Verdict(False, f"Extension '{name}' does not contain VERSION_ID in release "
                                  f"file but requested to match '{host_version}'")
        if ext_version != host_version:
            return Verdict(False, f"Extension '{name}' is for OS '{ext_version}', but deployed "
                                  f"on top of '{host_version}'.")

    return Verdict(True, f"Version info of extension '{name}' matches host.")
