#include "server/listener.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/error.hpp"

namespace crisd::server {
namespace {

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path))
        throw Error(Code::InvalidArgument,
                    "socket path " + path + " is longer than " +
                        std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

std::string socket_path(int fd) {
    sockaddr_un addr{};
    socklen_t len = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
        addr.sun_family != AF_UNIX || len <= sizeof(sa_family_t))
        return "";
    if (addr.sun_path[0] == '\0') return "@" + std::string(addr.sun_path + 1);
    return std::string(addr.sun_path);
}

// True when something accepts connections on the socket at `path`.
bool socket_is_live(const std::string& path) {
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) throw_errno("creating a probe socket");
    const sockaddr_un addr = unix_address(path);
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0)
        return true;
    const int err = errno;
    if (err == ECONNREFUSED || err == ENOENT) return false;
    throw_sys("probing the existing socket " + path, err);
}

}  // namespace

std::optional<Listener> Listener::from_systemd() {
    const int n = sd_listen_fds(1);  // also clears LISTEN_* so children do not see them
    if (n < 0) throw_sys("reading the sockets passed by systemd (sd_listen_fds)", -n);
    if (n == 0) return std::nullopt;
    if (n != 1) {
        for (int i = 0; i < n; ++i) ::close(SD_LISTEN_FDS_START + i);
        throw Error(Code::InvalidArgument,
                    "systemd passed " + std::to_string(n) +
                        " sockets; crisd.socket must have exactly one ListenStream");
    }
    UniqueFd fd(SD_LISTEN_FDS_START);
    const int r = sd_is_socket_unix(fd.get(), SOCK_STREAM, 1, nullptr, 0);
    if (r < 0) throw_sys("checking the socket passed by systemd", -r);
    if (r == 0)
        throw Error(Code::InvalidArgument,
                    "the socket passed by systemd is not a listening unix stream socket");
    std::string path = socket_path(fd.get());
    return Listener(std::move(fd), std::move(path), false);
}

Listener Listener::bind(const std::string& path, int backlog) {
    const sockaddr_un addr = unix_address(path);
    namespace fs = std::filesystem;
    const fs::path parent = fs::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty()) {
        fs::create_directories(parent, ec);
        if (ec) throw sys_error("creating " + parent.string(), ec.value());
    }

    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw Error(Code::FailedPrecondition,
                        path + " exists and is not a socket; refusing to replace it");
        if (socket_is_live(path))
            throw Error(Code::AlreadyExists,
                        "another process (a running crisd?) is already listening on " + path);
        if (::unlink(path.c_str()) != 0 && errno != ENOENT)
            throw_errno("removing the stale socket " + path);
    } else if (errno != ENOENT) {
        throw_errno("checking " + path);
    }

    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw_errno("creating the listening socket");
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
        throw_errno("binding " + path);
    Listener listener(std::move(fd), path, true);  // unlinks on any throw below
    if (::chmod(path.c_str(), 0660) != 0) throw_errno("setting mode 0660 on " + path);
    if (::listen(listener.fd(), backlog) != 0) throw_errno("listening on " + path);
    return listener;
}

Listener::~Listener() {
    if (owns_path_ && fd_ && !path_.empty()) ::unlink(path_.c_str());
}

}  // namespace crisd::server
