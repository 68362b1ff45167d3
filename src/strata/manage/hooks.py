"""Hooks after merge and around unmerge: what has to run once extensions are merged (or before
and after they go) so that the running system notices them.

Two halves: planning (which commands, in which order, from the extensions' release data and
contents; no side effects) and a small runner that executes a plan without a shell, or, when
the target is not the running system, only records it.

The rules follow avocadoctl (src/commands/ext.rs: process_post_merge_tasks_for_extensions,
parse_avocado_*; its four phases), systemd-sysext (need_reload; v262's
EXTENSION_RESTART_UNITS=/EXTENSION_RELOAD_OR_RESTART_UNITS=) and what avocado-cli writes into
release files. The user-facing description, with the decisions taken where the sources
disagree, is the "Hooks" section of docs/reference.md.

After a merge:

    phase 1  depmod -a       an extension ships kernel modules (or asks: AVOCADO_ON_MERGE=depmod)
             ldconfig        an extension ships shared libraries (or asks: ...=ldconfig)
    phase 2  modprobe M      each module of each extension's first AVOCADO_MODPROBE= line
    phase 3  systemctl daemon-reload
                             EXTENSION_RELOAD_MANAGER=1, or units listed (below)
    phase 4  AVOCADO_ON_MERGE= commands, in order, duplicates dropped
             systemctl restart --no-block UNITS            EXTENSION_RESTART_UNITS=
             systemctl reload-or-restart --no-block UNITS  EXTENSION_RELOAD_OR_RESTART_UNITS=
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence

from strata import log
from strata.errors import ErrorKind, StrataError
from strata.manage.api import HookRun, MergedExtension
from strata.model import ExtClass
from strata.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from strata.images.base import ImageFS

#: the only environment variable hooks get (besides nothing): they must not depend on, or be
#: steered by, whatever environment strata itself was started with
HOOK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

#: seconds a hook may run before it is killed and reported as failed; a hung hook must not
#: hold the merge (and the service's one-change-at-a-time queue) forever
DEFAULT_TIMEOUT = 300.0


class Phase(enum.Enum):
    """What a hook command is for; the value is HookRun.phase."""

    DEPMOD = "depmod"
    LDCONFIG = "ldconfig"
    MODPROBE = "modprobe"
    DAEMON_RELOAD = "daemon-reload"
    ON_MERGE = "on-merge"
    RESTART = "restart"
    RELOAD_OR_RESTART = "reload-or-restart"
    ON_UNMERGE = "on-unmerge"
    START = "start"  # services.py: the services an extension declares, after a merge
    STOP = "stop"  # services.py: ... before it is unmerged or removed


@record
class HookCommand:
    """One planned command: an argv (run without a shell) and the extensions that asked."""

    phase: Phase
    argv: tuple[str, ...]
    sources: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        """The command as a shell would need it written (for messages only)."""
        import shlex

        return shlex.join(self.argv)


@record
class Content:
    """What an image ships that the running system has to be told about."""

    modules: bool  # kernel modules below usr/lib/modules
    libraries: bool  # shared libraries where ldconfig looks (sysext), ld.so.conf.d (confext)


# ---------------------------------------------------------------------------------------------
# Release data


_WS = re.compile(r"[ \t\n\r]+")


def _split_ws(value: str) -> list[str]:
    """strv_split(value, WHITESPACE), as systemd splits unit lists: ASCII whitespace only."""
    return [w for w in _WS.split(value) if w]


def split_commands(value: str) -> list[tuple[str, ...]]:
    """An AVOCADO_ON_MERGE=/AVOCADO_ON_UNMERGE= value -> argvs, as avocadoctl runs it: split on
    ";", each part split on whitespace, empty parts dropped. No shell: quotes, "$" and
    redirections are plain characters (the release file's own quoting is already gone)."""
    return [tuple(part.split()) for part in value.split(";") if part.split()]


def _pairs(ext: MergedExtension) -> Sequence[tuple[str, str]]:
    """Every assignment of the release file in order; a record built without pairs has at
    least the last value of each key."""
    return ext.release_pairs or tuple(ext.release.items())


def _all_values(pairs: Sequence[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in pairs if k == key]


def _first_value(pairs: Sequence[tuple[str, str]], key: str) -> str | None:
    return next((v for k, v in pairs if k == key), None)


_UNIT_TYPES = frozenset({"service", "socket", "target", "device", "mount", "automount", "swap",
                         "timer", "path", "slice", "scope"})
_UNIT_CHARS = re.compile(r"[A-Za-z0-9:_.\\-]+")
UNIT_NAME_MAX = 256


def unit_name_is_valid(name: str) -> bool:
    """systemd's unit_name_is_valid(name, UNIT_NAME_PLAIN|UNIT_NAME_INSTANCE): "foo.service" or
    "foo@bar.service"; templates ("foo@.service"), bad characters and unknown types are not."""
    if not name or len(name) >= UNIT_NAME_MAX:
        return False
    prefix, dot, suffix = name.rpartition(".")
    if not dot or not prefix or suffix not in _UNIT_TYPES:
        return False
    head, at, instance = prefix.partition("@")
    if not head or not _UNIT_CHARS.fullmatch(head):
        return False
    return not at or bool(instance and _UNIT_CHARS.fullmatch(instance))


def _units(ext: MergedExtension, release: Mapping[str, str], key: str) -> list[str]:
    """The valid unit names of `key`; invalid ones are left out with a warning, as systemd
    does. A name starting with "-" ("-.mount") would reach systemctl as an option: left out
    too."""
    out = []
    for unit in _split_ws(release.get(key, "")):
        if not unit_name_is_valid(unit) or unit.startswith("-"):
            log.warning(f"Invalid unit name '{unit}' in {key}= of {ext.name}, ignoring.")
            continue
        out.append(unit)
    return out


def _wants_manager_reload(ext: MergedExtension, release: Mapping[str, str]) -> bool:
    """EXTENSION_RELOAD_MANAGER= as need_reload() reads it: empty is no, unparseable is a
    warning and no."""
    from strata.parse import parse_boolean

    value = release.get("EXTENSION_RELOAD_MANAGER", "")
    if not value:
        return False
    b = parse_boolean(value)
    if b is None:
        log.warning(f"Failed to parse EXTENSION_RELOAD_MANAGER= of {ext.name} ('{value}'), "
                    "ignoring.")
        return False
    return b


# ---------------------------------------------------------------------------------------------
# Image contents


_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
#: libfoo.so, libfoo.so.1, libfoo.so.1.2.3; not foo.sock or foo.sox
_LIBRARY_NAME = re.compile(r"\.so(\.|$)")
_ELF_MAGIC = b"\x7fELF"
#: how deep below usr/lib* and usr/local/lib* to look for libraries: the directory itself and
#: its subdirectories (multiarch: usr/lib/x86_64-linux-gnu), which is where ldconfig's
#: configuration points; deeper trees (python, usr/lib/modules) are plugins, not its business
_LIBRARY_DEPTH = 2


def _directory(fs: ImageFS, path: str) -> str | None:
    """`path` with symlinks chased inside the image, if it is a directory."""
    from strata.images.base import FileKind

    try:
        resolved = fs.resolve(path)
        return resolved if fs.lstat(resolved).kind is FileKind.DIRECTORY else None
    except StrataError as e:
        if e.kind is ErrorKind.NOT_FOUND:
            return None
        raise


def _files(fs: ImageFS, top: str, *, max_depth: int | None = None) -> Iterator[tuple[str, str]]:
    """(path, name) of the regular files below directory `top`, depth first, lazily (callers
    stop at the first hit). Symlinks are not followed, so a link loop cannot trap the walk."""
    from strata.images.base import FileKind

    stack = [(top, 1)]
    while stack:
        directory, depth = stack.pop()
        for name in sorted(fs.listdir(directory)):
            path = f"{directory.rstrip('/')}/{name}"
            kind = fs.lstat(path).kind
            if kind is FileKind.REGULAR:
                yield path, name
            elif kind is FileKind.DIRECTORY and (max_depth is None or depth < max_depth):
                stack.append((path, depth + 1))


def _ships_modules(fs: ImageFS) -> bool:
    top = _directory(fs, "/usr/lib/modules")
    if top is None:
        return False
    return any(name.endswith(_MODULE_SUFFIXES) for _path, name in _files(fs, top))


def _library_dirs(fs: ImageFS) -> list[str]:
    """usr/lib*, usr/local/lib* (not libexec), each once even when lib64 links to lib."""
    out: list[str] = []
    for parent in ("/usr", "/usr/local"):
        top = _directory(fs, parent)
        if top is None:
            continue
        for name in sorted(fs.listdir(top)):
            if name.startswith("lib") and name != "libexec":
                d = _directory(fs, f"{top.rstrip('/')}/{name}")
                if d is not None and d not in out:
                    out.append(d)
    return out


def _ships_libraries(fs: ImageFS) -> bool:
    for top in _library_dirs(fs):
        for path, name in _files(fs, top, max_depth=_LIBRARY_DEPTH):
            # A name alone is not enough: libc.so is often a linker script.
            if _LIBRARY_NAME.search(name) and fs.read(path, limit=4) == _ELF_MAGIC:
                return True
    return False


def _configures_libraries(fs: ImageFS) -> bool:
    top = _directory(fs, "/etc/ld.so.conf.d")
    return top is not None and bool(fs.listdir(top))


def scan_content(ext: MergedExtension, *, root: str = "/") -> Content:
    """Whether the image of `ext` ships kernel modules (.ko, .ko.xz, .ko.zst, .ko.gz below
    usr/lib/modules; sysext only) or shared libraries (an ELF *.so* in usr/lib*, usr/local/lib*
    or one directory below; for a confext: a non-empty etc/ld.so.conf.d), read without
    mounting and stopping at the first hit.

    An image that cannot be read is assumed to ship both, with a warning: an unneeded depmod
    or ldconfig costs a second, a missing one leaves modules or libraries unusable."""
    cls = ExtClass(ext.cls)
    path = ext.path if os.path.isabs(ext.path) else os.path.join(root, ext.path)
    try:
        from strata.images import open_fs

        with open_fs(path) as fs:
            if cls is ExtClass.CONFEXT:
                return Content(modules=False, libraries=_configures_libraries(fs))
            return Content(modules=_ships_modules(fs), libraries=_ships_libraries(fs))
    except StrataError as e:
        log.warning(f"Cannot look into {path} for kernel modules and libraries, assuming it "
                    f"ships both: {e}")
        return Content(modules=cls is ExtClass.SYSEXT, libraries=True)


ContentScanner = Callable[[MergedExtension], Content]


def _scanner(root: str, content: ContentScanner | None) -> ContentScanner:
    if content is not None:
        return content
    return lambda ext: scan_content(ext, root=root)


# ---------------------------------------------------------------------------------------------
# Planning


class _Phase:
    """Commands of one phase in first-seen order, a repeated one only adding its source."""

    def __init__(self) -> None:
        self._commands: dict[tuple[str, ...], HookCommand] = {}

    def add(self, phase: Phase, argv: tuple[str, ...], source: str,
            key: tuple[str, ...] | None = None) -> None:
        k = key if key is not None else argv
        have = self._commands.get(k)
        if have is None:
            self._commands[k] = HookCommand(phase, argv, (source,))
        elif source not in have.sources:
            self._commands[k] = HookCommand(have.phase, have.argv, (*have.sources, source))

    def __iter__(self) -> Iterator[HookCommand]:
        return iter(self._commands.values())


_DEPMOD_ALL = ("depmod", "-a")
#: commands avocadoctl runs in phase 1, before the reload, by their first word
_PHASE1 = {"depmod": Phase.DEPMOD, "ldconfig": Phase.LDCONFIG}


def _phase1_key(argv: tuple[str, ...]) -> tuple[str, ...]:
    """Bare `depmod` is `depmod -a` (depmod(8): -a is assumed without module names), so an
    AVOCADO_ON_MERGE=depmod (avocado-cli writes it when .ko files are present) and the
    depmod planned from the image's contents run once."""
    return _DEPMOD_ALL if argv == ("depmod",) else argv


def _service_manager(phase3: _Phase, phase4: _Phase, exts: Sequence[MergedExtension],
                     releases: Sequence[Mapping[str, str]]) -> None:
    """daemon-reload (phase 3) and the unit restarts (end of phase 4). Listing a unit implies
    the reload; a unit listed for restart and for reload-or-restart is only restarted (v262)."""
    restart: dict[str, list[str]] = {}
    reload_or_restart: dict[str, list[str]] = {}
    for ext, release in zip(exts, releases, strict=True):
        units_r = _units(ext, release, "EXTENSION_RESTART_UNITS")
        units_rr = _units(ext, release, "EXTENSION_RELOAD_OR_RESTART_UNITS")
        for unit in units_r:
            restart.setdefault(unit, []).append(ext.name)
        for unit in units_rr:
            reload_or_restart.setdefault(unit, []).append(ext.name)
        if _wants_manager_reload(ext, release) or units_r or units_rr:
            phase3.add(Phase.DAEMON_RELOAD, ("systemctl", "daemon-reload"), ext.name)
    for unit in restart:
        reload_or_restart.pop(unit, None)
    # One systemctl call per kind: it acts on every unit it can and fails if one fails.
    # --no-block: queue the jobs, do not wait for them. Hooks also run from the boot-time merge
    # unit, ordered before sysinit.target, where waiting for the restart of an ordinary service
    # (ordered after it) would deadlock until the timeout.
    for units, phase, verb in ((restart, Phase.RESTART, "restart"),
                               (reload_or_restart, Phase.RELOAD_OR_RESTART, "reload-or-restart")):
        if units:
            sources = list(dict.fromkeys(n for names in units.values() for n in names))
            argv = ("systemctl", verb, "--no-block", *units)
            for name in sources:
                phase4.add(phase, argv, name)


def _add_cache_refreshes(phase: _Phase, merged: Sequence[MergedExtension],
                         scan: ContentScanner) -> None:
    """depmod when an extension ships kernel modules, then ldconfig when one ships
    libraries (each once, naming the extensions that asked)."""
    found = [(ext, scan(ext)) for ext in merged]
    for ext, c in found:
        if c.modules:
            phase.add(Phase.DEPMOD, _DEPMOD_ALL, ext.name)
    for ext, c in found:
        if c.libraries:
            phase.add(Phase.LDCONFIG, ("ldconfig",), ext.name)


def plan_after_merge(merged: Sequence[MergedExtension], *, root: str = "/",
                     content: ContentScanner | None = None) -> tuple[HookCommand, ...]:
    """The commands to run after `merged` (in the order given, which decides the order of
    their AVOCADO_ON_MERGE= commands) were merged into `root`; phases as in the module
    docstring. `content` (default: scan_content, reading each image) says what each ships."""
    scan = _scanner(root, content)
    phase1, phase2, phase3, phase4 = _Phase(), _Phase(), _Phase(), _Phase()
    _add_cache_refreshes(phase1, merged, scan)
    for ext in merged:
        pairs = _pairs(ext)
        for value in _all_values(pairs, "AVOCADO_ON_MERGE"):
            for argv in split_commands(value):
                early = _PHASE1.get(os.path.basename(argv[0]))
                if early is not None:
                    phase1.add(early, argv, ext.name, key=_phase1_key(argv))
                else:
                    phase4.add(Phase.ON_MERGE, argv, ext.name)
        # avocadoctl reads only the first AVOCADO_MODPROBE= line of each release file
        for module in (_first_value(pairs, "AVOCADO_MODPROBE") or "").split():
            phase2.add(Phase.MODPROBE, ("modprobe", module), ext.name)
    _service_manager(phase3, phase4, merged, [ext.release for ext in merged])
    return (*phase1, *phase2, *phase3, *phase4)


def merged_tree_pairs(root: str, ext: MergedExtension) -> tuple[tuple[str, str], ...] | None:
    """The release file of `ext` as the live merge in `root` shows it (what is merged now,
    even if the image on disk changed since), or None when `ext` is not in a live merge there
    or its file cannot be found or read (then the caller uses the record's own data).

    Looked up by name in the merged hierarchy (/usr or /etc) like systemd's need_reload(), but
    with the strict lookup: in a merged tree every extension's file sits in the same directory,
    so the relaxed "any single file" rule would find none as soon as two are merged."""
    from strata.engine import marker
    from strata.engine.query import resolved
    from strata.images.base import DirectoryFS
    from strata.release import MAX_RELEASE_SIZE, find_extension_release, parse_env_pairs

    cls = ExtClass(ext.cls)
    try:
        target = resolved("/usr" if cls is ExtClass.SYSEXT else "/etc", root)
        state = marker.read_merged(cls, target, root) if target is not None else None
        if state is None or ext.name not in state.extensions:
            return None
        fs = DirectoryFS(root)
        found = find_extension_release(fs, cls, ext.name)
        if found.path is None:
            return None
        data = fs.read(found.path, limit=MAX_RELEASE_SIZE)
        return tuple(parse_env_pairs(data, source=f"{root.rstrip('/')}{found.path}"))
    except StrataError as e:
        log.warning(f"Cannot read the merged release data of {ext.name}, using the image's: {e}")
        return None


def _current(root: str, ext: MergedExtension) -> tuple[Sequence[tuple[str, str]],
                                                        Mapping[str, str]]:
    """(pairs, mapping) of `ext`'s release data: from the live merge if there is one, else
    the record's. The mapping is what systemd sees: the last value of each key."""
    pairs = merged_tree_pairs(root, ext)
    if pairs is None:
        return _pairs(ext), ext.release
    return pairs, dict(pairs)


def plan_before_unmerge(merged: Sequence[MergedExtension], *, root: str = "/"
                        ) -> tuple[HookCommand, ...]:
    """AVOCADO_ON_UNMERGE= commands of the extensions about to be unmerged, read from the
    merged tree while it is still there (merged_tree_pairs), split and deduplicated like
    AVOCADO_ON_MERGE=. Call it before unmerging."""
    out = _Phase()
    for ext in merged:
        pairs, _release = _current(root, ext)
        for value in _all_values(pairs, "AVOCADO_ON_UNMERGE"):
            for argv in split_commands(value):
                out.add(Phase.ON_UNMERGE, argv, ext.name)
    return tuple(out)


def plan_after_unmerge(merged: Sequence[MergedExtension], *, root: str = "/",
                       content: ContentScanner | None = None) -> tuple[HookCommand, ...]:
    """What to run once `merged` are gone: `depmod -a` if one shipped kernel modules (as
    avocadoctl), `ldconfig` if one shipped libraries (so that the cache stops naming files
    that are gone), and daemon-reload if one had EXTENSION_RELOAD_MANAGER=1 or listed units
    (as systemd-sysext unmerge). The release data comes from the merged tree when it is still
    there, so compute this plan before unmerging and run it after (see after_unmerge)."""
    scan = _scanner(root, content)
    steps, reload = _Phase(), _Phase()
    _add_cache_refreshes(steps, merged, scan)
    for ext in merged:
        _, release = _current(root, ext)
        if (_wants_manager_reload(ext, release)
                or _units(ext, release, "EXTENSION_RESTART_UNITS")
                or _units(ext, release, "EXTENSION_RELOAD_OR_RESTART_UNITS")):
            reload.add(Phase.DAEMON_RELOAD, ("systemctl", "daemon-reload"), ext.name)
    return (*steps, *reload)


# ---------------------------------------------------------------------------------------------
# Running


@record
class Exec:
    """What became of starting one command (a Runner's answer)."""

    started: bool
    status: int | None = None  # exit status; None when it did not finish (timeout)
    message: str = ""  # why it did not start or did not finish, else the last stderr line


#: runs one argv (program name unresolved) with a clean environment and cwd "/"
Runner = Callable[[Sequence[str]], Exec]


def is_live(root: str, *, systemd_dir: str = "/run/systemd/system") -> bool:
    """Whether hooks act on the running system: `root` is "/" and systemd is PID 1 (its
    runtime directory exists, sd_booted()). Otherwise they are only recorded."""
    return os.path.realpath(root or "/") == "/" and os.path.isdir(systemd_dir)


def _which(program: str, search_path: str) -> str | None:
    import shutil

    if "/" in program:
        # relative to the hooks' working directory, "/", not to strata's
        path = os.path.join("/", program)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(program, path=search_path)


def spawner(search_path: str = HOOK_PATH, timeout: float | None = DEFAULT_TIMEOUT) -> Runner:
    """The real Runner: resolve the program in `search_path`, run it through strata.run.run
    (no shell) with cwd "/" and nothing in its environment but PATH=`search_path`.

    strata.run.run adds the caller's environment to what it is given, so the clearing is
    done by `env -i` in front of the program."""
    from strata.run import run

    env_program = _which("env", HOOK_PATH)

    def spawn(argv: Sequence[str]) -> Exec:
        program = _which(argv[0], search_path)
        if program is None:
            return Exec(False, message=f"{argv[0]}: command not found (PATH={search_path})")
        full = [program, *argv[1:]]
        if env_program is not None:
            full = [env_program, "-i", f"PATH={search_path}", *full]
        try:
            proc = run(full, check=False, cwd="/", env={"PATH": search_path}, timeout=timeout)
        except StrataError as e:
            if e.kind is ErrorKind.NOT_FOUND:
                return Exec(False, message=f"{argv[0]}: command not found")
            return Exec(True, message=f"{argv[0]}: {e.message.split(': ', 1)[-1]}")
        except OSError as e:
            return Exec(False, message=f"{argv[0]}: {e.strerror or e}")
        lines = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
        return Exec(True, proc.returncode, lines[-1] if lines else "")

    return spawn


def _outcome(c: HookCommand, result: Exec) -> HookRun:
    phase = c.phase.value
    if not result.started:
        log.warning(f"Hook '{c.display}' could not be started: {result.message}")
        return HookRun(phase, c.argv, ran=False, error=result.message or "not started")
    if result.status is None:
        log.warning(f"Hook '{c.display}' failed: {result.message}")
        return HookRun(phase, c.argv, ran=True, error=result.message or "did not finish")
    if result.status != 0:
        why = (f"killed by signal {-result.status}" if result.status < 0
               else result.message or f"exit status {result.status}")
        log.warning(f"Hook '{c.display}' failed: {why}")
        return HookRun(phase, c.argv, ran=True, status=result.status, error=why)
    return HookRun(phase, c.argv, ran=True, status=0)


def run_hooks(commands: Sequence[HookCommand], *, live: bool,
              runner: Runner | None = None) -> tuple[HookRun, ...]:
    """Run `commands` in order when `live`; a failure is logged as a warning and reported in
    its HookRun, and the rest still run (nothing is undone). Not live: every command comes
    back as HookRun(ran=False), what would have run. `runner` defaults to spawner()."""
    if not live:
        for c in commands:
            log.debug(f"Not running hook (not the running system): {c.display}")
        return tuple(HookRun(c.phase.value, c.argv, ran=False) for c in commands)
    spawn = runner if runner is not None else spawner()
    out = []
    for c in commands:
        log.info(f"Running {c.display}")
        out.append(_outcome(c, spawn(c.argv)))
    return tuple(out)


def after_merge(root: str, merged: Sequence[MergedExtension], *, live: bool,
                runner: Runner | None = None, content: ContentScanner | None = None
                ) -> tuple[HookRun, ...]:
    """plan_after_merge + run_hooks."""
    return run_hooks(plan_after_merge(merged, root=root, content=content), live=live,
                     runner=runner)


def before_unmerge(root: str, merged: Sequence[MergedExtension], *, live: bool,
                   runner: Runner | None = None) -> tuple[HookRun, ...]:
    """plan_before_unmerge + run_hooks; call it while `merged` are still merged."""
    return run_hooks(plan_before_unmerge(merged, root=root), live=live, runner=runner)


def after_unmerge(root: str, merged: Sequence[MergedExtension], *, live: bool,
                  runner: Runner | None = None, content: ContentScanner | None = None
                  ) -> tuple[HookRun, ...]:
    """plan_after_unmerge + run_hooks. Called after the unmerge, it plans from the records'
    release data (the merged tree is gone); for systemd's exact behaviour (release data as
    merged), plan_after_unmerge() before unmerging and run_hooks() the plan afterwards."""
    return run_hooks(plan_after_unmerge(merged, root=root, content=content), live=live,
                     runner=runner)
