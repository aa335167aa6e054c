"""A small seccomp-BPF deny list for the code sandbox, built without libseccomp.

bubblewrap loads the filter (`--seccomp FD`) just before it execs the sandboxed interpreter,
after setting `no_new_privs`. The filter

- kills the process when the syscall comes from another ABI than the one it was built for
  (x86_64 programs calling the i386 or x32 entry points would otherwise slip past the numbers);
- returns EPERM for the syscalls that reconfigure the kernel's view of the sandbox (mount,
  umount2, the new mount API, pivot_root, chroot, unshare, setns, `clone` with any
  CLONE_NEW* flag), that reach other processes' memory or the kernel (ptrace,
  process_vm_readv/writev, bpf, perf_event_open, userfaultfd, io_uring, keyctl, kexec, module
  loading, reboot, swap, acct, quotactl, syslog, open_by_handle_at, fanotify, iopl/ioperm);
- returns ENOSYS for clone3 (its flags live in memory the filter cannot read), so glibc falls
  back to `clone`, whose flags it can check.

Everything else is allowed: this is defence in depth on top of the namespaces, the unprivileged
uid and the read-only mounts, not the boundary itself.
"""

from __future__ import annotations

import errno
import platform
import struct

_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0_LOW = 0, 4, 16  # struct seccomp_data, little endian

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80

_DENIED_NAMES = (
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "open_by_handle_at", "name_to_handle_at",
    "fanotify_init", "iopl", "ioperm",
)  # fmt: skip

# (AUDIT_ARCH_*, syscall numbers, first number of a foreign ABI sharing the arch value or None)
_ARCHES: dict[str, tuple[int, dict[str, int], int | None]] = {
    "x86_64": (
        0xC000003E,
        {
            "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272,
            "setns": 308, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
            "fsmount": 432, "fspick": 433, "mount_setattr": 442, "ptrace": 101,
            "process_vm_readv": 310, "process_vm_writev": 311, "bpf": 321, "perf_event_open": 298,
            "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249,
            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
            "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
            "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
            "quotactl": 179, "syslog": 103, "open_by_handle_at": 304, "name_to_handle_at": 303,
            "fanotify_init": 300, "iopl": 172, "ioperm": 173, "clone": 56, "clone3": 435,
        },
        0x40000000,  # x32 syscalls carry __X32_SYSCALL_BIT under the same AUDIT_ARCH
    ),
    "aarch64": (
        0xC00000B7,
        {
            "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97,
            "setns": 268, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
            "fsmount": 432, "fspick": 433, "mount_setattr": 442, "ptrace": 117,
            "process_vm_readv": 270, "process_vm_writev": 271, "bpf": 280, "perf_event_open": 241,
            "userfaultfd": 282, "keyctl": 219, "add_key": 217, "request_key": 218,
            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
            "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
            "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
            "quotactl": 60, "syslog": 116, "open_by_handle_at": 265, "name_to_handle_at": 264,
            "fanotify_init": 262, "clone": 220, "clone3": 435,
        },
        None,
    ),
}  # fmt: skip


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def supported_arch() -> str | None:
    """The machine name when a filter can be built for it (x86_64, aarch64), else None."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return machine if machine in _ARCHES else None


def denied_syscalls() -> tuple[str, ...]:
    """Names the filter answers with EPERM on this machine (clone only with CLONE_NEW* flags)."""
    arch = supported_arch()
    if arch is None:
        return ()
    table = _ARCHES[arch][1]
    return tuple(name for name in _DENIED_NAMES if name in table)


def build_filter() -> bytes | None:
    """The compiled `struct sock_filter[]` for this machine, or None on another architecture."""
    arch = supported_arch()
    if arch is None:
        return None
    audit_arch, table, foreign_from = _ARCHES[arch]
    eperm = _RET_ERRNO | errno.EPERM
    program = [
        _insn(_BPF_LD_W_ABS, _OFFSET_ARCH),
        _insn(_BPF_JEQ_K, audit_arch, jt=1, jf=0),
        _insn(_BPF_RET_K, _RET_KILL_PROCESS),
        _insn(_BPF_LD_W_ABS, _OFFSET_NR),
    ]
    if foreign_from is not None:
        program += [_insn(_BPF_JGE_K, foreign_from, jt=0, jf=1), _insn(_BPF_RET_K, _RET_KILL_PROCESS)]
    for name in _DENIED_NAMES:
        if name in table:
            program += [_insn(_BPF_JEQ_K, table[name], jt=0, jf=1), _insn(_BPF_RET_K, eperm)]
    program += [
        _insn(_BPF_JEQ_K, table["clone3"], jt=0, jf=1),
        _insn(_BPF_RET_K, _RET_ERRNO | errno.ENOSYS),
        _insn(_BPF_JEQ_K, table["clone"], jt=0, jf=3),
        _insn(_BPF_LD_W_ABS, _OFFSET_ARG0_LOW),
        _insn(_BPF_JSET_K, CLONE_NAMESPACE_FLAGS, jt=0, jf=1),
        _insn(_BPF_RET_K, eperm),
        _insn(_BPF_RET_K, _RET_ALLOW),
    ]
    return b"".join(program)
