#include "control.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/error.hpp"
#include "journal.hpp"
#include "monitor/protocol.hpp"

namespace crisd::conmon {

namespace {

template <typename T>
bool to_num(std::string_view s, T& out) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    for (;;) {
        const auto p = s.find(sep);
        parts.push_back(s.substr(0, p));
        if (p == std::string_view::npos) return parts;
        s.remove_prefix(p + 1);
    }
}

}  // namespace

ControlConn::~ControlConn() = default;

void ControlConn::send(std::string message) {
    if (!fd_) return;
    // Larger replies are the caller's to split; keep the wire limit here too.
    if (message.size() > monitor::kMaxPacket) message.resize(monitor::kMaxPacket);
    out_.push_back(std::move(message));
    flush();
}

void ControlConn::finish() {
    finishing_ = true;
    flush();
}

void ControlConn::flush() {
    while (fd_ && !out_.empty()) {
        const auto& m = out_.front();
        const auto n = ::send(fd_.get(), m.data(), m.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            close();  // the peer went away
            return;
        }
        out_.pop_front();
    }
    if (!fd_) return;
    if (out_.empty() && finishing_) {
        close();
        return;
    }
    loop_.modify(token_, EPOLLIN | (out_.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT)));
}

void ControlConn::close() {
    if (!fd_) return;
    const bool early = !finishing_;
    loop_.remove(token_);  // drops the loop's reference to this connection
    fd_.reset();
    out_.clear();
    if (early && on_gone) {
        auto cb = std::move(on_gone);
        cb();
    }
    on_gone = nullptr;
    on_request_ = nullptr;
}

ControlServer::ControlServer(Loop& loop, const std::string& path, Hooks hooks)
    : loop_(loop), path_(path), hooks_(std::move(hooks)) {
    listen_ = with_context("control socket", [&] { return monitor::listen_seqpacket(path); });
    token_ = loop_.add(listen_.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
}

ControlServer::~ControlServer() { close(); }

void ControlServer::close() {
    if (!listen_) return;
    loop_.remove(token_);
    listen_.reset();
    ::unlink(path_.c_str());
}

void ControlServer::on_accept() {
    for (;;) {
        UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) {
            if (errno != EAGAIN && errno != EINTR) diag::warning(std::string("control: accept: ") + std::strerror(errno));
            return;
        }
        auto conn = std::make_shared<ControlConn>(loop_, std::move(fd));
        conn->on_request_ = [this](std::shared_ptr<ControlConn> c, std::string req) { on_request(c, req); };
        // The loop's handler owns the connection until it closes.
        conn->token_ = loop_.add(conn->fd_.get(), EPOLLIN, [conn](uint32_t ev) { conn->on_events(ev); });
    }
}

void ControlConn::on_events(uint32_t events) {
    if (events & EPOLLOUT) flush();
    if (!fd_ || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    char buf[monitor::kMaxPacket];
    const auto n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        close();
        return;
    }
    if (request_read_) return;  // one request per connection; more is ignored
    request_read_ = true;
    if (on_request_) on_request_(shared_from_this(), std::string(buf, static_cast<size_t>(n)));
}

void ControlServer::on_request(const std::shared_ptr<ControlConn>& conn, const std::string& request) {
    const auto fail = [&](const std::string& text) {
        conn->send("error " + text);
        conn->finish();
    };
    try {
        if (request == "start") {
            hooks_.start(conn);
        } else if (request.rfind("resize ", 0) == 0) {
            const auto parts = split(std::string_view(request).substr(7), ' ');
            unsigned rows = 0, cols = 0;
            if (parts.size() != 2 || !to_num(parts[0], rows) || !to_num(parts[1], cols))
                return fail("resize: want 'resize <rows> <cols>', got '" + request + "'");
            hooks_.resize(rows, cols);
            conn->send("ok");
            conn->finish();
        } else if (request == "reopen") {
            hooks_.reopen();
            conn->send("ok");
            conn->finish();
        } else if (request.rfind(std::string("exec\0", 5), 0) == 0) {
            auto parts = split(std::string_view(request).substr(5), '\0');
            ExecRequest req;
            if (parts.size() < 3 || !to_num(parts[0], req.timeout_ms) || !to_num(parts[1], req.cap))
                return fail("exec: malformed request");
            for (size_t i = 2; i < parts.size(); ++i) req.argv.emplace_back(parts[i]);
            if (req.argv.empty() || req.argv[0].empty()) return fail("exec: no command");
            hooks_.exec(std::move(req), conn);
        } else {
            fail("unknown request '" + request.substr(0, 64) + "'");
        }
    } catch (const Error& e) {
        fail(e.what());
    }
}

}  // namespace crisd::conmon
