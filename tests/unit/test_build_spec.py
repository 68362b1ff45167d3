"""The build spec: Dalec's fields as is, Strata's own, and one-line errors naming the file, the
line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.build.spec import (
    AptSource,
    ClassChoice,
    Compression,
    EtcMode,
    FileSource,
    MergedBin,
    NamePattern,
    OutputFormat,
    PackageSource,
    TreeSource,
    load_spec,
    name_problem,
    parse_spec,
    version_problem,
)
from strata.errors import ErrorKind, StrataError
from strata.model import ExtClass, Scope

SPEC = Path("/specs/app.yaml")

DALEC = """\
# syntax=ghcr.io/project-dalec/dalec/frontend:latest
name: my-sysext
version: 0.1.0
revision: 1
license: MIT
description: A system extension with some useful tools

dependencies:
  sysext:
    jq:
    zsh:
"""


def test_dalec_example_builds_as_is() -> None:
    s = parse_spec(DALEC, SPEC)
    assert (s.name, s.version, s.revision, s.license) == ("my-sysext", "0.1.0", "1", "MIT")
    assert s.description == "A system extension with some useful tools"
    assert s.sources == (AptSource(name="jq"), AptSource(name="zsh"))
    assert s.cls is ClassChoice.SYSEXT
    assert s.etc_mode is EtcMode.TMPFILES  # Dalec's /usr/share/<name>/etc
    assert s.compatibility.id == "_any"
    assert s.compatibility.architecture is None  # the build host's
    assert s.output.format is OutputFormat.EROFS
    assert s.output.effective_compression is Compression.LZ4HC
    assert s.output.name is NamePattern.DEFAULT


def test_dalec_constraints() -> None:
    s = parse_spec("name: a\nversion: '1'\ndependencies:\n  sysext:\n"
                   "    jq: {version: ['= 1.6-2.1'], arch: [amd64, arm64]}\n", SPEC)
    assert s.sources == (AptSource(name="jq", version="1.6-2.1", arches=("amd64", "arm64")),)


FULL = """\
name: tools
version: "2.0"
class: both
source_date_epoch: 1700000000
compatibility:
  id: debian
  version_id: 12
  level: "1.0"
  architecture: arm64
  scope: [system, initrd]
dependencies:
  sysext:
    libonig5:
sources:
  - tree: rootfs
  - tree: extra
    to: /opt/extra
  - file: bin/hello.sh
    to: /usr/bin/
    mode: "0755"
  - package: pkgs/foo_1.0_arm64.deb
  - package: /abs/bar-1.0.aarch64.rpm
  - apt: zsh
    version: 5.9-4+b15
normalize:
  merged_bin: false
  etc: confext
  exclude: [usr/share/doc, usr/share/man/*]
services:
  units: [units/tools.service]
  restart: [tools.service]
  upholds: tools.service
  reload_manager: true
hooks:
  on_merge: ["udevadm trigger"]
  on_unmerge: ["systemctl stop tools.service"]
  modprobe: [v4l2loopback]
  auto: false
relations:
  depends: [base]
  provides: [toolbox]
release:
  VENDOR_X: "some value"
output:
  format: squashfs
  compression: zstd
  level: 19
  name: dalec
  target: bookworm
  xattrs: true
"""


def test_full_spec() -> None:
    s = parse_spec(FULL, SPEC)
    assert s.cls.classes == (ExtClass.SYSEXT, ExtClass.CONFEXT)
    assert s.source_date_epoch == 1700000000
    c = s.compatibility
    assert (c.id, c.version_id, c.level, c.architecture) == ("debian", "12", "1.0", "arm64")
    assert c.scope == (Scope.SYSTEM, Scope.INITRD)
    assert s.sources == (
        AptSource(name="libonig5"),
        TreeSource(path=Path("/specs/rootfs"), to="/"),
        TreeSource(path=Path("/specs/extra"), to="/opt/extra"),
        FileSource(path=Path("/specs/bin/hello.sh"), to="/usr/bin/hello.sh", mode=0o755),
        PackageSource(path=Path("/specs/pkgs/foo_1.0_arm64.deb")),
        PackageSource(path=Path("/abs/bar-1.0.aarch64.rpm")),
        AptSource(name="zsh", version="5.9-4+b15"),
    )
    assert s.normalize.merged_bin is MergedBin.NO
    assert s.etc_mode is EtcMode.CONFEXT
    assert s.normalize.exclude == ("usr/share/doc", "usr/share/man/*")
    assert s.services.units == (Path("/specs/units/tools.service"),)
    assert s.services.restart == ("tools.service",)
    assert s.services.upholds == ("tools.service",)
    assert s.services.reload_manager is True
    assert s.hooks.on_merge == ("udevadm trigger",)
    assert s.hooks.modprobe == ("v4l2loopback",)
    assert s.hooks.auto is False
    assert s.relations.depends == ("base",)
    assert s.relations.provides == ("toolbox",)
    assert s.release_extra == (("VENDOR_X", "some value"),)
    o = s.output
    assert (o.format, o.compression, o.level, o.name, o.target, o.xattrs) == (
        OutputFormat.SQUASHFS, Compression.ZSTD, 19, NamePattern.DALEC, "bookworm", True)


@pytest.mark.parametrize(("text", "expected"), [
    # YAML 1.1 would make these a float, a date and a boolean
    ("name: a\nversion: 1.10\n", "1.10"),
    ("name: a\nversion: 2024-01-02\n", "2024-01-02"),
    ("name: a\nversion: '1'\ncompatibility:\n  id: no\n", "1"),
])
def test_small_yaml_schema_keeps_strings(text: str, expected: str) -> None:
    s = parse_spec(text, SPEC)
    assert s.version == expected
    if "id: no" in text:
        assert s.compatibility.id == "no"


ERRORS: list[tuple[str, str, str]] = [
    ("unknown top-level key", "name: a\nversion: '1'\nsoruces: []\n",
     "/specs/app.yaml:3: soruces: unknown key (expected one of: name, version,"),
    ("unknown nested key", "name: a\nversion: '1'\ncompatibility:\n  levle: '1'\n",
     "/specs/app.yaml:4: compatibility.levle: unknown key (expected one of: id, version_id, "
     "level, architecture, scope)"),
    ("missing name", "version: '1'\n", "/specs/app.yaml:1: name: missing (required)"),
    ("missing version", "name: a\n", "/specs/app.yaml:1: version: missing (required)"),
    ("wrong type", "name: a\nversion: '1'\nclass: [sysext]\n",
     "/specs/app.yaml:3: class: expected one of sysext, confext, both, got a list"),
    ("bad class", "name: a\nversion: '1'\nclass: portable\n",
     "/specs/app.yaml:3: class: expected one of sysext, confext, both, got 'portable'"),
    ("name with underscore", "name: my_ext\nversion: '1'\n",
     "/specs/app.yaml:1: name: 'my_ext' must be 1-128 letters"),
    ("name with .raw", "name: foo.raw\nversion: '1'\n",
     "/specs/app.yaml:1: name: 'foo.raw' must not end in '.raw'"),
    ("version with +", "name: a\nversion: 1.0+git\n",
     "/specs/app.yaml:2: version: '1.0+git' must be 1-128 letters"),
    ("name a mapping", "name: {a: 1}\nversion: '1'\n",
     "/specs/app.yaml:1: name: expected a string, got a mapping"),
    ("duplicate key", "name: a\nversion: '1'\nname: b\n",
     "/specs/app.yaml:3: name: duplicate key (first on line 1)"),
    ("YAML syntax", "name: a\nversion: [1\n", "/specs/app.yaml:3: invalid YAML:"),
    ("not a mapping", "- a\n", "/specs/app.yaml:1: expected a mapping, got a list"),
    ("source kind missing", "name: a\nversion: '1'\nsources:\n  - to: /usr\n",
     "/specs/app.yaml:4: sources[1]: needs exactly one of tree, file, package, apt"),
    ("two source kinds", "name: a\nversion: '1'\nsources:\n  - tree: x\n    file: y\n",
     "/specs/app.yaml:4: sources[1]: needs exactly one of"),
    ("unknown source key", "name: a\nversion: '1'\nsources:\n  - tree: x\n    mode: '0755'\n",
     "/specs/app.yaml:5: sources[1].mode: unknown key (expected one of: tree, to)"),
    ("file without to", "name: a\nversion: '1'\nsources:\n  - file: x\n",
     "/specs/app.yaml:4: sources[1].to: missing (required)"),
    ("relative to", "name: a\nversion: '1'\nsources:\n  - file: x\n    to: usr/bin/x\n",
     "/specs/app.yaml:5: sources[1].to: 'usr/bin/x' must be an absolute path inside the image"),
    ("to with ..", "name: a\nversion: '1'\nsources:\n  - tree: x\n    to: /usr/../etc\n",
     "sources[1].to: '/usr/../etc' must not contain '.' or '..'"),
    ("decimal mode", "name: a\nversion: '1'\nsources:\n  - file: x\n    to: /usr/bin/x\n"
     "    mode: 755\n", "sources[1].mode: write the mode in octal as a string"),
    ("package suffix", "name: a\nversion: '1'\nsources:\n  - package: foo.tar.gz\n",
     "sources[1].package: 'foo.tar.gz' is neither a .deb nor an .rpm"),
    ("bad apt name", "name: a\nversion: '1'\nsources:\n  - apt: Foo_Bar\n",
     "sources[1].apt: 'Foo_Bar' is not a valid Debian package name"),
    ("dalec runtime deps", "name: a\nversion: '1'\ndependencies:\n  runtime:\n    jq:\n",
     "/specs/app.yaml:4: dependencies.runtime: unknown key (expected one of: sysext)"),
    ("dalec range constraint", "name: a\nversion: '1'\ndependencies:\n  sysext:\n"
     "    jq: {version: ['>= 1.6']}\n",
     "dependencies.sysext.jq.version: only one exact version"),
    ("bad architecture", "name: a\nversion: '1'\ncompatibility:\n  architecture: amd64\n",
     "compatibility.architecture: 'amd64' is not an architecture systemd knows"),
    ("empty scope", "name: a\nversion: '1'\ncompatibility:\n  scope: []\n",
     "compatibility.scope: must name at least one scope"),
    ("bad scope", "name: a\nversion: '1'\ncompatibility:\n  scope: [host]\n",
     "compatibility.scope: 'host' is not one of system, initrd, portable"),
    ("etc confext without both", "name: a\nversion: '1'\nnormalize:\n  etc: confext\n",
     "normalize.etc: 'confext' needs class: both"),
    ("etc tmpfiles with both", "name: a\nversion: '1'\nclass: both\nnormalize:\n"
     "  etc: tmpfiles\n", "normalize.etc: 'tmpfiles' is for class: sysext"),
    ("absolute exclude", "name: a\nversion: '1'\nnormalize:\n  exclude: [/usr/share/doc]\n",
     "normalize.exclude: '/usr/share/doc': patterns match image paths without a leading '/'"),
    ("template unit", "name: a\nversion: '1'\nservices:\n  restart: [foo@.service]\n",
     "services.restart: 'foo@.service' is not a unit name"),
    ("lowercase release key", "name: a\nversion: '1'\nrelease:\n  vendor: x\n",
     "release.vendor: release keys are upper-case"),
    ("generated release key", "name: a\nversion: '1'\nrelease:\n  ID: debian\n",
     "release.ID: is written from the spec's own fields"),
    ("compression for the format", "name: a\nversion: '1'\noutput:\n  compression: xz\n",
     "output.compression: 'xz' is not available for erofs (one of: lz4hc, lz4, none)"),
    ("level out of range", "name: a\nversion: '1'\noutput:\n  level: 13\n",
     "output.level: lz4hc levels are 1..12"),
    ("level for xz", "name: a\nversion: '1'\noutput:\n  format: squashfs\n  compression: xz\n"
     "  level: 3\n", "output.level: squashfs with xz takes no level"),
    ("cluster size", "name: a\nversion: '1'\noutput:\n  cluster_size: 1000\n",
     "output.cluster_size: must be a multiple of 4096 bytes"),
    ("dalec pattern without target", "name: a\nversion: '1'\noutput:\n  name: dalec\n",
     "output.name: the dalec pattern"),
    ("epoch range", "name: a\nversion: '1'\nsource_date_epoch: -1\n",
     "source_date_epoch: must be between 0 and 4294967295"),
    ("bool for int", "name: a\nversion: '1'\nsource_date_epoch: true\n",
     "source_date_epoch: expected an integer, got a boolean"),
    ("relation name", "name: a\nversion: '1'\nrelations:\n  depends: [a_b]\n",
     "relations.depends: 'a_b' must be 1-128 letters"),
    ("hook command", "name: a\nversion: '1'\nhooks:\n  on_merge: ['  ']\n",
     "hooks.on_merge: '  ' must be one line with a command"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in ERRORS],
                         ids=[c[0] for c in ERRORS])
def test_spec_errors(text: str, message: str) -> None:
    with pytest.raises(StrataError) as e:
        parse_spec(text, SPEC)
    assert e.value.kind is ErrorKind.INVALID
    assert "\n" not in e.value.message
    # every message starts with the file and line; some cases pin the line too
    assert e.value.message.startswith("/specs/app.yaml:"), e.value.message
    assert message in e.value.message, e.value.message


def test_empty_spec_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StrataError, match="the spec is empty"):
        parse_spec("# nothing\n", SPEC)
    with pytest.raises(StrataError) as e:
        load_spec(tmp_path / "nope.yaml")
    assert e.value.kind is ErrorKind.NOT_FOUND
    assert str(tmp_path / "nope.yaml") in e.value.message
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(StrataError, match="not UTF-8"):
        load_spec(bad)


def test_relative_paths_follow_the_spec_file(tmp_path: Path) -> None:
    spec = tmp_path / "sub" / "spec.yaml"
    spec.parent.mkdir()
    spec.write_text("name: a\nversion: '1'\nsources:\n  - tree: ../root\n")
    s = load_spec(spec)
    assert s.sources == (TreeSource(path=tmp_path / "sub" / "../root", to="/"),)


@pytest.mark.parametrize(("name", "ok"), [
    ("my-sysext", True), ("a", True), ("tools.v2", True), ("9lives", True),
    ("my_sysext", False), ("a+b", False), ("-a", False), (".a", False), ("", False),
    ("a b", False), ("a/b", False), ("x.raw", False), ("x.sysext", False), ("x.confext", False),
    ("x.v", False), ("a" * 129, False), ("é", False),
])
def test_name_problem(name: str, ok: bool) -> None:
    assert (name_problem(name) is None) is ok


@pytest.mark.parametrize(("version", "ok"), [
    ("1.0", True), ("0.1.0", True), ("2024.01", True), ("1.0~rc1", True), ("v1", True),
    ("1.0-2", True), ("1_0", False), ("1.0+git", False), ("", False), (".1", False),
])
def test_version_problem(version: str, ok: bool) -> None:
    assert (version_problem(version) is None) is ok
