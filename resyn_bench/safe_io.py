"""Compatibility name of :mod:`resyn_bench.core.atomic` (atomic and checked writes).

New code imports from ``resyn_bench.core.atomic``. The raw write hook ``_write`` is not
re-exported: patch ``resyn_bench.core.atomic._write`` to inject short writes in tests.
"""
from resyn_bench.core.atomic import (  # noqa: F401
    DISK_FULL_ERRNOS,
    DiskFull,
    append_line,
    atomic_open,
    is_disk_full,
    temp_name,
    write_all,
    write_bytes_atomic,
    write_file_atomic,
    write_json_atomic,
    write_text_atomic,
)
