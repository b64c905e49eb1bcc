#include "monitor/monitor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "crisd_build.hpp"

extern char** environ;

namespace crisd::monitor {

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left < 0 ? 0 : static_cast<int>(left);
}

// Waits for fd to be readable until the deadline; false on timeout.
bool wait_readable(int fd, Clock::time_point deadline) {
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        const int r = ::poll(&p, 1, remaining_ms(deadline));
        if (r > 0) return true;
        if (r == 0) return false;
        if (errno != EINTR) throw_errno("poll");
    }
}

void send_request(int fd, const std::string& request) {
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
        throw_errno("sending the request");
}

// Reads one packet; "" when the monitor closed the connection.
std::string recv_packet(int fd, Clock::time_point deadline) {
    if (!wait_readable(fd, deadline)) throw Error(Code::DeadlineExceeded, "no reply from crisd-conmon in time");
    std::string buf(kMaxPacket, '\0');
    ssize_t n;
    do {
        n = ::recv(fd, buf.data(), buf.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno("reading the reply");
    buf.resize(static_cast<size_t>(n));
    return buf;
}

// One request with an "ok" / "error <text>" reply.
void simple_request(const std::string& socket_dir, const std::string& request, std::chrono::milliseconds timeout,
                    bool runtime_error) {
    const auto deadline = Clock::now() + timeout;
    auto fd = connect_seqpacket(socket_dir + "/" + kControlSocketName);
    send_request(fd.get(), request);
    const auto reply = recv_packet(fd.get(), deadline);
    if (reply == "ok") return;
    if (reply.rfind("error ", 0) == 0) {
        if (runtime_error) throw RuntimeError(reply.substr(6));
        throw Error(Code::Unknown, reply.substr(6));
    }
    if (reply.empty()) throw Error(Code::Unavailable, "crisd-conmon closed the connection without a reply");
    throw Error(Code::Internal, "unexpected reply '" + reply.substr(0, 64) + "'");
}

}  // namespace

std::string default_conmon_path() { return std::string(CRISD_LIBEXECDIR) + "/crisd/crisd-conmon"; }

std::vector<std::string> command_line(const Config& c, int sync_fd, int start_fd) {
    std::vector<std::string> argv{c.conmon_path.empty() ? default_conmon_path() : c.conmon_path,
                                  "--id", c.id, "--bundle", c.bundle, "--runtime", c.runtime_path,
                                  "--exit-dir", c.exit_dir, "--socket-dir", c.socket_dir};
    const auto opt = [&](const char* name, const std::string& value) {
        if (!value.empty()) argv.insert(argv.end(), {name, value});
    };
    opt("--name", c.name);
    opt("--pod-name", c.pod_name);
    opt("--pod-namespace", c.pod_namespace);
    for (const auto& a : c.runtime_args) argv.insert(argv.end(), {"--runtime-arg", a});
    opt("--log-path", c.log_path);
    if (c.log_size_max > 0) opt("--log-size-max", std::to_string(c.log_size_max));
    if (c.terminal) argv.push_back("--terminal");
    if (c.stdin) argv.push_back("--stdin");
    if (c.stdin_once) argv.push_back("--stdin-once");
    if (!c.journal) argv.push_back("--no-journal");
    argv.insert(argv.end(), {"--oom-score-adj", std::to_string(c.oom_score_adj)});
    if (sync_fd >= 0) argv.insert(argv.end(), {"--sync-fd", std::to_string(sync_fd)});
    if (start_fd >= 0) argv.insert(argv.end(), {"--start-fd", std::to_string(start_fd)});
    return argv;
}

Launch Launch::spawn(const Config& cfg, std::chrono::milliseconds timeout) {
    return with_context("starting crisd-conmon for " + cfg.id, [&] {
        Launch l;
        l.id_ = cfg.id;
        int sp[2], st[2];
        if (::pipe2(sp, O_CLOEXEC) != 0) throw_errno("creating the sync pipe");
        UniqueFd sync_read(sp[0]), sync_write(sp[1]);
        if (::pipe2(st, O_CLOEXEC) != 0) throw_errno("creating the start pipe");
        UniqueFd start_read(st[0]), start_write(st[1]);
        // The child sees them as fds 3 and 4; above 4 first, so that the dup2s cannot collide.
        UniqueFd sw(::fcntl(sync_write.get(), F_DUPFD_CLOEXEC, 10));
        UniqueFd sr(::fcntl(start_read.get(), F_DUPFD_CLOEXEC, 10));
        if (!sw || !sr) throw_errno("duplicating the pipes");
        const auto args = command_line(cfg, 3, 4);
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);

        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, sw.get(), 3);
        posix_spawn_file_actions_adddup2(&fa, sr.get(), 4);
        posix_spawn_file_actions_addclosefrom_np(&fa, 5);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        // Not crisd's systemd protocol variables: with NOTIFY_SOCKET set,
        // `runc start` waits for the container to send READY=1 (seen: every
        // start of a long-running container hung until it exited).
        std::vector<char*> env;
        for (char** e = environ; *e; ++e) {
            const std::string_view v(*e);
            if (v.starts_with("NOTIFY_SOCKET=") || v.starts_with("LISTEN_PID=") ||
                v.starts_with("LISTEN_FDS=") || v.starts_with("LISTEN_FDNAMES="))
                continue;
            env.push_back(*e);
        }
        env.push_back(nullptr);
        pid_t child = -1;
        const int rc = ::posix_spawn(&child, argv[0], &fa, &attr, argv.data(), env.data());
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (rc != 0) throw_sys("spawning " + args[0], rc);
        sw.reset();
        sr.reset();
        sync_write.reset();
        start_read.reset();
        // The first process forks and exits at once (the monitor is its grandchild).
        int status = 0;
        while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
        l.sync_ = std::move(sync_read);
        l.start_ = std::move(start_write);
        const auto msg = l.read_message(timeout, "its pid");
        if (msg.kind == SyncMessage::Kind::Error) throw Error(Code::Internal, msg.text);
        if (msg.kind != SyncMessage::Kind::Monitor || msg.pid <= 0)
            throw Error(Code::Internal, "crisd-conmon sent something else than its pid first");
        l.monitor_pid_ = static_cast<pid_t>(msg.pid);
        return l;
    });
}

SyncMessage Launch::read_message(std::chrono::milliseconds timeout, const char* waiting_for) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        if (auto msg = decoder_.next()) return *msg;
        if (!wait_readable(sync_.get(), deadline))
            throw Error(Code::DeadlineExceeded, std::string("crisd-conmon did not send ") + waiting_for + " in time");
        char buf[4096];
        const auto n = ::read(sync_.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("reading the sync pipe");
        }
        if (n == 0)
            throw Error(Code::Internal, std::string("crisd-conmon exited before it sent ") + waiting_for +
                                            " (its own messages are in the journal: journalctl -t crisd-conmon)");
        decoder_.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
}

void Launch::release() {
    const char go = 1;
    if (!start_) throw Error(Code::FailedPrecondition, "crisd-conmon for " + id_ + " was already released");
    if (::write(start_.get(), &go, 1) != 1) throw_errno("writing the start pipe of crisd-conmon for " + id_);
    start_.reset();
}

pid_t Launch::wait_created(std::chrono::milliseconds timeout) {
    const auto msg = with_context("creating container " + id_, [&] { return read_message(timeout, "the container's pid"); });
    sync_.reset();
    if (msg.kind == SyncMessage::Kind::Error) throw RuntimeError(msg.text);
    if (msg.kind != SyncMessage::Kind::Container || msg.pid <= 0)
        throw Error(Code::Internal, "creating container " + id_ + ": unexpected message from crisd-conmon");
    return static_cast<pid_t>(msg.pid);
}

void start(const std::string& socket_dir, std::chrono::milliseconds timeout) {
    simple_request(socket_dir, "start", timeout, true);
}

void resize(const std::string& socket_dir, unsigned rows, unsigned cols) {
    with_context("resizing the terminal", [&] {
        simple_request(socket_dir, "resize " + std::to_string(rows) + " " + std::to_string(cols),
                       std::chrono::seconds(5), false);
    });
}

void reopen_log(const std::string& socket_dir) {
    with_context("reopening the container log", [&] {
        simple_request(socket_dir, "reopen", std::chrono::seconds(5), false);
    });
}

ExecResult exec_sync(const std::string& socket_dir, const std::vector<std::string>& argv,
                     std::chrono::milliseconds timeout, int64_t cap, int64_t total_cap) {
    return with_context("exec in the container", [&] {
        if (argv.empty()) throw Error(Code::InvalidArgument, "no command");
        std::string req("exec\0", 5);
        req += std::to_string(timeout.count());
        req += '\0';
        req += std::to_string(cap);
        for (const auto& a : argv) {
            req += '\0';
            req += a;
        }
        if (req.size() > kMaxPacket) throw Error(Code::InvalidArgument, "command line too long");
        auto fd = connect_seqpacket(socket_dir + "/" + kControlSocketName);
        send_request(fd.get(), req);
        // conmon enforces the timeout; allow it time to kill and report.
        const auto deadline = Clock::now() + (timeout.count() > 0 ? timeout + std::chrono::seconds(10)
                                                                   : std::chrono::hours(24 * 365));
        ExecResult r;
        // First come, first kept, whichever stream it is (as CRI-O's one
        // log for both); the rest is read and dropped.
        const auto keep = [&](std::string& into, const std::string& p) {
            std::size_t n = p.size() - 1;
            if (total_cap > 0) {
                const auto used = r.out.size() + r.err.size();
                const auto limit = static_cast<std::size_t>(total_cap);
                n = std::min(n, used >= limit ? 0 : limit - used);
            }
            into.append(p, 1, n);
        };
        for (;;) {
            const auto p = recv_packet(fd.get(), deadline);
            if (p.empty()) throw Error(Code::Unavailable, "crisd-conmon closed the connection before the exit code");
            if (p[0] == 'O') keep(r.out, p);
            else if (p[0] == 'E') keep(r.err, p);
            else if (p.rfind("X ", 0) == 0) {
                int timed_out = 0;
                if (std::sscanf(p.c_str() + 2, "%d %d", &r.exit_code, &timed_out) != 2)
                    throw Error(Code::Internal, "malformed exit reply '" + p + "'");
                r.timed_out = timed_out != 0;
                return r;
            } else if (p.rfind("error ", 0) == 0) {
                throw Error(Code::Unknown, p.substr(6));
            } else {
                throw Error(Code::Internal, "unexpected reply '" + p.substr(0, 64) + "'");
            }
        }
    });
}

UniqueFd attach(const std::string& socket_dir) {
    return with_context("attaching", [&] { return connect_seqpacket(socket_dir + "/" + kAttachSocketName); });
}

ExitWatcher::ExitWatcher(const std::string& exit_dir) : dir_(exit_dir) {
    inotify_.reset(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!inotify_) throw_errno("creating inotify for " + exit_dir);
    if (::inotify_add_watch(inotify_.get(), exit_dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE) < 0)
        throw_errno("watching " + exit_dir);
}

std::vector<std::string> ExitWatcher::take() {
    std::vector<std::string> ids;
    alignas(inotify_event) char buf[4096];
    for (;;) {
        const auto n = ::read(inotify_.get(), buf, sizeof buf);
        if (n <= 0) break;
        for (char* p = buf; p < buf + n;) {
            const auto* ev = reinterpret_cast<const inotify_event*>(p);
            if (ev->len > 0 && ev->name[0] != '.') ids.emplace_back(ev->name);  // .<id>.tmp is not an exit yet
            p += sizeof(inotify_event) + ev->len;
        }
    }
    return ids;
}

std::optional<ExitStatus> ExitWatcher::wait(const std::string& id, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        // Checked after arming the watch (in the constructor), so no exit is missed.
        if (auto s = read_exit_file(dir_, id)) return s;
        if (!wait_readable(inotify_.get(), deadline)) return read_exit_file(dir_, id);
        take();
    }
}

}  // namespace crisd::monitor
