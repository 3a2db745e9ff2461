"""The results schema: what a run folder holds (:mod:`.columns`), run.json typed and built
(:mod:`.meta`), the one atomic writer and the CSV appender (:mod:`.io`), and the one reader
(:mod:`.read`). ``from harness import schema as R`` gives all of it under one name.
"""
from harness.schema.columns import (
                                    ADDED_IN_VERSION,
                                    CHECKPOINT_JSON,
                                    COMPLETED,
                                    DIVERGED,
                                    EPOCH_COLUMNS,
                                    EPOCH_OK,
                                    EPOCHS_CSV,
                                    FAILED,
                                    INFER_COLUMNS,
                                    INFER_CSV,
                                    INTERRUPTED,
                                    KIND_INFER,
                                    READABLE_SCHEMA_VERSIONS,
                                    REFERENCE_JSON,
                                    RUN_JSON,
                                    RUN_STATUSES,
                                    RUNNING,
                                    SCHEMA_VERSION,
                                    UTIL_BASE_COLUMNS,
                                    UTIL_CSV,
                                    util_columns,
)
from harness.schema.io import (
                                    CsvAppender,
                                    atomic_link,
                                    atomic_path,
                                    atomic_write_bytes,
                                    csv_line,
                                    fsync_dir,
                                    json_bytes,
                                    move_aside, promote,
                                    rewrite_epochs,
                                    write_all,
                                    write_json,
)
from harness.schema.meta import (
                                    BackendSection,
                                    BestSection,
                                    DistributedSection,
                                    ModelSection,
                                    RunMeta,
                                    ThreadsSection,
                                    build_meta,
                                    now_iso,
                                    threads_section,
                                    validate_meta,
)
from harness.schema.read import (
                                    InferFolder,
                                    RunFolder,
                                    find_runs,
                                    is_infer_folder,
                                    read_epochs_rows,
                                    read_infer,
                                    read_meta,
                                    read_run,
                                    reference_view,
                                    split_by_kind,
)

__all__ = [
    "ADDED_IN_VERSION", "CHECKPOINT_JSON", "COMPLETED", "DIVERGED", "EPOCH_COLUMNS", "EPOCH_OK", "EPOCHS_CSV", "FAILED",
    "INFER_COLUMNS", "INFER_CSV", "INTERRUPTED", "KIND_INFER", "READABLE_SCHEMA_VERSIONS", "REFERENCE_JSON", "RUN_JSON",
    "RUN_STATUSES", "RUNNING", "SCHEMA_VERSION", "UTIL_BASE_COLUMNS", "UTIL_CSV", "util_columns",
    "CsvAppender", "atomic_path", "atomic_write_bytes", "csv_line", "fsync_dir", "json_bytes", "move_aside", "promote",
    "rewrite_epochs", "write_all", "write_json", "atomic_link",
    "BackendSection", "BestSection", "DistributedSection", "ModelSection", "RunMeta", "ThreadsSection", "build_meta", "now_iso",
    "threads_section", "validate_meta",
    "InferFolder", "RunFolder", "find_runs", "is_infer_folder", "read_epochs_rows", "read_infer", "read_meta",
    "read_run", "reference_view", "split_by_kind",
]
