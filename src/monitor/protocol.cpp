#include "monitor/protocol.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/error.hpp"

namespace crisd::monitor {

namespace {

const char* kind_name(SyncMessage::Kind kind) {
    switch (kind) {
    case SyncMessage::Kind::Monitor: return "monitor";
    case SyncMessage::Kind::Container: return "container";
    case SyncMessage::Kind::Error: return "error";
    }
    return "error";
}

template <typename T>
bool parse_int(std::string_view s, T& out) {
    if (s.empty()) return false;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Binds or connects through a directory fd when the path does not fit sun_path.
template <typename Op>
void with_sockaddr(const std::string& path, Op&& op) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() < sizeof(addr.sun_path)) {
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        op(addr);
        return;
    }
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    UniqueFd dfd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dfd) throw_errno("opening " + dir);
    const std::string short_path = "/proc/self/fd/" + std::to_string(dfd.get()) + "/" + name;
    if (short_path.size() >= sizeof(addr.sun_path))
        throw Error(Code::InvalidArgument, "socket name too long: " + path);
    std::memcpy(addr.sun_path, short_path.c_str(), short_path.size() + 1);
    op(addr);
}

}  // namespace

std::string encode_sync(const SyncMessage& msg) {
    std::string out = kind_name(msg.kind);
    out += ' ';
    out += std::to_string(msg.pid);
    out += ' ';
    out += std::to_string(msg.text.size());
    out += '\n';
    out += msg.text;
    return out;
}

std::optional<SyncMessage> SyncDecoder::next() {
    const auto nl = buf_.find('\n');
    if (nl == std::string::npos) {
        if (buf_.size() > 64) throw Error(Code::DataLoss, "sync pipe: header without end: " + buf_.substr(0, 64));
        return std::nullopt;
    }
    const std::string_view header(buf_.data(), nl);
    const auto sp1 = header.find(' ');
    const auto sp2 = sp1 == std::string_view::npos ? sp1 : header.find(' ', sp1 + 1);
    SyncMessage msg;
    size_t len = 0;
    if (sp2 == std::string_view::npos || !parse_int(header.substr(sp1 + 1, sp2 - sp1 - 1), msg.pid) ||
        !parse_int(header.substr(sp2 + 1), len))
        throw Error(Code::DataLoss, "sync pipe: malformed message header '" + std::string(header) + "'");
    const auto kind = header.substr(0, sp1);
    if (kind == "monitor") msg.kind = SyncMessage::Kind::Monitor;
    else if (kind == "container") msg.kind = SyncMessage::Kind::Container;
    else if (kind == "error") msg.kind = SyncMessage::Kind::Error;
    else throw Error(Code::DataLoss, "sync pipe: unknown message kind '" + std::string(kind) + "'");
    if (buf_.size() < nl + 1 + len) return std::nullopt;
    msg.text = buf_.substr(nl + 1, len);
    buf_.erase(0, nl + 1 + len);
    return msg;
}

std::string encode_exit(const ExitStatus& s) {
    return "exit_code=" + std::to_string(s.exit_code) + "\nsignal=" + std::to_string(s.signal) +
           "\noom_killed=" + (s.oom_killed ? "1" : "0") + "\nexited_at=" + std::to_string(s.exited_at_ns) + "\n";
}

ExitStatus parse_exit(std::string_view text) {
    ExitStatus s;
    bool have_code = false;
    while (!text.empty()) {
        auto nl = text.find('\n');
        const auto line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (line.empty()) continue;
        const auto eq = line.find('=');
        const auto key = line.substr(0, eq);
        const auto value = eq == std::string_view::npos ? std::string_view() : line.substr(eq + 1);
        bool ok = eq != std::string_view::npos;
        if (!ok) {
        } else if (key == "exit_code") {
            ok = parse_int(value, s.exit_code);
            have_code = ok;
        } else if (key == "signal") {
            ok = parse_int(value, s.signal);
        } else if (key == "oom_killed") {
            ok = value == "0" || value == "1";
            s.oom_killed = value == "1";
        } else if (key == "exited_at") {
            ok = parse_int(value, s.exited_at_ns);
        }  // unknown keys: written by a newer conmon, ignored
        if (!ok) throw Error(Code::DataLoss, "exit file: bad line '" + std::string(line) + "'");
    }
    if (!have_code) throw Error(Code::DataLoss, "exit file: no exit_code");
    return s;
}

void write_exit_file(const std::string& dir, const std::string& id, const ExitStatus& status) {
    const std::string path = dir + "/" + id;
    const std::string tmp = dir + "/." + id + ".tmp";
    const std::string content = encode_exit(status);
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throw_errno("creating exit file " + tmp);
    if (::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()))
        throw_errno("writing exit file " + tmp);
    if (::fsync(fd.get()) != 0) throw_errno("syncing exit file " + tmp);
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("renaming " + tmp + " to " + path);
}

std::optional<ExitStatus> read_exit_file(const std::string& dir, const std::string& id) {
    const std::string path = dir + "/" + id;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return std::nullopt;
        throw_errno("opening exit file " + path);
    }
    std::string text;
    char buf[512];
    for (;;) {
        const auto n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) throw_errno("reading exit file " + path);
        if (n == 0) break;
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > 4096) throw Error(Code::DataLoss, "exit file " + path + ": too large");
    }
    return with_context(path, [&] { return parse_exit(text); });
}

UniqueFd listen_seqpacket(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throw_errno("creating socket for " + path);
    ::unlink(path.c_str());
    with_sockaddr(path, [&](const sockaddr_un& addr) {
        if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
            throw_errno("binding " + path);
    });
    ::chmod(path.c_str(), 0600);
    if (::listen(fd.get(), 16) != 0) throw_errno("listening on " + path);
    return fd;
}

UniqueFd connect_seqpacket(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!fd) throw_errno("creating socket for " + path);
    with_sockaddr(path, [&](const sockaddr_un& addr) {
        if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
            throw_errno("connecting to " + path);
    });
    return fd;
}

}  // namespace crisd::monitor
