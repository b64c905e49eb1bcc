#include "attach.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "journal.hpp"
#include "monitor/protocol.hpp"

namespace crisd::conmon {

namespace {
constexpr size_t kStdinPauseAt = 1024 * 1024;
}  // namespace

AttachServer::AttachServer(Loop& loop, const std::string& path, Stdio& stdio, bool stdin_once)
    : loop_(loop), path_(path), stdio_(stdio), stdin_once_(stdin_once) {
    listen_ = with_context("attach socket", [&] { return monitor::listen_seqpacket(path); });
    listen_token_ = loop_.add(listen_.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
    stdio_.set_on_stdin_drained([this] { resume_stdin_owner(); });
}

AttachServer::~AttachServer() {
    stdio_.set_on_stdin_drained(nullptr);
    close_all();
}

void AttachServer::on_accept() {
    for (;;) {
        UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) {
            if (errno != EAGAIN && errno != EINTR) diag::warning(std::string("attach: accept: ") + std::strerror(errno));
            return;
        }
        // Room for bursts of output while the client reads.
        const int sndbuf = 1024 * 1024;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        const uint64_t id = next_id_++;
        auto& c = clients_[id];
        c.fd = std::move(fd);
        c.token = loop_.add(c.fd.get(), EPOLLIN, [this, id](uint32_t ev) { on_client(id, ev); });
    }
}

void AttachServer::on_client(uint64_t id, uint32_t events) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    if (it->second.input_closed || it->second.paused) {  // only its hang-up matters now
        if (events & (EPOLLHUP | EPOLLERR)) drop(id, nullptr);
        return;
    }
    char buf[monitor::kMaxPacket];
    const auto n = ::recv(it->second.fd.get(), buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    // EPOLLHUP: both directions are shut, the client closed the socket.
    if (n < 0 || (n == 0 && (events & (EPOLLHUP | EPOLLERR)))) {
        drop(id, nullptr);
        return;
    }
    if (n == 0) {  // shutdown(SHUT_WR): the end of this client's input
        close_input(id);
        return;
    }
    if (!stdio_.stdin_open()) return;  // no stdin (or closed): input is dropped
    if (stdin_owner_ == 0) stdin_owner_ = id;
    if (stdin_owner_ != id) return;  // someone else holds stdin
    stdio_.write_stdin(std::string_view(buf, static_cast<size_t>(n)));
    if (stdio_.stdin_pending() > kStdinPauseAt) {  // the container reads slowly: stop reading its writer
        it->second.paused = true;
        loop_.modify(it->second.token, 0);  // EPOLLHUP and EPOLLERR still come
    }
}

void AttachServer::resume_stdin_owner() {
    auto it = clients_.find(stdin_owner_);
    if (it == clients_.end() || !it->second.paused) return;
    it->second.paused = false;
    if (!it->second.input_closed) loop_.modify(it->second.token, EPOLLIN);
}

void AttachServer::close_input(uint64_t id) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    it->second.input_closed = true;
    loop_.modify(it->second.token, 0);  // EPOLLHUP and EPOLLERR still come
    if (stdin_owner_ != 0 && stdin_owner_ != id) return;  // someone else's stdin: not ours to end
    stdin_owner_ = 0;
    if (stdin_once_) stdio_.close_stdin();
}

void AttachServer::drop(uint64_t id, const char* why) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    if (why) diag::warning(std::string("attach client disconnected: ") + why);
    loop_.remove(it->second.token);
    clients_.erase(it);
    if (stdin_owner_ == id) {
        stdin_owner_ = 0;
        if (stdin_once_) stdio_.close_stdin();
    }
}

void AttachServer::broadcast(uint8_t stream, std::string_view data) {
    if (clients_.empty()) return;
    char packet[monitor::kMaxPacket];
    while (!data.empty()) {
        const size_t len = std::min(data.size(), sizeof packet - 1);
        packet[0] = static_cast<char>(stream);
        std::memcpy(packet + 1, data.data(), len);
        data.remove_prefix(len);
        for (auto it = clients_.begin(); it != clients_.end();) {
            const auto id = it->first;
            const auto n = ::send(it->second.fd.get(), packet, len + 1, MSG_DONTWAIT | MSG_NOSIGNAL);
            ++it;
            if (n < 0) drop(id, errno == EAGAIN ? "it does not read fast enough" : nullptr);
        }
    }
}

void AttachServer::close_all() {
    for (auto& [id, c] : clients_) loop_.remove(c.token);
    clients_.clear();
    stdin_owner_ = 0;
    if (listen_) {
        loop_.remove(listen_token_);
        listen_.reset();
        ::unlink(path_.c_str());
    }
}

}  // namespace crisd::conmon
