// The exec backend (src/stream/backend.cpp) against a stand-in for runc: a
// shell script that takes `runc exec`'s arguments, runs the command as its
// child in the foreground, writes --pid-file and passes SIGHUP on, so that
// what crisd does with the runtime and the command can be seen without a
// container: processes left behind holding the pipes, a client that reads
// slowly after the command exited, cancel and kill of a command that ignores
// SIGHUP, stdin backpressure, and a terminal's end of input.
#include <sys/wait.h>
#include <gtest/gtest.h>

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "common/fd.hpp"
#include "monitor/protocol.hpp"
#include "stream/backend.hpp"

using namespace crisd::stream;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kFakeRuntime = R"(#!/bin/sh
# <runtime> [--root R] --systemd-cgroup exec [--tty] [--pid-file P] ID CMD...
pidfile=
while :; do
  case "$1" in
    --root) shift 2 ;;
    --systemd-cgroup|exec|--tty) shift ;;
    --pid-file) pidfile=$2; shift 2 ;;
    *) break ;;
  esac
done
shift
exec 3<&0
"$@" <&3 3<&- &
child=$!
exec 3<&-
# FAKE_PID: the pid file names another process (a pid reused meanwhile).
if [ -n "$pidfile" ]; then echo ${FAKE_PID:-$child} > "$pidfile.tmp" && mv "$pidfile.tmp" "$pidfile"; fi
trap 'kill -HUP $child' HUP
while :; do
  wait $child
  st=$?
  kill -0 $child 2>/dev/null || exit $st
done
)";

class Fixture : public ::testing::Test {
protected:
    void SetUp() override {
        ::signal(SIGPIPE, SIG_IGN);  // as crisd does
        char tmpl[] = "/tmp/stream-backend-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        runtime_ = dir_ + "/runtime";
        std::ofstream(runtime_) << kFakeRuntime;
        fs::permissions(runtime_, fs::perms::owner_all);
    }
    void TearDown() override { fs::remove_all(dir_); }

    ExecJob job(std::vector<std::string> cmd, bool in = false, bool tty = false) {
        ExecJob j;
        j.container_id = "c0ffee";
        j.runtime_path = runtime_;
        j.cmd = std::move(cmd);
        j.pid_dir = dir_;
        j.tty = tty;
        j.stdin = in;
        j.stdout = true;
        j.stderr = !tty;
        return j;
    }
    // Runs the I/O loop until `done` or the timeout; true when done.
    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (!done()) {
            if (std::chrono::steady_clock::now() >= end) return false;
            io_.restart();
            io_.run_for(20ms);
        }
        return true;
    }
    void run_for(std::chrono::milliseconds t) {
        run_until([] { return false; }, t);
    }

    boost::asio::io_context io_;
    std::string dir_, runtime_;
};

// A transport: collects output; congested while `slow` is set.
struct TestSink : Sink {
    std::string out, err;
    std::optional<Outcome> outcome;
    bool slow = false;
    std::vector<std::function<void()>> waiting;
    int drained_calls = 0;

    void output(std::uint8_t channel, std::string data) override { (channel == 2 ? err : out) += data; }
    bool congested() const override { return slow; }
    void on_drained(std::function<void()> fn) override { waiting.push_back(std::move(fn)); }
    void finish(const Outcome& o) override { outcome = o; }
    void input_drained() override { ++drained_calls; }
    void release() {
        slow = false;
        for (auto& f : std::exchange(waiting, {})) f();
    }
};

int pipes_open() {
    int n = 0;
    for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const auto target = fs::read_symlink(e.path(), ec);
        if (!ec && target.string().rfind("pipe:", 0) == 0) ++n;
    }
    return n;
}

// Alive and not a zombie.
bool alive(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return false;
    const auto paren = line.rfind(')');
    return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

}  // namespace

TEST(StreamBackend, ExecArgvHasThePidFile) {
    ExecJob j;
    j.runtime_path = "/usr/bin/runc";
    j.runtime_root = "/run/crisd/runc";
    j.container_id = "abc";
    j.cmd = {"sh", "-c", "true"};
    j.tty = true;
    EXPECT_EQ(exec_argv(j, "/b/x.pid"),
              (std::vector<std::string>{"/usr/bin/runc", "--root", "/run/crisd/runc", "--systemd-cgroup", "exec",
                                        "--tty", "--pid-file", "/b/x.pid", "abc", "sh", "-c", "true"}));
    EXPECT_EQ(exec_argv(j).size(), 10u);
}

// Defect: the Exec's callbacks held a raw `this` and its pipes stayed open
// while a process left behind kept them: the late write reached freed memory
// and one pipe leaked per exec.
TEST_F(Fixture, ProcessLeftBehindDoesNotKeepThePipesOrTheExec) {
    const int pipes_before = pipes_open();
    auto sink = std::make_shared<TestSink>();
    // The leftover writes 5 s in: far after the 1 s grace, whatever the load.
    auto cmd = make_exec(io_, job({"sh", "-c", "(sleep 5; echo late; echo late >&2) & echo early"}));
    std::weak_ptr<RemoteCommand> weak = cmd;
    const auto t0 = std::chrono::steady_clock::now();
    cmd->start(sink);
    ASSERT_TRUE(run_until([&] { return sink->outcome.has_value(); }, 10s));
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_LT(took, 4000ms) << "the session ends after the grace, not when the leftover exits";
    EXPECT_EQ(sink->out, "early\n");
    EXPECT_EQ(sink->outcome->exit_code, 0);
    EXPECT_TRUE(sink->outcome->error.empty());
    cmd.reset();
    run_for(50ms);
    EXPECT_TRUE(weak.expired());
    EXPECT_EQ(pipes_open(), pipes_before) << "crisd's ends of the pipes are closed";
    // The leftover writes now: nothing may reach the session (or freed memory).
    run_for(std::chrono::duration_cast<std::chrono::milliseconds>(6500ms - (std::chrono::steady_clock::now() - t0)));
    EXPECT_EQ(sink->out, "early\n");
    EXPECT_EQ(sink->err, "");
    EXPECT_EQ(pipes_open(), pipes_before);
}

// Defect: the post-exit grace ran while the output was paused for a slow
// client, and threw away what was still in the pipe.
TEST_F(Fixture, SlowReaderGetsAllOutputAfterTheExit) {
    auto sink = std::make_shared<TestSink>();
    sink->slow = true;  // paused after the first piece
    auto cmd = make_exec(io_, job({"sh", "-c", "head -c 60000 /dev/zero | tr '\\0' x"}));
    cmd->start(sink);
    ASSERT_TRUE(run_until([&] { return !sink->waiting.empty(); }, 5s));
    EXPECT_LT(sink->out.size(), 60000u) << "paused after the first piece";
    // The command exits (its output fits the pipe); the client takes 2.5 s
    // more to catch up, far beyond the 1 s grace.
    ASSERT_TRUE(run_until([&] { return !cmd->running(); }, 5s));
    run_for(2500ms);
    EXPECT_FALSE(sink->outcome) << "finished while output was still waiting for the client";
    sink->release();
    ASSERT_TRUE(run_until([&] { return sink->outcome.has_value(); }, 5s));
    EXPECT_EQ(sink->out, std::string(60000, 'x'));
    EXPECT_EQ(sink->outcome->exit_code, 0);
}

// Defect: a command that ignores SIGHUP outlived its client: only the
// runtime got SIGKILL.
TEST_F(Fixture, CancelKillsACommandThatIgnoresHangup) {
    auto sink = std::make_shared<TestSink>();
    auto cmd = make_exec(io_, job({"sh", "-c", "trap '' HUP; echo $$; exec sleep 60"}));
    cmd->start(sink);
    ASSERT_TRUE(run_until([&] { return sink->out.find('\n') != std::string::npos; }, 5s));
    const pid_t pid = std::stoi(sink->out);
    ASSERT_TRUE(alive(pid));
    const auto t0 = std::chrono::steady_clock::now();
    cmd->cancel();
    cmd.reset();  // the session is gone; the kill timer keeps the Exec
    run_for(1000ms);
    EXPECT_TRUE(alive(pid)) << "SIGHUP is ignored: the command lives until the SIGKILL";
    ASSERT_TRUE(run_until([&] { return !alive(pid); }, 8s)) << "the command survived its client";
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 4900ms);
    EXPECT_LT(took, 7s);
    EXPECT_FALSE(sink->outcome) << "finish() is not called after cancel()";
}

// The pid file may name a process that is not the command (the command
// ended and its pid was reused before crisd read the file): that process is
// never signalled, neither 5 s after a cancel nor when the Exec goes.
TEST_F(Fixture, APidFileNamingAnotherProcessKillsNothing) {
    const pid_t other = ::fork();
    ASSERT_GE(other, 0);
    if (other == 0) {
        ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::setenv("FAKE_PID", std::to_string(other).c_str(), 1);
    auto sink = std::make_shared<TestSink>();
    auto cmd = make_exec(io_, job({"sh", "-c", "trap '' HUP; echo $$; exec sleep 60"}));
    cmd->start(sink);
    ::unsetenv("FAKE_PID");
    ASSERT_TRUE(run_until([&] { return sink->out.find('\n') != std::string::npos; }, 5s));
    run_for(300ms);  // the pid file is read
    cmd->cancel();
    cmd.reset();
    run_for(6000ms);  // past the 5 s kill
    EXPECT_TRUE(alive(other)) << "a process that is not the command was killed";
    ::kill(other, SIGKILL);
    ::waitpid(other, nullptr, 0);
    // The command itself ignored SIGHUP and was not found by its pid: it goes with its test.
    const pid_t cmd_pid = std::stoi(sink->out);
    ::kill(cmd_pid, SIGKILL);
}

// What StreamServer::stop() does with commands that still run, and what
// happens when the Exec is destroyed with its handlers (the server's
// io_context goes away): the command is killed at once.
TEST_F(Fixture, KillAndDestructionEndTheCommand) {
    pid_t pid = -1;
    {
        boost::asio::io_context io;
        auto sink = std::make_shared<TestSink>();
        auto cmd = make_exec(io, job({"sh", "-c", "trap '' HUP; echo $$; exec sleep 60"}));
        cmd->start(sink);
        const auto end = std::chrono::steady_clock::now() + 5s;
        while (sink->out.find('\n') == std::string::npos && std::chrono::steady_clock::now() < end) {
            io.restart();
            io.run_for(20ms);
        }
        ASSERT_NE(sink->out.find('\n'), std::string::npos);
        pid = std::stoi(sink->out);
        io.restart();
        io.run_for(300ms);  // the pid file is read
        EXPECT_TRUE(cmd->running());
        // No cancel, no kill: the io_context is destroyed with the Exec's handlers.
    }
    ASSERT_GT(pid, 0);
    const auto end = std::chrono::steady_clock::now() + 3s;
    while (alive(pid) && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(20ms);
    EXPECT_FALSE(alive(pid)) << "~Exec leaves the command running";
    // No pid file is left behind.
    for (const auto& e : fs::directory_iterator(dir_))
        EXPECT_EQ(e.path().filename().string().rfind("stream-exec-", 0), std::string::npos) << e.path();
}

// stdin the command does not read yet is held (input_queued) and reported
// when a write leaves little enough; then all of it arrives.
TEST_F(Fixture, StdinQueueIsVisibleAndDrains) {
    auto sink = std::make_shared<TestSink>();
    auto cmd = make_exec(io_, job({"sh", "-c", "sleep 1; wc -c"}, true));
    cmd->start(sink);
    const std::string piece(1024 * 1024, 'y');
    for (int i = 0; i < 4; ++i) cmd->input(piece);
    run_for(200ms);
    EXPECT_GT(cmd->input_queued(), kInputHigh) << "the command reads nothing for a second";
    EXPECT_EQ(sink->drained_calls, 0);
    ASSERT_TRUE(run_until([&] { return cmd->input_queued() == 0; }, 10s));
    EXPECT_GT(sink->drained_calls, 0);
    cmd->close_input();
    ASSERT_TRUE(run_until([&] { return sink->outcome.has_value(); }, 10s));
    EXPECT_EQ(sink->out, "4194304\n");
}

// Closing stdin of a terminal injects nothing (containerd and CRI-O do not):
// `cat` on the terminal keeps running, its output still arrives.
TEST_F(Fixture, TerminalStdinCloseInjectsNothing) {
    auto sink = std::make_shared<TestSink>();
    auto cmd = make_exec(io_, job({"cat"}, true, true));
    cmd->start(sink);
    cmd->input("abc\n");
    cmd->close_input();
    ASSERT_TRUE(run_until([&] { return sink->out.find("abc\r\nabc\r\n") != std::string::npos; }, 5s)) << sink->out;
    run_for(700ms);
    EXPECT_FALSE(sink->outcome) << "the command saw an end of input: " << sink->out;
    EXPECT_TRUE(cmd->running());
    EXPECT_EQ(sink->out.find('\x04'), std::string::npos);
    cmd->kill();
    cmd->cancel();
}

// A resize is a control request that waits for crisd-conmon (up to 5 s): it
// must not hold up the I/O thread, and sizes that queue up behind a slow
// conmon collapse into the latest one.
TEST_F(Fixture, AttachResizeRunsOffTheIoThread) {
    auto attach_l = crisd::monitor::listen_seqpacket(dir_ + "/attach");
    auto ctl_l = crisd::monitor::listen_seqpacket(dir_ + "/ctl");
    boost::asio::thread_pool pool(1);
    AttachJob j;
    j.container_id = "c0ffee";
    j.socket_dir = dir_;
    j.exit_dir = dir_;
    j.container_tty = true;
    j.tty = true;
    j.stdout = true;
    auto cmd = make_attach(io_, j, [&pool](std::function<void()> fn) { boost::asio::post(pool, std::move(fn)); });
    auto sink = std::make_shared<TestSink>();
    cmd->start(sink);

    // crisd-conmon, slow: answers each request 1 s late.
    std::vector<std::string> requests;
    std::thread conmon([&] {
        for (int i = 0; i < 2; ++i) {
            pollfd p{ctl_l.get(), POLLIN, 0};
            if (::poll(&p, 1, 10000) != 1) return;
            crisd::UniqueFd c(::accept4(ctl_l.get(), nullptr, nullptr, SOCK_CLOEXEC));
            char buf[256];
            const auto n = ::recv(c.get(), buf, sizeof buf, 0);
            requests.emplace_back(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
            std::this_thread::sleep_for(1s);
            ::send(c.get(), "ok", 2, MSG_NOSIGNAL);
        }
    });
    const auto t0 = std::chrono::steady_clock::now();
    cmd->resize({80, 24});
    cmd->resize({90, 25});
    cmd->resize({100, 30});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);  // a blocking resize takes 1 s each
    bool ran = false;
    boost::asio::post(io_, [&] { ran = true; });
    run_for(100ms);
    EXPECT_TRUE(ran) << "the I/O thread waited for crisd-conmon";
    run_for(2500ms);
    conmon.join();
    EXPECT_EQ(requests, (std::vector<std::string>{"resize 24 80", "resize 30 100"}));
    cmd->cancel();
    pool.join();
}
