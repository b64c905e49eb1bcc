#include "stream/backend.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/files.hpp"
#include "monitor/monitor.hpp"
#include "monitor/protocol.hpp"

extern char** environ;

namespace crisd::stream {
namespace {

using Descriptor = asio::posix::stream_descriptor;
using boost::system::error_code;

using Clock = std::chrono::steady_clock;

// Reads a descriptor until EOF and hands each piece to `deliver`, pausing
// while the transport is congested. stop() closes the descriptor: a read
// still pending completes as cancelled and nothing runs after stop().
class Pump : public std::enable_shared_from_this<Pump> {
public:
    struct Hooks {
        std::function<void(std::string)> deliver;
        std::function<bool()> congested;
        std::function<void(std::function<void()>)> on_drained;
        std::function<void()> on_eof;
    };
    Pump(std::shared_ptr<Descriptor> fd, Hooks hooks) : fd_(std::move(fd)), h_(std::move(hooks)) {}

    void read() {
        if (stopped_) return;
        fd_->async_read_some(asio::buffer(buf_), [self = shared_from_this()](error_code ec, std::size_t n) {
            if (self->stopped_) return;
            if (ec || n == 0) {  // EOF, EIO from a pty whose slave is gone
                self->stopped_ = true;
                auto eof = std::exchange(self->h_.on_eof, nullptr);
                self->h_ = {};
                if (eof) eof();
                return;
            }
            self->last_ = Clock::now();
            self->h_.deliver(std::string(self->buf_.data(), n));
            if (self->stopped_) return;  // delivering ended the command
            if (self->h_.congested && self->h_.congested()) {
                self->paused_ = true;
                self->h_.on_drained([self] {
                    self->paused_ = false;
                    self->last_ = Clock::now();
                    self->read();
                });
            } else {
                self->read();
            }
        });
    }
    void stop() {
        if (stopped_) return;
        stopped_ = true;
        error_code ec;
        fd_->close(ec);  // cancels the pending read and releases the descriptor
    }
    bool paused() const { return paused_ && !stopped_; }
    bool stopped() const { return stopped_; }
    Clock::time_point last_data() const { return last_; }

private:
    std::shared_ptr<Descriptor> fd_;
    Hooks h_;
    bool stopped_ = false;
    bool paused_ = false;
    Clock::time_point last_{};
    std::array<char, 32 * 1024> buf_{};
};

// A pump's flow control through the transport: `sink` yields the session's
// sink while the command and the session are there (null after).
void flow_hooks(Pump::Hooks& h, std::function<std::shared_ptr<Sink>()> sink) {
    h.congested = [sink] {
        const auto s = sink();
        return s && s->congested();
    };
    h.on_drained = [sink](std::function<void()> fn) {
        if (const auto s = sink()) s->on_drained(std::move(fn));
    };
}

// Writes queued pieces in order; an optional action (close, shutdown) runs
// once the queue is empty. `on_low` runs after each write that leaves
// kInputLow or less queued (a transport that paused may read again).
class Writer : public std::enable_shared_from_this<Writer> {
public:
    Writer(std::shared_ptr<Descriptor> fd, std::function<void()> on_low, std::size_t max_piece = 64 * 1024)
        : fd_(std::move(fd)), on_low_(std::move(on_low)), max_piece_(max_piece) {}
    void write(std::string data) {
        if (closed_) return;
        while (!data.empty()) {
            const auto n = std::min(data.size(), max_piece_);
            q_.push_back(data.substr(0, n));
            queued_ += n;
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
    std::size_t queued() const { return queued_; }

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
            self->queued_ -= self->q_.front().size();
            self->q_.pop_front();
            if (ec) {
                self->q_.clear();  // the reader went away: drop the rest
                self->queued_ = 0;
                self->closed_ = true;
            }
            if (self->queued_ <= kInputLow && self->on_low_) self->on_low_();
            self->kick();
        });
    }
    std::shared_ptr<Descriptor> fd_;
    std::function<void()> on_low_;
    std::size_t max_piece_;
    std::deque<std::string> q_;
    std::size_t queued_ = 0;
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

// The pid a runtime wrote with --pid-file; -1 while the file is missing or incomplete.
pid_t read_pid_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return -1;
    char buf[32];
    const auto n = ::read(fd.get(), buf, sizeof buf - 1);
    if (n <= 0) return -1;
    long pid = 0;
    for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] == '\n' && i > 0) break;
        if (buf[i] < '0' || buf[i] > '9' || pid > 4194304) return -1;
        pid = pid * 10 + (buf[i] - '0');
    }
    return pid > 0 ? static_cast<pid_t>(pid) : -1;
}

std::string next_pid_file(const std::string& dir) {
    static std::atomic<std::uint64_t> counter{0};
    return dir + "/stream-exec-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + ".pid";
}

// ---- exec: `<runtime> exec [--tty] --pid-file P <id> <cmd>` as crisd's child ----
//
// Without a terminal the command gets pipes (or /dev/null) as stdio straight
// through the runtime. With one, the runtime runs in the foreground on a
// pseudo-terminal crisd holds, makes the container's own terminal and copies
// between them; a resize sets crisd's terminal and sends the runtime SIGWINCH,
// which it passes on to the container's terminal. The command's own pid comes
// from the runtime's pid file (a pidfd as soon as it is there), so that a
// command that ignores SIGHUP can be killed when its client is gone: the
// runtime is only its foreground parent, and killing it leaves the command.
class Exec final : public RemoteCommand, public std::enable_shared_from_this<Exec> {
public:
    Exec(asio::io_context& io, ExecJob job)
        : io_(io), job_(std::move(job)), grace_(io), kill_timer_(io), pid_timer_(io) {}
    ~Exec() override {
        // The server stopped (its handlers were destroyed) or the command
        // ended: never leave anything of it running.
        if (pid_ > 0) read_pid();
        kill();
        if (!pid_file_.empty()) ::unlink(pid_file_.c_str());
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
    // stdin's end. Without a terminal the pipe is closed (the command reads
    // EOF). With one nothing is injected and the terminal stays open for the
    // output, as containerd and CRI-O do: queued input is written, then the
    // client's input stops.
    void close_input() override {
        if (!stdin_) return;
        auto w = std::move(stdin_);
        if (job_.tty) {
            w->close_after(nullptr);
            return;
        }
        w->close_after([fd = stdin_fd_] {
            error_code ec;
            if (fd) fd->close(ec);
        });
    }
    void resize(protocol::TerminalSize size) override {
        if (!job_.tty || !pty_ || !pty_->is_open() || size.width == 0 || size.height == 0) return;
        winsize ws{};
        ws.ws_row = static_cast<unsigned short>(size.height);
        ws.ws_col = static_cast<unsigned short>(size.width);
        ::ioctl(pty_->native_handle(), TIOCSWINSZ, &ws);
        if (pid_ > 0) ::kill(pid_, SIGWINCH);
    }
    std::size_t input_queued() const override { return stdin_ ? stdin_->queued() : 0; }
    void cancel() override {
        if (cancelled_) return;
        cancelled_ = true;
        grace_.cancel();
        if (pid_ > 0) {
            read_pid();
            ::kill(pid_, SIGHUP);  // the runtime passes it on to the command
            // The command and the runtime get SIGKILL 5 s later; this timer
            // keeps the Exec alive until then.
            kill_timer_.expires_after(std::chrono::seconds(5));
            kill_timer_.async_wait([self = shared_from_this()](error_code ec) {
                if (!ec) self->kill();
            });
        }
        close_stdio();
    }
    bool running() const override { return pid_ > 0; }
    void kill() override {
        if (cmd_pidfd_) ::syscall(SYS_pidfd_send_signal, cmd_pidfd_.get(), SIGKILL, nullptr, 0);
        if (pid_ > 0) ::kill(pid_, SIGKILL);
    }

private:
    std::chrono::milliseconds grace() const { return std::chrono::milliseconds(job_.tty ? 300 : 1000); }

    void spawn() {
        if (!job_.pid_dir.empty()) pid_file_ = next_pid_file(job_.pid_dir);
        const auto argv = exec_argv(job_, pid_file_);
        UniqueFd child_in, child_out, child_err, ours_in, ours_out, ours_err, master;
        auto make_pipe = [](UniqueFd& read_end, UniqueFd& write_end) {
            int p[2];
            if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe");
            read_end.reset(p[0]);
            write_end.reset(p[1]);
        };
        if (job_.tty) {
            int m = -1, s = -1;
            // Not atomic with CLOEXEC: another thread's spawn in between is
            // harmless, every spawn in crisd closes the descriptors above 2.
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
        posix_spawn_file_actions_addclosefrom_np(&fa, 3);
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
        if (!pid_file_.empty()) poll_pid_file(std::chrono::milliseconds(5));

        const std::weak_ptr<Exec> weak = weak_from_this();
        auto add_pump = [&](std::shared_ptr<Descriptor> d, std::uint8_t ch) {
            ++open_outputs_;
            Pump::Hooks h;
            h.deliver = [weak, ch](std::string data) {
                if (auto self = weak.lock())
                    if (auto s = self->sink_.lock()) s->output(ch, std::move(data));
            };
            flow_hooks(h, [weak] {
                auto self = weak.lock();
                return self ? self->sink_.lock() : nullptr;
            });
            h.on_eof = [weak] {
                if (auto self = weak.lock()) {
                    --self->open_outputs_;
                    self->maybe_finish();
                }
            };
            auto p = std::make_shared<Pump>(d, std::move(h));
            pumps_.push_back(p);
            p->read();
        };
        auto on_low = [weak] {
            if (auto self = weak.lock())
                if (auto s = self->sink_.lock()) s->input_drained();
        };
        if (job_.tty) {
            pty_ = descriptor(io_, std::move(master));
            if (job_.stdin) {
                stdin_fd_ = pty_;
                stdin_ = std::make_shared<Writer>(pty_, on_low);
            }
            add_pump(pty_, protocol::kStdout);
        } else {
            if (ours_in) {
                stdin_fd_ = descriptor(io_, std::move(ours_in));
                stdin_ = std::make_shared<Writer>(stdin_fd_, on_low);
            }
            if (ours_out) add_pump(descriptor(io_, std::move(ours_out)), protocol::kStdout);
            if (ours_err) add_pump(descriptor(io_, std::move(ours_err)), protocol::kStderr);
        }
    }

    // The runtime writes the pid file once the command runs; look for it
    // until then (backing off to every 200 ms) or until the runtime is gone.
    void poll_pid_file(std::chrono::milliseconds delay) {
        pid_timer_.expires_after(delay);
        pid_timer_.async_wait([weak = weak_from_this(), delay](error_code ec) {
            auto self = weak.lock();
            if (ec || !self || self->pid_ <= 0 || self->cmd_pidfd_) return;
            if (!self->read_pid()) self->poll_pid_file(std::min(delay * 2, std::chrono::milliseconds(200)));
        });
    }
    // True once the command's pidfd is open (or there will be none).
    bool read_pid() {
        if (cmd_pidfd_ || pid_file_.empty()) return true;
        const pid_t pid = read_pid_file(pid_file_);
        if (pid <= 0) return false;
        ::unlink(pid_file_.c_str());
        pid_file_.clear();
        UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
        if (!fd) {
            spdlog::debug("exec in {}: pidfd_open({}): {}", job_.container_id, pid, std::strerror(errno));
            return true;
        }
        // The file may be read after the command ended and its pid went to
        // another process: kept only when the process the pidfd holds is a
        // child of the runtime (runc and crun are the command's parent; the
        // runtime is crisd's unreaped child here, so its pid is not reused),
        // read while the pidfd says it still runs, so that /proc spoke of the
        // same process.
        const auto status = read_file_if_exists("/proc/" + std::to_string(pid) + "/status");
        pollfd p{fd.get(), POLLIN, 0};
        const bool alive = ::poll(&p, 1, 0) == 0;
        if (!alive || !status || status->find("\nPPid:\t" + std::to_string(pid_) + "\n") == std::string::npos) {
            spdlog::debug("exec in {}: pid {} from the pid file is not the command any more", job_.container_id, pid);
            return true;
        }
        cmd_pidfd_ = std::move(fd);
        return true;
    }

    void reap() {
        int status = 0;
        const pid_t r = ::waitpid(pid_, &status, 0);
        pid_ = -1;
        pid_timer_.cancel();
        if (!pid_file_.empty()) {
            ::unlink(pid_file_.c_str());
            pid_file_.clear();
        }
        exit_code_ = r > 0 ? exit_code_of(status) : 255;
        exited_at_ = Clock::now();
        spdlog::debug("exec in {}: the runtime exited with {}", job_.container_id.substr(0, 12), *exit_code_);
        if (cancelled_) return;
        // Output still in the pipes belongs to the command; processes it left
        // behind may hold them open, so wait for EOF only while the outputs
        // are busy: data within the grace period, or a client that has not
        // taken the last of it yet (a paused output never times out).
        arm_grace(grace());
        maybe_finish();
    }

    void arm_grace(Clock::duration after) {
        grace_.expires_after(after);
        grace_.async_wait([weak = weak_from_this()](error_code ec) {
            auto self = weak.lock();
            if (ec || !self || self->finished_ || self->cancelled_) return;
            Clock::time_point last = self->exited_at_;
            bool paused = false;
            for (const auto& p : self->pumps_) {
                if (p->stopped()) continue;
                paused = paused || p->paused();
                last = std::max(last, p->last_data());
            }
            const auto idle = Clock::now() - last;
            if (paused || idle < self->grace()) {
                self->arm_grace(paused ? Clock::duration(self->grace()) : self->grace() - idle);
                return;
            }
            self->open_outputs_ = 0;
            self->maybe_finish();
        });
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

    // Closes crisd's ends of every pipe (or the terminal): a process left
    // behind writing to them gets EPIPE, and no read stays pending.
    void close_stdio() {
        for (auto& p : pumps_) p->stop();
        pumps_.clear();
        error_code ec;
        if (stdin_fd_) stdin_fd_->close(ec);
        if (pty_) pty_->close(ec);
        stdin_.reset();
    }

    asio::io_context& io_;
    ExecJob job_;
    std::weak_ptr<Sink> sink_;
    pid_t pid_ = -1;  // the runtime, until reaped
    std::shared_ptr<Descriptor> pidfd_;
    std::string pid_file_;  // until read
    UniqueFd cmd_pidfd_;    // the command itself
    std::shared_ptr<Descriptor> pty_;
    std::shared_ptr<Descriptor> stdin_fd_;
    std::shared_ptr<Writer> stdin_;
    std::vector<std::shared_ptr<Pump>> pumps_;
    int open_outputs_ = 0;
    std::optional<int> exit_code_;
    Clock::time_point exited_at_{};
    asio::steady_timer grace_;
    asio::steady_timer kill_timer_;
    asio::steady_timer pid_timer_;
    bool cancelled_ = false;
    bool finished_ = false;
};

// ---- attach: crisd-conmon's attach socket ----
class Attach final : public RemoteCommand, public std::enable_shared_from_this<Attach> {
public:
    Attach(asio::io_context& io, AttachJob job, Offload offload)
        : io_(io), job_(std::move(job)), offload_(std::move(offload)) {}

    void start(std::weak_ptr<Sink> sink) override {
        sink_ = std::move(sink);
        try {
            sock_ = descriptor(io_, monitor::attach(job_.socket_dir));
        } catch (const Error& e) {
            finish({std::nullopt, "attach to container " + job_.container_id + ": " + e.what()});
            return;
        }
        const std::weak_ptr<Attach> weak = weak_from_this();
        if (job_.stdin) {
            stdin_ = std::make_shared<Writer>(
                sock_,
                [weak] {
                    if (auto self = weak.lock())
                        if (auto s = self->sink_.lock()) s->input_drained();
                },
                monitor::kMaxPacket);
        }
        Pump::Hooks h;
        h.deliver = [weak](std::string packet) {
            auto self = weak.lock();
            if (!self || packet.empty()) return;
            const auto& job = self->job_;
            std::uint8_t ch = static_cast<std::uint8_t>(packet[0]) == monitor::kStderr ? protocol::kStderr
                                                                                      : protocol::kStdout;
            if (job.container_tty) ch = protocol::kStdout;
            if ((ch == protocol::kStdout && !job.stdout) || (ch == protocol::kStderr && !job.stderr)) return;
            if (auto s = self->sink_.lock()) s->output(ch, packet.substr(1));
        };
        flow_hooks(h, [weak] {
            auto self = weak.lock();
            return self ? self->sink_.lock() : nullptr;
        });
        h.on_eof = [weak] {
            if (auto self = weak.lock()) self->ended();
        };
        pump_ = std::make_shared<Pump>(sock_, std::move(h));
        pump_->read();
    }
    void input(std::string data) override {
        if (stdin_) stdin_->write(std::move(data));
    }
    // The end of the client's stdin: once the queued input is written, the
    // attach socket is half-closed (shutdown(SHUT_WR)). conmon closes the
    // container's stdin then if it was created with stdin_once, and keeps
    // sending output either way.
    void close_input() override {
        if (!stdin_) return;
        auto w = std::move(stdin_);
        w->close_after([sock = sock_] {
            if (sock->is_open()) ::shutdown(sock->native_handle(), SHUT_WR);
        });
    }
    // A resize is a control request that blocks until conmon answers (5 s at
    // most): it runs through offload_, never on the I/O thread, one at a time
    // per session and only the latest size when several queued up.
    void resize(protocol::TerminalSize size) override {
        if (!job_.container_tty || size.width == 0 || size.height == 0 || finished_) return;
        pending_resize_ = size;
        if (!resizing_) next_resize();
    }
    std::size_t input_queued() const override { return stdin_ ? stdin_->queued() : 0; }
    void cancel() override {
        finished_ = true;
        close();
    }
    bool running() const override { return false; }
    void kill() override {}

private:
    void next_resize() {
        if (!pending_resize_ || !offload_) return;
        const auto size = *std::exchange(pending_resize_, std::nullopt);
        resizing_ = true;
        offload_([weak = weak_from_this(), io = &io_, dir = job_.socket_dir, id = job_.container_id, size] {
            try {
                monitor::resize(dir, size.height, size.width);
            } catch (const std::exception& e) {  // nothing may leave the pool's thread
                spdlog::debug("attach {}: resize: {}", id, e.what());
            }
            // weak is only locked on the I/O thread.
            asio::post(*io, [weak] {
                if (auto self = weak.lock()) {
                    self->resizing_ = false;
                    if (!self->finished_) self->next_resize();
                }
            });
        });
    }
    // conmon closed the connection: the container exited (its exit file is
    // written before conmon closes the attach sockets), or conmon dropped a
    // client that did not read fast enough, or conmon is gone.
    void ended() {
        bool exited = false;
        try {
            exited = monitor::read_exit_file(job_.exit_dir, job_.container_id).has_value();
        } catch (const Error&) {
            exited = true;  // there is an exit file, if a bad one
        }
        if (exited) {
            finish({0, ""});
            return;
        }
        finish({std::nullopt, "attach to container " + job_.container_id +
                                  ": crisd-conmon closed the attach connection while the container still runs "
                                  "(output not read fast enough, or crisd-conmon is gone)"});
    }
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
    Offload offload_;
    std::weak_ptr<Sink> sink_;
    std::shared_ptr<Descriptor> sock_;
    std::shared_ptr<Writer> stdin_;
    std::shared_ptr<Pump> pump_;
    std::optional<protocol::TerminalSize> pending_resize_;
    bool resizing_ = false;
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
            for (auto& d : self->pending_) self->q_.push_back(std::move(d));
            self->pending_.clear();
            self->kick();
            if (self->close_pending_) self->close_input();
            self->read();
        });
    }
    void input(std::string data) override {
        if (done_ || data.empty()) return;
        queued_ += data.size();
        if (!connected_) pending_.push_back(std::move(data));
        else send(std::move(data));
    }
    std::size_t input_queued() const override { return queued_; }
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
        drop_input();
        error_code ec;
        sock_.close(ec);
    }

private:
    // The port's side is gone: input still queued goes nowhere.
    void drop_input() {
        pending_.clear();
        if (!busy_) q_.clear();
        queued_ = 0;
    }
    void fail(const std::string& why) {
        if (done_) return;
        done_ = true;
        drop_input();
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
            if (self->done_) {
                self->q_.clear();
                return;
            }
            self->queued_ -= self->q_.front().size();
            self->q_.pop_front();
            if (ec) {
                self->q_.clear();
                self->queued_ = 0;
            }
            if (self->queued_ <= kInputLow && self->cb_.input_drained) self->cb_.input_drained();
            self->kick();
        });
    }
    void read() {
        sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](error_code ec, std::size_t n) {
            if (self->done_) return;
            if (ec || n == 0) {
                self->done_ = true;
                self->drop_input();
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
    std::size_t queued_ = 0;  // in pending_ and q_
    std::vector<std::string> pending_;
    std::deque<std::string> q_;
    std::array<char, 32 * 1024> buf_{};
};

}  // namespace

std::vector<std::string> exec_argv(const ExecJob& job, const std::string& pid_file) {
    std::vector<std::string> argv{job.runtime_path};
    if (!job.runtime_root.empty()) argv.insert(argv.end(), {"--root", job.runtime_root});
    argv.insert(argv.end(), {"--systemd-cgroup", "exec"});
    if (job.tty) argv.push_back("--tty");
    if (!pid_file.empty()) argv.insert(argv.end(), {"--pid-file", pid_file});
    argv.push_back(job.container_id);
    argv.insert(argv.end(), job.cmd.begin(), job.cmd.end());
    return argv;
}

std::shared_ptr<RemoteCommand> make_exec(asio::io_context& io, ExecJob job) {
    return std::make_shared<Exec>(io, std::move(job));
}

std::shared_ptr<RemoteCommand> make_attach(asio::io_context& io, AttachJob job, Offload offload) {
    return std::make_shared<Attach>(io, std::move(job), std::move(offload));
}

std::shared_ptr<PortConn> make_port_conn(asio::io_context& io, std::string netns, std::uint16_t port,
                                         std::string pod_id) {
    return std::make_shared<TcpPort>(io, std::move(netns), port, std::move(pod_id));
}

}  // namespace crisd::stream
