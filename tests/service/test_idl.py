"""The served interfaces are the golden ones: what org.varlink.service.GetInterfaceDescription
returns, parsed by the independent `varlink` package, has the same members and signatures as
the golden .varlink files shipped in the package."""

from __future__ import annotations

import subprocess
from importlib import resources
from typing import Any

import pytest
import varlink

from tests.helpers import PEERS

GOLDEN = ("org.avocado.Extensions", "io.systemd.sysext", "io.strata.Extensions")


def golden(name: str) -> str:
    return resources.files("strata.service").joinpath(f"{name}.varlink").read_text()


def canon_type(t: Any) -> str:
    """A varlink.scanner type as IDL text, normalised (no whitespace or comments)."""
    from varlink import scanner

    if isinstance(t, scanner._Maybe):
        return "?" + canon_type(t.element_type)
    if isinstance(t, scanner._Array):
        return "[]" + canon_type(t.element_type)
    if isinstance(t, scanner._Dict):
        return "[string]" + canon_type(t.element_type)
    if isinstance(t, scanner._CustomType):
        return str(t.name)
    if isinstance(t, scanner._Struct):
        return "(" + ", ".join(f"{k}: {canon_type(v)}" for k, v in t.fields.items()) + ")"
    if isinstance(t, scanner._Enum):
        return "(" + ", ".join(t.fields) + ")"
    if isinstance(t, scanner._Object):
        return "object"
    if isinstance(t, bool):
        return "bool"
    if isinstance(t, int):
        return "int"
    if isinstance(t, float):
        return "float"
    if isinstance(t, str):
        return "string"
    raise AssertionError(f"unknown varlink type {t!r}")


def members(description: str) -> tuple[str, dict[str, tuple[str, ...]]]:
    from varlink import scanner

    iface = varlink.Interface(description)
    out: dict[str, tuple[str, ...]] = {}
    for name, m in iface.members.items():
        if isinstance(m, scanner._Method):
            out[name] = ("method", canon_type(m.in_type), canon_type(m.out_type))
        elif isinstance(m, scanner._Alias):
            out[name] = ("type", canon_type(m.type))
        elif isinstance(m, scanner._Error):
            out[name] = ("error", canon_type(m.type))
        else:
            raise AssertionError(f"unknown member {name}: {m!r}")
    return iface.name, out


def test_golden_avocado_is_the_seed() -> None:
    """The golden file holds exactly the seed's contract."""
    name, m = members(golden("org.avocado.Extensions"))
    assert name == "org.avocado.Extensions"
    assert m == {
        "Extension": ("type", "(name: string, version: ?string, path: string, "
                              "isSysext: bool, isConfext: bool, isDirectory: bool)"),
        "ExtensionStatus": ("type", "(name: string, version: ?string, isSysext: bool, "
                                    "isConfext: bool, isMerged: bool, origin: ?string, "
                                    "imageId: ?string)"),
        "List": ("method", "()", "(extensions: []Extension)"),
        "Merge": ("method", "()", "(message: string, done: bool)"),
        "Unmerge": ("method", "(unmount: ?bool)", "(message: string, done: bool)"),
        "Refresh": ("method", "()", "(message: string, done: bool)"),
        "Enable": ("method", "(extensions: []string, osRelease: ?string)",
                   "(enabled: int, failed: int)"),
        "Disable": ("method", "(extensions: ?[]string, all: ?bool, osRelease: ?string)",
                    "(disabled: int, failed: int)"),
        "Status": ("method", "()", "(extensions: []ExtensionStatus)"),
        "ExtensionNotFound": ("error", "(name: string)"),
        "MergeFailed": ("error", "(reason: string)"),
        "UnmergeFailed": ("error", "(reason: string)"),
        "ConfigurationError": ("error", "(message: string)"),
        "CommandFailed": ("error", "(command: string, message: string)"),
    }


def test_golden_sysext_is_systemd_257() -> None:
    """Transcribed from systemd 257's src/shared/varlink-io.systemd.sysext.c."""
    name, m = members(golden("io.systemd.sysext"))
    assert name == "io.systemd.sysext"
    opt = "class: ?ImageClass"
    assert m == {
        "ImageClass": ("type", "(sysext, confext)"),
        "ImageType": ("type", "(directory, subvolume, raw, block)"),
        "Merge": ("method", f"({opt}, force: ?bool, noReload: ?bool, noexec: ?bool)", "()"),
        "Unmerge": ("method", f"({opt}, noReload: ?bool)", "()"),
        "Refresh": ("method", f"({opt}, force: ?bool, noReload: ?bool, noexec: ?bool)", "()"),
        "List": ("method", f"({opt})",
                 "(Class: ImageClass, Type: ImageType, Name: string, Path: ?string, "
                 "ReadOnly: bool, CreationTimestamp: ?int, ModificationTimestamp: ?int, "
                 "Usage: ?int, UsageExclusive: ?int, Limit: ?int, LimitExclusive: ?int)"),
        "NoImagesFound": ("error", "()"),
        "AlreadyMerged": ("error", "(hierarchy: string)"),
    }


@pytest.mark.parametrize("interface", GOLDEN)
def test_served_idl_matches_golden(address: str, interface: str) -> None:
    with varlink.Client(address=address) as client, client.open("org.varlink.service") as svc:
        served = svc.GetInterfaceDescription(interface)["description"]
    assert members(served) == members(golden(interface))


def test_service_introspection(address: str) -> None:
    with varlink.Client(address=address) as client, client.open("org.varlink.service") as svc:
        info = svc.GetInfo()
        assert info["vendor"] == "Strata"
        assert info["interfaces"] == ["io.strata.Extensions", "io.systemd.sysext",
                                      "org.avocado.Extensions", "org.varlink.service"]
        name, m = members(svc.GetInterfaceDescription("org.varlink.service")["description"])
    assert name == "org.varlink.service"
    assert m["GetInfo"] == ("method", "()", "(vendor: string, product: string, version: "
                                            "string, url: string, interfaces: []string)")
    assert m["GetInterfaceDescription"] == ("method", "(interface: string)",
                                            "(description: string)")
    assert m["PermissionDenied"] == ("error", "()")


def test_unknown_interface_description(address: str) -> None:
    with varlink.Client(address=address) as client, \
            client.open("org.varlink.service") as svc, \
            pytest.raises(varlink.VarlinkError) as exc:
        svc.GetInterfaceDescription("org.example.Nope")
    assert exc.value.error() == "org.varlink.service.InterfaceNotFound"


@pytest.mark.peers257
def test_systemd_257_serves_the_golden_sysext() -> None:
    """The golden io.systemd.sysext is what systemd 257 itself serves."""
    r = subprocess.run([PEERS, "chroot", "varlinkctl", "introspect",
                        "exec:/usr/bin/systemd-sysext", "io.systemd.sysext"],
                       capture_output=True, text=True, check=True)
    assert members(r.stdout) == members(golden("io.systemd.sysext"))
