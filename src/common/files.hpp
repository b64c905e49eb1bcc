// Small file helpers every store uses: whole-file reads, atomic replacement
// (write a temp file, fsync, rename, fsync the directory), so that a crash at
// any point leaves either the old or the new content, never half of one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace crisd {

// The whole file; throws crisd::Error (NotFound when it does not exist).
std::string read_file(const std::string& path);

// The whole file, or nullopt when it does not exist.
std::optional<std::string> read_file_if_exists(const std::string& path);

// Replaces `path` atomically with `data` (mode `mode`). With `durable`, the
// data and the rename are on disk when this returns (fsync of file and dir).
void write_file_atomic(const std::string& path, const std::string& data, mode_t mode = 0600,
                       bool durable = true);

// The records of a store directory: every "*.json" file with its content, in
// name order. Temp files left by an interrupted write_file_atomic ("*.tmp")
// are removed. A missing directory has no records; an unreadable one throws.
std::vector<std::pair<std::string, std::string>> read_records(const std::string& dir);

// What the files below a directory take on disk: allocated bytes (st_blocks,
// so sparse files count what they use) and inodes, each hard-linked inode
// once, the directory itself not included. Only `dir`'s file system: a mount
// below it (an overlay's merged/, a bind mount) is neither counted nor
// entered. Entries that vanish or cannot be read meanwhile are skipped; a
// missing `dir` is zero. For ImageFsInfo and the writable layer in stats.
// The walk is bounded (512 levels, 4 million entries: a container controls
// its writable layer); past that `complete` is false and the figures are
// what was counted.
struct DiskUsage {
    std::uint64_t bytes = 0;
    std::uint64_t inodes = 0;
    bool complete = true;
};
DiskUsage disk_usage(const std::string& dir);

}  // namespace crisd
