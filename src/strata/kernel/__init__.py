"""The only code that makes raw syscalls: loop devices, the new mount API, namespaces, mountinfo."""
