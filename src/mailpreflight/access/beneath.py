"""openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS: the read gate's fast way to a guest file whose path holds
no link (docs/design.md, "Performance"; access/rootfs.py, `_pin_plain`).

One system call does what the gate's walk does in one per path component: every component is resolved beneath
the root's descriptor, none may be a symlink (a link anywhere, or a magic link, fails with ELOOP) and `..` may not
climb out (EXDEV). With O_PATH | O_NOFOLLOW a last component that is a link is returned as the link itself, which
the caller sees in fstat() and hands to the walk. Anything this cannot do — a kernel before 5.6 (ENOSYS), a
seccomp filter (EPERM), an architecture where the call has another number, a path with links, a host path
longer than PATH_MAX (RootFS._host_fits) — is left to the walk, which gives the answers of record: this only
ever makes a read cheaper, never different. (A seccomp filter that answered ENOENT would make link-free paths
look missing; the usual ones answer EPERM or ENOSYS.)
"""

from __future__ import annotations

import ctypes
import errno
import os

_SYS_OPENAT2 = 437  # on the architectures below; alpha (547), ia64 and mips (4437...) number it otherwise
# Where 437 is openat2 (each table checked in Linux's arch/*/syscall.tbl and asm-generic/unistd.h); elsewhere the
# walk is used: calling another architecture's syscall 437 could do anything.
_ARCHITECTURES = frozenset({"x86_64", "i386", "i486", "i586", "i686", "aarch64", "arm64", "armv6l", "armv7l",
                            "armv8l", "riscv64", "s390x", "ppc64", "ppc64le", "loongarch64"})
_RESOLVE = 0x02 | 0x04 | 0x08  # RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH
PIN_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _bind() -> object | None:
    if os.uname().machine not in _ARCHITECTURES:  # platform.machine(), without importing platform
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    return syscall


_SYSCALL = _bind()
_available = _SYSCALL is not None
_HOW: dict[int, bytes] = {}  # struct open_how for each set of open flags used


def open_beneath(dirfd: int, relative: str, flags: int) -> int:
    """A descriptor of `relative` (no leading slash) beneath `dirfd`, opened with `flags` (PIN_FLAGS: O_PATH, the last
    component not followed; a directory to list: O_RDONLY | O_DIRECTORY | O_NOFOLLOW), no link followed on the way.
    A negative errno when it fails: -ELOOP for a link on the way, -ENOENT for a missing component, -ENOSYS when
    openat2 is not there (then the caller walks). Never raises."""
    global _available
    if not _available or _SYSCALL is None:
        return -errno.ENOSYS
    syscall = _SYSCALL
    how = _HOW.get(flags)
    if how is None:
        how = _HOW[flags] = bytes(_OpenHow(flags, 0, _RESOLVE))
    try:
        path = os.fsencode(relative)
    except (UnicodeError, ValueError):
        return -errno.EINVAL
    if b"\0" in path:
        return -errno.EINVAL
    fd: int = syscall(_SYS_OPENAT2, dirfd, path, how, len(how))  # type: ignore[operator]
    if fd >= 0:
        return fd
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EPERM):  # not here, or a seccomp filter: walk, for the rest of the run
        _available = False
    return -code
