#include "image/unpack.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "image/digest.hpp"

namespace crisd::image {
namespace {

struct ArchiveDeleter {
    void operator()(archive* a) const { archive_read_free(a); }
};

int openat2_in_root(int root, const std::string& path, int flags) {
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    int fd;
    do {
        fd = static_cast<int>(::syscall(SYS_openat2, root, path.empty() ? "." : path.c_str(), &how, sizeof how));
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
    return fd;
}

std::string join(const std::vector<std::string>& c, std::size_t n) {
    std::string p;
    for (std::size_t i = 0; i < n; ++i) p += (i ? "/" : "") + c[i];
    return p;
}

Error layer_error(const std::string& entry, const std::string& what, int err) {
    return sys_error("layer entry \"" + entry + "\": " + what, err);
}

// Opens (creating as needed, mode 0755) the directory comps[0..n) below root.
UniqueFd open_dirs(int root, const std::vector<std::string>& comps, std::size_t n, const std::string& entry) {
    UniqueFd cur(::fcntl(root, F_DUPFD_CLOEXEC, 0));
    if (!cur) throw_errno("dup");
    for (std::size_t i = 1; i <= n; ++i) {
        const std::string p = join(comps, i);
        int fd = openat2_in_root(root, p, O_DIRECTORY | O_RDONLY);
        if (fd < 0 && errno == ENOENT) {
            if (::mkdirat(cur.get(), comps[i - 1].c_str(), 0755) != 0 && errno != EEXIST)
                throw layer_error(entry, "creating parent " + p, errno);
            fd = openat2_in_root(root, p, O_DIRECTORY | O_RDONLY);
        }
        if (fd < 0) throw layer_error(entry, "opening parent " + p, errno);
        cur.reset(fd);
    }
    return cur;
}

// Removes parent/name unless both it and the new entry are directories.
void clear_slot(int parent, const std::string& name, bool new_is_dir, const std::string& entry) {
    struct stat st {};
    if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return;
        throw layer_error(entry, "stat", errno);
    }
    if (S_ISDIR(st.st_mode)) {
        if (new_is_dir) return;
        remove_tree_at(parent, name);
        return;
    }
    if (::unlinkat(parent, name.c_str(), 0) != 0) throw layer_error(entry, "replacing", errno);
}

void apply_xattrs(archive_entry* e, int fd, const std::string& entry) {
    archive_entry_xattr_reset(e);
    const char* name;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        // A layer cannot forge overlay metadata; whiteouts come only from .wh. entries.
        if (std::strncmp(name, "trusted.overlay.", 16) == 0) continue;
        if (::fsetxattr(fd, name, value, size, 0) != 0) {
            if (errno == ENOTSUP || errno == EOPNOTSUPP || errno == EPERM)
                spdlog::debug("layer entry {}: xattr {} not kept: {}", entry, name, std::strerror(errno));
            else
                throw layer_error(entry, std::string("setting xattr ") + name, errno);
        }
    }
}

void write_data(archive* a, int fd, const std::string& entry, std::int64_t& bytes) {
    const void* buf;
    size_t size;
    la_int64_t offset;
    while (true) {
        const int r = archive_read_data_block(a, &buf, &size, &offset);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN)
            throw Error(Code::DataLoss, "layer entry \"" + entry + "\": " + archive_error_string(a));
        const char* p = static_cast<const char*>(buf);
        size_t done = 0;
        while (done < size) {
            const ssize_t w = ::pwrite(fd, p + done, size - done, offset + static_cast<off_t>(done));
            if (w < 0) {
                if (errno == EINTR) continue;
                throw layer_error(entry, "writing", errno);
            }
            done += static_cast<size_t>(w);
        }
        bytes += static_cast<std::int64_t>(size);
    }
    // A sparse file may end in a hole: the caller sets the size from the header.
}

}  // namespace

std::vector<std::string> clean_entry_path(const std::string& name) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i <= name.size()) {
        auto j = name.find('/', i);
        if (j == std::string::npos) j = name.size();
        const std::string c = name.substr(i, j - i);
        if (c == "..") {
            if (!out.empty()) out.pop_back();
        } else if (!c.empty() && c != ".") {
            out.push_back(c);
        }
        i = j + 1;
    }
    return out;
}

void remove_tree_at(int dir_fd, const std::string& name) {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return;
        throw_errno("stat " + name);
    }
    if (S_ISDIR(st.st_mode)) {
        const int fd = ::openat(dir_fd, name.c_str(), O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) throw_errno("opening " + name);
        DIR* d = ::fdopendir(fd);
        if (!d) {
            ::close(fd);
            throw_errno("fdopendir " + name);
        }
        std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
        std::vector<std::string> names;
        while (auto* de = ::readdir(d)) {
            const std::string n = de->d_name;
            if (n != "." && n != "..") names.push_back(n);
        }
        for (const auto& n : names) remove_tree_at(::dirfd(d), n);
        if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) throw_errno("removing " + name);
        return;
    }
    if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) throw_errno("removing " + name);
}

std::string uncompressed_digest(int archive_fd) {
    std::unique_ptr<archive, ArchiveDeleter> ar(archive_read_new());
    archive* a = ar.get();
    if (!a) throw Error(Code::Internal, "archive_read_new failed");
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_none(a);
    archive_read_support_format_raw(a);
    archive_read_support_format_empty(a);
    if (archive_read_open_fd(a, archive_fd, 256 * 1024) != ARCHIVE_OK)
        throw Error(Code::DataLoss, std::string("reading layer: ") + archive_error_string(a));
    Sha256 hash;
    archive_entry* e;
    const int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) return hash.digest();
    if (r < ARCHIVE_WARN) throw Error(Code::DataLoss, std::string("reading layer: ") + archive_error_string(a));
    char buf[256 * 1024];
    while (true) {
        const la_ssize_t n = archive_read_data(a, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) throw Error(Code::DataLoss, std::string("decompressing layer: ") + archive_error_string(a));
        hash.update(buf, static_cast<std::size_t>(n));
    }
    return hash.digest();
}

UnpackStats unpack_layer(int archive_fd, int root) {
    std::unique_ptr<archive, ArchiveDeleter> ar(archive_read_new());
    archive* a = ar.get();
    if (!a) throw Error(Code::Internal, "archive_read_new failed");
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_none(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_fd(a, archive_fd, 256 * 1024) != ARCHIVE_OK)
        throw Error(Code::DataLoss, std::string("layer is not a tar archive: ") + archive_error_string(a));
    UnpackStats stats;
    archive_entry* e;
    while (true) {
        const int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN)
            throw Error(Code::DataLoss, std::string("reading layer: ") + archive_error_string(a));
        ++stats.entries;
        const char* raw = archive_entry_pathname(e);
        const std::string entry = raw ? raw : "";
        const auto comps = clean_entry_path(entry);
        if (comps.empty()) continue;  // "./" itself: the layer root keeps its mode
        const std::string& base = comps.back();
        UniqueFd parent = open_dirs(root, comps, comps.size() - 1, entry);
        const int pfd = parent.get();

        // Whiteouts and opaque directories, converted to the overlay form.
        if (base.starts_with(".wh.")) {
            if (base == ".wh..wh..opq") {
                if (::fsetxattr(pfd, "trusted.overlay.opaque", "y", 1, 0) != 0)
                    throw layer_error(entry, "marking the directory opaque", errno);
            } else if (!base.starts_with(".wh..wh.")) {
                const std::string target = base.substr(4);
                if (target.empty() || target == "." || target == "..") continue;
                clear_slot(pfd, target, false, entry);
                if (::mknodat(pfd, target.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0)
                    throw layer_error(entry, "creating the whiteout", errno);
            }
            continue;
        }

        const uid_t uid = static_cast<uid_t>(archive_entry_uid(e));
        const gid_t gid = static_cast<gid_t>(archive_entry_gid(e));
        const mode_t perm = archive_entry_perm(e) & 07777;
        const char* name = base.c_str();
        timespec times[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                             {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};

        if (const char* hl = archive_entry_hardlink(e)) {
            const auto target = clean_entry_path(hl);
            if (target.empty()) throw Error(Code::InvalidArgument, "layer entry \"" + entry + "\": empty hard-link target");
            UniqueFd src(openat2_in_root(root, join(target, target.size()), O_PATH | O_NOFOLLOW));
            if (!src) throw layer_error(entry, std::string("hard-link target ") + hl, errno);
            struct stat st {};
            if (::fstat(src.get(), &st) != 0 || S_ISDIR(st.st_mode))
                throw Error(Code::InvalidArgument, "layer entry \"" + entry + "\": hard link to a directory");
            clear_slot(pfd, base, false, entry);
            if (::linkat(src.get(), "", pfd, name, AT_EMPTY_PATH) != 0)
                throw layer_error(entry, "creating the hard link", errno);
            continue;
        }

        switch (archive_entry_filetype(e)) {
        case AE_IFDIR: {
            clear_slot(pfd, base, true, entry);
            if (::mkdirat(pfd, name, 0700) != 0 && errno != EEXIST) throw layer_error(entry, "mkdir", errno);
            UniqueFd fd(::openat(pfd, name, O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
            if (!fd) throw layer_error(entry, "opening", errno);
            if (::fchown(fd.get(), uid, gid) != 0) throw layer_error(entry, "chown", errno);
            if (::fchmod(fd.get(), perm) != 0) throw layer_error(entry, "chmod", errno);
            apply_xattrs(e, fd.get(), entry);
            break;
        }
        case AE_IFREG: {
            clear_slot(pfd, base, false, entry);
            UniqueFd fd(::openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
            if (!fd) throw layer_error(entry, "creating", errno);
            write_data(a, fd.get(), entry, stats.file_bytes);
            if (archive_entry_size_is_set(e) && ::ftruncate(fd.get(), archive_entry_size(e)) != 0)
                throw layer_error(entry, "truncate", errno);
            if (::fchown(fd.get(), uid, gid) != 0) throw layer_error(entry, "chown", errno);
            if (::fchmod(fd.get(), perm) != 0) throw layer_error(entry, "chmod", errno);
            apply_xattrs(e, fd.get(), entry);
            ::futimens(fd.get(), times);
            break;
        }
        case AE_IFLNK: {
            const char* target = archive_entry_symlink(e);
            clear_slot(pfd, base, false, entry);
            if (::symlinkat(target ? target : "", pfd, name) != 0) throw layer_error(entry, "symlink", errno);
            if (::fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) throw layer_error(entry, "chown", errno);
            ::utimensat(pfd, name, times, AT_SYMLINK_NOFOLLOW);
            break;
        }
        case AE_IFCHR:
        case AE_IFBLK:
        case AE_IFIFO: {
            clear_slot(pfd, base, false, entry);
            const mode_t type = archive_entry_filetype(e) == AE_IFCHR   ? S_IFCHR
                                : archive_entry_filetype(e) == AE_IFBLK ? S_IFBLK
                                                                        : S_IFIFO;
            if (::mknodat(pfd, name, type | perm, archive_entry_rdev(e)) != 0)
                throw layer_error(entry, "mknod", errno);
            if (::fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) throw layer_error(entry, "chown", errno);
            if (::fchmodat(pfd, name, perm, 0) != 0) throw layer_error(entry, "chmod", errno);
            break;
        }
        default:
            spdlog::debug("layer entry {}: skipping unsupported file type", entry);
            break;
        }
    }
    return stats;
}

}  // namespace crisd::image
