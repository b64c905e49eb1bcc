#include "image/rootfs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/files.hpp"
#include "image/unpack.hpp"

namespace crisd::image {
namespace {

namespace fs = std::filesystem;

bool valid_id(const std::string& id) {
    if (id.empty() || id.size() > 128) return false;
    for (char c : id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
    return id != "." && id != ".." && id[0] != '.';
}

void check_id(const std::string& id) {
    if (!valid_id(id)) throw Error(Code::InvalidArgument, "invalid container id \"" + id + "\"");
}

bool is_mounted(const std::string& path) {
    struct stat st {}, parent {};
    if (::stat(path.c_str(), &st) != 0) return false;
    if (::stat((path + "/..").c_str(), &parent) != 0) return false;
    return st.st_dev != parent.st_dev;
}

// Mounts an overlay from a child that works in `cwd`, so the relative
// lowerdir paths resolve there without changing crisd's working directory.
void mount_overlay(const std::string& cwd, const std::string& target, const std::string& options) {
    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork");
    if (pid == 0) {
        if (::chdir(cwd.c_str()) != 0) ::_exit(errno);
        if (::mount("overlay", target.c_str(), "overlay", MS_NODEV, options.c_str()) != 0) ::_exit(errno);
        ::_exit(0);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) throw_errno("waitpid");
    const int err = WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
    if (err != 0) throw sys_error("mounting the overlay on " + target, err);
}

// Owns a fresh mount until release(): a failure before then unmounts it.
class ScopedMount {
public:
    explicit ScopedMount(std::string path) : path_(std::move(path)) {}
    ~ScopedMount() {
        if (!path_.empty() && ::umount2(path_.c_str(), MNT_DETACH) != 0)
            spdlog::warn("unmounting {}: {}", path_, std::strerror(errno));
    }
    ScopedMount(const ScopedMount&) = delete;
    ScopedMount& operator=(const ScopedMount&) = delete;
    void release() { path_.clear(); }

private:
    std::string path_;
};

void remove_path(const std::string& path) {
    const fs::path p(path);
    UniqueFd parent(::open(p.parent_path().c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
    if (!parent) return;
    remove_tree_at(parent.get(), p.filename().string());
}

}  // namespace

std::string overlay_options(const std::vector<std::string>& lowers, const std::string& upper,
                            const std::string& work) {
    if (lowers.empty()) throw Error(Code::InvalidArgument, "an overlay needs at least one lower layer");
    std::string o = "lowerdir=";
    for (std::size_t i = 0; i < lowers.size(); ++i) o += (i ? ":" : "") + lowers[i];
    o += ",upperdir=" + upper + ",workdir=" + work;
    const long page = ::sysconf(_SC_PAGESIZE);
    if (static_cast<long>(o.size()) >= page)
        throw Error(Code::InvalidArgument, "overlay mount options for " + std::to_string(lowers.size()) +
                                               " layers are " + std::to_string(o.size()) +
                                               " bytes, over the kernel's limit of " + std::to_string(page - 1));
    return o;
}

Rootfs::Rootfs(Images& images, std::string dir) : images_(images), dir_(std::move(dir)) {
    if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("creating " + dir_);
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
        const std::string id = e.path().filename().string();
        if (id.starts_with(".")) {
            spdlog::info("rootfs: removing leftover {}", e.path().string());
            remove_path(e.path().string());
            continue;
        }
        try {
            const auto j = nlohmann::json::parse(read_file((e.path() / "rootfs.json").string()));
            const std::string image_id = j.at("image").get<std::string>();
            images_.acquire(image_id, id);
            records_[id] = image_id;
        } catch (const std::exception& ex) {
            spdlog::warn("rootfs of container {}: {} (kept, image not marked in use)", id, ex.what());
        }
    }
}

Rootfs::Info Rootfs::info_locked(const std::string& id, const std::string& image_id) const {
    const std::string d = container_dir(id);
    return Info{id, image_id, d + "/merged", d + "/upper", is_mounted(d + "/merged")};
}

Rootfs::Info Rootfs::create(const std::string& id, const std::string& image_ref) {
    check_id(id);
    std::lock_guard lock(mu_);
    if (records_.count(id)) throw Error(Code::AlreadyExists, "container " + id + " already has a root filesystem");
    const std::string image_id = images_.acquire(image_ref, id);
    // Until the rename, a failure removes the staging directory and releases the image.
    struct Undo {
        Rootfs& r;
        std::string stage, image_id, id;
        bool armed = true;
        ~Undo() {
            if (!armed) return;
            try {
                remove_path(stage);
            } catch (const std::exception& e) {
                spdlog::warn("removing {}: {}", stage, e.what());
            }
            r.images_.release(image_id, id);
        }
    } undo{*this, dir_ + "/.new-" + id, image_id, id};
    const std::string& stage = undo.stage;
    remove_path(stage);
    for (const char* sub : {"", "/upper", "/work", "/merged"})
        if (::mkdir((stage + sub).c_str(), sub[0] ? 0755 : 0700) != 0) throw_errno("creating " + stage + sub);
    write_file_atomic(stage + "/rootfs.json", nlohmann::json{{"image", image_id}}.dump());
    if (::rename(stage.c_str(), container_dir(id).c_str()) != 0) throw_errno("creating " + container_dir(id));
    undo.armed = false;
    records_[id] = image_id;
    return info_locked(id, image_id);
}

std::string Rootfs::mount(const std::string& id) {
    check_id(id);
    std::lock_guard lock(mu_);
    const auto it = records_.find(id);
    if (it == records_.end()) throw Error(Code::NotFound, "container " + id + " has no root filesystem");
    const std::string d = container_dir(id);
    const std::string merged = d + "/merged";
    if (is_mounted(merged)) return merged;
    const auto lowers = images_.lower_dirs(it->second);
    const std::string options = overlay_options(lowers, d + "/upper", d + "/work");
    mount_overlay(images_.options().root, merged, options);
    ScopedMount guard(merged);
    // A rootfs must look like one: the mount shows the image's top directory.
    struct stat st {};
    if (::stat(merged.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw Error(Code::Internal, "the overlay on " + merged + " is not a directory");
    guard.release();
    spdlog::debug("mounted rootfs of {} ({} layers) on {}", id, lowers.size(), merged);
    return merged;
}

void Rootfs::unmount(const std::string& id) {
    check_id(id);
    std::lock_guard lock(mu_);
    const std::string merged = container_dir(id) + "/merged";
    while (is_mounted(merged)) {
        if (::umount2(merged.c_str(), 0) != 0) {
            if (errno == EBUSY) {
                spdlog::warn("rootfs of {} is busy: detaching it", id);
                if (::umount2(merged.c_str(), MNT_DETACH) != 0) throw_errno("unmounting " + merged);
            } else if (errno != EINVAL) {
                throw_errno("unmounting " + merged);
            } else {
                break;
            }
        }
    }
}

void Rootfs::remove(const std::string& id) {
    check_id(id);
    unmount(id);
    std::lock_guard lock(mu_);
    const std::string d = container_dir(id);
    const std::string gone = dir_ + "/.gone-" + id;
    if (::rename(d.c_str(), gone.c_str()) == 0) {
        remove_path(gone);
    } else if (errno != ENOENT) {
        throw_errno("removing " + d);
    }
    const auto it = records_.find(id);
    if (it != records_.end()) {
        images_.release(it->second, id);
        records_.erase(it);
    }
}

std::optional<Rootfs::Info> Rootfs::get(const std::string& id) const {
    std::lock_guard lock(mu_);
    const auto it = records_.find(id);
    if (it == records_.end()) return std::nullopt;
    return info_locked(id, it->second);
}

std::vector<Rootfs::Info> Rootfs::list() const {
    std::lock_guard lock(mu_);
    std::vector<Info> out;
    for (const auto& [id, image] : records_) out.push_back(info_locked(id, image));
    return out;
}

FsUsage Rootfs::usage() const {
    // The mounted roots (merged/) are other file systems: not counted.
    const auto d = disk_usage(dir_);
    FsUsage u;
    u.mountpoint = dir_;
    u.bytes = d.bytes;
    u.inodes = d.inodes;
    u.timestamp_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    return u;
}

}  // namespace crisd::image
