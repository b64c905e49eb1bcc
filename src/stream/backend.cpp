#include "stream/backend.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "monitor/monitor.hpp"
#include "monitor/protocol.hpp"

extern char** environ;

namespace crisd::stream {
namespace {

using Descriptor = asio::posix::stream_descriptor;
using boost::system::error_code;

// Reads a descriptor until EOF and hands each piece to `deliver`, pausing
// while the transport is congested.
class Pump : public std::enable_shared_from_this<Pump> {
public:
    Pump(std::shared_ptr<Descriptor> fd, std::function<void(std::string)> deliver,
         std::function<bool()> congested, std::function<void(std::function<void()>)> on_drained,
         std::function<void()> on_eof)
        : fd_(std::move(fd)),
          deliver_(std::move(deliver)),
          congested_(std::move(congested)),
          on_drained_(std::move(on_drained)),
          on_eof_(std::move(on_eof)) {}

    void read() {
        fd_->async_read_some(asio::buffer(buf_), [self = shared_from_this()](error_code ec, std::size_t n) {
            if (ec || n == 0) {  // EOF, EIO from a pty whose slave is gone, or cancelled
                if (auto f = std::exchange(self->on_eof_, nullptr)) f();
                return;
            }
            self->deliver_(std::string(self->buf_.data(), n));
            if (self->congested_ && self->congested_()) self->on_drained_([self] { self->read(); });
            else self->read();
        });
    }
    void stop() { on_eof_ = nullptr; }

private:
    std::shared_ptr<Descriptor> fd_;
    std::function<void(std::string)> deliver_;
    std::function<bool()> congested_;
    std::function<void(std::function<void()>)> on_drained_;
    std::function<void()> on_eof_;
    std::array<char, 32 * 1024> buf_{};
};

// Writes queued pieces in order; an optional action (close, shutdown) runs
// once the queue is empty.
class Writer : public std::enable_shared_from_this<Writer> {
public:
    explicit Writer(std::shared_ptr<Descriptor> fd, std::size_t max_piece = 64 * 1024)
        : fd_(std::move(fd)), max_piece_(max_piece) {}
    void write(std::string data) {
        if (closed_) return;
        while (!data.empty()) {
            const auto n = std::min(data.size(), max_piece_);
            q_.push_back(data.substr(0, n));
            data.erase(0, n);
        }
        kick();
    }
    void close_after(std::function<void()> action) {
        if (closed_) return;
        closed_ = true;
        after_ = std::move(action);
        kick();
    }

private:
    void kick() {
        if (busy_) return;
        if (q_.empty()) {
            if (auto f = std::exchange(after_, nullptr)) f();
            return;
        }
        busy_ = true;
        asio::async_write(*fd_, asio::buffer(q_.front()), [self = shared_from_this()](error_code ec, std::size_t) {
            self->busy_ = false;
            self->q_.pop_front();
            if (ec) {
                self->q_.clear();  // the reader went away: drop the rest
                self->closed_ = true;
            }
            self->kick();
        });
    }
    std::shared_ptr<Descriptor> fd_;
    std::size_t max_piece_;
    std::deque<std::string> q_;
    bool busy_ = false;
    bool closed_ = false;
    std::function<void()> after_;
};

std::shared_ptr<Descriptor> descriptor(asio::io_context& io, UniqueFd fd) {
    ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
    return std::make_shared<Descriptor>(io, fd.release());
}

int exit_code_of(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 255;
}

// ---- exec: `<runtime> exec [--tty] <id> <cmd>` as crisd's child ----
//
// Without a terminal the command gets pipes (or /dev/null) as stdio straight
// through the runtime. With one, the runtime runs in the foreground on a
// pseudo-terminal crisd holds, makes the container's own terminal and copies
// between them; a resize sets crisd's terminal and sends the runtime SIGWINCH,
// which it passes on to the container's terminal.
class Exec final : public RemoteCommand, public std::enable_shared_from_this<Exec> {
public:
    Exec(asio::io_context& io, ExecJob job) : io_(io), job_(std::move(job)), grace_(io) {}
    ~Exec() override {
        if (pid_ > 0) ::kill(pid_, SIGKILL);  // not reaped yet: never leave it running
    }

    void start(std::weak_ptr<Sink> sink) override {
        sink_ = std::move(sink);
        try {
            spawn();
        } catch (const Error& e) {
            finish({std::nullopt, std::string("exec in container ") + job_.container_id + ": " + e.what()});
        }
    }

    void input(std::string data) override {
        if (stdin_) stdin_->write(std::move(data));
    }
    void close_input() override {
        if (!stdin_) return;
        if (job_.tty) {
            stdin_->write("\x04");  // a terminal's end of input (^D)
            return;
        }
        auto w = std::move(stdin_);
        w->close_after([fd = stdin_fd_] { if (fd) fd->close(); });
    }
    void resize(protocol::TerminalSize size) override {
        if (!job_.tty || !pty_ || size.width == 0 || size.height == 0) return;
        winsize ws{};
        ws.ws_row = static_cast<unsigned short>(size.height);
        ws.ws_col = static_cast<unsigned short>(size.width);
        ::ioctl(pty_->native_handle(), TIOCSWINSZ, &ws);
        if (pid_ > 0) ::kill(pid_, SIGWINCH);
    }
    void cancel() override {
        cancelled_ = true;
        if (pid_ > 0) {
            ::kill(pid_, SIGHUP);  // the runtime passes it on to the command
            grace_.expires_after(std::chrono::seconds(5));
            grace_.async_wait([self = shared_from_this()](error_code ec) {
                if (!ec && self->pid_ > 0) ::kill(self->pid_, SIGKILL);
            });
        }
        close_stdio();
    }

private:
    void spawn() {
        const auto argv = exec_argv(job_);
        UniqueFd child_in, child_out, child_err, ours_in, ours_out, ours_err, master;
        auto make_pipe = [](UniqueFd& read_end, UniqueFd& write_end) {
            int p[2];
            if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe");
            read_end.reset(p[0]);
            write_end.reset(p[1]);
        };
        if (job_.tty) {
            int m = -1, s = -1;
            if (::openpty(&m, &s, nullptr, nullptr, nullptr) != 0) throw_errno("openpty");
            master.reset(m);
            child_in.reset(s);
            ::fcntl(m, F_SETFD, FD_CLOEXEC);
            ::fcntl(s, F_SETFD, FD_CLOEXEC);
            winsize ws{};
            ws.ws_row = 24;
            ws.ws_col = 80;
            ::ioctl(m, TIOCSWINSZ, &ws);
        } else {
            if (job_.stdin) make_pipe(child_in, ours_in);
            if (job_.stdout) make_pipe(ours_out, child_out);
            if (job_.stderr) make_pipe(ours_err, child_err);
        }

        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        if (job_.tty) {
            for (int fd = 0; fd < 3; ++fd) posix_spawn_file_actions_adddup2(&fa, child_in.get(), fd);
        } else {
            auto io = [&](const UniqueFd& f, int target, int mode) {
                if (f) posix_spawn_file_actions_adddup2(&fa, f.get(), target);
                else posix_spawn_file_actions_addopen(&fa, target, "/dev/null", mode, 0);
            };
            io(child_in, 0, O_RDONLY);
            io(child_out, 1, O_WRONLY);
            io(child_err, 2, O_WRONLY);
        }
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none, def;
        sigemptyset(&none);
        sigemptyset(&def);
        sigaddset(&def, SIGPIPE);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &def);
        short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
        if (job_.tty) flags |= POSIX_SPAWN_SETSID;
        posix_spawnattr_setflags(&attr, flags);
        std::vector<char*> env;  // without crisd's NOTIFY_SOCKET and LISTEN_*
        for (char** e = environ; *e; ++e) {
            const std::string_view v(*e);
            if (!v.starts_with("NOTIFY_SOCKET=") && !v.starts_with("LISTEN_")) env.push_back(*e);
        }
        env.push_back(nullptr);
        std::vector<std::string> args = argv;
        std::vector<char*> cargv;
        for (auto& a : args) cargv.push_back(a.data());
        cargv.push_back(nullptr);
        pid_t pid = -1;
        const int err = ::posix_spawn(&pid, args[0].c_str(), &fa, &attr, cargv.data(), env.data());
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (err != 0) throw_sys("running " + args[0], err);
        pid_ = pid;
        child_in.reset();
        child_out.reset();
        child_err.reset();

        const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        if (pidfd < 0) throw_errno("pidfd_open");
        pidfd_ = std::make_shared<Descriptor>(io_, pidfd);
        pidfd_->async_wait(Descriptor::wait_read, [self = shared_from_this()](error_code) { self->reap(); });

        auto self = shared_from_this();
        auto deliver = [this](std::uint8_t ch) {
            return [this, ch](std::string d) {
                if (auto s = sink_.lock()) s->output(ch, std::move(d));
            };
        };
        auto congested = [this] {
            auto s = sink_.lock();
            return s && s->congested();
        };
        auto drained = [this](std::function<void()> fn) {
            if (auto s = sink_.lock()) s->on_drained(std::move(fn));
        };
        auto add_pump = [&](std::shared_ptr<Descriptor> d, std::uint8_t ch) {
            ++open_outputs_;
            auto p = std::make_shared<Pump>(d, deliver(ch), congested, drained, [self] {
                --self->open_outputs_;
                self->maybe_finish();
            });
            pumps_.push_back(p);
            p->read();
        };
        if (job_.tty) {
            pty_ = descriptor(io_, std::move(master));
            if (job_.stdin) {
                stdin_fd_ = pty_;
                stdin_ = std::make_shared<Writer>(pty_);
            }
            add_pump(pty_, protocol::kStdout);
        } else {
            if (ours_in) {
                stdin_fd_ = descriptor(io_, std::move(ours_in));
                stdin_ = std::make_shared<Writer>(stdin_fd_);
            }
            if (ours_out) add_pump(descriptor(io_, std::move(ours_out)), protocol::kStdout);
            if (ours_err) add_pump(descriptor(io_, std::move(ours_err)), protocol::kStderr);
        }
    }

    void reap() {
        int status = 0;
        const pid_t r = ::waitpid(pid_, &status, 0);
        pid_ = -1;
        grace_.cancel();
        exit_code_ = r > 0 ? exit_code_of(status) : 255;
        if (cancelled_) return;
        // Output still in the pipes belongs to the command; processes it left
        // behind may hold them open, so wait for EOF a short while only.
        grace_.expires_after(std::chrono::milliseconds(job_.tty ? 300 : 1000));
        grace_.async_wait([self = shared_from_this()](error_code ec) {
            if (ec) return;
            self->open_outputs_ = 0;
            self->maybe_finish();
        });
        maybe_finish();
    }

    void maybe_finish() {
        if (cancelled_ || finished_ || !exit_code_ || open_outputs_ > 0) return;
        grace_.cancel();
        finish({exit_code_, ""});
    }

    void finish(const Outcome& o) {
        if (finished_) return;
        finished_ = true;
        if (auto s = sink_.lock()) s->finish(o);
        close_stdio();
    }

    void close_stdio() {
        for (auto& p : pumps_) p->stop();
        error_code ec;
        if (stdin_fd_) stdin_fd_->close(ec);
        if (pty_) pty_->close(ec);
        stdin_.reset();
        pumps_.clear();
    }

    asio::io_context& io_;
    ExecJob job_;
    std::weak_ptr<Sink> sink_;
    pid_t pid_ = -1;
    std::shared_ptr<Descriptor> pidfd_;
    std::shared_ptr<Descriptor> pty_;
    std::shared_ptr<Descriptor> stdin_fd_;
    std::shared_ptr<Writer> stdin_;
    std::vector<std::shared_ptr<Pump>> pumps_;
    int open_outputs_ = 0;
    std::optional<int> exit_code_;
    asio::steady_timer grace_;
    bool cancelled_ = false;
    bool finished_ = false;
};

// ---- attach: crisd-conmon's attach socket ----
class Attach final : public RemoteCommand, public std::enable_shared_from_this<Attach> {
public:
    Attach(asio::io_context& io, AttachJob job) : io_(io), job_(std::move(job)) {}

    void start(std::weak_ptr<Sink> sink) override {
        sink_ = std::move(sink);
        try {
            sock_ = descriptor(io_, monitor::attach(job_.socket_dir));
        } catch (const Error& e) {
            finish({std::nullopt, "attach to container " + job_.container_id + ": " + e.what()});
            return;
        }
        if (job_.stdin) stdin_ = std::make_shared<Writer>(sock_, monitor::kMaxPacket);
        auto self = shared_from_this();
        pump_ = std::make_shared<Pump>(
            sock_,
            [this](std::string packet) {
                if (packet.empty()) return;
                std::uint8_t ch = static_cast<std::uint8_t>(packet[0]) == monitor::kStderr ? protocol::kStderr
                                                                                          : protocol::kStdout;
                if (job_.container_tty) ch = protocol::kStdout;
                if ((ch == protocol::kStdout && !job_.stdout) || (ch == protocol::kStderr && !job_.stderr)) return;
                if (auto s = sink_.lock()) s->output(ch, packet.substr(1));
            },
            [this] {
                auto s = sink_.lock();
                return s && s->congested();
            },
            [this](std::function<void()> fn) {
                if (auto s = sink_.lock()) s->on_drained(std::move(fn));
            },
            [self] { self->finish({0, ""}); });
        pump_->read();
    }
    void input(std::string data) override {
        if (stdin_) stdin_->write(std::move(data));
    }
    // conmon's attach socket has no end-of-input of its own: a client that
    // closes stdin stops sending; the container's stdin closes when the
    // client detaches (stdin_once).
    void close_input() override { stdin_.reset(); }
    void resize(protocol::TerminalSize size) override {
        if (!job_.container_tty || size.width == 0 || size.height == 0) return;
        try {
            monitor::resize(job_.socket_dir, size.height, size.width);
        } catch (const Error& e) {
            spdlog::debug("attach {}: resize: {}", job_.container_id, e.what());
        }
    }
    void cancel() override {
        finished_ = true;
        close();
    }

private:
    void finish(const Outcome& o) {
        if (finished_) return;
        finished_ = true;
        if (auto s = sink_.lock()) s->finish(o);
        close();
    }
    void close() {
        if (pump_) pump_->stop();
        error_code ec;
        if (sock_) sock_->close(ec);
        stdin_.reset();
    }

    asio::io_context& io_;
    AttachJob job_;
    std::weak_ptr<Sink> sink_;
    std::shared_ptr<Descriptor> sock_;
    std::shared_ptr<Writer> stdin_;
    std::shared_ptr<Pump> pump_;
    bool finished_ = false;
};

// ---- port forward ----

// A TCP socket made in the network namespace at `netns` (a thread that joins
// it just for socket()); the socket stays in that namespace.
UniqueFd socket_in_netns(const std::string& netns) {
    if (netns.empty()) {
        UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!s) throw_errno("socket");
        return s;
    }
    UniqueFd ns(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns) throw_errno("opening " + netns);
    int fd = -1, err = 0;
    std::string what;
    std::thread t([&] {
        if (::unshare(CLONE_FS) != 0 || ::setns(ns.get(), CLONE_NEWNET) != 0) {
            err = errno;
            what = "joining " + netns;
            return;
        }
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            what = "socket in " + netns;
        }
    });
    t.join();
    if (fd < 0) throw_sys(what, err);
    return UniqueFd(fd);
}

class TcpPort final : public PortConn, public std::enable_shared_from_this<TcpPort> {
public:
    TcpPort(asio::io_context& io, std::string netns, std::uint16_t port, std::string pod)
        : io_(io), netns_(std::move(netns)), port_(port), pod_(std::move(pod)), sock_(io) {}

    void start(Callbacks cb) override {
        cb_ = std::move(cb);
        try {
            UniqueFd fd = socket_in_netns(netns_);
            sock_.assign(asio::ip::tcp::v4(), fd.release());
        } catch (const Error& e) {
            fail(e.what());
            return;
        }
        const asio::ip::tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), port_);
        sock_.async_connect(ep, [self = shared_from_this()](error_code ec) {
            if (ec) {
                self->fail(ec.message());
                return;
            }
            self->connected_ = true;
            for (auto& d : self->pending_) self->send(std::move(d));
            self->pending_.clear();
            if (self->close_pending_) self->close_input();
            self->read();
        });
    }
    void input(std::string data) override {
        if (done_) return;
        if (!connected_) pending_.push_back(std::move(data));
        else send(std::move(data));
    }
    void close_input() override {
        if (!connected_) {
            close_pending_ = true;
            return;
        }
        q_.push_back({});  // marker: shut down the write side once written
        kick();
    }
    void cancel() override {
        done_ = true;
        error_code ec;
        sock_.close(ec);
    }

private:
    void fail(const std::string& why) {
        if (done_) return;
        done_ = true;
        if (cb_.error)
            cb_.error("error forwarding port " + std::to_string(port_) + " to pod " + pod_ + ": " + why);
        if (cb_.done) cb_.done();
    }
    void send(std::string data) {
        q_.push_back(std::move(data));
        kick();
    }
    void kick() {
        if (busy_ || q_.empty() || done_) return;
        if (q_.front().empty()) {
            q_.pop_front();
            error_code ec;
            sock_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
            return kick();
        }
        busy_ = true;
        asio::async_write(sock_, asio::buffer(q_.front()), [self = shared_from_this()](error_code ec, std::size_t) {
            self->busy_ = false;
            self->q_.pop_front();
            if (ec) self->q_.clear();
            self->kick();
        });
    }
    void read() {
        sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](error_code ec, std::size_t n) {
            if (self->done_) return;
            if (ec || n == 0) {
                self->done_ = true;
                if (ec && ec != asio::error::eof && ec != asio::error::connection_reset && self->cb_.error)
                    self->cb_.error("error forwarding port " + std::to_string(self->port_) + " to pod " +
                                    self->pod_ + ": " + ec.message());
                if (self->cb_.done) self->cb_.done();
                return;
            }
            self->cb_.data(std::string(self->buf_.data(), n));
            if (self->cb_.congested && self->cb_.congested()) self->cb_.on_drained([self] { self->read(); });
            else self->read();
        });
    }

    asio::io_context& io_;
    std::string netns_;
    std::uint16_t port_;
    std::string pod_;
    asio::ip::tcp::socket sock_;
    Callbacks cb_;
    bool connected_ = false;
    bool close_pending_ = false;
    bool done_ = false;
    bool busy_ = false;
    std::vector<std::string> pending_;
    std::deque<std::string> q_;
    std::array<char, 32 * 1024> buf_{};
};

}  // namespace

std::vector<std::string> exec_argv(const ExecJob& job) {
    std::vector<std::string> argv{job.runtime_path};
    if (!job.runtime_root.empty()) argv.insert(argv.end(), {"--root", job.runtime_root});
    argv.insert(argv.end(), {"--systemd-cgroup", "exec"});
    if (job.tty) argv.push_back("--tty");
    argv.push_back(job.container_id);
    argv.insert(argv.end(), job.cmd.begin(), job.cmd.end());
    return argv;
}

std::shared_ptr<RemoteCommand> make_exec(asio::io_context& io, ExecJob job) {
    return std::make_shared<Exec>(io, std::move(job));
}

std::shared_ptr<RemoteCommand> make_attach(asio::io_context& io, AttachJob job) {
    return std::make_shared<Attach>(io, std::move(job));
}

std::shared_ptr<PortConn> make_port_conn(asio::io_context& io, std::string netns, std::uint16_t port,
                                         std::string pod_id) {
    return std::make_shared<TcpPort>(io, std::move(netns), port, std::move(pod_id));
}

}  // namespace crisd::stream
