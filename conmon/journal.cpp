#include "journal.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/fd.hpp"

namespace crisd::conmon {

std::string encode_journal_entry(const iovec* fields, size_t n) {
    std::string dgram;
    for (size_t i = 0; i < n; ++i) {
        const std::string_view f(static_cast<const char*>(fields[i].iov_base), fields[i].iov_len);
        const auto eq = f.find('=');
        const auto value = f.substr(eq + 1);
        if (value.find('\n') == std::string_view::npos) {
            dgram.append(f);
        } else {
            dgram.append(f.substr(0, eq));
            dgram += '\n';
            const uint64_t len = value.size();
            for (int b = 0; b < 8; ++b) dgram += static_cast<char>((len >> (8 * b)) & 0xff);
            dgram.append(value);
        }
        dgram += '\n';
    }
    return dgram;
}

namespace {

iovec field(const std::string& s) { return {const_cast<char*>(s.data()), s.size()}; }

// Best effort, like sd_journal_sendv: no journald, no entry.
void journal_send(const iovec* fields, size_t n) {
    static UniqueFd sock;
    static bool tried = false;
    if (!tried) {
        tried = true;
        sock.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (sock) {
            const int sndbuf = 8 * 1024 * 1024;
            ::setsockopt(sock.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        }
    }
    if (!sock) return;
    const std::string dgram = encode_journal_entry(fields, n);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, "/run/systemd/journal/socket");
    while (::sendto(sock.get(), dgram.data(), dgram.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
                    sizeof addr) < 0 &&
           errno == EINTR) {
    }
}

}  // namespace

Journal::Journal(const JournalIdentity& who, size_t line_max, Sender sender)
    : unit_("OBJECT_SYSTEMD_UNIT=crisd-" + who.id + ".scope"),
      id_short_("CONTAINER_ID=" + who.id.substr(0, 12)),
      id_full_("CONTAINER_ID_FULL=" + who.id),
      name_("CONTAINER_NAME=" + who.name),
      pod_name_("POD_NAME=" + who.pod_name),
      pod_namespace_("POD_NAMESPACE=" + who.pod_namespace),
      identifier_("SYSLOG_IDENTIFIER=" + (who.name.empty() ? who.id.substr(0, 12) : who.name)),
      line_max_(line_max ? line_max : 1),
      sender_(sender ? std::move(sender) : Sender(journal_send)) {}

void Journal::send(uint8_t stream, std::string_view line, bool partial) {
    static const std::string prio_out = "PRIORITY=6", prio_err = "PRIORITY=3",
                             partial_field = "CONTAINER_PARTIAL_MESSAGE=true";
    std::string message = "MESSAGE=";
    message.append(line);
    iovec iov[] = {field(message),  field(stream == 2 ? prio_err : prio_out),
                   field(unit_),     field(id_short_),
                   field(id_full_),  field(name_),
                   field(pod_name_), field(pod_namespace_),
                   field(identifier_), field(partial_field)};
    const int n = sizeof iov / sizeof iov[0] - (partial ? 0 : 1);
    // Best effort: journald being away must never stop the container's output.
    sender_(iov, static_cast<size_t>(n));
}

void Journal::write(uint8_t stream, std::string_view data) {
    auto& pending = pending_[stream == 2 ? 1 : 0];
    // Sends the parts of at most line_max bytes (marked partial), then the
    // rest when the line is complete; returns the rest when it is not.
    const auto send_parts = [&](std::string_view line, bool complete) -> std::string_view {
        while (line.size() > line_max_) {
            send(stream, line.substr(0, line_max_), true);
            line.remove_prefix(line_max_);
        }
        if (!complete) return line;
        send(stream, line, false);
        return {};
    };
    while (!data.empty()) {
        const auto nl = data.find('\n');
        if (nl == std::string_view::npos) {
            pending.append(data);
            const std::string rest(send_parts(pending, false));
            pending = rest;
            return;
        }
        if (pending.empty()) {
            send_parts(data.substr(0, nl), true);
        } else {
            pending.append(data.substr(0, nl));
            send_parts(pending, true);
            pending.clear();
        }
        data.remove_prefix(nl + 1);
    }
}

void Journal::flush() {
    for (uint8_t s : {uint8_t{1}, uint8_t{2}}) {
        auto& pending = pending_[s - 1];
        if (!pending.empty()) send(s, pending, false);
        pending.clear();
    }
}

namespace diag {

namespace {

struct State {
    std::string id_full = "CONTAINER_ID_FULL=";
    std::string id_short = "CONTAINER_ID=";
    std::string name = "CONTAINER_NAME=";
    bool to_stderr = true;
};

State& state() {
    static State s;
    return s;
}

void emit(int priority, const char* level, const std::string& message) {
    auto& s = state();
    const std::string msg = "MESSAGE=" + message;
    const std::string prio = "PRIORITY=" + std::to_string(priority);
    static const std::string ident = "SYSLOG_IDENTIFIER=crisd-conmon";
    iovec iov[] = {field(msg), field(prio), field(ident), field(s.id_full), field(s.id_short), field(s.name)};
    journal_send(iov, sizeof iov / sizeof iov[0]);
    if (s.to_stderr) std::fprintf(stderr, "crisd-conmon: %s: %s\n", level, message.c_str());
}

}  // namespace

void init(const JournalIdentity& who) {
    auto& s = state();
    s.id_full = "CONTAINER_ID_FULL=" + who.id;
    s.id_short = "CONTAINER_ID=" + who.id.substr(0, 12);
    s.name = "CONTAINER_NAME=" + who.name;
}
void set_stderr(bool on) { state().to_stderr = on; }
void info(const std::string& message) { emit(6, "info", message); }
void warning(const std::string& message) { emit(4, "warning", message); }
void error(const std::string& message) { emit(3, "error", message); }

}  // namespace diag

}  // namespace crisd::conmon
