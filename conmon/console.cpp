#include "console.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/error.hpp"

namespace crisd::conmon {

ConsoleSocket::ConsoleSocket(const std::string& dir) {
    path_ = dir + "/console.sock";
    sockaddr_un addr{};
    if (path_.size() >= sizeof(addr.sun_path)) {
        char tmpl[] = "/tmp/crisd-conmon-XXXXXX";
        if (!::mkdtemp(tmpl)) throw_errno("creating a directory for the console socket");
        tmp_dir_ = tmpl;
        path_ = tmp_dir_ + "/console.sock";
    }
    listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listen_) throw_errno("creating the console socket");
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    ::unlink(path_.c_str());
    if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        throw_errno("binding the console socket " + path_);
    if (::listen(listen_.get(), 1) != 0) throw_errno("listening on the console socket " + path_);
}

ConsoleSocket::~ConsoleSocket() {
    ::unlink(path_.c_str());
    if (!tmp_dir_.empty()) ::rmdir(tmp_dir_.c_str());
}

UniqueFd ConsoleSocket::receive() {
    UniqueFd conn(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) {
        if (errno == EAGAIN || errno == EINTR) return UniqueFd();
        throw_errno("accepting on the console socket");
    }
    char data[256];
    iovec iov{data, sizeof data};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do {
        n = ::recvmsg(conn.get(), &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno("receiving the terminal from the runtime");
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
            return UniqueFd(fd);
        }
    }
    throw Error(Code::Internal, "the runtime connected to the console socket but sent no terminal");
}

}  // namespace crisd::conmon
