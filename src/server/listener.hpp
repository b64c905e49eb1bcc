// The CRI listening socket: the one systemd passes (crisd.socket), or, when
// crisd is started by hand, a unix socket it binds itself.
#pragma once

#include <optional>
#include <string>

#include "common/fd.hpp"

namespace crisd::server {

class Listener {
public:
    // The socket passed by systemd (sd_listen_fds), if any. Throws when the
    // passed fds are not exactly one listening unix stream socket.
    static std::optional<Listener> from_systemd();

    // Binds `path` (mode 0660, parent created 0755). A stale socket file (nobody
    // accepts on it) is replaced; a live one means another crisd runs: refused
    // with AlreadyExists. Anything else at the path is refused too.
    static Listener bind(const std::string& path, int backlog = 128);

    Listener(Listener&&) noexcept = default;
    Listener& operator=(Listener&&) noexcept = default;
    ~Listener();

    int fd() const noexcept { return fd_.get(); }
    const std::string& path() const noexcept { return path_; }
    bool inherited() const noexcept { return !owns_path_; }

private:
    Listener(UniqueFd fd, std::string path, bool owns_path)
        : fd_(std::move(fd)), path_(std::move(path)), owns_path_(owns_path) {}

    UniqueFd fd_;
    std::string path_;
    bool owns_path_ = false;  // we bound it, so we unlink it when done
};

}  // namespace crisd::server
