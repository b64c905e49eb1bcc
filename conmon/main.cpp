// crisd-conmon: one per container. Detaches from crisd, waits on the start pipe
// until crisd has moved it into crisd-conmon-<id>.scope, runs `runtime create`,
// reports the container's pid (or the runtime's error, word for word) on the
// sync pipe, then serves the container until it exits: stdio to the CRI log
// file, journald and attach clients; start/resize/reopen/exec on the control
// socket; the exit status and OOM kill into the exit file. One thread, one
// epoll loop (loop.hpp).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>

#include "args.hpp"
#include "attach.hpp"
#include "common/error.hpp"
#include "console.hpp"
#include "control.hpp"
#include "cri_log.hpp"
#include "exec.hpp"
#include "journal.hpp"
#include "loop.hpp"
#include "monitor/protocol.hpp"
#include "oom.hpp"
#include "process.hpp"
#include "runtime.hpp"
#include "stdio.hpp"

using namespace crisd;
using namespace crisd::conmon;

namespace {

void write_all(int fd, const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
        const auto n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("writing the sync pipe");
        }
        done += static_cast<size_t>(n);
    }
}

std::string read_available(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        const auto n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            out.append(buf, static_cast<size_t>(n));
            if (out.size() > 64 * 1024) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        break;
    }
    return out;
}

// oom_score_adj for conmon itself. Hosts without CAP_SYS_RESOURCE refuse a
// negative value (design.md): then 0. Returns what to say about it (once), ""
// when all went well.
std::string set_oom_score_adj(int value) {
    const auto write_value = [](int v) {
        UniqueFd fd(::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC));
        if (!fd) return false;
        const auto s = std::to_string(v);
        return ::write(fd.get(), s.data(), s.size()) == static_cast<ssize_t>(s.size());
    };
    if (write_value(value)) return "";
    const int err = errno;
    if (value < 0 && write_value(0))
        return "oom_score_adj " + std::to_string(value) + " refused (" + std::strerror(err) +
               "; no CAP_SYS_RESOURCE?): using 0";
    return "setting oom_score_adj " + std::to_string(value) + ": " + std::strerror(err);
}

class Monitor {
public:
    explicit Monitor(Args args) : args_(std::move(args)) {
        runtime_ = Runtime{args_.runtime, args_.runtime_args, args_.id, args_.bundle};
    }

    int run() {
        setup_signals();
        if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) throw_errno("becoming a child subreaper");
        const auto oom_note = set_oom_score_adj(args_.oom_score_adj);
        sync(monitor::SyncMessage{monitor::SyncMessage::Kind::Monitor, ::getpid(), {}});
        // Nothing goes to journald before this point: journald caches a
        // sender's cgroup for a few seconds, and until crisd has moved conmon
        // into crisd-conmon-<id>.scope its entries would carry the wrong unit.
        if (!wait_start_pipe()) {
            diag::info("crisd closed the start pipe: not creating the container");
            return 0;
        }
        if (!oom_note.empty()) diag::warning(oom_note);
        std::optional<std::string> failure;
        pid_t pid = -1;
        try {
            pid = create();
        } catch (const Error& e) {
            failure = e.what();
        }
        if (failure) {
            diag::error("creating the container failed: " + *failure);
            sync(monitor::SyncMessage{monitor::SyncMessage::Kind::Error, -1, *failure});
            return 1;
        }
        diag::info("container created, pid " + std::to_string(pid));
        // The sockets exist before crisd hears of the pid: it may attach or
        // send start the moment wait_created() returns.
        try {
            prepare_serving(pid);
        } catch (const Error& e) {
            failure = e.what();
        }
        if (failure) {
            diag::error("serving the container failed: " + *failure);
            container_.kill(SIGKILL);
            sync(monitor::SyncMessage{monitor::SyncMessage::Kind::Error, -1, *failure});
            return 1;
        }
        sync(monitor::SyncMessage{monitor::SyncMessage::Kind::Container, pid, {}});
        if (args_.sync_fd >= 0) ::close(args_.sync_fd);
        args_.sync_fd = -1;
        loop_.run();
        return 0;
    }

    // Before anything else can fail: what crisd should see when it does.
    void report_failure(const std::string& text) {
        try {
            sync(monitor::SyncMessage{monitor::SyncMessage::Kind::Error, -1, text});
        } catch (const Error&) {
        }
    }

private:
    void sync(const monitor::SyncMessage& msg) {
        if (args_.sync_fd < 0) {
            if (args_.foreground && msg.kind != monitor::SyncMessage::Kind::Monitor)
                std::fprintf(stderr, "%s", monitor::encode_sync(msg).c_str());
            return;
        }
        write_all(args_.sync_fd, monitor::encode_sync(msg));
    }

    bool wait_start_pipe() {
        if (args_.start_fd < 0) return true;
        char c;
        ssize_t n;
        do {
            n = ::read(args_.start_fd, &c, 1);
        } while (n < 0 && errno == EINTR);
        ::close(args_.start_fd);
        args_.start_fd = -1;
        return n == 1;
    }

    void setup_signals() {
        sigset_t set;
        sigemptyset(&set);
        for (int s : {SIGCHLD, SIGUSR1, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
        if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) throw_errno("blocking signals");
        ::signal(SIGPIPE, SIG_IGN);
        signal_fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!signal_fd_) throw_errno("creating the signalfd");
        loop_.add(signal_fd_.get(), EPOLLIN, [this](uint32_t) { on_signal(); });
    }

    void on_signal() {
        signalfd_siginfo si;
        while (::read(signal_fd_.get(), &si, sizeof si) == sizeof si) {
            switch (si.ssi_signo) {
            case SIGCHLD: reaper_.reap(); break;
            case SIGUSR1:
                try {
                    if (log_) log_->reopen();
                } catch (const Error& e) {
                    diag::error(e.what());
                }
                break;
            default:
                // The container outlives whatever asks conmon to go; it leaves when the container does.
                diag::info(std::string("ignoring signal ") + ::strsignal(static_cast<int>(si.ssi_signo)));
            }
        }
    }

    void on_output(uint8_t stream, std::string_view data) {
        if (log_) {
            try {
                log_->write(stream, data);
            } catch (const Error& e) {
                if (!log_failed_) diag::error(e.what());
                log_failed_ = true;
            }
        }
        if (journal_) journal_->write(stream, data);
        if (attach_) attach_->broadcast(stream, data);
    }

    pid_t create() {
        if (!args_.log_path.empty())
            log_ = std::make_unique<CriLog>(args_.log_path, args_.log_size_max, static_cast<size_t>(args_.log_line_max));
        if (args_.journal)
            journal_ = std::make_unique<Journal>(
                JournalIdentity{args_.id, args_.name, args_.pod_name, args_.pod_namespace},
                static_cast<size_t>(args_.log_line_max));
        stdio_ = std::make_unique<Stdio>(loop_, [this](uint8_t s, std::string_view d) { on_output(s, d); });

        const std::string pid_file = args_.socket_dir + "/pid";
        ::unlink(pid_file.c_str());
        std::unique_ptr<ConsoleSocket> console;
        Stdio::ChildEnds ends;
        UniqueFd capture_read, capture_write;  // the runtime's own output when it is not the container's
        if (args_.terminal) {
            console = std::make_unique<ConsoleSocket>(args_.socket_dir);
            int p[2];
            if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("creating a pipe for the runtime's output");
            capture_read.reset(p[0]);
            capture_write.reset(p[1]);
        } else {
            ends = stdio_->make_pipes(args_.stdin);
        }

        const auto argv = runtime_.create(pid_file, console ? console->path() : "");
        const int out = args_.terminal ? capture_write.get() : ends.out.get();
        const int err = args_.terminal ? capture_write.get() : ends.err.get();
        const pid_t create_pid = with_context("starting " + args_.runtime, [&] {
            return spawn(argv, ends.in ? ends.in.get() : -1, out, err);
        });
        ends = {};
        capture_write.reset();

        std::optional<int> status;
        UniqueFd master;
        uint64_t console_token = 0;
        if (console) {
            console_token = loop_.add(console->fd(), EPOLLIN, [&](uint32_t) {
                master = console->receive();
                if (master) {
                    loop_.remove(console_token);
                    console_token = 0;
                    if (status) loop_.stop();
                }
            });
        }
        reaper_.watch(create_pid, [&](int st) {
            status = st;
            if (!console || master || exit_code_of(st) != 0) loop_.stop();
        });
        loop_.run();
        if (console_token) loop_.remove(console_token);

        if (exit_code_of(*status) != 0) {
            std::string text;
            if (capture_read) text = read_available(capture_read.get());
            else {
                text = stdio_->terminal() ? "" : take_pipe_output();
            }
            while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
            if (text.empty()) text = args_.runtime + " create " + describe_status(*status);
            throw Error(Code::Unknown, text);
        }
        if (console) {
            if (!master) throw Error(Code::Internal, args_.runtime + " create succeeded but sent no terminal");
            stdio_->set_terminal(std::move(master), args_.stdin);
            // Whatever the runtime itself printed is not the container's output.
            if (capture_read) {
                const auto noise = read_available(capture_read.get());
                if (!noise.empty()) diag::info(args_.runtime + " create said: " + noise);
            }
        }
        const pid_t pid = read_pid_file(pid_file);
        if (pid <= 0) throw Error(Code::Internal, args_.runtime + " create succeeded but wrote no pid to " + pid_file);
        return pid;
    }

    // After a failed create in pipe mode, the runtime's error sits in the
    // container's stderr (and maybe stdout) pipe: collect it instead of logging it.
    std::string take_pipe_output() {
        std::string text;
        stdio_->set_sink([&](uint8_t, std::string_view d) { text.append(d); });
        stdio_->drain();
        return text;
    }

    void prepare_serving(pid_t pid) {
        container_ = ProcessHandle(pid);
        oom_ = std::make_unique<OomWatcher>(loop_, pid);
        attach_ = std::make_unique<AttachServer>(loop_, args_.socket_dir + "/" + monitor::kAttachSocketName, *stdio_,
                                                 args_.stdin_once);
        exec_ = std::make_unique<ExecRunner>(loop_, reaper_, runtime_, args_.socket_dir);
        ControlServer::Hooks hooks;
        hooks.start = [this](std::shared_ptr<ControlConn> conn) { start_container(std::move(conn)); };
        hooks.resize = [this](unsigned rows, unsigned cols) { stdio_->resize(rows, cols); };
        hooks.reopen = [this] {
            if (!log_) throw Error(Code::FailedPrecondition, "reopen: this container has no log file");
            log_->reopen();
        };
        hooks.exec = [this](ExecRequest req, std::shared_ptr<ControlConn> conn) { exec_->run(std::move(req), conn); };
        exec_->on_finished = [this] { maybe_leave(); };
        control_ = std::make_unique<ControlServer>(loop_, args_.socket_dir + "/" + monitor::kControlSocketName,
                                                   std::move(hooks));
        stdio_->start();
        reaper_.watch(pid, [this](int st) { on_container_exit(st); });
    }

    void start_container(std::shared_ptr<ControlConn> conn) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("start: creating a pipe for the runtime's output");
        auto out = std::make_shared<UniqueFd>(p[0]);
        UniqueFd write_end(p[1]);
        const pid_t pid = spawn(runtime_.start(), -1, write_end.get(), write_end.get());
        ++pending_starts_;
        reaper_.watch(pid, [this, conn, out](int st) {
            --pending_starts_;
            if (exit_code_of(st) == 0) {
                conn->send("ok");
            } else {
                auto text = read_available(out->get());
                while (!text.empty() && text.back() == '\n') text.pop_back();
                if (text.empty()) text = args_.runtime + " start " + describe_status(st);
                diag::error("starting the container failed: " + text);
                conn->send("error " + text);
            }
            conn->finish();
            maybe_leave();
        });
    }

    // After the container's exit, conmon leaves once the replies it owes are
    // sent (a `start` whose container was quick to exit, execs being killed),
    // or after 5 s.
    void maybe_leave() {
        if (!exited_) return;
        if (pending_starts_ == 0 && exec_->active() == 0) loop_.stop();
    }

    void on_container_exit(int st) {
        monitor::ExitStatus status;
        status.exit_code = exit_code_of(st);
        status.signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        timespec ts{};
        ::clock_gettime(CLOCK_REALTIME, &ts);
        status.exited_at_ns = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
        stdio_->drain();
        if (journal_) journal_->flush();
        status.oom_killed = oom_ && oom_->oom_killed();
        exec_->kill_all();
        try {
            monitor::write_exit_file(args_.exit_dir, args_.id, status);
        } catch (const Error& e) {
            diag::error(e.what());
        }
        diag::info("container exited: " + describe_status(st) + (status.oom_killed ? ", OOM-killed" : ""));
        attach_->close_all();
        control_->close();
        exited_ = true;
        leave_timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        if (leave_timer_) {
            itimerspec its{};
            its.it_value.tv_sec = 5;
            ::timerfd_settime(leave_timer_.get(), 0, &its, nullptr);
            loop_.add(leave_timer_.get(), EPOLLIN, [this](uint32_t) { loop_.stop(); });
        } else {
            loop_.stop();
        }
        maybe_leave();
    }

    Args args_;
    Runtime runtime_;
    Loop loop_;
    Reaper reaper_;
    UniqueFd signal_fd_;
    std::unique_ptr<CriLog> log_;
    bool log_failed_ = false;
    std::unique_ptr<Journal> journal_;
    std::unique_ptr<Stdio> stdio_;
    std::unique_ptr<AttachServer> attach_;
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<ExecRunner> exec_;
    std::unique_ptr<OomWatcher> oom_;
    ProcessHandle container_;
    int pending_starts_ = 0;
    bool exited_ = false;
    UniqueFd leave_timer_;
};

// setsid and a second fork: conmon is nobody's session leader and its parent
// (crisd, or whoever started it) is gone, so it is reparented to systemd.
void detach() {
    for (int i = 0; i < 2; ++i) {
        const pid_t pid = ::fork();
        if (pid < 0) throw_errno("forking to detach");
        if (pid > 0) ::_exit(0);
        if (i == 0 && ::setsid() < 0) throw_errno("setsid");
    }
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (null) {
        for (int fd = 0; fd < 3; ++fd) ::dup2(null.get(), fd);
    }
    diag::set_stderr(false);
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> av(argv, argv + argc);
    Args args;
    try {
        args = parse_args(av);
    } catch (const Error& e) {
        std::fprintf(stderr, "crisd-conmon: %s\n%s", e.what(), usage());
        // crisd reads the sync pipe: tell it there too when it can be found.
        for (size_t i = 1; i + 1 < av.size(); ++i) {
            if (av[i] == "--sync-fd") {
                const auto msg = monitor::encode_sync({monitor::SyncMessage::Kind::Error, -1,
                                                       std::string("crisd-conmon: ") + e.what()});
                (void)!::write(std::atoi(av[i + 1].c_str()), msg.data(), msg.size());
            }
        }
        return 2;
    }
    diag::init(JournalIdentity{args.id, args.name, args.pod_name, args.pod_namespace});
    Monitor monitor(args);
    try {
        if (!args.foreground) detach();
        return monitor.run();
    } catch (const Error& e) {
        diag::error(e.what());
        monitor.report_failure(e.what());
        return 1;
    }
}
