// Unpacks one layer tar (gzip, zstd or plain) into a directory in overlay
// format: whiteouts (.wh.NAME) become 0/0 character devices, opaque markers
// (.wh..wh..opq) the xattr trusted.overlay.opaque=y on their directory.
// Owners, modes, xattrs, hard links, symlinks and device nodes are kept.
//
// Hostile layers cannot write outside the directory: entry names are cleaned
// lexically (leading '/', '..' above the top), every parent directory and
// every hard-link target is resolved with openat2(RESOLVE_IN_ROOT) relative
// to the layer directory (so symlinks, absolute or not, stay inside it), and
// the last component is created with O_EXCL/O_NOFOLLOW semantics.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace crisd::image {

struct UnpackStats {
    std::int64_t entries = 0;
    std::int64_t file_bytes = 0;
};

// `archive_fd` is read from its current offset; `dir_fd` is the layer's root.
UnpackStats unpack_layer(int archive_fd, int dir_fd);

// The sha256 digest of the uncompressed stream in archive_fd (gzip, zstd or
// none), read from its current offset: the layer's diff_id.
std::string uncompressed_digest(int archive_fd);

// Removes dir_fd/name and everything below it, never following symlinks.
void remove_tree_at(int dir_fd, const std::string& name);

// Cleans a tar entry name: "./a/../b//c" -> {"b","c"}; ".." never goes above the top.
std::vector<std::string> clean_entry_path(const std::string& name);

}  // namespace crisd::image
