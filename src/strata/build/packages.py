"""Reading .deb and .rpm packages: their metadata, and their payload extracted safely.

Nothing a package ships is run (no maintainer scripts, no triggers): the build takes the files
only. Formats are told apart by magic number, not by suffix.

- .deb: an `ar` archive (arpy) of debian-binary, control.tar[.gz|.xz|.zst|...] (the control file:
  Package, Version, Architecture, Depends) and data.tar[...] (the payload), decompressed here
  (gzip, xz, lzma, bz2 from the standard library; zstd with `zstandard`) and extracted by
  tarsafe's rules. Matches `dpkg-deb -x` (modes, contents, symlinks, mtimes, hardlinks).
- .rpm: the lead and headers are read here (name, [epoch:]version-release, arch, requires); the
  payload is decompressed by Debian's `rpm2cpio` (it knows every payload compressor rpm has
  used) and read by cpio.py, streamed through a pipe, and extracted by the same rules.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, cast

from strata.build import tarsafe
from strata.errors import ErrorKind, StrataError
from strata.record import record

if TYPE_CHECKING:
    import subprocess

DEB_MAGIC = b"!<arch>\n"
RPM_MAGIC = b"\xed\xab\xee\xdb"
MAX_CONTROL = 1 << 20  # a control file larger than this is not one
_CHUNK = 1 << 16

#: compression suffixes of control.tar / data.tar members that dpkg-deb reads
DEB_COMPRESSIONS = ("", ".gz", ".xz", ".zst", ".bz2", ".lzma")


@record
class PackageInfo:
    name: str
    version: str  # Debian: the Version field; rpm: [epoch:]version-release
    arch: str  # as the package says: "amd64", "all", "x86_64", "noarch"
    kind: str  # "deb" | "rpm"
    #: dependency names, informative only (nothing is resolved): versions and ":arch" dropped,
    #: alternatives kept together as "a | b"; Debian: Pre-Depends then Depends; rpm: Requires
    #: without rpmlib(...) entries
    depends: tuple[str, ...] = ()


def package_kind(path: str) -> str:
    """"deb" or "rpm", by magic number. StrataError(INVALID) for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise StrataError.from_os(e, path) from e
    if head == DEB_MAGIC:
        return "deb"
    if head[:4] == RPM_MAGIC:
        return "rpm"
    raise StrataError(f"{path}: not a .deb or .rpm package (unknown magic number)",
                      kind=ErrorKind.INVALID)


def package_info(path: str) -> PackageInfo:
    """The package's metadata, without extracting anything."""
    if package_kind(path) == "deb":
        return _deb(path, None, None)
    return _rpm_info(path)


def extract_package(path: str, dest: str, *,
                    on_special: Callable[[str, str], None] | None = None) -> PackageInfo:
    """Extract the payload of .deb/.rpm `path` into the existing directory `dest` (see tarsafe
    for the rules), and return its metadata. Refusals are one-line StrataError(INVALID) naming
    the package and the member. Device nodes, fifos and sockets are refused, unless `on_special`
    is given: it is called with the member's image path ("/dev/null") and its kind ("character
    device", "block device", "fifo", "socket") and the member is skipped. A failed extraction may
    leave partial files in `dest`: the caller removes it."""
    if package_kind(path) == "deb":
        return _deb(path, dest, on_special)
    info = _rpm_info(path)
    _rpm_extract(path, dest, on_special)
    return info


# -- .deb ---------------------------------------------------------------------------------------


def _invalid(message: str) -> StrataError:
    return StrataError(message, kind=ErrorKind.INVALID)


class _ArMember(io.RawIOBase):
    """An ar member's data; a member cut short by the end of the file is EOFError (truncated),
    not arpy's generic access error."""

    def __init__(self, data: Any, label: str) -> None:
        import arpy

        self._data = data
        self._label = label
        self._short: type[Exception] = arpy.ArchiveAccessError

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        try:
            chunk: bytes = self._data.read(len(buf))
        except self._short:
            raise EOFError(f"the file ends inside member {self._label}") from None
        buf[: len(chunk)] = chunk
        return len(chunk)


class _ZstdReader(io.RawIOBase):
    """zstd decompression that notices truncation: zstandard's stream_reader returns what it
    has when the input ends mid-frame, which would make a cut data.tar.zst look complete."""

    def __init__(self, raw: IO[bytes]) -> None:
        import zstandard

        self._new = zstandard.ZstdDecompressor().decompressobj
        self._raw = raw
        self._dec = self._new()
        self._fed = False  # input given to the current frame's decompressor
        self._out = b""
        self._pos = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while self._pos >= len(self._out) and not self._done:
            self._fill()
        n = min(len(buf), len(self._out) - self._pos)
        buf[:n] = self._out[self._pos: self._pos + n]
        self._pos += n
        return n

    def _fill(self) -> None:
        pending = b""
        if self._dec.eof:  # a frame ended: what follows is another frame
            pending = self._dec.unused_data
            self._dec = self._new()
            self._fed = False
        chunk = pending or self._raw.read(_CHUNK)
        if not chunk:
            if self._fed:
                raise EOFError("zstd data ends inside a frame")
            self._done = True
            return
        self._fed = True
        self._out = self._dec.decompress(chunk)
        self._pos = 0


def _decompressed(raw: IO[bytes], suffix: str) -> IO[bytes]:
    """A reader of the decompressed member (`suffix` as in "data.tar.xz" -> ".xz")."""
    if suffix == "":
        return raw
    if suffix == ".gz":
        import gzip

        return cast("IO[bytes]", gzip.GzipFile(fileobj=raw, mode="rb"))
    if suffix in (".xz", ".lzma"):
        import lzma

        fmt = lzma.FORMAT_XZ if suffix == ".xz" else lzma.FORMAT_ALONE
        return lzma.LZMAFile(raw, format=fmt)
    if suffix == ".bz2":
        import bz2

        return bz2.BZ2File(raw)
    if suffix == ".zst":
        return io.BufferedReader(_ZstdReader(raw), _CHUNK)
    raise AssertionError(suffix)  # _split_member lets only DEB_COMPRESSIONS through


def _split_member(path: str, name: str) -> tuple[str, str] | None:
    """"data.tar.xz" -> ("data", ".xz"); None for members dpkg ignores ("_..."). Unknown
    members and compressions are refused."""
    if name.startswith("_"):
        return None
    for base in ("control", "data"):
        if name.startswith(base + ".tar"):
            suffix = name[len(base) + 4:]
            if suffix not in DEB_COMPRESSIONS:
                raise _invalid(f"{path}: member {name}: unknown compression {suffix!r} "
                               f"(known: {', '.join(s for s in DEB_COMPRESSIONS if s)})")
            return base, suffix
    raise _invalid(f"{path}: unknown member {tarsafe.show(name)} (not a Debian binary package?)")


def _ar_members(path: str) -> Iterator[tuple[str, IO[bytes]]]:
    """The .deb's members in order, as (name, raw data reader), debian-binary checked."""
    import arpy

    try:
        archive = arpy.Archive(path)
    except OSError as e:
        raise StrataError.from_os(e, path) from e
    except arpy.ArchiveFormatError as e:
        raise _invalid(f"{path}: not an ar archive: {e}") from e
    with archive:
        first = True
        while True:
            try:
                header = archive.read_next_header()
            except arpy.ArchiveFormatError as e:
                what = "truncated" if "too short" in str(e) else "corrupt"
                raise _invalid(f"{path}: {what} ar header: {e}") from e
            if header is None:
                return
            if header.type not in (arpy.HEADER_NORMAL, arpy.HEADER_GNU, arpy.HEADER_BSD):
                continue
            name = header.name.decode("utf-8", "surrogateescape")
            # not archive.open(): it reads every header first, ending this walk
            data = archive.file_data_class(archive, header)
            reader = io.BufferedReader(_ArMember(data, name), _CHUNK)
            if first:
                _check_debian_binary(path, name, reader)
                first = False
                continue
            yield name, reader


def _check_debian_binary(path: str, name: str, reader: IO[bytes]) -> None:
    if name != "debian-binary":
        raise _invalid(f"{path}: first member is {tarsafe.show(name)}, not debian-binary "
                       "(not a Debian binary package)")
    try:
        version = reader.read(64).decode("ascii", "replace").strip()
    except EOFError as e:
        raise _invalid(f"{path}: truncated: {e}") from e
    if not version.startswith("2."):
        raise _invalid(f"{path}: unsupported package format version {version!r} (2.x expected)")


def _deb(path: str, dest: str | None,
         on_special: Callable[[str, str], None] | None) -> PackageInfo:
    """Metadata of .deb `path`; with `dest`, its data.tar extracted there too."""
    info: PackageInfo | None = None
    for name, raw in _ar_members(path):
        split = _split_member(path, name)
        if split is None:
            continue
        base, suffix = split
        if base == "control":
            if info is not None:
                raise _invalid(f"{path}: two control members")
            info = _read_control(path, name, _decompressed(raw, suffix))
            if dest is None:
                return info
        elif info is None:
            raise _invalid(f"{path}: member {name} comes before the control member")
        else:
            assert dest is not None  # without one, we returned after the control member
            tarsafe.extract_tar(_decompressed(raw, suffix), dest, package=path, label=name,
                                on_special=on_special)
            return info
    if info is None:
        raise _invalid(f"{path}: no control.tar member (truncated, or not a Debian package)")
    raise _invalid(f"{path}: no data.tar member (truncated, or not a Debian package)")


def _read_control(path: str, label: str, stream: IO[bytes]) -> PackageInfo:
    """The control file inside control.tar: only read, never written anywhere."""
    text: str | None = None
    try:
        with tarsafe.open_tar_stream(stream) as tf:
            for member in tf:
                if tarsafe.split_name(member.name) == ["control"] and member.isreg():
                    if member.size > MAX_CONTROL:
                        raise _invalid(f"{path}: {label}: control file too large")
                    data = tf.extractfile(member)
                    raw = data.read() if data is not None else b""
                    if len(raw) != member.size:
                        raise EOFError("the control file is cut short")
                    text = raw.decode("utf-8", "replace")
                    break
    except StrataError:
        raise
    except Exception as e:  # decoders and tarfile: named by archive_error
        raise tarsafe.archive_error(e, path, label) from e
    if text is None:
        raise _invalid(f"{path}: {label} has no control file")
    return _control_info(path, parse_control(text))


def parse_control(text: str) -> dict[str, str]:
    """The first paragraph of a deb822 control file: field names lower-cased, continuation lines
    joined with newlines."""
    fields: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0] in " \t":
            if last is not None:
                fields[last] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        last = key.strip().lower()
        fields[last] = value.strip()
    return fields


def depends_names(value: str) -> tuple[str, ...]:
    """A Depends-style field's package names: "a (>= 1) | b:any, c [amd64]" -> ("a | b", "c")."""
    out: list[str] = []
    for group in value.replace("\n", " ").split(","):
        names = []
        for alt in group.split("|"):
            words = alt.strip().split()
            if not words:
                continue
            name = words[0].split("(")[0].split(":")[0]
            if name:
                names.append(name)
        if names:
            out.append(" | ".join(names))
    return tuple(out)


def _control_info(path: str, fields: dict[str, str]) -> PackageInfo:
    missing = [f for f in ("package", "version", "architecture") if not fields.get(f)]
    if missing:
        names = ", ".join(m.capitalize() for m in missing)
        raise _invalid(f"{path}: control file lacks {names}")
    deps = depends_names(fields.get("pre-depends", "")) + depends_names(fields.get("depends", ""))
    return PackageInfo(name=fields["package"], version=fields["version"],
                       arch=fields["architecture"], kind="deb",
                       depends=tuple(dict.fromkeys(deps)))


# -- .rpm ---------------------------------------------------------------------------------------

LEAD_LEN = 96
HEADER_MAGIC = b"\x8e\xad\xe8\x01"
MAX_TAGS = 0xFFFF  # rpm's limits (HEADER_TAGS_MAX, HEADER_DATA_MAX)
MAX_DATA = 0x0FFFFFFF
TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH = 1000, 1001, 1002, 1003, 1022
TAG_SOURCERPM, TAG_REQUIREFLAGS, TAG_REQUIRENAME = 1044, 1048, 1049
TAG_PAYLOADFORMAT = 1124
TYPE_INT32, TYPE_STRING, TYPE_STRING_ARRAY, TYPE_I18NSTRING = 4, 6, 8, 9
RPMSENSE_RPMLIB = 1 << 24


def _read_exact(f: IO[bytes], n: int, path: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _invalid(f"{path}: truncated: the file ends inside the {what}")
    return data


RpmIndex = dict[int, tuple[int, int, int]]  # tag -> (type, offset in the store, count)


def read_rpm_header(f: IO[bytes], path: str, what: str) -> tuple[RpmIndex, bytes]:
    """Read one header structure at the file's position: its index and its data store."""
    intro = _read_exact(f, 16, path, what)
    if intro[:4] != HEADER_MAGIC:
        raise _invalid(f"{path}: bad {what} magic (corrupt rpm)")
    count, size = struct.unpack(">II", intro[8:16])
    if count > MAX_TAGS or size > MAX_DATA:
        raise _invalid(f"{path}: {what} too large ({count} tags, {size} bytes; corrupt rpm)")
    index_raw = _read_exact(f, 16 * count, path, what)
    store = _read_exact(f, size, path, what)
    index: RpmIndex = {}
    for i in range(count):
        tag, typ, offset, n = struct.unpack(">IIII", index_raw[16 * i: 16 * i + 16])
        if offset >= size and typ != 0:
            raise _invalid(f"{path}: {what} tag {tag} points outside its data (corrupt rpm)")
        index[tag] = (typ, offset, n)
    return index, store


def _rpm_value(index: RpmIndex, store: bytes,
               tag: int) -> list[str] | list[int] | None:
    """A tag's value: strings (STRING, STRING_ARRAY, I18NSTRING: its first) or INT32s."""
    if tag not in index:
        return None
    typ, offset, count = index[tag]
    if typ == TYPE_INT32:
        if offset + 4 * count > len(store):
            return None
        return list(struct.unpack(f">{count}I", store[offset: offset + 4 * count]))
    if typ in (TYPE_STRING, TYPE_STRING_ARRAY, TYPE_I18NSTRING):
        n = 1 if typ != TYPE_STRING_ARRAY else count
        out: list[str] = []
        pos = offset
        for _ in range(n):
            end = store.find(b"\0", pos)
            if end < 0:
                return None
            out.append(store[pos:end].decode("utf-8", "replace"))
            pos = end + 1
        return out
    return None


def _rpm_info(path: str) -> PackageInfo:
    """Metadata of .rpm `path`, from its lead and header."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise StrataError.from_os(e, path) from e
    with f:
        lead = _read_exact(f, LEAD_LEN, path, "lead")
        if lead[:4] != RPM_MAGIC:
            raise _invalid(f"{path}: not an rpm package")
        (lead_type,) = struct.unpack(">H", lead[6:8])
        read_rpm_header(f, path, "signature header")
        f.seek(-f.tell() % 8, os.SEEK_CUR)  # the signature is padded to 8 bytes
        index, store = read_rpm_header(f, path, "header")

    def one(tag: int, label: str, *, required: bool = True) -> str:
        value = _rpm_value(index, store, tag)
        if not value or not isinstance(value[0], str):
            if required:
                raise _invalid(f"{path}: the rpm header lacks {label}")
            return ""
        return value[0]

    if lead_type == 1 or TAG_SOURCERPM not in index:
        raise _invalid(f"{path}: a source rpm, not a binary package")
    fmt = one(TAG_PAYLOADFORMAT, "PAYLOADFORMAT", required=False) or "cpio"
    if fmt != "cpio":
        raise StrataError(f"{path}: unsupported rpm payload format {fmt!r} (cpio expected)",
                          kind=ErrorKind.UNSUPPORTED)
    epoch = _rpm_value(index, store, TAG_EPOCH)
    evr = f"{one(TAG_VERSION, 'VERSION')}-{one(TAG_RELEASE, 'RELEASE')}"
    if epoch and isinstance(epoch[0], int):
        evr = f"{epoch[0]}:{evr}"
    names = _rpm_value(index, store, TAG_REQUIRENAME) or []
    flags = _rpm_value(index, store, TAG_REQUIREFLAGS) or []
    requires = [str(n) for i, n in enumerate(names)
                if not (i < len(flags) and int(flags[i]) & RPMSENSE_RPMLIB)
                and not str(n).startswith("rpmlib(")]
    info = PackageInfo(name=one(TAG_NAME, "NAME"), version=evr, arch=one(TAG_ARCH, "ARCH"),
                       kind="rpm", depends=tuple(dict.fromkeys(requires)))
    return info


def _rpm2cpio() -> str:
    import shutil

    exe = shutil.which("rpm2cpio")
    if exe is None:
        raise StrataError("rpm2cpio: command not found (needed to extract .rpm packages)",
                          hint="install the Debian package rpm2cpio", kind=ErrorKind.NOT_FOUND)
    return exe


def _rpm_extract(path: str, dest: str, on_special: Callable[[str, str], None] | None) -> None:
    """The payload through `rpm2cpio path |` and cpio.py into `dest`."""
    import subprocess
    import tempfile

    from strata.build import cpio

    exe = _rpm2cpio()
    ex = tarsafe.Extractor(dest, package=path, on_special=on_special)
    done = False
    failure: Exception | None = None
    # stderr to a file: a pipe could fill up while we only read stdout
    with ex, tempfile.TemporaryFile() as errlog:
        try:
            proc = subprocess.Popen([exe, path], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=errlog)
        except OSError as e:
            raise StrataError.from_os(e, exe) from e
        assert proc.stdout is not None
        try:
            try:
                for member, data in cpio.members(proc.stdout):
                    ex.add(member, data)
            except StrataError:
                raise
            except Exception as e:  # the reader's; named below, after rpm2cpio's own word
                failure = e
            # read to the end: rpm2cpio's padding, or the rest after a failure, so that its
            # exit status is its own verdict and not a SIGPIPE
            while proc.stdout.read(_CHUNK):
                pass
            done = True
        finally:
            _reap(proc, kill=not done)
        errlog.seek(0)
        lines = errlog.read().decode("utf-8", "replace").strip().splitlines()
        said = f" (rpm2cpio: {lines[-1]})" if lines and proc.returncode else ""
        if failure is not None:  # ours names the member; rpm2cpio often says nothing
            ex.close(apply=False)
            error = tarsafe.archive_error(failure, path, "payload", ex)
            raise StrataError(error.message + said, kind=ErrorKind.INVALID) from failure
        if proc.returncode:
            ex.close(apply=False)
            raise _invalid(f"{path}: payload: rpm2cpio failed: "
                           f"{lines[-1] if lines else f'exit status {proc.returncode}'}")


def _reap(proc: subprocess.Popen[bytes], *, kill: bool) -> None:
    """Wait for rpm2cpio; after a refusal (we stopped reading) end it first: it is ours."""
    import subprocess

    if proc.stdout is not None:
        proc.stdout.close()
    if kill and proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
