// Container root filesystems: an overlay mount of an image's layers (read
// only) with a writable upper directory per container. The runtime creates
// one per container, mounts it to start the container, may unmount it when
// the container stops (the upper directory, i.e. the container's changes,
// stays), and removes it with the container. While a rootfs exists its image
// is marked in use, so RemoveImage refuses it.
//
// Layout: <dir>/<container id>/{rootfs.json, upper/, work/, merged/}.
// Many layers: lowerdir uses the store's short links ("l/ABCDEFGHIJ"),
// relative to the store, mounted from a child that chdir()s there, so about
// 280 layers fit in the one-page mount option limit.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "image/image.hpp"

namespace crisd::image {

// The overlay mount option string; throws InvalidArgument when it exceeds
// the kernel's limit of one page.
std::string overlay_options(const std::vector<std::string>& lowers, const std::string& upper,
                            const std::string& work);

class Rootfs {
public:
    struct Info {
        std::string container_id;
        std::string image_id;
        std::string path;   // the mount point (the container's root)
        std::string upper;  // the container's changes
        bool mounted = false;
    };

    // `dir`: where container root filesystems live (<crisd.root>/rootfs).
    // Records found there mark their images in use again.
    Rootfs(Images& images, std::string dir);

    // A new rootfs for the container from the image `image_ref` names
    // (NotFound: no such image; AlreadyExists: the container has one).
    Info create(const std::string& container_id, const std::string& image_ref);
    // Mounts it (idempotent) and returns the mount point.
    std::string mount(const std::string& container_id);
    // Unmounts it (idempotent); the upper directory is kept.
    void unmount(const std::string& container_id);
    // Unmounts and deletes it and releases the image (idempotent).
    void remove(const std::string& container_id);

    std::optional<Info> get(const std::string& container_id) const;
    // Where the root filesystems live: the mount point ImageFsInfo reports
    // for container file systems.
    const std::string& dir() const { return dir_; }
    std::vector<Info> list() const;
    FsUsage usage() const;

private:
    Info info_locked(const std::string& id, const std::string& image_id) const;
    std::string container_dir(const std::string& id) const { return dir_ + "/" + id; }

    Images& images_;
    std::string dir_;
    mutable std::mutex mu_;
    std::map<std::string, std::string> records_;  // container id -> image id
};

}  // namespace crisd::image
