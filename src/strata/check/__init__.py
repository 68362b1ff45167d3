"""`strata check` and `strata inspect`: read an extension image without mounting it and say
whether it will work on a host.

- `findings`: Severity, Rule, Finding, ImageReport, the exit status by the worst severity.
- `tree`: one walk of an image (Entry, Tree), symlink chasing in the image, on a host, and in
  the image merged over a host (`Layered`).
- `elf`: ELF headers (pure) and the dynamic data pyelftools reads (imported lazily).
- `libs`: the dynamic loader's search path (RUNPATH/RPATH, ld.so.conf, multiarch), pure.
- `host`: a host root (`--host`): its files, release, libraries and glibc version.
- `view`: ImageView, everything the rules read about one image, collected once.
- `layout`, `perms`, `elfrules`, `conflicts`: the rules, one function each.
- `packages`: which Debian package provides a library (best effort, for hints).
- `runner`: check_images() runs the rules; `report`: human and JSON output.
- `inspect`: `strata inspect` (format, size, sha256, release fields, file tree).
"""
