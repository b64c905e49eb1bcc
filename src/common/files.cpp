#include "common/files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <set>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace crisd {

std::optional<std::string> read_file_if_exists(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return std::nullopt;
        throw_errno("opening " + path);
    }
    std::string data;
    char buf[65536];
    for (;;) {
        const ssize_t r = ::read(fd.get(), buf, sizeof buf);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno("reading " + path);
        }
        if (r == 0) break;
        data.append(buf, static_cast<size_t>(r));
    }
    return data;
}

std::string read_file(const std::string& path) {
    auto data = read_file_if_exists(path);
    if (!data) throw Error(Code::NotFound, path + " does not exist", ENOENT);
    return std::move(*data);
}

void write_file_atomic(const std::string& path, const std::string& data, mode_t mode,
                       bool durable) {
    const std::string tmp = path + ".tmp";
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd) throw_errno("creating " + tmp);
    size_t off = 0;
    while (off < data.size()) {
        const ssize_t w = ::write(fd.get(), data.data() + off, data.size() - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::unlink(tmp.c_str());
            throw_sys("writing " + tmp, err);
        }
        off += static_cast<size_t>(w);
    }
    if (::fchmod(fd.get(), mode) != 0) throw_errno("setting the mode of " + tmp);
    if (durable && ::fsync(fd.get()) != 0) throw_errno("syncing " + tmp);
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw_sys("renaming " + tmp + " to " + path, err);
    }
    if (durable) {
        const std::string dir = std::filesystem::path(path).parent_path().string();
        UniqueFd dfd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (dfd) ::fsync(dfd.get());
    }
}

std::vector<std::pair<std::string, std::string>> read_records(const std::string& dir) {
    namespace fs = std::filesystem;
    std::vector<std::pair<std::string, std::string>> records;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const auto& path = entry.path();
        if (path.extension() == ".tmp") {
            std::error_code ignored;
            fs::remove(path, ignored);
        } else if (path.extension() == ".json") {
            if (auto text = read_file_if_exists(path.string()))
                records.emplace_back(path.string(), std::move(*text));
        }
    }
    if (ec && ec != std::errc::no_such_file_or_directory) throw sys_error("reading " + dir, ec.value());
    std::sort(records.begin(), records.end());
    return records;
}

namespace {

// Bounds for a tree a container controls (its writable layer): deeper
// directories are not entered and the walk stops after this many entries, so
// a hostile `mkdir -p` a million levels deep or a billion files cost a bounded
// amount of memory, descriptors and time; the result then says so.
constexpr std::size_t kMaxDepth = 512;
constexpr std::uint64_t kMaxEntries = 4'000'000;

// One directory being walked: its descriptor (to open its children
// relative to it) and the subdirectories not entered yet. Its entries are
// read at once and the DIR stream closed, so an open directory costs one
// descriptor, not a readdir buffer.
struct Frame {
    UniqueFd fd;
    std::vector<std::string> subdirs;
};

Frame scan(UniqueFd fd, dev_t dev, DiskUsage& u, std::set<std::pair<dev_t, ino_t>>& seen) {
    Frame f{std::move(fd), {}};
    const int dup = ::fcntl(f.fd.get(), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return f;
    DIR* d = ::fdopendir(dup);
    if (!d) {
        ::close(dup);
        return f;
    }
    const std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
    while (const auto* de = ::readdir(d)) {
        const std::string_view n = de->d_name;
        if (n == "." || n == "..") continue;
        if (u.inodes >= kMaxEntries) {
            u.complete = false;
            break;
        }
        struct stat st {};
        if (::fstatat(f.fd.get(), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (st.st_dev != dev) continue;  // a mount point: another file system
        if (st.st_nlink > 1 && !S_ISDIR(st.st_mode) && !seen.insert({st.st_dev, st.st_ino}).second) continue;
        u.bytes += static_cast<std::uint64_t>(st.st_blocks) * 512;
        u.inodes += 1;
        if (S_ISDIR(st.st_mode)) f.subdirs.emplace_back(n);
    }
    return f;
}

}  // namespace

DiskUsage disk_usage(const std::string& dir) {
    DiskUsage u;
    UniqueFd root(::open(dir.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
    if (!root) return u;
    struct stat st {};
    if (::fstat(root.get(), &st) != 0) return u;
    std::set<std::pair<dev_t, ino_t>> seen;
    // Depth first without recursion: the stack is as deep as the tree (up to
    // kMaxDepth), never crisd's own.
    std::vector<Frame> stack;
    stack.push_back(scan(std::move(root), st.st_dev, u, seen));
    while (!stack.empty()) {
        if (stack.back().subdirs.empty() || u.inodes >= kMaxEntries) {
            stack.pop_back();
            continue;
        }
        const std::string name = std::move(stack.back().subdirs.back());
        stack.back().subdirs.pop_back();
        if (stack.size() >= kMaxDepth) {
            u.complete = false;
            continue;
        }
        UniqueFd child(::openat(stack.back().fd.get(), name.c_str(), O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!child) continue;
        auto next = scan(std::move(child), st.st_dev, u, seen);
        stack.push_back(std::move(next));
    }
    return u;
}

}  // namespace crisd
