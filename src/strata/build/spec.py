"""The build spec: a strict YAML file describing one extension (`strata build SPEC.yaml`).

A Dalec spec with `name`, `version`, `revision`, `license`, `description` and
`dependencies.sysext` builds as is; everything else is Strata's own (docs/reference.md,
strata-build(8), has the whole schema). Strict means: an unknown key, a value of the wrong type
or an invalid name is an error naming the file, the line and the key ("spec.yaml:12:
compatibility.levle: unknown key ..."), never a silent default.

YAML is read with a deliberately small schema: only `true`/`false`, `null`/`~`/empty and
decimal integers without leading zeros are typed; everything else is a string. So
`version: 1.10` stays "1.10" (not the float 1.1), `id: no` stays "no", and `mode: 0755` is the
string "0755", read as octal.
"""

from __future__ import annotations

import enum
import posixpath
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass, Scope
from strata.record import record

# --------------------------------------------------------------------------------------------
# Vocabulary


class ClassChoice(enum.Enum):
    """Which images one spec makes."""

    SYSEXT = "sysext"
    CONFEXT = "confext"
    BOTH = "both"  # a sysext for /usr and /opt plus a companion confext for /etc

    @property
    def classes(self) -> tuple[ExtClass, ...]:
        if self is ClassChoice.BOTH:
            return (ExtClass.SYSEXT, ExtClass.CONFEXT)
        return (ExtClass(self.value),)


class EtcMode(enum.Enum):
    """Where files the sources put in /etc go."""

    CONFEXT = "confext"  # into the confext (class confext or both)
    TMPFILES = "tmpfiles"  # Dalec's: /usr/share/<name>/etc, copied back by tmpfiles `C+` lines
    DROP = "drop"  # left out, with a warning


class MergedBin(enum.Enum):
    """Whether usr/sbin is folded into usr/bin (see normalize.merged_bin_for)."""

    AUTO = "auto"
    YES = "yes"
    NO = "no"


class OutputFormat(enum.Enum):
    EROFS = "erofs"
    SQUASHFS = "squashfs"
    DIRECTORY = "directory"
    DDI = "ddi"  # a GPT disk image (DPS) holding an erofs/squashfs root partition


class Verity(enum.Enum):
    """What protects a DDI's file system (mkosi's Verity=, systemd-repart's Verity=)."""

    SIGNED = "signed"  # a dm-verity hash tree and a signed root hash
    HASH = "hash"  # a hash tree; the root hash is stated by the partition UUIDs only
    NONE = "none"  # no verity partitions


class Compression(enum.Enum):
    """Compressors, each valid for the formats in FORMAT_COMPRESSION."""

    LZ4HC = "lz4hc"
    LZ4 = "lz4"
    GZIP = "gzip"
    XZ = "xz"
    ZSTD = "zstd"
    LZO = "lzo"
    NONE = "none"


#: compressors per image format (erofs-utils 1.5 knows only lz4 and lz4hc), the first the default
FORMAT_COMPRESSION: Mapping[OutputFormat, tuple[Compression, ...]] = {
    OutputFormat.EROFS: (Compression.LZ4HC, Compression.LZ4, Compression.NONE),
    OutputFormat.SQUASHFS: (Compression.GZIP, Compression.XZ, Compression.ZSTD,
                            Compression.LZ4, Compression.LZO, Compression.NONE),
    OutputFormat.DIRECTORY: (Compression.NONE,),
}

#: (format, compressor) -> accepted levels (inclusive); absent: the compressor takes no level
LEVELS: Mapping[tuple[OutputFormat, Compression], tuple[int, int]] = {
    (OutputFormat.EROFS, Compression.LZ4HC): (1, 12),
    (OutputFormat.SQUASHFS, Compression.GZIP): (1, 9),
    (OutputFormat.SQUASHFS, Compression.ZSTD): (1, 22),
    (OutputFormat.SQUASHFS, Compression.LZO): (1, 9),
}


class NamePattern(enum.Enum):
    """How output files are named (naming.py)."""

    DEFAULT = "default"  # <name>-<version>-<arch>.raw (sysext-bakery's release names)
    DALEC = "dalec"  # <name>-v<version>-<revision>-<target>-<arch>.raw
    BARE = "bare"  # <name>.raw (what Flatcar and sysupdate's CurrentSymlink= expect)


# --------------------------------------------------------------------------------------------
# The spec


@record
class Compatibility:
    id: str = "_any"
    version_id: str | None = None
    level: str | None = None  # SYSEXT_LEVEL / CONFEXT_LEVEL
    architecture: str | None = None  # None: the build host's; "_any": any
    scope: tuple[Scope, ...] | None = None  # None: unset (systemd: "system portable")


@record
class TreeSource:
    """A directory copied into the image at `to`."""

    path: Path
    to: str = "/"


@record
class FileSource:
    """One file copied to `to` (an image path), with `mode` or the file's own."""

    path: Path
    to: str
    mode: int | None = None


@record
class PackageSource:
    """A local .deb or .rpm, extracted (never installed)."""

    path: Path


@record
class AptSource:
    """A Debian package fetched with `apt-get download` (no dependency resolution)."""

    name: str
    version: str | None = None  # exact version, or the candidate
    arches: tuple[str, ...] | None = None  # Dalec's `arch:`: only for these Debian arches


Source = TreeSource | FileSource | PackageSource | AptSource


@record
class Normalize:
    merged_bin: MergedBin = MergedBin.AUTO
    etc: EtcMode | None = None  # None: by class (confext when there is one, else tmpfiles)
    exclude: tuple[str, ...] = ()  # fnmatch patterns on image paths


@record
class Services:
    units: tuple[Path, ...] = ()  # unit files, installed in usr/lib/systemd/system
    restart: tuple[str, ...] = ()  # EXTENSION_RESTART_UNITS=
    reload_or_restart: tuple[str, ...] = ()  # EXTENSION_RELOAD_OR_RESTART_UNITS=
    upholds: tuple[str, ...] = ()  # started with the system: multi-user.target Upholds=
    reload_manager: bool | None = None  # None: when the image ships units


@record
class Hooks:
    on_merge: tuple[str, ...] = ()  # AVOCADO_ON_MERGE=, one line each
    on_unmerge: tuple[str, ...] = ()  # AVOCADO_ON_UNMERGE=
    modprobe: tuple[str, ...] = ()  # AVOCADO_MODPROBE=
    auto: bool = True  # depmod for kernel modules, systemd-tmpfiles for tmpfiles-copied /etc


@record
class Relations:
    depends: tuple[str, ...] = ()  # STRATA_DEPENDS=
    conflicts: tuple[str, ...] = ()  # STRATA_CONFLICTS=
    provides: tuple[str, ...] = ()  # STRATA_PROVIDES=


@record
class Output:
    format: OutputFormat = OutputFormat.EROFS
    compression: Compression | None = None  # None: the format's default
    level: int | None = None
    cluster_size: int | None = None  # erofs -C: bigger is smaller and slower to read
    name: NamePattern = NamePattern.DEFAULT
    target: str | None = None  # <target> of the Dalec pattern
    xattrs: bool = False  # keep extended attributes of the staged files (not reproducible)
    filesystem: OutputFormat | None = None  # ddi: the root partition's (erofs or squashfs)
    verity: Verity = Verity.NONE  # ddi only
    key: Path | None = None  # ddi with verity signed: PEM private key
    certificate: Path | None = None  # ... and its PEM X.509 certificate

    @property
    def fs_format(self) -> OutputFormat:
        """The file system the build makes: the format itself, or a DDI's file system."""
        if self.format is OutputFormat.DDI:
            return self.filesystem or OutputFormat.EROFS
        return self.format

    @property
    def effective_compression(self) -> Compression:
        return self.compression or FORMAT_COMPRESSION[self.fs_format][0]


@record
class Spec:
    path: Path  # the spec file (relative source paths are relative to its directory)
    name: str
    version: str
    revision: str = "1"
    license: str | None = None
    description: str | None = None
    cls: ClassChoice = ClassChoice.SYSEXT
    compatibility: Compatibility = Compatibility()
    sources: tuple[Source, ...] = ()  # dependencies.sysext first, then `sources:` in order
    normalize: Normalize = Normalize()
    services: Services = Services()
    hooks: Hooks = Hooks()
    relations: Relations = Relations()
    release_extra: tuple[tuple[str, str], ...] = ()
    output: Output = Output()
    source_date_epoch: int | None = None

    @property
    def etc_mode(self) -> EtcMode:
        if self.normalize.etc is not None:
            return self.normalize.etc
        return EtcMode.TMPFILES if self.cls is ClassChoice.SYSEXT else EtcMode.CONFEXT


# --------------------------------------------------------------------------------------------
# Validation of single values (pure, shared with the CLI)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,127}")
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.~^-]{0,127}")
_RELEASE_VALUE_RE = re.compile(r"[A-Za-z0-9._~^-]{1,128}")  # ID, VERSION_ID, levels, target
_UNIT_RE = re.compile(r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]+)?\.(service|socket|timer|path|"
                      r"mount|automount|swap|target|slice|scope|device)")
_KEY_RE = re.compile(r"[A-Z][A-Z0-9_]*")
_DEB_NAME_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_DEB_VERSION_RE = re.compile(r"[A-Za-z0-9.+~:-]+")
EPOCH_MAX = 2**32 - 1  # mksquashfs stores times as unsigned 32-bit

#: release keys the builder writes itself; `release:` may not set them
GENERATED_KEYS = frozenset({
    "ID", "VERSION_ID", "SYSEXT_LEVEL", "CONFEXT_LEVEL", "ARCHITECTURE", "SYSEXT_SCOPE",
    "CONFEXT_SCOPE", "SYSEXT_VERSION_ID", "CONFEXT_VERSION_ID", "EXTENSION_RELOAD_MANAGER",
    "EXTENSION_RESTART_UNITS", "EXTENSION_RELOAD_OR_RESTART_UNITS", "AVOCADO_ON_MERGE",
    "AVOCADO_ON_UNMERGE", "AVOCADO_MODPROBE", "STRATA_DEPENDS", "STRATA_CONFLICTS",
    "STRATA_PROVIDES",
})


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an extension, or None. Stricter than systemd's
    image_name_is_valid: the name becomes file names where systemd cuts at "_" and "+"
    (versions, boot counting) and strips ".raw"/".sysext"/".confext"/".v"."""
    if not _NAME_RE.fullmatch(name):
        return ("must be 1-128 letters, digits, '-' or '.', starting with a letter or digit "
                "('_' and '+' separate versions and tries in image file names)")
    for suffix in (".raw", ".sysext", ".confext", ".v"):
        if name.endswith(suffix):
            return f"must not end in '{suffix}' (systemd strips it from image names)"
    return None


def version_problem(version: str) -> str | None:
    if not _VERSION_RE.fullmatch(version):
        return ("must be 1-128 letters, digits, '.', '~', '^' or '-', starting with a letter or "
                "digit (no '_' or '+': they separate versions and tries in image file names)")
    return None


def image_path_problem(path: str) -> str | None:
    """Why `path` is not a usable absolute path inside an image, or None."""
    if not path.startswith("/"):
        return "must be an absolute path inside the image"
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        return "must not contain '.' or '..'"
    if "\0" in path:
        return "must not contain NUL"
    return None


# --------------------------------------------------------------------------------------------
# YAML with positions


class _Map(dict[str, Any]):
    """A YAML mapping that remembers where it and each of its keys are (1-based lines)."""

    line: int = 0
    key_lines: dict[str, int]


def _load_yaml(text: str, source: str) -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # the small schema of the module docstring: rebuild the implicit resolvers from nothing
    Loader.yaml_implicit_resolvers = {}
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"),
                                 list("tf"))
    Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|)$"),
                                 ["~", "n", ""])
    Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:0|-?[1-9][0-9]*)$"),
                                 list("-0123456789"))

    def construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Map:
        loader.flatten_mapping(node)
        out = _Map()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise StrataError(f"{source}:{line}: keys must be strings, not {key!r}",
                                  kind=ErrorKind.INVALID)
            if key in out:
                raise StrataError(f"{source}:{line}: {key}: duplicate key (first on line "
                                  f"{out.key_lines[key]})", kind=ErrorKind.INVALID)
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_lines[key] = line
        return out

    Loader.add_constructor("tag:yaml.org,2002:map", construct_map)
    try:
        return yaml.load(text, Loader=Loader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise StrataError(f"{where}: invalid YAML: {e.problem or e.context}",
                          kind=ErrorKind.INVALID) from None
    except yaml.YAMLError as e:
        raise StrataError(f"{source}: invalid YAML: {e}", kind=ErrorKind.INVALID) from None


# --------------------------------------------------------------------------------------------
# Reading a mapping strictly

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
D = TypeVar("D")
_REQUIRED: Any = object()

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
               dict: "a mapping"}


def _type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    for t, n in _TYPE_NAMES.items():
        if isinstance(value, t):
            return n
    return type(value).__name__


class _Section:
    """One mapping of the spec being read. Every key must be taken; `done()` reports the
    rest as unknown. Errors name the file, the line and the dotted key."""

    def __init__(self, data: object, prefix: str, source: str, line: int,
                 known: tuple[str, ...]) -> None:
        if not isinstance(data, _Map):
            where = f"{prefix}: " if prefix else ""
            raise StrataError(f"{source}:{line}: {where}expected a mapping, got "
                              f"{_type_name(data)}", kind=ErrorKind.INVALID)
        self.data = data
        self.prefix = prefix
        self.source = source
        self.known = known
        for key in data:
            if key not in known:
                raise self.error(key, "unknown key (expected one of: "
                                 f"{', '.join(known)})")

    def key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def line(self, key: str | None = None) -> int:
        if key is not None and key in self.data.key_lines:
            return self.data.key_lines[key]
        return self.data.line

    def error(self, key: str | None, problem: str) -> StrataError:
        name = self.key(key) if key is not None else self.prefix
        where = f"{name}: " if name else ""
        return StrataError(f"{self.source}:{self.line(key)}: {where}{problem}",
                           kind=ErrorKind.INVALID)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type[T], default: Any = _REQUIRED) -> T:
        if key not in self.data:
            if default is _REQUIRED:
                raise self.error(key, "missing (required)")
            return default  # type: ignore[no-any-return]
        value = self.data[key]
        if value is None and default is not _REQUIRED:
            return default  # type: ignore[no-any-return]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is str and isinstance(value, int) and not isinstance(value, bool):
            value, ok = str(value), True  # `revision: 1`, `version_id: 12`
        if not ok:
            raise self.error(key, f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got "
                             f"{_type_name(value)}")
        return value  # type: ignore[no-any-return]

    def strings(self, key: str) -> tuple[str, ...]:
        """A list of strings; a single string counts as a list of one."""
        value = self.data.get(key)
        if value is None:
            return ()
        if isinstance(value, str | int) and not isinstance(value, bool):
            return (str(value),)
        if not isinstance(value, list):
            raise self.error(key, f"expected a list of strings, got {_type_name(value)}")
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise self.error(key, f"item {i + 1}: expected a string, got {_type_name(item)}")
            out.append(str(item))
        return tuple(out)

    def check(self, key: str, value: T, problem: Callable[[T], str | None]) -> T:
        why = problem(value)
        if why is not None:
            raise self.error(key, f"'{value}' {why}" if isinstance(value, str) else why)
        return value

    def enum(self, key: str, kind: type[E], default: D,
             aliases: Mapping[object, str] | None = None) -> E | D:
        if key not in self.data or self.data[key] is None:
            return default
        raw = self.data[key]
        if aliases is not None and not isinstance(raw, str) and raw in aliases:
            raw = aliases[raw]
        values = [str(m.value) for m in kind]
        if not isinstance(raw, str) or raw not in values:
            got = f"'{raw}'" if isinstance(raw, str) else _type_name(raw)
            raise self.error(key, f"expected one of {', '.join(values)}, got {got}")
        return kind(raw)

    def section(self, key: str, known: tuple[str, ...]) -> _Section:
        return _Section(self.data.get(key) if self.data.get(key) is not None else _empty(),
                        self.key(key), self.source, self.line(key), known)


def _empty() -> _Map:
    m = _Map()
    m.key_lines = {}
    return m


# --------------------------------------------------------------------------------------------
# The spec reader

_TOP = ("name", "version", "revision", "license", "description", "class", "compatibility",
        "dependencies", "sources", "normalize", "services", "hooks", "relations", "release",
        "output", "source_date_epoch")


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file; every problem is a one-line INVALID StrataError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StrataError(f"{p}: spec file not found", kind=ErrorKind.NOT_FOUND) from None
    except UnicodeDecodeError:
        raise StrataError(f"{p}: spec file is not UTF-8", kind=ErrorKind.INVALID) from None
    except OSError as e:
        raise StrataError.from_os(e, str(p)) from e
    return parse_spec(text, p)


def parse_spec(text: str, path: Path) -> Spec:
    """The spec in `text`, as if read from `path` (which relative source paths follow)."""
    source = str(path)
    data = _load_yaml(text, source)
    if data is None:
        raise StrataError(f"{source}: the spec is empty", kind=ErrorKind.INVALID)
    top = _Section(data, "", source, 1, _TOP)
    base = path.parent

    name = top.check("name", top.get("name", str), name_problem)
    version = top.check("version", top.get("version", str), version_problem)
    revision = top.check("revision", top.get("revision", str, "1"), version_problem)
    cls = top.enum("class", ClassChoice, ClassChoice.SYSEXT)
    epoch = top.get("source_date_epoch", int, None)
    if epoch is not None and not 0 <= epoch <= EPOCH_MAX:
        raise top.error("source_date_epoch", f"must be between 0 and {EPOCH_MAX}")

    output = _output(top.section("output", ("format", "compression", "level", "cluster_size",
                                            "name", "target", "xattrs", "filesystem",
                                            "verity", "key", "certificate")), base)
    normalize = _normalize(top.section("normalize", ("merged_bin", "etc", "exclude")), cls)
    sources = (*_dependencies(top), *_sources(top, base))
    services = _services(top.section("services", ("units", "restart", "reload_or_restart",
                                                  "upholds", "reload_manager")), base)
    return Spec(
        path=path,
        name=name,
        version=version,
        revision=revision,
        license=top.get("license", str, None),
        description=top.get("description", str, None),
        cls=cls,
        compatibility=_compatibility(top.section(
            "compatibility", ("id", "version_id", "level", "architecture", "scope"))),
        sources=sources,
        normalize=normalize,
        services=services,
        hooks=_hooks(top.section("hooks", ("on_merge", "on_unmerge", "modprobe", "auto"))),
        relations=_relations(top.section("relations", ("depends", "conflicts", "provides"))),
        release_extra=_release_extra(top),
        output=output,
        source_date_epoch=epoch,
    )


def _release_value(value: str) -> str | None:
    return None if _RELEASE_VALUE_RE.fullmatch(value) else (
        "must be letters, digits, '.', '_', '~', '^' or '-'")


def _compatibility(s: _Section) -> Compatibility:
    from strata import arch

    def arch_problem(value: str) -> str | None:
        if value == "_any" or arch.is_valid(value):
            return None
        return "is not an architecture systemd knows (e.g. x86-64, arm64, or _any)"

    scope: tuple[Scope, ...] | None = None
    if s.has("scope"):
        names = s.strings("scope")
        if not names:
            raise s.error("scope", "must name at least one scope (system, initrd, portable); "
                          "an empty list would match nowhere")
        valid = [m.value for m in Scope]
        for n in names:
            if n not in valid:
                raise s.error("scope", f"'{n}' is not one of {', '.join(valid)}")
        scope = tuple(dict.fromkeys(Scope(n) for n in names))
    return Compatibility(
        id=s.check("id", s.get("id", str, "_any"), _release_value),
        version_id=_opt(s, "version_id", _release_value),
        level=_opt(s, "level", _release_value),
        architecture=_opt(s, "architecture", arch_problem),
        scope=scope,
    )


def _opt(s: _Section, key: str, problem: Callable[[str], str | None]) -> str | None:
    value = s.get(key, str, None)
    return None if value is None else s.check(key, value, problem)


def _dependencies(top: _Section) -> tuple[AptSource, ...]:
    """Dalec's `dependencies.sysext:`: package name -> nothing, or {version: [..], arch: [..]}.
    Dalec's other dependency kinds (build, runtime, test) describe building a package, which
    Strata does not do."""
    deps = top.section("dependencies", ("sysext",))
    if not deps.has("sysext"):
        return ()
    raw = deps.data["sysext"]
    if raw is None:
        return ()
    pkgs = deps.section("sysext", tuple(raw) if isinstance(raw, _Map) else ())
    out = []
    for pkg in pkgs.data:
        if not _DEB_NAME_RE.fullmatch(pkg):
            raise pkgs.error(pkg, "is not a valid Debian package name")
        constraints = pkgs.section(pkg, ("version", "arch"))
        version = None
        if constraints.has("version"):
            version = _exact_version(constraints)
        arches = constraints.strings("arch") if constraints.has("arch") else None
        out.append(AptSource(name=pkg, version=version, arches=arches))
    return tuple(out)


def _exact_version(s: _Section) -> str:
    items = s.strings("version")
    m = re.fullmatch(r"\s*==?\s*(\S+)\s*", items[0]) if len(items) == 1 else None
    if m is None or not _DEB_VERSION_RE.fullmatch(m.group(1)):
        raise s.error("version", "only one exact version ('= 1.2-3') can be fetched without "
                      "dependency resolution")
    return m.group(1)


_SOURCE_KINDS = ("tree", "file", "package", "apt")


def _sources(top: _Section, base: Path) -> tuple[Source, ...]:
    raw = top.data.get("sources")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise top.error("sources", f"expected a list, got {_type_name(raw)}")
    out: list[Source] = []
    for i, item in enumerate(raw):
        prefix = f"sources[{i + 1}]"
        line = item.line if isinstance(item, _Map) else top.line("sources")
        kinds = [k for k in _SOURCE_KINDS if isinstance(item, _Map) and k in item]
        if len(kinds) != 1:
            raise StrataError(f"{top.source}:{line}: {prefix}: needs exactly one of "
                              f"{', '.join(_SOURCE_KINDS)}", kind=ErrorKind.INVALID)
        kind = kinds[0]
        known = {"tree": ("tree", "to"), "file": ("file", "to", "mode"),
                 "package": ("package",), "apt": ("apt", "version")}[kind]
        s = _Section(item, prefix, top.source, line, known)
        if kind == "apt":
            pkg = s.check("apt", s.get("apt", str), lambda v: None if _DEB_NAME_RE.fullmatch(v)
                          else "is not a valid Debian package name")
            version = s.get("version", str, None)
            if version is not None:
                s.check("version", version, lambda v: None if _DEB_VERSION_RE.fullmatch(v)
                        else "is not a valid Debian version")
            out.append(AptSource(name=pkg, version=version))
            continue
        path = base / s.get(kind, str)
        if kind == "tree":
            to = s.check("to", s.get("to", str, "/"), image_path_problem)
            out.append(TreeSource(path=path, to=posixpath.normpath(to)))
        elif kind == "file":
            to = s.check("to", s.get("to", str), image_path_problem)
            if to.rstrip("/") == "":
                raise s.error("to", "must name a file, not the image root")
            if to.endswith("/"):
                to += path.name
            out.append(FileSource(path=path, to=posixpath.normpath(to),
                                  mode=_mode(s, "mode")))
        else:
            if path.suffix not in (".deb", ".rpm"):
                raise s.error("package", f"'{path.name}' is neither a .deb nor an .rpm")
            out.append(PackageSource(path=path))
    return tuple(out)


def _mode(s: _Section, key: str) -> int | None:
    if not s.has(key):
        return None
    raw = s.data[key]
    if isinstance(raw, str) and re.fullmatch(r"0?[0-7]{3,4}", raw):
        return int(raw, 8)
    raise s.error(key, "write the mode in octal as a string, e.g. \"0755\"")


def _normalize(s: _Section, cls: ClassChoice) -> Normalize:
    etc = s.enum("etc", EtcMode, None)
    if etc is EtcMode.CONFEXT and cls is ClassChoice.SYSEXT:
        raise s.error("etc", "'confext' needs class: both (a sysext plus its confext)")
    if etc is EtcMode.TMPFILES and cls is not ClassChoice.SYSEXT:
        raise s.error("etc", f"'tmpfiles' is for class: sysext; class {cls.value} puts /etc "
                      "into its confext")
    if etc is EtcMode.DROP and cls is ClassChoice.CONFEXT:
        raise s.error("etc", "'drop' would leave a confext empty")
    patterns = s.strings("exclude")
    for p in patterns:
        if p.startswith("/") or not p:
            raise s.error("exclude", f"'{p}': patterns match image paths without a leading "
                          "'/', e.g. usr/share/doc")
    return Normalize(
        merged_bin=s.enum("merged_bin", MergedBin, MergedBin.AUTO,
                          aliases={True: "yes", False: "no"}),
        etc=etc,
        exclude=patterns,
    )


def _units(s: _Section, key: str) -> tuple[str, ...]:
    names = s.strings(key)
    for n in names:
        if not _UNIT_RE.fullmatch(n) or "@." in n:
            raise s.error(key, f"'{n}' is not a unit name (e.g. foo.service; not a template)")
    return tuple(dict.fromkeys(names))


def _services(s: _Section, base: Path) -> Services:
    units = s.strings("units")
    for u in units:
        if not _UNIT_RE.fullmatch(Path(u).name):
            raise s.error("units", f"'{u}': the file name must be a unit name, e.g. "
                          "foo.service")
    reload = s.enum("reload_manager", _Tri, _Tri.AUTO, aliases={True: "yes", False: "no"})
    return Services(
        units=tuple(base / u for u in units),
        restart=_units(s, "restart"),
        reload_or_restart=_units(s, "reload_or_restart"),
        upholds=_units(s, "upholds"),
        reload_manager=None if reload is _Tri.AUTO else reload is _Tri.YES,
    )


class _Tri(enum.Enum):
    AUTO = "auto"
    YES = "yes"
    NO = "no"


def _hooks(s: _Section) -> Hooks:
    def command_problem(value: str) -> str | None:
        if not value.split() or "\n" in value:
            return "must be one line with a command"
        return None

    on_merge = s.strings("on_merge")
    on_unmerge = s.strings("on_unmerge")
    for key, values in (("on_merge", on_merge), ("on_unmerge", on_unmerge)):
        for v in values:
            s.check(key, v, command_problem)
    modules = s.strings("modprobe")
    for m in modules:
        s.check("modprobe", m, lambda v: None if re.fullmatch(r"[A-Za-z0-9_-]+", v)
                else "is not a kernel module name")
    return Hooks(on_merge=on_merge, on_unmerge=on_unmerge, modprobe=modules,
                 auto=s.get("auto", bool, True))


def _relations(s: _Section) -> Relations:
    def names(key: str) -> tuple[str, ...]:
        out = s.strings(key)
        for n in out:
            s.check(key, n, name_problem)
        return tuple(dict.fromkeys(out))

    return Relations(depends=names("depends"), conflicts=names("conflicts"),
                     provides=names("provides"))


def _release_extra(top: _Section) -> tuple[tuple[str, str], ...]:
    raw = top.data.get("release")
    if raw is None:
        return ()
    s = top.section("release", tuple(raw) if isinstance(raw, _Map) else ())
    out = []
    for key in s.data:
        if not _KEY_RE.fullmatch(key):
            raise s.error(key, "release keys are upper-case letters, digits and '_'")
        if key in GENERATED_KEYS:
            raise s.error(key, "is written from the spec's own fields (compatibility, "
                          "services, hooks, relations); set it there")
        value = s.get(key, str)
        if "\n" in value or "\0" in value:
            raise s.error(key, "must be one line")
        out.append((key, value))
    return tuple(out)


def _ddi(s: _Section, fmt: OutputFormat, base: Path
         ) -> tuple[OutputFormat | None, Verity, Path | None, Path | None]:
    """output.filesystem, .verity, .key and .certificate: a DDI's. Signed is the default
    when a key is given, else hash; a key and certificate go with signed only."""
    filesystem: OutputFormat | None = s.enum("filesystem", OutputFormat, None)
    if fmt is not OutputFormat.DDI:
        for key in ("filesystem", "verity", "key", "certificate"):
            if s.has(key) and s.data[key] is not None:
                raise s.error(key, "is an option of format: ddi")
        return None, Verity.NONE, None, None
    if filesystem is not None and filesystem not in (OutputFormat.EROFS, OutputFormat.SQUASHFS):
        raise s.error("filesystem", f"a disk image holds erofs or squashfs, not "
                      f"{filesystem.value}")
    paths: dict[str, Path | None] = {}
    for key in ("key", "certificate"):
        raw = s.get(key, str, None)
        paths[key] = None if raw is None else (base / raw if not Path(raw).is_absolute()
                                               else Path(raw))
    default = Verity.SIGNED if paths["key"] is not None else Verity.HASH
    verity = s.enum("verity", Verity, default)
    if verity is Verity.SIGNED:
        for key in ("key", "certificate"):
            if paths[key] is None:
                raise s.error(key, "missing: verity: signed needs a key and a certificate "
                              "(PEM files)")
    else:
        for key in ("key", "certificate"):
            if paths[key] is not None:
                raise s.error(key, f"is only used with verity: signed (verity is "
                              f"{verity.value})")
    return filesystem or OutputFormat.EROFS, verity, paths["key"], paths["certificate"]


def _output(s: _Section, base: Path) -> Output:
    fmt = s.enum("format", OutputFormat, OutputFormat.EROFS)
    filesystem, verity, key, certificate = _ddi(s, fmt, base)
    fs = filesystem or fmt
    comp: Compression | None = s.enum("compression", Compression, None)
    allowed = FORMAT_COMPRESSION[fs]
    if comp is not None and comp not in allowed:
        raise s.error("compression", f"'{comp.value}' is not available for {fs.value} "
                      f"(one of: {', '.join(c.value for c in allowed)})")
    effective = comp or allowed[0]
    level = s.get("level", int, None)
    if level is not None:
        bounds = LEVELS.get((fs, effective))
        if bounds is None:
            raise s.error("level", f"{fs.value} with {effective.value} takes no level")
        if not bounds[0] <= level <= bounds[1]:
            raise s.error("level", f"{effective.value} levels are {bounds[0]}..{bounds[1]}")
    cluster = s.get("cluster_size", int, None)
    if cluster is not None:
        if fs is not OutputFormat.EROFS:
            raise s.error("cluster_size", "is an erofs option")
        if cluster < 4096 or cluster % 4096:
            raise s.error("cluster_size", "must be a multiple of 4096 bytes")
    name = s.enum("name", NamePattern, NamePattern.DEFAULT)
    target = s.get("target", str, None)
    if target is not None:
        s.check("target", target, _release_value)
    if name is NamePattern.DALEC and target is None:
        raise s.error("name", "the dalec pattern <name>-v<version>-<revision>-<target>-<arch> "
                      "needs output.target (e.g. bookworm)")
    return Output(format=fmt, compression=comp, level=level, cluster_size=cluster, name=name,
                  target=target, xattrs=s.get("xattrs", bool, False), filesystem=filesystem,
                  verity=verity, key=key, certificate=certificate)
